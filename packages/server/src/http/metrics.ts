/**
 * Prometheus metrics at `/metrics`, for the addresses configured in `metrics.allow` only (others get a 404, as
 * if there were no such page): requests by route and status, bytes in and out, transfer durations, uploads
 * and downloads in progress, authentication failures by reason, database and blob store latency, and the
 * process's own (memory, CPU, event loop). Each server has a registry of its own; a server of several worker
 * processes answers with all of theirs added up (`gather`, through the primary: cluster.ts), so that one
 * scrape of any worker sees the whole server.
 */
import type { BlockList } from 'node:net';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AggregatorRegistry, Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { BlobStore, BlobUpload } from '../blobs/store.ts';
import { RAW_FORMS } from './image-ref.ts';
import { addressIn } from './proxy-protocol.ts';

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Transfers of multi-GB images take minutes. */
const TRANSFER_BUCKETS = [0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200];
const AUTH_FAILURES = new Set([
  'https_required',
  'certificate_required',
  'certificate_invalid',
  'unknown_certificate',
  'user_suspended',
  'limited_proxy',
  'cross_site_request',
]);

export interface Metrics {
  registry: Registry;
  /** Database query durations (connect.ts calls it for every query). */
  observeQuery(seconds: number, failed: boolean): void;
  /** The store, with every operation timed. */
  instrument(store: BlobStore): BlobStore;
  /**
   * A connection closed as it arrived: its address held `connections.max_per_address` already
   * (`connections`), or had too many certificates refused this minute (`refused_certificates`).
   */
  refusedConnection(port: 'https' | 'http', reason: 'connections' | 'refused_certificates'): void;
  /** What `/metrics` answers, in Prometheus's text format: the whole server's. */
  render(): Promise<string>;
  /** A transfer into a cloud ended (verified in Glance, or failed), with the bytes it moved. */
  cloudTransfer(cloud: string, outcome: 'ok' | 'failed', bytes: number): void;
  /** Each group's image list expiry (its earliest endorsement's), asked for as `/metrics` is scraped. */
  watchImageLists(expiries: () => Promise<{ group: string; expires: string }[]>): void;
}

