/** Hashes upload bytes off the main thread (MD5 and SHA-512 are slow enough to cap an upload's rate there). */
import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';

type Message =
  | { type: 'start'; algorithms: string[] }
  | { type: 'data'; chunk: Uint8Array }
  | { type: 'end' };

let hashes: [string, Hash][] = [];
parentPort?.on('message', (message: Message) => {
  if (message.type === 'start') hashes = message.algorithms.map((a) => [a, createHash(a)]);
  else if (message.type === 'data') {
    for (const [, hash] of hashes) hash.update(message.chunk);
    parentPort?.postMessage({ type: 'ack', bytes: message.chunk.byteLength });
  } else {
    parentPort?.postMessage({
      type: 'digests',
      digests: Object.fromEntries(hashes.map(([a, h]) => [a, h.digest('hex')])),
    });
  }
});
