/**
 * The directory store writes uploads with direct I/O: whole blocks from page-aligned buffers straight to the
 * disk, the last part-block of each flush through the page cache and again, whole, with the next buffer.
 * Checked on the store itself: every byte kept whatever the chunks, the pauses (a partly filled buffer is
 * written when the stream pauses) and the requests a resumable upload is sent in, holes included; and, on a
 * filesystem with direct I/O, the upload's bytes not left in the page cache (`fincore`).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants, mkdtemp, open, rm, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { createDirectoryStore } from '../src/blobs/directory.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** A small deterministic generator, so that a failure can be replayed from its seed. */
function random(seed: number) {
  let state = seed >>> 0 || 1;
  return (below: number) => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) % below;
  };
}

/** `size` bytes alternating runs of data and of zeros, of random lengths (some under a block, some over). */
function image(size: number, next: (below: number) => number): Buffer {
  const bytes = Buffer.alloc(size);
  for (let at = 0, data = true; at < size; data = !data) {
    const length = Math.min(size - at, 1 + next(next(2) ? 3 * 4096 : 700_000));
    if (data) for (let i = at; i < at + length; i++) bytes[i] = 1 + next(255);
    at += length;
  }
  return bytes;
}

/** `data` in chunks of random sizes, now and then pausing long enough for the store to write what it holds. */
function delivered(data: Buffer, next: (below: number) => number): Readable {
  return Readable.from(
    (async function* () {
      for (let at = 0; at < data.length; ) {
        const length = 1 + next(next(4) ? 70_000 : 3 * MiB);
        yield data.subarray(at, at + length);
        at += length;
        if (next(5) === 0) await sleep(150);
      }
    })(),
  );
}

describe('direct I/O in the directory store', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'repoman-direct-'));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('keeps every byte whatever the chunks, pauses and requests, holes included', async () => {
    const store = createDirectoryStore(join(dir, 'store'));
    for (const seed of [1, 2, 3, 4]) {
      const next = random(seed);
      const bytes = image(5 * MiB + next(9000), next);
      const upload = await store.createUpload();
      // Sent in three requests, cut at unaligned offsets, each resumed through a handle of its own.
      const cuts = [0, 1 + next(2 * MiB), 2 * MiB + next(2 * MiB), bytes.length];
      for (let i = 0; i + 1 < cuts.length; i++) {
        const handle = i === 0 ? upload : await store.resumeUpload(upload.key);
        const part = bytes.subarray(cuts[i], cuts[i + 1]);
        assert.equal(await handle?.write(delivered(part, next)), part.length, `seed ${seed}, request ${i}`);
        assert.equal(await upload.size(), cuts[i + 1], `seed ${seed}: the size after request ${i}`);
      }
      assert.deepEqual(
        await upload.readAt(cuts[1] as number, 10),
        bytes.subarray(cuts[1], (cuts[1] as number) + 10),
      );
      await upload.commit();
      const chunks: Buffer[] = [];
      for await (const chunk of await store.read(upload.key)) chunks.push(chunk as Buffer);
      const read = Buffer.concat(chunks);
      assert.equal(read.length, bytes.length, `seed ${seed}`);
      assert.equal(sha256(read), sha256(bytes), `seed ${seed}: the bytes read back`);
    }
  });

  it('leaves an upload’s bytes out of the page cache, where the filesystem has direct I/O', async (t) => {
    const probe = await open(
      join(dir, 'probe'),
      constants.O_WRONLY | constants.O_CREAT | constants.O_DIRECT,
    ).then(
      (handle) => handle.close().then(() => true),
      () => false,
    );
    const TMPFS = 0x01021994; // its files live in the page cache: nothing to bypass
    if (!probe || (await statfs(dir)).type === TMPFS) return t.skip('no direct I/O on this filesystem');
    const fincore = await run('fincore', ['--version']).then(
      () => true,
      () => false,
    );
    if (!fincore) return t.skip('fincore (util-linux) is not installed');

    const store = createDirectoryStore(join(dir, 'cache'));
    const bytes = image(16 * MiB + 1234, random(7));
    const upload = await store.createUpload();
    await upload.write(delivered(bytes, random(8)));
    await upload.commit();
    const path = store.localPath?.(upload.key) as string;
    const { stdout } = await run('fincore', ['--bytes', '--noheadings', '--output', 'RES', path]);
    // Only part-blocks went through the cache: one per pause of the stream, and the last.
    assert.ok(Number(stdout.trim()) < MiB, `${stdout.trim()} bytes of a ${bytes.length}-byte upload cached`);
  });
});
