/**
 * The narrowest windows of a resumable upload: its bytes committed to the store, the server dead before the
 * version is recorded; or the version recorded, the server dead before the upload says so. The state is made
 * as the server leaves it (the store's own calls, the database rows as they were last written); the client's
 * retried last request then publishes the upload whole, once, and never loses the bytes of a version.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { clientFor } from './helpers/http.ts';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import { startServerFor, type TestServer } from './helpers/server.ts';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const TUS = { 'tus-resumable': '1.0.0' };

describe('a resumable upload committed but not recorded when the server died', () => {
  let pki: TestPki;
  let server: TestServer;
  const bob = () => clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('bob'));

  before(async () => {
    pki = await makeTestPki();
    server = await startServerFor(pki, 'sqlite');
    const admin = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('admin'));
    await admin.post('/api/users', { user_name: 'bob', client_dn: pki.dn('bob') });
    await bob().post('/api/images', { name: 'vm.img' });
  });
  after(async () => server?.stop());

  it('is published whole by the client’s retried last request', async () => {
    const body = randomBytes(3 * 1024 * 1024 + 17);
    // The next version of the image, whichever test uploaded to it before.
    const next = ((await bob().get('/api/images/bob/vm.img')).json.version ?? 0) + 1;
    const created = await bob().request('POST', '/api/uploads', {
      headers: { ...TUS, 'upload-length': String(body.length), 'upload-metadata': 'image dm0uaW1n' },
    });
    assert.equal(created.status, 201, created.text);
    const location = created.headers.location as string;
    const id = location.split('/').pop() as string;

    // What the server had done when it died: every byte stored and committed, the offset recorded, no version.
    const database = new DatabaseSync(join(server.dir, 'data', 'repoman.db'));
    const row = database.prepare('select blob_key from uploads where id = ?').get(id) as { blob_key: string };
    const upload = await server.store.resumeUpload(row.blob_key);
    assert.ok(upload);
    await upload.write(Readable.from([body]));
    await upload.commit();
    database.prepare('update uploads set upload_offset = ? where id = ?').run(body.length, id);
    database.close();

    const head = await bob().request('HEAD', location, { headers: TUS });
    assert.equal(head.headers['upload-offset'], String(body.length));
    const last = await bob().request('PATCH', location, {
      body: Buffer.alloc(0),
      headers: {
        ...TUS,
        'content-type': 'application/offset+octet-stream',
        'upload-offset': String(body.length),
      },
    });
    assert.equal(last.status, 204, last.text);
    assert.equal(last.headers['repoman-version'], String(next));
    const image = (await bob().get('/api/images/bob/vm.img')).json;
    assert.equal(image.digests.sha256, sha256(body));
    assert.equal(sha256((await bob().get('/api/images/raw/bob/vm.img')).body), sha256(body));
  });

  it('is the version already published when the server died before the upload recorded it', async () => {
    const body = randomBytes(1024 * 1024 + 5);
    const created = await bob().request('POST', '/api/uploads', {
      headers: { ...TUS, 'upload-length': String(body.length), 'upload-metadata': 'image dm0uaW1n' },
    });
    assert.equal(created.status, 201, created.text);
    const location = created.headers.location as string;
    const id = location.split('/').pop() as string;
    const patch = (offset: number, chunk: Buffer) =>
      bob().request('PATCH', location, {
        body: chunk,
        headers: {
          ...TUS,
          'content-type': 'application/offset+octet-stream',
          'upload-offset': String(offset),
        },
      });
    const published = await patch(0, body);
    assert.equal(published.status, 204, published.text);
    const version = published.headers['repoman-version'];

    // As a server that died right after publishing leaves it: the version is there, the upload names none.
    const database = new DatabaseSync(join(server.dir, 'data', 'repoman.db'));
    database.prepare('update uploads set version = null where id = ?').run(id);
    database.close();

    const head = await bob().request('HEAD', location, { headers: TUS });
    assert.equal(head.headers['upload-offset'], String(body.length));
    const last = await patch(body.length, Buffer.alloc(0));
    assert.equal(last.status, 204, last.text);
    assert.equal(last.headers['repoman-version'], version, 'the same version, not a second one');
    const versions = (await bob().get('/api/images/bob/vm.img/versions')).json;
    assert.equal(versions.items.filter((v: { version: number }) => String(v.version) === version).length, 1);
    assert.equal(
      sha256((await bob().get('/api/images/raw/bob/vm.img')).body),
      sha256(body),
      'its bytes kept',
    );
    // An upload that expires still naming no version (the server died again) does not take the version's bytes.
    const again = new DatabaseSync(join(server.dir, 'data', 'repoman.db'));
    again
      .prepare("update uploads set version = null, expires = '2000-01-01T00:00:00.000Z' where id = ?")
      .run(id);
    again.close();
    await server.sweep();
    assert.equal((await bob().request('HEAD', location, { headers: TUS })).status, 404, 'the upload expired');
    assert.equal(
      sha256((await bob().get('/api/images/raw/bob/vm.img')).body),
      sha256(body),
      'its bytes kept',
    );
  });
});
