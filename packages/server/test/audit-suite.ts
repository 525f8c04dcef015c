/**
 * The audit log: an entry for every route that changes something (allowed or refused), with who, from where
 * (the PROXY protocol's client address behind a balancer), what, to what and how it ended; read by admins at
 * /api/audit with filters. Run once per database engine.
 */
import assert from 'node:assert/strict';
import https from 'node:https';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { AUDITED_ACTIONS } from '../src/http/audit.ts';
import { type ClientCredential, clientFor, expectError } from './helpers/http.ts';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import { type Engine, startServerFor, type TestServer } from './helpers/server.ts';

const TUS = { 'tus-resumable': '1.0.0' };
const b64 = (text: string) => Buffer.from(text).toString('base64');
const BALANCER = '127.0.0.2';

/**
 * A request over a connection from `from` (a loopback address) that starts with `header` (a PROXY protocol
 * header, or nothing), then TLS as `credential`: what a balancer in TCP mode sends.
 */
async function through(
  port: number,
  ca: string,
  credential: ClientCredential,
  from: string,
  header: string | Buffer,
  method: string,
  path: string,
): Promise<{ status: number; body: string }> {
  const raw = net.connect({ host: '127.0.0.1', port, localAddress: from });
  await new Promise((resolve, reject) => raw.once('connect', resolve).once('error', reject));
  if (header.length > 0) raw.write(header);
  const socket = tls.connect({ socket: raw, ca, ...credential, servername: 'localhost' });
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    const request = https.request(
      { method, path, host: 'localhost', createConnection: () => socket },
      (response) => {
        let body = '';
        response.on('data', (chunk) => (body += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      },
    );
    request.once('error', reject);
    request.end();
  });
}

