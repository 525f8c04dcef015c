/**
 * What the benchmarks share: starting Repoman (the build, as `npm start` runs it) and nginx (Debian's) on
 * loopback with the same host certificate and the same number of worker processes, sampling the RSS and CPU
 * time of a server's whole process tree from /proc, running curl (with its own CPU time), and writing test
 * files.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { freePort } from '../packages/server/test/helpers/http.ts';

export const run = promisify(execFile);
export const root = resolve(import.meta.dirname, '..');
const TICKS = 100; // clock ticks per second in /proc/<pid>/stat (USER_HZ)

/** The cores this process may use: the `workers` axis runs 1 and this many server processes. */
export const cores = availableParallelism();

/**
 * A process and all its descendants (a server's primary and its workers, nginx's master and its workers),
 * from the parent of every process in /proc (this kernel may lack /proc/<pid>/task/<tid>/children).
 */
export async function processTree(rootPid: number): Promise<number[]> {
  const children = new Map<number, number[]>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (parent) children.set(parent, [...(children.get(parent) ?? []), Number(name)]);
  }
  const tree = [rootPid];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i] as number) ?? []));
  return tree;
}

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

/**
 * Runs `work` while sampling the summed RSS of `pids` every 50 ms; CPU time and wall time around it. The list
 * of processes is read again every second (a crashed worker's replacement counts), not at every sample: walking
 * /proc costs the machine more the more clients are running.
 */
export async function measured<T>(
  pids: () => Promise<number[]>,
  work: () => Promise<T>,
): Promise<Measured<T>> {
  let peak = 0;
  let running = true;
  const before = await cpuSeconds(await pids());
  const sampler = (async () => {
    let list = await pids();
    let listed = performance.now();
    do {
      if (performance.now() - listed > 1000) [list, listed] = [await pids(), performance.now()];
      peak = Math.max(peak, await rssKib(list));
      await new Promise((done) => setTimeout(done, 50));
    } while (running); // at least one sample, however short the work
  })();
  const started = performance.now();
  try {
    const result = await work();
    const seconds = (performance.now() - started) / 1000;
    const after = await cpuSeconds(await pids());
    // The peak once the sampler has taken its sample: work shorter than one would otherwise report 0.
    running = false;
    await sampler;
    return { result, peak, seconds, user: after.user - before.user, system: after.system - before.system };
  } finally {
    running = false;
    await sampler;
  }
}

/** curl, discarding what it downloads; resolves with its upload or download rate (bytes/s). */
/**
 * Uploads `file` to Repoman at `put` and reads it once from `get`, unmeasured: Repoman's uploads to a directory
 * bypass the page cache (O_DIRECT) and nginx's `PUT` leaves its file there, so that the downloads measured next
 * come from memory on both servers. (What the first read from disk costs is in docs/performance.md.)
 */
export async function uploadAndRead(server: Pick<Server, 'tls'>, file: string, put: string, get: string) {
  const rate = await curl([...server.tls, '-T', file, put]);
  await curl([...server.tls, get]);
  return rate;
}

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

/** What one curl moved and the CPU time it spent doing so (its user and system seconds, from the shell's `times`). */
export interface Transfer {
  rate: number;
  user: number;
  system: number;
}

/** curl as `curl` runs it, through a shell that says how much CPU the curl used: the clients' share of the cores. */
export async function transfer(args: string[]): Promise<Transfer> {
  const script = 'curl "$@"; status=$?; times >&2; exit $status';
  const { stdout, stderr } = await run('sh', [
    '-c',
    script,
    'sh',
    '-sS',
    '--fail',
    '-o',
    '/dev/null',
    '-w',
    '%{speed_upload} %{speed_download}',
    ...args,
  ]);
  const [up, down] = stdout.split(' ').map(Number);
  // `times` prints the shell's own times, then its children's: "0m1.370000s 0m1.220000s".
  const children = stderr.trim().split('\n').pop() ?? '';
  const [user, system] = [...children.matchAll(/(\d+)m([\d.]+)s/g)].map(
    (m) => Number(m[1]) * 60 + Number(m[2]),
  );
  return { rate: Math.max(up ?? 0, down ?? 0), user: user ?? 0, system: system ?? 0 };
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

/**
 * Repoman from the build, with its own data directory (a development PKI is made at first start); `workers`
 * server processes (`REPOMAN_WORKERS`; left to the configuration's default when not given).
 */
export async function startRepoman(
  data: string,
  env: Record<string, string> = {},
  options: { workers?: number } = {},
): Promise<Server> {
  const [https, http] = [await freePort(), await freePort()];
  const child = spawn(
    process.execPath,
    [
      '--conditions=repoman-dist',
      '--max-semi-space-size=1',
      '--heap-growing-percent=100',
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
        ...(options.workers === undefined ? {} : { REPOMAN_WORKERS: String(options.workers) }),
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
    // The primary and its workers (the hashing worker is a thread: counted with its process).
    pids: () => processTree(child.pid as number),
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
 * `workers` worker processes (default: one per core).
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
events { worker_connections 4096; }
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
    pids: () => processTree(child.pid as number), // the master and its workers
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
