/**
 * The process model when `workers` is above 1: one primary process and that many workers, each a whole server
 * (server.ts `startServer`) on the same HTTPS and HTTP ports. Each worker binds its own socket with
 * SO_REUSEPORT (`reusePort` and `exclusive` in `listen`, Node 24 on Linux) and the kernel spreads new
 * connections among them: no process passes connections on, and a worker's connections stay with it.
 *
 * The primary serves nothing. Once, before any worker starts, it has what a lone server does at start-up done
 * (`prepareServer`: the data directory, the development PKI, the migrations, the default groups and admins,
 * and what a previous run left behind), in a process of its own that exits when done (`prepare`), and picks
 * the ports (a port 0 becomes one port that every worker binds;
 * a port another program holds stops the start). Then it starts the workers and keeps them: one that dies is
 * replaced in its slot, at once if it had been running a while, else after a pause that doubles with every
 * death in a row (1 s to a minute), so a worker that cannot start does not spin. On SIGTERM or SIGINT each
 * worker stops as a lone server does (no new connections; requests in progress finish) and the primary exits
 * after the last. A worker whose primary is gone stops the same way.
 *
 * With `workers = 1` none of this runs: main.ts starts the server in its own process, as it always did.
 */
import cluster, { type Worker } from 'node:cluster';
import net, { type AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import type { DevelopmentAdmin } from './bootstrap.ts';
import { type ServerConfig, serverUrls } from './config.ts';
import { type AddressLedger, createAddressLedger, type Verdict } from './http/connection-cap.ts';
import type { PreparedServer } from './server.ts';
import { ACTOR_CACHE_MS } from './services/actor-cache.ts';

/** The variable that tells a worker its slot (0 to workers-1); a replacement takes the slot of the one it replaces. */
const SLOT_VARIABLE = 'REPOMAN_WORKER_SLOT';

/** Set to `prepare` in the process the primary starts for the once-only work (`prepare`), not a worker. */
const ROLE_VARIABLE = 'REPOMAN_ROLE';

/** A worker that dies sooner than this after it started counts as one that cannot start. */
const QUICK_DEATH_MS = 10_000;
const FIRST_PAUSE_MS = 1000;
const LONGEST_PAUSE_MS = 60_000;

/**
 * The messages between a worker and its primary (Node's IPC channel, JSON). A worker asks the primary
 * (`request`, answered by `reply`); the primary asks workers (`ask`, answered by `answer`), and carries what
 * one worker has to tell the others.
 */
type Question = 'identities-changed' | 'metrics' | 'admit';
type FromWorker =
  | { repoman: 'prepared'; prepared: PreparedServer }
  | { repoman: 'ready'; https: number; http: number | null }
  | { repoman: 'request'; id: number; what: Question; address?: string }
  | { repoman: 'answer'; id: number; value?: unknown }
  | { repoman: 'tell'; what: 'release' | 'strike'; address: string };
type ToWorker =
  | { repoman: 'reply'; id: number; value?: unknown }
  | { repoman: 'ask'; id: number; what: 'forget-identities' | 'metrics' };

const isOurs = (message: unknown): boolean =>
  typeof message === 'object' && message !== null && 'repoman' in message;

/**
 * How long the primary waits for the other workers to forget who someone is: after that their memory has
 * lapsed anyway (services/identity.ts ACTOR_CACHE_MS).
 */
const FORGET_WAIT_MS = ACTOR_CACHE_MS;
/** How long the primary waits for the workers' metrics; one that is slower is left out of that scrape. */
const METRICS_WAIT_MS = 2000;
/** How long a connection waits for the primary to count it; then it is let in uncounted. */
const ADMIT_WAIT_MS = 5000;

/** A worker's side of its channel to the primary. */
export interface WorkerLink {
  /** This worker's place among the workers, 0 to workers-1. */
  slot: number;
  /** The worker listens on both ports and serves. */
  ready(https: number, http: number | null): void;
  /**
   * Tells the other workers that who someone is may have changed (services/identity.ts); resolves once each
   * has forgotten what it remembered, so that the next request forgets it whichever worker answers it.
   */
  identitiesChanged(): Promise<void>;
  /** What this worker does when another says that who someone is may have changed. */
  onIdentitiesChanged(forget: () => Promise<void>): void;
  /** The metrics of every worker, added up (Prometheus text); null if the primary does not answer in time. */
  serverMetrics(): Promise<string | null>;
  /** How this worker gives its own metrics to be added up. */
  onMetrics(collect: () => Promise<unknown>): void;
  /** The server's connections and refused certificates by address, kept by the primary (http/connection-cap.ts). */
  ledger: AddressLedger;
}

/** In a worker process: the link to its primary. */
export function connectToPrimary(): WorkerLink {
  const slot = Number(process.env[SLOT_VARIABLE] ?? 0);
  const send = (message: FromWorker) => {
    // A primary that is gone cannot be told; the worker stops on 'disconnect' (main.ts).
    if (process.connected) process.send?.(message, undefined, undefined, () => {});
  };
  let nextId = 1;
  const waiting = new Map<number, (value: unknown) => void>();
  /** Asks the primary; undefined if it does not answer within `ms` (or is gone). */
  const request = (what: Question, ms: number, address?: string) =>
    new Promise<unknown>((resolve) => {
      if (!process.connected) return resolve(undefined);
      const id = nextId++;
      const timer = setTimeout(() => {
        waiting.delete(id);
        resolve(undefined);
      }, ms);
      waiting.set(id, (value) => {
        clearTimeout(timer);
        waiting.delete(id);
        resolve(value);
      });
      send({ repoman: 'request', id, what, ...(address === undefined ? {} : { address }) });
    });
  let forget: () => Promise<void> = async () => {};
  let collect: () => Promise<unknown> = async () => null;
  process.on('message', (raw: unknown) => {
    if (!isOurs(raw)) return;
    const message = raw as ToWorker;
    if (message.repoman === 'reply') waiting.get(message.id)?.(message.value);
    else if (message.what === 'forget-identities')
      forget()
        .catch(() => {})
        .then(() => send({ repoman: 'answer', id: message.id }));
    else if (message.what === 'metrics')
      collect().then(
        (value) => send({ repoman: 'answer', id: message.id, value }),
        () => send({ repoman: 'answer', id: message.id, value: null }),
      );
  });
  return {
    slot,
    ready: (https, http) => send({ repoman: 'ready', https, http }),
    identitiesChanged: async () => {
      await request('identities-changed', FORGET_WAIT_MS + 1000);
    },
    onIdentitiesChanged: (handler) => {
      forget = handler;
    },
    serverMetrics: async () => {
      const text = await request('metrics', METRICS_WAIT_MS + 1000);
      return typeof text === 'string' ? text : null;
    },
    onMetrics: (handler) => {
      collect = handler;
    },
    ledger: {
      // A primary that does not answer (it is gone, and this worker stopping) holds nobody back.
      admit: async (address) => ((await request('admit', ADMIT_WAIT_MS, address)) as Verdict) ?? { ok: true },
      release: (address) => send({ repoman: 'tell', what: 'release', address }),
      strike: (address) => send({ repoman: 'tell', what: 'strike', address }),
    },
  };
}

/** In a process the primary started: true if it is there for the once-only work (`prepare`), not to serve. */
export const isPreparation = () => cluster.isWorker && process.env[ROLE_VARIABLE] === 'prepare';

/** In the preparation process: hands the primary what the start-up lines need; resolves once it is sent. */
export function reportPrepared(prepared: PreparedServer): Promise<void> {
  return new Promise((resolve) => {
    const message: FromWorker = { repoman: 'prepared', prepared };
    process.send?.(message, undefined, undefined, () => resolve());
  });
}

/**
 * The once-only work (server.ts `prepareServer`), done in a process of its own that exits when it is done: it
 * loads the whole server (the database drivers, the services, the development PKI) and the primary, which
 * lives as long as the server, need not. The primary then holds its own few modules only (some 50 MB of
 * RSS against 100), which counts on a host whose memory is shared out among the workers. A failure there
 * (its message on stderr, as a lone server prints it) fails the start with its exit status.
 */
function prepare(): Promise<PreparedServer> {
  const child = cluster.fork({ [ROLE_VARIABLE]: 'prepare' });
  let prepared: PreparedServer | undefined;
  child.on('message', (raw: unknown) => {
    if (isOurs(raw) && (raw as FromWorker).repoman === 'prepared')
      prepared = (raw as Extract<FromWorker, { repoman: 'prepared' }>).prepared;
  });
  return new Promise((resolve, reject) => {
    child.on('exit', (code, signal) => {
      if (code === 0 && prepared) resolve(prepared);
      else
        reject(
          new WorkerStartError(
            `the start-up work failed (${signal ?? `exit status ${code}`}); see its message above`,
            code || 1,
          ),
        );
    });
  });
}

/** The primary's log lines: JSON, in the fields pino writes for the workers. */
function primaryLog(level: string) {
  const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };
  const threshold = LEVELS[level] ?? Number.POSITIVE_INFINITY; // silent
  const host = hostname();
  const write = (value: number, fields: Record<string, unknown>, msg: string) => {
    if (value < threshold) return;
    const line = {
      level: value,
      time: Date.now(),
      pid: process.pid,
      hostname: host,
      role: 'primary',
      ...fields,
    };
    process.stdout.write(`${JSON.stringify({ ...line, msg })}\n`);
  };
  return {
    info: (fields: Record<string, unknown>, msg: string) => write(30, fields, msg),
    warn: (fields: Record<string, unknown>, msg: string) => write(40, fields, msg),
    error: (fields: Record<string, unknown>, msg: string) => write(50, fields, msg),
  };
}

