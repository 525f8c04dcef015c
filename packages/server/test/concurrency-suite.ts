/**
 * Concurrency (reliability, part 4): parallel uploads to one image give one of them whole and versions without
 * gaps; a download of a version goes on whole while newer ones are uploaded; concurrent edits lose nothing and
 * conflicting renames get a clean 409. Run once per database engine.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { clientFor, tlsSocket } from './helpers/http.ts';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import { type Engine, startServerFor, type TestServer } from './helpers/server.ts';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

export function concurrencySuite(engine: Engine) {
  describe(`concurrency on ${engine}`, () => {
    let pki: TestPki;
    let server: TestServer;
    let bob: ReturnType<typeof clientFor>;

    before(async () => {
      pki = await makeTestPki();
      server = await startServerFor(pki, engine, { REPOMAN_UPLOADS_KEEP_VERSIONS: '10' });
      const admin = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('admin'));
      await admin.post('/api/users', { user_name: 'bob', client_dn: pki.dn('bob') });
      bob = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('bob'));
    });
    after(async () => server?.stop());

    it('gives parallel uploads to one image consecutive versions, and serves one of them whole', async () => {
      await bob.post('/api/images', { name: 'race.img' });
      const bodies = Array.from({ length: 6 }, () =>
        randomBytes(512 * 1024 + Math.floor(Math.random() * 1024)),
      );
      const results = await Promise.all(
        bodies.map((body) => bob.request('PUT', '/api/images/raw/race.img', { body })),
      );
      for (const result of results) assert.ok([200, 201].includes(result.status), result.text);
      assert.equal(results.filter((r) => r.status === 201).length, 1, 'exactly one upload made version 1');
      const versions = (await bob.get('/api/images/race.img/versions')).json.items as {
        version: number;
        digests: { sha256: string };
      }[];
      assert.deepEqual(
        versions.map((v) => v.version),
        [6, 5, 4, 3, 2, 1],
      );
      assert.deepEqual(
        versions.map((v) => v.digests.sha256).sort(),
        bodies.map(sha256).sort(),
        'every upload is one version, whole',
      );
      const served = await bob.get('/api/images/raw/bob/race.img');
      assert.equal(sha256(served.body), versions[0]?.digests.sha256);
    });

    it('lets a download go on whole while newer versions are uploaded and its own is pruned', async () => {
      await bob.post('/api/images', { name: 'reader.img' });
      const old = randomBytes(8 * 1024 * 1024);
      await bob.request('PUT', '/api/images/raw/reader.img', { body: old });
      // A reader that takes its time: it reads the first bytes, then waits while two uploads land.
      const socket = await tlsSocket(server.httpsPort, pki.ca.certPem, pki.credential('bob'));
      const chunks: Buffer[] = [];
      const ended = new Promise<void>((resolve) => socket.on('end', resolve));
      socket.write(
        'GET /api/images/raw/bob/reader.img HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n',
      );
      const first = await new Promise<Buffer>((resolve) => socket.once('data', resolve));
      chunks.push(first);
      socket.pause();
      // Ten newer versions: the one being read is pruned (its row and its blob) meanwhile.
      for (let i = 0; i < 10; i++)
        await bob.request('PUT', '/api/images/raw/reader.img', { body: randomBytes(256 * 1024) });
      const kept = (await bob.get('/api/images/reader.img/versions')).json.items.map(
        (v: { version: number }) => v.version,
      );
      assert.ok(!kept.includes(1), `version 1 was pruned (kept ${kept})`);
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      socket.resume();
      await ended;
      const response = Buffer.concat(chunks);
      const body = response.subarray(response.indexOf('\r\n\r\n') + 4);
      assert.equal(sha256(body), sha256(old), 'the reader got the version it started on, whole');
    });

    it('keeps every concurrent edit of different fields, and gives conflicting renames a clean 409', async () => {
      await bob.post('/api/images', { name: 'edit.img' });
      const fields = ['description', 'os_variant', 'os_type', 'os_arch', 'hypervisor'] as const;
      const edits = await Promise.all(
        fields.map((field) => bob.patch('/api/images/edit.img', { [field]: `set-${field}` })),
      );
      for (const edit of edits) assert.equal(edit.status, 200, edit.text);
      const image = (await bob.get('/api/images/edit.img')).json;
      for (const field of fields) assert.equal(image[field], `set-${field}`, `${field} was not lost`);

      await bob.post('/api/images', { name: 'a.img' });
      await bob.post('/api/images', { name: 'b.img' });
      const renames = await Promise.all([
        bob.patch('/api/images/a.img', { name: 'same.img' }),
        bob.patch('/api/images/b.img', { name: 'same.img' }),
      ]);
      assert.deepEqual(renames.map((r) => r.status).sort(), [200, 409]);
      const loser = renames.find((r) => r.status === 409);
      assert.equal(loser?.json.error.code, 'image_exists');
      const names = (await bob.get('/api/images')).json.items.map((i: { name: string }) => i.name);
      assert.equal(names.filter((n: string) => n === 'same.img').length, 1);
      assert.equal(
        names.filter((n: string) => n === 'a.img' || n === 'b.img').length,
        1,
        'the loser kept its name',
      );
    });

    it('never answers 5xx to a storm of concurrent writes (SQLite busy or PostgreSQL contention)', async () => {
      const names = Array.from({ length: 40 }, (_, i) => `storm-${i}.img`);
      const created = await Promise.all(names.map((name) => bob.post('/api/images', { name })));
      assert.deepEqual([...new Set(created.map((r) => r.status))], [201]);
      const mixed = await Promise.all(
        names.flatMap((name, i) => [
          bob.patch(`/api/images/${name}`, { description: `storm ${i}` }),
          bob.request('PUT', `/api/images/raw/${name}`, { body: randomBytes(4096) }),
          bob.post(`/api/images/${name}/share/user/admin`),
        ]),
      );
      const statuses = mixed.map((r) => r.status);
      assert.ok(
        statuses.every((status) => status < 500),
        `5xx among ${JSON.stringify(statuses.filter((s) => s >= 500))}`,
      );
      const deleted = await Promise.all(names.map((name) => bob.delete(`/api/images/${name}`)));
      assert.deepEqual([...new Set(deleted.map((r) => r.status))], [204]);
    });

    it('answers 431 to oversized headers and 413 to an oversized JSON body, without reading on', async () => {
      const big = await bob.request('GET', '/api/whoami', {
        headers: { 'x-padding': 'x'.repeat(64 * 1024) },
      });
      assert.equal(big.status, 431);
      assert.equal(big.json?.error?.code, 'headers_too_large', big.text);
      const body = await bob.post('/api/images', {
        name: 'big.img',
        description: 'x'.repeat(2 * 1024 * 1024),
      });
      assert.equal(body.status, 413);
      assert.equal(body.json.error.code, 'payload_too_large');
    });
  });
}
