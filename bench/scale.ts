/**
 * The paper's production case, scaled to this machine: 150 clients downloading one large image at once over
 * HTTPS with client certificates (curl, each piped into sha256sum). Every download must complete with the
 * right SHA-256; reports the aggregate throughput, the slowest/fastest client ratio and the servers' peak
 * RSS, for Repoman and, in the same run, nginx.
 *
 *   node bench/scale.ts [--clients 150] [--size-mib 128] [--smoke] [--out DIR]
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import {
  curl,
  findNginx,
  measured,
  randomFile,
  root,
  run,
  type Server,
  startNginx,
  startRepoman,
} from './lib.ts';

const { values } = parseArgs({
  options: {
    clients: { type: 'string' },
    'size-mib': { type: 'string' },
    smoke: { type: 'boolean' },
    quick: { type: 'boolean' },
    out: { type: 'string' },
  },
});
const clients = Number(values.clients ?? (values.smoke ? 5 : 150));
const sizeMib = Number(values['size-mib'] ?? (values.smoke ? 1 : values.quick ? 16 : 128));
const out = resolve(values.out ?? join(root, 'bench', 'results'));

export interface ScaleResult {
  server: 'repoman' | 'nginx';
  clients: number;
  complete: number;
  rate: number;
  slowest: number;
  fastest: number;
  rss: number;
}

/** One client: curl into sha256sum; its SHA-256 and its own time. */
async function client(server: Server, url: string) {
  const script = 'curl -sS --fail -w "%{stderr}%{time_total}" "$@" | sha256sum';
  const { stdout, stderr } = await run('sh', ['-c', script, 'sh', ...server.tls, url], {
    maxBuffer: 1024 * 1024,
  });
  return { sha256: stdout.split(' ')[0] ?? '', seconds: Number(stderr.trim().split(/\s+/).pop()) };
}

async function wave(
  server: Server,
  kind: ScaleResult['server'],
  url: string,
  expected: string,
): Promise<ScaleResult> {
  const m = await measured(server.pids, () =>
    Promise.all(
      Array.from({ length: clients }, () => client(server, url).catch(() => ({ sha256: '', seconds: 0 }))),
    ),
  );
  const good = m.result.filter((r) => r.sha256 === expected);
  const times = good.map((r) => r.seconds);
  return {
    server: kind,
    clients,
    complete: good.length,
    rate: (good.length * sizeMib * 1024 * 1024) / m.seconds,
    slowest: Math.max(...times),
    fastest: Math.min(...times),
    rss: m.peak * 1024,
  };
}

const nginxFound = await findNginx();
if (!nginxFound) {
  console.error('nginx is not installed: apt-get install nginx-light (the benchmark compares against it)');
  process.exit(1);
}
const dir = await mkdtemp(join(tmpdir(), 'repoman-scale-'));
const started: Server[] = [];
try {
  const image = join(dir, 'image.bin');
  await randomFile(image, sizeMib);
  const hash = createHash('sha256');
  await pipeline(createReadStream(image), hash);
  const expected = hash.digest('hex');
  const repoman = await startRepoman(join(dir, 'repoman'));
  started.push(repoman);
  await curl([...repoman.tls, '-d', 'name=big.img', `${repoman.https}/api/images`]);
  await curl([...repoman.tls, '-T', image, `${repoman.https}/api/images/raw/big.img`]);
  const nginx = await startNginx(nginxFound.binary, join(dir, 'nginx'), join(dir, 'repoman'));
  started.push(nginx);
  await curl([...nginx.tls, '-T', image, `${nginx.https}/big.img`]);

  const results = [
    await wave(repoman, 'repoman', `${repoman.https}/api/images/raw/admin/big.img`, expected),
    await wave(nginx, 'nginx', `${nginx.https}/big.img`, expected),
  ];
  const [ours, theirs] = results as [ScaleResult, ScaleResult];
  const lines = [
    `${clients} clients at once, ${sizeMib} MiB each, HTTPS with client certificates on loopback; nginx ${nginxFound.version}`,
    '',
    '| figure | Repoman | nginx | Repoman/nginx |',
    '| --- | --- | --- | --- |',
    `| complete, right SHA-256 | ${ours.complete} of ${clients} | ${theirs.complete} of ${clients} | |`,
    `| aggregate rate | ${(ours.rate / 1e6).toFixed(0)} MB/s | ${(theirs.rate / 1e6).toFixed(0)} MB/s | ${(ours.rate / theirs.rate).toFixed(2)} |`,
    `| slowest/fastest client | ${(ours.slowest / ours.fastest).toFixed(2)} | ${(theirs.slowest / theirs.fastest).toFixed(2)} | |`,
    `| peak RSS | ${(ours.rss / 1e6).toFixed(0)} MB | ${(theirs.rss / 1e6).toFixed(0)} MB | ${(ours.rss / theirs.rss).toFixed(2)} |`,
  ];
  await mkdir(out, { recursive: true });
  await writeFile(join(out, 'scale.json'), `${JSON.stringify({ sizeMib, clients, results }, null, 2)}\n`);
  await writeFile(join(out, 'scale.md'), `${lines.join('\n')}\n`);
  console.log(lines.join('\n'));
  if (ours.complete !== clients) process.exitCode = 1;
} finally {
  for (const server of started.reverse()) await server.stop().catch(() => {});
  await rm(dir, { recursive: true, force: true });
}
