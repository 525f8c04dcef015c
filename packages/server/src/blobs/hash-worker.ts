/** Hashes upload bytes off the main thread (MD5 and SHA-512 are slow enough to cap an upload's rate there). */
import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';

type Message =
  | { id: number; type: 'start'; algorithms: string[] }
  | { id: number; type: 'data'; chunk: Uint8Array }
  | { id: number; type: 'end' }
  | { id: number; type: 'drop' };

/** The uploads this worker hashes at once, by id. */
const uploads = new Map<number, [string, Hash][]>();

parentPort?.on('message', (message: Message) => {
  const { id } = message;
  if (message.type === 'start')
    uploads.set(
      id,
      message.algorithms.map((a) => [a, createHash(a)]),
    );
  else if (message.type === 'data') {
    for (const [, hash] of uploads.get(id) ?? []) hash.update(message.chunk);
    // The buffer goes back for the next batch: no garbage piles up here between collections.
    const buffer = message.chunk.buffer as ArrayBuffer;
    parentPort?.postMessage({ id, type: 'ack', bytes: message.chunk.byteLength, buffer }, [buffer]);
  } else if (message.type === 'end') {
    const hashes = uploads.get(id) ?? [];
    uploads.delete(id);
    parentPort?.postMessage({
      id,
      type: 'digests',
      digests: Object.fromEntries(hashes.map(([a, h]) => [a, h.digest('hex')])),
    });
  } else uploads.delete(id);
});
