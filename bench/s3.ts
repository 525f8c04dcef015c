/**
 * Image bytes on an object store: downloads over HTTPS from Repoman on its local directory, from Repoman on
 * S3 streaming the bytes through (proxied), from Repoman on S3 answering with a redirect to a presigned URL
 * (curl -L), and, as the reference, straight from the object store (a presigned URL, no Repoman at all); and
 * one upload to the directory and to S3. The object store is OpenStack Swift's S3 API on loopback
 * (scripts/swift-s3.sh), run in the same benchmark. For each step: aggregate rate, Repoman's CPU time and
 * peak RSS. Writes s3.json and s3.md to --out.
 *
 *   node bench/s3.ts [--size-mib N] [--clients 1,4] [--quick] [--smoke] [--out DIR]
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { curl, measured, randomFile, root, run, type Server, startRepoman, uploadAndRead } from './lib.ts';

const exec = promisify(execFile);
const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string' },
    clients: { type: 'string' },
    quick: { type: 'boolean' },
    smoke: { type: 'boolean' },
    out: { type: 'string' },
  },
});
const sizeMib = Number(values['size-mib'] ?? (values.smoke ? 8 : values.quick ? 128 : 1024));
const counts = (values.clients ?? (values.smoke ? '1' : '1,4')).split(',').map(Number);
const out = resolve(values.out ?? join(root, 'bench', 'results'));
const size = sizeMib * 1024 * 1024;

interface Step {
  mode: string;
  clients: number;
  rate: number;
  user: number;
  system: number;
  rss: number;
  seconds: number;
}

const dir = await mkdtemp(join(tmpdir(), 'repoman-s3-bench-'));
const swiftDir = join(dir, 'swift');
const stops: (() => Promise<unknown>)[] = [];
try {
  const { stdout } = await exec(join(root, 'scripts/swift-s3.sh'), ['start', swiftDir]);
  stops.push(() => exec(join(root, 'scripts/swift-s3.sh'), ['stop', swiftDir]));
  const swift = Object.fromEntries(
    stdout
      .trim()
      .split('\n')
      .map((l) => l.split('=', 2) as [string, string]),
  );
  const s3 = (bucket: string, redirect: boolean) => ({
    REPOMAN_BLOB_STORE: 's3',
    REPOMAN_S3_ENDPOINT: swift.S3_ENDPOINT as string,
    REPOMAN_S3_BUCKET: bucket,
    REPOMAN_S3_PATH_STYLE: 'true',
    REPOMAN_S3_ACCESS_KEY_ID: swift.AWS_ACCESS_KEY_ID as string,
    REPOMAN_S3_SECRET_ACCESS_KEY: swift.AWS_SECRET_ACCESS_KEY as string,
    REPOMAN_S3_CREATE_BUCKET: 'true',
    REPOMAN_S3_REDIRECT_DOWNLOADS: String(redirect),
  });
  const image = join(dir, 'image.bin');
  await randomFile(image, sizeMib);

  const start = async (name: string, env: Record<string, string>) => {
    const server = await startRepoman(join(dir, name), { REPOMAN_UPLOADS_KEEP_VERSIONS: '1', ...env });
    stops.push(server.stop);
    await curl([...server.tls, '-d', 'name=big.img', `${server.https}/api/images`]);
    await curl([...server.tls, '-d', 'name=up.img', `${server.https}/api/images`]);
    await uploadAndRead(
      server,
      image,
      `${server.https}/api/images/raw/big.img`,
      `${server.https}/api/images/raw/admin/big.img`,
    );
    return server;
  };
  const directory = await start('directory', {});
  const proxied = await start('s3', s3('repoman-bench-proxied', false));
  const redirected = await start('s3-redirect', s3('repoman-bench-redirected', true));

  const big = (server: Server) => [...server.tls, `${server.https}/api/images/raw/admin/big.img`];
  /** The presigned URL Repoman redirects to: the object store itself, as the reference. */
  const presigned = async () => {
    const { stdout: headers } = await run('curl', ['-sS', '-o', '/dev/null', '-D', '-', ...big(redirected)]);
    const location = /^location: (.+)$/im.exec(headers)?.[1]?.trim();
    if (!location) throw new Error(`no redirect from Repoman: ${headers}`);
    return location;
  };
  const modes: { name: string; title: string; server: Server; args: () => Promise<string[]> }[] = [
    {
      name: 'directory',
      title: 'download, HTTPS, Repoman on its directory',
      server: directory,
      args: async () => big(directory),
    },
    {
      name: 's3-proxied',
      title: 'download, HTTPS, Repoman on S3, bytes through Repoman',
      server: proxied,
      args: async () => big(proxied),
    },
    {
      name: 's3-redirect',
      title: 'download, HTTPS to Repoman, 307 to the object store (HTTP)',
      server: redirected,
      args: async () => ['-L', ...big(redirected)],
    },
    {
      name: 'object-store',
      title: 'download straight from the object store (presigned URL, HTTP; reference)',
      server: redirected,
      args: async () => [await presigned()],
    },
  ];
  const steps: Step[] = [];
  const measure = async (mode: string, server: Server, clients: number, args: string[][]) => {
    await run('sync');
    const m = await measured(server.pids, () => Promise.all(args.map((a) => curl(a))));
    const result: Step = {
      mode,
      clients,
      rate: (clients * size) / m.seconds,
      user: m.user,
      system: m.system,
      rss: m.peak * 1024,
      seconds: m.seconds,
    };
    steps.push(result);
    console.error(
      `${mode} ×${clients}: ${(result.rate / 1e6).toFixed(0)} MB/s, Repoman CPU ${(m.user + m.system).toFixed(1)} s, RSS ${(result.rss / 1e6).toFixed(0)} MB`,
    );
  };
  for (const mode of modes)
    for (const clients of counts)
      await measure(
        mode.name,
        mode.server,
        clients,
        await Promise.all(Array.from({ length: clients }, () => mode.args())),
      );
  for (const [name, server] of [
    ['upload-directory', directory],
    ['upload-s3', proxied],
  ] as const)
    await measure(name, server, 1, [[...server.tls, '-T', image, `${server.https}/api/images/raw/up.img`]]);

  const titles: Record<string, string> = {
    ...Object.fromEntries(modes.map((m) => [m.name, m.title])),
    'upload-directory': 'upload, HTTPS, to the directory (every digest)',
    'upload-s3': 'upload, HTTPS, to S3 (every digest)',
  };
  const reference = (clients: number) =>
    steps.find((s) => s.mode === 'directory' && s.clients === clients)?.rate ?? 0;
  const lines = [
    `${sizeMib} MiB per client, loopback, curl clients; the object store is OpenStack Swift (s3api) on the same machine`,
    '',
    '| mode | clients | rate | ratio to the directory | Repoman CPU user+sys | Repoman peak RSS |',
    '| --- | --- | --- | --- | --- | --- |',
    ...steps.map(
      (s) =>
        `| ${titles[s.mode]} | ${s.clients} | ${(s.rate / 1e6).toFixed(0)} MB/s | ${s.mode.startsWith('upload') ? (s.rate / (steps.find((d) => d.mode === 'upload-directory')?.rate ?? 1)).toFixed(2) : (s.rate / reference(s.clients)).toFixed(2)} | ${s.user.toFixed(1)}+${s.system.toFixed(1)} s | ${(s.rss / 1e6).toFixed(0)} MB |`,
    ),
  ];
  const markdown = `${lines.join('\n')}\n`;
  await mkdir(out, { recursive: true });
  await writeFile(join(out, 's3.json'), `${JSON.stringify({ sizeMib, counts, steps }, null, 2)}\n`);
  await writeFile(join(out, 's3.md'), markdown);
  console.log(markdown);
} finally {
  for (const stop of stops.reverse()) await stop().catch(() => {});
  await rm(dir, { recursive: true, force: true });
}