/**
 * Binds each port the configuration names (both at once, so that two port 0s become two ports) and lets them
 * go: a port another program holds stops the start here, with the error a lone server gives, and a port 0
 * becomes the one every worker binds.
 */
async function choosePorts(config: ServerConfig): Promise<{ https: number; http: number | null }> {
  const probes: net.Server[] = [];
  const bind = async (host: string, port: number) => {
    const probe = net.createServer();
    probes.push(probe);
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen({ host, port, exclusive: true }, () => resolve());
    });
    return (probe.address() as AddressInfo).port;
  };
  try {
    const https = await bind(config.https.listen, config.https.port);
    const http = config.http.enabled ? await bind(config.http.listen, config.http.port) : null;
    return { https, http };
  } finally {
    await Promise.all(
      probes.map(
        (probe) =>
          new Promise<void>((resolve) => (probe.listening ? probe.close(() => resolve()) : resolve())),
      ),
    );
  }
}

/** A worker stopped before every worker was serving: the start failed, with its exit status. */
export class WorkerStartError extends Error {
  override name = 'WorkerStartError';
  readonly exitCode: number;
  constructor(message: string, exitCode: number) {
    super(message);
    this.exitCode = exitCode;
  }
}

export interface Primary {
  /** The ports every worker listens on. */
  httpsPort: number;
  httpPort: number | null;
  httpsUrl: string;
  httpUrl: string | null;
  devAdmin: DevelopmentAdmin | null;
  warnings: string[];
  /** Worker process ids, by slot (null while a slot waits for its replacement). */
  pids(): (number | null)[];
}

