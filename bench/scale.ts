/**
 * The paper's production case, scaled to this machine: 150 clients downloading one large image at once over
 * HTTPS with client certificates (curl, each piped into sha256sum), then 500 with a smaller image. Every
 * download must complete with the right SHA-256; reports the aggregate throughput, the slowest/fastest client
 * ratio and the servers' peak RSS (summed over their processes), for Repoman and, in the same run, nginx, both
 * with one worker per core.
 *
 *   node bench/scale.ts [--clients 150,500] [--size-mib 128] [--many-size-mib 32] [--workers N] [--quick | --smoke]
 *                       [--out DIR]
 *
 * --size-mib is the first wave's size per client (the 150), --many-size-mib the later waves' (the 500): 500
 * curls and 500 sha256sums share the cores with the servers, so a small image keeps the wave to minutes.
 */

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { type Chart, renderCharts } from './charts.ts';
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
  uploadAndRead,
} from './lib.ts';

const { values } = parseArgs({
  options: {
    clients: { type: 'string' },
    'size-mib': { type: 'string' },
    'many-size-mib': { type: 'string' },
    workers: { type: 'string' },
    smoke: { type: 'boolean' },
    quick: { type: 'boolean' },
    out: { type: 'string' },
  },
});
const waves = (values.clients ?? (values.smoke ? '5,20' : '150,500')).split(',').map(Number);
const sizeMib = Number(values['size-mib'] ?? (values.smoke ? 1 : values.quick ? 16 : 128));
const manySizeMib = Number(values['many-size-mib'] ?? (values.smoke ? 1 : values.quick ? 8 : 32));
/** One worker per core for both servers (the targets' condition); a list (the throughput's axis) takes its largest. */
const workers = Math.max(...(values.workers ?? String(cores)).split(',').map(Number));
const out = resolve(values.out ?? join(root, 'bench', 'results'));

export interface ScaleResult {
  server: 'repoman' | 'nginx';
  clients: number;
  complete: number;
  rate: number;
  slowest: number;
  fastest: number;
  rss: number;
}

export interface Wave {
  clients: number;
  sizeMib: number;
  workers: number;
  results: ScaleResult[];
}

/**
 * One client: once the start is given (a shared `flock` on `gate`, free when the wave's holder lets go of its
 * exclusive one), curl into sha256sum; its SHA-256 and its own time. It says it is ready first, by a byte in
 * `ready`. Without the gate, the first of 500 clients would finish before the last had started.
 */
async function client(server: Server, url: string, gate: { lock: string; ready: string }) {
  const script =
    'echo >> "$READY"; flock -s "$LOCK" true; curl -sS --fail -w "%{stderr}%{time_total}" "$@" | sha256sum';
  const { stdout, stderr } = await run('sh', ['-c', script, 'sh', ...server.tls, url], {
    maxBuffer: 1024 * 1024,
    env: { ...process.env, LOCK: gate.lock, READY: gate.ready },
  });
  return { sha256: stdout.split(' ')[0] ?? '', seconds: Number(stderr.trim().split(/\s+/).pop()) };
}

