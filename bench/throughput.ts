/**
 * The paper's throughput tests (section 4), Repoman beside nginx in the same run: 1 to 9 simultaneous curl
 * clients downloading over HTTP, over HTTPS with a client certificate (the default negotiated suite, and
 * AES-128-GCM forced), and uploading over HTTPS to disk and to a discarding store (Repoman with SHA-256 alone,
 * and with every digest; nginx's WebDAV PUT, and a location that reads and drops the body).
 * For each step: aggregate throughput, the server's user and system CPU time (from /proc) and peak RSS, for
 * both servers, and the ratio Repoman/nginx. Every step starts with nothing waiting to be written (`sync`);
 * an upload to disk also says how long the bytes then took to reach the disk (Repoman has them there before it
 * answers; nginx's PUT does not). Writes throughput.json, throughput.md and SVG (and PNG, with rsvg-convert)
 * charts to --out.
 *
 *   node bench/throughput.ts [--size-mib N] [--clients 1-9 | 1,2,4] [--modes a,b] [--quick] [--smoke] [--out DIR]
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { type Chart, renderCharts } from './charts.ts';
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
    'size-mib': { type: 'string' },
    clients: { type: 'string' },
    modes: { type: 'string' },
    quick: { type: 'boolean' },
    smoke: { type: 'boolean' },
    out: { type: 'string' },
  },
});

/** "1-9" or "1,2,4". */
function clientCounts(text: string): number[] {
  const range = /^(\d+)-(\d+)$/.exec(text);
  if (range) {
    const [from, to] = [Number(range[1]), Number(range[2])];
    return Array.from({ length: to - from + 1 }, (_, i) => from + i);
  }
  return text.split(',').map(Number);
}

const sizeMib = Number(values['size-mib'] ?? (values.smoke ? 4 : values.quick ? 64 : 1024));
const counts = clientCounts(values.clients ?? (values.smoke ? '1,2' : values.quick ? '1,2,4' : '1-9'));
const out = resolve(values.out ?? join(root, 'bench', 'results'));
const size = sizeMib * 1024 * 1024;

export interface Step {
  mode: string;
  clients: number;
  server: 'repoman' | 'nginx';
  /** Aggregate bytes per second. */
  rate: number;
  user: number;
  system: number;
  /** Peak RSS, bytes. */
  rss: number;
  seconds: number;
  /** Uploads to disk: how long `sync` took right after, writing what the server had not yet. */
  syncSeconds?: number;
}

interface Mode {
  name: string;
  title: string;
  /** One client's curl arguments against each server. */
  repoman: (server: Server, client: number) => string[];
  nginx: (server: Server, client: number) => string[];
  /** Which Repoman serves this mode: every digest or SHA-256 alone, to disk or to the discarding store. */
  on: 'all' | 'sha256' | 'discard-all' | 'discard-sha256';
  /** An upload to disk: the step is followed by a timed `sync`. */
  toDisk?: boolean;
}

const GCM = ['--tls-max', '1.2', '--ciphers', 'ECDHE-ECDSA-AES128-GCM-SHA256'];
const MODES: Mode[] = [
  {
    name: 'http-download',
    title: 'download, HTTP',
    repoman: (s) => [`${s.http}/api/images/raw/admin/big.img`],
    nginx: (s) => [`${s.http}/big.img`],
    on: 'all',
  },
  {
    name: 'https-download',
    title: 'download, HTTPS (default suite)',
    repoman: (s) => [...s.tls, `${s.https}/api/images/raw/admin/big.img`],
    nginx: (s) => [...s.tls, `${s.https}/big.img`],
    on: 'all',
  },
  {
    name: 'https-download-aes128gcm',
    title: 'download, HTTPS (AES-128-GCM forced)',
    repoman: (s) => [...s.tls, ...GCM, `${s.https}/api/images/raw/admin/big.img`],
    nginx: (s) => [...s.tls, ...GCM, `${s.https}/big.img`],
    on: 'all',
  },
  {
    name: 'https-upload-sha256',
    title: 'upload to disk, HTTPS, SHA-256 only',
    repoman: (s, i) => [...s.tls, '-T', IMAGE, `${s.https}/api/images/raw/up-${i}.img`],
    nginx: (s, i) => [...s.tls, '-T', IMAGE, `${s.https}/up-${i}.img`],
    on: 'sha256',
    toDisk: true,
  },
  {
    name: 'https-upload-all-digests',
    title: 'upload to disk, HTTPS, SHA-256 + MD5 + SHA-512',
    repoman: (s, i) => [...s.tls, '-T', IMAGE, `${s.https}/api/images/raw/up-${i}.img`],
    nginx: (s, i) => [...s.tls, '-T', IMAGE, `${s.https}/up-${i}.img`],
    on: 'all',
    toDisk: true,
  },
  {
    name: 'https-upload-discard-sha256',
    title: 'upload, discarded, HTTPS, SHA-256 only',
    repoman: (s, i) => [...s.tls, '-T', IMAGE, `${s.https}/api/images/raw/up-${i}.img`],
    nginx: (s, i) => [...s.tls, '-T', IMAGE, `${s.https}/discard/up-${i}.img`],
    on: 'discard-sha256',
  },
  {
    name: 'https-upload-discard-all-digests',
    title: 'upload, discarded, HTTPS, SHA-256 + MD5 + SHA-512',
    repoman: (s, i) => [...s.tls, '-T', IMAGE, `${s.https}/api/images/raw/up-${i}.img`],
    nginx: (s, i) => [...s.tls, '-T', IMAGE, `${s.https}/discard/up-${i}.img`],
    on: 'discard-all',
  },
];
const modes = values.modes ? MODES.filter((mode) => values.modes?.split(',').includes(mode.name)) : MODES;

