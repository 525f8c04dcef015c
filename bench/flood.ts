/**
 * A flood of costly certificate chains: four looping attackers from 127.0.0.2 each present a self-made chain
 * of 15 CA certificates sharing one 16384-bit RSA key with a 64-bit exponent (the most OpenSSL takes), named
 * up to the server's own CA, with no valid credential; meanwhile a victim from 127.0.0.1 asks `whoami` on a
 * new connection each time (so each of its requests pays a handshake and a chain check too). The victim's p50
 * and p99 with the flood, beside the same without it: the target is a p99 within 2x. Then the same on a server
 * that never holds an address back for its refused certificates, to show what the checks cost by themselves.
 *
 *   node bench/flood.ts [--seconds 30] [--attackers 4] [--smoke] [--out DIR]
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import tls from 'node:tls';
import { parseArgs } from 'node:util';
import { parseCertificate, pemToDers } from '../packages/server/src/pki/certificate.ts';
import { generateKey, issueCertificate, rsaPublicKeyNobodyHolds } from '../packages/server/src/pki/issue.ts';
import { root, type Server, startRepoman } from './lib.ts';

const { values } = parseArgs({
  strict: false, // npm run bench passes every benchmark the same options
  options: {
    seconds: { type: 'string' },
    attackers: { type: 'string' },
    smoke: { type: 'boolean' },
    quick: { type: 'boolean' },
    out: { type: 'string' },
    // internal: run as the attackers' process
    attack: { type: 'string' },
    port: { type: 'string' },
  },
});

/** The attackers' process: `count` loops, each a new TLS connection with the hostile chain, until killed. */
async function attack(chainFile: string, port: number, count: number): Promise<never> {
  const { cert, key } = JSON.parse(readFileSync(chainFile, 'utf8')) as { cert: string; key: string };
  let answered = 0;
  let refused = 0;
  process.on('SIGTERM', () => {
    process.stdout.write(`${JSON.stringify({ answered, refused })}\n`);
    process.exit(0);
  });
  process.stdout.write('ready\n'); // the parent measures only once this process can report
  const loop = async () => {
    for (;;) {
      await new Promise<void>((done) => {
        const socket = tls.connect({
          socket: net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' }),
          servername: 'localhost',
          cert,
          key,
          rejectUnauthorized: false,
        });
        const end = () => {
          socket.destroy();
          done();
        };
        socket.once('secureConnect', () =>
          socket.end('GET /api/whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'),
        );
        socket.once('data', (chunk: Buffer) => {
          answered++;
          if (/^HTTP\/1\.1 401 /.test(chunk.toString('latin1'))) refused++;
        });
        socket.once('close', end);
        socket.once('error', end);
      });
    }
  };
  await Promise.all(Array.from({ length: count }, loop));
  throw new Error('unreachable');
}

if (typeof values.attack === 'string')
  await attack(values.attack, Number(values.port), Number(values.attackers ?? 4));

const seconds = Number(values.seconds ?? (values.smoke ? 1 : values.quick ? 10 : 30));
const attackers = Number(values.attackers ?? 4);
const out = resolve(typeof values.out === 'string' ? values.out : join(root, 'bench', 'results'));

/** The review's chain: `length` CAs sharing one huge key, the top one claiming the trusted CA as its issuer. */
function hostileCredential(trustedCaPem: string, length: number): { cert: string; key: string } {
  const [der] = pemToDers(trustedCaPem);
  const trusted = parseCertificate(der as Buffer);
  const huge = rsaPublicKeyNobodyHolds(16384, 2n ** 64n - 59n);
  const junk = generateKey();
  const pems: string[] = [];
  let issuer = trusted;
  for (let i = length; i >= 1; i--) {
    const ca = issueCertificate({
      subject: `/O=Hostile/CN=Hostile CA ${i}`,
      publicKey: huge,
      issuer: { cert: issuer, key: junk.privateKey },
      ca: true,
    });
    pems.unshift(ca.pem);
    issuer = ca.parsed;
  }
  const leafKeys = generateKey();
  const leaf = issueCertificate({
    subject: '/O=Hostile/CN=Nobody',
    publicKey: leafKeys.publicKey,
    issuer: { cert: issuer, key: junk.privateKey },
  });
  return {
    cert: [leaf.pem, ...pems].join(''),
    key: leafKeys.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
  };
}

/** The victim: `whoami` on a new connection each time, for `seconds`; the latencies in milliseconds. */
async function victim(server: Server, data: string): Promise<number[]> {
  const ca = readFileSync(join(data, 'ca/ca.pem'));
  const cert = readFileSync(join(data, 'admin/admin.pem'));
  const latencies: number[] = [];
  const until = performance.now() + seconds * 1000;
  while (performance.now() < until) {
    const started = performance.now();
    const status = await new Promise<number>((done, fail) => {
      // by address, not by name: localhost may be ::1 first, and the victim's address is the point
      const request = https.get(
        {
          host: '127.0.0.1',
          port: new URL(server.https).port,
          path: '/api/whoami',
          servername: 'localhost',
          ca,
          cert,
          key: cert,
          agent: false,
          localAddress: '127.0.0.1',
        },
        (response) => {
          response.resume();
          response.on('end', () => done(response.statusCode ?? 0));
        },
      );
      request.on('error', fail);
    });
    if (status !== 200) throw new Error(`the victim's whoami answered ${status}`);
    latencies.push(performance.now() - started);
  }
  return latencies;
}

