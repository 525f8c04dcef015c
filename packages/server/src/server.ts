/**
 * Starts Repoman: the database (migrated), the accounts bootstrap, the trust store, and the Fastify app on
 * HTTPS (client certificates verified by pki/, not by Node) and plain HTTP (public images only).
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import type { DigestName } from '@repoman/core';
import type { FastifyInstance, FastifyListenOptions, FastifyServerOptions } from 'fastify';
import { STALE_UPLOAD_MS } from './blobs/common.ts';
import { createDirectoryStore } from './blobs/directory.ts';
import { createDiscardingStore } from './blobs/discard.ts';
import { HashingPool } from './blobs/hashing.ts';
import type { BlobStore } from './blobs/store.ts';
import {
  bootstrapAccounts,
  cloudKeysOf,
  type DevelopmentAdmin,
  ensureDevelopmentPki,
  type PkiPaths,
  pkiPathsOf,
} from './bootstrap.ts';
import type { WorkerLink } from './cluster.ts';
import { type ServerConfig, serverUrls } from './config.ts';
import { type DatabaseHandle, openDatabase } from './db/connect.ts';
import { buildApp } from './http/app.ts';
import { balancerList } from './http/balancers.ts';
import { capConnectionsPerAddress } from './http/connection-cap.ts';
import { clientErrorHandler } from './http/errors.ts';
import { createMetrics, type Metrics, metricsOfThisProcess } from './http/metrics.ts';
import { acceptProxyProtocol } from './http/proxy-protocol.ts';
import { loadWebAssets } from './http/web.ts';
import { loadCredential } from './pki/issue.ts';
import { smimeSigningProblem } from './pki/smime.ts';
import { attachCertificateAuth, tlsServerOptionsForClientAuth } from './pki/tls-auth.ts';
import { signerOf } from './services/image-lists.ts';
import { createServices, type Services } from './services/index.ts';
import { loadTrust, type TrustStore } from './trust.ts';

export interface RunningServer {
  app: FastifyInstance;
  httpsUrl: string;
  httpUrl: string | null;
  httpsPort: number;
  httpPort: number | null;
  devAdmin: DevelopmentAdmin | null;
  trust: TrustStore;
  /** Where the image bytes are. */
  store: BlobStore;
  /** Removes expired resumable uploads and abandoned temporary files now (it also runs every few minutes). */
  sweep(): Promise<void>;
  close(): Promise<void>;
}

export interface StartOptions {
  logger?: FastifyServerOptions['logger'];
  /**
   * This server is one of several worker processes (cluster.ts): its primary has done the once-only work
   * (prepareServer); it shares the ports with the other workers and reaches them through the link.
   */
  worker?: WorkerLink | undefined;
}

/**
 * The digests every upload gets besides SHA-256: ADLER32 always (grid tools ask for it, and it costs little),
 * MD5 and SHA-512 as configured.
 */
export function uploadDigests(config: Pick<ServerConfig, 'uploads'>): Exclude<DigestName, 'sha256'>[] {
  return [
    'adler32',
    ...(config.uploads.md5 ? ['md5' as const] : []),
    ...(config.uploads.sha512 ? ['sha512' as const] : []),
  ];
}

/**
 * Opens the blob store the configuration names, checking that an object store's bucket can be reached (so that
 * a wrong endpoint, bucket or key stops the server at start-up, not at the first upload).
 */
export async function openBlobStore(
  config: Pick<ServerConfig, 'blobStore' | 'blobDir' | 's3'>,
): Promise<BlobStore> {
  if (config.blobStore === 'discard') return createDiscardingStore();
  if (config.blobStore === 'directory') return createDirectoryStore(config.blobDir);
  const { redirectDownloads: _, redirectSeconds: __, ...s3 } = config.s3;
  // Loaded only for an object store: the AWS SDK is some 35 MB of memory in every worker that holds it.
  const { createS3Store } = await import('./blobs/s3.ts');
  const store = createS3Store(s3);
  try {
    await store.check();
  } catch (error) {
    const reason = (error as Error).message || (error as Error).name;
    throw new Error(
      `Cannot reach the S3 bucket '${s3.bucket}'${s3.endpoint ? ` at ${s3.endpoint}` : ''}: ${reason}`,
      { cause: error },
    );
  }
  return store;
}

