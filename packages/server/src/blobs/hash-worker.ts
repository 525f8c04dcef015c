/**
 * Hashes upload bytes off the main thread: ADLER32, and MD5 and SHA-512 where configured (slow enough to cap an
 * upload's rate there).
 */
import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { createAdler32 } from 'hash-wasm';

type Message =
  | { id: number; type: 'start'; algorithms: string[] }
  | { id: number; type: 'data'; chunk: Uint8Array }
  | { id: number; type: 'end' }
  | { id: number; type: 'drop' };

/** One running digest of one upload. */
interface Running {
  update(chunk: Uint8Array): void;
  /** Lowercase hex. */
  digest(): string;
}

/**
 * ADLER32 by one WebAssembly instance for every upload (an instance is made asynchronously, and messages must be
 * handled in order): each upload keeps its 8 bytes of state and loads them for each batch.
 */
const adler32 = await createAdler32();

function start(algorithm: string): Running {
  if (algorithm === 'adler32') {
    let state = adler32.init().save();
    return {
      update(chunk) {
        state = adler32.load(state).update(chunk).save();
      },
      digest: () => adler32.load(state).digest('hex'),
    };
  }
  const hash = createHash(algorithm);
  return { update: (chunk) => hash.update(chunk), digest: () => hash.digest('hex') };
}

/** The uploads this worker hashes at once, by id. */
const uploads = new Map<number, [string, Running][]>();

parentPort?.on('message', (message: Message) => {
  const { id } = message;
  if (message.type === 'start')
    uploads.set(
      id,
      message.algorithms.map((a) => [a, start(a)]),
    );
  else if (message.type === 'data') {
    for (const [, running] of uploads.get(id) ?? []) running.update(message.chunk);
    // The buffer goes back for the next batch: no garbage piles up here between collections.
    const buffer = message.chunk.buffer as ArrayBuffer;
    parentPort?.postMessage({ id, type: 'ack', bytes: message.chunk.byteLength, buffer }, [buffer]);
  } else if (message.type === 'end') {
    const running = uploads.get(id) ?? [];
    uploads.delete(id);
    parentPort?.postMessage({
      id,
      type: 'digests',
      digests: Object.fromEntries(running.map(([a, r]) => [a, r.digest()])),
    });
  } else uploads.delete(id);
});
