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
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { curl, randomFile, root, run, type Server, startRepoman, uploadAndRead } from './lib.ts';

const exec = promisify(execFile);
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

interface Cloud {
  authUrl: string;
  glanceUrl: string;
  password: string;
}

async function keystone(cloud: Cloud, path: string, method: string, token: string | null, body?: unknown) {
  const response = await fetch(`${cloud.authUrl}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { 'x-auth-token': token } : {}) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (response.status >= 300)
    throw new Error(`Keystone ${path}: ${response.status} ${await response.text()}`);
  return response;
}

/** A token of `user` in `project` (the admin's by default). */
async function tokenOf(cloud: Cloud, user = 'admin', password = cloud.password, project = 'admin') {
  const response = await keystone(cloud, '/auth/tokens', 'POST', null, {
    auth: {
      identity: {
        methods: ['password'],
        password: { user: { name: user, domain: { name: 'Default' }, password } },
      },
      scope: { project: { name: project, domain: { name: 'Default' } } },
    },
  });
  return response.headers.get('x-subject-token') as string;
}

/** A project and a member user of its own. */
async function projectUser(cloud: Cloud, name: string) {
  const admin = await tokenOf(cloud);
  const project = (await (
    await keystone(cloud, '/projects', 'POST', admin, { project: { name, domain_id: 'default' } })
  ).json()) as {
    project: { id: string };
  };
  const password = `pw-${name}`;
  const user = (await (
    await keystone(cloud, '/users', 'POST', admin, { user: { name, password, domain_id: 'default' } })
  ).json()) as {
    user: { id: string };
  };
  const roles = (await (await keystone(cloud, '/roles?name=member', 'GET', admin)).json()) as {
    roles: { id: string }[];
  };
  await keystone(
    cloud,
    `/projects/${project.project.id}/users/${user.user.id}/roles/${roles.roles[0]?.id}`,
    'PUT',
    admin,
  );
  return { username: name, password, project: name };
}

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
async function bySync(repoman: Server, cloud: Cloud, transfer: 'web-download' | 'upload'): Promise<number> {
  const user = await projectUser(cloud, `bench-${transfer}`);
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
async function byHand(repoman: Server, cloud: Cloud): Promise<number> {
  const user = await projectUser(cloud, 'bench-hand');
  const token = await tokenOf(cloud, user.username, user.password, user.project);
  const glance = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${cloud.glanceUrl}${path}`, {
      method,
      headers: {
        'x-auth-token': token,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    if (response.status >= 300) throw new Error(`Glance ${path}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : {};
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
const script = join(root, 'scripts/openstack.sh');
const openstackDir = join(work, 'openstack');
let repoman: Server | null = null;
try {
  const file = join(work, 'image.bin');
  await randomFile(file, sizeMib);
  const data = join(work, 'repoman');
  repoman = await startRepoman(data, {
    REPOMAN_CLOUDS_ALLOWED_NETWORKS: '127.0.0.0/8,::1',
    REPOMAN_CLOUDS_SYNC_SECONDS: '5',
  });
  const { stdout } = await exec(script, ['start', openstackDir], {
    env: { ...process.env, OPENSTACK_CA_FILE: join(data, 'ca/ca.pem') },
    timeout: 300_000,
  });
  const env = Object.fromEntries(
    stdout
      .trim()
      .split('\n')
      .map((line) => line.split('=', 2) as [string, string]),
  );
  const cloud: Cloud = {
    authUrl: env.OS_AUTH_URL as string,
    glanceUrl: env.GLANCE_URL as string,
    password: env.OS_PASSWORD as string,
  };

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
  await exec(script, ['stop', openstackDir]).catch(() => undefined);
  await rm(work, { recursive: true, force: true });
}
