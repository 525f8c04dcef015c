/**
 * Capabilities (macaroons) over real HTTPS, once per database engine (capabilities-sqlite.test.ts,
 * capabilities-postgres.test.ts): asked for with `application/macaroon-request` on an image or a namespace,
 * used as `Authorization: Bearer` and as `?authz=` without a certificate; expired, wrong path, wrong activity,
 * tampered, revoked and rotated-secret ones refused; never more than their owner may do; listed and revoked
 * by their owner; and `?authz=` kept out of the server's log. gfal-token and qemu-img are in grid-tools.test.ts.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { addCaveat, parseMacaroon, serializeMacaroon } from '../src/capabilities/macaroon.ts';
import { clientFor, expectError, type Response, request } from './helpers/http.ts';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import {
  type ClusteredTestServer,
  type Engine,
  serverCommand,
  startServerFor,
  type TestServer,
  useWorkers,
} from './helpers/server.ts';

const MACAROON = { 'content-type': 'application/macaroon-request' };

export function capabilitiesSuite(engine: Engine) {
  // In worker processes, as `npm start` runs: the log checked for capabilities is the server's own.
  useWorkers(2);
  describe(`capabilities on ${engine}`, () => {
    let pki: TestPki;
    let server: TestServer;
    let as: (name: string) => ReturnType<typeof clientFor>;
    const bytes = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 13 + (i >> 9)) & 255));
    const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

    /** A capability for `path` (under /api/images/raw/), as `who` asks for it. */
    async function ask(who: string, path: string, body: object = {}): Promise<Response> {
      return as(who).request('POST', `/api/images/raw/${path}`, {
        body: JSON.stringify(body),
        headers: MACAROON,
      });
    }
    async function capability(who: string, path: string, body: object = {}): Promise<string> {
      const answer = await ask(who, path, body);
      assert.equal(answer.status, 200, answer.text);
      // libmacaroons' version 1, as dCache issues them: base64 of packets, each starting with its length in hex
      assert.match(answer.json.macaroon, /^MDA/, answer.json.macaroon);
      return answer.json.macaroon;
    }
    /** A request without a certificate, with the capability in the Authorization header. */
    const bearer = (
      method: string,
      path: string,
      token: string,
      options: { body?: Buffer; headers?: Record<string, string> } = {},
    ) =>
      request(`${server.httpsUrl}${path}`, method, null, pki.ca.certPem, {
        ...options,
        headers: { authorization: `Bearer ${token}`, ...options.headers },
      });
    /** The same, with the capability in the URL. */
    const inUrl = (method: string, path: string, token: string) =>
      request(`${server.httpsUrl}${path}?authz=${encodeURIComponent(token)}`, method, null, pki.ca.certPem);

    before(async () => {
      pki = await makeTestPki();
      server = await startServerFor(pki, engine, {
        REPOMAN_CAPABILITIES_MAX_VALIDITY_SECONDS: String(7 * 86400),
      });
      as = (name) => clientFor(server.httpsUrl, pki.ca.certPem, pki.credential(name));
      for (const name of ['bob', 'carol'])
        assert.equal(
          (await as('admin').post('/api/users', { user_name: name, client_dn: pki.dn(name) })).status,
          201,
        );
      await as('bob').post('/api/images', { name: 'private.img' });
      assert.equal((await as('bob').put('/api/images/raw/private.img', bytes)).status, 201);
      await as('bob').post('/api/images', { name: 'other.img' });
      assert.equal((await as('bob').put('/api/images/raw/other.img', bytes.subarray(0, 1000))).status, 201);
    });
    after(async () => server?.stop());

    it('issues one for an image as dCache does, usable as a bearer token and as ?authz=', async () => {
      const answer = await ask('bob', 'bob/private.img', {
        caveats: ['activity:DOWNLOAD,LIST'],
        validity: 'PT10M',
      });
      assert.equal(answer.status, 200, answer.text);
      const { macaroon, id, expires, uri } = answer.json;
      assert.match(id, /^[0-9a-f]{32}$/);
      const left = Date.parse(expires) - Date.now();
      assert.ok(left > 9 * 60_000 && left <= 10 * 60_000 + 1000, `expires in ${left} ms`);
      assert.equal(uri.target, `${server.httpsUrl}/api/images/raw/bob/private.img`);
      assert.equal(uri.targetWithMacaroon, `${uri.target}?authz=${encodeURIComponent(macaroon)}`);
      const viaHeader = await bearer('GET', '/api/images/raw/bob/private.img', macaroon);
      assert.equal(viaHeader.status, 200, viaHeader.text);
      assert.equal(sha256(viaHeader.body), sha256(bytes));
      const viaUrl = await inUrl('GET', '/api/images/raw/bob/private.img', macaroon);
      assert.equal(viaUrl.status, 200, viaUrl.text);
      assert.equal(sha256(viaUrl.body), sha256(bytes));
      // ranges, HEAD and a stat (PROPFIND Depth 0), as qemu and gfal2 do
      const range = await bearer('GET', '/api/images/raw/bob/private.img', macaroon, {
        headers: { range: 'bytes=100-199' },
      });
      assert.equal(range.status, 206);
      assert.deepEqual(range.body, bytes.subarray(100, 200));
      assert.equal((await bearer('HEAD', '/api/images/raw/bob/private.img', macaroon)).status, 200);
      const stat = await bearer('PROPFIND', '/api/images/raw/bob/private.img', macaroon, {
        headers: { depth: '0' },
      });
      assert.equal(stat.status, 207, stat.text);
      // Without it, the image is private.
      expectError(
        await request(`${server.httpsUrl}/api/images/raw/bob/private.img`, 'GET', null, pki.ca.certPem),
        404,
        'image_not_found',
      );
    });

    it('grants reading by default, and refuses another path or another activity', async () => {
      const token = await capability('bob', 'bob/private.img');
      assert.equal((await bearer('GET', '/api/images/raw/bob/private.img', token)).status, 200);
      expectError(await bearer('GET', '/api/images/raw/bob/other.img', token), 403, 'capability_denied');
      expectError(
        await bearer('PUT', '/api/images/raw/bob/private.img', token, { body: Buffer.from('x') }),
        403,
        'capability_denied',
      );
      expectError(await bearer('DELETE', '/api/images/raw/bob/private.img', token), 403, 'capability_denied');
      // Not the JSON API, and not a capability asked for with a capability.
      expectError(await bearer('GET', '/api/images/bob/private.img', token), 403, 'capability_denied');
      expectError(await bearer('GET', '/api/whoami', token), 403, 'capability_denied');
      const again = await bearer('POST', '/api/images/raw/bob/private.img', token, {
        body: Buffer.from('{}'),
        headers: MACAROON,
      });
      expectError(again, 403, 'capability_denied');
      const upload = await capability('bob', 'bob/private.img', { caveats: ['activity:UPLOAD'] });
      expectError(await bearer('GET', '/api/images/raw/bob/private.img', upload), 403, 'capability_denied');
      // Over plain HTTP it is a bearer token in the clear: refused.
      expectError(
        await request(
          `${server.httpUrl}/api/images/raw/bob/private.img?authz=${token}`,
          'GET',
          null,
          pki.ca.certPem,
        ),
        403,
        'https_required',
      );
    });

    it('covers a namespace: its listing and its images, and no one else’s', async () => {
      const token = await capability('bob', 'bob/', { caveats: ['activity:DOWNLOAD,LIST'] });
      const listing = await bearer('PROPFIND', '/api/images/raw/bob/', token, { headers: { depth: '1' } });
      assert.equal(listing.status, 207, listing.text);
      assert.match(listing.text, /private\.img/);
      assert.equal((await bearer('GET', '/api/images/raw/bob/other.img', token)).status, 200);
      expectError(
        await bearer('PROPFIND', '/api/images/raw/carol/', token, { headers: { depth: '1' } }),
        403,
        'capability_denied',
      );
      expectError(
        await bearer('PROPFIND', '/api/images/raw/', token, { headers: { depth: '1' } }),
        403,
        'capability_denied',
      );
    });

    it('writes with UPLOAD and DELETE, to a new name too, and audits each change with its id', async () => {
      const token = await capability('bob', 'bob/', { caveats: ['activity:UPLOAD,DELETE,DOWNLOAD'] });
      const made = await bearer('PUT', '/api/images/raw/bob/made.img', token, {
        body: bytes.subarray(0, 5000),
      });
      assert.equal(made.status, 201, made.text);
      const image = (await as('bob').get('/api/images/bob/made.img')).json;
      assert.equal(image.owner, 'bob', 'the capability’s owner owns what it creates');
      assert.equal((await bearer('DELETE', '/api/images/raw/bob/made.img', token)).status, 204);
      const id = parseMacaroon(token)?.identifier;
      const log = (await as('admin').get('/api/audit?limit=20')).json.items as {
        action: string;
        target: string;
        actor: string;
        detail: Record<string, unknown> | null;
      }[];
      const entries = log.filter((e) => e.target === 'bob/made.img');
      assert.deepEqual(entries.map((e) => e.action).sort(), ['image.delete', 'image.upload']);
      for (const entry of entries) {
        assert.equal(entry.actor, 'bob');
        assert.equal(entry.detail?.with_capability, id);
      }
      assert.ok(log.some((e) => e.action === 'capability.create' && e.detail?.capability === id));
    });

    it('never grants more than its owner may do', async () => {
      // Carol may not write Bob's images: she cannot ask for it...
      assert.equal((await as('bob').post('/api/images/private.img/share/user/carol')).status, 200);
      expectError(await ask('carol', 'bob/private.img', { caveats: ['activity:UPLOAD'] }), 403, 'forbidden');
      expectError(await ask('carol', 'bob/', { caveats: ['activity:UPLOAD'] }), 403, 'forbidden');
      // ...nor read what she cannot see.
      expectError(await ask('carol', 'bob/other.img'), 404, 'image_not_found');
      // A capability of Bob's stops working when Bob is suspended, and works again after.
      const token = await capability('bob', 'bob/private.img');
      await as('admin').patch('/api/users/bob', { suspended: true });
      try {
        expectError(await bearer('GET', '/api/images/raw/bob/private.img', token), 403, 'user_suspended');
      } finally {
        await as('admin').patch('/api/users/bob', { suspended: false });
      }
      assert.equal((await bearer('GET', '/api/images/raw/bob/private.img', token)).status, 200);
    });

    it('refuses a tampered one, an expired one, and one narrowed by its holder past what it asks', async () => {
      const token = await capability('bob', 'bob/private.img');
      const macaroon = parseMacaroon(token);
      assert.ok(macaroon);
      // A caveat taken out (the path): the signature no longer matches.
      const widened = serializeMacaroon({
        ...macaroon,
        caveats: macaroon.caveats.filter((c) => !c.startsWith('path:')),
      });
      expectError(await bearer('GET', '/api/images/raw/bob/other.img', widened), 401, 'capability_invalid');
      // One byte of the signature changed.
      const signature = Buffer.from(macaroon.signature);
      signature[0] = (signature[0] ?? 0) ^ 1;
      expectError(
        await bearer('GET', '/api/images/raw/bob/private.img', serializeMacaroon({ ...macaroon, signature })),
        401,
        'capability_invalid',
      );
      expectError(
        await bearer('GET', '/api/images/raw/bob/private.img', 'not-a-macaroon'),
        401,
        'capability_invalid',
      );
      // Its holder narrows it, as macaroons allow: to a time already past, then to another address.
      const past = serializeMacaroon(addCaveat(macaroon, 'before:2020-01-01T00:00:00Z'));
      expectError(await bearer('GET', '/api/images/raw/bob/private.img', past), 401, 'capability_expired');
      const elsewhere = serializeMacaroon(addCaveat(macaroon, 'ip:192.0.2.0/24'));
      expectError(
        await bearer('GET', '/api/images/raw/bob/private.img', elsewhere),
        403,
        'capability_denied',
      );
      const here = serializeMacaroon(addCaveat(macaroon, 'ip:127.0.0.0/8'));
      assert.equal((await bearer('GET', '/api/images/raw/bob/private.img', here)).status, 200);
      const unknown = serializeMacaroon(addCaveat(macaroon, 'home:/'));
      expectError(await bearer('GET', '/api/images/raw/bob/private.img', unknown), 403, 'capability_denied');
      // Issued already expired: the shortest validity there is, then past it.
      const brief = await capability('bob', 'bob/private.img', { validity: 'PT1S' });
      const expires =
        parseMacaroon(brief)
          ?.caveats.find((c) => c.startsWith('before:'))
          ?.slice(7) ?? '';
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, Date.parse(expires) - Date.now()) + 50));
      expectError(await bearer('GET', '/api/images/raw/bob/private.img', brief), 401, 'capability_expired');
    });

    it('takes the validity asked for up to the maximum, and refuses bad requests with a clear error', async () => {
      const long = await ask('bob', 'bob/private.img', { validity: 'P365D' });
      assert.equal(long.status, 200, long.text);
      const days = (Date.parse(long.json.expires) - Date.now()) / 86_400_000;
      assert.ok(days > 6.9 && days <= 7, `capped at the configured 7 days, not ${days}`);
      expectError(await ask('bob', 'bob/private.img', { validity: 'one hour' }), 400, 'invalid_field');
      expectError(await ask('bob', 'bob/private.img', { caveats: ['activity:FLY'] }), 400, 'invalid_field');
      expectError(
        await ask('bob', 'bob/private.img', { caveats: ['path:/api/images/raw/carol/'] }),
        400,
        'invalid_field',
      );
      expectError(await ask('bob', 'bob/private.img', { lifetime: 3 }), 400, 'unknown_field');
      const notJson = await as('bob').request('POST', '/api/images/raw/bob/private.img', {
        body: 'caveats',
        headers: MACAROON,
      });
      expectError(notJson, 400, 'bad_request');
      const json = await as('bob').request('POST', '/api/images/raw/bob/private.img', { body: {} });
      expectError(json, 415, 'unsupported_media_type');
      expectError(await ask('bob', 'bob/missing.img'), 404, 'image_not_found');
      expectError(
        await ask('bob', 'carol/missing.img', { caveats: ['activity:UPLOAD'] }),
        404,
        'image_not_found',
      );
      // A name of one's own not taken yet: a capability to create it (a push's destination), not to read it.
      assert.equal(
        (await ask('bob', 'bob/missing.img', { caveats: ['activity:UPLOAD,DELETE,LIST'] })).status,
        200,
      );
      expectError(await ask('bob', 'nobody/'), 404, 'not_found');
      const anonymous = await request(
        `${server.httpsUrl}/api/images/raw/bob/private.img`,
        'POST',
        null,
        pki.ca.certPem,
        { body: '{}', headers: MACAROON },
      );
      expectError(anonymous, 401, 'certificate_required');
    });

    it('is listed and revoked by its owner, and an admin sees everyone’s', async () => {
      const token = await capability('bob', 'bob/private.img');
      const id = parseMacaroon(token)?.identifier ?? '';
      const mine = (await as('bob').get('/api/capabilities?limit=1000')).json;
      const listed = mine.items.find((c: { id: string }) => c.id === id);
      assert.deepEqual(
        { user: listed.user, path: listed.path, activities: listed.activities, revoked: listed.revoked },
        {
          user: 'bob',
          path: '/api/images/raw/bob/private.img',
          activities: ['DOWNLOAD', 'LIST', 'READ_METADATA'],
          revoked: null,
        },
      );
      assert.ok(!JSON.stringify(mine).includes(token), 'the macaroon itself is shown once, when issued');
      expectError(await as('carol').delete(`/api/capabilities/${id}`), 404, 'capability_not_found');
      assert.ok(
        (await as('admin').get('/api/capabilities?user=bob&limit=1000')).json.items.some(
          (c: { id: string }) => c.id === id,
        ),
      );
      expectError(await as('carol').get('/api/capabilities?user=bob'), 403, 'forbidden');
      const revoked = await as('bob').delete(`/api/capabilities/${id}`);
      assert.equal(revoked.status, 200, revoked.text);
      assert.equal(revoked.json.revoked_reason, 'revoked');
      expectError(await bearer('GET', '/api/images/raw/bob/private.img', token), 401, 'capability_revoked');
      const still = (await as('bob').get('/api/capabilities?limit=1000')).json.items;
      assert.ok(!still.some((c: { id: string }) => c.id === id), 'a revoked one is not listed as usable');
      const all = (await as('bob').get('/api/capabilities?all=true&limit=1000')).json.items;
      assert.ok(
        all.some((c: { id: string }) => c.id === id),
        '...but with all=true',
      );
    });

    it('keeps ?authz= values out of the log', async () => {
      const token = await capability('bob', 'bob/private.img');
      assert.equal((await inUrl('GET', '/api/images/raw/bob/private.img', token)).status, 200);
      await new Promise((resolve) => setTimeout(resolve, 200)); // the log is written asynchronously
      const log = (server as ClusteredTestServer).output();
      assert.match(log, /authz=…/, 'the request is logged, its capability hidden');
      // Its start is the same for every capability of this server (the location); its end is its signature.
      assert.ok(!log.includes(token.slice(-40)), 'no capability in the log');
    });

    it('refuses every capability once the secret is rotated', async () => {
      const token = await capability('bob', 'bob/private.img');
      assert.equal((await bearer('GET', '/api/images/raw/bob/private.img', token)).status, 200);
      const rotated = await serverCommand(server, ['rotate-capability-secret']);
      assert.equal(rotated.code, 0, rotated.stderr);
      assert.match(rotated.stdout, /revoked/);
      expectError(await bearer('GET', '/api/images/raw/bob/private.img', token), 401, 'capability_revoked');
      const listed = (await as('bob').get('/api/capabilities?all=true&limit=1000')).json.items;
      assert.equal(
        listed.find((c: { id: string }) => c.id === parseMacaroon(token)?.identifier)?.revoked_reason,
        'secret_rotated',
      );
      const fresh = await capability('bob', 'bob/private.img');
      assert.equal((await bearer('GET', '/api/images/raw/bob/private.img', fresh)).status, 200);
    });
  });
}
