/**
 * Quotas and size limits that hold (docs/security.md): resumable uploads reserve their declared length at
 * creation and a user has few unfinished ones; two creations at once, on two servers sharing the database,
 * cannot both take the last room; a chunked PUT stops at the owner's room; text fields, pages and namespaces
 * are bounded; new users get a default quota that decompression and conversions cannot pass. Each attack is
 * the one found against the server, at a small scale: a 5 MiB quota and a few uploads. Run once per engine.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import https from 'node:https';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { zstdCompressSync } from 'node:zlib';
import { clientFor, expectError } from './helpers/http.ts';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import { type Engine, startServerFor, type TestServer } from './helpers/server.ts';

const run = promisify(execFile);
const MIB = 1024 * 1024;
const QUOTA = 5 * MIB;
const MAX_IMAGE = 64 * MIB;
const MAX_PENDING = 3;
const MAX_IMAGES = 4;
const TUS = { 'tus-resumable': '1.0.0' };
const b64 = (text: string) => Buffer.from(text).toString('base64');
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

export function limitsSuite(engine: Engine) {
  describe(`limits and quotas on ${engine}`, () => {
    let pki: TestPki;
    let server: TestServer;
    /** A second server on the same database and blobs (as several servers behind a balancer). */
    let second: TestServer;
    let as: (name: string, on?: TestServer) => ReturnType<typeof clientFor>;

    const env = {
      REPOMAN_UPLOADS_MAX_IMAGE_SIZE: String(MAX_IMAGE),
      REPOMAN_UPLOADS_MAX_PENDING_PER_USER: String(MAX_PENDING),
      REPOMAN_USERS_DEFAULT_QUOTA: String(QUOTA),
      REPOMAN_USERS_MAX_IMAGES: String(MAX_IMAGES),
    };

    /** A new user (with the default quota) and their images. */
    async function user(name: string, images: string[] = []) {
      const created = await as('admin').post('/api/users', { user_name: name, client_dn: pki.dn(name) });
      assert.equal(created.status, 201, created.text);
      for (const image of images) {
        const res = await as(name).post('/api/images', { name: image });
        assert.equal(res.status, 201, res.text);
      }
    }

    const createUpload = (who: string, image: string, length: number, on?: TestServer) =>
      as(who, on).request('POST', '/api/uploads', {
        headers: { ...TUS, 'upload-length': String(length), 'upload-metadata': `image ${b64(image)}` },
      });

    const patch = (who: string, path: string, offset: number, body: Buffer) =>
      as(who).request('PATCH', path, {
        body,
        headers: {
          ...TUS,
          'content-type': 'application/offset+octet-stream',
          'upload-offset': String(offset),
        },
      });

    /** Upload files in the store (the unfinished resumable uploads of other tests are there too). */
    const uploadFiles = async () => new Set((await server.store.listUploads()).map((u) => u.key));
    const usage = async (who: string) => (await as(who).get(`/api/users/${who}`)).json.usage as number;

    before(async () => {
      pki = await makeTestPki();
      server = await startServerFor(pki, engine, env);
      second = await startServerFor(pki, engine, env, false, server);
      as = (name, on = server) => clientFor(on.httpsUrl, pki.ca.certPem, pki.credential(name));
    });
    after(async () => {
      await second?.stop();
      await server?.stop();
    });

    it('reserves each resumable upload’s declared length at creation, so uploads filled later cannot pass the quota', async () => {
      await user('tess', ['a.img', 'b.img']);
      const first = await createUpload('tess', 'a.img', 2 * MIB);
      const secondUpload = await createUpload('tess', 'b.img', 2 * MIB);
      assert.equal(first.status, 201, first.text);
      assert.equal(secondUpload.status, 201, secondUpload.text);
      // 4 MiB are reserved of 5: a third upload of 2 MiB, and a PUT of 2 MiB, do not fit.
      expectError(await createUpload('tess', 'a.img', 2 * MIB), 507, 'quota_exceeded');
      const put = await as('tess').request('PUT', '/api/images/raw/a.img', { body: randomBytes(2 * MIB) });
      expectError(put, 507, 'quota_exceeded');
      // The two created first are filled and published: what they reserved becomes what is stored.
      for (const created of [first, secondUpload]) {
        const done = await patch('tess', created.headers.location as string, 0, randomBytes(2 * MIB));
        assert.equal(done.status, 204, done.text);
        assert.ok(done.headers['repoman-version'], 'the upload became a version');
      }
      assert.equal(await usage('tess'), 4 * MIB);
      expectError(await createUpload('tess', 'b.img', 2 * MIB), 507, 'quota_exceeded');
      // A terminated upload gives its reservation back.
      const small = await createUpload('tess', 'b.img', MIB);
      assert.equal(small.status, 201, small.text);
      expectError(await createUpload('tess', 'b.img', MIB), 507, 'quota_exceeded');
      const gone = await as('tess').request('DELETE', small.headers.location as string, { headers: TUS });
      assert.equal(gone.status, 204);
      assert.equal((await createUpload('tess', 'b.img', MIB)).status, 201);
    });

    it('caps the unfinished uploads a user may have at once', async () => {
      await user('uma', ['u.img']);
      const made = [];
      for (let i = 0; i < MAX_PENDING; i++) {
        const res = await createUpload('uma', 'u.img', 10);
        assert.equal(res.status, 201, res.text);
        made.push(res.headers.location as string);
      }
      const refused = await createUpload('uma', 'u.img', 10);
      expectError(refused, 409, 'too_many_uploads');
      assert.equal(refused.json.error.details.limit, MAX_PENDING);
      // A finished upload no longer counts.
      const finished = await patch('uma', made[0] as string, 0, Buffer.alloc(10, 1));
      assert.equal(finished.status, 204, finished.text);
      assert.equal((await createUpload('uma', 'u.img', 10)).status, 201);
      expectError(await createUpload('uma', 'u.img', 10), 409, 'too_many_uploads');
    });

    it('lets only as many creations as fit pass when they arrive at once on two servers', async () => {
      await user('cora', ['c.img']);
      // Eight creations of 2 MiB against a 5 MiB quota, half on each server: two fit, whatever the order.
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) => createUpload('cora', 'c.img', 2 * MIB, i % 2 ? second : server)),
      );
      const statuses = results.map((r) => r.status).sort();
      assert.deepEqual(
        statuses,
        [201, 201, 507, 507, 507, 507, 507, 507],
        results.map((r) => r.text).join('\n'),
      );
      for (const r of results.filter((r) => r.status === 507)) expectError(r, 507, 'quota_exceeded');
    });

    it('stops a chunked PUT at the owner’s remaining quota and keeps the previous version', async () => {
      await user('chad', ['big.img']);
      const old = randomBytes(MIB);
      const filesBefore = await uploadFiles();
      assert.equal((await as('chad').request('PUT', '/api/images/raw/big.img', { body: old })).status, 201);
      // A body with no Content-Length that would go on past the size limit (64 MiB), 64 KiB at a time.
      let sent = 0;
      const chunk = randomBytes(64 * 1024);
      const body = new Readable({
        read() {
          if (sent >= 2 * MAX_IMAGE) return this.push(null);
          sent += chunk.length;
          this.push(chunk);
        },
      });
      const credential = pki.credential('chad');
      const answer = await new Promise<{ status: number; json: unknown }>((resolve, reject) => {
        const req = https.request(`${server.httpsUrl}/api/images/raw/big.img`, {
          method: 'PUT',
          headers: { 'transfer-encoding': 'chunked' },
          ca: pki.ca.certPem,
          cert: credential.cert,
          key: credential.key,
          agent: false,
        });
        req.on('response', (res) => {
          const parts: Buffer[] = [];
          res.on('data', (c: Buffer) => parts.push(c));
          res.on('end', () => {
            body.destroy();
            req.destroy();
            resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(parts).toString()) });
          });
        });
        req.on('error', reject);
        body.pipe(req);
      });
      expectError(answer as { status: number; json: { error?: { code?: string } } }, 507, 'quota_exceeded');
      // The server stopped reading at the quota, long before the size limit.
      assert.ok(sent < MAX_IMAGE, `the client sent ${sent} bytes before the answer`);
      const image = (await as('chad').get('/api/images/chad/big.img')).json;
      assert.equal(image.version, 1);
      assert.equal(image.digests.sha256, sha256(old));
      assert.equal(sha256((await as('chad').get('/api/images/raw/chad/big.img')).body), sha256(old));
      assert.equal(await usage('chad'), MIB);
      assert.deepEqual(await uploadFiles(), filesBefore, 'nothing of the refused body is kept');
    });

    it('refuses text fields longer than their limits, and pages longer than 1000', async () => {
      await user('tina');
      const long = (n: number) => 'x'.repeat(n);
      const ok = await as('tina').post('/api/images', { name: 'd.img', description: long(4096) });
      assert.equal(ok.status, 201, ok.text);
      const refusals: [string, string, unknown, boolean?][] = [
        ['POST', '/api/images', { name: 'e.img', description: long(4097) }],
        ['POST', '/api/images', { name: 'e.img', description: long(4097) }, true],
        ['POST', '/api/images', { name: 'e.img', os_type: long(256) }],
        ['POST', '/api/images', { name: 'e.img', hypervisor: long(256) }],
        ['POST', '/api/images', { name: 'e.img', expires: long(65) }],
        ['PATCH', '/api/images/d.img', { description: long(4097) }],
        ['PATCH', '/api/images/d.img', { os_variant: long(256) }],
        ['PATCH', '/api/users/tina', { full_name: long(256) }],
        ['PATCH', '/api/users/tina', { email: `${long(250)}@x.org` }],
      ];
      for (const [method, path, body, form] of refusals) {
        const res = await as('tina').request(method, path, { body, ...(form ? { form } : {}) });
        expectError(res, 400, 'invalid_field');
      }
      const admin = as('admin');
      expectError(
        await admin.post('/api/users', { user_name: 'dn', client_dn: `/CN=${long(1024)}` }),
        400,
        'invalid_field',
      );
      expectError(await admin.post('/api/groups', { name: 'g', users: [long(4097)] }), 400, 'invalid_field');
      expectError(await as('tina').get('/api/images?limit=1001'), 400, 'invalid_field');
      expectError(await as('tina').get(`/api/images?name_prefix=${long(256)}`), 400, 'invalid_field');
      assert.equal((await as('tina').get('/api/images?limit=1000')).status, 200);
      const image = (await as('tina').get('/api/images/tina/d.img')).json;
      assert.equal(image.description.length, 4096);
    });

    it('caps the images in one namespace', async () => {
      await user('ivan');
      for (let i = 0; i < MAX_IMAGES; i++)
        assert.equal((await as('ivan').post('/api/images', { name: `i${i}.img` })).status, 201);
      const refused = await as('ivan').post('/api/images', { name: 'more.img' });
      expectError(refused, 409, 'too_many_images');
      // An admin creating one in the namespace meets the same limit.
      expectError(
        await as('admin').post('/api/images', { name: 'more.img', owner: 'ivan' }),
        409,
        'too_many_images',
      );
      assert.equal((await as('ivan').delete('/api/images/i0.img')).status, 204);
      assert.equal((await as('ivan').post('/api/images', { name: 'more.img' })).status, 201);
    });

    it('gives new users the default quota, which a decompressed upload cannot pass', async () => {
      await user('zoe', ['bomb.img']);
      assert.equal((await as('zoe').get('/api/users/zoe')).json.quota, QUOTA);
      // 16 MiB of zeros in a few hundred bytes of zstd.
      const bomb = zstdCompressSync(Buffer.alloc(16 * MIB));
      const filesBefore = await uploadFiles();
      assert.ok(bomb.length < 4096);
      const res = await as('zoe').request('PUT', '/api/images/raw/bomb.img?decompress=true', { body: bomb });
      expectError(res, 507, 'quota_exceeded');
      const image = (await as('zoe').get('/api/images/zoe/bomb.img')).json;
      assert.equal(image.version, 0);
      assert.equal(await usage('zoe'), 0);
      assert.deepEqual(await uploadFiles(), filesBefore, 'nothing of the unpacked bytes is kept');
    });

    it('bounds conversions by the owner’s quota: refused up front, or stopped with nothing kept', async () => {
      await user('vera', ['sparse.img', 'full.img']);
      const dir = join(server.dir, 'limits-client');
      await run('mkdir', ['-p', dir]);
      // A qcow2 of a few hundred KiB that says its disk has 64 MiB: as raw, 64 MiB of zeros.
      await run('qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, 'sparse.qcow2'), '64M']);
      const sparse = await readFile(join(dir, 'sparse.qcow2'));
      assert.equal(
        (await as('vera').request('PUT', '/api/images/raw/sparse.img', { body: sparse })).status,
        201,
      );
      const raw = await as('vera').post('/api/images/sparse.img/conversions', { format: 'raw' });
      expectError(raw, 507, 'quota_exceeded');
      // 3 MiB of random data as qcow2: converted to vmdk it needs about 3 MiB more, which the quota lacks.
      await writeFile(join(dir, 'full.raw'), randomBytes(3 * MIB));
      await run('qemu-img', [
        'convert',
        '-q',
        '-f',
        'raw',
        '-O',
        'qcow2',
        join(dir, 'full.raw'),
        join(dir, 'full.qcow2'),
      ]);
      const full = await readFile(join(dir, 'full.qcow2'));
      assert.equal((await as('vera').request('PUT', '/api/images/raw/full.img', { body: full })).status, 201);
      const before = await usage('vera');
      const started = await as('vera').post('/api/images/full.img/conversions', { format: 'vmdk' });
      assert.equal(started.status, 202, started.text);
      let job = started.json.job;
      while (['queued', 'running'].includes(job.state)) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        job = (await as('vera').get(`/api/jobs/${job.id}`)).json;
      }
      assert.equal(job.state, 'failed', JSON.stringify(job));
      assert.equal(job.error.code, 'quota_exceeded', JSON.stringify(job));
      assert.equal(job.variant, null);
      assert.equal(await usage('vera'), before);
      const versions = (await as('vera').get('/api/images/full.img/versions')).json.items;
      assert.deepEqual(versions[0].variants ?? [], []);
    });
  });
}
