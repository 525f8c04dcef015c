/**
 * Digests of an upload, computed in the same pass as it streams to the store: SHA-256 (the ETag and the
 * version's identity) on the main thread, MD5 and SHA-512 in a worker thread so they do not cap the rate.
 */
import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { Worker } from 'node:worker_threads';

export type DigestAlgorithm = 'sha256' | 'md5' | 'sha512';
export type Digests = Partial<Record<DigestAlgorithm, string>> & { sha256: string };

/** How far the worker may fall behind before the upload waits for it: memory stays bounded. */
const MAX_BACKLOG = 32 * 1024 * 1024;

export class HashingTap extends Transform {
  #sha256 = createHash('sha256');
  #worker: Worker | null;
  #backlog = 0;
  #waiting: (() => void) | null = null;
  #digests: Promise<Record<string, string>>;
  bytes = 0;

  constructor(offThread: DigestAlgorithm[]) {
    super({ highWaterMark: 1024 * 1024 });
    const algorithms = offThread.filter((a) => a !== 'sha256');
    if (algorithms.length === 0) {
      this.#worker = null;
      this.#digests = Promise.resolve({});
      return;
    }
    const worker = new Worker(new URL('./hash-worker.ts', import.meta.url));
    this.#worker = worker;
    this.#digests = new Promise((resolve, reject) => {
      worker.on(
        'message',
        (message: { type: 'ack'; bytes: number } | { type: 'digests'; digests: Record<string, string> }) => {
          if (message.type === 'ack') {
            this.#backlog -= message.bytes;
            if (this.#backlog <= MAX_BACKLOG / 2 && this.#waiting) {
              const resume = this.#waiting;
              this.#waiting = null;
              resume();
            }
          } else resolve(message.digests);
        },
      );
      worker.on('error', (error) => {
        reject(error);
        this.#waiting = null;
        this.destroy(error); // fail the upload now rather than stall it until the idle timeout
      });
    });
    this.#digests.catch(() => {}); // observed by digests(); never an unhandled rejection
    worker.postMessage({ type: 'start', algorithms });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
    this.bytes += chunk.length;
    this.#sha256.update(chunk);
    if (this.#worker) {
      const copy = new Uint8Array(chunk); // the chunk's memory may be pooled: send a copy, transferred not cloned
      this.#backlog += copy.byteLength;
      this.#worker.postMessage({ type: 'data', chunk: copy }, [copy.buffer]);
    }
    this.push(chunk);
    if (this.#backlog > MAX_BACKLOG) this.#waiting = () => callback();
    else callback();
  }

  /** All digests, once the stream has ended; stops the worker. */
  async digests(): Promise<Digests> {
    const sha256 = this.#sha256.digest('hex');
    if (!this.#worker) return { sha256 };
    this.#worker.postMessage({ type: 'end' });
    try {
      return { ...(await this.#digests), sha256 };
    } finally {
      await this.#worker.terminate();
    }
  }

  /** Stops the worker without waiting for digests (the upload failed). */
  async dispose(): Promise<void> {
    await this.#worker?.terminate();
  }
}
