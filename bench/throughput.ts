/**
 * The paper's throughput tests (section 4), Repoman beside nginx in the same run: 1 to 9 simultaneous curl
 * clients downloading over HTTP, over HTTPS with a client certificate (the default negotiated suite, and
 * AES-128-GCM forced), and uploading over HTTPS to disk and to a discarding store (Repoman with SHA-256 alone
 * (and the ADLER32 every upload gets), and with every digest; nginx's WebDAV PUT, and a location that reads and drops the body); each with 1 server
 * process and with one per core (Repoman's `workers`, nginx's `worker_processes`), interleaved step by step.
 * OpenStack Glance (the peer's folder beside the checkout, or --glance DIR) joins where it is installable:
 * uploads over plain HTTP (MD5 + SHA-512) beside Repoman's HTTPS uploads with every digest, downloads beside
 * Repoman's HTTP and HTTPS downloads, 1 and 4 clients.
 *
 * For each step: aggregate throughput, the server's user and system CPU time (from /proc, every process of
 * it) and peak RSS (summed over its processes), the clients' CPU time, and the ratios. Every step starts with
 * nothing waiting to be written (`sync`); an upload to disk also says how long the bytes then took to reach
 * the disk (Repoman has them there before it answers; nginx's PUT does not). Uploads are held to their CPU
 * budget (bench/budget.ts) with the digests' cost measured here first (bench/digests.ts). The run's first
 * upload step is repeated at its end (the late-run check). Writes throughput.json, throughput.md and SVG
 * (and PNG, with rsvg-convert) charts to --out.
 *
 *   node bench/throughput.ts [--size-mib N] [--clients 1-9 | 1,2,4] [--modes a,b] [--workers 1,2]
 *                            [--glance DIR | --no-glance] [--quick] [--smoke] [--out DIR]
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { BUDGET, budgetRatio, ceiling, cpuPerGb, systemPerGb } from './budget.ts';
import { type Chart, renderCharts } from './charts.ts';
import { type DigestCosts, digestCosts, uploadDigestCost } from './digests.ts';
import { defaultGlanceFolder, type Glance, glanceInstalled, glanceVersion, startGlance } from './glance.ts';
import {
  cores,
  curl,
  findNginx,
  measured,
  randomFile,
  root,
  run,
  type Server,
  startNginx,
  startRepoman,
  transfer,
  uploadAndRead,
} from './lib.ts';

const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string' },
    clients: { type: 'string' },
    modes: { type: 'string' },
    workers: { type: 'string' },
    glance: { type: 'string' },
    'no-glance': { type: 'boolean' },
    quick: { type: 'boolean' },
    smoke: { type: 'boolean' },
    out: { type: 'string' },
  },
});

/** "1-9" or "1,2,4". */
function counted(text: string): number[] {
  const range = /^(\d+)-(\d+)$/.exec(text);
  if (range) {
    const [from, to] = [Number(range[1]), Number(range[2])];
    return Array.from({ length: to - from + 1 }, (_, i) => from + i);
  }
  return text.split(',').map(Number);
}

const sizeMib = Number(values['size-mib'] ?? (values.smoke ? 4 : values.quick ? 64 : 1024));
const counts = counted(values.clients ?? (values.smoke ? '1,2' : values.quick ? '1,2,4' : '1-9'));
/** The workers axis: one server process, and one per core. */
const workersAxis = values.workers ? counted(values.workers) : [...new Set([1, cores])];
/** The targets' condition: as many workers as cores, for both servers (the largest of the axis). */
const targetWorkers = Math.max(...workersAxis);
const out = resolve(values.out ?? join(root, 'bench', 'results'));
const size = sizeMib * 1024 * 1024;

export interface Step {
  mode: string;
  clients: number;
  /** Server processes: Repoman's `workers`, nginx's `worker_processes`, Glance's `workers`. */
  workers: number;
  server: 'repoman' | 'nginx' | 'glance';
  /** Aggregate bytes per second. */
  rate: number;
  bytes: number;
  /** The server's CPU seconds, every process of it. */
  user: number;
  system: number;
  /** The clients' CPU seconds, every curl. */
  clientUser: number;
  clientSystem: number;
  /** Peak RSS, bytes, summed over the server's processes. */
  rss: number;
  seconds: number;
  /** Uploads to disk: how long `sync` took right after, writing what the server had not yet. */
  syncSeconds?: number;
}

