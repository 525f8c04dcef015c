/**
 * The targets the benchmarks are held to, each reported as met or not with its figure, from the results
 * the benchmarks wrote (a target whose benchmark did not run is skipped).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

interface Target {
  name: string;
  figure: string;
  met: boolean;
}

const load = async <T>(dir: string, file: string): Promise<T | null> =>
  JSON.parse(await readFile(join(dir, file), 'utf8').catch(() => 'null')) as T | null;

export async function targets(dir: string): Promise<Target[]> {
  const found: Target[] = [];
  const throughput = await load<{
    steps: {
      mode: string;
      clients: number;
      server: string;
      rate: number;
      seconds: number;
      syncSeconds?: number;
    }[];
  }>(dir, 'throughput.json');
  if (throughput) {
    /** nginx's rate counting the time its bytes took to reach the disk after it answered. */
    const onDisk = (s: { rate: number; seconds: number; syncSeconds?: number }) =>
      (s.rate * s.seconds) / (s.seconds + (s.syncSeconds ?? 0));
    /** The worst ratio Repoman/nginx over the client counts, and at how many clients. */
    const worst = (mode: string, durable: boolean) => {
      const ratios = throughput.steps
        .filter((s) => s.mode === mode && s.server === 'repoman')
        .map((ours) => {
          const theirs = throughput.steps.find(
            (s) => s.mode === mode && s.server === 'nginx' && s.clients === ours.clients,
          );
          const rate = theirs ? (durable ? onDisk(theirs) : theirs.rate) : 0;
          return { clients: ours.clients, ratio: rate > 0 ? ours.rate / rate : 0 };
        });
      return ratios.length > 0 ? ratios.reduce((a, b) => (b.ratio < a.ratio ? b : a)) : null;
    };
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
      found.push({
        name,
        figure: `worst ${w.ratio.toFixed(2)} (at ${w.clients} clients)`,
        met: w.ratio >= bound,
      });
    }
  }
  const scale = await load<{ clients: number; results: { server: string; complete: number; rss: number }[] }>(
    dir,
    'scale.json',
  );
  const ours = scale?.results.find((r) => r.server === 'repoman');
  if (scale && ours)
    found.push({
      name: `${scale.clients} clients: every one finishes, peak RSS < 300 MB`,
      figure: `${ours.complete} of ${scale.clients} finished, ${(ours.rss / 1e6).toFixed(0)} MB`,
      met: ours.complete === scale.clients && ours.rss < 300e6,
    });
  const flood = await load<{ ratio: number; quiet: { p99: number }; flooded: { p99: number } }>(
    dir,
    'flood.json',
  );
  if (flood) {
    found.push({
      name: "a victim's p99 under a flood of costly certificate chains ≤ 2x without it",
      figure: `${flood.flooded.p99} ms / ${flood.quiet.p99} ms = ${flood.ratio.toFixed(2)}`,
      met: flood.ratio <= 2,
    });
  }
  const metadata = await load<{ results: { engine: string; request: string; p99: number }[] }>(
    dir,
    'metadata.json',
  );
  if (metadata) {
    const worst = metadata.results.reduce((a, b) => (b.p99 > a.p99 ? b : a));
    found.push({
      name: 'metadata p99 < 50 ms',
      figure: `worst ${worst.p99.toFixed(1)} ms (${worst.request}, ${worst.engine})`,
      met: worst.p99 < 50,
    });
  }
  return found;
}

export function targetTable(found: Target[]): string {
  return [
    '| target | figure | met |',
    '| --- | --- | --- |',
    ...found.map((t) => `| ${t.name} | ${t.figure} | ${t.met ? 'yes' : 'no'} |`),
  ].join('\n');
}
