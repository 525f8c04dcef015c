/**
 * Endorsements and signed HEPiX image lists over real HTTPS, once per database engine (image-lists-sqlite,
 * image-lists-postgres): the lists verified by the real `openssl smime -verify -CApath` with its default
 * purpose, as sites verify them; every `hv:uri` downloaded without a certificate and checked against its
 * size and SHA-512; what endorsing pins (pruning, deletion); expiry, withdrawal, subscriber tokens.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { clientFor, expectError, type Response, request } from './helpers/http.ts';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import { type Engine, startServerFor, type TestServer } from './helpers/server.ts';

const run = promisify(execFile);
const DAY = 86_400_000;
const inDays = (days: number) => new Date(Date.now() + days * DAY).toISOString();
const sha512 = (data: Buffer) => createHash('sha512').update(data).digest('hex');

/** `openssl smime -verify` with its default purpose, as a site runs it: the content, or the failure. */
async function opensslVerify(message: string, caPath: string) {
  const dir = await mkdtemp(join(tmpdir(), 'repoman-smime-'));
  try {
    await writeFile(join(dir, 'list.smime'), message);
    const args = ['smime', '-verify', '-CApath', caPath, '-in', join(dir, 'list.smime')];
    const outputs = ['-out', join(dir, 'list.json'), '-signer', join(dir, 'signer.pem')];
    const result = await run('openssl', [...args, ...outputs]).then(
      () => ({ ok: true as const }),
      (error: { stderr?: string }) => ({ ok: false as const, stderr: String(error.stderr) }),
    );
    if (!result.ok) return result;
    const subject = (
      await run('openssl', [
        'x509',
        '-in',
        join(dir, 'signer.pem'),
        '-noout',
        '-subject',
        '-nameopt',
        'compat',
      ])
    ).stdout
      .trim()
      .replace(/^subject=\s*/, '');
    return { ok: true as const, content: await readFile(join(dir, 'list.json'), 'utf8'), subject };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export function imageListsSuite(engine: Engine) {
  describe(`image lists on ${engine}`, () => {
    let pki: TestPki;
    let server: TestServer;
    let dir: string;
    let caPath: string;
    let as: (name: string) => ReturnType<typeof clientFor>;
    const v1 = Buffer.from(Array.from({ length: 50_000 }, (_, i) => (i * 7 + (i >> 8)) & 255));
    const secret = Buffer.from('private bytes of the VO '.repeat(2000));
    /** Without a certificate, over HTTPS (or plain HTTP), as a site's tools fetch. */
    const anonymous = (path: string, headers: Record<string, string> = {}, plain = false) =>
      request(`${plain ? server.httpUrl : server.httpsUrl}${path}`, 'GET', null, pki.ca.certPem, { headers });
    const fetchUri = (uri: string) => request(uri, 'GET', null, pki.ca.certPem);
    const endorse = (who: string, body: object, group = 'atlas') =>
      as(who).post(`/api/groups/${group}/endorsements`, body);
    const listOf = async (path: string, headers: Record<string, string> = {}) => {
      const answer = await anonymous(`${path}.json`, headers);
      assert.equal(answer.status, 200, answer.text);
      return answer.json['hv:imagelist'];
    };
    /** Waits (polling, no fixed sleep) until `check` holds. */
    async function until(check: () => Promise<boolean>, what: string, ms = 15_000) {
      const end = Date.now() + ms;
      while (!(await check())) {
        assert.ok(Date.now() < end, `timed out waiting until ${what}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }

    before(async () => {
      pki = await makeTestPki();
      dir = await mkdtemp(join(tmpdir(), 'repoman-lists-'));
      // The server signs with a certificate of the test CA (user certificates allow S/MIME signing).
      const signer = pki.credential('lists');
      await writeFile(join(dir, 'signer.pem'), signer.cert);
      await writeFile(join(dir, 'signer.key'), signer.key, { mode: 0o600 });
      // The CA as sites keep it: a directory of hashed certificates.
      caPath = join(dir, 'certificates');
      await run('mkdir', ['-p', caPath]);
      await writeFile(join(caPath, 'ca.pem'), pki.ca.certPem);
      await run('openssl', ['rehash', caPath]);
      server = await startServerFor(pki, engine, {
        REPOMAN_IMAGE_LISTS_SIGNING_CERT: join(dir, 'signer.pem'),
        REPOMAN_IMAGE_LISTS_SIGNING_KEY: join(dir, 'signer.key'),
        REPOMAN_UPLOADS_KEEP_VERSIONS: '1',
      });
      as = (name) => clientFor(server.httpsUrl, pki.ca.certPem, pki.credential(name));
      const admin = as('admin');
      for (const name of ['bob', 'eve', 'mallory', 'olga'])
        assert.equal(
          (await admin.post('/api/users', { user_name: name, client_dn: pki.dn(name) })).status,
          201,
        );
      // eve endorses for atlas (the permission from one group, membership of atlas); olga holds the
      // permission but is not in atlas; mallory is in atlas without it.
      await admin.post('/api/groups', {
        name: 'endorsers',
        users: ['eve', 'olga'],
        permissions: ['image_endorse'],
      });
      assert.equal(
        (await admin.post('/api/groups', { name: 'atlas', users: ['bob', 'eve', 'mallory'] })).status,
        201,
      );
      assert.equal((await admin.post('/api/groups', { name: 'cms', users: ['olga'] })).status, 201);
      const bob = as('bob');
      await bob.post('/api/images', {
        name: 'pub.img',
        unauthenticated_access: true,
        description: 'A public worker node',
        os_type: 'linux',
        os_variant: 'almalinux9',
        os_arch: 'x86_64',
        hypervisor: 'kvm',
      });
      assert.equal((await bob.put('/api/images/raw/pub.img', v1)).status, 201);
      await bob.post('/api/images', { name: 'priv.img' });
      assert.equal((await bob.put('/api/images/raw/priv.img', secret)).status, 201);
      await bob.post('/api/images/priv.img/share/group/atlas');
      await bob.post('/api/images', { name: 'mine.img' });
      assert.equal((await bob.put('/api/images/raw/mine.img', Buffer.from('not shared'))).status, 201);
    });
    after(async () => {
      await server?.stop();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('lets an endorser endorse a version, and nobody else', async () => {
      const made = await endorse('eve', {
        image: 'bob/pub.img',
        expires: inDays(30),
        comment: 'Tested at CERN',
      });
      assert.equal(made.status, 201, made.text);
      assert.equal(made.json.version, 1);
      assert.equal(made.json.sha512, sha512(v1));
      assert.equal(made.json.endorser, 'eve');
      assert.equal(made.headers.location, made.json.url);
      expectError(await endorse('mallory', { image: 'bob/pub.img', expires: inDays(30) }), 403, 'forbidden');
      expectError(await endorse('olga', { image: 'bob/pub.img', expires: inDays(30) }), 403, 'forbidden');
      expectError(await endorse('bob', { image: 'bob/pub.img', expires: inDays(30) }), 403, 'forbidden');
      // Not visible to the group (bob's own, not shared): refused, though eve can... not even see it.
      expectError(
        await endorse('eve', { image: 'bob/mine.img', expires: inDays(30) }),
        404,
        'image_not_found',
      );
      expectError(
        await endorse('eve', { image: 'bob/pub.img', expires: '2020-01-01' }),
        400,
        'invalid_field',
      );
      expectError(
        await endorse('eve', { image: 'bob/pub.img', version: 9, expires: inDays(3) }),
        404,
        'version_not_found',
      );
      expectError(await endorse('eve', { image: 'pub.img', expires: inDays(3) }), 400, 'invalid_field');
      const list = await as('mallory').get('/api/groups/atlas/endorsements');
      assert.equal(list.status, 200, list.text);
      assert.deepEqual(
        list.json.items.map((e: { image: string }) => e.image),
        ['bob/pub.img'],
      );
    });

    it('publishes a signed list that openssl smime -verify accepts, signed by its hv:endorser', async () => {
      const answer = await anonymous('/api/groups/atlas/image-list');
      assert.equal(answer.status, 200, answer.text);
      assert.match(String(answer.headers['content-type']), /^text\/plain/);
      const verified = await opensslVerify(answer.text, caPath);
      assert.ok(verified.ok, verified.ok ? '' : verified.stderr);
      const document = JSON.parse(verified.content);
      const list = document['hv:imagelist'];
      assert.equal(list['hv:endorser']['hv:x509']['hv:dn'], verified.subject);
      assert.equal(list['hv:endorser']['hv:x509']['hv:dn'], pki.dn('lists'));
      assert.equal(list['hv:endorser']['hv:x509']['hv:ca'], pki.caDn);
      // The signed content is the JSON the server publishes beside it (line ends aside).
      const json = await anonymous('/api/groups/atlas/image-list.json');
      assert.equal(verified.content.replace(/\r\n/g, '\n'), json.text);
      // Over plain HTTP too: it holds public images only.
      const plain = await anonymous('/api/groups/atlas/image-list', {}, true);
      assert.equal(plain.status, 200, plain.text);
      assert.equal(plain.text, answer.text);
    });

    it('refuses a tampered list in openssl', async () => {
      const answer = await anonymous('/api/groups/atlas/image-list');
      const tampered = answer.text.replace('"hv:size": 50000', '"hv:size": 50001');
      assert.notEqual(tampered, answer.text);
      const verified = await opensslVerify(tampered, caPath);
      assert.equal(verified.ok, false);
    });

    it('holds the fields of the format, typed as it says', async () => {
      const list = await listOf('/api/groups/atlas/image-list');
      for (const key of [
        'dc:identifier',
        'dc:title',
        'dc:description',
        'dc:source',
        'hv:version',
        'hv:uri',
        'ad:vo',
      ])
        assert.equal(typeof list[key], 'string', key);
      assert.match(list['dc:identifier'], /^[0-9a-f-]{36}$/);
      assert.match(list['dc:date:created'], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      assert.match(list['dc:date:expires'], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      assert.equal(list['ad:vo'], 'atlas');
      assert.equal(list['hv:uri'], `${server.httpsUrl}/api/groups/atlas/image-list`);
      for (const key of ['dc:creator', 'hv:dn', 'hv:ca', 'hv:email'])
        assert.equal(typeof list['hv:endorser']['hv:x509'][key], 'string', key);
      assert.equal(list['hv:images'].length, 1);
      const image = list['hv:images'][0]['hv:image'];
      for (const key of [
        'dc:identifier',
        'dc:title',
        'dc:description',
        'hv:uri',
        'sl:checksum:sha512',
        'hv:version',
        'hv:format',
        'hv:hypervisor',
        'sl:os',
        'sl:osname',
        'sl:osversion',
        'sl:arch',
        'sl:comments',
        'ad:group',
        'ad:mpuri',
        'ad:user:fullname',
        'ad:user:guid',
        'ad:user:uri',
      ])
        assert.equal(typeof image[key], 'string', key);
      assert.equal(typeof image['hv:size'], 'number');
      assert.ok(Number.isInteger(image['hv:size']));
      const shown = (await as('bob').get('/api/images/bob/pub.img')).json;
      assert.equal(image['dc:identifier'], shown.uuid);
      assert.equal(image['hv:version'], '1');
      assert.equal(image['sl:comments'], 'Tested at CERN');
      assert.equal(image['sl:osname'], 'almalinux9');
      assert.equal(image['ad:user:guid'], 'eve');
      // The list's expiry: the endorsement's (30 days) capped by the setting (28 days by default).
      const expires = new Date(list['dc:date:expires']).getTime();
      assert.ok(Math.abs(expires - (Date.now() + 28 * DAY)) < 60_000, list['dc:date:expires']);
      assert.equal(shown.image_list_url, `${server.httpsUrl}/api/images/bob/pub.img/image-list`);
      // /metrics says when the group's list expires: with its endorsement, in 30 days.
      const metrics = (await anonymous('/metrics')).text;
      const seconds = Number(
        /^repoman_image_list_expiry_seconds\{group="atlas"\} (\d+)$/m.exec(metrics)?.[1],
      );
      assert.ok(Math.abs(seconds - 30 * 86400) < 120, `repoman_image_list_expiry_seconds: ${seconds}`);
      const group = (await as('bob').get('/api/groups/atlas')).json;
      assert.equal(group.image_list_url, `${server.httpsUrl}/api/groups/atlas/image-list`);
    });

    it('is signed once and served as it was until something changes, with its validators', async () => {
      const first = await anonymous('/api/groups/atlas/image-list');
      const again = await anonymous('/api/groups/atlas/image-list');
      assert.equal(again.text, first.text);
      assert.ok(first.headers.etag);
      assert.ok(first.headers['last-modified']);
      const cached = await anonymous('/api/groups/atlas/image-list', {
        'if-none-match': String(first.headers.etag),
      });
      assert.equal(cached.status, 304);
    });

    it('pins the endorsed version: a new upload neither changes the list nor prunes it', async () => {
      const before = await listOf('/api/groups/atlas/image-list');
      const v2 = Buffer.from('version two');
      assert.equal((await as('bob').put('/api/images/raw/pub.img', v2)).status, 200);
      assert.equal(
        (await as('bob').put('/api/images/raw/pub.img', Buffer.from('version three'))).status,
        200,
      );
      // keep_versions is 1 here: version 2 went, version 1 (endorsed) stays.
      const versions = (await as('bob').get('/api/images/bob/pub.img/versions')).json.items;
      assert.deepEqual(
        versions.map((v: { version: number }) => v.version),
        [3, 1],
      );
      const after = await listOf('/api/groups/atlas/image-list');
      assert.deepEqual(after['hv:images'], before['hv:images']);
      assert.equal(after['hv:version'], before['hv:version']);
      // Endorsing the new version is one step; the image keeps its identifier and raises hv:version.
      assert.equal((await endorse('eve', { image: 'bob/pub.img', expires: inDays(30) })).status, 201);
      const next = await listOf('/api/groups/atlas/image-list');
      const image = next['hv:images'][0]['hv:image'];
      assert.equal(image['hv:version'], '3');
      assert.equal(image['dc:identifier'], before['hv:images'][0]['hv:image']['dc:identifier']);
      assert.equal(next['dc:identifier'], before['dc:identifier']);
      assert.equal(Number(next['hv:version']), Number(before['hv:version']) + 1);
    });

    it('refuses to delete an endorsed image', async () => {
      expectError(await as('bob').delete('/api/images/pub.img'), 409, 'image_endorsed');
      assert.equal((await as('bob').get('/api/images/bob/pub.img')).status, 200);
    });

    it('serves a list of private images over HTTPS to subscriber tokens only, with capability URLs', async () => {
      assert.equal((await endorse('eve', { image: 'bob/priv.img', expires: inDays(10) })).status, 201);
      expectError(await anonymous('/api/groups/atlas/image-list'), 401, 'list_token_required');
      expectError(await anonymous('/api/groups/atlas/image-list', {}, true), 403, 'https_required');
      expectError(await anonymous('/api/images/bob/priv.img/image-list'), 404, 'image_not_found');
      expectError(
        await as('mallory').post('/api/groups/atlas/subscribers', { name: 'site' }),
        403,
        'forbidden',
      );
      const made = await as('eve').post('/api/groups/atlas/subscribers', { name: 'CERN cloud' });
      assert.equal(made.status, 201, made.text);
      assert.match(made.json.list_url, /^https:\/\/[^:]+:x-oauth-basic@/);
      const basic = {
        authorization: `Basic ${Buffer.from(`${made.json.token}:x-oauth-basic`).toString('base64')}`,
      };
      const wrong = { authorization: `Basic ${Buffer.from('nope:x-oauth-basic').toString('base64')}` };
      expectError(await anonymous('/api/groups/atlas/image-list', wrong), 401, 'list_token_required');
      const signed = await anonymous('/api/groups/atlas/image-list', basic);
      assert.equal(signed.status, 200, signed.text);
      assert.match(String(signed.headers['cache-control']), /private/);
      const verified = await opensslVerify(signed.text, caPath);
      assert.ok(verified.ok, verified.ok ? '' : verified.stderr);
      const list = JSON.parse(verified.content)['hv:imagelist'];
      // The list expires with its earliest endorsement (10 days).
      assert.ok(Math.abs(new Date(list['dc:date:expires']).getTime() - (Date.now() + 10 * DAY)) < 60_000);
      // Every hv:uri downloads without a certificate, to bytes of its size and SHA-512.
      assert.equal(list['hv:images'].length, 2);
      for (const { 'hv:image': image } of list['hv:images']) {
        const got = await fetchUri(image['hv:uri']);
        assert.equal(got.status, 200, `${image['hv:uri']}: ${got.text.slice(0, 200)}`);
        assert.equal(got.body.length, image['hv:size']);
        assert.equal(sha512(got.body), image['sl:checksum:sha512']);
      }
      const priv = list['hv:images'].find(
        (i: { 'hv:image': { 'dc:title': string } }) => i['hv:image']['dc:title'] === 'priv.img',
      );
      assert.match(priv['hv:image']['hv:uri'], /\?version=1&authz=/);
      assert.equal((await anonymous('/api/images/bob/priv.img/image-list.json', basic)).status, 200);
      // Revoked, the token reads nothing more.
      const subscribers = await as('eve').get('/api/groups/atlas/subscribers');
      assert.deepEqual(
        subscribers.json.map((s: { name: string; token?: string }) => [s.name, s.token]),
        [['CERN cloud', undefined]],
      );
      assert.equal((await as('eve').delete(`/api/groups/atlas/subscribers/${made.json.id}`)).status, 204);
      expectError(await anonymous('/api/groups/atlas/image-list', basic), 401, 'list_token_required');
      assert.equal((await as('eve').delete('/api/groups/atlas/endorsements/bob/priv.img')).status, 204);
    });

    it('drops an expired endorsement from the next list, and a withdrawn one', async () => {
      const soon = new Date(Date.now() + 3000).toISOString();
      assert.equal((await endorse('eve', { image: 'bob/priv.img', expires: soon })).status, 201);
      const titles = async () => {
        const made = await as('eve').post('/api/groups/atlas/subscribers', { name: 'poll' });
        const auth = { authorization: `Basic ${Buffer.from(`${made.json.token}:x`).toString('base64')}` };
        const answer = await anonymous('/api/groups/atlas/image-list.json', auth);
        await as('eve').delete(`/api/groups/atlas/subscribers/${made.json.id}`);
        if (answer.status !== 200) return null;
        return answer.json['hv:imagelist']['hv:images'].map(
          (i: { 'hv:image': { 'dc:title': string } }) => i['hv:image']['dc:title'],
        );
      };
      assert.deepEqual(await titles(), ['priv.img', 'pub.img']);
      await until(async () => JSON.stringify(await titles()) === '["pub.img"]', 'the endorsement expires');
      const all = await as('eve').get('/api/groups/atlas/endorsements?all=true');
      assert.ok(
        all.json.items.some(
          (e: { image: string; expired: boolean }) => e.image === 'bob/priv.img' && e.expired,
        ),
      );
      assert.equal((await as('eve').delete('/api/groups/atlas/endorsements/bob/priv.img')).status, 204);
      assert.equal((await as('eve').delete('/api/groups/atlas/endorsements/bob/pub.img')).status, 204);
      expectError(
        await as('eve').delete('/api/groups/atlas/endorsements/bob/pub.img'),
        404,
        'endorsement_not_found',
      );
      const empty = await listOf('/api/groups/atlas/image-list');
      assert.deepEqual(empty['hv:images'], []);
      // Unendorsed, the image can go.
      assert.equal((await as('bob').delete('/api/images/pub.img')).status, 204);
    });

    it('publishes an endorser’s own list signed on their machine, and nothing else in its place', async () => {
      // An image of its own: this test stands alone.
      await as('bob').post('/api/images', { name: 'signed.img', unauthenticated_access: true });
      assert.equal((await as('bob').put('/api/images/raw/signed.img', v1)).status, 201);
      const made = await endorse('eve', { image: 'bob/signed.img', expires: inDays(20), comment: 'Tested' });
      assert.equal(made.status, 201, made.text);
      const path = '/api/groups/atlas/endorsers/eve/image-list';
      expectError(await anonymous(path), 404, 'image_list_unsigned');
      const fetched = await anonymous(`${path}.json`);
      assert.equal(fetched.status, 200, fetched.text);
      const etag = String(fetched.headers.etag);
      const list = fetched.json['hv:imagelist'];
      // The endorser is the signer the list names, and the list's expiry is its endorsement's.
      assert.equal(list['hv:endorser']['hv:x509']['hv:dn'], pki.dn('eve'));
      assert.equal(list['hv:endorser']['hv:x509']['hv:ca'], pki.caDn);
      assert.ok(Math.abs(new Date(list['dc:date:expires']).getTime() - (Date.now() + 20 * DAY)) < 60_000);
      /** Signs `text` as `who` (a credential's files) with the system's openssl, as the client does. */
      const sign = async (text: string, who: { cert: string; key: string }) => {
        const work = await mkdtemp(join(tmpdir(), 'repoman-sign-'));
        try {
          await writeFile(join(work, 'cert.pem'), who.cert);
          await writeFile(join(work, 'key.pem'), who.key, { mode: 0o600 });
          await writeFile(join(work, 'list.json'), text);
          const chain = who.cert
            .split(/(?<=-----END CERTIFICATE-----\n)/)
            .slice(1)
            .join('');
          const extra = chain ? ['-certfile', join(work, 'chain.pem')] : [];
          if (chain) await writeFile(join(work, 'chain.pem'), chain);
          await run('openssl', [
            'smime',
            '-sign',
            '-signer',
            join(work, 'cert.pem'),
            '-inkey',
            join(work, 'key.pem'),
            ...extra,
            '-in',
            join(work, 'list.json'),
            '-out',
            join(work, 'list.smime'),
          ]);
          return await readFile(join(work, 'list.smime'), 'utf8');
        } finally {
          await rm(work, { recursive: true, force: true });
        }
      };
      const put = (who: string, body: string, ifMatch: string | null = etag) =>
        as(who).request('PUT', path, {
          body: Buffer.from(body),
          headers: { 'content-type': 'text/plain', ...(ifMatch ? { 'if-match': ifMatch } : {}) },
        });
      const signed = await sign(fetched.text, pki.credential('eve'));
      // Refused: without If-Match, by another user, signed by someone else or by a proxy, or other content.
      expectError(await put('eve', signed, null), 412, 'precondition_failed');
      expectError(await put('eve', signed, '"stale"'), 412, 'precondition_failed');
      expectError(await put('mallory', signed), 403, 'forbidden');
      expectError(
        await put('eve', await sign(fetched.text, pki.credential('mallory'))),
        403,
        'list_signer_refused',
      );
      const proxy = await put('eve', await sign(fetched.text, pki.proxy('eve', 'rfc')));
      expectError(proxy, 403, 'list_signer_refused');
      assert.match(proxy.json.error.message, /proxy/);
      const other = fetched.text.replace('"hv:size": 50000', '"hv:size": 1');
      expectError(await put('eve', await sign(other, pki.credential('eve'))), 409, 'list_content_mismatch');
      expectError(await put('eve', 'not S/MIME at all'), 400, 'list_signature_invalid');
      const tampered = signed.replace('"sl:comments": "Tested"', '"sl:comments": "Tasted"');
      assert.notEqual(tampered, signed);
      expectError(await put('eve', tampered), 400, 'list_signature_invalid');
      const accepted = await put('eve', signed);
      assert.equal(accepted.status, 200, accepted.text);
      // Served as signed, and openssl verifies it as eve's.
      const served = await anonymous(path);
      assert.equal(served.status, 200, served.text);
      assert.equal(served.text, signed);
      const verified = await opensslVerify(served.text, caPath);
      assert.ok(verified.ok, verified.ok ? '' : verified.stderr);
      assert.equal(verified.subject, pki.dn('eve'));
      // Another endorsement changes the list: the old signature is no longer served for it.
      assert.equal((await endorse('eve', { image: 'bob/signed.img', expires: inDays(21) })).status, 201);
      expectError(await anonymous(path), 404, 'image_list_unsigned');
      expectError(await put('eve', signed), 412, 'precondition_failed');
      assert.equal((await as('eve').delete('/api/groups/atlas/endorsements/bob/signed.img')).status, 204);
    });

    it('keeps a group’s lists of public images for its subscribers, when the group wants', async () => {
      await as('bob').post('/api/images', { name: 'members.img', unauthenticated_access: true });
      assert.equal((await as('bob').put('/api/images/raw/members.img', v1)).status, 201);
      assert.equal((await endorse('eve', { image: 'bob/members.img', expires: inDays(9) })).status, 201);
      assert.equal((await anonymous('/api/groups/atlas/image-list')).status, 200);
      expectError(
        await as('mallory').request('PUT', '/api/groups/atlas/image-list/access', {
          body: { subscribers_only: true },
        }),
        403,
        'forbidden',
      );
      const set = await as('eve').request('PUT', '/api/groups/atlas/image-list/access', {
        body: { subscribers_only: true },
      });
      assert.deepEqual(set.json, { group: 'atlas', subscribers_only: true });
      assert.deepEqual((await as('mallory').get('/api/groups/atlas/image-list/access')).json, set.json);
      expectError(await anonymous('/api/groups/atlas/image-list'), 401, 'list_token_required');
      expectError(await anonymous('/api/groups/atlas/image-list.json', {}, true), 403, 'https_required');
      // The image's own list too (its image public: a token is asked for, not a 404).
      expectError(await anonymous('/api/images/bob/members.img/image-list'), 401, 'list_token_required');
      const made = await as('eve').post('/api/groups/atlas/subscribers', { name: 'a site' });
      const basic = {
        authorization: `Basic ${Buffer.from(`${made.json.token}:x-oauth-basic`).toString('base64')}`,
      };
      assert.equal((await anonymous('/api/groups/atlas/image-list', basic)).status, 200);
      // Members read it with their certificate.
      assert.equal((await as('mallory').get('/api/groups/atlas/image-list')).status, 200);
      await as('eve').request('PUT', '/api/groups/atlas/image-list/access', {
        body: { subscribers_only: false },
      });
      assert.equal((await anonymous('/api/groups/atlas/image-list')).status, 200);
      await as('eve').delete(`/api/groups/atlas/subscribers/${made.json.id}`);
      assert.equal((await as('eve').delete('/api/groups/atlas/endorsements/bob/members.img')).status, 204);
    });

    it('audits endorsements', async () => {
      const log = await as('admin').get('/api/audit?action=image.endorse');
      assert.equal(log.status, 200, log.text);
      assert.ok(
        log.json.items.some(
          (e: { actor: string; target: string }) => e.actor === 'eve' && e.target === 'bob/pub.img',
        ),
      );
      const refused = log.json.items.find(
        (e: { actor: string }) => e.actor === 'mallory',
      ) as Response['json'];
      assert.equal(refused?.outcome, 'forbidden');
    });
  });
}
