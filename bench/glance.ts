/**
 * OpenStack Glance, the peer users would pick instead, beside Repoman and nginx in the same run: the peer's
 * folder (`../shared/peers/glance` beside the checkout, or `--glance DIR`) holds `start.sh`, which installs
 * Debian's glance-api if it is missing and starts it on loopback (plain HTTP, SQLite, a filesystem store,
 * identity from trusted headers, MD5 and SHA-512 computed on upload), and `stop.sh`. The folder is copied to
 * a temporary directory first: its scripts keep their state beside themselves.
 */
import { execFile } from 'node:child_process';
import { cp, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../packages/server/test/helpers/http.ts';
import { processTree, root, run } from './lib.ts';

const exec = promisify(execFile);

/** Where CI lays the peers out: a `shared` folder beside the checkout. */
export const defaultGlanceFolder = resolve(root, '..', 'shared', 'peers', 'glance');

/** The headers Glance takes identity from (its `trusted` pipeline: no Keystone). */
const IDENTITY = [
  '-H',
  'X-Identity-Status: Confirmed',
  '-H',
  'X-Project-Id: bench',
  '-H',
  'X-User-Id: bench',
  '-H',
  'X-Roles: admin,member,reader',
];

export interface Glance {
  url: string;
  workers: number;
  /** curl arguments that upload `file` to the image `id`, and download it. */
  upload: (id: string, file: string) => string[];
  download: (id: string) => string[];
  /** A new, empty image; its id. */
  create: (name: string) => Promise<string>;
  /** The image's status and MD5 (Glance's `checksum`). */
  show: (id: string) => Promise<{ status: string; checksum: string | null }>;
  remove: (id: string) => Promise<void>;
  pids: () => Promise<number[]>;
  stop: () => Promise<void>;
}

/** Whether Debian's glance-api is installed (the smoke run never installs it). */
export async function glanceInstalled(): Promise<boolean> {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format, not JavaScript's
  return exec('dpkg-query', ['-W', '-f=${Status}', 'glance-api']).then(
    ({ stdout }) => stdout.trim() === 'install ok installed',
    () => false,
  );
}

/** The installed Glance's version (Debian's python3-glance), or null. */
export async function glanceVersion(): Promise<string | null> {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format, not JavaScript's
  return exec('dpkg-query', ['-W', '-f=${Version}', 'python3-glance']).then(
    ({ stdout }) => stdout.trim() || null,
    () => null,
  );
}

/**
 * Copies the peer's folder to `dir` and starts Glance there with `workers` API workers, on free loopback
 * ports; installs glance-api first if it is missing (start.sh does, with apt-get: root only). Throws with
 * start.sh's last words when it cannot.
 */
export async function startGlance(folder: string, dir: string, workers: number): Promise<Glance> {
  await cp(folder, dir, { recursive: true });
  const port = await freePort();
  const env = {
    ...process.env,
    GLANCE_PORT: String(port),
    GLANCE_WORKERS: String(workers),
    GLANCE_WEBDL_PORT: String(await freePort()),
  };
  await exec('bash', [join(dir, 'start.sh')], {
    env,
    timeout: 20 * 60_000,
    maxBuffer: 64 * 1024 * 1024,
  }).catch((error: { stdout?: string; stderr?: string; message: string }) => {
    const said = `${error.stderr ?? ''}\n${error.stdout ?? ''}`.trim().split('\n').slice(-3).join(' / ');
    throw new Error(`start.sh failed: ${said || error.message}`);
  });
  const parent = Number((await readFile(join(dir, 'run', 'glance-api.pid'), 'utf8')).trim());
  const url = `http://127.0.0.1:${port}`;
  const api = async (args: string[]) =>
    (await run('curl', ['-sS', '--fail', ...IDENTITY, ...args], { maxBuffer: 16 * 1024 * 1024 })).stdout;
  return {
    url,
    workers,
    upload: (id, file) => [
      ...IDENTITY,
      '-H',
      'Content-Type: application/octet-stream',
      // As the peer's bench.sh: no `Expect: 100-continue` round trip before the body.
      '-H',
      'Expect:',
      '-X',
      'PUT',
      '-T',
      file,
      `${url}/v2/images/${id}/file`,
    ],
    download: (id) => [...IDENTITY, `${url}/v2/images/${id}/file`],
    create: async (name) => {
      const body = JSON.stringify({ name, disk_format: 'raw', container_format: 'bare' });
      const image = JSON.parse(
        await api(['-H', 'Content-Type: application/json', '-X', 'POST', '-d', body, `${url}/v2/images`]),
      ) as { id: string };
      return image.id;
    },
    show: async (id) => JSON.parse(await api([`${url}/v2/images/${id}`])),
    remove: async (id) => {
      await api(['-X', 'DELETE', `${url}/v2/images/${id}`]);
    },
    pids: () => processTree(parent), // the parent and its API workers
    stop: async () => {
      await exec('bash', [join(dir, 'stop.sh')]).catch(() => {});
    },
  };
}
