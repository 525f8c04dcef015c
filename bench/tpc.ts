/**
 * Third-party copy between two Repoman servers on this machine, beside a plain download between the same
 * two: server B pulls an image from server A (`COPY` with `Source:` and a capability of A's in
 * `TransferHeaderAuthorization`), and A pushes it to B (`Destination:`); the references are curl downloading
 * the same image from A over HTTPS to /dev/null (the target: a copy at 0.8 of it or better), and curl
 * uploading it to B (what B's storing the bytes costs by itself). A copy does more than the download: B stores
 * the bytes (to disk), hashes them with every configured digest and inspects them, as any upload; on one
 * machine both servers and the client share its cores. Each rate is the best of `--rounds`.
 *
 *   node bench/tpc.ts [--size-mib 1024] [--rounds 3] [--smoke] [--quick] [--out DIR]
 */
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { curl, randomFile, root, run, type Server, startRepoman, transfer, uploadAndRead } from './lib.ts';

const { values } = parseArgs({
  strict: false, // npm run bench passes every benchmark the same options
  options: {
    'size-mib': { type: 'string' },
    rounds: { type: 'string' },
    smoke: { type: 'boolean' },
    quick: { type: 'boolean' },
    out: { type: 'string' },
  },
});
const sizeMib = Number(values['size-mib'] ?? (values.smoke ? 16 : values.quick ? 256 : 1024));
const rounds = Number(values.rounds ?? (values.smoke ? 1 : 3));
const out = resolve(typeof values.out === 'string' ? values.out : join(root, 'bench', 'results'));

/** A copy with curl: the perf-marker stream read to its end; the wall time, and the outcome line. */
async function copy(
  server: Server,
  path: string,
  headers: string[],
): Promise<{ seconds: number; outcome: string }> {
  const started = performance.now();
  const { stdout } = await run(
    'curl',
    [
      '-sS',
      '--fail',
      ...server.tls,
      '-X',
      'COPY',
      ...headers.flatMap((h) => ['-H', h]),
      `${server.https}${path}`,
    ],
    {
      maxBuffer: 64 * 1024 * 1024,
    },
  );
  const seconds = (performance.now() - started) / 1000;
  const outcome = stdout.trim().split('\n').at(-1) ?? '';
  if (!outcome.startsWith('success')) throw new Error(`the copy failed: ${outcome}`);
  return { seconds, outcome };
}

/** A capability of the admin's on `server` for `path`. */
async function capability(server: Server, path: string, activities: string): Promise<string> {
  const { stdout } = await run('curl', [
    '-sS',
    '--fail',
    ...server.tls,
    '-X',
    'POST',
    '-H',
    'Content-Type: application/macaroon-request',
    '-d',
    JSON.stringify({ caveats: [`activity:${activities}`], validity: 'PT2H' }),
    `${server.https}${path}`,
  ]);
  return (JSON.parse(stdout) as { macaroon: string }).macaroon;
}

const work = await mkdtemp(join(tmpdir(), 'repoman-bench-tpc-'));
const servers: Server[] = [];
try {
  const file = join(work, 'image.bin');
  await randomFile(file, sizeMib);
  const size = sizeMib * 1024 * 1024;
  // Two servers with one development PKI (B's data starts as a copy of A's keys and CAs): each trusts the
  // other's host certificate, as two sites that list each other's CA.
  const dataA = join(work, 'a');
  const dataB = join(work, 'b');
  const allowed = { REPOMAN_TPC_ALLOWED_NETWORKS: '127.0.0.0/8,::1' };
  const a = await startRepoman(dataA, allowed);
  servers.push(a);
  await mkdir(dataB);
  for (const part of ['ca', 'admin', 'certificates', 'host'])
    await cp(join(dataA, part), join(dataB, part), { recursive: true });
  const b = await startRepoman(dataB, allowed);
  servers.push(b);

  const source = '/api/images/raw/admin/bench.img';
  await uploadAndRead(a, file, `${a.https}${source}`, `${a.https}${source}`);
  const best = { download: 0, upload: 0, pull: 0, push: 0 };
  for (let round = 0; round < rounds; round++) {
    const download = await transfer([...a.tls, `${a.https}${source}`]);
    best.download = Math.max(best.download, download.rate);
    const upload = await transfer([
      ...b.tls,
      '-T',
      file,
      `${b.https}/api/images/raw/admin/uploaded-${round}.img`,
    ]);
    best.upload = Math.max(best.upload, upload.rate);
    const token = await capability(a, source, 'DOWNLOAD');
    const pull = await copy(b, `/api/images/raw/admin/pulled-${round}.img`, [
      `Source: ${a.https}${source}`,
      `TransferHeaderAuthorization: Bearer ${token}`,
      'RequireChecksumVerification: true',
    ]);
    best.pull = Math.max(best.pull, size / pull.seconds);
    const target = `/api/images/raw/admin/pushed-${round}.img`;
    const grant = await capability(b, target, 'UPLOAD');
    const push = await copy(a, source, [
      `Destination: ${b.https}${target}`,
      `TransferHeaderAuthorization: Bearer ${grant}`,
      'RequireChecksumVerification: true',
    ]);
    best.push = Math.max(best.push, size / push.seconds);
    // The copies' images go, so that the next round's land on a disk as empty as this one's.
    for (const [server, path] of [
      [b, `/api/images/admin/pulled-${round}.img`],
      [b, `/api/images/admin/pushed-${round}.img`],
      [b, `/api/images/admin/uploaded-${round}.img`],
    ] as const)
      await curl([...server.tls, '-X', 'DELETE', `${server.https}${path}`]);
  }
  const ratio = Math.min(best.pull, best.push) / best.download;
  const mbps = (rate: number) => `${(rate / 1e6).toFixed(0)} MB/s`;
  const table = [
    `Third-party copy of ${sizeMib} MiB between two servers on this machine (best of ${rounds})`,
    '',
    '| transfer | rate | of the download |',
    '|---|---|---|',
    `| HTTPS download from A (curl, to /dev/null) | ${mbps(best.download)} | 1.00 |`,
    `| HTTPS upload to B (curl -T): storing alone | ${mbps(best.upload)} | ${(best.upload / best.download).toFixed(2)} |`,
    `| COPY pull: B fetches from A, stores, verifies | ${mbps(best.pull)} | ${(best.pull / best.download).toFixed(2)} |`,
    `| COPY push: A sends to B, which stores, verifies | ${mbps(best.push)} | ${(best.push / best.download).toFixed(2)} |`,
  ].join('\n');
  console.log(`\n${table}\n`);
  await mkdir(out, { recursive: true });
  const ofUpload = Math.min(best.pull, best.push) / best.upload;
  console.log(`The slower copy: ${ratio.toFixed(2)} of the download, ${ofUpload.toFixed(2)} of the upload\n`);
  await writeFile(
    join(out, 'tpc.json'),
    `${JSON.stringify({ sizeMib, rounds, ...best, ratio, ofUpload }, null, 2)}\n`,
  );
  await writeFile(join(out, 'tpc.md'), `${table}\n`);
} finally {
  for (const server of servers) await server.stop();
  await rm(work, { recursive: true, force: true });
}
