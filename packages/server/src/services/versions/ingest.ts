/**
 * Ingest: a body streamed into a new blob in one pass with backpressure, hashed as it goes, stopped at a size
 * limit, optionally unpacked on the way, and every failure mapped to what the client should hear. PUT, the
 * resumable (tus) requests and conversions all store bytes through `ingest`; none builds its own pipeline.
 */
import { spawn } from 'node:child_process';
import { Duplex, type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createZstdDecompress } from 'node:zlib';
import { RepomanError } from '@repoman/core';
import { type Hasher, HashingError } from '../../blobs/hashing.ts';
import { BlobStoreFullError, type BlobUpload } from '../../blobs/store.ts';

/** Throws `tooLarge()` once the chunks it has seen pass `max` bytes, so an undeclared huge body stops early. */
function sizeCheck(max: number, tooLarge: () => RepomanError): (chunk: Buffer) => void {
  let seen = 0;
  return (chunk) => {
    seen += chunk.length;
    if (seen > max) throw tooLarge();
  };
}

/** A stream that fails as soon as it passes `max` bytes (where nothing is hashed on the way). */
function sizeLimit(check: (chunk: Buffer) => void): Transform {
  return new Transform({
    highWaterMark: 64 * 1024,
    transform(chunk: Buffer, _encoding, callback) {
      try {
        check(chunk);
        callback(null, chunk);
      } catch (error) {
        callback(error as Error);
      }
    },
  });
}

/** What went wrong while a body streamed into the store, as the client should hear it. */
export function streamFailure(error: unknown): unknown {
  if (error instanceof RepomanError || error instanceof HashingError) return error;
  if (error instanceof BlobStoreFullError)
    return new RepomanError('insufficient_storage', undefined, { cause: error });
  // The client went away or its stream broke: its fault, not the database's or ours.
  return new RepomanError('upload_incomplete', `The upload ended early: ${(error as Error).message}`, {
    cause: error,
  });
}

export interface IngestOptions {
  /** Bytes past this many (after `through`) fail the stream with `tooLarge`. */
  max: number;
  /** The error for a body past `max`; by default `image_too_large` naming the limit. */
  tooLarge?: () => RepomanError;
  /** Streams the bytes pass through before they are counted and hashed (a decompressor, a meter). */
  through?: Duplex[];
  signal?: AbortSignal | undefined;
}

/**
 * Streams `source` into `upload` through `through`, the size limit and the hasher (none: the bytes are hashed
 * later), and settles both sides (the store has written or dropped every byte) before it returns. Returns
 * the failure as the client should hear it, or null: a caller that must look at what the store kept before
 * it fails (a resumable request) gets the chance; `ingest` throws it.
 */
export async function ingestSettled(
  source: Readable,
  upload: BlobUpload,
  hasher: Hasher | null,
  options: IngestOptions,
): Promise<unknown> {
  const { max, signal, through = [] } = options;
  const tooLarge =
    options.tooLarge ??
    (() => new RepomanError('image_too_large', `The image is larger than the limit of ${max} bytes`));
  // Each chunk is counted against the limit, hashed and passed on by one stream: a stream more per chunk
  // costs more than the counting.
  const check = sizeCheck(max, tooLarge);
  const tap = hasher?.tap(check) ?? sizeLimit(check);
  const outcomes = await Promise.allSettled([
    pipeline([source, ...through, tap], signal ? { signal } : {}),
    upload.write(tap, signal),
  ]);
  const rejected = outcomes.find((outcome) => outcome.status === 'rejected');
  return rejected ? streamFailure(rejected.reason) : null;
}

/** `ingestSettled`, throwing its failure. */
export async function ingest(
  source: Readable,
  upload: BlobUpload,
  hasher: Hasher | null,
  options: IngestOptions,
): Promise<void> {
  const failure = await ingestSettled(source, upload, hasher, options);
  if (failure) throw failure;
}

/** Compressed uploads that may be unpacked on ingest (an OVA is an archive of several files: kept whole). */
export const UNPACKABLE: ReadonlySet<string> = new Set(['gzip', 'xz', 'zstd', 'bzip2']);

/**
 * A decompressor for a compressed upload: zlib's for gzip and zstd, the system's `xz` and `bzip2` in a child
 * process for the others. `done` settles when it has finished, and rejects if the stream was corrupt.
 */
export function decompressor(format: string): { stream: Duplex; done: Promise<void> } {
  if (format === 'gzip' || format === 'zstd') {
    const stream = format === 'gzip' ? createGunzip() : createZstdDecompress();
    return { stream, done: Promise.resolve() };
  }
  // xz's header may ask for a dictionary of up to 1.5 GiB; 512 MiB covers every preset (-9e needs 65 MiB).
  const args = format === 'xz' ? ['-dc', '--memlimit-decompress=512MiB'] : ['-dc'];
  const child = spawn(format, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { LC_ALL: 'C' } });
  let errors = '';
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    if (errors.length < 2048) errors += text;
  });
  const done = new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0
        ? resolve()
        : reject(new Error(errors.trim().split('\n').at(-1) || `${format} exit ${code}`)),
    );
  });
  done.catch(() => {});
  child.stdin.on('error', () => {}); // it stopped reading: its exit status says why
  const stream = Duplex.from({ writable: child.stdin, readable: child.stdout });
  return { stream, done };
}