const quantile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;

function summary(latencies: number[]) {
  const sorted = [...latencies].sort((a, b) => a - b);
  return {
    requests: sorted.length,
    p50: Number(quantile(sorted, 0.5).toFixed(2)),
    p99: Number(quantile(sorted, 0.99).toFixed(2)),
  };
}

/** The attackers' process against `port`, until stopped: how many answers it got, and how many were 401. */
function startFlood(chainFile: string, port: string) {
  const child = spawn(
    process.execPath,
    [import.meta.filename, '--attack', chainFile, '--port', port, '--attackers', String(attackers)],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  let report = '';
  let started: () => void;
  const ready = new Promise<void>((done) => {
    started = done;
  });
  child.stdout?.on('data', (chunk: Buffer) => {
    report += chunk.toString();
    if (report.includes('ready\n')) started();
  });
  child.once('exit', () => started());
  return {
    child,
    /** Once the attackers' process is up (on a loaded machine, starting Node takes a while). */
    ready,
    async stop(): Promise<{ answered: number; refused: number }> {
      const exited = new Promise((done) => child.once('exit', done));
      child.kill('SIGTERM');
      await exited;
      const last = report.trim().split('\n').at(-1) ?? '';
      return JSON.parse(last.startsWith('{') ? last : '{"answered":0,"refused":0}') as {
        answered: number;
        refused: number;
      };
    },
  };
}

/**
 * One server (with `env`): the victim alone, then beside the flood. Every answer the attackers got must be a
 * 401: a chain that got further would make the figures mean nothing.
 */
async function measure(dir: string, env: Record<string, string>) {
  const data = join(dir, 'data');
  const server = await startRepoman(data, { REPOMAN_HTTPS_LISTEN: '127.0.0.1', ...env });
  let flood: ReturnType<typeof startFlood> | undefined;
  try {
    const chainFile = join(dir, 'hostile.json');
    await writeFile(
      chainFile,
      JSON.stringify(hostileCredential(readFileSync(join(data, 'ca/ca.pem'), 'utf8'), 15)),
    );
    const quiet = summary(await victim(server, data));
    flood = startFlood(chainFile, new URL(server.https).port);
    await flood.ready;
    // the attackers' own CPU is part of the load: let them get going before measuring
    await new Promise((done) => setTimeout(done, Math.min(2000, seconds * 200)));
    const before = performance.now();
    const flooded = summary(await victim(server, data));
    const floodSeconds = (performance.now() - before) / 1000;
    const { answered, refused } = await flood.stop();
    flood = undefined;
    if (refused !== answered || answered === 0) {
      throw new Error(`the flood's chains were not all refused with 401 (${refused} of ${answered})`);
    }
    const ratio = quiet.p99 > 0 ? flooded.p99 / quiet.p99 : 0;
    return { quiet, flooded, ratio, attacks: answered, attacksPerSecond: answered / floodSeconds };
  } finally {
    if (flood) flood.child.kill('SIGKILL');
    await server.stop();
  }
}

const dir = await mkdtemp(join(tmpdir(), 'repoman-flood-'));
try {
  // As configured by default (an address whose certificates are refused 30 times in a minute is held back
  // until the minute is over), then with that off: what the chain checks and handshakes cost by themselves.
  const held = await measure(join(dir, 'default'), {});
  const open = await measure(join(dir, 'unlimited'), {
    REPOMAN_CONNECTIONS_MAX_REFUSED_CERTIFICATES_PER_MINUTE: '0',
  });
  const result = {
    seconds,
    attackers,
    chain: '15 CAs, one 16384-bit RSA key, 64-bit exponent',
    quiet: held.quiet,
    flooded: held.flooded,
    ratio: held.ratio,
    attacks: held.attacks,
    withoutHoldBack: open,
  };
  await mkdir(out, { recursive: true });
  await writeFile(join(out, 'flood.json'), `${JSON.stringify(result, null, 2)}\n`);
  const row = (what: string, r: { requests: number; p50: number; p99: number }) =>
    `| ${what} | ${r.requests} | ${r.p50} ms | ${r.p99} ms |`;
  console.log(
    [
      '',
      `Costly-chain flood: ${attackers} attackers from 127.0.0.2, victim whoami on new connections from 127.0.0.1, ${seconds} s each`,
      '',
      '| victim | requests | p50 | p99 |',
      '| --- | ---: | ---: | ---: |',
      row('without the flood', held.quiet),
      row('with the flood', held.flooded),
      `| ratio (p99) | | | ${held.ratio.toFixed(2)} |`,
      row('without the flood, no hold-back', open.quiet),
      row('with the flood, no hold-back', open.flooded),
      `| ratio (p99), no hold-back | | | ${open.ratio.toFixed(2)} |`,
      '',
      `The attackers' chains were refused ${held.attacks} times (401) before their address was held back, and ${open.attacks} times (${open.attacksPerSecond.toFixed(0)} a second) without the hold-back.`,
    ].join('\n'),
  );
} finally {
  await rm(dir, { recursive: true, force: true });
}
