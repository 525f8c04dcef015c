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
  it('gives each new download smaller buffers past 32 at once, down to 16 KiB', () => {
    assert.equal(downloadChunkSize(0), 256 * 1024);
    assert.equal(downloadChunkSize(31), 256 * 1024);
    assert.equal(downloadChunkSize(99), 80 * 1024);
    assert.equal(downloadChunkSize(249), 32 * 1024);
    assert.equal(downloadChunkSize(10_000), 16 * 1024);
  });

  it('writes the right bytes to 300 destinations at once (pipeTo), whatever buffers each got', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'repoman-blobs-'));
    try {
      const store = createDirectoryStore(dir);
      const data = randomBytes(1024 * 1024 + 3);
      const upload = await store.createUpload();
      await upload.write(Readable.from([data]));
      await upload.commit();
      const copies = Array.from({ length: 300 }, async () => {
        const readable = await store.read(upload.key);
        assert.ok(readable.pipeTo, 'a directory store writes its blobs out itself');
        const hash = createHash('sha256');
        let largest = 0;
        const destination = new Writable({
          write(chunk: Buffer, _encoding, done) {
            largest = Math.max(largest, chunk.length);
            hash.update(chunk);
            setImmediate(done); // a client that takes its time, so that the downloads overlap
          },
        });
        await readable.pipeTo(destination);
        return { sha256: hash.digest('hex'), largest };
      });
      const results = await Promise.all(copies);
      const expected = createHash('sha256').update(data).digest('hex');
      assert.ok(
        results.every((r) => r.sha256 === expected),
        'every copy has the right bytes',
      );
      assert.equal(
        Math.max(...results.map((r) => r.largest)),
        256 * 1024,
        'the first downloads read 256 KiB',
      );
      assert.equal(Math.min(...results.map((r) => r.largest)), 16 * 1024, 'the last ones 16 KiB');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
