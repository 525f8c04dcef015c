/**
 * Memory of one large upload and download: Repoman (the built server, as `npm start` runs it) beside nginx
 * receiving (WebDAV PUT) and serving the same file over HTTPS on loopback, with curl as the client of both.
 * Reports idle and peak RSS (sampled from /proc every 50 ms), throughput, and the ratios Repoman/nginx; one
 * server process each (Repoman's `workers = 1`, nginx's `worker_processes 1`).
 *
 *   node bench/memory.ts [--size-mib N] [--quick | --smoke]   (default 1024 MiB; --quick: 64; --smoke: 8)
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  curl,
  findNginx,
  measured,
  randomFile,
  rssKib,
  type Server,
  startNginx,
  startRepoman,
} from './lib.ts';

const { values } = parseArgs({
  options: { 'size-mib': { type: 'string' }, quick: { type: 'boolean' }, smoke: { type: 'boolean' } },
});
const sizeMib = Number(values['size-mib'] ?? (values.smoke ? 8 : values.quick ? 64 : 1024));

interface Figures {
  idle: number;
  upload: number;
  download: number;
  uploadRate: number;
  downloadRate: number;
}

/** Idle RSS, then one upload and one download with their peak RSS and rates. */
async function figures(server: Server, put: string, get: string, image: string): Promise<Figures> {
  await new Promise((done) => setTimeout(done, 1000));
  const idle = await rssKib(await server.pids());
  const up = await measured(server.pids, () => curl([...server.tls, '-T', image, put]));
  // Read once, unmeasured (as lib.ts uploadAndRead does, outside the upload's measure here).
  await curl([...server.tls, get]);
  const down = await measured(server.pids, () => curl([...server.tls, get]));
  return { idle, upload: up.peak, download: down.peak, uploadRate: up.result, downloadRate: down.result };
}

async function repoman(dir: string, image: string): Promise<Figures> {
  // One server process, as nginx below has one worker: the memory of one transfer, not of a process per core.
  const server = await startRepoman(join(dir, 'repoman'), {}, { workers: 1 });
  try {
    await curl([...server.tls, '-d', 'name=big.img', `${server.https}/api/images`]);
    return await figures(
      server,
      `${server.https}/api/images/raw/big.img`,
      `${server.https}/api/images/raw/admin/big.img`,
      image,
    );
  } finally {
    await server.stop();
  }
}

async function nginx(dir: string, image: string, binary: string): Promise<Figures> {
  // The same host certificate Repoman made for itself.
  const server = await startNginx(binary, join(dir, 'nginx'), join(dir, 'repoman'), { workers: 1 });
  try {
    return await figures(server, `${server.https}/big.img`, `${server.https}/big.img`, image);
  } finally {
    await server.stop();
  }
}

const dir = await mkdtemp(join(tmpdir(), 'repoman-bench-'));
try {
  const image = join(dir, 'image.bin');
  await randomFile(image, sizeMib);
  const ours = await repoman(dir, image);
  const found = await findNginx();
  const theirs = found ? await nginx(dir, image, found.binary) : null;
  const mb = (kib: number) => `${(kib / 1024).toFixed(0)} MB`;
  const rate = (bytes: number) => `${(bytes / 1e6).toFixed(0)} MB/s`;
  const ratio = (a: number, b: number | undefined) => (b ? (a / b).toFixed(2) : 'n/a');
  const nginxVersion = found?.version ?? 'not installed';
  const rows: [string, string, string | undefined, string][] = [
    ['RSS idle', mb(ours.idle), theirs ? mb(theirs.idle) : undefined, ratio(ours.idle, theirs?.idle)],
    [
      'RSS peak, upload',
      mb(ours.upload),
      theirs ? mb(theirs.upload) : undefined,
      ratio(ours.upload, theirs?.upload),
    ],
    [
      'RSS peak, download',
      mb(ours.download),
      theirs ? mb(theirs.download) : undefined,
      ratio(ours.download, theirs?.download),
    ],
    [
      'upload rate',
      rate(ours.uploadRate),
      theirs ? rate(theirs.uploadRate) : undefined,
      ratio(ours.uploadRate, theirs?.uploadRate),
    ],
    [
      'download rate',
      rate(ours.downloadRate),
      theirs ? rate(theirs.downloadRate) : undefined,
      ratio(ours.downloadRate, theirs?.downloadRate),
    ],
  ];
  console.log(`\n${sizeMib} MiB over HTTPS on loopback, curl as the client; nginx: ${nginxVersion}\n`);
  console.log('| figure | Repoman | nginx | Repoman/nginx |\n| --- | --- | --- | --- |');
  for (const [name, a, b, r] of rows) console.log(`| ${name} | ${a} | ${b ?? 'n/a'} | ${r} |`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