export function auditSuite(engine: Engine) {
  describe(`the audit log on ${engine}`, () => {
    let pki: TestPki;
    let server: TestServer;
    let as: (name: string) => ReturnType<typeof clientFor>;
    before(async () => {
      pki = await makeTestPki();
      server = await startServerFor(pki, engine, { REPOMAN_BALANCER_ADDRESSES: `${BALANCER}/32` });
      as = (name) => clientFor(server.httpsUrl, pki.ca.certPem, pki.credential(name));
      // Bob, whom every test uses (his creation is in the log like any other).
      const bob = await as('admin').post('/api/users', { user_name: 'bob', client_dn: pki.dn('bob') });
      assert.equal(bob.status, 201, bob.text);
    });
    after(async () => server?.stop());

    const entries = async (query = '') => {
      const res = await as('admin').get(`/api/audit?limit=500${query}`);
      assert.equal(res.status, 200, res.text);
      return res.json.items as Record<string, unknown>[];
    };

    /**
     * One of every change the log records (and some refusals), made once for the tests that read them, whichever
     * runs first.
     */
    let everyChange: Promise<{ putRequestId: unknown }> | undefined;
    const makeEveryChange = () => {
      everyChange ??= (async () => {
        const admin = as('admin');
        const ok = (res: { status: number; text: string }) => assert.ok(res.status < 300, res.text);
        ok(await admin.patch('/api/users/bob', { full_name: 'Bob' }));
        ok(await admin.post('/api/users/bob', { email: 'bob@example.org' }));
        ok(await admin.post('/api/users', { user_name: 'gone', client_dn: '/O=Grid/CN=Gone' }));
        ok(await admin.delete('/api/users/gone'));
        ok(await admin.post('/api/groups', { name: 'team' }));
        ok(await admin.patch('/api/groups/team', { name: 'crew' }));
        ok(await admin.post('/api/groups/crew', { name: 'team' }));
        ok(await admin.post('/api/groups/team/users/bob'));
        ok(await admin.post('/api/groups/team/permissions/image_create'));
        ok(await admin.delete('/api/groups/team/permissions/image_create'));
        ok(await admin.post('/api/groups', { name: 'tmp' }));
        ok(await admin.delete('/api/groups/tmp'));
        const bob = as('bob');
        ok(await bob.post('/api/images', { name: 'vm.img' }));
        ok(await bob.patch('/api/images/vm.img', { description: 'one' }));
        ok(await bob.post('/api/images/bob/vm.img', { os_type: 'linux' }));
        const put = await bob.put('/api/images/raw/vm.img', Buffer.alloc(4096, 1));
        ok(put);
        ok(await bob.put('/api/images/raw/bob/vm.img', Buffer.alloc(4096, 2)));
        ok(await bob.post('/api/images/vm.img/rollback', { version: 1 }));
        ok(await bob.post('/api/images/vm.img/share/user/admin'));
        ok(await bob.delete('/api/images/bob/vm.img/share/user/admin'));
        ok(await bob.post('/api/images/vm.img/share/group/team'));
        ok(await bob.delete('/api/images/vm.img/share/group/team'));
        ok(await admin.delete('/api/groups/team/users/bob'));
        const job = await bob.post('/api/images/vm.img/conversions', { format: 'qcow2' });
        ok(job);
        ok(await bob.delete(`/api/jobs/${job.json.job.id}`));
        await bob.delete('/api/images/vm.img/variants/vmdk'); // none: recorded as refused
        // Resumable: created, completed by its last PATCH (earlier chunks are not entries), and one deleted.
        const created = await bob.request('POST', '/api/uploads', {
          headers: { ...TUS, 'upload-length': '8', 'upload-metadata': `image ${b64('vm.img')}` },
        });
        assert.equal(created.status, 201, created.text);
        const path = String(created.headers.location);
        const patch = (offset: number, body: Buffer) =>
          bob.request('PATCH', path, {
            body,
            headers: {
              ...TUS,
              'upload-offset': String(offset),
              'content-type': 'application/offset+octet-stream',
            },
          });
        assert.equal((await patch(0, Buffer.from('four'))).status, 204);
        assert.equal((await patch(4, Buffer.from('more'))).status, 204);
        const other = await bob.request('POST', '/api/uploads', {
          headers: { ...TUS, 'upload-length': '8', 'upload-metadata': `image ${b64('vm.img')}` },
        });
        ok(await bob.request('DELETE', String(other.headers.location), { headers: TUS }));
        // Giving images away: offered and declined, offered and withdrawn, offered and accepted.
        for (const answer of ['decline', 'cancel', 'accept'] as const) {
          ok(await bob.post('/api/images', { name: `gift-${answer}.img` }));
          const offer = await bob.post(`/api/images/gift-${answer}.img/transfer`, { to: 'admin' });
          ok(offer);
          const id = String(offer.json.id);
          if (answer === 'cancel') ok(await bob.delete(`/api/transfers/${id}`));
          else ok(await admin.post(`/api/transfers/${id}/${answer}`));
        }
        ok(await bob.delete('/api/images/vm.img'));
        // The grid's writes on the bytes' URLs: a PUT that creates, a MOVE, a DELETE, and a MKCOL (always refused).
        ok(await bob.put('/api/images/raw/bob/grid.img', Buffer.from('grid')));
        ok(
          await bob.request('MOVE', '/api/images/raw/bob/grid.img', {
            headers: { destination: '/api/images/raw/bob/moved.img' },
          }),
        );
        ok(await bob.delete('/api/images/raw/bob/moved.img'));
        expectError(await bob.request('MKCOL', '/api/images/raw/bob/'), 405, 'method_not_allowed');
        // A third-party copy, refused by the destination policy once started: recorded with its outcome.
        const copied = await bob.request('COPY', '/api/images/raw/bob/grid-copy.img', {
          headers: { source: 'https://127.0.0.1:9/x.img' },
        });
        assert.match(copied.text, /failure: The copy was refused/);
        // Refused before it starts (not Bob's to write): recorded as the refusal it is.
        expectError(
          await bob.request('COPY', '/api/images/raw/admin/theirs.img', {
            headers: { source: 'https://127.0.0.1:9/x.img' },
          }),
          404,
          'image_not_found',
        );
        // A capability asked for, and revoked.
        const capability = await bob.request('POST', '/api/images/raw/bob/', {
          body: '{"caveats": ["activity:DOWNLOAD"]}',
          headers: { 'content-type': 'application/macaroon-request' },
        });
        ok(capability);
        ok(await bob.delete(`/api/capabilities/${capability.json.id}`));
        // Endorsing for a group, its list's subscribers, an endorser's signed list (refused: not signed).
        ok(await admin.post('/api/groups', { name: 'vo', users: ['admin'] }));
        ok(await bob.post('/api/images', { name: 'endorsed.img', unauthenticated_access: true }));
        ok(await bob.put('/api/images/raw/endorsed.img', Buffer.from('endorsed')));
        ok(
          await admin.post('/api/groups/vo/endorsements', {
            image: 'bob/endorsed.img',
            expires: '2099-01-01',
          }),
        );
        ok(
          await admin.request('PUT', '/api/groups/vo/image-list/access', {
            body: { subscribers_only: false },
          }),
        );
        const subscriber = await admin.post('/api/groups/vo/subscribers', { name: 'a site' });
        ok(subscriber);
        ok(await admin.delete(`/api/groups/vo/subscribers/${subscriber.json.id}`));
        expectError(
          await admin.request('PUT', '/api/groups/vo/endorsers/admin/image-list', {
            body: Buffer.from('not signed'),
            headers: { 'content-type': 'text/plain', 'if-match': '"x"' },
          }),
          412,
          'precondition_failed',
        );
        ok(await admin.delete('/api/groups/vo/endorsements/bob/endorsed.img'));
        // Clouds: none answers here, so registering one fails its check; changes to a cloud that is not there.
        expectError(
          await admin.post('/api/clouds/vo', {
            name: 'site',
            auth_url: 'http://127.0.0.1:9/v3',
            application_credential_id: 'x',
            application_credential_secret: 'y',
          }),
          400,
          'cloud_check_failed',
        );
        for (const [method, path] of [
          ['PATCH', '/api/clouds/vo/none'],
          ['POST', '/api/clouds/vo/none'],
          ['DELETE', '/api/clouds/vo/none'],
          ['PUT', '/api/clouds/vo/none/images/bob/endorsed.img'],
          ['DELETE', '/api/clouds/vo/none/images/bob/endorsed.img'],
          ['POST', '/api/clouds/vo/none/sync'],
        ] as const)
          expectError(
            await admin.request(
              method,
              path,
              method === 'PATCH' || path.endsWith('none') ? { body: {} } : {},
            ),
            404,
            'cloud_not_found',
          );
        // Token identities: linking one of an issuer not trusted here, unlinking one that is not there, and a
        // browser's sign-out (a certificate beside it names who).
        expectError(
          await admin.post('/api/users/bob/identities', { issuer: 'https://iam.example', subject: 'bob' }),
          400,
          'invalid_field',
        );
        expectError(await bob.post('/api/whoami/identities'), 400, 'bad_request');
        expectError(await bob.delete('/api/users/bob/identities/999'), 404, 'identity_not_found');
        ok(await bob.post('/api/auth/sign-out'));
        // Refused: a stranger's certificate, and a user without the right.
        const stranger = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('stranger'));
        expectError(await stranger.post('/api/groups', { name: 'mine' }), 403, 'unknown_certificate');
        expectError(await bob.delete('/api/users/admin'), 403, 'forbidden');
        return { putRequestId: put.headers['x-request-id'] };
      })();
      return everyChange;
    };

    it('records every route that changes something, with who, what, to what and the outcome', async () => {
      const { putRequestId } = await makeEveryChange();
      const all = await entries();
      const actions = new Set(all.map((e) => e.action));
      for (const action of AUDITED_ACTIONS) assert.ok(actions.has(action), `an entry for ${action}`);

      const find = (action: string, extra: (e: Record<string, unknown>) => boolean = () => true) =>
        all.find((e) => e.action === action && extra(e));
      const upload = find(
        'image.upload',
        (e) =>
          e.method === 'PUT' && e.target === 'bob/vm.img' && (e.detail as { version: number }).version === 1,
      );
      assert.equal(upload?.actor, 'bob');
      assert.equal(upload?.dn, pki.dn('bob'));
      assert.equal(upload?.target, 'bob/vm.img');
      assert.equal(upload?.target_type, 'image');
      assert.equal(upload?.outcome, 'ok');
      assert.equal(upload?.address, '127.0.0.1');
      assert.equal(upload?.request_id, putRequestId, 'the id the answer carried');
      assert.deepEqual((upload?.detail as { version?: number } | undefined)?.version, 1);
      const tus = find('image.upload', (e) => e.method === 'PATCH');
      assert.equal(tus?.target, 'bob/vm.img', 'the completing PATCH names the image');
      assert.equal((tus?.detail as { version?: number } | undefined)?.version, 3);
      assert.equal(
        all.filter((e) => e.action === 'image.upload' && e.method === 'PATCH').length,
        1,
        'the first chunk is no entry',
      );
      // each entry says how its actor was authenticated
      assert.deepEqual(find('user.modify', (e) => e.method === 'PATCH')?.detail, {
        fields: ['full_name'],
        credential: 'certificate',
      });
      assert.deepEqual(find('group.grant')?.detail, {
        permission: 'image_create',
        credential: 'certificate',
      });
      assert.equal(
        find('image.share', (e) => (e.detail as { group?: string })?.group === 'team')?.target,
        'bob/vm.img',
      );
      assert.equal(find('upload.create')?.target, 'bob/vm.img');
      const gridPut = find('image.upload', (e) => e.target === 'bob/grid.img');
      assert.equal(
        (gridPut?.detail as { created?: boolean } | undefined)?.created,
        true,
        'a PUT that made its image',
      );
      assert.deepEqual(find('image.modify', (e) => e.method === 'MOVE')?.detail, {
        fields: ['name'],
        to: 'moved.img',
        credential: 'certificate',
      });
      const link = find(
        'user.link_identity',
        (e) => e.method === 'POST' && e.target === 'bob' && e.actor === 'admin',
      );
      assert.deepEqual(
        [link?.outcome, (link?.detail as { subject?: string })?.subject],
        ['invalid_field', 'bob'],
      );
      assert.equal(find('user.unlink_identity')?.outcome, 'identity_not_found');
      assert.equal(find('session.sign_out')?.target, 'bob');
      assert.equal(find('image.delete', (e) => e.path === '/api/images/raw/bob/moved.img')?.outcome, 'ok');
      const copy = find('image.copy', (e) => e.outcome !== 'image_not_found');
      assert.deepEqual(
        [copy?.target, copy?.outcome, (copy?.detail as { direction?: string } | undefined)?.direction],
        ['bob/grid-copy.img', 'destination_refused', 'pull'],
      );
      assert.equal(find('image.copy', (e) => e.target === 'admin/theirs.img')?.outcome, 'image_not_found');
      const asked = find('capability.create');
      assert.equal(asked?.target, '/api/images/raw/bob/');
      assert.equal(asked?.target_type, 'capability');
      assert.deepEqual((asked?.detail as { caveats?: string[] } | undefined)?.caveats, ['activity:DOWNLOAD']);
      assert.equal(
        find('capability.revoke')?.target,
        (asked?.detail as { capability?: string } | undefined)?.capability,
      );
      const mkcol = find('namespace.create');
      assert.deepEqual([mkcol?.target, mkcol?.outcome, mkcol?.status], ['bob', 'method_not_allowed', 405]);
      const refused = find('group.create', (e) => e.outcome === 'unknown_certificate');
      assert.equal(refused?.actor, null, 'an unknown certificate has no user');
      assert.equal(refused?.dn, pki.dn('stranger'), 'but its DN, checked, is known: to tell the admins who');
      assert.equal(refused?.status, 403);
      assert.equal(find('user.delete', (e) => e.target === 'admin')?.outcome, 'forbidden');
      assert.equal(find('image.delete_variant')?.outcome, 'variant_not_found');
    });

    it('filters by actor, kind of action, target, outcome and time, newest first, in pages', async () => {
      await makeEveryChange();
      const byBob = await entries('&actor=bob');
      assert.ok(byBob.length > 10 && byBob.every((e) => e.actor === 'bob'));
      const ids = byBob.map((e) => e.id as number);
      assert.deepEqual(
        ids,
        [...ids].sort((a, b) => b - a),
        'newest first',
      );
      const groups = await entries('&action=group.');
      assert.ok(groups.length >= 8 && groups.every((e) => String(e.action).startsWith('group.')));
      assert.ok((await entries('&action=group.grant')).every((e) => e.action === 'group.grant'));
      const vm = await entries('&target=bob/vm.img');
      assert.ok(vm.length > 5 && vm.every((e) => e.target === 'bob/vm.img'));
      const failed = await entries('&outcome=failed');
      assert.ok(failed.length >= 3 && failed.every((e) => e.outcome !== 'ok'));
      assert.ok((await entries('&outcome=forbidden')).every((e) => e.outcome === 'forbidden'));
      const future = new Date(Date.now() + 3600_000).toISOString();
      assert.deepEqual(await entries(`&since=${future}`), []);
      assert.equal((await entries(`&until=${future}`)).length, (await entries()).length);
      const first = await as('admin').get('/api/audit?limit=2');
      assert.equal(first.json.items.length, 2);
      assert.match(first.json.next, /offset=2/);
      assert.ok(first.json.total > 20);
    });

    it('writes no entry for refusals of callers without a verified certificate, and counts them in /metrics', async () => {
      const total = async () => (await as('admin').get('/api/audit?limit=1')).json.total as number;
      const scrape = async () => (await fetch(`${server.httpUrl}/metrics`)).text();
      const sample = (text: string, reason: string) =>
        Number(
          new RegExp(`^repoman_auth_failures_total\\{reason="${reason}"\\} (\\S+)$`, 'm').exec(text)?.[1] ??
            0,
        );
      const entriesBefore = await total();
      const metricsBefore = await scrape();
      const plain = async (method: string, path: string) =>
        (await fetch(`${server.httpUrl}${path}`, { method })).status;
      const anonymous = clientFor(server.httpsUrl, pki.ca.certPem, null);
      const untrusted = clientFor(server.httpsUrl, pki.ca.certPem, pki.bad('untrusted'));
      const statuses = [];
      for (let i = 0; i < 20; i++) statuses.push(await plain('POST', `/api/images?i=${i}`));
      for (let i = 0; i < 20; i++) statuses.push((await anonymous.delete(`/api/users/u${i}`)).status);
      for (let i = 0; i < 10; i++)
        statuses.push((await untrusted.post('/api/groups', { name: `g${i}` })).status);
      assert.deepEqual(
        [...new Set(statuses)].sort(),
        [401, 403],
        'plain HTTP 403, no or an untrusted certificate 401',
      );
      assert.equal(await total(), entriesBefore, '50 refusals of nobody in particular: no entry');
      const metricsAfter = await scrape();
      for (const [reason, count] of [
        ['https_required', 20],
        ['certificate_required', 20],
        ['certificate_invalid', 10],
      ] as const)
        assert.equal(sample(metricsAfter, reason) - sample(metricsBefore, reason), count, reason);
      // A refusal of someone whose certificate a trusted CA vouches for is still recorded.
      expectError(await as('stranger').post('/api/groups', { name: 'g' }), 403, 'unknown_certificate');
      assert.equal(await total(), entriesBefore + 1);
    });

    it('is for admins only', async () => {
      expectError(await as('bob').get('/api/audit'), 403, 'forbidden');
      expectError(await as('admin').get('/api/audit?since=yesterday'), 400, 'invalid_field');
    });

    it('takes the client address from a balancer’s PROXY header, and only from a balancer', async () => {
      const ca = pki.ca.certPem;
      const bob = pki.credential('bob');
      const v1 = `PROXY TCP4 203.0.113.9 127.0.0.1 40000 ${server.httpsPort}\r\n`;
      assert.equal(
        (await through(server.httpsPort, ca, bob, BALANCER, v1, 'DELETE', '/api/images/bob/nothing.img'))
          .status,
        404,
      );
      // Version 2 (binary), as HAProxy's send-proxy-v2 sends it: IPv6 this time.
      const v2 = Buffer.concat([
        Buffer.from([
          0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x21, 0x00, 36,
        ]),
        Buffer.from('20010db8000000000000000000000007', 'hex'),
        Buffer.from('00000000000000000000000000000001', 'hex'),
        Buffer.from([0x9c, 0x40, 0x20, 0xfb]),
      ]);
      assert.equal(
        (await through(server.httpsPort, ca, bob, BALANCER, v2, 'DELETE', '/api/images/nothing.img')).status,
        404,
      );
      const recent = await entries('&actor=bob&outcome=image_not_found');
      assert.deepEqual(
        recent.slice(0, 2).map((e) => e.address),
        ['2001:db8::7', '203.0.113.9'],
      );
      // A balancer that sends no header is cut off; anyone else sending one only breaks their own TLS.
      await assert.rejects(through(server.httpsPort, ca, bob, BALANCER, '', 'DELETE', '/api/images/x.img'));
      await assert.rejects(
        through(server.httpsPort, ca, bob, '127.0.0.1', v1, 'DELETE', '/api/images/x.img'),
      );
      assert.equal((await entries('&address=203.0.113.9')).length, 1, 'nobody else claimed that address');
      // Plain HTTP too, with the request in the same packet as the header (as HAProxy's checks send it).
      const plain = net.connect({
        host: '127.0.0.1',
        port: server.httpPort as number,
        localAddress: BALANCER,
      });
      await new Promise((resolve, reject) => plain.once('connect', resolve).once('error', reject));
      plain.write(`${v1}GET /api/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
      let answer = '';
      for await (const chunk of plain) answer += chunk;
      assert.match(answer, /^HTTP\/1\.1 200 /);
    });
  });
}
