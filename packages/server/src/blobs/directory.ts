/**
 * The embedded blob store: a directory on any mounted filesystem.
 *
 * Layout (all names opaque, made here):
 *   <root>/blobs/<k0k1>/<key>      committed blobs, fanned out by the key's first two hex digits
 *   <root>/uploads/<key>.part      uploads in progress; removed on abort, renamed into blobs/ on commit
 * A commit fsyncs the file, renames it, and fsyncs the directory, so a crash leaves either no blob or a whole one.
 *
 * Files are sparse: an all-zero block of an upload is not written but left as a hole (the file is extended
 * over it), so a raw disk image takes the disk its data needs, not its virtual size. Reads see zeros there, as
 * in the bytes sent; digests are computed over the bytes received, before the store.
 */
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import {
  access,
  constants,
  type FileHandle,
  mkdir,
  open,
  readdir,
  rename,
  rm,
  stat,
  truncate,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BLOB_KEY, copyThroughTwoBuffers, newBlobKey, STALE_UPLOAD_MS } from './common.ts';
import {
  BlobNotFoundError,
  type BlobReadable,
  type BlobStore,
  BlobStoreFullError,
  type BlobUpload,
  type ByteRange,
} from './store.ts';

/** Large buffers: a 1 MiB chunk nearly doubles TLS download throughput over the default 64 KiB. */
export const IO_CHUNK = 1024 * 1024;

const isFull = (error: unknown) =>
  ['ENOSPC', 'EDQUOT'].includes((error as NodeJS.ErrnoException)?.code ?? '');