type Setup = 'all' | 'sha256' | 'discard-all' | 'discard-sha256';

interface Mode {
  name: string;
  title: string;
  /** One client's curl arguments against each server. */
  repoman: (server: Server, client: number) => string[];
  nginx: (server: Server, client: number) => string[];
  /** Which Repoman serves this mode: every digest or SHA-256 alone (with ADLER32), to disk or to the discarding store. */
  on: Setup;
  /** An upload: held to its CPU budget. To disk: the step is followed by a timed `sync`. */
  upload?: 'disk' | 'discard';
  /** Glance's step beside it. */
  glance?: 'upload' | 'download';
}

const GCM = ['--tls-max', '1.2', '--ciphers', 'ECDHE-ECDSA-AES128-GCM-SHA256'];
const MODES: Mode[] = [
  {
    name: 'http-download',
    title: 'download, HTTP',
    repoman: (s) => [`${s.http}/api/images/raw/admin/big.img`],
    nginx: (s) => [`${s.http}/big.img`],
    on: 'all',
    glance: 'download',
  },
  {
    name: 'https-download',
    title: 'download, HTTPS (default suite)',
    repoman: (s) => [...s.tls, `${s.https}/api/images/raw/admin/big.img`],
    nginx: (s) => [...s.tls, `${s.https}/big.img`],
    on: 'all',
    glance: 'download',
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
    upload: 'disk',
  },
  {
    name: 'https-upload-all-digests',
    title: 'upload to disk, HTTPS, SHA-256 + MD5 + SHA-512',
    repoman: (s, i) => [...s.tls, '-T', IMAGE, `${s.https}/api/images/raw/up-${i}.img`],
    nginx: (s, i) => [...s.tls, '-T', IMAGE, `${s.https}/up-${i}.img`],
    on: 'all',
    upload: 'disk',
    glance: 'upload',
  },
  {
    name: 'https-upload-discard-sha256',
    title: 'upload, discarded, HTTPS, SHA-256 only',
    repoman: (s, i) => [...s.tls, '-T', IMAGE, `${s.https}/api/images/raw/up-${i}.img`],
    nginx: (s, i) => [...s.tls, '-T', IMAGE, `${s.https}/discard/up-${i}.img`],
    on: 'discard-sha256',
    upload: 'discard',
  },
  {
    name: 'https-upload-discard-all-digests',
    title: 'upload, discarded, HTTPS, SHA-256 + MD5 + SHA-512',
    repoman: (s, i) => [...s.tls, '-T', IMAGE, `${s.https}/api/images/raw/up-${i}.img`],
    nginx: (s, i) => [...s.tls, '-T', IMAGE, `${s.https}/discard/up-${i}.img`],
    on: 'discard-all',
    upload: 'discard',
  },
];
const modes = values.modes ? MODES.filter((mode) => values.modes?.split(',').includes(mode.name)) : MODES;
/** The late-run check repeats one upload step at the end of the run: the one whose slowdown was seen first. */
const probeMode =
  modes.find((mode) => mode.name === 'https-upload-discard-sha256') ?? modes.find((mode) => mode.upload);
const probeClients = Math.min(...counts);
/** Glance's client counts: single and 4 in parallel, of those measured. */
const glanceCounts = counts.filter((c) => c === 1 || c === 4).length
  ? counts.filter((c) => c === 1 || c === 4)
  : [Math.min(...counts)];
/** Every digest's cost in an upload with every digest, SHA-256's alone in the others. */
const everyDigest = (mode: { on: Setup }) => mode.on === 'all' || mode.on === 'discard-all';

let IMAGE = '';

/** A step's rate counting the time its bytes took to reach the disk after the last client was answered. */
const onDiskRate = (step: Step) => (step.rate * step.seconds) / (step.seconds + (step.syncSeconds ?? 0));

