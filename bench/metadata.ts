/**
 * Metadata load: 10 000 images in the repository, then 50 concurrent keep-alive clients with client
 * certificates asking `whoami`, one image, and a page of the image list, each for a fixed time (after a short
 * unmeasured warm-up); requests per
 * second, p50 and p99 latency, on SQLite and on PostgreSQL (a fresh schema in the local test database,
 * dropped afterwards).
 *
 *   node bench/metadata.ts [--images 10000] [--clients 50] [--seconds 10] [--smoke] [--out DIR]
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { root, type Server, startRepoman } from './lib.ts';

const { values } = parseArgs({
  options: {
    images: { type: 'string' },
    clients: { type: 'string' },
    seconds: { type: 'string' },
    smoke: { type: 'boolean' },
    quick: { type: 'boolean' },
    out: { type: 'string' },
    engines: { type: 'string' },
  },
});
const images = Number(values.images ?? (values.smoke ? 100 : 10_000));
const clients = Number(values.clients ?? (values.smoke ? 5 : 50));
const seconds = Number(values.seconds ?? (values.smoke ? 0.5 : values.quick ? 3 : 10));
/** Each request kind first runs this long unmeasured, so the figures are the steady state's. */
const warmUp = Math.min(2, seconds / 5);
const engines = (values.engines ?? 'sqlite,postgres').split(',');
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
}

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

const results: LoadResult[] = [];
const dir = await mkdtemp(join(tmpdir(), 'repoman-metadata-'));
try {
  for (const engine of engines) {
    const schema = `bench_${process.pid}_${Date.now()}`;
    const data = join(dir, engine);
    const server = await startRepoman(
      data,
      engine === 'postgres' ? { REPOMAN_DATABASE_URL: PG_URL, REPOMAN_DATABASE_SCHEMA: schema } : {},
    );
    try {
      const ca = await readFile(join(data, 'ca/ca.pem'), 'utf8');
      const cert = await readFile(join(data, 'admin/admin.pem'), 'utf8');
      const agent = agentFor(ca, cert);
      const started = performance.now();
      await populate(agent, server);
      console.error(
        `${engine}: ${images} images made in ${((performance.now() - started) / 1000).toFixed(1)} s`,
      );
      for (const [request, path] of [
        ['whoami', '/api/whoami'],
        ['show image', `/api/images/admin/image-${String(Math.floor(images / 2)).padStart(5, '0')}.img`],
        ['list images (first page of 50)', '/api/images?limit=50'],
      ] as const) {
        await load(agent, `${server.https}${path}`, warmUp); // not measured: the JIT warms up, pools fill
        const { latencies, errors } = await load(agent, `${server.https}${path}`, seconds);
        const sorted = latencies.sort((a, b) => a - b);
        const result = {
          engine,
          request,
          requests: sorted.length,
          rps: sorted.length / seconds,
          p50: percentile(sorted, 0.5),
          p99: percentile(sorted, 0.99),
          errors,
        };
        results.push(result);
        console.error(
          `${engine} ${request}: ${result.rps.toFixed(0)}/s, p50 ${result.p50.toFixed(1)} ms, p99 ${result.p99.toFixed(1)} ms, ${errors} errors`,
        );
      }
      agent.destroy();
    } finally {
      await server.stop();
      if (engine === 'postgres') {
        const client = new pg.Client({ connectionString: PG_URL });
        await client.connect();
        await client.query(`drop schema if exists ${schema} cascade`);
        await client.end();
      }
    }
  }
  const lines = [
    `${images} images, ${clients} concurrent keep-alive clients with client certificates, ${seconds} s per request kind`,
    '',
    '| engine | request | requests/s | p50 | p99 | errors |',
    '| --- | --- | --- | --- | --- | --- |',
    ...results.map(
      (r) =>
        `| ${r.engine} | ${r.request} | ${r.rps.toFixed(0)} | ${r.p50.toFixed(1)} ms | ${r.p99.toFixed(1)} ms | ${r.errors} |`,
    ),
  ];
  await mkdir(out, { recursive: true });
  await writeFile(
    join(out, 'metadata.json'),
    `${JSON.stringify({ images, clients, seconds, results }, null, 2)}\n`,
  );
  await writeFile(join(out, 'metadata.md'), `${lines.join('\n')}\n`);
  console.log(lines.join('\n'));
  if (results.some((r) => r.errors > 0)) process.exitCode = 1;
} finally {
  await rm(dir, { recursive: true, force: true });
}
