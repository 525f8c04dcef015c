/**
 * tokens/jwt.ts and tokens/issuers.ts: bearer JWTs as WLCG and SciTokens issuers sign them, verified against
 * keys from a real issuer (an HTTP server of the test's own, with a discovery document and a JWKS), and every
 * classic forgery refused: `alg: none`, HMAC with the public key as secret, a key of the wrong type, another
 * issuer, another audience, expired, not yet valid, issued in the future, altered, oversized; an unknown `kid`
 * fetches the keys again at most once a minute.
 */
import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { createIssuerKeys, type TrustedIssuer } from '../../src/tokens/issuers.ts';
import { decodeJwt, JwtError, looksLikeJwt, MAX_JWT_BYTES } from '../../src/tokens/jwt.ts';

const b64 = (value: unknown) =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** A compact JWS, signed as issuers sign them. */
function jwt(
  header: Record<string, unknown>,
  claims: Record<string, unknown>,
  key: KeyObject | null,
): string {
  const input = `${b64(header)}.${b64(claims)}`;
  if (!key) return `${input}.`;
  const alg = String(header.alg);
  const signature =
    alg === 'EdDSA'
      ? sign(null, Buffer.from(input), key)
      : alg.startsWith('ES')
        ? sign(`sha${alg.slice(2)}`, Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' })
        : alg.startsWith('PS')
          ? sign(`sha${alg.slice(2)}`, Buffer.from(input), {
              key,
              padding: 6,
              saltLength: Number(alg.slice(2)) / 8,
            })
          : sign(`sha${alg.slice(2)}`, Buffer.from(input), key);
  return `${input}.${signature.toString('base64url')}`;
}

describe('bearer JWTs from trusted issuers', () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const ed = generateKeyPairSync('ed25519');
  const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
  let server: http.Server;
  let issuer: TrustedIssuer;
  let fetches = 0;
  let published = [
    { ...rsa.publicKey.export({ format: 'jwk' }), kid: 'rsa-1', use: 'sig' },
    { ...ec.publicKey.export({ format: 'jwk' }), kid: 'ec-1' },
    { ...ed.publicKey.export({ format: 'jwk' }), kid: 'ed-1' },
  ];
  const now = () => Math.floor(Date.now() / 1000);
  const claims = (extra: Record<string, unknown> = {}) => ({
    iss: issuer.url,
    sub: 'user-42',
    aud: 'https://repoman.example.org',
    exp: now() + 600,
    iat: now(),
    nbf: now() - 5,
    scope: 'storage.read:/bob storage.create:/bob',
    'wlcg.ver': '1.0',
    ...extra,
  });
  const fetchJson = async (url: string) => {
    fetches++;
    return (await fetch(url)).json();
  };
  let store: ReturnType<typeof createIssuerKeys>;
  /** The store's clock: the test moves it to show the once-a-minute refresh. */
  let clock = Date.now();
  const verify = (token: string) => store.verify(token, { clockSkewSeconds: 60 });

  before(async () => {
    server = http.createServer((request, response) => {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      response.setHeader('content-type', 'application/json');
      if (request.url === '/.well-known/openid-configuration')
        return response.end(JSON.stringify({ issuer: base, jwks_uri: `${base}/jwks` }));
      if (request.url === '/jwks') return response.end(JSON.stringify({ keys: published }));
      response.statusCode = 404;
      response.end('{}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    issuer = {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      audiences: ['https://repoman.example.org'],
    };
  });
  // Each test has a store of its own (nothing fetched yet), so that none depends on what another fetched.
  beforeEach(() => {
    fetches = 0;
    store = createIssuerKeys({ issuers: [issuer], fetchJson, now: () => clock });
  });
  after(() => server?.close());

  it('takes tokens signed with RS256, PS256, ES256 and EdDSA by the issuer’s keys', async () => {
    for (const [alg, key, kid] of [
      ['RS256', rsa.privateKey, 'rsa-1'],
      ['PS256', rsa.privateKey, 'rsa-1'],
      ['ES256', ec.privateKey, 'ec-1'],
      ['EdDSA', ed.privateKey, 'ed-1'],
    ] as const) {
      const token = jwt({ alg, kid, typ: 'JWT' }, claims(), key);
      assert.ok(looksLikeJwt(token));
      const verified = await verify(token);
      assert.equal(verified.claims.sub, 'user-42', alg);
      assert.equal(verified.issuer.url, issuer.url);
    }
    assert.equal(fetches, 2, 'the discovery document and the keys, once');
    assert.equal(looksLikeJwt('MDAxY2xvY2F0aW9u'), false, 'a macaroon is not a JWT');
  });

  it('refuses the classic forgeries', async () => {
    const refused = async (token: string, pattern: RegExp) =>
      assert.rejects(verify(token), (error: unknown) => {
        assert.ok(error instanceof JwtError, String(error));
        assert.match(error.message, pattern);
        return true;
      });
    await refused(jwt({ alg: 'none', kid: 'rsa-1' }, claims(), null), /algorithm none is not taken/);
    // HS256 with the issuer's public key (as PEM) used as the shared secret: the confusion attack.
    const pem = rsa.publicKey.export({ format: 'pem', type: 'spki' }).toString();
    const input = `${b64({ alg: 'HS256', kid: 'rsa-1' })}.${b64(claims())}`;
    const hmac = createHmac('sha256', pem).update(input).digest('base64url');
    await refused(`${input}.${hmac}`, /HS256 is not taken|no key rsa-1 for HS256/);
    // A key of another type for the algorithm named: the EC key named for RS256.
    await refused(jwt({ alg: 'RS256', kid: 'ec-1' }, claims(), rsa.privateKey), /no key ec-1 for RS256/);
    // Signed by someone else, or altered.
    await refused(
      jwt({ alg: 'RS256', kid: 'rsa-1' }, claims(), other.privateKey),
      /not signed by its issuer/,
    );
    const good = jwt({ alg: 'RS256', kid: 'rsa-1' }, claims(), rsa.privateKey);
    const [h, , s] = good.split('.');
    await refused(`${h}.${b64(claims({ sub: 'admin' }))}.${s}`, /not signed by its issuer/);
    // The claims.
    await refused(
      jwt({ alg: 'RS256', kid: 'rsa-1' }, claims({ aud: 'https://elsewhere' }), rsa.privateKey),
      /not for this server/,
    );
    await refused(
      jwt({ alg: 'RS256', kid: 'rsa-1' }, claims({ aud: ['a', 'b'] }), rsa.privateKey),
      /not for this server/,
    );
    await refused(
      jwt({ alg: 'RS256', kid: 'rsa-1' }, claims({ exp: now() - 3600 }), rsa.privateKey),
      /expired/,
    );
    await refused(
      jwt({ alg: 'RS256', kid: 'rsa-1' }, claims({ exp: undefined }), rsa.privateKey),
      /no expiry/,
    );
    await refused(
      jwt({ alg: 'RS256', kid: 'rsa-1' }, claims({ nbf: now() + 3600 }), rsa.privateKey),
      /not valid before/,
    );
    await refused(
      jwt({ alg: 'RS256', kid: 'rsa-1' }, claims({ iat: now() + 3600 }), rsa.privateKey),
      /issued in the future/,
    );
    await refused(
      jwt({ alg: 'RS256', kid: 'rsa-1' }, claims({ iss: 'https://evil.example' }), rsa.privateKey),
      /not trusted here/,
    );
    // Within the clock skew, fine: a minute either way.
    await verify(
      jwt({ alg: 'RS256', kid: 'rsa-1' }, claims({ exp: now() - 30, nbf: now() + 30 }), rsa.privateKey),
    );
    // An audience list naming this server among others is fine.
    await verify(
      jwt(
        { alg: 'RS256', kid: 'rsa-1' },
        claims({ aud: ['x', 'https://repoman.example.org'] }),
        rsa.privateKey,
      ),
    );
  });

  it('reads tokens strictly, and refuses oversized ones unread', () => {
    assert.throws(() => decodeJwt('a.b'), /three parts/);
    assert.throws(() => decodeJwt('e30.e30.a+b'), /not base64url/);
    assert.throws(() => decodeJwt(`${b64('[1]')}.${b64({})}.`), /not a JSON object/);
    assert.throws(() => decodeJwt(`${b64({ alg: 'RS256', crit: ['x'] })}.${b64({})}.`), /critical/);
    assert.throws(() => decodeJwt(`${b64({ alg: 'RS256' })}.${'A'.repeat(MAX_JWT_BYTES)}.`), /larger than/);
  });

  it('fetches the keys again for an unknown kid, at most once a minute', async () => {
    const before = fetches;
    const rotated = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const token = jwt({ alg: 'ES256', kid: 'ec-2' }, claims(), rotated.privateKey);
    // Not published yet: one fetch (a minute has passed since the first), then none for a minute.
    clock += 61_000;
    await assert.rejects(verify(token), /no key ec-2/);
    await assert.rejects(verify(token), /no key ec-2/);
    await assert.rejects(
      verify(jwt({ alg: 'ES256', kid: 'made-up' }, claims(), rotated.privateKey)),
      /no key made-up/,
    );
    assert.equal(fetches - before, 2, 'one refresh (discovery and keys) for all three');
    // The issuer publishes the new key; a minute later it is found.
    published = [...published, { ...rotated.publicKey.export({ format: 'jwk' }), kid: 'ec-2' }];
    clock += 61_000;
    assert.equal((await verify(token)).claims.sub, 'user-42');
  });

  it('drops a key the issuer withdrew once its keys are an hour old', async () => {
    const withdrawn = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    published = [...published, { ...withdrawn.publicKey.export({ format: 'jwk' }), kid: 'ec-old' }];
    clock += 61_000;
    const token = jwt({ alg: 'ES256', kid: 'ec-old' }, claims(), withdrawn.privateKey);
    assert.equal((await verify(token)).claims.sub, 'user-42');
    published = published.filter((key) => key.kid !== 'ec-old');
    clock += 30 * 60_000;
    assert.equal((await verify(token)).claims.sub, 'user-42', 'known, and under an hour old');
    clock += 31 * 60_000;
    await assert.rejects(verify(token), /no key ec-old/);
  });

  it("trusts no discovery document that names another issuer, or points at this server's loopback", async () => {
    const documents: Record<string, unknown> = {
      'https://iam.example.org/.well-known/openid-configuration': {
        issuer: 'https://iam.example.org/',
        jwks_uri: 'http://127.0.0.1:9/jwks',
      },
      'https://other.example.org/.well-known/openid-configuration': {
        jwks_uri: 'https://other.example.org/jwks',
      },
    };
    const fetched: string[] = [];
    const strict = createIssuerKeys({
      issuers: [
        { url: 'https://iam.example.org/', audiences: ['https://repoman.example.org'] },
        { url: 'https://other.example.org', audiences: ['https://repoman.example.org'] },
      ],
      fetchJson: async (url) => {
        fetched.push(url);
        return documents[url] ?? {};
      },
    });
    const key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    const token = (iss: string) => jwt({ alg: 'ES256', kid: 'k' }, claims({ iss }), key);
    await assert.rejects(
      strict.verify(token('https://iam.example.org/'), { clockSkewSeconds: 60 }),
      /jwks_uri .* is on this server's loopback/,
    );
    await assert.rejects(
      strict.verify(token('https://other.example.org'), { clockSkewSeconds: 60 }),
      /names another issuer/,
    );
    assert.ok(!fetched.some((url) => url.includes('127.0.0.1')), 'the loopback URL was never fetched');
  });
});