/**
 * Slow or idle clients must not hold connections for ever, set on both servers (Fastify leaves a factory's
 * alone). No whole-request deadline, so a 15 GB upload on a slow link is not cut; a client that stalls is cut
 * by the socket's idle timeout instead (also one that stops reading a download), and slow headers by
 * headersTimeout, which Node checks every `connectionsCheckingInterval`.
 */
function timeoutsOf(config: ServerConfig) {
  const headers = config.timeouts.headersSeconds * 1000;
  return {
    requestTimeout: 0,
    headersTimeout: headers,
    keepAliveTimeout: config.timeouts.keepAliveSeconds * 1000,
    idle: config.timeouts.idleSeconds * 1000,
    connectionsCheckingInterval: Math.min(1000, headers),
  };
}

function applyTimeouts(server: http.Server | https.Server, timeouts: ReturnType<typeof timeoutsOf>) {
  server.requestTimeout = timeouts.requestTimeout;
  server.headersTimeout = timeouts.headersTimeout;
  server.keepAliveTimeout = timeouts.keepAliveTimeout;
  server.timeout = timeouts.idle;
}

/**
 * tus clients behind proxies that drop PATCH or DELETE send POST with `X-HTTP-Method-Override` (tus core:
 * the server MUST honour it). Only for the upload routes, before routing.
 */
function withMethodOverride(handler: http.RequestListener): http.RequestListener {
  return (request, response) => {
    const override = request.headers['x-http-method-override'];
    if (
      request.method === 'POST' &&
      typeof override === 'string' &&
      ['PATCH', 'DELETE', 'HEAD'].includes(override.toUpperCase()) &&
      request.url?.startsWith('/api/uploads/')
    )
      request.method = override.toUpperCase();
    handler(request, response);
  };
}

/** How often expired resumable uploads and abandoned temporary files are looked for. */
const SWEEP_INTERVAL_MS = 10 * 60_000;

/** The conversions worker `slot` of `workers` runs at once: `total` shared out, so that the host runs `total`. */
export function shareOf(total: number, slot: number, workers: number): number {
  return Math.floor(total / workers) + (slot < total % workers ? 1 : 0);
}

/** The data directory, and the blob directory (made now so that a first start shows the whole layout). */
function makeDirectories(config: ServerConfig) {
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  if (config.blobStore === 'directory') mkdirSync(config.blobDir, { recursive: true, mode: 0o700 });
}

interface Repository {
  database: DatabaseHandle;
  store: BlobStore;
  services: Services;
  /** Removes expired resumable uploads, and temporary files nobody owns untouched for `olderThanMs`. */
  sweep(olderThanMs: number): Promise<void>;
}

/** How often a server looks for image lists about to expire, to warn of them. */
const LIST_WARNING_INTERVAL_MS = 3600_000;

/**
 * The server's image-list signer: its certificate and key, checked as consumers will check them (`openssl
 * smime -verify` refuses a signer without S/MIME signing among its uses), or null where there is none.
 */
function listSigningOf(paths: PkiPaths['listSigner'], email: string) {
  if (!paths || !existsSync(paths.cert) || !existsSync(paths.key)) return null;
  const credential = loadCredential(readFileSync(paths.cert, 'utf8'), readFileSync(paths.key, 'utf8'));
  const problem = smimeSigningProblem(credential.cert);
  if (problem) throw new Error(`image_lists.signing_cert ${paths.cert} cannot sign image lists: ${problem}`);
  return { credential, signer: signerOf(credential, email) };
}

