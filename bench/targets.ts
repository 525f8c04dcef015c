/**
 * The targets the benchmarks are held to, each reported as met or not with its figure, from the results
 * the benchmarks wrote (a target whose benchmark did not run is left out; one whose peer could not run, such
 * as Glance, is reported as not measured, with why). Throughput targets are read at the run's largest number
 * of workers (one per core, for both servers). First the targets of every core, the uploads' CPU budget,
 * Glance and many clients, then the earlier ones.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BUDGET, budgetRatio, cpuPerGb, type Measure, systemPerGb } from './budget.ts';
import { type DigestCosts, uploadDigestCost } from './digests.ts';

interface Target {
  name: string;
  figure: string;
  /** null: not measured in this run (the figure says why). */
  met: boolean | null;
}

interface Step extends Measure {
  mode: string;
  clients: number;
  workers?: number;
  server: string;
  rate: number;
  seconds: number;
  syncSeconds?: number;
}

interface Throughput {
  workers?: number[];
  targetWorkers?: number;
  digests?: DigestCosts;
  steps: Step[];
  glance?: { skipped?: string; steps: Step[] };
  lateRun?: { mode: string; clients: number; workers: number; first: Step[]; last: Step[] } | null;
}

const load = async <T>(dir: string, file: string): Promise<T | null> =>
  JSON.parse(await readFile(join(dir, file), 'utf8').catch(() => 'null')) as T | null;

/** The upload modes: name, title, every digest, to disk. */
const UPLOADS = [
  ['https-upload-sha256', 'upload to disk, SHA-256', false, true],
  ['https-upload-all-digests', 'upload to disk, every digest', true, true],
  ['https-upload-discard-sha256', 'upload discarded, SHA-256', false, false],
  ['https-upload-discard-all-digests', 'upload discarded, every digest', true, false],
] as const;
const DOWNLOADS = [
  ['http-download', 'HTTP'],
  ['https-download', 'HTTPS, default suite'],
  ['https-download-aes128gcm', 'HTTPS, AES-128-GCM'],
] as const;

const clientsWord = (n: number) => `${n} client${n === 1 ? '' : 's'}`;
/** A ratio's figure; a reference of nothing measurable (no CPU tick in a tiny step) gives n/a. */
const fixed = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
const mbps = (rate: number) => `${(rate / 1e6).toFixed(0)} MB/s`;

/** The worst of a figure over the client counts (the largest, or the smallest with `lowest`), with its step. */
function worstOf<T>(
  items: T[],
  value: (item: T) => number,
  lowest: boolean,
): { item: T; value: number } | null {
  let worst: { item: T; value: number } | null = null;
  for (const item of items) {
    const v = value(item);
    if (!worst || (lowest ? v < worst.value : v > worst.value)) worst = { item, value: v };
  }
  return worst;
}

