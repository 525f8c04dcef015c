/**
 * Metadata load: 10 000 images in the repository, then 50 concurrent keep-alive clients with client
 * certificates asking `whoami`, one image, and a page of the image list, each for a fixed time (after a short
 * unmeasured warm-up); requests per second, p50 and p99 latency, the database queries each request made (the
 * server's own query counter, from /metrics), and the CPU time the server and its database connections spent
 * per request, on SQLite and on PostgreSQL (a fresh schema in the local test database, dropped afterwards).
 *
 * Where `taskset` (util-linux) is installed and this process may use two cores or more, the load generator (this
 * process) runs on one core and the server and its PostgreSQL connections on another, so that the latencies are
 * the server's, not those of a client competing with it for a core; the table says whether it did.
 *
 *   node bench/metadata.ts [--images 10000] [--clients 50] [--seconds 10] [--engines sqlite,postgres]
 *                          [--requests whoami,show,list] [--no-pin] [--smoke] [--quick] [--out DIR]
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import pg from 'pg';
import { cpuSeconds, root, type Server, startRepoman } from './lib.ts';

const run = promisify(execFile);

const { values } = parseArgs({
  options: {
    images: { type: 'string' },
    clients: { type: 'string' },
    seconds: { type: 'string' },
    smoke: { type: 'boolean' },
    quick: { type: 'boolean' },
    out: { type: 'string' },
    engines: { type: 'string' },
    requests: { type: 'string' },
    'no-pin': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log(`node bench/metadata.ts [options]

  --images N        images made before the load (10000; 100 with --smoke)
  --clients N       concurrent keep-alive clients (50; 5 with --smoke)
  --seconds S       measured time per request kind, after a warm-up of min(2, S/5) s (10; 3 with --quick)
  --engines LIST    sqlite,postgres (both by default)
  --requests LIST   whoami,show,list (all by default)
  --no-pin          leave the load generator, the server and PostgreSQL where the kernel puts them
  --smoke           a few seconds: checks that the benchmark runs, not how fast
  --out DIR         where metadata.md and metadata.json go (bench/results)`);
  process.exit(0);
}
const images = Number(values.images ?? (values.smoke ? 100 : 10_000));
const clients = Number(values.clients ?? (values.smoke ? 5 : 50));
const seconds = Number(values.seconds ?? (values.smoke ? 0.5 : values.quick ? 3 : 10));
/** Each request kind first runs this long unmeasured, so the figures are the steady state's. */
const warmUp = Math.min(2, seconds / 5);
const engines = (values.engines ?? 'sqlite,postgres').split(',');
const wanted = new Set((values.requests ?? 'whoami,show,list').split(','));
const out = resolve(values.out ?? join(root, 'bench', 'results'));
const PG_URL = process.env.REPOMAN_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface LoadResult {
  engine: string;
  request: string;
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  /** Database queries the server made per request (its query counter, read from /metrics). */
  queries: number;
  /** CPU milliseconds (user + system) per request: the server's process, its PostgreSQL connections. */
  serverCpuMs: number;
  databaseCpuMs: number | null;
  /** Share of one core the load generator used meanwhile (near 1: the figures are partly its own). */
  generatorBusy: number;
  /**
   * Share of the time the server's main threads (summed over its processes) and the load generator's were
   * ready to run but waited for their core (other work on the machine): what is in the latencies that neither
   * caused.
   */
  serverWaited: number;
  generatorWaited: number;
}

/**
 * Two cores of this process's own: the first for the load generator, the second for the server and its
 * database connections; null (no pinning) without taskset or with fewer than two cores.
 */
async function pinningCores(): Promise<{ generator: number; server: number } | null> {
  if (values['no-pin']) return null;
  const taskset = await run('taskset', ['--version']).then(
    () => true,
    () => false,
  );
  if (!taskset) return null;
  const status = await readFile('/proc/self/status', 'utf8');
  const list = /Cpus_allowed_list:\s*(\S+)/.exec(status)?.[1] ?? '';
  const cores = list.split(',').flatMap((range) => {
    const [from, to] = range.split('-').map(Number) as [number, number | undefined];
    return Array.from({ length: (to ?? from) - from + 1 }, (_, i) => from + i);
  });
  const [generator, server] = cores;
  return generator === undefined || server === undefined ? null : { generator, server };
}

/** Nanoseconds the processes' main threads have waited, runnable, for a core (/proc/<pid>/schedstat). */
async function waitedNs(pids: number[]): Promise<number> {
  let total = 0;
  for (const pid of pids) {
    const fields = (await readFile(`/proc/${pid}/schedstat`, 'utf8').catch(() => '')).split(' ');
    total += Number(fields[1] ?? 0);
  }
  return total;
}

