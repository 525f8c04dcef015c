/**
 * Memory of one large upload and download: Repoman (the built server, as `npm start` runs it) beside nginx
 * receiving (WebDAV PUT) and serving the same file over HTTPS on loopback, with curl as the client of both.
 * Reports idle and peak RSS (sampled from /proc every 50 ms), throughput, and the ratios Repoman/nginx.
 *
 *   npm run bench -- [--size-mib N] [--quick]      (default 1024 MiB; --quick: 64 MiB)
 */
import { execFile, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs, promisify } from 'node:util';
import { freePort } from '../packages/server/test/helpers/http.ts';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: { 'size-mib': { type: 'string' }, quick: { type: 'boolean' } },
});
const sizeMib = values.quick ? 64 : Number(values['size-mib'] ?? 1024);

async function rssKib(pids: number[]): Promise<number> {
  let total = 0;
  for (const pid of pids) {
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    total += Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  }
  return total;
}

/** Runs `work` while sampling the RSS of `pids`; returns the peak (KiB) and what work returned. */
async function sampled<T>(pids: () => Promise<number[]>, work: () => Promise<T>) {
  let peak = 0;
  let running = true;
  const sampler = (async () => {
    while (running) {
      peak = Math.max(peak, await rssKib(await pids()));
      await new Promise((done) => setTimeout(done, 50));
    }
  })();
  try {
    return { result: await work(), peak };
  } finally {
    running = false;
    await sampler;
  }
}

async function curl(args: string[]): Promise<number> {
  const { stdout } = await run('curl', [
    '-sS',
    '--fail',
    '-o',
    '/dev/null',
    '-w',
    '%{speed_upload} %{speed_download}',
    ...args,
  ]);
  const [up, down] = stdout.split(' ').map(Number);
  return Math.max(up ?? 0, down ?? 0);
}

async function waitFor(check: () => Promise<unknown>, what: string) {
  for (let i = 0; i < 200; i++) {
    if (
      await check().then(
        () => true,
        () => false,
      )
    )
      return;
    await new Promise((done) => setTimeout(done, 100));
  }
  throw new Error(`${what} did not start`);
}

interface Figures {
  idle: number;
  upload: number;
  download: number;
  uploadRate: number;
  downloadRate: number;
}

async function repoman(dir: string, image: string): Promise<Figures> {
  const [https, http] = [await freePort(), await freePort()];
  const data = join(dir, 'repoman');
  const child = spawn(
    process.execPath,
    [
      '--conditions=repoman-dist',
      '--max-semi-space-size=1',
      join(root, 'packages/server/dist/main.js'),
      'serve',
    ],
    {
      env: {
        ...process.env,
        REPOMAN_DATA_DIR: data,
        REPOMAN_HTTPS_PORT: String(https),
        REPOMAN_HTTP_PORT: String(http),
      },
      stdio: 'ignore',
    },
  );
  try {
    const tls = ['--cacert', join(data, 'ca/ca.pem'), '--cert', join(data, 'admin/admin.pem')];
    const base = `https://localhost:${https}`;
    await waitFor(() => curl([...tls, `${base}/api/whoami`]), 'Repoman');
    await curl([...tls, '-d', 'name=big.img', `${base}/api/images`]);
    const pids = async () => [child.pid as number]; // the hashing worker is a thread: counted in this RSS
    await new Promise((done) => setTimeout(done, 1000));
    const idle = await rssKib(await pids());
    const up = await sampled(pids, () => curl([...tls, '-T', image, `${base}/api/images/raw/big.img`]));
    const down = await sampled(pids, () => curl([...tls, `${base}/api/images/raw/admin/big.img`]));
    return { idle, upload: up.peak, download: down.peak, uploadRate: up.result, downloadRate: down.result };
  } finally {
    child.kill();
  }
}

async function nginx(dir: string, image: string): Promise<Figures | null> {
  const binary = await run('sh', ['-c', 'command -v nginx || ls /usr/sbin/nginx']).then(
    ({ stdout }) => stdout.trim().split('\n')[0] as string,
    () => null,
  );
  if (!binary) return null;
  const prefix = join(dir, 'nginx');
  await mkdir(join(prefix, 'files'), { recursive: true });
  await mkdir(join(prefix, 'tmp'), { recursive: true });
  // The same host certificate Repoman made for itself.
  const pki = join(dir, 'repoman');
  const port = await freePort();
  await writeFile(
    join(prefix, 'nginx.conf'),
    `${process.getuid?.() === 0 ? 'user root root; ' : ''}daemon off; worker_processes 1; pid ${prefix}/nginx.pid; error_log ${prefix}/error.log;
events { worker_connections 64; }
http {
  access_log off; client_max_body_size 0; client_body_temp_path ${prefix}/tmp; sendfile on;
  server {
    listen 127.0.0.1:${port} ssl; ssl_certificate ${pki}/host/hostcert.pem; ssl_certificate_key ${pki}/host/hostkey.pem;
    root ${prefix}/files; dav_methods PUT; create_full_put_path on;
  }
}
`,
  );
  const child = spawn(binary, ['-p', prefix, '-c', join(prefix, 'nginx.conf')], { stdio: 'ignore' });
  try {
    const tls = ['--cacert', join(pki, 'ca/ca.pem')];
    const base = `https://localhost:${port}`;
    await waitFor(() => run('curl', ['-sS', ...tls, `${base}/`]), 'nginx');
    const pids = async () => {
      const { stdout } = await run('pgrep', ['-P', String(child.pid)]).catch(() => ({ stdout: '' }));
      return [child.pid as number, ...stdout.split('\n').filter(Boolean).map(Number)];
    };
    await new Promise((done) => setTimeout(done, 500));
    const idle = await rssKib(await pids());
    const up = await sampled(pids, () => curl([...tls, '-T', image, `${base}/big.img`]));
    const down = await sampled(pids, () => curl([...tls, `${base}/big.img`]));
    return { idle, upload: up.peak, download: down.peak, uploadRate: up.result, downloadRate: down.result };
  } finally {
    child.kill();
  }
}

const dir = await mkdtemp(join(tmpdir(), 'repoman-bench-'));
try {
  const image = join(dir, 'image.bin');
  await pipeline(
    Readable.from(
      (function* () {
        for (let i = 0; i < sizeMib; i++) yield randomMib();
      })(),
    ),
    createWriteStream(image),
  );
  const ours = await repoman(dir, image);
  const theirs = await nginx(dir, image);
  const mb = (kib: number) => `${(kib / 1024).toFixed(0)} MB`;
  const rate = (bytes: number) => `${(bytes / 1e6).toFixed(0)} MB/s`;
  const ratio = (a: number, b: number | undefined) => (b ? (a / b).toFixed(2) : 'n/a');
  const nginxVersion = theirs
    ? (
        await run('nginx', ['-v']).then(
          ({ stderr }) => stderr.trim(),
          () => 'nginx',
        )
      ).replace('nginx version: ', '')
    : 'not installed';
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

function randomMib(): Uint8Array {
  const mib = new Uint8Array(1024 * 1024);
  for (let at = 0; at < mib.length; at += 65536) crypto.getRandomValues(mib.subarray(at, at + 65536));
  return mib;
}
