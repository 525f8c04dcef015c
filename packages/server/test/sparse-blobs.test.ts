/**
 * The directory store keeps raw images sparse: all-zero blocks of an upload become holes, so a mostly empty
 * disk image takes the disk its data needs. Checked on the store itself (unaligned chunks, a resumed upload
 * cut back inside a run of zeros) and through a real server with curl, the file's `st_blocks` against its
 * size, and the bytes read back against the bytes sent.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, open, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { createDirectoryStore, dataRuns } from '../src/blobs/directory.ts';
import { clientFor } from './helpers/http.ts';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import { startServerFor, type TestServer } from './helpers/server.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** Bytes the file takes on disk. */
const allocated = async (path: string) => (await stat(path)).blocks * 512;

/** A mostly zero image in memory: `size` bytes with a few short runs of data at unaligned offsets. */
function mostlyZero(size: number, at: number[]): Buffer {
  const image = Buffer.alloc(size);
  for (const offset of at) image.write(`data at ${offset}`, offset);
  return image;
}

/** A stream of `data` in chunks of odd sizes (as the network delivers them). */
function chunked(data: Buffer, size = 65_537): Readable {
  const chunks: Buffer[] = [];
  for (let at = 0; at < data.length; at += size) chunks.push(data.subarray(at, at + size));
  return Readable.from(chunks);
}

describe('sparse blobs in the directory store', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'repoman-sparse-'));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('finds the runs of data, on blocks aligned with the file', () => {
    const buffer = Buffer.alloc(5 * 4096);
    assert.deepEqual(dataRuns(buffer, 0), []);
    buffer[4096 + 7] = 1; // block 1
    buffer[3 * 4096] = 1; // block 3
    assert.deepEqual(dataRuns(buffer, 0), [
      [4096, 8192],
      [3 * 4096, 4 * 4096],
    ]);
    // At file offset 100, the buffer's blocks end where the file's do.
    assert.deepEqual(dataRuns(buffer, 100), [
      [4096 - 100, 8192 - 100],
      [3 * 4096 - 100, 4 * 4096 - 100],
    ]);
    assert.deepEqual(dataRuns(Buffer.from('x'), 4095), [[0, 1]]);
  });

  it('writes zeros as holes, reads them back as zeros, and keeps a resumed upload whole', async () => {
    const store = createDirectoryStore(join(dir, 'store'));
    const size = 64 * MiB + 333;
    const image = mostlyZero(size, [0, 5000, 3 * MiB + 17, 40 * MiB - 3, size - 4]);
    const upload = await store.createUpload();
    // The first part ends in zeros (a hole at the end of the file), then is cut back inside them, as a
    // resumable upload is after a cut request; the rest comes in a second write.
    const cut = 20 * MiB + 5;
    assert.equal(await upload.write(chunked(image.subarray(0, 30 * MiB))), 30 * MiB);
    assert.equal(await upload.size(), 30 * MiB, 'the size counts the zeros at the end');
    await upload.truncate(cut);
    assert.equal(await upload.write(chunked(image.subarray(cut), 1_000_003)), size - cut);
    assert.equal(await upload.size(), size);
    assert.deepEqual(await upload.readAt(40 * MiB - 3, 16), image.subarray(40 * MiB - 3, 40 * MiB + 13));
    await upload.commit();

    const path = store.localPath?.(upload.key) as string;
    assert.equal((await stat(path)).size, size);
    assert.ok((await allocated(path)) < MiB, `${await allocated(path)} bytes allocated for ${size}`);
    const chunks: Buffer[] = [];
    for await (const chunk of await store.read(upload.key)) chunks.push(chunk as Buffer);
    assert.equal(sha256(Buffer.concat(chunks)), sha256(image));
  });

  it('writes data as data', async () => {
    const store = createDirectoryStore(join(dir, 'store'));
    const image = Buffer.alloc(8 * MiB, 0xa5);
    const upload = await store.createUpload();
    await upload.write(chunked(image));
    await upload.commit();
    const path = store.localPath?.(upload.key) as string;
    assert.ok((await allocated(path)) >= image.length);
  });
});

describe('a mostly zero raw image uploaded with curl', () => {
  let pki: TestPki;
  let server: TestServer;
  let files: string;
  before(async () => {
    pki = await makeTestPki();
    server = await startServerFor(pki, 'sqlite');
    files = await mkdtemp(join(tmpdir(), 'repoman-sparse-curl-'));
    const admin = pki.credential('admin');
    await writeFile(join(files, 'admin.pem'), admin.cert);
    await writeFile(join(files, 'admin.key'), admin.key, { mode: 0o600 });
    await writeFile(join(files, 'ca.pem'), pki.ca.certPem);
  });
  after(async () => {
    await server?.stop();
    if (files) await rm(files, { recursive: true, force: true });
  });

  it('takes little disk on the server, and downloads byte for byte', async () => {
    // 256 MiB, holding a few kilobytes: a fresh disk image with a small filesystem's metadata.
    const size = 256 * MiB;
    const source = join(files, 'disk.img');
    const handle = await open(source, 'w');
    for (const offset of [0, 1024, 4 * MiB + 1, 200 * MiB, size - 4096])
      await handle.write(`data at ${offset}`, offset);
    await handle.truncate(size);
    await handle.close();
    const admin = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('admin'));
    assert.equal((await admin.post('/api/images', { name: 'disk.img' })).status, 201);
    const curl = (...args: string[]) =>
      run('curl', [
        '-sSf',
        '--cacert',
        join(files, 'ca.pem'),
        '--cert',
        join(files, 'admin.pem'),
        '--key',
        join(files, 'admin.key'),
        ...args,
      ]);
    await curl('-T', source, `${server.httpsUrl}/api/images/raw/disk.img`);

    const blobs = join(server.dir, 'data', 'blobs');
    const stored = (await readdir(blobs, { recursive: true, withFileTypes: true }))
      .filter((entry) => entry.isFile())
      .map((entry) => join(entry.parentPath, entry.name));
    assert.equal(stored.length, 1, stored.join(' '));
    const blob = stored[0] as string;
    assert.equal((await stat(blob)).size, size);
    assert.ok(
      (await allocated(blob)) < MiB,
      `${await allocated(blob)} bytes of disk for a ${size}-byte image`,
    );

    const copy = join(files, 'copy.img');
    await curl('-o', copy, `${server.httpsUrl}/api/images/raw/admin/disk.img`);
    const digest = async (path: string) => (await run('sha256sum', [path])).stdout.split(' ')[0];
    const sent = await digest(source);
    assert.equal(await digest(copy), sent);
    assert.equal((await admin.get('/api/images/disk.img')).json.digests?.sha256, sent);
  });
});
