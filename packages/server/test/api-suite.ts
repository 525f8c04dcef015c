/**
 * The whole API over real HTTPS with real client certificates, run once per database engine
 * (api-sqlite.test.ts, api-postgres.test.ts).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PERMISSIONS } from '@repoman/core';
import { clientFor, expectError, request } from './helpers/http.ts';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import { type Engine, startServerFor, type TestServer } from './helpers/server.ts';

export function apiSuite(engine: Engine) {
  describe(`API on ${engine}`, () => {
    let pki: TestPki;
    let server: TestServer;
    let as: (name: string) => ReturnType<typeof clientFor>;
    let anonymous: ReturnType<typeof clientFor>;

    before(async () => {
      pki = await makeTestPki();
      server = await startServerFor(pki, engine, {}, true);
      as = (name) => clientFor(server.httpsUrl, pki.ca.certPem, pki.credential(name));
      anonymous = clientFor(server.httpsUrl, pki.ca.certPem, null);
    });
    after(async () => server?.stop());

    describe('authentication', () => {
      it('identifies the admin by certificate, in OpenSSL slash form, with every permission', async () => {
        const res = await as('admin').get('/api/whoami');
        assert.equal(res.status, 200);
        assert.equal(res.json.user_name, 'admin');
        assert.equal(res.json.client_dn, pki.dn('admin'));
        assert.match(res.json.client_dn, /^\//);
        assert.deepEqual(res.json.groups, ['admins', 'users']);
        assert.deepEqual(res.json.permissions, [...PERMISSIONS].sort());
        assert.equal(res.json.url, `${server.httpsUrl}/api/users/admin`);
      });

      it('answers 401 without a certificate, and 403 https_required on plain HTTP', async () => {
        expectError(await anonymous.get('/api/whoami'), 401, 'certificate_required');
        const plain = await request(`${server.httpUrl}/api/whoami`, 'GET', null, '');
        expectError(plain, 403, 'https_required');
      });

      it('answers 403 unknown_certificate with the DN for a valid certificate of no user', async () => {
        const res = await as('eve').get('/api/whoami');
        expectError(res, 403, 'unknown_certificate');
        assert.ok(res.json.error.message.includes(pki.dn('eve')), res.json.error.message);
      });

      it('answers 401 on every route of the OpenAPI document without a certificate', async () => {
        const doc = (await anonymous.get('/api/openapi.json')).json;
        let checked = 0;
        for (const [path, operations] of Object.entries(
          doc.paths as Record<string, Record<string, unknown>>,
        )) {
          if (path === '/api/health') continue;
          const concrete = path.replace(/\{[^}]+\}/g, 'x');
          for (const method of Object.keys(operations)) {
            if (method === 'head') continue;
            if (method === 'options') continue; // what the tus server supports is no secret
            // downloads of public images need no certificate: without one, a private or missing image is a 404
            if (method === 'get' && path === '/api/images/raw/{user}/{image}') continue;
            // nor their list and metadata (what the web interface shows): the public ones, or a 404
            if (method === 'get' && (path === '/api/images' || path === '/api/images/{user}/{image}'))
              continue;
            // nor signed image lists: sites fetch them without one (a list, or a 404)
            if (method === 'get' && /\/image-list(\.json)?$/.test(path)) continue;
            // nor browser sign-in, which is how one gets in without a certificate
            if (path.startsWith('/api/auth/')) continue;
            const res = await request(
              `${server.httpsUrl}${concrete}`,
              method.toUpperCase(),
              null,
              pki.ca.certPem,
            );
            expectError(res, 401, 'certificate_required');
            checked++;
          }
        }
        assert.ok(checked >= 40, `only ${checked} routes checked`);
      });

      it('refuses before reading a body: 401, not 413, for 2 MiB without a certificate', async () => {
        const big = { user_name: 'x', client_dn: '/CN=x', full_name: 'x'.repeat(2 * 1024 * 1024) };
        expectError(await anonymous.post('/api/users', big), 401, 'certificate_required');
        expectError(await as('eve').post('/api/users', big), 403, 'unknown_certificate');
        expectError(await as('admin').post('/api/users', big), 413, 'payload_too_large');
      });

      it('answers a missing image without a certificate as 404, and an unknown certificate with why', async () => {
        expectError(await anonymous.get('/api/images/x/x'), 404, 'image_not_found');
        expectError(await as('eve').get('/api/images/x/x'), 403, 'unknown_certificate');
      });

      it('keeps open routes open to refused and unknown certificates', async () => {
        assert.equal((await as('eve').get('/api/openapi.json')).status, 200);
        assert.equal(
          (await clientFor(server.httpsUrl, pki.ca.certPem, pki.bad('expired')).get('/api/health')).status,
          200,
        );
      });
    });

    describe('users', () => {
      it('creates users from DNs, by JSON and by form fields, in either DN form', async () => {
        const bob = await as('admin').post('/api/users', {
          user_name: 'bob',
          client_dn: pki.dn('bob'),
          full_name: 'Bob B',
          email: 'bob@example.org',
        });
        assert.equal(bob.status, 201, bob.text);
        assert.equal(bob.headers.location, `${server.httpsUrl}/api/users/bob`);
        assert.deepEqual(bob.json.groups, ['users']);
        const pam = await as('admin').post(
          '/api/users',
          { user_name: 'pam', cert_dn: pki.dnRfc2253('pam') },
          { form: true },
        );
        assert.equal(pam.status, 201, pam.text);
        assert.equal(pam.json.client_dn, pki.dn('pam'), 'RFC 2253 input is stored in slash form');
        const doug = await as('admin').post('/api/users', { user_name: 'doug', client_dn: pki.dn('doug') });
        assert.equal(doug.status, 201);
        assert.equal((await as('bob').get('/api/whoami')).json.user_name, 'bob');
        assert.equal((await as('pam').get('/api/whoami')).json.user_name, 'pam');
      });

      it('rejects duplicates, bad names, bad DNs and unknown fields with clear errors', async () => {
        expectError(
          await as('admin').post('/api/users', { user_name: 'bob', client_dn: '/CN=other' }),
          409,
          'user_exists',
        );
        expectError(
          await as('admin').post('/api/users', { user_name: 'bob2', client_dn: pki.dn('bob') }),
          409,
          'dn_in_use',
        );
        const badName = await as('admin').post('/api/users', { user_name: 'Bad Name', client_dn: '/CN=y' });
        expectError(badName, 400, 'invalid_name');
        assert.match(badName.json.error.message, /'Bad Name'.*lowercase letters/);
        for (const typo of ['/O=Grid/CN', 'O=Grid/CN=Hank', '/O=Grid/CN=Gina/', '/O=Grid/CN=']) {
          expectError(
            await as('admin').post('/api/users', { user_name: 'typo', client_dn: typo }),
            400,
            'invalid_dn',
          );
        }
        expectError(
          await as('admin').post('/api/users', { user_name: 'raw', client_dn: '/CN=z' }),
          400,
          'invalid_name',
        );
        expectError(
          await as('admin').post('/api/users', { user_name: 'zed', client_dn: 'not a dn' }),
          400,
          'invalid_dn',
        );
        const unknown = await as('admin').post('/api/users', {
          user_name: 'zed',
          client_dn: '/CN=zed',
          colour: 'red',
        });
        expectError(unknown, 400, 'unknown_field');
        assert.match(unknown.json.error.message, /colour/);
        expectError(
          await as('admin').post('/api/users', { user_name: 'zed', client_dn: '/CN=zed', groups: ['nope'] }),
          400,
          'invalid_field',
        );
        expectError(await as('admin').post('/api/users', '{"user_name":', {}), 400, 'bad_request');
      });

      it('lets only user_create holders create users', async () => {
        expectError(
          await as('bob').post('/api/users', { user_name: 'mallory', client_dn: '/CN=m' }),
          403,
          'forbidden',
        );
      });

      it('shows DNs and emails of others to admins only', async () => {
        const asBob = await as('bob').get('/api/users');
        assert.equal(asBob.status, 200);
        const names = asBob.json.items.map((u: { user_name: string }) => u.user_name);
        assert.deepEqual(names, ['admin', 'bob', 'doug', 'pam']);
        const pamSeenByBob = asBob.json.items.find((u: { user_name: string }) => u.user_name === 'pam');
        assert.equal(pamSeenByBob.client_dn, undefined);
        assert.equal(pamSeenByBob.email, undefined);
        const bobSeenByBob = asBob.json.items.find((u: { user_name: string }) => u.user_name === 'bob');
        assert.equal(bobSeenByBob.email, 'bob@example.org');
        const pamSeenByAdmin = await as('admin').get('/api/users/pam');
        assert.equal(pamSeenByAdmin.json.client_dn, pki.dn('pam'));
        expectError(await as('bob').get('/api/users/nobody'), 404, 'user_not_found');
        const page = await as('bob').get('/api/users?limit=2');
        assert.equal(page.json.items.length, 2);
        assert.equal(page.json.total, 4);
        assert.equal(page.json.next, `${server.httpsUrl}/api/users?limit=2&offset=2`);
        const last = await as('bob').get('/api/users?limit=2&offset=2');
        assert.deepEqual(
          last.json.items.map((u: { user_name: string }) => u.user_name),
          ['doug', 'pam'],
        );
        assert.equal(last.json.next, null);
      });

      it('lets users edit their own full name and email, and nothing else', async () => {
        const ok = await as('bob').post(
          '/api/users/bob',
          { full_name: 'Robert B', email: 'rob@example.org' },
          { form: true },
        );
        assert.equal(ok.status, 200, ok.text);
        assert.equal(ok.json.full_name, 'Robert B');
        expectError(await as('bob').patch('/api/users/bob', { client_dn: '/CN=other' }), 403, 'forbidden');
        expectError(await as('bob').patch('/api/users/bob', { suspended: true }), 403, 'forbidden');
        expectError(await as('bob').patch('/api/users/pam', { full_name: 'P' }), 403, 'forbidden');
      });

      it('takes an email address another user gives too, and never says whose it is', async () => {
        // An email is only a contact address: refusing one that is taken would tell anyone whose it is.
        const own = await as('pam').patch('/api/users/pam', { email: 'rob@example.org' });
        assert.equal(own.status, 200, own.text);
        assert.equal(own.json.email, 'rob@example.org');
        const byAdmin = await as('admin').patch('/api/users/doug', { email: 'rob@example.org' });
        assert.equal(byAdmin.status, 200, byAdmin.text);
        const created = await as('admin').post('/api/users', {
          user_name: 'rob',
          client_dn: '/O=Elsewhere/CN=Rob',
          email: 'rob@example.org',
        });
        assert.equal(created.status, 201, created.text);
        for (const name of ['bob', 'pam', 'doug', 'rob'])
          assert.equal((await as('admin').get(`/api/users/${name}`)).json.email, 'rob@example.org', name);
        assert.equal((await as('admin').delete('/api/users/rob')).status, 204);
        for (const name of ['pam', 'doug']) await as('admin').patch(`/api/users/${name}`, { email: null });
      });

      it('lets admins suspend, which blocks login with 403, and unsuspend', async () => {
        const res = await as('admin').post('/api/users/doug', { suspended: 'true' }, { form: true });
        assert.equal(res.json.suspended, true);
        expectError(await as('doug').get('/api/whoami'), 403, 'user_suspended');
        await as('admin').patch('/api/users/doug', { suspended: false });
        assert.equal((await as('doug').get('/api/whoami')).status, 200);
      });

      it('renames users and changes DNs (admins)', async () => {
        const res = await as('admin').patch('/api/users/doug', { user_name: 'douglas' });
        assert.equal(res.status, 200);
        assert.equal(res.json.url, `${server.httpsUrl}/api/users/douglas`);
        assert.equal((await as('doug').get('/api/whoami')).json.user_name, 'douglas');
        expectError(await as('admin').patch('/api/users/douglas', { user_name: 'bob' }), 409, 'user_exists');
        expectError(
          await as('admin').patch('/api/users/douglas', { client_dn: pki.dn('bob') }),
          409,
          'dn_in_use',
        );
        await as('admin').patch('/api/users/douglas', { user_name: 'doug' });
      });
    });

    describe('groups', () => {
      it('creates a group with members and permissions', async () => {
        const res = await as('admin').post(
          '/api/groups',
          { name: 'atlas', users: 'bob,pam', permissions: ['image_create'] },
          { form: true },
        );
        assert.equal(res.status, 201, res.text);
        assert.deepEqual(res.json.users, ['bob', 'pam']);
        assert.deepEqual(res.json.permissions, ['image_create']);
        assert.equal(res.json.protected, false);
        expectError(await as('admin').post('/api/groups', { name: 'atlas' }), 409, 'group_exists');
        expectError(await as('bob').post('/api/groups', { name: 'bobs' }), 403, 'forbidden');
      });

      it('lists and shows groups, members and permissions', async () => {
        const list = await as('bob').get('/api/groups');
        assert.deepEqual(
          list.json.items.map((g: { name: string }) => g.name),
          ['admins', 'atlas', 'users'],
        );
        assert.deepEqual((await as('bob').get('/api/groups/atlas/users')).json, ['bob', 'pam']);
        assert.deepEqual((await as('bob').get('/api/groups/users/permissions')).json, [
          'image_create',
          'user_modify_self',
        ]);
        const mine = await as('bob').get('/api/users/bob/groups');
        assert.deepEqual(
          mine.json.items.map((g: { name: string }) => g.name),
          ['atlas', 'users'],
        );
        expectError(await as('bob').get('/api/groups/nope'), 404, 'group_not_found');
      });

      it('adds and removes members and permissions, idempotently', async () => {
        let res = await as('admin').post('/api/groups/atlas/users/doug');
        assert.deepEqual(res.json.users, ['bob', 'doug', 'pam']);
        res = await as('admin').post('/api/groups/atlas/users/doug');
        assert.deepEqual(res.json.users, ['bob', 'doug', 'pam']);
        res = await as('admin').delete('/api/groups/atlas/users/doug');
        assert.deepEqual(res.json.users, ['bob', 'pam']);
        res = await as('admin').post('/api/groups/atlas/permissions/image_modify_group');
        assert.deepEqual(res.json.permissions, ['image_create', 'image_modify_group']);
        res = await as('admin').delete('/api/groups/atlas/permissions/image_modify_group');
        assert.deepEqual(res.json.permissions, ['image_create']);
        expectError(await as('admin').post('/api/groups/atlas/permissions/fly'), 404, 'permission_not_found');
        expectError(await as('admin').post('/api/groups/atlas/users/nobody'), 404, 'user_not_found');
        expectError(await as('bob').post('/api/groups/atlas/users/doug'), 403, 'forbidden');
      });

      it('stops membership managers from promoting themselves', async () => {
        await as('admin').post('/api/groups', {
          name: 'managers',
          users: ['pam'],
          permissions: ['group_modify_membership', 'group_modify_permissions'],
        });
        expectError(await as('pam').post('/api/groups/admins/users/pam'), 403, 'forbidden');
        expectError(await as('pam').post('/api/groups/managers/permissions/user_delete'), 403, 'forbidden');
        // atlas grants only image_create, which pam holds through users: she may manage it
        assert.equal((await as('pam').post('/api/groups/atlas/users/doug')).status, 200);
        await as('pam').delete('/api/groups/atlas/users/doug');
        await as('admin').delete('/api/groups/managers');
      });

      it('renames and deletes groups, but never the protected ones', async () => {
        const res = await as('admin').patch('/api/groups/atlas', { name: 'atlas-vo' });
        assert.equal(res.json.name, 'atlas-vo');
        await as('admin').post('/api/groups/atlas-vo', { name: 'atlas' });
        expectError(await as('admin').delete('/api/groups/admins'), 409, 'group_protected');
        expectError(await as('admin').patch('/api/groups/users', { name: 'people' }), 409, 'group_protected');
        expectError(await as('admin').delete('/api/groups/admins/users/admin'), 409, 'conflict');
        await as('admin').post('/api/groups', { name: 'tmp' });
        assert.equal((await as('admin').delete('/api/groups/tmp')).status, 204);
        expectError(await as('admin').get('/api/groups/tmp'), 404, 'group_not_found');
      });
    });

    describe('images and namespaces (paper, figure 2)', () => {
      it('creates slots in the caller namespace, with the upload URL in Location', async () => {
        for (const user of ['bob', 'pam', 'doug']) {
          for (const name of [`${user}-base.img`, 'rhel5.5.img']) {
            const res = await as(user).post('/api/images', { name, os_type: 'linux', os_arch: 'x86_64' });
            assert.equal(res.status, 201, res.text);
            assert.equal(res.headers.location, `${server.httpsUrl}/api/images/raw/${user}/${name}`);
            assert.equal(res.json.owner, user);
            assert.equal(res.json.version, 0);
            assert.equal(res.json.raw_file_uploaded, false);
          }
        }
        await as('pam').post(
          '/api/images',
          { name: 'debian6.img.gz', unauthenticated_access: 'true' },
          { form: true },
        );
        expectError(await as('bob').post('/api/images', { name: 'rhel5.5.img' }), 409, 'image_exists');
        expectError(await as('bob').post('/api/images', { name: '.hidden' }), 400, 'invalid_name');
        expectError(await as('bob').post('/api/images', { name: 'raw' }), 400, 'invalid_name');
        expectError(
          await as('bob').post('/api/images', { name: 'x.img', hypervisor: 'kvm', size: 5 }),
          400,
          'unknown_field',
        );
      });

      it('resolves /api/images/{image} to the caller and /api/images/{user}/{image} explicitly', async () => {
        const implicit = await as('bob').get('/api/images/rhel5.5.img');
        const explicit = await as('bob').get('/api/images/bob/rhel5.5.img');
        assert.equal(implicit.status, 200);
        assert.equal(implicit.json.owner, 'bob');
        assert.equal(implicit.json.uuid, explicit.json.uuid);
        assert.equal(implicit.json.url, `${server.httpsUrl}/api/images/bob/rhel5.5.img`);
        assert.equal(implicit.json.file_url, `${server.httpsUrl}/api/images/raw/bob/rhel5.5.img`);
        assert.deepEqual(implicit.json.shared_with, { users: [], groups: [] });
        const pams = await as('pam').get('/api/images/rhel5.5.img');
        assert.equal(pams.json.owner, 'pam');
        assert.notEqual(pams.json.uuid, implicit.json.uuid);
      });

      it("hides another user's private image as 404, and shows shared and public ones", async () => {
        expectError(await as('pam').get('/api/images/bob/rhel5.5.img'), 404, 'image_not_found');
        expectError(await as('bob').get('/api/images/debian6.img.gz'), 404, 'image_not_found');
        const pub = await as('bob').get('/api/images/pam/debian6.img.gz');
        assert.equal(pub.status, 200);
        // Without a certificate: the public image in the list and shown, the private one neither.
        const list = await anonymous.get('/api/images');
        assert.equal(list.status, 200);
        for (const image of list.json.items) assert.equal(image.unauthenticated_access, true);
        const names = list.json.items.map((i: { owner: string; name: string }) => `${i.owner}/${i.name}`);
        assert.ok(names.includes('pam/debian6.img.gz'), names.join(', '));
        assert.ok(!names.includes('bob/rhel5.5.img'), names.join(', '));
        assert.equal((await anonymous.get('/api/images/pam/debian6.img.gz')).status, 200);
        expectError(await anonymous.get('/api/images/bob/rhel5.5.img'), 404, 'image_not_found');
        assert.equal(pub.json.http_file_url, `${server.httpUrl}/api/images/raw/pam/debian6.img.gz`);
        assert.equal(pub.json.shared_with, undefined, 'share lists are for the owner');
        const shared = await as('bob').post('/api/images/rhel5.5.img/share/user/pam');
        assert.equal(shared.status, 200);
        assert.deepEqual(shared.json.shared_with.users, ['pam']);
        assert.equal((await as('pam').get('/api/images/bob/rhel5.5.img')).status, 200);
        expectError(await as('doug').get('/api/images/bob/rhel5.5.img'), 404, 'image_not_found');
        assert.equal((await as('admin').get('/api/images/bob/rhel5.5.img')).status, 200);
      });

      it('shares with groups the owner belongs to, and unshares', async () => {
        const res = await as('bob').post('/api/images/bob/bob-base.img/share/group/atlas');
        assert.equal(res.status, 200, res.text);
        assert.deepEqual(res.json.shared_with.groups, ['atlas']);
        assert.equal((await as('pam').get('/api/images/bob/bob-base.img')).status, 200, 'pam is in atlas');
        expectError(await as('bob').post('/api/images/bob-base.img/share/group/admins'), 403, 'forbidden');
        expectError(
          await as('bob').post('/api/images/bob-base.img/share/group/nope'),
          404,
          'group_not_found',
        );
        expectError(
          await as('bob').post('/api/images/bob-base.img/share/user/nobody'),
          404,
          'user_not_found',
        );
        expectError(await as('pam').post('/api/images/bob/bob-base.img/share/user/doug'), 403, 'forbidden');
        const shared = await as('pam').get('/api/users/pam/shared');
        assert.deepEqual(shared.json.items.map((i: { url: string }) => i.url).sort(), [
          `${server.httpsUrl}/api/images/bob/bob-base.img`,
          `${server.httpsUrl}/api/images/bob/rhel5.5.img`,
        ]);
        expectError(await as('bob').get('/api/users/pam/shared'), 403, 'forbidden');
        const withGroup = await as('pam').get('/api/groups/atlas/shared');
        assert.deepEqual(
          withGroup.json.items.map((i: { url: string }) => i.url),
          [`${server.httpsUrl}/api/images/bob/bob-base.img`],
          'only what is shared with the group, not with pam herself',
        );
        expectError(await as('doug').get('/api/groups/atlas/shared'), 403, 'forbidden'); // not a member
        assert.equal((await as('admin').get('/api/groups/atlas/shared')).json.total, 1);
        expectError(await as('pam').get('/api/groups/nope/shared'), 404, 'group_not_found');
        await as('bob').delete('/api/images/bob-base.img/share/group/atlas');
        expectError(await as('pam').get('/api/images/bob/bob-base.img'), 404, 'image_not_found');
      });

      it('lists what the caller may see, filtered, sorted and paginated', async () => {
        const urlsOf = (res: { json: { items: { owner: string; name: string }[] } }) =>
          res.json.items.map((i) => `${i.owner}/${i.name}`);
        const all = await as('bob').get('/api/images');
        assert.deepEqual(urlsOf(all), ['bob/bob-base.img', 'pam/debian6.img.gz', 'bob/rhel5.5.img']);
        assert.equal(all.json.total, 3);
        assert.deepEqual(urlsOf(await as('pam').get('/api/images?shared=true')), ['bob/rhel5.5.img']);
        assert.deepEqual(urlsOf(await as('bob').get('/api/images?public=true')), ['pam/debian6.img.gz']);
        assert.deepEqual(urlsOf(await as('bob').get('/api/images?owner=bob&name_prefix=rhel')), [
          'bob/rhel5.5.img',
        ]);
        assert.deepEqual(urlsOf(await as('bob').get('/api/images?sort=owner&order=desc')), [
          'pam/debian6.img.gz',
          'bob/rhel5.5.img',
          'bob/bob-base.img',
        ]);
        assert.equal((await as('admin').get('/api/images')).json.total, 7, 'admins see everything');
        const first = await as('admin').get('/api/images?limit=4&os_type=linux');
        assert.equal(first.json.items.length, 4);
        const second = await as('admin').get(
          new URL(first.json.next).pathname + new URL(first.json.next).search,
        );
        assert.deepEqual(
          [...urlsOf(first), ...urlsOf(second)],
          [
            'bob/bob-base.img',
            'doug/doug-base.img',
            'pam/pam-base.img',
            'bob/rhel5.5.img',
            'doug/rhel5.5.img',
            'pam/rhel5.5.img',
          ],
        );
        expectError(await as('bob').get('/api/images?colour=red'), 400, 'unknown_field');
        expectError(await as('bob').get('/api/images?sort=size'), 400, 'invalid_field');
        const users = await as('pam').get('/api/users/bob/images');
        assert.deepEqual(urlsOf(users), ['bob/rhel5.5.img']);
      });

      it('modifies metadata, renames, and refuses conflicts', async () => {
        const res = await as('bob').patch('/api/images/rhel5.5.img', {
          description: 'Analysis VM',
          os_variant: 'rhel5',
          hypervisor: 'kvm',
          expires: '2099-01-01T00:00:00Z',
        });
        assert.equal(res.status, 200, res.text);
        assert.equal(res.json.description, 'Analysis VM');
        assert.equal(res.json.expires, '2099-01-01T00:00:00.000Z');
        assert.equal(res.json.expired, false);
        const renamed = await as('bob').post(
          '/api/images/bob/rhel5.5.img',
          { name: 'rhel6.img' },
          { form: true },
        );
        assert.equal(renamed.json.url, `${server.httpsUrl}/api/images/bob/rhel6.img`);
        assert.deepEqual(renamed.json.shared_with.users, ['pam'], 'shares follow a rename');
        expectError(
          await as('bob').patch('/api/images/rhel6.img', { name: 'bob-base.img' }),
          409,
          'image_exists',
        );
        expectError(
          await as('bob').patch('/api/images/rhel6.img', { expires: 'tomorrow' }),
          400,
          'invalid_field',
        );
        expectError(await as('bob').patch('/api/images/rhel6.img', { version: 9 }), 400, 'unknown_field');
        expectError(
          await as('pam').patch('/api/images/bob/rhel6.img', { description: 'mine' }),
          403,
          'forbidden',
        );
        expectError(
          await as('doug').patch('/api/images/bob/rhel6.img', { description: 'x' }),
          404,
          'image_not_found',
        );
        const expired = await as('bob').patch('/api/images/rhel6.img', { expires: '2001-01-01' });
        assert.equal(expired.json.expired, true);
        for (const bad of [
          '2024-02-30',
          '2030-01-01 junk',
          '2030-01-01T12:00',
          '0000-01-01',
          '2030-01-01T25:00Z',
        ]) {
          expectError(await as('bob').patch('/api/images/rhel6.img', { expires: bad }), 400, 'invalid_field');
        }
        const offset = await as('bob').patch('/api/images/rhel6.img', { expires: '2030-01-01T12:00+02:00' });
        assert.equal(offset.json.expires, '2030-01-01T10:00:00.000Z');
        const cleared = await as('bob').patch('/api/images/rhel6.img', { expires: '' }, { form: true });
        assert.equal(cleared.json.expires, null);
      });

      it('enforces read_only against deletion', async () => {
        await as('bob').patch('/api/images/rhel6.img', { read_only: true });
        expectError(await as('bob').delete('/api/images/rhel6.img'), 409, 'image_read_only');
        expectError(await as('bob').delete('/api/images/rhel6.img?dry_run=true'), 409, 'image_read_only');
        await as('bob').patch('/api/images/rhel6.img', { read_only: false });
      });

      it('answers a dry-run deletion as the deletion would, and deletes nothing', async () => {
        assert.equal((await as('bob').delete('/api/images/rhel6.img?dry_run=true')).status, 204);
        assert.equal((await as('bob').get('/api/images/rhel6.img')).status, 200, 'still there');
        expectError(
          await as('doug').delete('/api/images/bob/rhel6.img?dry_run=true'),
          404,
          'image_not_found',
        );
        expectError(await as('bob').delete('/api/images/rhel6.img?dry_run=maybe'), 400, 'invalid_field');
      });

      it('lets only admins create in another namespace or give images away directly', async () => {
        expectError(
          await as('bob').post('/api/images', { name: 'gift.img', owner: 'pam' }),
          403,
          'forbidden',
        );
        const made = await as('admin').post(
          '/api/images',
          { name: 'gift.img', user_name: 'pam' },
          { form: true },
        );
        assert.equal(made.status, 201);
        assert.equal(made.json.owner, 'pam');
        // An owner offers (transfers-suite.ts); an admin gives at once.
        expectError(
          await as('pam').patch('/api/images/gift.img', { owner: 'doug' }),
          403,
          'transfer_offer_required',
        );
        const given = await as('admin').patch('/api/images/pam/gift.img', { owner: 'doug' });
        assert.equal(given.json.owner, 'doug');
        expectError(
          await as('admin').patch('/api/images/doug/gift.img', { owner: 'nobody' }),
          400,
          'invalid_field',
        );
        expectError(
          await as('admin').patch('/api/images/doug/rhel5.5.img', { owner: 'pam' }),
          409,
          'image_exists',
        );
      });

      it('deletes images, and users with their images', async () => {
        assert.equal((await as('doug').delete('/api/images/gift.img')).status, 204);
        expectError(await as('doug').get('/api/images/gift.img'), 404, 'image_not_found');
        expectError(await as('bob').delete('/api/images/pam/pam-base.img'), 404, 'image_not_found');
        expectError(await as('bob').delete('/api/images/pam/debian6.img.gz'), 403, 'forbidden');
        assert.equal((await as('admin').delete('/api/users/doug')).status, 204);
        expectError(await as('admin').get('/api/images/doug/rhel5.5.img'), 404, 'image_not_found');
        expectError(await as('doug').get('/api/whoami'), 403, 'unknown_certificate');
        expectError(await as('admin').delete('/api/users/admin'), 409, 'conflict');
        expectError(await as('bob').delete('/api/users/pam'), 403, 'forbidden');
      });
    });

    describe('permissions beyond ownership', () => {
      before(async () => {
        for (const name of ['mod', 'boss', 'plain']) {
          assert.equal(
            (await as('admin').post('/api/users', { user_name: name, client_dn: pki.dn(name) })).status,
            201,
          );
        }
        const groups = [
          {
            name: 'moderators',
            users: ['mod'],
            permissions: ['image_modify', 'image_delete', 'user_modify', 'user_delete'],
          },
          { name: 'bosses', users: ['boss'], permissions: ['group_delete'] },
          { name: 'crew', users: ['bob', 'pam'], permissions: ['image_modify_group'] },
        ];
        for (const group of groups) assert.equal((await as('admin').post('/api/groups', group)).status, 201);
        for (const name of ['private.img', 'crew.img']) await as('bob').post('/api/images', { name });
        await as('admin').post('/api/images', { name: 'admins-own.img' });
      });

      it('image_modify and image_delete reach images not shared with their holder', async () => {
        const res = await as('mod').patch('/api/images/bob/private.img', { description: 'moderated' });
        assert.equal(res.status, 200, res.text);
        assert.equal((await as('mod').get('/api/images/bob/private.img')).json.description, 'moderated');
        assert.equal((await as('mod').delete('/api/images/bob/private.img')).status, 204);
        expectError(await as('bob').get('/api/images/private.img'), 404, 'image_not_found');
      });

      it('image_modify_group reaches images of fellow group members only', async () => {
        const res = await as('pam').patch('/api/images/bob/crew.img', { description: 'by pam' });
        assert.equal(res.status, 200, res.text);
        expectError(
          await as('pam').patch('/api/images/admin/admins-own.img', { description: 'x' }),
          404,
          'image_not_found',
        );
        // pam sees crew.img (she may change it) but may not delete it: a 403 says so.
        expectError(await as('pam').delete('/api/images/bob/crew.img'), 403, 'forbidden');
      });

      it('user_modify and user_delete reach only users who hold nothing more than the actor', async () => {
        assert.equal(
          (await as('mod').patch('/api/users/plain', { full_name: 'Plain (moderated)' })).status,
          200,
        );
        expectError(await as('mod').patch('/api/users/bob', { full_name: 'x' }), 403, 'forbidden'); // bob holds image_modify_group
        expectError(
          await as('mod').patch('/api/users/boss', { client_dn: '/CN=taken over' }),
          403,
          'forbidden',
        );
        expectError(await as('mod').delete('/api/users/boss'), 403, 'forbidden');
        expectError(await as('mod').patch('/api/users/admin', { suspended: true }), 403, 'forbidden');
        assert.equal((await as('boss').get('/api/whoami')).status, 200, 'boss still logs in');
      });

      it('lets only the owner or an admin publish an image', async () => {
        expectError(
          await as('mod').patch('/api/images/bob/crew.img', { unauthenticated_access: true }),
          403,
          'forbidden',
        );
        expectError(
          await as('pam').patch('/api/images/bob/crew.img', { unauthenticated_access: true }),
          403,
          'forbidden',
        );
        assert.equal(
          (await as('bob').patch('/api/images/crew.img', { unauthenticated_access: false })).status,
          200,
        );
      });

      it("does not confirm another user's DN or email when they are sent back unchanged", async () => {
        expectError(await as('pam').patch('/api/users/bob', { client_dn: pki.dn('bob') }), 403, 'forbidden');
        expectError(
          await as('pam').patch('/api/users/bob', { client_dn: '/CN=wrong guess' }),
          403,
          'forbidden',
        );
        const own = (await as('bob').get('/api/whoami')).json;
        const back = await as('bob').patch('/api/users/bob', {
          client_dn: own.client_dn,
          suspended: false,
          full_name: 'Bob again',
        });
        assert.equal(back.status, 200, 'unchanged private fields are fine for the user themself');
      });

      it('hides who holds a DN from non-admins', async () => {
        await as('admin').post('/api/groups/moderators/permissions/user_create');
        const res = await as('mod').post('/api/users', { user_name: 'copycat', client_dn: pki.dn('pam') });
        expectError(res, 409, 'dn_in_use');
        assert.doesNotMatch(res.json.error.message, /pam/);
      });
    });

    describe('concurrent changes', () => {
      it('never empties admins when two admins remove or delete each other at once', async () => {
        for (let round = 0; round < 6; round++) {
          const other = `admin${round}`;
          const made = await as('admin').post('/api/users', {
            user_name: other,
            client_dn: pki.dn(other),
            groups: ['admins'],
          });
          assert.equal(made.status, 201, made.text);
          const results = await Promise.all([
            round % 2
              ? as('admin').delete(`/api/users/${other}`)
              : as('admin').delete(`/api/groups/admins/users/${other}`),
            as(other).delete('/api/groups/admins/users/admin'),
          ]);
          for (const res of results) assert.ok([200, 204, 403, 409].includes(res.status), res.text);
          const admins = (await as('bob').get('/api/groups/admins')).json.users as string[];
          assert.ok(admins.length >= 1, `round ${round}: admins emptied`);
          if (!admins.includes('admin')) await as(admins[0] as string).post('/api/groups/admins/users/admin');
          if ((await as('admin').get(`/api/users/${other}`)).status === 200)
            await as('admin').delete(`/api/users/${other}`);
        }
        assert.deepEqual((await as('bob').get('/api/groups/admins')).json.users, ['admin']);
      });

      it('answers 4xx, never 5xx, when a user is deleted while images are shared with them', async () => {
        await as('admin').post('/api/users', { user_name: 'victim', client_dn: pki.dn('victim') });
        await as('bob').post('/api/images', { name: 'race.img' });
        const shares = Array.from({ length: 8 }, () =>
          as('bob').post('/api/images/race.img/share/user/victim'),
        );
        const results = await Promise.all([...shares, as('admin').delete('/api/users/victim')]);
        for (const res of results) assert.ok(res.status < 500, `${res.status} ${res.text}`);
        assert.deepEqual((await as('bob').get('/api/images/race.img')).json.shared_with.users, []);
      });
    });

    describe('grid proxies', () => {
      for (const kind of ['rfc', 'rfc-of-rfc', 'legacy', 'draft'] as const) {
        it(`authenticates a ${kind} proxy as its end-entity user`, async () => {
          const res = await clientFor(server.httpsUrl, pki.ca.certPem, pki.proxy('bob', kind)).get(
            '/api/whoami',
          );
          assert.equal(res.status, 200, res.text);
          assert.equal(res.json.user_name, 'bob');
        });
      }

      it('lets a limited proxy read but not write', async () => {
        const limited = clientFor(server.httpsUrl, pki.ca.certPem, pki.proxy('bob', 'limited'));
        assert.equal((await limited.get('/api/images')).status, 200);
        expectError(await limited.post('/api/images', { name: 'nope.img' }), 403, 'limited_proxy');
        expectError(
          await limited.patch('/api/images/bob-base.img', { description: 'x' }),
          403,
          'limited_proxy',
        );
        expectError(await limited.delete('/api/images/bob-base.img'), 403, 'limited_proxy');
      });

      for (const bad of [
        'expired',
        'not-yet-valid',
        'forged',
        'untrusted',
        'revoked',
        'non-proxy-signed-by-eec',
      ] as const) {
        it(`refuses a ${bad} certificate with 401 and the reason`, async () => {
          const res = await clientFor(server.httpsUrl, pki.ca.certPem, pki.bad(bad)).get('/api/whoami');
          expectError(res, 401, 'certificate_invalid');
          assert.ok(res.json.error.message.length > 30, res.json.error.message);
        });
      }
    });

    describe('protocol', () => {
      it('answers unknown routes with JSON 404 and serves an OpenAPI document', async () => {
        expectError(await as('bob').get('/api/nothing'), 404, 'not_found');
        const doc = await anonymous.get('/api/openapi.json');
        assert.equal(doc.status, 200);
        assert.equal(doc.json.openapi, '3.1.0');
        for (const path of [
          '/api/whoami',
          '/api/users/{user}',
          '/api/images/{user}/{image}',
          '/api/groups/{group}/users/{user}',
        ]) {
          assert.ok(doc.json.paths[path], `OpenAPI lacks ${path}`);
        }
        assert.ok(doc.json.components.schemas.Image);
      });

      it('refuses other content types with 415', async () => {
        const res = await as('bob').post('/api/images', 'name=x', {
          headers: { 'content-type': 'text/plain' },
        });
        expectError(res, 415, 'unsupported_media_type');
      });
    });
  });
}