async function fsyncPath(path: string) {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * The unit of holes: a filesystem block. A block of an upload (aligned on its offset in the file) that holds
 * only zeros is skipped rather than written.
 */
const HOLE_BLOCK = 4096;
const ZERO_BLOCK = Buffer.alloc(HOLE_BLOCK);

/**
 * The runs of `buffer` (to be written at file offset `position`) that hold anything but zeros, as [from, to)
 * offsets in the buffer, blocks aligned on the file's offsets.
 */
export function dataRuns(buffer: Buffer, position: number): [number, number][] {
  const runs: [number, number][] = [];
  let from = -1;
  for (let at = 0; at < buffer.length; ) {
    const end = Math.min(buffer.length, at + HOLE_BLOCK - ((position + at) % HOLE_BLOCK));
    // Its first and last bytes first: most blocks of data are told so without a call into C++.
    const zero =
      buffer[at] === 0 && buffer[end - 1] === 0 && ZERO_BLOCK.compare(buffer, at, end, 0, end - at) === 0;
    if (!zero && from < 0) from = at;
    if (zero && from >= 0) {
      runs.push([from, at]);
      from = -1;
    }
    at = end;
  }
  if (from >= 0) runs.push([from, buffer.length]);
  return runs;
}

/** A partly filled upload buffer is written once no bytes have come for this long. */
const IDLE_FLUSH_MS = 100;

/**
 * Direct I/O (`O_DIRECT`) wants its memory, file offsets and lengths aligned on the device's block: a page
 * covers every device (512 or 4096 bytes), and is the unit of holes too.
 */
const ALIGN = HOLE_BLOCK;

/** WebAssembly's memory: the one part of its API used here (the compiler's libraries have no DOM types). */
const wasmMemory = (globalThis as unknown as { WebAssembly: { Memory: WasmMemory } }).WebAssembly.Memory;
type WasmMemory = new (pages: { initial: number; maximum: number }) => { buffer: ArrayBuffer };

/** Pairs of page-aligned upload buffers let go by finished uploads, kept for the next ones (a few: memory). */
const sparePairs: Buffer[][] = [];
const KEPT_PAIRS = 2;

/**
 * Two page-aligned buffers of IO_CHUNK for one upload, or null where none can be had. WebAssembly memory is
 * the one page-aligned memory JavaScript can allocate (V8 maps it whole); a Buffer's own memory is aligned
 * on 16 bytes only, which direct I/O refuses.
 */
function alignedPair(): Buffer[] | null {
  const spare = sparePairs.pop();
  if (spare) return spare;
  try {
    const pages = (2 * IO_CHUNK) / 65536; // WebAssembly pages are 64 KiB
    const memory = Buffer.from(new wasmMemory({ initial: pages, maximum: pages }).buffer);
    return [memory.subarray(0, IO_CHUNK), memory.subarray(IO_CHUNK)];
  } catch {
    return null; // no address space left for another: this upload writes through the page cache
  }
}

const isInvalid = (error: unknown) => (error as NodeJS.ErrnoException)?.code === 'EINVAL';

/**
 * Appends a stream to a file through two reused buffers: each incoming chunk is copied at once (so the
 * network's many small chunks die young instead of waiting in queues until a full collection), and the file
 * is written 1 MiB at a time, one buffer filling while the other is being written. Bytes never wait in
 * memory long: a partly filled buffer is written once the stream pauses, and when it ends or is destroyed
 * (a cut resumable upload keeps every byte that arrived). All-zero blocks become holes (`dataRuns`); after each
 * buffer the file's size is the number of bytes received, as if every byte had been written.
 *
 * Whole blocks are written with direct I/O, from page-aligned buffers straight to the disk, bypassing the
 * page cache: an upload leaves no gigabytes of dirty pages for its commit's fsync to write out at once, nor
 * evicts what downloads read, and costs the kernel no page-cache pages to fill (where the host gives memory
 * back lazily, as a virtual machine's does, filling fresh pages cost 2.5 to 3 s of system time per GB
 * here, against 0.2 for direct writes). The last part-block of a flush is written through the page cache
 * and kept at the start of the next buffer, so that every direct write starts on a block; where the
 * filesystem refuses direct I/O, everything is written through the page cache, as before.
 */
class CoalescingFileSink extends Writable {
  /** The file, through the page cache; and with O_DIRECT, for whole blocks (null: not possible here). */
  #handle: FileHandle | null = null;
  #direct: FileHandle | null = null;
  #path: string;
  #buffers: Buffer[];
  #aligned: boolean;
  #turn = 0;
  /** Bytes in the current buffer, of which the first `#carried` are in the file already. */
  #filled = 0;
  #carried = 0;
  #inFlight: Promise<unknown> = Promise.resolve();
  #idle: NodeJS.Timeout | null = null;
  /** Where the current buffer's first byte goes in the file (on a block, with direct I/O). */
  #position = 0;
  /** Bytes received. */
  written = 0;

  constructor(path: string) {
    super({ highWaterMark: 64 * 1024 });
    this.#path = path;
    const pair = alignedPair();
    this.#aligned = pair !== null;
    this.#buffers = pair ?? [Buffer.allocUnsafeSlow(IO_CHUNK), Buffer.allocUnsafeSlow(IO_CHUNK)];
  }

  override _construct(callback: (error?: Error | null) => void) {
    // Not O_APPEND: writes go to their own offsets, past the holes left before them.
    this.#open().then(() => callback(), callback);
  }

  async #open() {
    this.#handle = await open(this.#path, constants.O_RDWR | constants.O_CREAT, 0o600);
    const size = (await this.#handle.stat()).size;
    this.#position = size;
    if (!this.#aligned) return;
    this.#direct = await open(this.#path, constants.O_WRONLY | constants.O_DIRECT).catch((error) => {
      if (isInvalid(error)) return null; // a filesystem without direct I/O
      throw error;
    });
    if (!this.#direct) return;
    // A file resumed in the middle of a block: the buffer starts with that block's bytes, written again.
    this.#carried = size % ALIGN;
    this.#position = size - this.#carried;
    if (this.#carried > 0)
      await this.#handle.read(this.#buffers[0] as Buffer, 0, this.#carried, this.#position);
    this.#filled = this.#carried;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void) {
    if (this.#filled + chunk.length < IO_CHUNK) {
      // Most chunks only fill the buffer: answered at once, without a promise each.
      this.written += chunk.length;
      this.#filled += chunk.copy(this.#buffers[this.#turn] as Buffer, this.#filled);
      this.#idleFlushLater();
      callback();
    } else this.#append(chunk).then(() => callback(), callback);
  }

  override _final(callback: (error?: Error | null) => void) {
    this.#settle().then(() => callback(), callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void) {
    const close = async () => {
      const handles = [this.#handle, this.#direct];
      this.#handle = this.#direct = null;
      await Promise.all(handles.map((handle) => handle?.close()));
      if (this.#aligned && sparePairs.length < KEPT_PAIRS) sparePairs.push(this.#buffers);
      this.#buffers = [];
    };
    this.#settle()
      .catch(() => {})
      .then(close)
      .then(
        () => callback(error),
        () => callback(error),
      );
  }

  async #append(chunk: Buffer) {
    this.written += chunk.length;
    for (let at = 0; at < chunk.length; ) {
      const copied = chunk.copy(this.#buffers[this.#turn] as Buffer, this.#filled, at);
      this.#filled += copied;
      at += copied;
      if (this.#filled === IO_CHUNK) await this.#flush();
    }
    this.#idleFlushLater();
  }

  /** A partly filled buffer is written once no bytes have come for IDLE_FLUSH_MS. */
  #idleFlushLater() {
    if (this.#idle) this.#idle.refresh();
    else if (this.#filled > this.#carried) {
      this.#idle = setTimeout(() => {
        this.#idle = null;
        this.#flush().catch((error: Error) => this.destroy(error));
      }, IDLE_FLUSH_MS);
      this.#idle.unref();
    }
  }

  /** Writes whatever is buffered and waits for every write to finish. */
  async #settle() {
    if (this.#idle) clearTimeout(this.#idle);
    this.#idle = null;
    await this.#flush();
    await this.#inFlight;
  }

  /** Starts writing the filled buffer once the other one's write is done; the other is filled meanwhile. */
  async #flush() {
    while (this.#filled > this.#carried) {
      const previous = this.#inFlight;
      await previous;
      if (this.#inFlight !== previous) continue; // another flush started a write meanwhile: wait for it too
      if (this.#filled <= this.#carried || !this.#handle) return;
      const buffer = (this.#buffers[this.#turn] as Buffer).subarray(0, this.#filled);
      const next = this.#buffers[this.#turn ^ 1] as Buffer;
      const position = this.#position;
      // With direct I/O, the last part-block is also the next buffer's start (the other buffer is free now).
      const whole = this.#direct ? buffer.length - (buffer.length % ALIGN) : buffer.length;
      this.#inFlight = this.#write(buffer, position, whole);
      this.#inFlight.catch(() => {}); // observed by the next flush or settle
      this.#carried = buffer.copy(next, 0, whole);
      this.#position += whole;
      this.#filled = this.#carried;
      this.#turn ^= 1;
    }
  }

  /** Writes the data runs of `buffer` at `position`: bytes before `whole` directly, the rest through the cache. */
  async #write(buffer: Buffer, position: number, whole: number) {
    const handle = this.#handle as FileHandle;
    const runs = dataRuns(buffer, position);
    for (const [from, to] of runs) {
      let at = from;
      while (at < Math.min(to, whole) && this.#direct) {
        try {
          const { bytesWritten } = await this.#direct.write(
            buffer,
            at,
            Math.min(to, whole) - at,
            position + at,
          );
          if (bytesWritten % ALIGN !== 0 || bytesWritten === 0) break; // short: the rest through the cache
          at += bytesWritten;
        } catch (error) {
          if (!isInvalid(error)) throw error;
          // The filesystem wants more than page alignment: this upload goes on through the page cache.
          const direct = this.#direct;
          this.#direct = null;
          await direct.close();
        }
      }
      while (at < to) at += (await handle.write(buffer, at, to - at, position + at)).bytesWritten;
    }
    // A buffer ending in zeros: the file is extended over them, leaving a hole.
    if ((runs.at(-1)?.[1] ?? 0) < buffer.length) await handle.truncate(position + buffer.length);
  }
}

/** Copies bytes [start, end) of a file to `destination` (BlobReadable's `pipeTo`). */
function copyFileRange(handle: FileHandle, start: number, end: number, destination: Writable) {
  let position = start;
  return copyThroughTwoBuffers(async (buffer) => {
    if (position >= end) return 0;
    const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, end - position), position);
    if (bytesRead === 0) throw new Error('the blob is shorter than expected');
    position += bytesRead;
    return bytesRead;
  }, destination);
}

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

export function createDirectoryStore(root: string): BlobStore {
  const dirRoot = root;
  const blobPath = (key: string) => {
    if (!BLOB_KEY.test(key)) throw new BlobNotFoundError(`Invalid blob key ${key}`);
    return join(root, 'blobs', key.slice(0, 2), key);
  };
  const uploadPath = (key: string) => join(root, 'uploads', `${key}.part`);

  /**
   * An upload's file, or once committed its blob's: an upload committed but not yet recorded as a version
   * (the server died in between) is whole, and its next request publishes it.
   */
  const current = async (key: string) => {
    const path = uploadPath(key);
    if (await exists(path)) return path;
    const committed = blobPath(key);
    return (await exists(committed)) ? committed : path;
  };

  function uploadOf(key: string): BlobUpload {
    const path = uploadPath(key);
    let done = false;
    return {
      key,
      async write(source, signal) {
        if ((await current(key)) !== path) {
          // Committed already (its bytes are whole): only an empty request, a retried last one, is taken.
          for await (const chunk of source) {
            if ((chunk as Buffer).length > 0)
              throw new Error(`upload ${key} is complete: no bytes can be added`);
          }
          return 0;
        }
        const sink = new CoalescingFileSink(path);
        try {
          await pipeline(source, sink, signal ? { signal } : {});
        } catch (error) {
          // A failed pipeline does not wait for the sink to finish writing what it holds: wait, so that the
          // file's size is final when the caller looks at it.
          if (!sink.closed) await once(sink, 'close').catch(() => {});
          if (isFull(error)) throw new BlobStoreFullError('The blob store is out of space', { cause: error });
          throw error;
        }
        return sink.written;
      },
      async commit() {
        const target = blobPath(key);
        if (done) return;
        if ((await current(key)) === target) {
          done = true; // committed before, by a request that died before recording it
          return;
        }
        try {
          await fsyncPath(path);
          await mkdir(dirname(target), { recursive: true, mode: 0o700 });
          await rename(path, target);
          await fsyncPath(dirname(target));
        } catch (error) {
          if (isFull(error)) throw new BlobStoreFullError('The blob store is out of space', { cause: error });
          throw error;
        }
        done = true;
      },
      async abort() {
        if (done) return;
        done = true;
        await rm(await current(key), { force: true });
      },
      async size() {
        return (await stat(await current(key))).size;
      },
      async truncate(length) {
        await truncate(path, length);
      },
      async readAt(offset, length) {
        const handle = await open(await current(key), 'r');
        try {
          const buffer = Buffer.alloc(length);
          const { bytesRead } = await handle.read(buffer, 0, length, offset);
          return buffer.subarray(0, bytesRead);
        } finally {
          await handle.close();
        }
      },
      async readBack() {
        return createReadStream(await current(key), { highWaterMark: IO_CHUNK });
      },
    };
  }

  return {
    async check() {
      await access(root, constants.W_OK);
    },

    async createUpload(): Promise<BlobUpload> {
      const key = newBlobKey();
      const path = uploadPath(key);
      await mkdir(dirname(path), { recursive: true, mode: 0o700 });
      await writeFile(path, '', { mode: 0o600, flag: 'wx' });
      return uploadOf(key);
    },

    async resumeUpload(key: string) {
      if (!BLOB_KEY.test(key)) return null;
      return (await exists(uploadPath(key))) || (await exists(blobPath(key))) ? uploadOf(key) : null;
    },

    async read(key: string, range?: ByteRange): Promise<BlobReadable> {
      const path = blobPath(key);
      const handle = await open(path, 'r').catch((error: NodeJS.ErrnoException) => {
        throw error.code === 'ENOENT' ? new BlobNotFoundError(`No blob ${key}`) : error;
      });
      const stream = createReadStream('', {
        fd: handle,
        highWaterMark: IO_CHUNK,
        ...(range ? { start: range.start, end: range.end } : {}),
      });
      const start = range?.start ?? 0;
      const end = range ? range.end + 1 : (await handle.stat()).size;
      return Object.assign(stream, {
        pipeTo: (destination: Writable) =>
          copyFileRange(handle, start, end, destination).finally(() => stream.destroy()),
      });
    },

    localPath: blobPath,

    async stat(key: string) {
      try {
        const info = await stat(blobPath(key));
        return { size: info.size, modified: info.mtime };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT' || error instanceof BlobNotFoundError)
          return null;
        throw error;
      }
    },

    async delete(key: string) {
      await unlink(blobPath(key)).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw error;
      });
    },

    async *list() {
      const root = join(dirRoot, 'blobs');
      for (const fan of await readdir(root).catch(() => [] as string[])) {
        for (const name of await readdir(join(root, fan)).catch(() => [] as string[])) {
          if (BLOB_KEY.test(name) && name.startsWith(fan)) yield name;
        }
      }
    },

    /** Uploads in progress or left behind: file name, upload key and age in milliseconds. */
    async listUploads() {
      const dir = join(dirRoot, 'uploads');
      const names = await readdir(dir).catch(() => [] as string[]);
      const now = Date.now();
      const stats = await Promise.all(names.map((name) => stat(join(dir, name)).catch(() => null)));
      return names.flatMap((name, i) => {
        const info = stats[i];
        return info ? [{ name, key: name.replace(/\.part$/, ''), ageMs: now - info.mtimeMs }] : [];
      });
    },

    /**
     * Uploads nobody has written to for `olderThanMs` (a crash or a killed process left them): removed at
     * start-up, periodically and by fsck. Younger ones may belong to another server sharing this directory;
     * `keep` names the resumable uploads still waiting for their next request, which have their own expiry.
     */
    async removeStaleUploads(olderThanMs = STALE_UPLOAD_MS, keep: ReadonlySet<string> = new Set()) {
      const stale = (await this.listUploads())
        .filter((u) => u.ageMs > olderThanMs && !keep.has(u.key))
        .map((u) => u.name);
      await Promise.all(stale.map((name) => rm(join(dirRoot, 'uploads', name), { force: true })));
      return stale;
    },
  };
}
