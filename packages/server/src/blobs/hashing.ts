/**
 * Digests of an upload, computed in the same pass as it streams to the store: SHA-256 (the ETag and the
 * version's identity) on the main thread, ADLER32, MD5 and SHA-512 in one shared worker thread so they do not
 * cap the rate. All uploads together may run 8 MiB ahead of the worker; past that they wait, so memory stays
 * bounded. Bytes already stored are hashed the same way (`hashStream`), when a digest they lack is wanted.
 */
import { createHash } from 'node:crypto';
import { extname } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { Worker } from 'node:worker_threads';

import type { DigestName, Digests } from '@repoman/core';

/** Bytes go to the worker in batches this large (TLS hands us 16 KiB records; a message each would cost more than the hashing). */
const BATCH = 1024 * 1024;
/**
 * How far all uploads together may run ahead of the worker (bytes sent, not yet hashed). One budget for the
 * server, not one per upload: the worker is one thread, and memory must not grow with the number of uploads.
 */
const MAX_BACKLOG = 8 * BATCH;

type Reply =
  | { id: number; type: 'ack'; bytes: number; buffer: ArrayBuffer }
  | { id: number; type: 'digests'; digests: Record<string, string> };

interface Session {
  onDigests(digests: Record<string, string>): void;
  onError(error: Error): void;
}

/** One worker thread shared by every upload of the server; started on first use, restarted if it dies. */
export class HashingPool {
  #worker: Worker | null = null;
  #sessions = new Map<number, Session>();
  #nextId = 1;
  /** Bytes sent to the worker and not yet acknowledged, and the uploads waiting for that to shrink. */
  #backlog = 0;
  #waiting: (() => void)[] = [];
  /**
   * Batch buffers the worker has handed back, for the next batch of any upload: as many as may be in flight,
   * so that batches cost no allocation (a megabyte each, counted by V8 as external memory that hastens full
   * collections). Let go when no upload is open.
   */
  #free: ArrayBuffer[] = [];

  /** A buffer for the next batch: one handed back, or a new one (not zeroed: it is filled before it is sent). */
  batchBuffer(): ArrayBuffer {
    return this.#free.pop() ?? Buffer.allocUnsafeSlow(BATCH).buffer;
  }

  #recycle(buffer: ArrayBuffer) {
    if (buffer.byteLength === BATCH && this.#free.length < MAX_BACKLOG / BATCH + 2 && this.#sessions.size > 0)
      this.#free.push(buffer);
  }

  /** Calls `proceed` now, or once the worker has caught up if every upload together is too far ahead. */
  whenRoom(proceed: () => void): void {
    if (this.#backlog > MAX_BACKLOG) this.#waiting.push(proceed);
    else proceed();
  }

  #drained(bytes: number) {
    this.#backlog = Math.max(0, this.#backlog - bytes);
    if (this.#backlog > MAX_BACKLOG / 2) return;
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const proceed of waiting) proceed();
  }