function throughputTargets(throughput: Throughput): { latest: Target[]; earlier: Target[] } {
  const latest: Target[] = [];
  const earlier: Target[] = [];
  const workers = throughput.targetWorkers;
  const at = (s: Step) => workers === undefined || s.workers === undefined || s.workers === workers;
  const steps = throughput.steps.filter(at);
  /** Repoman's steps of a mode, each with nginx's step of the same clients. */
  const pairs = (mode: string) =>
    steps
      .filter((s) => s.mode === mode && s.server === 'repoman')
      .flatMap((ours) => {
        const theirs = steps.find(
          (s) => s.mode === mode && s.server === 'nginx' && s.clients === ours.clients,
        );
        return theirs ? [{ ours, theirs }] : [];
      });

  const digests = throughput.digests;
  if (digests)
    for (const [mode, title, every] of UPLOADS) {
      const cost = uploadDigestCost(digests, every);
      const w = worstOf(pairs(mode), (p) => budgetRatio(p.ours, p.theirs, cost), false);
      if (!w) continue;
      const { ours, theirs } = w.item;
      latest.push({
        name: `${title}: CPU per GB ≤ ${BUDGET} x (nginx's + the digests')`,
        figure: `worst ${fixed(w.value)} (at ${clientsWord(ours.clients)}: ${cpuPerGb(ours).toFixed(2)} s/GB against ${cpuPerGb(theirs).toFixed(2)} + ${cost.toFixed(2)})`,
        met: w.value <= BUDGET,
      });
    }
  for (const [mode, title] of UPLOADS.filter(([, , , toDisk]) => toDisk)) {
    const w = worstOf(pairs(mode), (p) => systemPerGb(p.ours) / systemPerGb(p.theirs), false);
    if (!w) continue;
    latest.push({
      name: `${title}: system CPU per GB ≤ 1.5 x nginx's`,
      figure: `worst ${fixed(w.value)} (at ${clientsWord(w.item.ours.clients)}: ${systemPerGb(w.item.ours).toFixed(2)} s/GB against ${systemPerGb(w.item.theirs).toFixed(2)})`,
      met: w.value <= 1.5,
    });
  }
  for (const [mode, title] of DOWNLOADS) {
    const rate = worstOf(pairs(mode), (p) => p.ours.rate / p.theirs.rate, true);
    const cpu = worstOf(pairs(mode), (p) => cpuPerGb(p.ours) / cpuPerGb(p.theirs), false);
    if (!rate || !cpu) continue;
    latest.push(
      {
        name: `download, ${title}: ≥ 0.9 of nginx at every client count`,
        figure: `worst ${fixed(rate.value)} (at ${clientsWord(rate.item.ours.clients)})`,
        met: rate.value >= 0.9,
      },
      {
        name: `download, ${title}: CPU per GB ≤ 1.5 x nginx's`,
        figure: `worst ${fixed(cpu.value)} (at ${clientsWord(cpu.item.ours.clients)}: ${cpuPerGb(cpu.item.ours).toFixed(2)} s/GB against ${cpuPerGb(cpu.item.theirs).toFixed(2)})`,
        met: cpu.value <= 1.5,
      },
    );
  }

  // Glance: Repoman over HTTPS with every digest against Glance's plain-HTTP upload; over HTTP for downloads.
  for (const [name, transfer, mode, bound] of [
    [
      "uploads ≥ 2 x Glance's rate (Repoman over HTTPS with every digest, Glance over HTTP)",
      'upload',
      'https-upload-all-digests',
      2,
    ],
    ["downloads ≥ 1.2 x Glance's rate (both over HTTP)", 'download', 'http-download', 1.2],
  ] as const) {
    if (!steps.some((s) => s.mode === mode)) continue;
    if (throughput.glance?.skipped || !throughput.glance) {
      latest.push({
        name,
        figure: `not measured (Glance skipped: ${throughput.glance?.skipped ?? 'not run'})`,
        met: null,
      });
      continue;
    }
    const ratios = throughput.glance.steps
      .filter((s) => s.mode === `glance-${transfer}` && at(s))
      .flatMap((theirs) => {
        const ours = steps.find(
          (s) => s.mode === mode && s.server === 'repoman' && s.clients === theirs.clients,
        );
        return ours ? [{ ours, theirs }] : [];
      });
    const w = worstOf(ratios, (p) => p.ours.rate / p.theirs.rate, true);
    if (!w) continue;
    latest.push({
      name,
      figure: `worst ${fixed(w.value)} (at ${clientsWord(w.item.ours.clients)}: ${mbps(w.item.ours.rate)} against ${mbps(w.item.theirs.rate)})`,
      met: w.value >= bound,
    });
  }

  const late = throughput.lateRun;
  if (late) {
    const change = (kind: string) => {
      const a = late.first.find((s) => s.server === kind);
      const b = late.last.find((s) => s.server === kind);
      return a && b ? { rate: b.rate / a.rate, cpu: cpuPerGb(b) / cpuPerGb(a) } : null;
    };
    const ours = change('repoman');
    const theirs = change('nginx');
    if (ours)
      latest.push({
        name: `the run's last upload step within 10 % of its first (${late.mode}, ${clientsWord(late.clients)}): rate and CPU per GB`,
        figure: `last/first: rate ${fixed(ours.rate)}, CPU per GB ${fixed(ours.cpu)}${theirs ? ` (nginx: ${fixed(theirs.rate)}, ${fixed(theirs.cpu)})` : ''}`,
        met: Math.abs(ours.rate - 1) <= 0.1 && Math.abs(ours.cpu - 1) <= 0.1,
      });
  }

  // The earlier targets: rates against nginx's.
  /** nginx's rate counting the time its bytes took to reach the disk after it answered. */
  const onDisk = (s: Step) => (s.rate * s.seconds) / (s.seconds + (s.syncSeconds ?? 0));
  const worst = (mode: string, durable: boolean) =>
    worstOf(
      pairs(mode).map((p) => {
        const rate = durable ? onDisk(p.theirs) : p.theirs.rate;
        return { clients: p.ours.clients, ratio: rate > 0 ? p.ours.rate / rate : 0 };
      }),
      (r) => r.ratio,
      true,
    )?.item;
  for (const [name, mode, bound, durable] of [
    ['HTTP download ≥ 0.8 of nginx', 'http-download', 0.8, false],
    ['HTTPS download ≥ 0.9 of nginx, same suite (AES-128-GCM)', 'https-download-aes128gcm', 0.9, false],
    [
      'upload to disk with every digest ≥ 0.8 of nginx PUT, both with the bytes on disk',
      'https-upload-all-digests',
      0.8,
      true,
    ],
    [
      'upload to disk with SHA-256 ≥ 0.8 of nginx PUT, both with the bytes on disk',
      'https-upload-sha256',
      0.8,
      true,
    ],
    [
      'upload to disk with every digest ≥ 0.8 of nginx PUT as it answers (bytes not yet on disk)',
      'https-upload-all-digests',
      0.8,
      false,
    ],
    [
      'upload to disk with SHA-256 ≥ 0.8 of nginx PUT as it answers (bytes not yet on disk)',
      'https-upload-sha256',
      0.8,
      false,
    ],
    [
      'upload, discarded, with every digest ≥ 0.8 of nginx reading and dropping the body',
      'https-upload-discard-all-digests',
      0.8,
      false,
    ],
    [
      'upload, discarded, with SHA-256 ≥ 0.8 of nginx reading and dropping the body',
      'https-upload-discard-sha256',
      0.8,
      false,
    ],
  ] as const) {
    const w = worst(mode, durable);
    if (!w) continue;
    earlier.push({
      name,
      figure: `worst ${w.ratio.toFixed(2)} (at ${w.clients} clients)`,
      met: w.ratio >= bound,
    });
  }
  return { latest, earlier };
}