/** Opens the database (migrated), the blob store and the services over them; `closers` gets what closes them. */
async function openRepository(
  config: ServerConfig,
  closers: (() => Promise<void>)[],
  options: {
    metrics: Metrics | null;
    onPoolError: (error: Error) => void;
    maxJobs: number;
    worker?: WorkerLink | undefined;
    /** Where the server's image-list signing certificate and key are (pki.listSigner). */
    listSigner: PkiPaths['listSigner'];
    /** Repoman's HTTPS URL as clouds reach it (known once the server listens). */
    publicUrl?: () => string;
    /** The CAs trusted for users (as reloaded): a cloud's certificate may chain to them too. */
    cas?: () => string[];
    onError?: (error: unknown, message: string) => void;
  },
): Promise<Repository> {
  const { metrics } = options;
  const database = await openDatabase({
    ...(metrics ? { onQuery: metrics.observeQuery } : {}),
    url: config.databaseUrl,
    ...(config.databaseSchema ? { schema: config.databaseSchema } : {}),
    onPoolError: options.onPoolError,
  });
  closers.push(() => database.close());
  const opened = await openBlobStore(config);
  const store = metrics ? metrics.instrument(opened) : opened;
  const policy = {
    maxImageSize: config.uploads.maxImageSize,
    keepVersions: config.uploads.keepVersions,
    digests: uploadDigests(config),
    expiryMs: config.uploads.resumableExpirySeconds * 1000,
    leaseMs: config.uploads.leaseSeconds * 1000,
    maxPendingPerUser: config.uploads.maxPendingPerUser,
    allowedFormats: new Set(config.uploads.allowedFormats),
    allowedFeatures: new Set(config.uploads.allowedFeatures),
    redirectSeconds:
      config.blobStore === 's3' && config.s3.redirectDownloads ? config.s3.redirectSeconds : undefined,
  };
  const hashing = new HashingPool();
  closers.push(() => hashing.close());
  const services = createServices({
    db: database.db,
    store,
    policy,
    hashing,
    limits: { defaultQuota: config.users.defaultQuota, maxImagesPerUser: config.users.maxImages },
    transfers: { offerExpiryMs: config.transfers.offerExpirySeconds * 1000 },
    capabilities: config.capabilities,
    tokens: {
      ...config.tokens,
      serverUrl: options.publicUrl ?? (() => config.publicUrl ?? `https://localhost:${config.https.port}`),
    },
    clouds: {
      keys: cloudKeysOf(config, !options.worker),
      reach: {
        allowed: balancerList(config.clouds.allowedNetworks),
        cas: () => [...tls.rootCertificates, ...(options.cas?.() ?? [])],
        idleMs: 120_000,
      },
      sync: {
        syncMs: config.clouds.syncSeconds * 1000,
        graceMs: config.clouds.graceSeconds * 1000,
        maxTransfers: config.clouds.maxTransfers,
        publicUrl: options.publicUrl ?? (() => config.publicUrl ?? `https://localhost:${config.https.port}`),
      },
      events: metrics ? { transfer: metrics.cloudTransfer } : undefined,
    },
    onError: options.onError,
    imageLists: {
      maxValiditySeconds: config.imageLists.maxValiditySeconds,
      signing: listSigningOf(options.listSigner, config.imageLists.signerEmail),
    },
    tellOtherWorkers: options.worker?.identitiesChanged,
    conversions: {
      enabled: config.conversions.enabled,
      qemuImg: config.conversions.qemuImg,
      maxJobs: options.maxJobs,
      tempDir: config.conversions.tempDir,
      limits: {
        cpuSeconds: config.conversions.cpuSeconds,
        memoryBytes: config.conversions.memoryMib * 1024 * 1024,
        outputBytes: config.uploads.maxImageSize,
      },
    },
  });
  closers.push(async () => services.resumable.close());
  // Another worker changed who someone is: forget, as it did.
  options.worker?.onIdentitiesChanged(() => services.identity.forget());
  // Expired resumable uploads go, and so do temporary files nobody owns.
  const sweep = async (olderThanMs: number) => {
    await services.resumable.expire();
    await store.removeStaleUploads(olderThanMs, await services.resumable.pendingKeys());
  };
  return { database, store, services, sweep };
}

