/**
 * A blob store that keeps nothing: uploads are received, counted and dropped, and commits publish a blob no
 * one can read. It exists to measure the data path (TLS, hashing, inspection, the database) without a disk
 * (`blob_store = "discard"`, used by the throughput benchmark); a server on it says so loudly at start-up.
 *
 * So that formats are still recognised, an upload keeps its first `HEAD` bytes; reads elsewhere see zeros.
 */
import { type Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { newBlobKey } from './common.ts';
import { BlobNotFoundError, type BlobStore, type BlobUpload } from './store.ts';

const HEAD = 1024 * 1024;

class Upload implements BlobUpload {
  readonly key = newBlobKey();
  #head = Buffer.alloc(HEAD);
  #length = 0;
  #committed: Map<string, number>;
  #uploads: Map<string, Upload>;

  constructor(committed: Map<string, number>, uploads: Map<string, Upload>) {
    this.#committed = committed;
    this.#uploads = uploads;
    uploads.set(this.key, this);
  }

  async write(source: Readable, signal?: AbortSignal): Promise<number> {
    let written = 0;
    const sink = new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        if (this.#length < HEAD) chunk.copy(this.#head, this.#length);
        this.#length += chunk.length;
        written += chunk.length;
        callback();
      },
    });
    await pipeline(source, sink, signal ? { signal } : {});
    return written;
  }

  async commit() {
    this.#committed.set(this.key, this.#length);
    this.#finish();
  }

  async abort() {
    this.#finish();
  }

  #finish() {
    this.#uploads.delete(this.key);
    this.#head = Buffer.alloc(0);
  }

  async size() {
    return this.#length;
  }

  async truncate(length: number) {
    this.#length = Math.min(this.#length, length);
  }

  async readBack(): Promise<never> {
    throw new Error('The discarding blob store keeps no bytes to read back');
  }

  async readAt(offset: number, length: number) {
    const end = Math.min(offset + length, this.#length);
    if (end <= offset) return Buffer.alloc(0);
    const bytes = Buffer.alloc(end - offset);
    if (offset < this.#head.length) this.#head.copy(bytes, 0, offset, Math.min(end, this.#head.length));
    return bytes;
  }
}

export function createDiscardingStore(): BlobStore {
  const committed = new Map<string, number>();
  const uploads = new Map<string, Upload>();
  return {
    async createUpload() {
      return new Upload(committed, uploads);
    },
    async resumeUpload(key) {
      return uploads.get(key) ?? null;
    },
    async read(key): Promise<never> {
      throw new BlobNotFoundError(`The discarding blob store keeps no bytes (blob ${key})`);
    },
    async stat(key) {
      const size = committed.get(key);
      return size === undefined ? null : { size, modified: new Date() };
    },
    async delete(key) {
      committed.delete(key);
    },
    async *list() {
      yield* committed.keys();
    },
    async listUploads() {
      return [];
    },
    async removeStaleUploads() {
      return [];
    },
  };
}
