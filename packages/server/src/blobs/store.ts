/**
 * The narrow interface image bytes live behind. A store holds immutable blobs under opaque keys (never built
 * from user or image names). Writing is two-phase, as in the OCI registry: bytes stream into an upload that
 * nothing can see, and only `commit` publishes it, durably, under its key.
 */
import type { Readable, Writable } from 'node:stream';

export interface BlobUpload {
  /** The key the blob will have once committed. */
  readonly key: string;
  /** Appends the stream's bytes to the upload; resolves with the number written. Rejects if the stream fails. */
  write(source: Readable, signal?: AbortSignal): Promise<number>;
  /** Makes the upload durable (flushed to stable storage) and visible under `key`. */
  commit(): Promise<void>;
  /** Discards the upload and everything written to it. Safe to call twice, or after a failed write. */
  abort(): Promise<void>;
  /** Bytes written so far (a resumable upload's offset is checked against it). */
  size(): Promise<number>;
  /** Cuts the upload back to `length` bytes (bytes a cut or failed request wrote but nobody recorded). */
  truncate(length: number): Promise<void>;
  /**
   * The bytes written so far, from the start (to hash a resumed upload again). Like `readAt`, only for an
   * upload that is whole: a store that cannot read an unfinished upload (S3) completes it first, after which
   * it can only be committed or aborted.
   */
  readBack(): Promise<Readable>;
  /** Up to `length` bytes written so far at `offset` (to inspect an image's headers before it is committed). */
  readAt(offset: number, length: number): Promise<Buffer>;
}

export interface ByteRange {
  /** First byte, inclusive. */
  start: number;
  /** Last byte, inclusive. */
  end: number;
}

/**
 * A blob being read: a stream, which a store may also offer to write out itself (`pipeTo`) through a few
 * reused buffers. Streamed chunks are garbage once sent, and V8 collects them only when some 64 MiB of them
 * have piled up; reused buffers keep a download's memory flat.
 */
export type BlobReadable = Readable & { pipeTo?: (destination: Writable) => Promise<void> };

export interface BlobStore {
  /** Rejects when the store cannot be used (health checks, start-up); absent where there is nothing to check. */
  check?(): Promise<void>;
  /** Starts a new upload under a fresh key. */
  createUpload(): Promise<BlobUpload>;
  /** Reopens an upload started earlier and not yet committed or aborted (a resumable upload); null if gone. */
  resumeUpload(key: string): Promise<BlobUpload | null>;
  /** The blob's bytes, or one range of them. Rejects with a `BlobNotFoundError` for a missing key. */
  read(key: string, range?: ByteRange): Promise<BlobReadable>;
  /** The blob's size and when it was committed, or null when there is no such blob. */
  stat(key: string): Promise<{ size: number; modified: Date } | null>;
  /** Removes the blob; a missing key is not an error. */
  delete(key: string): Promise<void>;
  /**
   * The committed blob's own file, where the store keeps blobs as local files (a tool that needs a seekable
   * file, such as qemu-img, reads it in place); absent where it does not.
   */
  localPath?(key: string): string;
  /**
   * A short-lived URL at which any client can read the blob without further credentials, where the store can
   * make one (an object store's presigned URL); absent where it cannot.
   */
  downloadUrl?(key: string, options: DownloadUrlOptions): Promise<string>;
  /** Every committed blob's key (for fsck: orphans are keys no version names). */
  list(): AsyncIterable<string>;
  /** Uploads in progress or left behind: a name to show, the upload's key and its age in milliseconds. */
  listUploads(): Promise<{ name: string; key: string; ageMs: number }[]>;
  /**
   * Removes uploads nobody has written to for `olderThanMs` (a crash or a killed process left them), except
   * those named in `keep` (resumable uploads waiting for their next request); returns their names.
   */
  removeStaleUploads(olderThanMs?: number, keep?: ReadonlySet<string>): Promise<string[]>;
}

export interface DownloadUrlOptions {
  expiresSeconds: number;
  contentDisposition?: string;
  contentType?: string;
}

export class BlobNotFoundError extends Error {
  override name = 'BlobNotFoundError';
}

/** The store ran out of space (ENOSPC, EDQUOT): the caller answers 507. */
export class BlobStoreFullError extends Error {
  override name = 'BlobStoreFullError';
}

/**
 * Deletes blobs whose rows are already gone, best effort: one left behind is an orphan that fsck finds; it
 * never changes what is served.
 */
export async function deleteBlobsQuietly(
  store: Pick<BlobStore, 'delete'>,
  keys: readonly string[],
): Promise<void> {
  await Promise.all(keys.map((key) => store.delete(key).catch(() => {})));
}
