import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { downloadChunkSize } from '../src/blobs/common.ts';
import { createDirectoryStore } from '../src/blobs/directory.ts';
import { blobStoreConformance } from './blob-store-suite.ts';

blobStoreConformance('directory', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'repoman-blobs-'));
  return {
    store: createDirectoryStore(dir),
    sibling: async () => createDirectoryStore(dir),
    dispose: () => rm(dir, { recursive: true, force: true }),
  };
});

describe('directory store: many downloads at once', () => {
  it('gives every download smaller buffers past 32 at once, down to 16 KiB', () => {
    assert.equal(downloadChunkSize(1), 256 * 1024);
    assert.equal(downloadChunkSize(32), 256 * 1024);
    assert.equal(downloadChunkSize(100), 80 * 1024);
    assert.equal(downloadChunkSize(250), 32 * 1024);
    assert.equal(downloadChunkSize(10_000), 16 * 1024);
  });

  it('writes the right bytes to 300 destinations at once (pipeTo), each in the same chunks once all run', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'repoman-blobs-'));
    try {
      const store = createDirectoryStore(dir);
      const data = randomBytes(1024 * 1024 + 3);
      const upload = await store.createUpload();
      await upload.write(Readable.from([data]));
      await upload.commit();
      const COPIES = 300;
      // Every destination holds its first chunk until all have one: then all 300 are copying at once.
      let started = 0;
      let allStarted: () => void = () => {};
      const gate = new Promise<void>((resolve) => (allStarted = resolve));
      const copies = Array.from({ length: COPIES }, async () => {
        const readable = await store.read(upload.key);
        assert.ok(readable.pipeTo, 'a directory store writes its blobs out itself');
        const hash = createHash('sha256');
        const sizes: number[] = [];
        const destination = new Writable({
          write(chunk: Buffer, _encoding, done) {
            sizes.push(chunk.length);
            hash.update(chunk);
            if (sizes.length > 1) return setImmediate(done);
            if (++started === COPIES) allStarted();
            gate.then(() => done());
          },
        });
        await readable.pipeTo(destination);
        return { sha256: hash.digest('hex'), sizes };
      });
      const results = await Promise.all(copies);
      const expected = createHash('sha256').update(data).digest('hex');
      assert.ok(
        results.every((r) => r.sha256 === expected),
        'every copy has the right bytes',
      );
      assert.ok(
        results.some((r) => r.sizes[0] === 256 * 1024),
        'the first downloads began on 256 KiB',
      );
      // Its third chunk was filled once its first was written, when all 300 were copying.
      assert.deepEqual(new Set(results.map((r) => r.sizes[2])), new Set([16 * 1024]), 'then all on 16 KiB');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