/** Moves a process, every thread of it, to one core. */
const pin = (pid: number, core: number) => run('taskset', ['-a', '-p', '-c', String(core), String(pid)]);

function agentFor(ca: string, cert: string) {
  return new https.Agent({ keepAlive: true, maxSockets: clients, ca, cert, key: cert });
}

function get(agent: https.Agent, url: string): Promise<number> {
  return new Promise((done, fail) => {
    const request = https.get(url, { agent }, (response) => {
      response.resume();
      response.on('end', () => done(response.statusCode ?? 0));
      response.on('error', fail);
    });
    request.on('error', fail);
  });
}

/** Requests from `clients` loops at once for `seconds`; latencies in ms. */
async function load(
  agent: https.Agent,
  url: string,
  seconds: number,
): Promise<{ latencies: number[]; errors: number }> {
  const latencies: number[] = [];
  let errors = 0;
  const until = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < until) {
        const started = performance.now();
        const status = await get(agent, url).catch(() => 0);
        if (status !== 200) errors++;
        latencies.push(performance.now() - started);
      }
    }),
  );
  return { latencies, errors };
}

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;

/** Queries the server has made so far: the count of its query-duration histogram. */
function queriesSoFar(server: Server): Promise<number> {
  return new Promise((done, fail) => {
    http
      .get(`${server.http}/metrics`, (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => {
          text += chunk;
        });
        response.on('end', () => {
          let total = 0;
          for (const [, n] of text.matchAll(/^repoman_db_query_duration_seconds_count\{[^}]*\} (\d+)$/gm))
            total += Number(n);
          done(total);
        });
      })
      .on('error', fail);
  });
}

async function populate(agent: https.Agent, server: Server) {
  let next = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < images) {
        const i = next++;
        const body = JSON.stringify({ name: `image-${String(i).padStart(5, '0')}.img`, os_type: 'linux' });
        await new Promise<void>((done, fail) => {
          const request = https.request(
            `${server.https}/api/images`,
            {
              method: 'POST',
              agent,
              headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
            },
            (response) => {
              response.resume();
              response.on('end', () =>
                response.statusCode === 201 ? done() : fail(new Error(`create: ${response.statusCode}`)),
              );
            },
          );
          request.on('error', fail);
          request.end(body);
        });
      }
    }),
  );
}

const cores = await pinningCores();
const pinning = cores
  ? `load generator pinned to core ${cores.generator}, the server (one worker) and its PostgreSQL connections to core ${cores.server} (taskset)`
  : 'nothing pinned: the load generator, the server and PostgreSQL share every core';
console.error(pinning);

