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

    it('keeps an active admin when the last two suspend, delete or unmake each other at once', async () => {
      const as = (name: string) => clientFor(server.httpsUrl, pki.ca.certPem, pki.credential(name));
      const names = ['admin', 'ann'] as const;
      /** Makes both of them active admins again, as whichever of them still is one. */
      async function reset() {
        const [by] = await activeAdmins();
        if (!by) assert.fail('neither is an active admin any more');
        const other = names.find((n) => n !== by) as string;
        const client = as(by);
        if ((await client.get(`/api/users/${other}`)).status === 404)
          assert.equal(
            (await client.post('/api/users', { user_name: other, client_dn: pki.dn(other) })).status,
            201,
          );
        assert.equal((await client.patch(`/api/users/${other}`, { suspended: false })).status, 200);
        assert.equal((await client.post(`/api/groups/admins/users/${other}`)).status, 200);
      }
      /** The admins that are members of admins and not suspended, as one of them sees it. */
      async function activeAdmins(): Promise<string[]> {
        for (const by of names) {
          const client = as(by);
          const group = await client.get('/api/groups/admins');
          if (group.status !== 200) continue;
          const active = [];
          for (const member of group.json.users as string[])
            if ((await client.get(`/api/users/${member}`)).json.suspended === false) active.push(member);
          if (active.includes(by)) return active;
        }
        return [];
      }
      /** A request written by hand, to send on a connection already open. */
      const write = (method: string, path: string, body?: object) => {
        const text = body ? JSON.stringify(body) : '';
        return `${method} ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n${
          body ? `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\n` : ''
        }\r\n${text}`;
      };
      const suspend = (other: string) => write('PATCH', `/api/users/${other}`, { suspended: true });
      const unmake = (other: string) => write('DELETE', `/api/groups/admins/users/${other}`);
      const remove = (other: string) => write('DELETE', `/api/users/${other}`);
      /**
       * Both requests leave in the same tick, on connections whose handshakes are done: each is authenticated
       * (both admins still active) before either change is made, the race the rule must survive.
       */
      async function together(requests: [string, string][]) {
        const sockets = await Promise.all(
          requests.map(([by]) => tlsSocket(server.httpsPort, pki.ca.certPem, pki.credential(by))),
        );
        const answers = sockets.map(
          (socket) =>
            new Promise<{ status: number; text: string; code: string | undefined }>((resolve) => {
              let text = '';
              socket.on('data', (chunk: Buffer) => {
                text += chunk.toString('utf8');
              });
              socket.on('close', () =>
                resolve({
                  status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0),
                  text,
                  code: /"code":"([a-z_]+)"/.exec(text)?.[1],
                }),
              );
            }),
        );
        sockets.forEach((socket, i) => {
          socket.write((requests[i] as [string, string])[1]);
        });
        return Promise.all(answers);
      }
      const races: [string, typeof suspend, typeof suspend][] = [
        ['suspend each other', suspend, suspend],
        ['remove from admins, and suspend', unmake, suspend],
        ['remove each other from admins', unmake, unmake],
        ['delete, and suspend', remove, suspend],
        ['delete, and remove from admins', remove, unmake],
      ];
      await as('admin').post('/api/users', { user_name: 'ann', client_dn: pki.dn('ann') });
      for (let round = 0; round < 4; round++)
        for (const [what, first, second] of races) {
          await reset();
          assert.deepEqual((await activeAdmins()).sort(), ['admin', 'ann'], `${what}: before`);
          const [a, b] = round % 2 === 0 ? names : [names[1], names[0]];
          const results = await together([
            [a, first(b)],
            [b, second(a)],
          ]);
          const statuses = results.map((r) => r.status);
          assert.equal(statuses.filter((s) => s < 300).length, 1, `${what}: one succeeds (${statuses})`);
          for (const result of results.filter((r) => r.status >= 300))
            assert.ok(
              [403, 409].includes(result.status) && result.code,
              `${what}: the other is refused: ${result.text}`,
            );
          assert.equal((await activeAdmins()).length, 1, `${what}: one active admin is left`);
        }
      await reset();
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