let IMAGE = '';

/** N clients at once; every one must finish. */
async function step(mode: Mode, server: Server, kind: 'repoman' | 'nginx', clients: number): Promise<Step> {
  const args = (i: number) => (kind === 'repoman' ? mode.repoman(server, i) : mode.nginx(server, i));
  await run('sync'); // nothing an earlier step wrote is still waiting for the disk
  const m = await measured(server.pids, () =>
    Promise.all(Array.from({ length: clients }, (_, i) => curl(args(i + 1)))),
  );
  let syncSeconds: number | undefined;
  if (mode.toDisk) {
    const started = performance.now();
    await run('sync');
    syncSeconds = (performance.now() - started) / 1000;
  }
  return {
    ...(syncSeconds === undefined ? {} : { syncSeconds }),
    mode: mode.name,
    clients,
    server: kind,
    rate: (clients * size) / m.seconds,
    user: m.user,
    system: m.system,
    rss: m.peak * 1024,
    seconds: m.seconds,
  };
}

async function prepare(server: Server) {
  await curl([
    ...server.tls,
    '-d',
    'name=big.img',
    '-d',
    'unauthenticated_access=true',
    `${server.https}/api/images`,
  ]);
  await curl([...server.tls, '-T', IMAGE, `${server.https}/api/images/raw/big.img`]);
  for (const i of Array.from({ length: Math.max(...counts) }, (_, n) => n + 1))
    await curl([...server.tls, '-d', `name=up-${i}.img`, `${server.https}/api/images`]);
}

const fmt = {
  rate: (b: number) => `${(b / 1e6).toFixed(0)} MB/s`,
  cpu: (s: number) => `${s.toFixed(1)} s`,
  mb: (b: number) => `${(b / 1e6).toFixed(0)} MB`,
  ratio: (a: number, b: number) => (b > 0 ? (a / b).toFixed(2) : 'n/a'),
};