export function createMetrics(
  options: {
    /** The metrics of every worker of the server, added up; null if they cannot be had (this worker's, then). */
    gather?: (() => Promise<string | null>) | undefined;
  } = {},
): Metrics & { http: HttpMetrics } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'repoman_' });
  const query = new Histogram({
    name: 'repoman_db_query_duration_seconds',
    help: 'Database queries, by outcome',
    labelNames: ['outcome'],
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const store = new Histogram({
    name: 'repoman_store_operation_duration_seconds',
    help: 'Blob store operations (for reads and writes: until the stream is open, or the bytes are written)',
    labelNames: ['operation', 'outcome'],
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const refused = new Counter({
    name: 'repoman_connections_refused_total',
    help: 'Connections closed as they arrived, their client address holding as many as it may or held back for refused certificates, by port and reason',
    labelNames: ['port', 'reason'],
    registers: [registry],
  });
  const timed = async <T>(operation: string, work: () => Promise<T>): Promise<T> => {
    const end = store.startTimer({ operation });
    try {
      const result = await work();
      end({ outcome: 'ok' });
      return result;
    } catch (error) {
      end({ outcome: 'error' });
      throw error;
    }
  };
  const instrumentUpload = (upload: BlobUpload): BlobUpload => ({
    key: upload.key,
    write: (source, signal) => timed('upload_write', () => upload.write(source, signal)),
    commit: () => timed('upload_commit', () => upload.commit()),
    abort: () => timed('upload_abort', () => upload.abort()),
    size: () => timed('upload_size', () => upload.size()),
    truncate: (length) => timed('upload_truncate', () => upload.truncate(length)),
    readBack: () => timed('upload_read', () => upload.readBack()),
    readAt: (offset, length) => timed('upload_read', () => upload.readAt(offset, length)),
  });
  const cloudTransfers = new Counter({
    name: 'repoman_cloud_transfers_total',
    help: 'Transfers of images into clouds, by cloud (its id) and outcome (ok: verified in Glance; failed)',
    labelNames: ['cloud', 'outcome'],
    registers: [registry],
  });
  const cloudBytes = new Counter({
    name: 'repoman_cloud_transfer_bytes_total',
    help: 'Bytes of images verified in clouds, by cloud (its id)',
    labelNames: ['cloud'],
    registers: [registry],
  });
  let listExpiries: (() => Promise<{ group: string; expires: string }[]>) | null = null;
  new Gauge({
    name: 'repoman_image_list_expiry_seconds',
    help: "Seconds until each group's image list expires with its earliest endorsement (renew it before 0)",
    labelNames: ['group'],
    registers: [registry],
    // Every worker reads the same database: one answer, not their sum.
    aggregator: 'min',
    async collect() {
      this.reset();
      if (!listExpiries) return;
      const now = Date.now();
      for (const { group, expires } of await listExpiries().catch(() => []))
        this.set({ group }, Math.round((new Date(expires).getTime() - now) / 1000));
    },
  });
  return {
    registry,
    render: async () => (await options.gather?.()) ?? registry.metrics(),
    cloudTransfer: (cloud, outcome, bytes) => {
      cloudTransfers.inc({ cloud, outcome });
      if (bytes > 0) cloudBytes.inc({ cloud }, bytes);
    },
    watchImageLists: (expiries) => {
      listExpiries = expiries;
    },
    observeQuery: (seconds, failed) => query.observe({ outcome: failed ? 'error' : 'ok' }, seconds),
    refusedConnection: (port, reason) => refused.inc({ port, reason }),
    instrument: (inner) => ({
      ...(inner.check ? { check: () => timed('check', () => inner.check?.() as Promise<void>) } : {}),
      createUpload: () => timed('create_upload', () => inner.createUpload()).then(instrumentUpload),
      resumeUpload: (key) =>
        timed('resume_upload', () => inner.resumeUpload(key)).then((u) => (u ? instrumentUpload(u) : null)),
      read: (key, range) => timed('read', () => inner.read(key, range)),
      stat: (key) => timed('stat', () => inner.stat(key)),
      delete: (key) => timed('delete', () => inner.delete(key)),
      ...(inner.localPath ? { localPath: (key: string) => inner.localPath?.(key) as string } : {}),
      ...(inner.downloadUrl
        ? {
            downloadUrl: (key, options) =>
              timed('presign', () => inner.downloadUrl?.(key, options) as Promise<string>),
          }
        : {}),
      list: () => inner.list(),
      listUploads: () => timed('list_uploads', () => inner.listUploads()),
      removeStaleUploads: (olderThanMs, keep) => inner.removeStaleUploads(olderThanMs, keep),
    }),
    http: createHttpMetrics(registry),
  };
}

interface HttpMetrics {
  requests: Counter<'method' | 'route' | 'status'>;
  duration: Histogram<'method' | 'route'>;
  received: Counter<'route'>;
  sent: Counter<'route'>;
  active: Gauge<'direction'>;
  transfers: Histogram<'direction' | 'outcome'>;
  authFailures: Counter<'reason'>;
}

function createHttpMetrics(registry: Registry): HttpMetrics {
  const registers = [registry];
  return {
    requests: new Counter({
      name: 'repoman_http_requests_total',
      help: 'Requests answered, by method, route and status',
      labelNames: ['method', 'route', 'status'],
      registers,
    }),
    duration: new Histogram({
      name: 'repoman_http_request_duration_seconds',
      help: 'Time to answer a request (to its last byte), by method and route',
      labelNames: ['method', 'route'],
      buckets: [...LATENCY_BUCKETS, 30, 60, 300, 1800],
      registers,
    }),
    received: new Counter({
      name: 'repoman_http_received_bytes_total',
      help: 'Bytes received on requests (headers and bodies), by route',
      labelNames: ['route'],
      registers,
    }),
    sent: new Counter({
      name: 'repoman_http_sent_bytes_total',
      help: 'Bytes sent in answers (headers and bodies), by route',
      labelNames: ['route'],
      registers,
    }),
    active: new Gauge({
      name: 'repoman_transfers_active',
      help: 'Image uploads and downloads in progress',
      labelNames: ['direction'],
      registers,
    }),
    transfers: new Histogram({
      name: 'repoman_transfer_duration_seconds',
      help: 'Image uploads and downloads, from request to last byte, by outcome',
      labelNames: ['direction', 'outcome'],
      buckets: TRANSFER_BUCKETS,
      registers,
    }),
    authFailures: new Counter({
      name: 'repoman_auth_failures_total',
      help: 'Requests refused for their certificate, by reason',
      labelNames: ['reason'],
      registers,
    }),
  };
}

declare module 'fastify' {
  interface FastifyRequest {
    metrics?:
      | { started: bigint; read: number; written: number; direction: 'upload' | 'download' | null }
      | undefined;
  }
}

/** Which transfers a request is: the bytes routes and resumable-upload chunks. */
function directionOf(request: FastifyRequest): 'upload' | 'download' | null {
  const route = request.routeOptions.url ?? '';
  if (RAW_FORMS.some((form) => form.path === route))
    return request.method === 'PUT' ? 'upload' : request.method === 'GET' ? 'download' : null;
  if (route === '/api/uploads' || route === '/api/uploads/:id')
    return request.method === 'PATCH' || request.method === 'POST' ? 'upload' : null; // creation may carry bytes
  return null;
}

export function registerMetrics(
  app: FastifyInstance,
  metrics: Metrics & { http: HttpMetrics },
  allow: BlockList,
): void {
  const m = metrics.http;
  /**
   * Bytes a connection had carried when its previous request was done: a request's bytes are what came and
   * went since (its body arrives with its headers, before any hook runs, so counting from the request's start
   * would miss some).
   */
  const counted = new WeakMap<object, { read: number; written: number }>();
  const socketCounts = (request: FastifyRequest) => {
    const socket = request.raw.socket;
    return { read: socket?.bytesRead ?? 0, written: socket?.bytesWritten ?? 0 };
  };
  app.addHook('onRequest', async (request) => {
    const direction = directionOf(request);
    const previous = request.raw.socket ? counted.get(request.raw.socket) : undefined;
    request.metrics = {
      started: process.hrtime.bigint(),
      ...(previous ?? { read: 0, written: 0 }),
      direction,
    };
    if (direction) m.active.inc({ direction });
  });
  const done = (request: FastifyRequest, status: number) => {
    const started = request.metrics;
    if (!started) return;
    request.metrics = undefined; // once, whether answered or aborted
    const route = request.routeOptions.url ?? 'unmatched';
    const seconds = Number(process.hrtime.bigint() - started.started) / 1e9;
    const now = socketCounts(request);
    if (request.raw.socket) counted.set(request.raw.socket, now);
    m.requests.inc({ method: request.method, route, status: String(status) });
    m.duration.observe({ method: request.method, route }, seconds);
    m.received.inc({ route }, Math.max(0, now.read - started.read));
    m.sent.inc({ route }, Math.max(0, now.written - started.written));
    if (started.direction) {
      m.active.dec({ direction: started.direction });
      m.transfers.observe({ direction: started.direction, outcome: status < 400 ? 'ok' : 'error' }, seconds);
    }
    if (request.errorCode && AUTH_FAILURES.has(request.errorCode))
      m.authFailures.inc({ reason: request.errorCode });
  };
  app.addHook('onResponse', async (request, reply) => done(request, reply.statusCode));
  app.addHook('onRequestAbort', async (request) => done(request, 499));

  app.get(
    '/metrics',
    { config: { auth: 'optional', plainHttp: true }, schema: { hide: true } },
    async (request, reply) => {
      if (!addressIn(allow, request.ip)) {
        request.errorCode = 'not_found';
        return reply
          .code(404)
          .send({ error: { code: 'not_found', message: `No route ${request.method} /metrics` } });
      }
      return reply.type(metrics.registry.contentType).send(await metrics.render());
    },
  );
}

/** A worker's metrics, for its primary to add up with the others' (cluster.ts). */
export const metricsOfThisProcess = (metrics: Metrics): Promise<unknown> =>
  metrics.registry.getMetricsAsJSON();

/**
 * One server's metrics from its workers' (metricsOfThisProcess): counters and histograms added up, and the
 * process's gauges as prom-client declares them (memory and open files added, the event loop's longest delay
 * the longest of all, its percentiles averaged, the start time left out).
 */
export function addUpWorkers(perWorker: unknown[]): Promise<string> {
  return AggregatorRegistry.aggregate(perWorker as object[]).metrics();
}
