/**
 * What the benchmarks share: starting Repoman (the build, as `npm start` runs it) and nginx (Debian's) on
 * loopback with the same host certificate, sampling a process tree's RSS and CPU time from /proc, running
 * curl, and writing test files.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { freePort } from '../packages/server/test/helpers/http.ts';

export const run = promisify(execFile);
export const root = resolve(import.meta.dirname, '..');
const TICKS = 100; // clock ticks per second in /proc/<pid>/stat (USER_HZ)

export async function rssKib(pids: number[]): Promise<number> {
  let total = 0;
  for (const pid of pids) {
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    total += Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  }
  return total;
}

/** User and system CPU seconds the processes (all their threads) have used so far. */
export async function cpuSeconds(pids: number[]): Promise<{ user: number; system: number }> {
  let user = 0;
  let system = 0;
  for (const pid of pids) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    // Fields after the command name (which may hold spaces) in parentheses: utime is the 14th, stime the 15th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    user += Number(fields[11] ?? 0) / TICKS;
    system += Number(fields[12] ?? 0) / TICKS;
  }
  return { user, system };
}

export interface Measured<T> {
  result: T;
  /** Peak RSS, KiB. */
  peak: number;
  /** CPU seconds used meanwhile. */
  user: number;
  system: number;
  /** Wall time, seconds. */
  seconds: number;
}

/** Runs `work` while sampling the RSS of `pids` every 50 ms; CPU time and wall time around it. */
export async function measured<T>(
  pids: () => Promise<number[]>,
  work: () => Promise<T>,
): Promise<Measured<T>> {
  let peak = 0;
  let running = true;
  const sampler = (async () => {
    while (running) {
      peak = Math.max(peak, await rssKib(await pids()));
      await new Promise((done) => setTimeout(done, 50));
    }
  })();
  const before = await cpuSeconds(await pids());
  const started = performance.now();
  try {
    const result = await work();
    const seconds = (performance.now() - started) / 1000;
    const after = await cpuSeconds(await pids());
    return { result, peak, seconds, user: after.user - before.user, system: after.system - before.system };
  } finally {
    running = false;
    await sampler;
  }
}

/** curl, discarding what it downloads; resolves with its upload or download rate (bytes/s). */
export async function curl(args: string[]): Promise<number> {
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

/** Waits up to a minute (a loaded machine starts slowly) for `check` to pass; `gone` says why to stop early. */
export async function waitFor(check: () => Promise<unknown>, what: string, gone?: () => string | null) {
  for (let i = 0; i < 600; i++) {
    const why = gone?.();
    if (why) throw new Error(`${what} did not start: ${why}`);
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

export interface Server {
  https: string;
  http: string;
  /** curl options for TLS: the CA, and a client certificate. */
  tls: string[];
  pids: () => Promise<number[]>;
  stop: () => Promise<void>;
}

function stopper(child: ChildProcess) {
  return () =>
    new Promise<void>((done) => {
      if (child.exitCode !== null) return done();
      child.once('exit', () => done());
      child.kill();
    });
}

/** Repoman from the build, with its own data directory (a development PKI is made at first start). */
export async function startRepoman(data: string, env: Record<string, string> = {}): Promise<Server> {
  const [https, http] = [await freePort(), await freePort()];
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
        REPOMAN_LOG_LEVEL: 'warn',
        // Every client here comes from loopback, standing for machines that each have an address of their own.
        REPOMAN_CONNECTIONS_MAX_PER_ADDRESS: '100000',
        ...env,
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  // what it said on stderr, the last of it: why it did not start, if it does not
  let said = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    said = (said + chunk.toString()).slice(-2000);
  });
  const tls = ['--cacert', join(data, 'ca/ca.pem'), '--cert', join(data, 'admin/admin.pem')];
  const server: Server = {
    https: `https://localhost:${https}`,
    http: `http://localhost:${http}`,
    tls,
    pids: async () => [child.pid as number], // the hashing worker is a thread: counted with the process
    stop: stopper(child),
  };
  await waitFor(
    () => curl([...tls, `${server.https}/api/whoami`]),
    'Repoman',
    () => (child.exitCode !== null ? `it exited with ${child.exitCode}: ${said.trim()}` : null),
  );
  return server;
}

/** The nginx binary and its version, or null (Debian's package: `apt-get install nginx-light`). */
export async function findNginx(): Promise<{ binary: string; version: string } | null> {
  const binary = await run('sh', ['-c', 'command -v nginx || ls /usr/sbin/nginx']).then(
    ({ stdout }) => stdout.trim().split('\n')[0] as string,
    () => null,
  );
  if (!binary) return null;
  const { stderr } = await run(binary, ['-v']);
  return { binary, version: stderr.trim().replace('nginx version: ', '') };
}

/**
 * nginx serving and receiving (WebDAV PUT) files under `dir`, over HTTPS with Repoman's host certificate
 * (asking for a client certificate, as Repoman does) and plain HTTP; `/discard/` reads and drops bodies.
 */
export async function startNginx(
  binary: string,
  dir: string,
  pki: string,
  options: { workers?: number } = {},
): Promise<Server> {
  await mkdir(join(dir, 'files'), { recursive: true });
  await mkdir(join(dir, 'tmp'), { recursive: true });
  const [https, http] = [await freePort(), await freePort()];
  await writeFile(
    join(dir, 'nginx.conf'),
    `${process.getuid?.() === 0 ? 'user root root; ' : ''}daemon off; worker_processes ${options.workers ?? 'auto'}; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events { worker_connections 1024; }
http {
  access_log off; client_max_body_size 0; client_body_temp_path ${dir}/tmp; sendfile on;
  server {
    listen 127.0.0.1:${https} ssl; listen 127.0.0.1:${http};
    ssl_certificate ${pki}/host/hostcert.pem; ssl_certificate_key ${pki}/host/hostkey.pem;
    ssl_client_certificate ${pki}/ca/ca.pem; ssl_verify_client optional_no_ca;
    root ${dir}/files; dav_methods PUT; create_full_put_path on;
    location /discard/ { return 204; }
  }
}
`,
  );
  const child = spawn(binary, ['-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: 'ignore' });
  const tls = ['--cacert', join(pki, 'ca/ca.pem'), '--cert', join(pki, 'admin/admin.pem')];
  const server: Server = {
    https: `https://localhost:${https}`,
    http: `http://localhost:${http}`,
    tls,
    pids: async () => {
      const { stdout } = await run('pgrep', ['-P', String(child.pid)]).catch(() => ({ stdout: '' }));
      return [child.pid as number, ...stdout.split('\n').filter(Boolean).map(Number)];
    },
    stop: stopper(child),
  };
  await waitFor(() => run('curl', ['-sS', ...tls, `${server.https}/`]), 'nginx');
  return server;
}

function randomMib(): Uint8Array {
  const mib = new Uint8Array(1024 * 1024);
  for (let at = 0; at < mib.length; at += 65536) crypto.getRandomValues(mib.subarray(at, at + 65536));
  return mib;
}

/** A file of `mib` MiB of random bytes (bytes nothing can compress or skip). */
export async function randomFile(path: string, mib: number, bytes = mib * 1024 * 1024): Promise<void> {
  await pipeline(
    Readable.from(
      (function* () {
        for (let left = bytes; left > 0; left -= 1024 * 1024) {
          const chunk = randomMib();
          yield left >= chunk.length ? chunk : chunk.subarray(0, left);
        }
      })(),
    ),
    createWriteStream(path),
  );
}