const results: LoadResult[] = [];
const dir = await mkdtemp(join(tmpdir(), 'repoman-metadata-'));
try {
  for (const engine of engines) {
    const schema = `bench_${process.pid}_${Date.now()}`;
    // The name its connections carry, so that they can be found, pinned and timed.
    const application = schema;
    const data = join(dir, engine);
    // The server starts on its core (its processes inherit it), one worker for one core; then this process,
    // the load generator, moves to its own.
    if (cores) await pin(process.pid, cores.server);
    const server = await startRepoman(
      data,
      {
        // every image goes in one namespace
        REPOMAN_USERS_MAX_IMAGES: String(images + 1),
        ...(engine === 'postgres'
          ? {
              REPOMAN_DATABASE_URL: `${PG_URL}${PG_URL.includes('?') ? '&' : '?'}application_name=${application}`,
              REPOMAN_DATABASE_SCHEMA: schema,
            }
          : {}),
      },
      cores ? { workers: 1 } : {},
    );
    if (cores) await pin(process.pid, cores.generator);
    const admin = engine === 'postgres' ? new pg.Client({ connectionString: PG_URL }) : null;
    await admin?.connect();
    /** The server's PostgreSQL connections (their backends' process ids). */
    const backends = async () =>
      admin
        ? (
            await admin.query<{ pid: number }>(
              'select pid from pg_stat_activity where application_name = $1',
              [application],
            )
          ).rows.map((r) => r.pid)
        : [];
    try {
      const ca = await readFile(join(data, 'ca/ca.pem'), 'utf8');
      const cert = await readFile(join(data, 'admin/admin.pem'), 'utf8');
      const agent = agentFor(ca, cert);
      const started = performance.now();
      await populate(agent, server);
      console.error(
        `${engine}: ${images} images made in ${((performance.now() - started) / 1000).toFixed(1)} s`,
      );
      const requests = [
        ['whoami', 'whoami', '/api/whoami'],
        [
          'show',
          'show image',
          `/api/images/admin/image-${String(Math.floor(images / 2)).padStart(5, '0')}.img`,
        ],
        ['list', 'list images (first page of 50)', '/api/images?limit=50'],
      ] as const;
      for (const [key, request, path] of requests) {
        if (!wanted.has(key)) continue;
        await load(agent, `${server.https}${path}`, warmUp); // not measured: the JIT warms up, pools fill
        // The pool may have opened connections during the warm-up: pin them all now.
        const pids = await backends();
        const serverPids = await server.pids();
        if (cores) for (const pid of [...serverPids, ...pids]) await pin(pid, cores.server);
        const queriesBefore = await queriesSoFar(server);
        const [serverBefore, databaseBefore] = [await cpuSeconds(serverPids), await cpuSeconds(pids)];
        const waitedBefore = [await waitedNs(serverPids), await waitedNs([process.pid])];
        const generatorBefore = process.cpuUsage();
        const { latencies, errors } = await load(agent, `${server.https}${path}`, seconds);
        const generator = process.cpuUsage(generatorBefore);
        const waited = [await waitedNs(serverPids), await waitedNs([process.pid])];
        const [serverAfter, databaseAfter] = [await cpuSeconds(serverPids), await cpuSeconds(pids)];
        const queries = (await queriesSoFar(server)) - queriesBefore;
        const unpinned = (await backends()).filter((pid) => !pids.includes(pid)).length;
        if (unpinned > 0)
          console.error(`${engine} ${request}: ${unpinned} database connections opened while measuring`);
        const sorted = latencies.sort((a, b) => a - b);
        const n = Math.max(1, sorted.length);
        const cpuMs = (before: typeof serverBefore, after: typeof serverAfter) =>
          ((after.user + after.system - before.user - before.system) * 1000) / n;
        const result: LoadResult = {
          engine,
          request,
          requests: sorted.length,
          rps: sorted.length / seconds,
          p50: percentile(sorted, 0.5),
          p99: percentile(sorted, 0.99),
          errors,
          queries: queries / n,
          serverCpuMs: cpuMs(serverBefore, serverAfter),
          databaseCpuMs: admin ? cpuMs(databaseBefore, databaseAfter) : null,
          generatorBusy: (generator.user + generator.system) / 1e6 / seconds,
          serverWaited: ((waited[0] as number) - (waitedBefore[0] as number)) / 1e9 / seconds,
          generatorWaited: ((waited[1] as number) - (waitedBefore[1] as number)) / 1e9 / seconds,
        };
        results.push(result);
        console.error(
          `${engine} ${request}: ${result.rps.toFixed(0)}/s, p50 ${result.p50.toFixed(1)} ms, p99 ${result.p99.toFixed(1)} ms, ${errors} errors, ${result.queries.toFixed(2)} queries, server ${result.serverCpuMs.toFixed(2)} CPU-ms${result.databaseCpuMs === null ? '' : `, database ${result.databaseCpuMs.toFixed(2)} CPU-ms`} per request; load generator ${(result.generatorBusy * 100).toFixed(0)} % of a core; waited for a core: server ${(result.serverWaited * 100).toFixed(0)} %, load generator ${(result.generatorWaited * 100).toFixed(0)} %`,
        );
      }
      agent.destroy();
    } finally {
      await server.stop();
      if (admin) {
        await admin.query(`drop schema if exists ${schema} cascade`);
        await admin.end();
      }
    }
  }
  const ms = (value: number | null) => (value === null ? '' : `${value.toFixed(2)} ms`);
  const lines = [
    `${images} images, ${clients} concurrent keep-alive clients with client certificates, ${seconds} s per request kind; ${pinning}`,
    '',
    '| engine | request | requests/s | p50 | p99 | errors | queries per request | server CPU per request | database CPU per request | load generator busy | waited for a core: server, load generator |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...results.map(
      (r) =>
        `| ${r.engine} | ${r.request} | ${r.rps.toFixed(0)} | ${r.p50.toFixed(1)} ms | ${r.p99.toFixed(1)} ms | ${r.errors} | ${r.queries.toFixed(2)} | ${ms(r.serverCpuMs)} | ${ms(r.databaseCpuMs)} | ${(r.generatorBusy * 100).toFixed(0)} % | ${(r.serverWaited * 100).toFixed(0)} %, ${(r.generatorWaited * 100).toFixed(0)} % |`,
    ),
  ];
  await mkdir(out, { recursive: true });
  await writeFile(
    join(out, 'metadata.json'),
    `${JSON.stringify({ images, clients, seconds, pinned: cores, results }, null, 2)}\n`,
  );
  await writeFile(join(out, 'metadata.md'), `${lines.join('\n')}\n`);
  console.log(lines.join('\n'));
  if (results.some((r) => r.errors > 0)) process.exitCode = 1;
} finally {
  await rm(dir, { recursive: true, force: true });
}
