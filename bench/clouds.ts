/**
 * An image into an OpenStack cloud, three ways, in one run against the same Keystone and Glance on loopback
 * (scripts/openstack.sh): Repoman's sync by web-download (Glance fetches the pinned version from Repoman), by
 * upload (Repoman streams it to Glance), and, as the reference, what a user does by hand without Repoman:
 * `openstack image create` and a web-download import of the same URL. Each is timed from the request to the
 * image `active` in Glance with its SHA-512 (Repoman's sync also checks it against its own), in a project of
 * its own so that no run sees another's copy.
 *
 *   node bench/clouds.ts [--size-mib 1024] [--smoke] [--quick] [--out DIR]
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { type OpenStackFixture, startOpenStack } from '../packages/server/test/helpers/openstack.ts';
import { curl, randomFile, root, run, type Server, startRepoman, uploadAndRead } from './lib.ts';

const { values } = parseArgs({
  strict: false, // npm run bench passes every benchmark the same options
  options: {
    'size-mib': { type: 'string' },
    smoke: { type: 'boolean' },
    quick: { type: 'boolean' },
    out: { type: 'string' },
  },
});
const sizeMib = Number(values['size-mib'] ?? (values.smoke ? 16 : values.quick ? 256 : 1024));
const out = resolve(typeof values.out === 'string' ? values.out : join(root, 'bench', 'results'));

async function waitUntil<T>(check: () => Promise<T | null>, what: string, limitMs = 3600_000): Promise<T> {
  const end = Date.now() + limitMs;
  for (;;) {
    const found = await check();
    if (found !== null) return found;
    if (Date.now() > end) throw new Error(`${what} did not happen within ${limitMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Repoman's sync of the image into a new cloud (a project of its own) by `transfer`: seconds to verified. */
async function bySync(
  repoman: Server,
  cloud: OpenStackFixture,
  transfer: 'web-download' | 'upload',
): Promise<number> {
  const user = await cloud.projectUser(`bench-${transfer}`);
  const api = (method: string, path: string, body?: unknown) =>
    run('curl', [
      '-sS',
      '--fail-with-body',
      ...repoman.tls,
      '-X',
      method,
      ...(body === undefined ? [] : ['-H', 'content-type: application/json', '-d', JSON.stringify(body)]),
      `${repoman.https}${path}`,
    ]);
  const name = transfer === 'upload' ? 'up' : 'wd';
  await api('POST', '/api/clouds/bench', {
    name,
    auth_url: cloud.authUrl,
    username: user.username,
    password: user.password,
    project: user.project,
    transfer,
    follow_endorsed: false,
  });
  const started = performance.now();
  await api('PUT', `/api/clouds/bench/${name}/images/admin/bench.img`);
  await waitUntil(async () => {
    const copies = JSON.parse((await api('GET', `/api/clouds/bench/${name}/status`)).stdout) as {
      state: string;
      detail: string;
    }[];
    if (copies.some((c) => c.state === 'failed' || c.state === 'conflict'))
      throw new Error(JSON.stringify(copies));
    return copies.some((c) => c.state === 'present') ? true : null;
  }, `the ${transfer} sync`);
  return (performance.now() - started) / 1000;
}

/** By hand, as a user without Repoman: an image made and imported by web-download from the pinned URL. */
async function byHand(repoman: Server, cloud: OpenStackFixture): Promise<number> {
  const user = await cloud.projectUser('bench-hand');
  const { token } = await cloud.tokenOf(user);
  const glance = async (method: string, path: string, body?: unknown) => {
    const answer = await cloud.glance(method, path, body, token);
    if (answer.status >= 300)
      throw new Error(`Glance ${path}: ${answer.status} ${JSON.stringify(answer.json)}`);
    return answer.json ?? {};
  };
  const started = performance.now();
  const image = await glance('POST', '/v2/images', {
    name: 'by-hand',
    disk_format: 'raw',
    container_format: 'bare',
  });
  await glance('POST', `/v2/images/${image.id}/import`, {
    method: { name: 'web-download', uri: `${repoman.https}/api/images/raw/admin/bench.img?version=1` },
  });
  await waitUntil(async () => {
    const now = await glance('GET', `/v2/images/${image.id}`);
    if (now.status === 'killed') throw new Error(`the import failed: ${JSON.stringify(now)}`);
    return now.status === 'active' ? true : null;
  }, 'the import by hand');
  return (performance.now() - started) / 1000;
}

const work = await mkdtemp(join(tmpdir(), 'repoman-bench-clouds-'));
let repoman: Server | null = null;
let cloud: OpenStackFixture | null = null;
try {
  const file = join(work, 'image.bin');
  await randomFile(file, sizeMib);
  const data = join(work, 'repoman');
  repoman = await startRepoman(data, {
    REPOMAN_CLOUDS_ALLOWED_NETWORKS: '127.0.0.0/8,::1',
    REPOMAN_CLOUDS_SYNC_SECONDS: '5',
  });
  // Glance trusts Repoman's development CA, as a site adds Repoman's CA to its Glance hosts.
  cloud = await startOpenStack({ caPem: await readFile(join(data, 'ca/ca.pem'), 'utf8') });

  await curl([
    ...repoman.tls,
    '-H',
    'content-type: application/json',
    '-d',
    '{"name":"bench","users":["admin"]}',
    `${repoman.https}/api/groups`,
  ]);
  await curl([
    ...repoman.tls,
    '-H',
    'content-type: application/json',
    '-d',
    '{"name":"bench.img","unauthenticated_access":true}',
    `${repoman.https}/api/images`,
  ]);
  const raw = '/api/images/raw/admin/bench.img';
  await uploadAndRead(repoman, file, `${repoman.https}${raw}`, `${repoman.https}${raw}`);

  const hand = await byHand(repoman, cloud);
  const web = await bySync(repoman, cloud, 'web-download');
  const upload = await bySync(repoman, cloud, 'upload');
  const rate = (seconds: number) => `${((sizeMib * 1024 * 1024) / seconds / 1e6).toFixed(0)} MB/s`;
  const table = [
    `An image of ${sizeMib} MiB into Glance (Keystone and Glance on this machine, SQLite, a file store)`,
    '',
    '| how | time to active and verified | rate | of by hand |',
    '|---|---|---|---|',
    `| by hand: \`openstack image create\` + web-download import | ${hand.toFixed(1)} s | ${rate(hand)} | 1.00 |`,
    `| Repoman's sync, web-download | ${web.toFixed(1)} s | ${rate(web)} | ${(hand / web).toFixed(2)} |`,
    `| Repoman's sync, upload | ${upload.toFixed(1)} s | ${rate(upload)} | ${(hand / upload).toFixed(2)} |`,
  ].join('\n');
  console.log(`\n${table}\n`);
  await mkdir(out, { recursive: true });
  await writeFile(join(out, 'clouds.json'), `${JSON.stringify({ sizeMib, hand, web, upload }, null, 2)}\n`);
  await writeFile(join(out, 'clouds.md'), `${table}\n`);
} finally {
  await repoman?.stop();
  await cloud?.stop();
  await rm(work, { recursive: true, force: true });
}