  #ensure(): Worker {
    if (this.#worker) return this.#worker;
    // A small heap: the worker holds only hash states and the chunk in hand (a default one costs ~60 MB RSS).
    // Beside this module, as .ts from the sources or .js from the build.
    const worker = new Worker(new URL(`./hash-worker${extname(import.meta.url)}`, import.meta.url), {
      resourceLimits: { maxYoungGenerationSizeMb: 2, maxOldGenerationSizeMb: 16 },
    });
    worker.unref(); // an idle worker must not keep the process alive
    worker.on('message', (reply: Reply) => {
      const session = this.#sessions.get(reply.id);
      if (reply.type === 'ack') {
        this.#recycle(reply.buffer);
        this.#drained(reply.bytes);
      } else {
        this.#forget(reply.id);
        session?.onDigests(reply.digests);
      }
    });
    const fail = (error: Error) => {
      this.#worker = null;
      const sessions = [...this.#sessions.values()];
      this.#sessions.clear();
      this.#free = [];
      for (const session of sessions) session.onError(error);
      this.#drained(Number.POSITIVE_INFINITY); // nothing in flight any more: let waiting uploads fail
    };
    worker.on('error', fail);
    worker.on('exit', (code) => {
      if (this.#worker === worker) fail(new Error(`the hashing worker exited with code ${code}`));
    });
    this.#worker = worker;
    return worker;
  }

  open(algorithms: string[], session: Session) {
    const id = this.#nextId++;
    const worker = this.#ensure();
    this.#sessions.set(id, session);
    worker.postMessage({ id, type: 'start', algorithms });
    return {
      data: (chunk: Uint8Array) => {
        this.#backlog += chunk.byteLength;
        worker.postMessage({ id, type: 'data', chunk }, [chunk.buffer as ArrayBuffer]);
      },
      end: () => worker.postMessage({ id, type: 'end' }),
      drop: () => {
        this.#forget(id);
        worker.postMessage({ id, type: 'drop' });
      },
    };
  }

  #forget(id: number) {
    this.#sessions.delete(id);
    if (this.#sessions.size === 0) this.#free = [];
  }

  async close(): Promise<void> {
    const worker = this.#worker;
    this.#worker = null;
    await worker?.terminate();
  }
}

/** The hashing worker failed: the server's fault, not the client's (a 500; the client may retry). */
export class HashingError extends Error {
  override name = 'HashingError';
}

/**
 * The digests of one upload. It outlives a request: a resumable upload feeds the same hasher from each of its
 * requests (`tap()` makes a pass-through stream for one of them), so its bytes are hashed once, as they arrive.
 */
export class Hasher {
  #sha256 = createHash('sha256');
  #pool: HashingPool;
  #channel: ReturnType<HashingPool['open']> | null = null;
  #digests: Promise<Record<string, string>> = Promise.resolve({});
  #current: Transform | null = null;
  #failed: Error | null = null;
  /** The batch being filled. */
  #batch: Buffer | null = null;
  #filled = 0;
  /** Bytes hashed so far. */
  bytes = 0;

  /** The worker failed: this hasher can never give digests. */
  get failed(): boolean {
    return this.#failed !== null;
  }

  constructor(pool: HashingPool, algorithms: readonly DigestName[]) {
    this.#pool = pool;
    const offThread = algorithms.filter((a) => a !== 'sha256');
    if (offThread.length === 0) return;
    this.#digests = new Promise((resolve, reject) => {
      this.#channel = pool.open(offThread, {
        onDigests: resolve,
        onError: (cause) => {
          const error = new HashingError(`Hashing the upload failed: ${cause.message}`, { cause });
          reject(error);
          this.#failed = error;
          this.#current?.destroy(error); // fail the upload now rather than stall it until the idle timeout
        },
      });
    });
    this.#digests.catch(() => {}); // observed by digests(); never an unhandled rejection
  }

  /** Hashes a chunk; `done` is called once the worker's backlog allows the next one. */
  update(chunk: Buffer, done: () => void): void {
    if (this.#failed) throw this.#failed;
    this.bytes += chunk.length;
    this.#sha256.update(chunk);
    if (this.#channel) {
      // Copied into a batch (the chunk's memory may be pooled or reused); full batches are transferred.
      for (let at = 0; at < chunk.length; ) {
        this.#batch ??= Buffer.from(this.#pool.batchBuffer());
        const copied = chunk.copy(this.#batch, this.#filled, at);
        this.#filled += copied;
        at += copied;
        if (this.#filled === BATCH) this.#flush();
      }
    }
    if (this.#channel) this.#pool.whenRoom(done);
    else done();
  }

  #flush() {
    if (!this.#batch || this.#filled === 0) return;
    this.#channel?.data(new Uint8Array(this.#batch.buffer, 0, this.#filled));
    this.#batch = null;
    this.#filled = 0;
  }

  /**
   * A pass-through stream that hashes what flows through it (one at a time). `check` sees each chunk first and
   * may throw to fail the stream (a size limit): one stream per chunk's path rather than two.
   */
  tap(check?: (chunk: Buffer) => void): Transform {
    const tap = new Transform({
      highWaterMark: 64 * 1024, // chunks wait here only while the store is busy
      transform: (chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) => {
        try {
          check?.(chunk);
          tap.push(chunk);
          this.update(chunk, callback as () => void);
        } catch (error) {
          callback(error as Error);
        }
      },
    });
    this.#current = tap;
    return tap;
  }

  /** All digests, once every byte has been hashed. The hasher is finished afterwards. */
  async digests(): Promise<Digests> {
    const sha256 = this.#sha256.digest('hex');
    this.#flush();
    this.#channel?.end();
    return { ...(await this.#digests), sha256 };
  }

  /** Sends what is batched: the hasher waits, small, for its upload's next request. */
  idle(): void {
    this.#flush();
  }

  /** Stops hashing without waiting for digests (the upload failed or was set aside). */
  dispose(): void {
    this.#channel?.drop();
    this.#channel = null;
    this.#current = null;
    this.#batch = null;
  }
}

/**
 * The digests of bytes already stored, read once: SHA-256 always (the caller checks it against the one
 * recorded) and `algorithms` besides, in the worker as for an upload.
 */
export async function hashStream(
  pool: HashingPool,
  source: AsyncIterable<Buffer>,
  algorithms: readonly DigestName[],
): Promise<Digests> {
  const hasher = new Hasher(pool, algorithms);
  try {
    for await (const chunk of source) await new Promise<void>((resolve) => hasher.update(chunk, resolve));
    return await hasher.digests();
  } catch (error) {
    hasher.dispose();
    throw error;
  }
}
