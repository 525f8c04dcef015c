/**
 * The blob store conformance suite: what every store behind the BlobStore interface must do, run against each
 * (blob-store-directory.test.ts, blob-store-s3.test.ts). A new store is done when it passes it.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { BlobNotFoundError, type BlobStore, type BlobUpload } from '../src/blobs/store.ts';

const MiB = 1024 * 1024;

export interface StoreUnderTest {
  store: BlobStore;
  /** A second handle on the same storage, as another server sharing it would have. */
  sibling(): Promise<BlobStore>;
  dispose(): Promise<void>;
}

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

async function bytesOf(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A stream of `data` in chunks of varied sizes, as the network delivers them. */
function chunked(data: Buffer, sizes = [65536, 1, 300_000, 17, 1_048_576]): Readable {
  return Readable.from(
    (function* () {
      for (let at = 0, i = 0; at < data.length; i++) {
        const size = sizes[i % sizes.length] as number;
        yield data.subarray(at, at + size);
        at += size;
      }
    })(),
    { objectMode: false },
  );
}

/** A stream that delivers `data` and then fails, as a request whose client went away. */
function cutAfter(data: Buffer): Readable {
  return Readable.from(
    (async function* () {
      yield* chunked(data);
      await new Promise((resolve) => setTimeout(resolve, 10));
      throw new Error('connection reset');
    })(),
    { objectMode: false },
  );
}

async function keysOf(store: BlobStore): Promise<string[]> {
  const keys: string[] = [];
  for await (const key of store.list()) keys.push(key);
  return keys;
}

export function blobStoreConformance(name: string, open: () => Promise<StoreUnderTest>) {
  describe(`blob store conformance: ${name}`, () => {
    let subject: StoreUnderTest;
    let store: BlobStore;
    before(async () => {
      subject = await open();
      store = subject.store;
    });
    after(async () => subject?.dispose());

    async function put(data: Buffer): Promise<string> {
      const upload = await store.createUpload();
      assert.equal(await upload.write(chunked(data)), data.length);
      await upload.commit();
      return upload.key;
    }

    it('stores a blob that spans several parts and reads it back whole', async () => {
      const data = randomBytes(12 * MiB + 12345);
      const key = await put(data);
      assert.equal(sha(await bytesOf(await store.read(key))), sha(data));
      const info = await store.stat(key);
      assert.equal(info?.size, data.length);
      assert.ok(info && Math.abs(info.modified.getTime() - Date.now()) < 120_000, 'modified is recent');
      assert.ok((await keysOf(store)).includes(key), 'list() names it');
      assert.ok(!(await store.listUploads()).some((u) => u.key === key), 'no upload is left behind');
    });

    it('reads ranges: the first and last bytes, across a part boundary, a single byte', async () => {
      const data = randomBytes(11 * MiB + 7);
      const key = await put(data);
      for (const [start, end] of [
        [0, 0],
        [0, 511],
        [5 * MiB - 100, 5 * MiB + 100],
        [data.length - 1, data.length - 1],
        [3 * MiB, data.length - 1],
      ] as const) {
        const got = await bytesOf(await store.read(key, { start, end }));
        assert.ok(got.equals(data.subarray(start, end + 1)), `bytes ${start}-${end}`);
      }
    });

    it('stores an empty blob', async () => {
      const upload = await store.createUpload();
      assert.equal(await upload.write(Readable.from([])), 0);
      await upload.commit();
      assert.equal((await store.stat(upload.key))?.size, 0);
      assert.equal((await bytesOf(await store.read(upload.key))).length, 0);
    });

    it('appends in several writes of any size, resumed through another handle, as resumable uploads do', async () => {
      const data = randomBytes(17 * MiB + 3);
      const cuts = [0, 3 * MiB, 3 * MiB + 1, 9 * MiB, 16 * MiB - 5, data.length];
      const first = await store.createUpload();
      for (let i = 0; i + 1 < cuts.length; i++) {
        // Each request may reach another server: a fresh handle on the same storage, the upload reopened.
        const handle = i % 2 === 0 ? store : await subject.sibling();
        const upload = (await handle.resumeUpload(first.key)) as BlobUpload;
        assert.ok(upload, 'the upload can be reopened');
        assert.equal(await upload.size(), cuts[i]);
        await upload.write(chunked(data.subarray(cuts[i], cuts[i + 1])));
        assert.equal(await upload.size(), cuts[i + 1]);
      }
      const last = (await (await subject.sibling()).resumeUpload(first.key)) as BlobUpload;
      assert.equal(sha(await bytesOf(await last.readBack())), sha(data), 'readBack() gives the whole upload');
      assert.ok((await last.readAt(0, 4096)).equals(data.subarray(0, 4096)), 'readAt() at the start');
      assert.ok(
        (await last.readAt(data.length - 10, 100)).equals(data.subarray(data.length - 10)),
        'readAt() at the end',
      );
      await last.commit();
      assert.equal(sha(await bytesOf(await store.read(first.key))), sha(data));
    });

    it('cuts an upload back to where an earlier write ended, and goes on from there', async () => {
      const a = randomBytes(3 * MiB + 1);
      const b = randomBytes(9 * MiB);
      const c = randomBytes(2 * MiB);
      const upload = await store.createUpload();
      await upload.write(chunked(a));
      await upload.write(chunked(b)); // refused by its checksum, say
      await upload.truncate(a.length);
      assert.equal(await upload.size(), a.length);
      const again = (await (await subject.sibling()).resumeUpload(upload.key)) as BlobUpload;
      assert.equal(await again.size(), a.length, 'the cut is seen by another server');
      await again.write(chunked(c));
      await again.commit();
      assert.equal(sha(await bytesOf(await store.read(upload.key))), sha(Buffer.concat([a, c])));
    });

    it('keeps what a cut stream delivered, and the upload goes on whole from there', async () => {
      const data = randomBytes(14 * MiB);
      const upload = await store.createUpload();
      const sent = data.subarray(0, 7 * MiB + 5);
      await assert.rejects(upload.write(cutAfter(sent)), /connection reset/);
      const kept = await upload.size();
      assert.ok(kept <= sent.length, `no more than was sent is kept (${kept})`);
      const resumed = (await (await subject.sibling()).resumeUpload(upload.key)) as BlobUpload;
      assert.equal(await resumed.size(), kept);
      await resumed.write(chunked(data.subarray(kept)));
      await resumed.commit();
      assert.equal(sha(await bytesOf(await store.read(upload.key))), sha(data), 'no byte lost or doubled');
    });

    it('aborts: nothing of the upload is left, and aborting twice is harmless', async () => {
      const upload = await store.createUpload();
      await upload.write(chunked(randomBytes(6 * MiB)));
      await upload.abort();
      await upload.abort();
      assert.equal(await store.resumeUpload(upload.key), null);
      assert.equal(await store.stat(upload.key), null);
      assert.ok(!(await store.listUploads()).some((u) => u.key === upload.key));
      assert.ok(!(await keysOf(store)).includes(upload.key));
    });

    it('aborts an upload that was already read whole (inspected) but not committed', async () => {
      const upload = await store.createUpload();
      await upload.write(chunked(randomBytes(6 * MiB)));
      assert.equal((await upload.readAt(0, 16)).length, 16);
      await upload.abort();
      assert.equal(await store.stat(upload.key), null, 'the bytes never become a blob');
      assert.ok(!(await store.listUploads()).some((u) => u.key === upload.key));
    });

    it('keeps concurrent uploads apart', async () => {
      const blobs = Array.from({ length: 6 }, (_, i) => randomBytes(i * MiB + 1000 * i));
      const keys = await Promise.all(blobs.map((data) => put(data)));
      assert.equal(new Set(keys).size, keys.length, 'every upload has a key of its own');
      for (const [i, key] of keys.entries())
        assert.equal(sha(await bytesOf(await store.read(key))), sha(blobs[i] as Buffer), `blob ${i}`);
    });

    it('commits one upload from two handles at once into one whole blob', async () => {
      const data = randomBytes(8 * MiB + 99);
      const upload = await store.createUpload();
      await upload.write(chunked(data));
      const one = (await store.resumeUpload(upload.key)) as BlobUpload;
      const two = (await (await subject.sibling()).resumeUpload(upload.key)) as BlobUpload;
      const outcomes = await Promise.allSettled([one.commit(), two.commit()]);
      assert.ok(
        outcomes.some((o) => o.status === 'fulfilled'),
        'one commit at least succeeds',
      );
      assert.equal(sha(await bytesOf(await store.read(upload.key))), sha(data));
    });

    it('reopens an upload committed but never recorded (a crash between the two) whole; committing again is harmless', async () => {
      const data = randomBytes(3 * MiB + 5);
      const upload = await store.createUpload();
      await upload.write(chunked(data));
      await upload.commit();
      const again = await (await subject.sibling()).resumeUpload(upload.key);
      assert.ok(again, 'the upload reopens');
      assert.equal(await again.size(), data.length);
      assert.equal(sha(await bytesOf(await again.readBack())), sha(data));
      assert.equal(sha(await again.readAt(MiB, 10)), sha(data.subarray(MiB, MiB + 10)));
      // The client's retried last request is empty: it takes nothing, and the upload stays whole.
      assert.equal(await again.write(Readable.from([])), 0);
      assert.equal(await again.size(), data.length);
      await again.commit();
      assert.equal(sha(await bytesOf(await store.read(upload.key))), sha(data));
    });

    it('deletes: the blob is gone, reading it is a BlobNotFoundError, deleting again is harmless', async () => {
      const key = await put(randomBytes(1000));
      await store.delete(key);
      await store.delete(key);
      assert.equal(await store.stat(key), null);
      await assert.rejects(store.read(key), BlobNotFoundError);
      assert.ok(!(await keysOf(store)).includes(key));
    });

    it('answers for keys it never made: not found, not an error', async () => {
      const unknown = randomBytes(16).toString('hex');
      assert.equal(await store.stat(unknown), null);
      await assert.rejects(store.read(unknown), BlobNotFoundError);
      assert.equal(await store.resumeUpload(unknown), null);
      assert.equal(await store.resumeUpload('../../etc/passwd'), null);
      await store.delete(unknown);
    });

    it('lists uploads in progress, and removes stale ones except those it is told to keep', async () => {
      const kept = await store.createUpload();
      const dropped = await store.createUpload();
      await kept.write(chunked(randomBytes(MiB)));
      await dropped.write(chunked(randomBytes(6 * MiB)));
      const listed = (await store.listUploads()).map((u) => u.key);
      assert.ok(listed.includes(kept.key) && listed.includes(dropped.key));
      assert.equal(
        (await store.removeStaleUploads(60_000)).filter((name) => name.includes(dropped.key)).length,
        0,
        'young uploads stay',
      );
      // Object stores keep times to the second (Swift rounds them up).
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const removed = await store.removeStaleUploads(1, new Set([kept.key]));
      assert.ok(removed.some((name) => name.includes(dropped.key)));
      assert.ok(!removed.some((name) => name.includes(kept.key)));
      assert.equal(await store.resumeUpload(dropped.key), null);
      assert.equal(await (await store.resumeUpload(kept.key))?.size(), MiB);
      assert.ok(!(await store.listUploads()).some((u) => u.key === dropped.key), 'nothing of it is listed');
      await kept.abort();
    });
  });
}
