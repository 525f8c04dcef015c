/**
 * `blob_store = "discard"`, the benchmark's store: uploads are received, hashed and inspected as ever, and
 * their bytes dropped; the version is recorded, and a download says the bytes are not kept.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { clientFor, expectError } from './helpers/http.ts';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import { startServerFor, type TestServer } from './helpers/server.ts';

describe('the discarding blob store', () => {
  let pki: TestPki;
  let server: TestServer;

  before(async () => {
    pki = await makeTestPki();
    server = await startServerFor(pki, 'sqlite', { REPOMAN_BLOB_STORE: 'discard' });
  });
  after(async () => server?.stop());

  it('takes an upload, records its digest and format, keeps no byte, and says so on download', async () => {
    const admin = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('admin'));
    await admin.post('/api/images', { name: 'gone.img' });
    const body = randomBytes(3 * 1024 * 1024);
    const put = await admin.request('PUT', '/api/images/raw/gone.img', { body });
    assert.equal(put.status, 201, put.text);
    const image = await admin.get('/api/images/admin/gone.img');
    assert.equal(image.json.digests.sha256, createHash('sha256').update(body).digest('hex'));
    assert.equal(image.json.size, body.length);
    assert.equal(image.json.disk_format, 'raw');
    // No blob directory is even made: only the directory store has one.
    const blobs = await readdir(join(server.dir, 'data', 'blobs'), { recursive: true }).catch(
      (error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? [] : Promise.reject(error)),
    );
    assert.deepEqual(blobs, [], 'nothing written to the blob directory');
    expectError(await admin.get('/api/images/raw/admin/gone.img'), 404, 'version_not_found');
  });
});