function table(steps: Step[], nginxVersion: string): string {
  const lines = [
    `${sizeMib} MiB per client, loopback, curl clients; Repoman ${process.version}, nginx ${nginxVersion}`,
    '',
    '| mode | clients | Repoman rate | nginx rate | ratio | Repoman CPU user+sys | nginx CPU user+sys | CPU ratio | Repoman peak RSS | nginx peak RSS |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const mode of modes)
    for (const clients of counts) {
      const ours = steps.find((s) => s.mode === mode.name && s.clients === clients && s.server === 'repoman');
      const theirs = steps.find((s) => s.mode === mode.name && s.clients === clients && s.server === 'nginx');
      if (!ours || !theirs) continue;
      const cpu = (s: Step) => s.user + s.system;
      lines.push(
        `| ${mode.title} | ${clients} | ${fmt.rate(ours.rate)} | ${fmt.rate(theirs.rate)} | ${fmt.ratio(ours.rate, theirs.rate)} | ${fmt.cpu(ours.user)}+${fmt.cpu(ours.system)} | ${fmt.cpu(theirs.user)}+${fmt.cpu(theirs.system)} | ${fmt.ratio(cpu(ours), cpu(theirs))} | ${fmt.mb(ours.rss)} | ${fmt.mb(theirs.rss)} |`,
      );
    }
  const durable = steps.filter((s) => s.server === 'nginx' && s.syncSeconds !== undefined);
  if (durable.length > 0) {
    lines.push(
      '',
      'Uploads to disk, until the bytes are on the disk: Repoman answers once they are (it syncs before it publishes), nginx before (the `sync` after its step took the rest).',
      '',
      '| mode | clients | Repoman rate | nginx rate, answered | nginx rate, on disk | ratio, answered | ratio, on disk |',
      '| --- | --- | --- | --- | --- | --- | --- |',
    );
    for (const mode of modes)
      for (const clients of counts) {
        const ours = steps.find(
          (s) => s.mode === mode.name && s.clients === clients && s.server === 'repoman',
        );
        const theirs = durable.find((s) => s.mode === mode.name && s.clients === clients);
        if (!ours || !theirs) continue;
        const onDisk = onDiskRate(theirs);
        lines.push(
          `| ${mode.title} | ${clients} | ${fmt.rate(ours.rate)} | ${fmt.rate(theirs.rate)} | ${fmt.rate(onDisk)} | ${fmt.ratio(ours.rate, theirs.rate)} | ${fmt.ratio(ours.rate, onDisk)} |`,
        );
      }
  }
  return `${lines.join('\n')}\n`;
}

/** A step's rate counting the time its bytes took to reach the disk after the last client was answered. */
const onDiskRate = (step: Step) => (step.rate * step.seconds) / (step.seconds + (step.syncSeconds ?? 0));

const nginxFound = await findNginx();
if (!nginxFound) {
  console.error('nginx is not installed: apt-get install nginx-light (the benchmark compares against it)');
  process.exit(1);
}
const dir = await mkdtemp(join(tmpdir(), 'repoman-throughput-'));
const started: Server[] = [];
try {
  IMAGE = join(dir, 'image.bin');
  await randomFile(IMAGE, sizeMib);
  const keep = { REPOMAN_UPLOADS_KEEP_VERSIONS: '1' };
  const all = await startRepoman(join(dir, 'all'), keep);
  started.push(all);
  const sha256 = await startRepoman(join(dir, 'sha256'), {
    ...keep,
    REPOMAN_UPLOADS_MD5: 'false',
    REPOMAN_UPLOADS_SHA512: 'false',
  });
  started.push(sha256);
  const discard = { ...keep, REPOMAN_BLOB_STORE: 'discard' };
  const discardAll = await startRepoman(join(dir, 'discard-all'), discard);
  started.push(discardAll);
  const discardSha256 = await startRepoman(join(dir, 'discard-sha256'), {
    ...discard,
    REPOMAN_UPLOADS_MD5: 'false',
    REPOMAN_UPLOADS_SHA512: 'false',
  });
  started.push(discardSha256);
  const repoman = { all, sha256, 'discard-all': discardAll, 'discard-sha256': discardSha256 };
  for (const server of Object.values(repoman)) await prepare(server);
  // nginx with Repoman's host certificate and CA; its files are the same image.
  const nginx = await startNginx(nginxFound.binary, join(dir, 'nginx'), join(dir, 'all'));
  started.push(nginx);
  await curl([...nginx.tls, '-T', IMAGE, `${nginx.https}/big.img`]);

  const steps: Step[] = [];
  for (const mode of modes) {
    for (const clients of counts) {
      for (const [kind, server] of [
        ['repoman', repoman[mode.on]],
        ['nginx', nginx],
      ] as const) {
        const result = await step(mode, server, kind, clients);
        steps.push(result);
        console.error(
          `${mode.name} ×${clients} ${kind}: ${fmt.rate(result.rate)}, CPU ${fmt.cpu(result.user)}+${fmt.cpu(result.system)}, RSS ${fmt.mb(result.rss)}`,
        );
      }
    }
  }
  await mkdir(out, { recursive: true });
  const markdown = table(steps, nginxFound.version);
  await writeFile(join(out, 'throughput.json'), `${JSON.stringify({ sizeMib, counts, steps }, null, 2)}\n`);
  await writeFile(join(out, 'throughput.md'), markdown);
  const charts: Chart[] = modes.flatMap((mode) => {
    const series = (kind: 'repoman' | 'nginx', value: (s: Step) => number) =>
      steps
        .filter((s) => s.mode === mode.name && s.server === kind)
        .map((s) => [s.clients, value(s)] as const);
    return [
      {
        file: `throughput-${mode.name}`,
        title: `${mode.title}: aggregate throughput`,
        x: 'simultaneous clients',
        y: 'MB/s',
        series: [
          { name: 'Repoman', points: series('repoman', (s) => s.rate / 1e6) },
          { name: 'nginx', points: series('nginx', (s) => s.rate / 1e6) },
        ],
      },
      {
        file: `cpu-${mode.name}`,
        title: `${mode.title}: server CPU per GB moved`,
        x: 'simultaneous clients',
        y: 'CPU seconds per GB',
        series: [
          {
            name: 'Repoman',
            points: series('repoman', (s) => (s.user + s.system) / ((s.clients * size) / 1e9)),
          },
          { name: 'nginx', points: series('nginx', (s) => (s.user + s.system) / ((s.clients * size) / 1e9)) },
        ],
      },
    ];
  });
  const written = await renderCharts(out, charts);
  console.log(markdown);
  console.log(`Results in ${out}: throughput.md, throughput.json, ${written.length} charts`);
} finally {
  for (const server of started.reverse()) await server.stop().catch(() => {});
  await rm(dir, { recursive: true, force: true });
}