/**
 * What a server does once as it starts, before it serves. A server alone on its database (SQLite, with all its
 * workers) owns every lease and every `PUT` in progress, so none survives its restart: the resumable uploads
 * its previous run was receiving are let go (their clients go on at once) and every leftover temporary file
 * goes. Servers sharing a database may share the directory too, so only files abandoned for an hour are
 * theirs to remove. Resumable uploads wait for their client.
 */
async function recoverFromPreviousRun({ database, services, sweep }: Repository) {
  const alone = database.engine === 'sqlite';
  if (alone) await services.resumable.releaseLeases();
  await sweep(alone ? 0 : STALE_UPLOAD_MS);
}

const closeEach = async (closers: (() => Promise<void>)[]) => {
  for (const close of closers.reverse()) await close().catch(() => {});
};

export interface PreparedServer {
  devAdmin: DevelopmentAdmin | null;
  /** What the trusted CAs and CRLs give to warn about (as RunningServer.trust.warnings()). */
  warnings: string[];
}

/**
 * The once-only work of a server run as several worker processes, done by their primary before it starts them
 * (cluster.ts): the data directory, the development PKI, the migrations, the default groups and admins, and
 * what a previous run left (recoverFromPreviousRun, and its conversion jobs). Closes all it opened.
 */
export async function prepareServer(config: ServerConfig): Promise<PreparedServer> {
  makeDirectories(config);
  const pki = await ensureDevelopmentPki(config);
  const closers: (() => Promise<void>)[] = [];
  try {
    // No conversion runs here (maxJobs 0); workers run them.
    const repository = await openRepository(config, closers, {
      metrics: null,
      onPoolError: () => {},
      maxJobs: 0,
      listSigner: pki.listSigner,
    });
    const devAdmin = await bootstrapAccounts(repository.database.db, config, pki);
    const trust = await loadTrust(config, pki.caDir, () => {});
    const warnings = trust.warnings();
    trust.stop();
    await recoverFromPreviousRun(repository);
    if (config.conversions.enabled) {
      // Starting takes back the jobs a previous run left running (all of them on SQLite) and clears their
      // temporary directories; with no job to run, closing at once stops nothing.
      await repository.services.conversions.start({
        alone: repository.database.engine === 'sqlite',
        onError: () => {},
      });
      await repository.services.conversions.close();
    }
    return { devAdmin, warnings };
  } finally {
    await closeEach(closers);
  }
}