/** Holds `lock` exclusively until the returned function is called. */
async function hold(lock: string): Promise<() => void> {
  const holder = spawn('flock', ['-x', lock, '-c', 'echo held; read line'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  await once(holder.stdout, 'data');
  return () => holder.stdin.end('go\n');
}

async function wave(
  server: Server,
  kind: ScaleResult['server'],
  clients: number,
  url: string,
  image: { sha256: string; bytes: number },
): Promise<ScaleResult> {
  const gate = { lock: join(dir, `${kind}-${clients}.lock`), ready: join(dir, `${kind}-${clients}.ready`) };
  await writeFile(gate.ready, '');
  const release = await hold(gate.lock);
  const running = Array.from({ length: clients }, () =>
    client(server, url, gate).catch(() => ({ sha256: '', seconds: 0 })),
  );
  // Every client started and waiting at the gate (a minute at most), then all at once.
  for (let i = 0; i < 600 && (await stat(gate.ready)).size < clients; i++)
    await new Promise((done) => setTimeout(done, 100));
  const m = await measured(server.pids, () => {
    release();
    return Promise.all(running);
  });
  const good = m.result.filter((r) => r.sha256 === image.sha256);
  const times = good.map((r) => r.seconds);
  const result: ScaleResult = {
    server: kind,
    clients,
    complete: good.length,
    rate: (good.length * image.bytes) / m.seconds,
    slowest: Math.max(...times),
    fastest: Math.min(...times),
    rss: m.peak * 1024,
  };
  console.error(
    `${clients} clients, ${kind}: ${result.complete} complete, ${(result.rate / 1e6).toFixed(0)} MB/s, slowest/fastest ${(result.slowest / result.fastest).toFixed(2)}, peak RSS ${(result.rss / 1e6).toFixed(0)} MB`,
  );
  return result;
}

/**
 * Each client holds a connection on the server and three pipes here, and the servers need their files too:
 * a wave that would run out of descriptors fails at once, saying so, instead of counting failed clients.
 */
async function checkDescriptors(most: number) {
  const limits = await readFile('/proc/self/limits', 'utf8');
  const open = Number(/^Max open files\s+(\d+)/m.exec(limits)?.[1] ?? Number.POSITIVE_INFINITY);
  const need = 4 * most + 256;
  if (open < need) {
    console.error(
      `${most} clients at once need about ${need} open files here and in the servers; the limit is ${open}: raise it (ulimit -n ${need}) and run again`,
    );
    process.exit(1);
  }
}

const nginxFound = await findNginx();
if (!nginxFound) {
  console.error('nginx is not installed: apt-get install nginx-light (the benchmark compares against it)');
  process.exit(1);
}
await checkDescriptors(Math.max(...waves));
const dir = await mkdtemp(join(tmpdir(), 'repoman-scale-'));
const started: Server[] = [];
try {
  const repoman = await startRepoman(join(dir, 'repoman'), {}, { workers });
  started.push(repoman);
  const nginx = await startNginx(nginxFound.binary, join(dir, 'nginx'), join(dir, 'repoman'), { workers });
  started.push(nginx);
  const done: Wave[] = [];
  /** Each size's image, uploaded to both servers once: its SHA-256 and size. */
  const images = new Map<number, { sha256: string; bytes: number }>();
  for (const [index, clients] of waves.entries()) {
    const mib = index === 0 ? sizeMib : manySizeMib;
    const name = `big-${mib}.img`;
    let image = images.get(mib);
    if (!image) {
      const file = join(dir, name);
      await randomFile(file, mib);
      const hash = createHash('sha256');
      await pipeline(createReadStream(file), hash);
      image = { sha256: hash.digest('hex'), bytes: mib * 1024 * 1024 };
      images.set(mib, image);
      await curl([...repoman.tls, '-d', `name=${name}`, `${repoman.https}/api/images`]);
      await uploadAndRead(
        repoman,
        file,
        `${repoman.https}/api/images/raw/${name}`,
        `${repoman.https}/api/images/raw/admin/${name}`,
      );
      await curl([...nginx.tls, '-T', file, `${nginx.https}/${name}`]);
      await rm(file);
    }
    done.push({
      clients,
      sizeMib: mib,
      workers,
      results: [
        await wave(repoman, 'repoman', clients, `${repoman.https}/api/images/raw/admin/${name}`, image),
        await wave(nginx, 'nginx', clients, `${nginx.https}/${name}`, image),
      ],
    });
  }
  const tables = done.map(({ clients, sizeMib: mib, results }) => {
    const [ours, theirs] = results as [ScaleResult, ScaleResult];
    return [
      `${clients} clients at once, ${mib} MiB each, HTTPS with client certificates on loopback; ${workers} worker${workers === 1 ? '' : 's'} for both servers; nginx ${nginxFound.version}`,
      '',
      '| figure | Repoman | nginx | Repoman/nginx |',
      '| --- | --- | --- | --- |',
      `| complete, right SHA-256 | ${ours.complete} of ${clients} | ${theirs.complete} of ${clients} | |`,
      `| aggregate rate | ${(ours.rate / 1e6).toFixed(0)} MB/s | ${(theirs.rate / 1e6).toFixed(0)} MB/s | ${(ours.rate / theirs.rate).toFixed(2)} |`,
      `| slowest/fastest client | ${(ours.slowest / ours.fastest).toFixed(2)} | ${(theirs.slowest / theirs.fastest).toFixed(2)} | |`,
      `| peak RSS | ${(ours.rss / 1e6).toFixed(0)} MB | ${(theirs.rss / 1e6).toFixed(0)} MB | ${(ours.rss / theirs.rss).toFixed(2)} |`,
    ].join('\n');
  });
  await mkdir(out, { recursive: true });
  await writeFile(join(out, 'scale.json'), `${JSON.stringify({ waves: done }, null, 2)}\n`);
  await writeFile(join(out, 'scale.md'), `${tables.join('\n\n')}\n`);
  // The clients axis: how evenly and in how much memory each server served each wave.
  const series = (value: (r: ScaleResult) => number) =>
    (['repoman', 'nginx'] as const).map((kind) => ({
      name: kind === 'repoman' ? 'Repoman' : 'nginx',
      points: done.flatMap((w) =>
        w.results.filter((r) => r.server === kind).map((r) => [w.clients, value(r)] as const),
      ),
    }));
  const charts: Chart[] = [
    {
      file: 'scale-evenness',
      title: 'Many clients at once: slowest/fastest client',
      x: 'simultaneous clients',
      y: 'slowest / fastest',
      series: series((r) => r.slowest / r.fastest),
    },
    {
      file: 'scale-rss',
      title: 'Many clients at once: peak RSS, all processes',
      x: 'simultaneous clients',
      y: 'MB',
      series: series((r) => r.rss / 1e6),
    },
  ];
  await renderCharts(out, charts);
  console.log(tables.join('\n\n'));
  if (done.some((w) => w.results.some((r) => r.server === 'repoman' && r.complete !== w.clients)))
    process.exitCode = 1;
} finally {
  for (const server of started.reverse()) await server.stop().catch(() => {});
  await rm(dir, { recursive: true, force: true });
}
