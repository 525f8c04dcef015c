/**
 * Starts a real Repoman server for a test file: HTTPS and HTTP on random loopback ports, a temporary data
 * directory, a test CA of the test's own, and either a temporary SQLite file or a fresh PostgreSQL schema.
 * With one worker (the default) the server runs in the test's process; with more, it is `repoman-server
 * serve` in a child process, a primary with that many worker processes (src/cluster.ts).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadConfig } from '../../src/config.ts';
import { type RunningServer, startServer } from '../../src/server.ts';
import type { TestPki } from './pki.ts';
import { dropSchema, PG_URL, requirePostgres } from './postgres.ts';

export type Engine = 'sqlite' | 'postgres';

export interface TestServer extends RunningServer {
  dir: string;
  engine: Engine;
  /** The environment the server was configured with (serverCommand runs its operator commands with it). */
  env: Record<string, string>;
  /** The PostgreSQL schema, if any. */
  schema: string | undefined;
  stop(): Promise<void>;
}

/** A server run as a primary and its workers, in child processes: what a test can reach from outside. */
export interface ClusteredTestServer extends TestServer {
  /** The primary process. */
  primary: ChildProcess;
  /** Everything the primary and its workers have written so far (their logs are JSON lines). */
  output(): string;
}

export interface TestServerOptions {
  engine: Engine;
  /** PEM of the CAs the server trusts (files in its trust.ca_dir). */
  caPems: string[];
  /** The `.namespaces` file of each CA, or its `.signing_policy` (default: it may vouch for any name). */
  caNamespaces?: (string | { signingPolicy: string } | undefined)[];
  crlPems?: string[];
  hostCertPem: string;
  hostKeyPem: string;
  admins: { name: string; dn: string }[];
  env?: Record<string, string>;
  /** A configuration file's text (TOML), for what has no environment variable (`[[tokens.issuers]]`). */
  configToml?: string;
  /** Another test server whose database and blob directory this one shares (several servers, one repository). */
  sharing?: TestServer;
  /** Server processes (`workers`); by default what useWorkers set, else 1 (the server runs in this process). */
  workers?: number;
}

let defaultWorkers = 1;

/**
 * Servers this test file starts from now on run as a primary and `workers` worker processes (a suite written
 * for one server, run again across workers).
 */
export function useWorkers(workers: number): void {
  defaultWorkers = workers;
}

/** A `.namespaces` file letting its CA vouch for any name. */
export const PERMIT_ALL = 'TO Issuer SELF PERMIT Subject ".*"\n';

function policyOf(policy: string | { signingPolicy: string } | undefined) {
  if (typeof policy === 'object') return ['signing_policy', policy.signingPolicy] as const;
  return ['namespaces', policy ?? PERMIT_ALL] as const;
}