export async function startServer(config: ServerConfig, options: StartOptions = {}): Promise<RunningServer> {
  const worker = options.worker;
  makeDirectories(config);
  // A worker reads what its primary made.
  const pki = worker ? pkiPathsOf(config) : await ensureDevelopmentPki(config);
  let log: FastifyInstance['log'] | undefined;
  const metrics = config.metrics.enabled
    ? createMetrics({ gather: worker ? () => worker.serverMetrics() : undefined })
    : null;
  if (metrics) worker?.onMetrics(() => metricsOfThisProcess(metrics));
  let closers: (() => Promise<void>)[] = [];
  /** What the cloud sync needs of this server once it listens: its port, and the trusted CAs. */
  const listening: { httpsPort: number; trust: TrustStore | null } = {
    httpsPort: config.https.port,
    trust: null,
  };
  let reloadLog: FastifyInstance['log'] | undefined;
  const closeAll = async () => {
    const closing = closers;
    closers = [];
    await closeEach(closing);
  };
  try {
    const repository = await openRepository(config, closers, {
      metrics,
      // A lost connection (PostgreSQL restarting): requests answer 503 meanwhile; say it once per connection.
      onPoolError: (error) =>
        log?.warn({ err: error }, 'a database connection was lost; new ones are made as needed'),
      maxJobs: worker
        ? shareOf(config.conversions.maxJobs, worker.slot, config.workers)
        : config.conversions.maxJobs,
      worker,
      listSigner: pki.listSigner,
      publicUrl: () => config.publicUrl ?? `https://localhost:${listening.httpsPort}`,
      cas: () => listening.trust?.caPems() ?? [],
      onError: (error, message) => reloadLog?.warn({ err: error }, message),
    });
    const { database, store, services, sweep } = repository;
    const devAdmin = worker ? null : await bootstrapAccounts(database.db, config, pki);
    const trust = await loadTrust(config, pki.caDir, (error) =>
      reloadLog?.error(
        { err: error },
        'reloading the trusted CAs and CRLs failed; keeping the previous ones',
      ),
    );
    closers.push(async () => trust.stop());
    listening.trust = trust;

    const [cert, key] = await Promise.all([readFile(pki.hostCert), readFile(pki.hostKey)]);
    const timeouts = timeoutsOf(config);
    let handler: http.RequestListener | undefined;
    // Balancers in TCP mode say who the client is with the PROXY protocol (http/proxy-protocol.ts).
    const balancers = config.balancers.length > 0 ? balancerList(config.balancers) : null;
    const refusedBalancer = (error: Error, balancer: string) =>
      log?.warn({ balancer, reason: error.message }, 'closed a connection from a balancer');
    // One address holds at most connections.max_per_address of both ports' connections; counted before TLS,
    // for the whole server (a worker's primary keeps the counts of all its workers).
    const connectionCap = capConnectionsPerAddress({
      ledger: worker?.ledger,
      max: config.connections.maxPerAddress,
      balancers,
      maxRefusedPerMinute: config.connections.maxRefusedCertificatesPerMinute,
      onRefused: (address, port, first, reason) => {
        metrics?.refusedConnection(port, reason);
        if (!first) return;
        if (reason === 'connections')
          log?.warn(
            { address, max: config.connections.maxPerAddress },
            'an address holds as many connections as connections.max_per_address allows; closing its new ones',
          );
        else
          log?.warn(
            { address, max: config.connections.maxRefusedCertificatesPerMinute },
            'an address presented more refused certificates in a minute than connections.max_refused_certificates_per_minute allows; closing its new connections until the minute is over',
          );
      },
    });
    const serverFactory: FastifyServerOptions['serverFactory'] = (fastifyHandler) => {
      const requestHandler = withMethodOverride(fastifyHandler);
      handler = requestHandler;
      const server = https.createServer(
        {
          cert,
          key,
          ...tlsServerOptionsForClientAuth(trust.caPems()),
          connectionsCheckingInterval: timeouts.connectionsCheckingInterval,
          // A connection that has not finished its TLS handshake by then is closed (Node's default: 120 s).
          handshakeTimeout: config.timeouts.handshakeSeconds * 1000,
        },
        requestHandler,
      );
      attachCertificateAuth(
        server,
        () => trust.verifier(),
        (socket) => connectionCap.strike(socket.remoteAddress),
      );
      connectionCap.attach(server, 'https'); // first, so that the PROXY header's address is the one counted
      if (balancers) acceptProxyProtocol(server, balancers, refusedBalancer);
      applyTimeouts(server, timeouts);
      // Expect: 100-continue is answered by the route once it has accepted the request (see http/continue.ts).
      server.on('checkContinue', requestHandler);
      return server;
    };
    // A worker's primary did this before it started the workers (prepareServer).
    if (!worker) await recoverFromPreviousRun(repository);
    // Every worker sweeps: each step is safe for several servers sharing a database, so for workers too.
    const sweeper = setInterval(
      () =>
        sweep(STALE_UPLOAD_MS).catch((error: unknown) =>
          reloadLog?.warn({ err: error }, 'removing expired uploads failed; trying again later'),
        ),
      SWEEP_INTERVAL_MS,
    );
    sweeper.unref();
    closers.push(async () => clearInterval(sweeper));
    if (config.conversions.enabled) {
      await services.conversions.start({
        alone: !worker && database.engine === 'sqlite',
        onError: (error, message) => reloadLog?.warn({ err: error }, message),
      });
      closers.push(() => services.conversions.close());
    }
    const publicUrls = {
      https: config.publicUrl,
      http: config.publicHttpUrl,
      httpsPort: config.https.port,
      httpPort: config.http.enabled ? config.http.port : null,
    };
    const web = config.web.enabled ? await loadWebAssets(config.web.dir) : null;
    const app = await buildApp({
      services,
      publicUrls,
      web,
      serverFactory,
      logger: options.logger ?? false,
      ...(metrics ? { metrics: { metrics, allow: balancerList(config.metrics.allow) } } : {}),
      copy: {
        remote: {
          allowed: balancerList(config.tpc.allowedNetworks),
          maxRedirects: config.tpc.maxRedirects,
          idleMs: config.tpc.idleTimeoutSeconds * 1000,
          // The other end's certificate: the system's CAs, and those trusted for users (as reloaded).
          cas: () => [...tls.rootCertificates, ...trust.caPems()],
        },
        markerMs: config.tpc.markerSeconds * 1000,
      },
      trust: () => trust.verifier(),
    });
    reloadLog = app.log;
    log = app.log;
    // Image lists expire with their earliest endorsement: /metrics shows when, and one process (the first
    // worker) warns hourly of those expiring within image_lists.warn_before_seconds.
    metrics?.watchImageLists(() => services.imageLists.expiries());
    if (!worker || worker.slot === 0) {
      const warnMs = config.imageLists.warnBeforeSeconds * 1000;
      const warnOfExpiringLists = async () => {
        for (const { group, expires } of await services.imageLists.expiries())
          if (new Date(expires).getTime() - Date.now() < warnMs)
            reloadLog?.warn(
              { group, expires },
              "a group's image list expires soon, with its earliest endorsement: its endorsers renew it (repoman endorse)",
            );
      };
      const warner = setInterval(() => warnOfExpiringLists().catch(() => {}), LIST_WARNING_INTERVAL_MS);
      warner.unref();
      closers.push(async () => clearInterval(warner));
      void warnOfExpiringLists().catch(() => {});
    }
    if (config.web.enabled && !web)
      log.warn({ dir: config.web.dir }, 'the web interface is not built (npm run build); / serves nothing');
    closers.push(() => app.close());
    // Workers each bind the ports themselves, and the kernel spreads new connections among them.
    const shared = worker ? { exclusive: true, reusePort: true } : {};
    const listenOptions: FastifyListenOptions & { reusePort?: boolean } = {
      host: config.https.listen,
      port: config.https.port,
      ...shared,
      listenTextResolver: (address) => `HTTPS listening at ${address.replace(/^http:/, 'https:')}`,
    };
    await app.listen(listenOptions);
    const httpsPort = (app.server.address() as AddressInfo).port;
    publicUrls.httpsPort = httpsPort;
    listening.httpsPort = httpsPort;
    // Clouds are synced once the server answers (web-download fetches from it).
    if (services.cloudSync) {
      services.cloudSync.start();
      const sync = services.cloudSync;
      closers.push(() => sync.close());
    }
    // Certificates are re-read on reload (new CA files, fresh CRLs); the TLS context's CA list follows.
    trust.onReload(() =>
      (app.server as https.Server).setSecureContext({
        cert,
        key,
        ...tlsServerOptionsForClientAuth(trust.caPems()),
      }),
    );

    let httpPort: number | null = null;
    if (config.http.enabled && handler) {
      const plain = http.createServer(
        { connectionsCheckingInterval: timeouts.connectionsCheckingInterval },
        handler,
      );
      applyTimeouts(plain, timeouts);
      connectionCap.attach(plain, 'http');
      if (balancers) acceptProxyProtocol(plain, balancers, refusedBalancer);
      plain.on('clientError', clientErrorHandler);
      plain.on('checkContinue', handler);
      await new Promise<void>((resolve, reject) => {
        plain.once('error', reject);
        plain.listen({ port: config.http.port, host: config.http.listen, ...shared }, () => resolve());
      });
      httpPort = (plain.address() as AddressInfo).port;
      publicUrls.httpPort = httpPort;
      closers.push(
        () =>
          new Promise<void>((resolve) => {
            plain.close(() => resolve());
            plain.closeAllConnections();
          }),
      );
    }
    return {
      app,
      httpsPort,
      httpPort,
      ...serverUrls(config, httpsPort, httpPort),
      devAdmin,
      trust,
      store,
      sweep: () => sweep(STALE_UPLOAD_MS),
      close: closeAll,
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}