const fmt = {
  rate: (b: number) => `${(b / 1e6).toFixed(0)} MB/s`,
  perGb: (s: number) => s.toFixed(2),
  mb: (b: number) => `${(b / 1e6).toFixed(0)} MB`,
  ratio: (a: number, b: number) => (b > 0 ? (a / b).toFixed(2) : 'n/a'),
  /** A figure of two decimals; n/a where a tiny step measured no CPU tick to divide by. */
  num: (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a'),
  plural: (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`,
};

/** N clients at once against `pids`, the i-th with `args(i)`; every one must finish. */
async function step(
  what: Pick<Step, 'mode' | 'clients' | 'workers' | 'server'>,
  pids: () => Promise<number[]>,
  args: (client: number) => string[],
  toDisk: boolean,
): Promise<Step> {
  await run('sync'); // nothing an earlier step wrote is still waiting for the disk
  const m = await measured(pids, () =>
    Promise.all(Array.from({ length: what.clients }, (_, i) => transfer(args(i + 1)))),
  );
  let syncSeconds: number | undefined;
  if (toDisk) {
    const started = performance.now();
    await run('sync');
    syncSeconds = (performance.now() - started) / 1000;
  }
  const result: Step = {
    ...what,
    ...(syncSeconds === undefined ? {} : { syncSeconds }),
    rate: (what.clients * size) / m.seconds,
    bytes: what.clients * size,
    user: m.user,
    system: m.system,
    clientUser: m.result.reduce((sum, t) => sum + t.user, 0),
    clientSystem: m.result.reduce((sum, t) => sum + t.system, 0),
    rss: m.peak * 1024,
    seconds: m.seconds,
  };
  console.error(
    `${what.mode} ×${what.clients}, ${fmt.plural(what.workers, 'worker')}, ${what.server}: ${fmt.rate(result.rate)}, CPU ${fmt.perGb(cpuPerGb(result))} s/GB (${fmt.perGb(systemPerGb(result))} system), RSS ${fmt.mb(result.rss)}`,
  );
  return result;
}

/** One workers value's servers: a Repoman for each digest setting and store, nginx, and Glance if it runs. */
interface Servers {
  workers: number;
  repoman: Partial<Record<Setup, Server>>;
  nginx: Server;
  nginxDir: string;
  glance?: { server: Glance; big?: string };
}

async function prepareRepoman(server: Server, downloads: boolean) {
  if (downloads) {
    await curl([
      ...server.tls,
      '-d',
      'name=big.img',
      '-d',
      'unauthenticated_access=true',
      `${server.https}/api/images`,
    ]);
    await uploadAndRead(
      server,
      IMAGE,
      `${server.https}/api/images/raw/big.img`,
      `${server.https}/api/images/raw/admin/big.img`,
    );
  }
  for (const i of Array.from({ length: Math.max(...counts) }, (_, n) => n + 1))
    await curl([...server.tls, '-d', `name=up-${i}.img`, `${server.https}/api/images`]);
}

/** Runs every start at once; throws the first failure once all have ended (so that each started one is stopped). */
async function settled<T>(starts: (() => Promise<T>)[]): Promise<T[]> {
  const results = await Promise.allSettled(starts.map((start) => start()));
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}

/** After an upload to disk, what it stored goes, so that two sets of servers fit on the disk. */
async function emptyAfterUpload(servers: Servers, server: Server, kind: Step['server'], clients: number) {
  if (kind === 'repoman')
    for (let i = 1; i <= clients; i++) {
      await curl([...server.tls, '-X', 'DELETE', `${server.https}/api/images/up-${i}.img`]);
      await curl([...server.tls, '-d', `name=up-${i}.img`, `${server.https}/api/images`]);
    }
  if (kind === 'nginx') {
    const files = join(servers.nginxDir, 'files');
    for (const name of await readdir(files))
      if (name.startsWith('up-')) await rm(join(files, name), { force: true });
  }
}

const nginxFound = await findNginx();
if (!nginxFound) {
  console.error('nginx is not installed: apt-get install nginx-light (the benchmark compares against it)');
  process.exit(1);
}
const dir = await mkdtemp(join(tmpdir(), 'repoman-throughput-'));
const stops: (() => Promise<void>)[] = [];
// Glance runs in a session of its own (start.sh), so an interrupted run stops it here, as it stops the others.
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, async () => {
    for (const stop of stops.reverse()) await stop().catch(() => {});
    await rm(dir, { recursive: true, force: true });
    process.exit(130);
  });
/** Why Glance is not in this run, if it is not. */
let glanceSkipped: string | null = null;
try {
  IMAGE = join(dir, 'image.bin');
  await randomFile(IMAGE, sizeMib);
  // The digests' own cost, before any server runs (the smoke run hashes 16 MiB; the others, 256 MiB).
  const digests: DigestCosts = await digestCosts(values.smoke ? 16 : 256);
  console.error(
    `digests on one core: ${Object.entries(digests)
      .map(([name, cost]) => `${name} ${fmt.perGb(cost)} CPU s/GB`)
      .join(', ')}`,
  );

  // Glance: where its folder is, and whether it may be installed in this run.
  const glanceFolder = resolve(values.glance ?? defaultGlanceFolder);
  const glanceWanted = modes.some((mode) => mode.glance);
  if (values['no-glance']) glanceSkipped = '--no-glance';
  else if (!glanceWanted) glanceSkipped = 'no mode of this run compares with it';
  else if (!(await readdir(glanceFolder).catch(() => null)))
    glanceSkipped = `no peer folder at ${glanceFolder} (--glance DIR names it)`;
  else if (values.smoke && !values.glance)
    glanceSkipped = `the smoke run leaves it out (--glance DIR brings it in${(await glanceInstalled()) ? '' : ', installing glance-api'})`;
  let md5 = '';
  if (!glanceSkipped) {
    const hash = createHash('md5');
    await pipeline(createReadStream(IMAGE), hash);
    md5 = hash.digest('hex');
  }

  const sets = new Set<Setup>(modes.map((mode) => mode.on));
  const downloads = modes.some((mode) => !mode.upload);
  // Every Repoman and nginx at once (a start mostly waits; the cores are the limit, not one start's wait).
  const all: Servers[] = await settled(
    workersAxis.map((workers) => async () => {
      const repoman: Servers['repoman'] = {};
      await settled(
        [...sets].map((set) => async () => {
          const env: Record<string, string> = { REPOMAN_UPLOADS_KEEP_VERSIONS: '1' };
          if (set.startsWith('discard')) env.REPOMAN_BLOB_STORE = 'discard';
          if (set.endsWith('sha256'))
            Object.assign(env, { REPOMAN_UPLOADS_MD5: 'false', REPOMAN_UPLOADS_SHA512: 'false' });
          const server = await startRepoman(join(dir, `${set}-${workers}`), env, { workers });
          stops.push(server.stop);
          await prepareRepoman(server, downloads && set === 'all');
          repoman[set] = server;
        }),
      );
      // nginx with a Repoman's host certificate and CA; its files are the same image.
      const pki = join(dir, `${[...sets][0]}-${workers}`);
      const nginxDir = join(dir, `nginx-${workers}`);
      const nginx = await startNginx(nginxFound.binary, nginxDir, pki, { workers });
      stops.push(nginx.stop);
      if (downloads) await curl([...nginx.tls, '-T', IMAGE, `${nginx.https}/big.img`]);
      return { workers, repoman, nginx, nginxDir };
    }),
  );
  // Glance, one after the other: the first start.sh may install it.
  for (const servers of all) {
    if (glanceSkipped) break;
    console.error(`Glance: starting it with ${fmt.plural(servers.workers, 'worker')} from ${glanceFolder}`);
    try {
      const glance = await startGlance(glanceFolder, join(dir, `glance-${servers.workers}`), servers.workers);
      stops.push(glance.stop);
      servers.glance = { server: glance };
      if (modes.some((mode) => mode.glance === 'download')) {
        const big = await glance.create('big');
        await curl(glance.upload(big, IMAGE));
        servers.glance.big = big;
      }
    } catch (error) {
      glanceSkipped = `not installable or did not start: ${(error as Error).message}`;
      for (const earlier of all) delete earlier.glance;
    }
  }
  if (glanceSkipped) console.error(`Glance: skipped, ${glanceSkipped}`);
  const glanceVersionFound = glanceSkipped ? null : await glanceVersion();

  const steps: Step[] = [];
  const glanceSteps: Step[] = [];

  /** Repoman's and nginx's step of `mode`, and Glance's beside it (once per transfer, clients and workers). */
  async function pair(mode: Mode, clients: number, servers: Servers, into: Step[]) {
    const { workers } = servers;
    const repoman = servers.repoman[mode.on] as Server;
    for (const [kind, server, args] of [
      ['repoman', repoman, (i: number) => mode.repoman(repoman, i)],
      ['nginx', servers.nginx, (i: number) => mode.nginx(servers.nginx, i)],
    ] as const) {
      into.push(
        await step(
          { mode: mode.name, clients, workers, server: kind },
          server.pids,
          args,
          mode.upload === 'disk',
        ),
      );
      if (mode.upload === 'disk') await emptyAfterUpload(servers, server, kind, clients);
    }
  }

  async function glanceStep(transferKind: 'upload' | 'download', clients: number, servers: Servers) {
    const glance = servers.glance;
    if (!glance) return;
    const what = {
      mode: `glance-${transferKind}`,
      clients,
      workers: servers.workers,
      server: 'glance',
    } as const;
    try {
      if (transferKind === 'download') {
        const big = glance.big as string;
        glanceSteps.push(await step(what, glance.server.pids, () => glance.server.download(big), false));
        return;
      }
      const ids: string[] = [];
      for (let i = 1; i <= clients; i++) ids.push(await glance.server.create(`up-${i}`));
      glanceSteps.push(
        await step(what, glance.server.pids, (i) => glance.server.upload(ids[i - 1] as string, IMAGE), true),
      );
      for (const id of ids) {
        const image = await glance.server.show(id);
        if (image.status !== 'active' || image.checksum !== md5)
          throw new Error(
            `image ${id} is ${image.status} with MD5 ${image.checksum}, not active with ${md5}`,
          );
        await glance.server.remove(id);
      }
    } catch (error) {
      glanceSkipped = `its ${transferKind} step failed: ${(error as Error).message}`;
      console.error(`Glance: skipped from here, ${glanceSkipped}`);
      for (const servers of all) delete servers.glance;
    }
  }

  const probe = probeMode ? all.find((servers) => servers.workers === targetWorkers) : undefined;
  const lateRun: { first: Step[]; last: Step[] } = { first: [], last: [] };
  if (probeMode && probe) await pair(probeMode, probeClients, probe, lateRun.first);

  for (const mode of modes)
    for (const clients of counts)
      for (const servers of all) {
        await pair(mode, clients, servers, steps);
        const done = glanceSteps.some(
          (s) => s.mode === `glance-${mode.glance}` && s.clients === clients && s.workers === servers.workers,
        );
        if (mode.glance && glanceCounts.includes(clients) && !done)
          await glanceStep(mode.glance, clients, servers);
      }

  if (probeMode && probe) await pair(probeMode, probeClients, probe, lateRun.last);

  await mkdir(out, { recursive: true });
  const results = {
    sizeMib,
    counts,
    cores,
    workers: workersAxis,
    targetWorkers,
    digests,
    steps,
    glance: glanceSkipped
      ? { skipped: glanceSkipped, steps: glanceSteps }
      : { version: glanceVersionFound, counts: glanceCounts, steps: glanceSteps },
    lateRun: probeMode
      ? { mode: probeMode.name, clients: probeClients, workers: targetWorkers, ...lateRun }
      : null,
  };
  const markdown = table(results, nginxFound.version);
  await writeFile(join(out, 'throughput.json'), `${JSON.stringify(results, null, 2)}\n`);
  await writeFile(join(out, 'throughput.md'), markdown);
  const written = await renderCharts(out, charts(steps, glanceSteps, digests));
  console.log(markdown);
  console.log(`Results in ${out}: throughput.md, throughput.json, ${written.length} charts`);
} finally {
  for (const stop of stops.reverse()) await stop().catch(() => {});
  await rm(dir, { recursive: true, force: true });
}

type Results = {
  steps: Step[];
  digests: DigestCosts;
  glance: { skipped?: string; version?: string | null; steps: Step[] };
  lateRun: { mode: string; clients: number; workers: number; first: Step[]; last: Step[] } | null;
};

function find(steps: Step[], mode: string, clients: number, workers: number, server: Step['server']) {
  return steps.find(
    (s) => s.mode === mode && s.clients === clients && s.workers === workers && s.server === server,
  );
}

function table(results: Results, nginxVersion: string): string {
  const { steps, digests } = results;
  const cost = (mode: Mode) => uploadDigestCost(digests, everyDigest(mode));
  const lines = [
    `${sizeMib} MiB per client, loopback, curl clients; ${fmt.plural(cores, 'core')}; Repoman ${process.version}, nginx ${nginxVersion}; Glance ${results.glance.skipped ? `skipped: ${results.glance.skipped}` : (results.glance.version ?? 'version unknown')}`,
    '',
    `The digests' own cost on one core here (Node's hashes, CPU seconds per GB): SHA-256 ${fmt.perGb(digests.sha256)}, MD5 ${fmt.perGb(digests.md5)}, SHA-512 ${fmt.perGb(digests.sha512)}, ADLER32 ${fmt.perGb(digests.adler32)} (computed at every upload); every digest ${fmt.perGb(uploadDigestCost(digests, true))}.`,
  ];
  for (const workers of workersAxis) {
    lines.push(
      '',
      `### ${fmt.plural(workers, 'worker')} (Repoman \`workers = ${workers}\`, nginx \`worker_processes ${workers}\`)`,
      '',
      'CPU is the server\'s (all its processes) user+system seconds per GB moved; the ceiling is the rate ratio an upload reaches at most when it spends its whole CPU budget (see "Uploads against their CPU budget").',
      '',
      '| mode | clients | Repoman rate | nginx rate | ratio | ceiling | Repoman CPU s/GB | nginx CPU s/GB | CPU ratio | Repoman peak RSS | nginx peak RSS |',
      '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    );
    for (const mode of modes)
      for (const clients of counts) {
        const ours = find(steps, mode.name, clients, workers, 'repoman');
        const theirs = find(steps, mode.name, clients, workers, 'nginx');
        if (!ours || !theirs) continue;
        const top = mode.upload ? fmt.num(ceiling(theirs, cost(mode))) : '';
        const perGb = (s: Step) =>
          `${fmt.perGb(s.user / (s.bytes / 1e9))}+${fmt.perGb(s.system / (s.bytes / 1e9))}`;
        lines.push(
          `| ${mode.title} | ${clients} | ${fmt.rate(ours.rate)} | ${fmt.rate(theirs.rate)} | ${fmt.ratio(ours.rate, theirs.rate)} | ${top} | ${perGb(ours)} | ${perGb(theirs)} | ${fmt.ratio(cpuPerGb(ours), cpuPerGb(theirs))} | ${fmt.mb(ours.rss)} | ${fmt.mb(theirs.rss)} |`,
        );
      }
    const uploads = modes.filter((mode) => mode.upload);
    if (uploads.some((mode) => find(steps, mode.name, counts[0] as number, workers, 'repoman'))) {
      lines.push(
        '',
        `Uploads against their CPU budget: Repoman's CPU per GB over (nginx's for the same step + the digests'), at most ${BUDGET}; the ceiling is (k + n) / (k + ${BUDGET} (n + d)) with the clients' CPU per GB k, nginx's n and the digests' d; system CPU per GB of an upload to disk at most 1.5 x nginx's.`,
        '',
        '| mode | clients | Repoman CPU s/GB | nginx CPU s/GB | digests s/GB | budget ratio | clients CPU s/GB | rate ratio | ceiling | Repoman system s/GB | nginx system s/GB | system ratio |',
        '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
      );
      for (const mode of uploads)
        for (const clients of counts) {
          const ours = find(steps, mode.name, clients, workers, 'repoman');
          const theirs = find(steps, mode.name, clients, workers, 'nginx');
          if (!ours || !theirs) continue;
          const clientsPerGb = (theirs.clientUser + theirs.clientSystem) / (theirs.bytes / 1e9);
          lines.push(
            `| ${mode.title} | ${clients} | ${fmt.perGb(cpuPerGb(ours))} | ${fmt.perGb(cpuPerGb(theirs))} | ${fmt.perGb(cost(mode))} | ${fmt.num(budgetRatio(ours, theirs, cost(mode)))} | ${fmt.perGb(clientsPerGb)} | ${fmt.ratio(ours.rate, theirs.rate)} | ${fmt.num(ceiling(theirs, cost(mode)))} | ${fmt.perGb(systemPerGb(ours))} | ${fmt.perGb(systemPerGb(theirs))} | ${fmt.ratio(systemPerGb(ours), systemPerGb(theirs))} |`,
          );
        }
    }
    const durable = steps.filter(
      (s) => s.server === 'nginx' && s.workers === workers && s.syncSeconds !== undefined,
    );
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
          const ours = find(steps, mode.name, clients, workers, 'repoman');
          const theirs = durable.find((s) => s.mode === mode.name && s.clients === clients);
          if (!ours || !theirs) continue;
          const onDisk = onDiskRate(theirs);
          lines.push(
            `| ${mode.title} | ${clients} | ${fmt.rate(ours.rate)} | ${fmt.rate(theirs.rate)} | ${fmt.rate(onDisk)} | ${fmt.ratio(ours.rate, theirs.rate)} | ${fmt.ratio(ours.rate, onDisk)} |`,
          );
        }
    }
    const glanceRows = glanceTable(results.glance.steps, steps, workers);
    if (glanceRows.length > 0)
      lines.push(
        '',
        "Glance (plain HTTP; MD5 + SHA-512 on upload, to its filesystem store) beside Repoman with the same number of workers; CPU per GB is each server's, all its processes.",
        '',
        '| transfer | clients | Glance rate | Glance CPU s/GB | Repoman rate | Repoman CPU s/GB | Repoman/Glance |',
        '| --- | --- | --- | --- | --- | --- | --- |',
        ...glanceRows,
      );
  }
  if (results.lateRun && results.lateRun.first.length > 0) {
    const { first, last } = results.lateRun;
    const mode = MODES.find((m) => m.name === results.lateRun?.mode) as Mode;
    lines.push(
      '',
      `The late-run check: the run's first upload step (${mode.title}, ${fmt.plural(results.lateRun.clients, 'client')}, ${fmt.plural(results.lateRun.workers, 'worker')}) again at its end, on the same servers; last/first within 10 % is met. nginx's says how much the machine itself drifted.`,
      '',
      '| server | first rate | last rate | last/first | first CPU s/GB | last CPU s/GB | last/first |',
      '| --- | --- | --- | --- | --- | --- | --- |',
    );
    for (const kind of ['repoman', 'nginx'] as const) {
      const a = first.find((s) => s.server === kind);
      const b = last.find((s) => s.server === kind);
      if (!a || !b) continue;
      lines.push(
        `| ${kind === 'repoman' ? 'Repoman' : 'nginx'} | ${fmt.rate(a.rate)} | ${fmt.rate(b.rate)} | ${fmt.ratio(b.rate, a.rate)} | ${fmt.perGb(cpuPerGb(a))} | ${fmt.perGb(cpuPerGb(b))} | ${fmt.ratio(cpuPerGb(b), cpuPerGb(a))} |`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}

function glanceTable(glanceSteps: Step[], steps: Step[], workers: number): string[] {
  const rows: string[] = [];
  for (const [transferKind, mode, title] of [
    ['upload', 'https-upload-all-digests', 'upload (Repoman over HTTPS, every digest, to disk)'],
    ['download', 'http-download', 'download (Repoman over HTTP)'],
    ['download', 'https-download', 'download (Repoman over HTTPS)'],
  ] as const)
    for (const clients of glanceCounts) {
      const theirs = find(glanceSteps, `glance-${transferKind}`, clients, workers, 'glance');
      const ours = find(steps, mode, clients, workers, 'repoman');
      if (!theirs || !ours) continue;
      rows.push(
        `| ${title} | ${clients} | ${fmt.rate(theirs.rate)} | ${fmt.perGb(cpuPerGb(theirs))} | ${fmt.rate(ours.rate)} | ${fmt.perGb(cpuPerGb(ours))} | ${fmt.ratio(ours.rate, theirs.rate)} |`,
      );
    }
  return rows;
}

/**
 * A chart per axis: per mode, rate and CPU per GB by clients, a line per server and workers value (dashed: one
 * worker); by workers, each mode's ratio Repoman/nginx at the most clients; by clients, each upload's budget
 * ratio at the targets' workers.
 */
function charts(steps: Step[], glanceSteps: Step[], digests: DigestCosts): Chart[] {
  const name = { repoman: 'Repoman', nginx: 'nginx', glance: 'Glance' };
  const colour = { repoman: '#c0392b', nginx: '#2c3e50', glance: '#27ae60' };
  const lineOf = (
    kind: Step['server'],
    workers: number,
    value: (s: Step) => number,
    from: Step[],
    mode: string,
  ) => ({
    name: `${name[kind]}, ${fmt.plural(workers, 'worker')}`,
    colour: colour[kind],
    dashed: workers !== targetWorkers,
    points: from
      .filter((s) => s.mode === mode && s.server === kind && s.workers === workers)
      .map((s) => [s.clients, value(s)] as const),
  });
  const byMode: Chart[] = modes.flatMap((mode) => {
    const lines = (value: (s: Step) => number) =>
      workersAxis.flatMap((workers) => [
        lineOf('repoman', workers, value, steps, mode.name),
        lineOf('nginx', workers, value, steps, mode.name),
        ...(mode.glance ? [lineOf('glance', workers, value, glanceSteps, `glance-${mode.glance}`)] : []),
      ]);
    return [
      {
        file: `throughput-${mode.name}`,
        title: `${mode.title}: aggregate throughput`,
        x: 'simultaneous clients',
        y: 'MB/s',
        series: lines((s) => s.rate / 1e6).filter((l) => l.points.length > 0),
      },
      {
        file: `cpu-${mode.name}`,
        title: `${mode.title}: server CPU per GB moved`,
        x: 'simultaneous clients',
        y: 'CPU seconds per GB',
        series: lines(cpuPerGb).filter((l) => l.points.length > 0),
      },
    ];
  });
  const most = Math.max(...counts);
  const ratioAt = (mode: Mode, workers: number) => {
    const ours = find(steps, mode.name, most, workers, 'repoman');
    const theirs = find(steps, mode.name, most, workers, 'nginx');
    return ours && theirs ? [[workers, ours.rate / theirs.rate] as const] : [];
  };
  const byWorkers: Chart = {
    file: 'workers-ratio',
    title: `Repoman/nginx throughput by workers, ${fmt.plural(most, 'client')}`,
    x: 'server processes (workers)',
    y: 'rate ratio Repoman/nginx',
    series: modes.map((mode) => ({
      name: mode.name.replace(/^https-upload/, 'upload'),
      points: workersAxis.flatMap((workers) => ratioAt(mode, workers)),
    })),
  };
  const uploads = modes.filter((mode) => mode.upload);
  const budget: Chart = {
    file: 'upload-budget',
    title: `Uploads: CPU per GB over their budget, ${fmt.plural(targetWorkers, 'worker')} (target ≤ ${BUDGET})`,
    x: 'simultaneous clients',
    y: "CPU / (nginx's + digests')",
    series: [
      ...uploads.map((mode) => ({
        name: mode.name.replace('https-upload-', ''),
        points: counts.flatMap((clients) => {
          const ours = find(steps, mode.name, clients, targetWorkers, 'repoman');
          const theirs = find(steps, mode.name, clients, targetWorkers, 'nginx');
          const cost = uploadDigestCost(digests, everyDigest(mode));
          return ours && theirs ? [[clients, budgetRatio(ours, theirs, cost)] as const] : [];
        }),
      })),
      { name: 'target', dashed: true, points: counts.map((c) => [c, BUDGET] as const) },
    ],
  };
  return [...byMode, byWorkers, ...(uploads.length > 0 ? [budget] : [])].filter((chart) =>
    chart.series.some((s) => s.points.length > 0),
  );
}