export async function startTestServer(options: TestServerOptions): Promise<TestServer> {
  const dir = await mkdtemp(join(tmpdir(), 'repoman-test-'));
  const caDir = join(dir, 'certificates');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(caDir);
  // trust.namespaces defaults to "require": each test CA vouches for every name, through its own file
  await Promise.all(
    options.caPems.flatMap((pem, i) => [
      writeFile(join(caDir, `ca${i}.pem`), pem),
      (() => {
        const [ext, text] = policyOf(options.caNamespaces?.[i]);
        return writeFile(join(caDir, `ca${i}.${ext}`), text);
      })(),
    ]),
  );
  await Promise.all((options.crlPems ?? []).map((pem, i) => writeFile(join(caDir, `crl${i}.r0`), pem)));
  await writeFile(join(dir, 'hostcert.pem'), options.hostCertPem);
  await writeFile(join(dir, 'hostkey.pem'), options.hostKeyPem, { mode: 0o600 });

  let schema: string | undefined = options.sharing?.schema;
  if (options.engine === 'postgres' && !schema) {
    await requirePostgres();
    schema = `repoman_test_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  }
  const env: Record<string, string> = {
    REPOMAN_DATA_DIR: join(options.sharing?.dir ?? dir, 'data'),
    REPOMAN_HTTPS_LISTEN: '127.0.0.1',
    REPOMAN_HTTPS_PORT: '0',
    REPOMAN_HTTP_LISTEN: '127.0.0.1',
    REPOMAN_HTTP_PORT: '0',
    REPOMAN_HTTPS_CERT: join(dir, 'hostcert.pem'),
    REPOMAN_HTTPS_KEY: join(dir, 'hostkey.pem'),
    REPOMAN_TRUST_CA_DIR: caDir,
    REPOMAN_ADMINS: options.admins.map((a) => `${a.name}=${a.dn}`).join(';'),
    // The suites present refused certificates on purpose, many a minute: no address is held back for it
    // (slow-clients.test.ts tests the hold-back with a limit of its own).
    REPOMAN_CONNECTIONS_MAX_REFUSED_CERTIFICATES_PER_MINUTE: '0',
    REPOMAN_WORKERS: String(options.workers ?? defaultWorkers),
    ...(options.engine === 'postgres'
      ? { REPOMAN_DATABASE_URL: PG_URL, REPOMAN_DATABASE_SCHEMA: schema as string }
      : {}),
    ...options.env,
  };
  if (options.configToml !== undefined) {
    await writeFile(join(dir, 'repoman.toml'), options.configToml);
    env.REPOMAN_CONFIG = join(dir, 'repoman.toml');
  }
  const dropIt = async () => {
    if (schema && !options.sharing) await dropSchema(schema);
    await rm(dir, { recursive: true, force: true });
  };
  if (Number(env.REPOMAN_WORKERS) > 1) return startClustered(dir, options.engine, schema, env, dropIt);
  const config = loadConfig({ env, cwd: dir });
  const running = await startServer(config);
  return {
    ...running,
    dir,
    env,
    engine: options.engine,
    schema,
    async stop() {
      await running.close();
      await dropIt();
    },
  };
}

const MAIN = resolve(import.meta.dirname, '../../src/main.ts');

/** What only an in-process server has: a test of a clustered one that reaches for it is told so. */
const IN_PROCESS_ONLY = ['app', 'devAdmin', 'trust', 'store', 'sweep', 'close'] as const;

async function startClustered(
  dir: string,
  engine: Engine,
  schema: string | undefined,
  env: Record<string, string>,
  dropIt: () => Promise<void>,
): Promise<ClusteredTestServer> {
  const primary = spawn(process.execPath, [MAIN, 'serve'], {
    cwd: dir,
    detached: true, // a process group of its own, the workers with it: stop() can end them all
    env: { ...process.env, REPOMAN_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<void>((done) => primary.once('exit', () => done()));
  const urls = await new Promise<RegExpMatchArray>((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`the server did not start:\n${output}`)), 60_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = output.match(/serving HTTPS at (\S+?)(?: and HTTP at (\S+))?$/m);
      if (match) {
        clearTimeout(timer);
        done(match);
      }
    };
    primary.stdout?.on('data', onData);
    primary.stderr?.on('data', onData);
    primary.once('exit', (code) => fail(new Error(`the server exited (${code}) as it started:\n${output}`)));
  });
  const httpsUrl = (urls[1] as string).replace('//localhost:', '//127.0.0.1:');
  const httpUrl = urls[2] ? urls[2].replace('//localhost:', '//127.0.0.1:') : null;
  const server = {
    dir,
    env,
    engine,
    schema,
    primary,
    output: () => output,
    httpsUrl,
    httpUrl,
    httpsPort: Number(new URL(httpsUrl).port),
    httpPort: httpUrl ? Number(new URL(httpUrl).port) : null,
    async stop() {
      if (primary.exitCode === null && primary.signalCode === null) {
        primary.kill('SIGTERM');
        // Workers drain what is in progress; one that a test left waiting does not hold the run for ever.
        const killer = setTimeout(() => process.kill(-(primary.pid as number), 'SIGKILL'), 30_000);
        await exited;
        clearTimeout(killer);
      }
      await dropIt();
    },
  };
  for (const name of IN_PROCESS_ONLY)
    Object.defineProperty(server, name, {
      get() {
        throw new Error(`${name} is only there for a server in the test's own process (one worker)`);
      },
    });
  return server as unknown as ClusteredTestServer;
}

/** `repoman-server ARGS` (an operator command) run against the server's database and blobs, as a child process. */
export async function serverCommand(
  server: TestServer,
  args: string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [MAIN, ...args], {
    cwd: server.dir,
    env: { ...process.env, ...server.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const code = await new Promise<number | null>((done) => child.once('close', done));
  return { code, stdout, stderr };
}

/** A test server for a test PKI: trusting its CA, with its host certificate, and its `admin` as the admin. */
export function startServerFor(
  pki: TestPki,
  engine: Engine,
  env: Record<string, string> = {},
  crl = false,
  sharing?: TestServer,
): Promise<TestServer> {
  return startTestServer({
    ...(sharing ? { sharing } : {}),
    engine,
    caPems: [pki.ca.certPem],
    ...(crl ? { crlPems: [pki.crlPem] } : {}),
    hostCertPem: pki.host.certPem,
    hostKeyPem: pki.host.keyPem,
    admins: [{ name: 'admin', dn: pki.dn('admin') }],
    env,
  });
}

/** A test server for a test PKI, as `startServerFor` makes it, with a configuration file (token issuers). */
export function startServerWithConfig(
  pki: TestPki,
  engine: Engine,
  configToml: string,
  env: Record<string, string> = {},
): Promise<TestServer> {
  return startTestServer({
    engine,
    caPems: [pki.ca.certPem],
    hostCertPem: pki.host.certPem,
    hostKeyPem: pki.host.keyPem,
    admins: [{ name: 'admin', dn: pki.dn('admin') }],
    env,
    configToml,
  });
}
