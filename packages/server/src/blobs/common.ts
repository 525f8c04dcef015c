/**
 * What every blob store shares, whatever it keeps its bytes in: the form of a key, when an upload counts as
 * abandoned, and the two-buffer copy a download is written out with. A store imports this and store.ts, never
 * another store.
 */
import { randomBytes } from 'node:crypto';
import type { Writable } from 'node:stream';

/** A blob's key: 128 random bits in hex, never built from user or image names. */
export const BLOB_KEY = /^[0-9a-f]{32}$/;

export const newBlobKey = () => randomBytes(16).toString('hex');

/** An upload nobody has written to for this long is abandoned (no client stalls an hour and then goes on). */
export const STALE_UPLOAD_MS = 60 * 60 * 1000;

/**
 * A download's two buffers: 256 KiB each reads as fast as 1 MiB from a file and sends an object store's 16 to
 * 64 KiB socket chunks on as fewer, larger TLS records and writes. Past 32 downloads at once in a process,
 * every one gets less, so that all of them hold at most DOWNLOAD_BUFFERS_BUDGET (down to 16 KiB a buffer,
 * one TLS record: 250 downloads on one worker hold 16 MB rather than 128, and as much again less in the
 * encrypted copies waiting for the socket): with that many clients the cores, not the size of a read, set the
 * pace. Measured with 500 slow downloads on two workers: peak RSS 602 MB with 64 KiB at least, 489 with 16.
 * Each turn fills as much as a download begun at that moment would get, so that downloads at once move the
 * same bytes per turn of the event loop whenever they began: filling their whole buffers, the first ones had
 * sixteen times the share of the last (500 at once: slowest/fastest client 4.0, 1.7 now). Buffers are not
 * allocated again as the count changes: replacing them cost more memory in garbage than it saved.
 */
const DOWNLOAD_CHUNK = 256 * 1024;
const SMALLEST_DOWNLOAD_CHUNK = 16 * 1024;
const DOWNLOAD_BUFFERS_BUDGET = 16 * 1024 * 1024;
/** Downloads copying in this process now. */
let copying = 0;

/** The size of each of a download's two buffers while `downloads` (this one included) are copying. */
export function downloadChunkSize(downloads: number): number {
  const share = Math.floor(DOWNLOAD_BUFFERS_BUDGET / (2 * Math.max(1, downloads)) / SMALLEST_DOWNLOAD_CHUNK);
  return Math.min(DOWNLOAD_CHUNK, Math.max(SMALLEST_DOWNLOAD_CHUNK, share * SMALLEST_DOWNLOAD_CHUNK));
}

/** Writes a `Writable` chunk and resolves once it has been handed on (or rejects if the destination goes away). */
export function written(destination: Writable, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const gone = () => reject(new Error('the destination closed'));
    destination.once('close', gone);
    destination.write(chunk, (error) => {
      destination.off('close', gone);
      if (error) reject(error);
      else resolve();
    });
  });
}

/**
 * Copies to `destination` through two reused buffers in turn: `fill` puts the next bytes in one (resolving
 * with how many, 0 at the end) while the other is being written, and a buffer is filled again only once its
 * write has completed. No garbage per chunk, so a download's memory stays flat (see BlobReadable).
 */
export async function copyThroughTwoBuffers(
  fill: (buffer: Buffer) => Promise<number>,
  destination: Writable,
): Promise<void> {
  copying++;
  try {
    // Sized for the downloads copying as this one begins; never larger than 256 KiB each.
    const size = downloadChunkSize(copying);
    const buffers = [Buffer.allocUnsafeSlow(size), Buffer.allocUnsafeSlow(size)];
    let inFlight: Promise<void> = Promise.resolve();
    for (let turn = 0; ; turn ^= 1) {
      // Each turn moves what a download begun now would: the same share for all, whenever each began.
      const share = Math.min(size, downloadChunkSize(copying));
      const buffer = (buffers[turn] as Buffer).subarray(0, share);
      const filled = await fill(buffer);
      if (filled === 0) break;
      await inFlight; // the other buffer's write: once done, that buffer is free for the next fill
      inFlight = written(destination, buffer.subarray(0, filled));
      inFlight.catch(() => {}); // awaited on the next turn; a client gone meanwhile is not an unhandled rejection
    }
    await inFlight;
  } finally {
    copying--;
  }
}