interface ScaleWave {
  clients: number;
  sizeMib: number;
  results: { server: string; complete: number; rss: number; slowest: number; fastest: number }[];
}

export async function targets(dir: string): Promise<Target[]> {
  const latest: Target[] = [];
  const earlier: Target[] = [];
  const throughput = await load<Throughput>(dir, 'throughput.json');
  if (throughput) {
    const found = throughputTargets(throughput);
    latest.push(...found.latest);
    earlier.push(...found.earlier);
  }
  const metadata = await load<{
    clients?: number;
    pinned?: unknown;
    results: { engine: string; request: string; p99: number }[];
  }>(dir, 'metadata.json');
  if (metadata && metadata.results.length > 0) {
    const worst = metadata.results.reduce((a, b) => (b.p99 > a.p99 ? b : a));
    const under = metadata.clients === undefined ? '' : ` at ${clientsWord(metadata.clients)}`;
    const pinned =
      metadata.pinned === undefined ? '' : metadata.pinned ? ', load generator pinned' : ', not pinned';
    latest.push({
      name: 'metadata p99 < 50 ms',
      figure: `worst ${worst.p99.toFixed(1)} ms (${worst.request}, ${worst.engine})${under}${pinned}`,
      met: worst.p99 < 50,
    });
  }
  const scale = await load<{ waves: ScaleWave[] }>(dir, 'scale.json');
  for (const [index, wave] of (scale?.waves ?? []).entries()) {
    const ours = wave.results.find((r) => r.server === 'repoman');
    const theirs = wave.results.find((r) => r.server === 'nginx');
    if (!ours) continue;
    if (index === 0) {
      earlier.push({
        name: `${wave.clients} clients: every one finishes, peak RSS < 300 MB`,
        figure: `${ours.complete} of ${wave.clients} finished, ${(ours.rss / 1e6).toFixed(0)} MB`,
        met: ours.complete === wave.clients && ours.rss < 300e6,
      });
      continue;
    }
    const evenness = ours.slowest / ours.fastest;
    const nginxEvenness = theirs ? theirs.slowest / theirs.fastest : Number.NaN;
    latest.push({
      name: `${wave.clients} simultaneous downloads (${wave.sizeMib} MiB each): all complete with the right SHA-256, slowest/fastest ≤ 1.5 and ≤ nginx's, peak RSS < 400 MB`,
      figure: `${ours.complete} of ${wave.clients}, slowest/fastest ${fixed(evenness)} (nginx ${fixed(nginxEvenness)}), ${(ours.rss / 1e6).toFixed(0)} MB`,
      met:
        ours.complete === wave.clients && evenness <= 1.5 && !(evenness > nginxEvenness) && ours.rss < 400e6,
    });
  }
  const tpc = await load<{
    sizeMib: number;
    download: number;
    upload: number;
    pull: number;
    push: number;
    ratio: number;
    ofUpload: number;
  }>(dir, 'tpc.json');
  if (tpc) {
    latest.push({
      name: `a third-party copy of ${tpc.sizeMib} MiB between two servers ≥ 0.8 of a plain download between them`,
      figure: `pull ${mbps(tpc.pull)}, push ${mbps(tpc.push)} / download ${mbps(tpc.download)} = ${tpc.ratio.toFixed(2)} (${tpc.ofUpload.toFixed(2)} of an upload to the same server, ${mbps(tpc.upload)})`,
      met: tpc.ratio >= 0.8,
    });
  }
  const flood = await load<{ ratio: number; quiet: { p99: number }; flooded: { p99: number } }>(
    dir,
    'flood.json',
  );
  if (flood) {
    earlier.push({
      name: "a victim's p99 under a flood of costly certificate chains ≤ 2x without it",
      figure: `${flood.flooded.p99} ms / ${flood.quiet.p99} ms = ${flood.ratio.toFixed(2)}`,
      met: flood.ratio <= 2,
    });
  }
  return [...latest, ...earlier];
}

export function targetTable(found: Target[]): string {
  return [
    '| target | figure | met |',
    '| --- | --- | --- |',
    ...found.map(
      (t) => `| ${t.name} | ${t.figure} | ${t.met === null ? 'not measured' : t.met ? 'yes' : 'no'} |`,
    ),
  ].join('\n');
}

/** The targets' table, after a line that says at how many workers the throughput and scale figures are. */
export async function targetReport(dir: string): Promise<string> {
  const throughput = await load<Throughput>(dir, 'throughput.json');
  const scale = await load<{ waves: (ScaleWave & { workers?: number })[] }>(dir, 'scale.json');
  const workers = throughput?.targetWorkers ?? scale?.waves[0]?.workers;
  const preface =
    workers === undefined
      ? ''
      : `Throughput and many-client targets with ${workers} worker${workers === 1 ? '' : 's'} for each server (Repoman's \`workers\`, nginx's \`worker_processes\`, Glance's \`workers\`).\n\n`;
  return `${preface}${targetTable(await targets(dir))}`;
}