interface Slot {
  worker: Worker | null;
  started: number;
  ready: boolean;
  /** Deaths in a row soon after starting. */
  quickDeaths: number;
  restart: NodeJS.Timeout | null;
}

/**
 * In the primary process: the once-only work, then `config.workers` workers; resolves once every one serves.
 * The process exits once the workers have stopped after SIGTERM or SIGINT.
 */
export async function startPrimary(config: ServerConfig): Promise<Primary> {
  const log = primaryLog(config.logLevel);
  const prepared = await prepare();
  const ports = await choosePorts(config);
  const env = {
    REPOMAN_HTTPS_PORT: String(ports.https),
    ...(ports.http === null ? {} : { REPOMAN_HTTP_PORT: String(ports.http) }),
  };
  const slots: Slot[] = Array.from({ length: config.workers }, () => ({
    worker: null,
    started: 0,
    ready: false,
    quickDeaths: 0,
    restart: null,
  }));
  let stopping = false;
  let startFailed = false;
  let failed = 0;
  let serving = false;
  let started: { resolve: () => void; reject: (error: Error) => void } | undefined;
  const allStarted = new Promise<void>((resolve, reject) => {
    started = { resolve, reject };
  });

  const live = () => slots.filter((slot) => slot.worker !== null);
  const finishWhenEmpty = () => {
    if (live().length > 0 || startFailed) return; // a failed start: startPrimary rejects, and main.ts exits
    log.info({}, 'every worker has stopped');
    process.exit(failed);
  };
  const stopAll = () => {
    for (const slot of slots) {
      if (slot.restart) clearTimeout(slot.restart);
      slot.restart = null;
      slot.worker?.process.kill('SIGTERM');
    }
  };

  // Both limits of http/connection-cap.ts are the server's: counted here, for every worker.
  const ledger = createAddressLedger({
    max: config.connections.maxPerAddress,
    maxRefusedPerMinute: config.connections.maxRefusedCertificatesPerMinute,
  });
  /** The connections each worker holds, by address: let go of when it dies. */
  const heldBy = new Map<Worker, Map<string, number>>();
  const hold = (worker: Worker, address: string, change: 1 | -1) => {
    const held = heldBy.get(worker) ?? new Map<string, number>();
    heldBy.set(worker, held);
    const count = (held.get(address) ?? 0) + change;
    if (count > 0) held.set(address, count);
    else held.delete(address);
  };

  /** Questions put to workers and not yet answered, by id, and by the worker asked. */
  let nextQuestion = 1;
  const asked = new Map<number, (value: unknown) => void>();
  const askedOf = new Map<Worker, Set<(value: unknown) => void>>();
  /**
   * Asks every serving worker but `except`; resolves with their answers, undefined for one that did not answer
   * within `ms` or stopped meanwhile.
   */
  const askWorkers = (what: 'forget-identities' | 'metrics', except: Worker | null, ms: number) =>
    Promise.all(
      slots
        .map((slot) => (slot.ready ? slot.worker : null))
        .filter((worker): worker is Worker => worker !== null && worker !== except && worker.isConnected())
        .map(
          (worker) =>
            new Promise<unknown>((resolve) => {
              const id = nextQuestion++;
              const done = (value: unknown) => {
                clearTimeout(timer);
                asked.delete(id);
                askedOf.get(worker)?.delete(done);
                resolve(value);
              };
              const timer = setTimeout(() => done(undefined), ms);
              asked.set(id, done);
              askedOf.set(worker, (askedOf.get(worker) ?? new Set()).add(done));
              worker.send({ repoman: 'ask', id, what } satisfies ToWorker, undefined, undefined, () => {});
            }),
        ),
    );
  /** What a worker asks of the primary: mostly, to pass something on to the others. */
  const answer = async (worker: Worker, request: Extract<FromWorker, { repoman: 'request' }>) => {
    let value: unknown = null;
    if (request.what === 'admit') {
      const verdict = ledger.admit(request.address as string);
      if (verdict.ok) hold(worker, request.address as string, 1);
      value = verdict;
    } else if (request.what === 'identities-changed')
      await askWorkers('forget-identities', worker, FORGET_WAIT_MS);
    else if (request.what === 'metrics') {
      const answers = await askWorkers('metrics', null, METRICS_WAIT_MS);
      // Loaded on the first scrape: the primary holds no more code than it runs (see `prepare`).
      const { addUpWorkers } = await import('./http/metrics.ts');
      value = await addUpWorkers(answers.filter((answer) => Array.isArray(answer))).catch(() => null);
    }
    if (worker.isConnected())
      worker.send(
        { repoman: 'reply', id: request.id, value } satisfies ToWorker,
        undefined,
        undefined,
        () => {},
      );
  };

  const fork = (index: number) => {
    const slot = slots[index] as Slot;
    slot.restart = null;
    const worker = cluster.fork({ ...env, [SLOT_VARIABLE]: String(index) });
    slot.worker = worker;
    slot.started = Date.now();
    slot.ready = false;
    worker.on('message', (raw: unknown) => {
      if (!isOurs(raw)) return; // prom-client's, or Node's own
      const message = raw as FromWorker;
      if (message.repoman === 'answer') asked.get(message.id)?.(message.value ?? null);
      else if (message.repoman === 'request') void answer(worker, message);
      else if (message.repoman === 'tell') {
        if (message.what === 'strike') ledger.strike(message.address);
        else if (heldBy.get(worker)?.has(message.address)) {
          ledger.release(message.address);
          hold(worker, message.address, -1);
        }
      } else if (message.repoman === 'ready') {
        slot.ready = true;
        if (serving)
          log.info({ slot: index, worker: worker.process.pid }, 'a new worker serves in place of the old');
        else if (slots.every((s) => s.ready)) started?.resolve();
      }
    });
    worker.on('exit', (code, signal) => {
      slot.worker = null;
      slot.ready = false;
      for (const done of askedOf.get(worker) ?? []) done(undefined);
      askedOf.delete(worker);
      // Its connections died with it.
      for (const [address, count] of heldBy.get(worker) ?? [])
        for (let i = 0; i < count; i++) ledger.release(address);
      heldBy.delete(worker);
      const status = code ?? (signal ? 1 : 0);
      if (stopping) {
        if (status !== 0) failed = 1;
        finishWhenEmpty();
        return;
      }
      if (!serving) {
        // A worker that cannot start: the others would not either. Stop them and fail the start.
        stopping = true;
        startFailed = true;
        stopAll();
        started?.reject(
          new WorkerStartError(
            `a worker stopped as it started (${signal ?? `exit status ${code}`}); see its message above`,
            status === 0 ? 1 : status,
          ),
        );
        return;
      }
      const lived = Date.now() - slot.started;
      slot.quickDeaths = lived < QUICK_DEATH_MS ? slot.quickDeaths + 1 : 0;
      const pause =
        slot.quickDeaths === 0 ? 0 : Math.min(LONGEST_PAUSE_MS, FIRST_PAUSE_MS * 2 ** (slot.quickDeaths - 1));
      log.warn(
        { slot: index, worker: worker.process.pid, code, signal, restartInMs: pause },
        'a worker stopped; starting another in its place',
      );
      slot.restart = setTimeout(() => fork(index), pause);
    });
  };

  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down: the workers finish the requests in progress');
    stopAll();
    finishWhenEmpty();
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));

  for (let index = 0; index < slots.length; index++) fork(index);
  try {
    await allStarted;
  } catch (error) {
    // Wait for the others to stop, so that none outlives the failed start.
    await new Promise<void>((resolve) => {
      const check = () => (live().length === 0 ? resolve() : setTimeout(check, 50));
      check();
    });
    throw error;
  }
  serving = true;
  log.info({ workers: slots.map((slot) => slot.worker?.process.pid ?? null) }, 'every worker serves');
  return {
    httpsPort: ports.https,
    httpPort: ports.http,
    ...serverUrls(config, ports.https, ports.http),
    devAdmin: prepared.devAdmin,
    warnings: prepared.warnings,
    pids: () => slots.map((slot) => slot.worker?.process.pid ?? null),
  };
}
