/**
 * Bearer tokens (JWTs) over real HTTPS, once per database engine (tokens-sqlite.test.ts,
 * tokens-postgres.test.ts), issued by a real OpenID provider (helpers/oidc.ts) and forged with `jose` where
 * they must be refused: identity tokens act as the user linked to them, narrowed by their storage scopes (an
 * admin's too); capability tokens act by their scopes alone below their issuer's base path; `wlcg.groups` give
 * group access; expired, early, foreign, unsigned, HMAC-confused, unknown-key and oversized tokens are refused
 * with clear codes; a rotated key is picked up; identities are linked and unlinked; changes are audited with
 * the token's id; and a browser's sign-in (authorization code with PKCE) makes a session.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import { clientFor, expectError, request } from './helpers/http.ts';
import { issuerToml, startIssuer, TEST_AUDIENCE, type TestIssuer } from './helpers/oidc.ts';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import { type Engine, startServerWithConfig, type TestServer } from './helpers/server.ts';

export function tokensSuite(engine: Engine) {
  describe(`bearer tokens on ${engine}`, () => {
    let pki: TestPki;
    let server: TestServer;
    /** Identity tokens: users linked by iss+sub; `/atlas/...` groups by the prefix rule. */
    let iam: TestIssuer;
    /** Capability tokens, as FTS gets them: they act as the user `fts`, below /fts. */
    let fts: TestIssuer;
    /** Identity tokens of an issuer trusted to make users at first use. */
    let open: TestIssuer;
    let as: (name: string) => ReturnType<typeof clientFor>;
    const bytes = Buffer.from(Array.from({ length: 50_000 }, (_, i) => (i * 7 + (i >> 8)) & 255));
    const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

    const bearer = (
      method: string,
      path: string,
      token: string,
      options: { body?: unknown; headers?: Record<string, string> } = {},
    ) =>
      request(`${server.httpsUrl}${path}`, method, null, pki.ca.certPem, {
        ...options,
        headers: { authorization: `Bearer ${token}`, ...options.headers },
      });

    before(async () => {
      pki = await makeTestPki();
      [iam, fts, open] = await Promise.all([
        startIssuer({
          clients: ['bob-cli', 'admin-cli', 'carol-cli', 'carol-plain', 'stranger-cli', 'bob-laptop'],
          groups: { 'carol-cli': ['/atlas/prod', '/admins'] },
        }),
        startIssuer({ clients: ['fts-robot'] }),
        startIssuer({ clients: ['newcomer'] }),
      ]);
      server = await startServerWithConfig(
        pki,
        engine,
        [
          issuerToml(iam, {
            name: 'Test IAM',
            group_prefix: true,
            client_id: iam.webClient.id,
            client_secret: iam.webClient.secret,
          }),
          issuerToml(fts, { mode: 'capability', user: 'fts' }),
          issuerToml(open, { create_users: true }),
        ].join('\n'),
        { REPOMAN_TOKENS_KEY_REFRESH_SECONDS: '1' },
      );
      as = (name) => clientFor(server.httpsUrl, pki.ca.certPem, pki.credential(name));
      iam.setRedirectUris([`${server.httpsUrl}/api/auth/callback`]);
      for (const name of ['bob', 'carol', 'fts'])
        assert.equal(
          (await as('admin').post('/api/users', { user_name: name, client_dn: pki.dn(name) })).status,
          201,
        );
      assert.equal(
        (await as('admin').post('/api/groups', { name: 'atlas-prod', users: ['bob'] })).status,
        201,
      );
      for (const [user, subject] of [
        ['bob', 'bob-cli'],
        ['admin', 'admin-cli'],
        ['carol', 'carol-cli'],
        ['carol', 'carol-plain'],
      ] as const) {
        const linked = await as('admin').post(`/api/users/${user}/identities`, { issuer: iam.url, subject });
        assert.equal(linked.status, 201, linked.text);
      }
      await as('bob').post('/api/images', { name: 'rhel.img' });
      assert.equal((await as('bob').put('/api/images/raw/rhel.img', bytes)).status, 201);
      await as('bob').post('/api/images', { name: 'atlas.img' });
      assert.equal((await as('bob').put('/api/images/raw/atlas.img', bytes.subarray(0, 999))).status, 201);
      assert.equal((await as('bob').post('/api/images/atlas.img/share/group/atlas-prod')).status, 200);
    });
    after(async () => {
      await server?.stop();
      await Promise.all([iam?.close(), fts?.close(), open?.close()]);
    });

    it('acts as the linked user with a token without storage scopes, and says so in whoami', async () => {
      const token = await iam.token('bob-cli');
      const me = await bearer('GET', '/api/whoami', token);
      assert.equal(me.status, 200, me.text);
      assert.equal(me.json.user_name, 'bob');
      assert.equal(me.json.credential.kind, 'token');
      assert.equal(me.json.credential.issuer, iam.url);
      assert.equal(me.json.credential.subject, 'bob-cli');
      assert.match(me.json.credential.id, /\S{10,}/, 'the jti');
      assert.equal(me.json.credential.scopes, null);
      // the whole API, as Bob: create an image, upload, read it back
      assert.equal(
        (await bearer('POST', '/api/images', token, { body: { name: 'bytoken.img' } })).status,
        201,
      );
      assert.equal(
        (await bearer('PUT', '/api/images/raw/bob/bytoken.img', token, { body: bytes })).status,
        201,
      );
      const back = await bearer('GET', '/api/images/raw/bob/bytoken.img', token);
      assert.equal(sha256(back.body), sha256(bytes));
      // the change is in the audit log with the token's id
      const log = await as('admin').get('/api/audit?action=image.upload&target=bob/bytoken.img');
      const entry = log.json.items.find((e: { method: string }) => e.method === 'PUT');
      assert.equal(entry?.detail.credential, 'token');
      assert.equal(
        entry?.detail.token_id,
        me.json.credential.id,
        'the jti of the token that made the change',
      );
      assert.equal(entry?.detail.token_issuer, iam.url);
      // and a certificate's change says it was one
      assert.equal(
        (await as('bob').patch('/api/images/bytoken.img', { description: 'by cert' })).status,
        200,
      );
      const byCert = await as('admin').get('/api/audit?action=image.modify&target=bob/bytoken.img');
      assert.equal(byCert.json.items[0]?.detail.credential, 'certificate');
    });

    it('narrows a token to its storage scopes: read-only, and only below its paths', async () => {
      const token = await iam.token('bob-cli', { scope: 'storage.read:/bob' });
      assert.equal((await bearer('GET', '/api/images/raw/bob/rhel.img', token)).status, 200);
      assert.equal((await bearer('GET', '/api/images/bob/rhel.img', token)).status, 200);
      const me = await bearer('GET', '/api/whoami', token);
      assert.equal(me.json.credential.scopes, 'storage.read:/bob');
      expectError(
        await bearer('PUT', '/api/images/raw/bob/rhel.img', token, { body: bytes }),
        403,
        'token_denied',
      );
      expectError(await bearer('DELETE', '/api/images/raw/bob/rhel.img', token), 403, 'token_denied');
      // the JSON API's changes and anything that names no storage path are refused
      expectError(
        await bearer('PATCH', '/api/images/bob/rhel.img', token, { body: { description: 'x' } }),
        403,
        'token_denied',
      );
      expectError(await bearer('GET', '/api/users', token), 403, 'token_denied');
      // a path that only begins like the scope's is not below it
      expectError(await bearer('GET', '/api/images/raw/bobby/x.img', token), 403, 'token_denied');
      // an image list hands out capability URLs that outlive the token: not for a scoped token
      expectError(await bearer('GET', '/api/images/bob/rhel.img/image-list', token), 403, 'token_denied');
    });

    it("narrows an admin's token too: storage.read:/bob reads Bob's namespace and nothing else", async () => {
      const token = await iam.token('admin-cli', { scope: 'storage.read:/bob' });
      assert.equal((await bearer('GET', '/api/images/raw/bob/rhel.img', token)).status, 200);
      expectError(await bearer('GET', '/api/users', token), 403, 'token_denied');
      expectError(await bearer('GET', '/api/images/raw/fts/', token), 403, 'token_denied');
      expectError(await bearer('DELETE', '/api/images/raw/bob/rhel.img', token), 403, 'token_denied');
      const unscoped = await iam.token('admin-cli');
      assert.equal((await bearer('GET', '/api/users', unscoped)).status, 200);
    });

    it('lets storage.create make a new image but not replace one; storage.modify replaces and deletes', async () => {
      const create = await iam.token('bob-cli', { scope: 'storage.create:/bob storage.read:/bob' });
      assert.equal(
        (await bearer('PUT', '/api/images/raw/bob/created.img', create, { body: bytes })).status,
        201,
      );
      expectError(
        await bearer('PUT', '/api/images/raw/bob/created.img', create, { body: bytes }),
        403,
        'token_denied',
      );
      expectError(await bearer('DELETE', '/api/images/raw/bob/created.img', create), 403, 'token_denied');
      const modify = await iam.token('bob-cli', { scope: 'storage.modify:/bob/created.img' });
      assert.equal(
        (await bearer('PUT', '/api/images/raw/bob/created.img', modify, { body: bytes.subarray(0, 10) }))
          .status,
        200,
        'a new version of the image',
      );
      assert.equal((await bearer('DELETE', '/api/images/raw/bob/created.img', modify)).status, 204);
      // MKCOL of the namespace (gfal-mkdir -p) is a creation: 405, it exists, rather than a refusal
      expectError(await bearer('MKCOL', '/api/images/raw/bob/', create), 405, 'method_not_allowed');
      // SciTokens' words: write is modify
      const scitoken = await iam.token('bob-cli', { scope: 'read:/bob write:/bob/sci.img' });
      assert.equal(
        (await bearer('PUT', '/api/images/raw/bob/sci.img', scitoken, { body: bytes })).status,
        201,
      );
      expectError(
        await bearer('PUT', '/api/images/raw/bob/other-sci.img', scitoken, { body: bytes }),
        403,
        'token_denied',
      );
    });

    it('lets a capability token act by its scopes alone, below its base path, as its service user', async () => {
      const token = await fts.token('fts-robot', { scope: 'storage.create:/ storage.read:/' });
      const put = await bearer('PUT', '/api/images/raw/fts/replica.img', token, { body: bytes });
      assert.equal(put.status, 201, put.text);
      const shown = await as('admin').get('/api/images/fts/replica.img');
      assert.equal(shown.json.owner, 'fts', 'the service user owns what it creates');
      const back = await bearer('GET', '/api/images/raw/fts/replica.img', token);
      assert.equal(sha256(back.body), sha256(bytes));
      // outside its base path, whatever the scope says
      expectError(await bearer('GET', '/api/images/raw/bob/rhel.img', token), 403, 'token_denied');
      expectError(
        await bearer('PUT', '/api/images/raw/fts/replica.img', token, { body: bytes }),
        403,
        'token_denied',
      );
      // a token of this issuer without storage scopes allows nothing
      expectError(await bearer('GET', '/api/whoami', await fts.token('fts-robot')), 403, 'token_denied');
    });

    it("gives the groups a token's wlcg.groups map to, and never admins", async () => {
      const grouped = await iam.token('carol-cli');
      assert.equal((await bearer('GET', '/api/images/raw/bob/atlas.img', grouped)).status, 200);
      const me = await bearer('GET', '/api/whoami', grouped);
      assert.equal(me.json.user_name, 'carol');
      expectError(await bearer('GET', '/api/audit', grouped), 403, 'forbidden');
      const plain = await iam.token('carol-plain');
      expectError(await bearer('GET', '/api/images/raw/bob/atlas.img', plain), 404, 'image_not_found');
    });

    it('refuses an identity linked to nobody, saying what to send an admin', async () => {
      const refused = await bearer('GET', '/api/whoami', await iam.token('stranger-cli'));
      expectError(refused, 403, 'unknown_token_identity');
      assert.equal(refused.json.error.details.subject, 'stranger-cli');
      assert.equal(refused.json.error.details.issuer, iam.url);
    });

    it('makes a user at first use where the issuer is trusted to', async () => {
      const token = await open.token('newcomer');
      const me = await bearer('GET', '/api/whoami', token);
      assert.equal(me.status, 200, me.text);
      assert.match(me.json.user_name, /^u-[0-9a-f]{12}$/);
      assert.equal(me.json.client_dn, null);
      assert.deepEqual(me.json.groups, ['users']);
      assert.equal((await bearer('GET', '/api/whoami', token)).json.user_name, me.json.user_name);
    });

    it('refuses expired, early, foreign, unsigned, confused, unknown-key and oversized tokens', async () => {
      const now = Math.floor(Date.now() / 1000);
      const claims = { iss: iam.url, sub: 'bob-cli', aud: TEST_AUDIENCE, iat: now, exp: now + 600 };
      const works = await iam.sign(claims);
      assert.equal((await bearer('GET', '/api/whoami', works)).status, 200, 'the forger signs as the issuer');
      const refusals: [string, string, string][] = [
        ['expired', await iam.sign({ ...claims, exp: now - 3600 }), 'token_expired'],
        ['not yet valid', await iam.sign({ ...claims, nbf: now + 3600 }), 'token_expired'],
        ['no expiry', await iam.sign({ ...claims, exp: undefined }), 'token_invalid'],
        [
          'another audience',
          await iam.sign({ ...claims, aud: 'https://elsewhere.example' }),
          'token_invalid',
        ],
        ['another issuer', await iam.sign({ ...claims, iss: 'https://evil.example' }), 'token_invalid'],
        ['an issuer it does not hold', await iam.sign({ ...claims, iss: fts.url }), 'token_invalid'],
        ['unknown key', await fts.sign(claims, { kid: 'nobody-knows' }), 'token_invalid'],
        ['oversized', await iam.sign({ ...claims, padding: 'x'.repeat(9000) }), 'token_invalid'],
      ];
      const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
      refusals.push(['alg none', `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`, 'token_invalid']);
      const publicPem = iam.key().publicKey.export({ format: 'pem', type: 'spki' });
      refusals.push([
        'HMAC with the public key as its secret',
        await new SignJWT(claims)
          .setProtectedHeader({ alg: 'HS256', kid: iam.key().kid })
          .sign(new Uint8Array(Buffer.from(publicPem))),
        'token_invalid',
      ]);
      const [head, body, signature] = works.split('.');
      const altered = b64({ ...claims, sub: 'admin-cli' });
      refusals.push(['altered', `${head}.${altered}.${signature}`, 'token_invalid']);
      assert.ok(body);
      for (const [what, token, code] of refusals) {
        const answer = await bearer('GET', '/api/whoami', token);
        assert.equal(answer.status, 401, `${what}: ${answer.text}`);
        assert.equal(answer.json.error.code, code, `${what}: ${answer.text}`);
      }
    });

    it("picks up the issuer's new key after a rotation", async () => {
      assert.equal((await bearer('GET', '/api/whoami', await iam.token('bob-cli'))).status, 200);
      iam.rotateKeys();
      const token = await iam.token('bob-cli');
      // The server fetches the keys again for the new kid, at most once a second here: wait for that.
      let answer = await bearer('GET', '/api/whoami', token);
      for (let tries = 0; answer.status !== 200 && tries < 50; tries++) {
        await new Promise((done) => setTimeout(done, 100));
        answer = await bearer('GET', '/api/whoami', token);
      }
      assert.equal(answer.status, 200, answer.text);
    });

    it('takes bearer tokens over HTTPS only', async () => {
      const token = await iam.token('bob-cli');
      const answer = await request(
        `${server.httpUrl}/api/images/raw/bob/rhel.img`,
        'GET',
        null,
        pki.ca.certPem,
        {
          headers: { authorization: `Bearer ${token}` },
        },
      );
      expectError(answer, 403, 'https_required');
    });

    it('links the identity a browser signed in with, in a sign-in started with the certificate', async () => {
      const token = await iam.token('bob-laptop');
      expectError(await bearer('GET', '/api/whoami', token), 403, 'unknown_token_identity');
      // Naming one's own identity is no proof; nor is a token (whoever it was given to holds a copy).
      expectError(
        await as('bob').post('/api/users/bob/identities', { issuer: iam.url, subject: 'bob-laptop' }),
        403,
        'forbidden',
      );
      expectError(await as('bob').post('/api/whoami/identities'), 400, 'bad_request');
      const asBob = (method: string, path: string, headers: Record<string, string>) =>
        request(`${server.httpsUrl}${path}`, method, pki.credential('bob'), pki.ca.certPem, { headers });
      expectError(
        await asBob('POST', '/api/whoami/identities', { authorization: `Bearer ${token}` }),
        400,
        'bad_request',
      );
      const signInUrl = (await request(`${server.httpsUrl}/api/auth/issuers`, 'GET', null, pki.ca.certPem))
        .json.items[0].sign_in_url;
      // A sign-in started without the certificate links nothing, even presented beside it afterwards.
      const elsewhere = await browserSignIn(signInUrl, 'bob-laptop', '/account');
      expectError(
        await asBob('POST', '/api/whoami/identities', { cookie: elsewhere.cookie }),
        400,
        'bad_request',
      );
      // Started with it: whoami offers the identity, and it links.
      const mine = await browserSignIn(signInUrl, 'bob-laptop', '/account', pki.credential('bob'));
      const me = await asBob('GET', '/api/whoami', { cookie: mine.cookie });
      assert.equal(me.json.credential.kind, 'certificate', 'the certificate counts over the session');
      assert.equal(me.json.offered_identity?.subject, 'bob-laptop');
      const linked = await asBob('POST', '/api/whoami/identities', { cookie: mine.cookie });
      assert.equal(linked.status, 201, linked.text);
      assert.equal(linked.json.subject, 'bob-laptop');
      assert.equal((await bearer('GET', '/api/whoami', token)).json.user_name, 'bob');
      const session = await request(`${server.httpsUrl}/api/whoami`, 'GET', null, pki.ca.certPem, {
        headers: { cookie: mine.cookie },
      });
      assert.equal(session.json.user_name, 'bob', 'the session is now the account’s');
      // linked once only
      const again = await as('admin').post('/api/users/carol/identities', {
        issuer: iam.url,
        subject: 'bob-laptop',
      });
      expectError(again, 409, 'identity_linked');
      const listed = await as('bob').get('/api/users/bob/identities');
      assert.deepEqual(listed.json.items.map((i: { subject: string }) => i.subject).sort(), [
        'bob-cli',
        'bob-laptop',
      ]);
      expectError(await as('carol').get('/api/users/bob/identities'), 403, 'forbidden');
      assert.equal((await as('bob').delete(`/api/users/bob/identities/${linked.json.id}`)).status, 204);
      expectError(await bearer('GET', '/api/whoami', token), 403, 'unknown_token_identity');
      const log = await as('admin').get('/api/audit?action=user.unlink_identity');
      assert.equal(log.json.items[0]?.detail.subject, 'bob-laptop');
    });

    it('signs a browser in with the authorization code flow, PKCE and a session cookie', async () => {
      const issuers = await request(`${server.httpsUrl}/api/auth/issuers`, 'GET', null, pki.ca.certPem);
      assert.equal(issuers.status, 200, issuers.text);
      assert.deepEqual(
        issuers.json.items.map((i: { name: string }) => i.name),
        ['Test IAM'],
        'only issuers with a client are offered',
      );
      const session = await browserSignIn(issuers.json.items[0].sign_in_url, 'carol-plain', '/images');
      assert.equal(session.location, '/images');
      const me = await request(`${server.httpsUrl}/api/whoami`, 'GET', null, pki.ca.certPem, {
        headers: { cookie: session.cookie },
      });
      assert.equal(me.status, 200, me.text);
      assert.equal(me.json.user_name, 'carol');
      assert.equal(me.json.credential.kind, 'session');
      // signed out: the cookie is worth nothing
      const out = await request(`${server.httpsUrl}/api/auth/sign-out`, 'POST', null, pki.ca.certPem, {
        headers: { cookie: session.cookie },
      });
      assert.equal(out.status, 200);
      assert.match(String(out.headers['set-cookie']), /__Host-repoman_session=;.*Max-Age=0/);
      const after = await request(`${server.httpsUrl}/api/whoami`, 'GET', null, pki.ca.certPem, {
        headers: { cookie: session.cookie },
      });
      expectError(after, 401, 'certificate_required');
      // an open redirect is not taken: elsewhere becomes /
      const elsewhere = await browserSignIn(
        issuers.json.items[0].sign_in_url,
        'carol-plain',
        '//evil.example/x',
      );
      assert.equal(elsewhere.location, '/');
    });

    it("refuses a callback the browser did not start (another browser's state, a replay)", async () => {
      const issuers = await request(`${server.httpsUrl}/api/auth/issuers`, 'GET', null, pki.ca.certPem);
      const started = await request(issuers.json.items[0].sign_in_url, 'GET', null, pki.ca.certPem);
      assert.equal(started.status, 302);
      const state = new URL(String(started.headers.location)).searchParams.get('state');
      // the callback without the sign-in cookie (another browser): refused, and the page says why
      const foreign = await request(
        `${server.httpsUrl}/api/auth/callback?state=${state}&code=stolen`,
        'GET',
        null,
        pki.ca.certPem,
      );
      assert.equal(foreign.status, 303);
      assert.match(String(foreign.headers.location), /^\/\?sign_in_error=.*did%20not%20start/);
      assert.equal(
        foreign.headers['set-cookie']?.some(
          (c) => c.startsWith('__Host-repoman_session=') && !c.startsWith('__Host-repoman_session=;'),
        ),
        false,
      );
    });

    it('bounds the sign-ins one address has under way', async () => {
      const signInUrl = (await request(`${server.httpsUrl}/api/auth/issuers`, 'GET', null, pki.ca.certPem))
        .json.items[0].sign_in_url;
      // From an address of its own (the others' tests come from 127.0.0.1), which it uses up.
      const fromElsewhere = () =>
        request(signInUrl, 'GET', null, pki.ca.certPem, { localAddress: '127.0.0.2' });
      let last = await fromElsewhere();
      for (let i = 0; i < 25 && last.status === 302; i++) last = await fromElsewhere();
      expectError(last, 429, 'too_many_sign_ins');
      // Another address still signs in.
      assert.equal((await request(signInUrl, 'GET', null, pki.ca.certPem)).status, 302);
    });

    /** A browser's sign-in, driven by hand: the server's redirect, the provider's login and consent pages. */
    async function browserSignIn(
      signInUrl: string,
      login: string,
      returnTo: string,
      certificate: ReturnType<TestPki['credential']> | null = null,
    ) {
      const start = await request(
        `${signInUrl}&return_to=${encodeURIComponent(returnTo)}`,
        'GET',
        certificate,
        pki.ca.certPem,
      );
      assert.equal(start.status, 302, start.text);
      const binding =
        String(start.headers['set-cookie']?.find((c) => c.startsWith('__Secure-repoman_sign_in='))).split(
          ';',
        )[0] ?? '';
      const jar = new Map<string, string>();
      const keep = (response: Response) => {
        for (const cookie of response.headers.getSetCookie()) {
          const [pair = ''] = cookie.split(';');
          const at = pair.indexOf('=');
          jar.set(pair.slice(0, at), pair.slice(at + 1));
        }
      };
      const cookies = () => [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
      let location = String(start.headers.location);
      // Follow the provider's redirects, submitting its login and consent forms, until it sends us back.
      for (let step = 0; step < 12 && location.startsWith(iam.url); step++) {
        const page = await fetch(location, { redirect: 'manual', headers: { cookie: cookies() } });
        keep(page);
        if (page.status >= 300 && page.status < 400) {
          location = new URL(String(page.headers.get('location')), location).href;
          continue;
        }
        const html = await page.text();
        const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
        assert.ok(action, `a form on ${location}: ${html.slice(0, 300)}`);
        const fields = new URLSearchParams();
        for (const [, name, value] of html.matchAll(/<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"/g))
          fields.set(name as string, value as string);
        if (/name="login"/.test(html)) fields.set('login', login);
        if (/name="password"/.test(html)) fields.set('password', 'any');
        const posted = await fetch(new URL(action, location), {
          method: 'POST',
          redirect: 'manual',
          body: fields,
          headers: { cookie: cookies(), 'content-type': 'application/x-www-form-urlencoded' },
        });
        keep(posted);
        location = new URL(String(posted.headers.get('location')), location).href;
      }
      assert.ok(location.startsWith(`${server.httpsUrl}/api/auth/callback`), location);
      const back = await request(location, 'GET', null, pki.ca.certPem, { headers: { cookie: binding } });
      assert.equal(back.status, 303, back.text);
      const cookie = String(back.headers['set-cookie']?.find((c) => c.startsWith('__Host-repoman_session=')));
      assert.match(cookie, /HttpOnly/);
      assert.match(cookie, /Secure/);
      assert.match(cookie, /SameSite=Lax/);
      return { cookie: cookie.split(';')[0] as string, location: String(back.headers.location) };
    }
  });
}
