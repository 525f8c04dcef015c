import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type ParsedCertificate, parseCertificate } from '../../src/pki/certificate.ts';
import { encodeNull, Tag } from '../../src/pki/der.ts';
import {
  type Credential,
  createCA,
  createProxy,
  createUserCertificate,
  generateKey,
  issueCertificate,
  issueCrl,
} from '../../src/pki/issue.ts';
import { createVerifier, type VerifierOptions, type VerifyResult } from '../../src/pki/verify.ts';
import { ago, DAY, fromNow, HOUR } from './fixtures.ts';

// one PKI for the whole file (EC keys: fast)
const ALICE_DN = '/C=CA/O=Grid/OU=phys.example.org/CN=Alice Example';
const ca = createCA('/C=CA/O=Grid/CN=Test Grid CA');
const alice = createUserCertificate(ca, ALICE_DN);
const bob = createUserCertificate(ca, '/C=CA/O=Grid/CN=Bob');
const rootPathLen0 = createCA('/C=CA/O=Strict/CN=Strict Root', { pathLen: 0 });
const trustedCAs = [ca.cert.der, rootPathLen0.cert.der];

const chainOf = (cred: Credential): Buffer[] => [cred.cert.der, ...cred.chain.map((c) => c.der)];
const verifier = (extra: Partial<VerifierOptions> = {}) => createVerifier({ trustedCAs, ...extra });
const defaultVerifier = verifier();

type Expect = {
  ok: boolean;
  code?: string;
  dn?: string;
  proxyType?: string;
  proxyDepth?: number;
  limited?: boolean;
  reason?: RegExp;
};

function check(result: VerifyResult, expected: Expect): void {
  if (expected.ok) {
    assert.ok(result.ok, `expected success, got ${result.ok ? '' : `${result.code}: ${result.reason}`}`);
    if (expected.dn !== undefined) assert.equal(result.dn, expected.dn);
    if (expected.proxyType !== undefined) assert.equal(result.proxyType, expected.proxyType);
    if (expected.proxyDepth !== undefined) assert.equal(result.proxyDepth, expected.proxyDepth);
    if (expected.limited !== undefined) assert.equal(result.limited, expected.limited);
  } else {
    assert.ok(!result.ok, `expected ${expected.code}, got success`);
    assert.equal(result.code, expected.code, result.reason);
    if (expected.reason) assert.match(result.reason, expected.reason);
  }
}

describe('verifyChain: identities and proxy kinds', () => {
  const rfc = createProxy(alice);
  const cases: { name: string; chain: () => Buffer[]; expect: Expect }[] = [
    {
      name: 'end-entity certificate',
      chain: () => chainOf(alice),
      expect: { ok: true, dn: ALICE_DN, proxyType: 'none', proxyDepth: 0, limited: false },
    },
    {
      name: 'RFC 3820 proxy',
      chain: () => chainOf(rfc),
      expect: { ok: true, dn: ALICE_DN, proxyType: 'rfc3820', proxyDepth: 1, limited: false },
    },
    {
      name: 'proxy of a proxy',
      chain: () => chainOf(createProxy(rfc)),
      expect: { ok: true, dn: ALICE_DN, proxyType: 'rfc3820', proxyDepth: 2 },
    },
    {
      name: 'legacy GT2 proxy',
      chain: () => chainOf(createProxy(alice, { type: 'legacy' })),
      expect: { ok: true, dn: ALICE_DN, proxyType: 'legacy', limited: false },
    },
    {
      name: 'limited legacy proxy',
      chain: () => chainOf(createProxy(alice, { type: 'limited-legacy' })),
      expect: { ok: true, dn: ALICE_DN, proxyType: 'legacy', limited: true },
    },
    {
      name: 'limited RFC proxy',
      chain: () => chainOf(createProxy(alice, { type: 'limited' })),
      expect: { ok: true, dn: ALICE_DN, proxyType: 'rfc3820', limited: true },
    },
    {
      name: 'limited proxy of a limited proxy',
      chain: () => chainOf(createProxy(createProxy(alice, { type: 'limited' }), { type: 'limited' })),
      expect: { ok: true, limited: true, proxyDepth: 2 },
    },
    {
      name: 'limited proxy signing a full proxy',
      chain: () => chainOf(createProxy(createProxy(alice, { type: 'limited' }), { type: 'rfc3820' })),
      expect: { ok: false, code: 'invalid_proxy', reason: /limited proxy may only sign limited/ },
    },
    {
      name: 'limited legacy proxy signing a full legacy proxy',
      chain: () => chainOf(createProxy(createProxy(alice, { type: 'limited-legacy' }), { type: 'legacy' })),
      expect: { ok: false, code: 'invalid_proxy' },
    },
    {
      name: 'independent proxy (refused by default)',
      chain: () => chainOf(createProxy(alice, { type: 'independent' })),
      expect: { ok: false, code: 'invalid_proxy', reason: /independent/ },
    },
    {
      name: 'draft (GSI-3) proxy',
      chain: () => chainOf(createProxy(alice, { type: 'draft' })),
      expect: { ok: true, dn: ALICE_DN, proxyType: 'draft' },
    },
    {
      name: 'legacy proxy issued by an RFC proxy (mixed types)',
      chain: () => chainOf(createProxy(rfc, { type: 'legacy' })),
      expect: { ok: false, code: 'invalid_proxy', reason: /mixed proxy types/ },
    },
    {
      name: 'proxy whose subject re-encodes the issuer RDNs as UTF8String (X509_NAME_cmp is canonical)',
      chain: () => {
        const rdns = alice.cert.subject.rdns.map((rdn) =>
          rdn.map((ava) => ({ type: ava.type, value: ava.value, tag: Tag.UTF8_STRING })),
        );
        assert.equal(alice.cert.subject.rdns[0]?.[0]?.tag, Tag.PRINTABLE_STRING);
        return chainOf(createProxy(alice, { issue: { subject: [...rdns, [{ type: 'CN', value: '42' }]] } }));
      },
      expect: { ok: true, dn: ALICE_DN, proxyType: 'rfc3820' },
    },
    {
      name: 'empty chain',
      chain: () => [],
      expect: { ok: false, code: 'no_certificate' },
    },
    {
      name: 'garbage instead of a certificate',
      chain: () => [Buffer.from('30030201', 'hex')],
      expect: { ok: false, code: 'invalid_certificate', reason: /malformed/ },
    },
    {
      name: 'a CA certificate as the client certificate',
      chain: () => [ca.cert.der],
      expect: { ok: false, code: 'invalid_certificate', reason: /is a CA certificate/ },
    },
  ];
  for (const c of cases) test(c.name, () => check(defaultVerifier.verifyChain(c.chain()), c.expect));

  test('the result carries the RFC 2253 DN, issuer, serial and the earliest notAfter', () => {
    const proxy = createProxy(alice, { notAfter: fromNow(2 * HOUR) });
    const result = defaultVerifier.verifyChain(chainOf(proxy));
    assert.ok(result.ok);
    assert.equal(result.dnRfc2253, 'CN=Alice Example,OU=phys.example.org,O=Grid,C=CA');
    assert.equal(result.issuerDn, '/C=CA/O=Grid/CN=Test Grid CA');
    assert.equal(result.eecSerial, alice.cert.serial);
    assert.equal(result.notAfter.getTime(), proxy.cert.notAfter.getTime());
  });

  test('policy switches: independent allowed, legacy and limited refused', () => {
    const independent = chainOf(createProxy(alice, { type: 'independent' }));
    check(verifier({ allowIndependentProxies: true }).verifyChain(independent), {
      ok: true,
      proxyType: 'rfc3820',
    });
    const legacy = chainOf(createProxy(alice, { type: 'legacy' }));
    check(verifier({ allowLegacyProxies: false }).verifyChain(legacy), { ok: false, code: 'invalid_proxy' });
    const limited = chainOf(createProxy(alice, { type: 'limited' }));
    check(verifier({ allowLimitedProxies: false }).verifyChain(limited), {
      ok: false,
      code: 'invalid_proxy',
    });
  });

  test('maximum proxy depth', () => {
    const deep = createProxy(createProxy(createProxy(alice)));
    check(verifier({ maxProxyDepth: 3 }).verifyChain(chainOf(deep)), { ok: true, proxyDepth: 3 });
    check(verifier({ maxProxyDepth: 2 }).verifyChain(chainOf(deep)), {
      ok: false,
      code: 'invalid_proxy',
      reason: /too many proxies/,
    });
  });

  test('the presented order of the chain does not matter beyond the leaf', () => {
    const p2 = createProxy(createProxy(alice));
    const [leaf, p1, eec] = chainOf(p2) as [Buffer, Buffer, Buffer];
    check(defaultVerifier.verifyChain([leaf, eec, p1, eec]), { ok: true, proxyDepth: 2 });
  });
});

describe('verifyChain: validity and signatures', () => {
  const cases: { name: string; chain: () => Buffer[]; expect: Expect }[] = [
    {
      name: 'expired proxy',
      chain: () => chainOf(createProxy(alice, { notBefore: ago(2 * DAY), notAfter: ago(DAY) })),
      expect: {
        ok: false,
        code: 'expired',
        reason: /certificate has expired: \/C=CA\/.*\/CN=\d+ \(notAfter 20/,
      },
    },
    {
      name: 'expired end-entity certificate under a valid proxy',
      chain: () =>
        chainOf(createProxy(createUserCertificate(ca, '/C=CA/O=Grid/CN=Old', { notAfter: ago(HOUR) }))),
      expect: { ok: false, code: 'expired', reason: /CN=Old \(notAfter/ },
    },
    {
      name: 'proxy not yet valid',
      chain: () => chainOf(createProxy(alice, { notBefore: fromNow(DAY), notAfter: fromNow(2 * DAY) })),
      expect: { ok: false, code: 'not_yet_valid', reason: /not yet valid/ },
    },
    {
      name: 'proxy signed by another key that claims the DN (forged)',
      chain: () => chainOf(createProxy(alice, { signWith: bob.key })),
      expect: { ok: false, code: 'bad_signature', reason: /signature failure/ },
    },
    {
      name: 'certificate from an untrusted CA',
      chain: () => chainOf(createUserCertificate(createCA('/C=CA/O=Evil/CN=Evil CA'), ALICE_DN)),
      expect: { ok: false, code: 'untrusted_issuer', reason: /Evil CA/ },
    },
    {
      name: 'certificate from an impostor CA with the trusted CA name',
      chain: () => chainOf(createUserCertificate(createCA('/C=CA/O=Grid/CN=Test Grid CA'), ALICE_DN)),
      expect: { ok: false, code: 'bad_signature' },
    },
    {
      name: 'impostor CA presented along with its user',
      chain: () => {
        const impostor = createCA('/C=CA/O=Grid/CN=Test Grid CA');
        return [createUserCertificate(impostor, ALICE_DN).cert.der, impostor.cert.der];
      },
      expect: { ok: false, code: 'bad_signature' },
    },
    {
      name: 'sha1-signed end-entity certificate',
      chain: () =>
        chainOf(createUserCertificate(ca, '/C=CA/O=Grid/CN=Old Hash', { issue: { digest: 'sha1' } })),
      expect: { ok: false, code: 'invalid_certificate', reason: /too weak/ },
    },
    {
      name: 'unknown critical extension on the end-entity certificate',
      chain: () =>
        chainOf(
          createUserCertificate(ca, '/C=CA/O=Grid/CN=Odd', {
            issue: { extensions: [{ oid: '1.3.6.1.4.1.99999.1', critical: true, value: encodeNull() }] },
          }),
        ),
      expect: {
        ok: false,
        code: 'invalid_certificate',
        reason: /critical extension 1\.3\.6\.1\.4\.1\.99999\.1/,
      },
    },
    {
      name: 'unknown non-critical extension is fine',
      chain: () =>
        chainOf(
          createProxy(alice, {
            issue: { extensions: [{ oid: '1.3.6.1.4.1.99999.1', critical: false, value: encodeNull() }] },
          }),
        ),
      expect: { ok: true, proxyType: 'rfc3820' },
    },
  ];
  for (const c of cases) test(c.name, () => check(defaultVerifier.verifyChain(c.chain()), c.expect));

  test('clock skew tolerates a proxy made on a clock slightly ahead', () => {
    const early = chainOf(createProxy(alice, { notBefore: fromNow(2 * 60_000) }));
    check(defaultVerifier.verifyChain(early), { ok: true });
    check(verifier({ clockSkewSeconds: 0 }).verifyChain(early), { ok: false, code: 'not_yet_valid' });
  });

  test('`now` is honoured: the same chain expires later', () => {
    const proxy = createProxy(alice, { notAfter: fromNow(HOUR) });
    check(defaultVerifier.verifyChain(chainOf(proxy), new Date(Date.now() + 2 * HOUR)), {
      ok: false,
      code: 'expired',
    });
  });
});

describe('verifyChain: proxy rules (RFC 3820)', () => {
  const cases: { name: string; chain: () => Buffer[]; expect: Expect }[] = [
    {
      name: 'end-entity certificate signs an ordinary certificate with another DN',
      chain: () => {
        const keys = generateKey();
        const issued = issueCertificate({
          subject: '/C=CA/O=Grid/CN=Bob',
          publicKey: keys.publicKey,
          issuer: alice,
          extKeyUsage: ['clientAuth'],
        });
        return [issued.der, alice.cert.der];
      },
      expect: { ok: false, code: 'invalid_proxy', reason: /is not a proxy/ },
    },
    {
      name: 'proxyCertInfo but a subject that is not the issuer plus one CN',
      chain: () => chainOf(createProxy(alice, { issue: { subject: '/C=CA/O=Grid/CN=Bob/CN=123' } })),
      expect: { ok: false, code: 'invalid_proxy', reason: /name violation/ },
    },
    {
      name: 'proxy subject with two extra CNs',
      chain: () => chainOf(createProxy(alice, { issue: { subject: `${ALICE_DN}/CN=1/CN=2` } })),
      expect: { ok: false, code: 'invalid_proxy', reason: /name violation/ },
    },
    {
      name: 'proxy subject with an extra RDN that is not a CN',
      chain: () => chainOf(createProxy(alice, { issue: { subject: `${ALICE_DN}/OU=123` } })),
      expect: { ok: false, code: 'invalid_proxy', reason: /name violation/ },
    },
    {
      name: 'proxy subject with a multi-valued last RDN',
      chain: () => chainOf(createProxy(alice, { issue: { subject: `${ALICE_DN}/CN=1+CN=2` } })),
      expect: { ok: false, code: 'invalid_proxy', reason: /name violation/ },
    },
    {
      name: 'legacy proxy of an end-entity certificate with another name',
      chain: () =>
        chainOf(createProxy(alice, { type: 'legacy', issue: { subject: '/C=CA/O=Grid/CN=Bob/CN=proxy' } })),
      expect: { ok: false, code: 'invalid_proxy', reason: /name violation/ },
    },
    {
      name: 'non-critical proxyCertInfo',
      chain: () =>
        chainOf(
          createProxy(alice, {
            issue: { proxy: { type: 'rfc3820', policy: 'inheritAll', critical: false } },
          }),
        ),
      expect: { ok: false, code: 'invalid_proxy', reason: /must be critical/ },
    },
    {
      name: 'unknown proxy policy language',
      chain: () =>
        chainOf(createProxy(alice, { issue: { proxy: { type: 'rfc3820', policy: '1.2.3.4.5' } } })),
      expect: { ok: false, code: 'invalid_proxy', reason: /policy language 1\.2\.3\.4\.5/ },
    },
    {
      name: 'proxy with CA:TRUE',
      chain: () => chainOf(createProxy(alice, { issue: { ca: true } })),
      expect: { ok: false, code: 'invalid_proxy', reason: /must not be a CA/ },
    },
    {
      name: 'proxy with keyCertSign',
      chain: () => chainOf(createProxy(alice, { issue: { keyUsage: ['digitalSignature', 'keyCertSign'] } })),
      expect: { ok: false, code: 'invalid_proxy', reason: /keyCertSign/ },
    },
    {
      name: 'proxy with a subjectAltName',
      chain: () => chainOf(createProxy(alice, { issue: { subjectAltName: ['alice.example.org'] } })),
      expect: { ok: false, code: 'invalid_proxy', reason: /subjectAltName/ },
    },
    {
      name: 'proxy issued by a certificate without digitalSignature',
      chain: () =>
        chainOf(
          createProxy(
            createUserCertificate(ca, '/C=CA/O=Grid/CN=Enc Only', {
              issue: { keyUsage: ['keyEncipherment'] },
            }),
            {
              issue: { keyUsage: ['digitalSignature'] },
            },
          ),
        ),
      expect: { ok: false, code: 'invalid_certificate', reason: /digitalSignature/ },
    },
    {
      name: 'proxy path length 0 with a proxy below it',
      chain: () => chainOf(createProxy(createProxy(alice, { pathLen: 0 }))),
      expect: { ok: false, code: 'invalid_proxy', reason: /path length constraint exceeded/ },
    },
    {
      name: 'proxy path length 1 with one proxy below it',
      chain: () => chainOf(createProxy(createProxy(alice, { pathLen: 1 }))),
      expect: { ok: true, proxyDepth: 2 },
    },
    {
      name: 'proxy path length 1 with two proxies below it',
      chain: () => chainOf(createProxy(createProxy(createProxy(alice, { pathLen: 1 })))),
      expect: { ok: false, code: 'invalid_proxy', reason: /path length/ },
    },
    {
      name: 'draft proxy path length 0 with a proxy below it',
      chain: () => chainOf(createProxy(createProxy(alice, { type: 'draft', pathLen: 0 }), { type: 'draft' })),
      expect: { ok: false, code: 'invalid_proxy', reason: /path length/ },
    },
    {
      name: 'proxy carrying proxyCertInfo issued directly by a CA',
      chain: () =>
        chainOf(
          createUserCertificate(ca, '/C=CA/O=Grid/CN=Direct', {
            issue: { proxy: { type: 'rfc3820', policy: 'inheritAll' } },
          }),
        ),
      expect: { ok: false, code: 'invalid_proxy', reason: /issued by a CA/ },
    },
    {
      name: 'end-entity certificate for servers only',
      chain: () =>
        chainOf(
          createUserCertificate(ca, '/C=CA/O=Grid/CN=Server', { issue: { extKeyUsage: ['serverAuth'] } }),
        ),
      expect: { ok: false, code: 'invalid_certificate', reason: /client authentication/ },
    },
  ];
  for (const c of cases) test(c.name, () => check(defaultVerifier.verifyChain(c.chain()), c.expect));
});

describe('verifyChain: CA paths', () => {
  const sub = createCA('/C=CA/O=Grid/CN=Sub CA', { issuer: ca });
  const carol = createUserCertificate(sub, '/C=CA/O=Grid/CN=Carol');

  test('user of a sub-CA, sub-CA presented', () => {
    assert.equal(carol.chain.length, 1);
    check(defaultVerifier.verifyChain(chainOf(carol)), { ok: true, dn: '/C=CA/O=Grid/CN=Carol' });
    check(defaultVerifier.verifyChain(chainOf(createProxy(carol))), { ok: true, proxyType: 'rfc3820' });
  });

  test('user of a sub-CA, sub-CA not presented: trusted only if the sub-CA is in the trust store', () => {
    check(defaultVerifier.verifyChain([carol.cert.der]), { ok: false, code: 'untrusted_issuer' });
    check(verifier({ trustedCAs: [...trustedCAs, sub.cert.der] }).verifyChain([carol.cert.der]), {
      ok: true,
    });
  });

  test('a sub-CA alone in the trust store is not a trust anchor', () => {
    check(createVerifier({ trustedCAs: [sub.cert.der] }).verifyChain([carol.cert.der]), {
      ok: false,
      code: 'untrusted_issuer',
    });
  });

  test('CA path length violated', () => {
    const strictSub = createCA('/C=CA/O=Strict/CN=Strict Sub', { issuer: rootPathLen0 });
    const dave = createUserCertificate(strictSub, '/C=CA/O=Strict/CN=Dave');
    check(defaultVerifier.verifyChain(chainOf(dave)), {
      ok: false,
      code: 'invalid_certificate',
      reason: /path length constraint exceeded: \/C=CA\/O=Strict\/CN=Strict Root/,
    });
    const direct = createUserCertificate(rootPathLen0, '/C=CA/O=Strict/CN=Erin');
    check(defaultVerifier.verifyChain(chainOf(direct)), { ok: true });
  });

  test('a trust anchor without basicConstraints (an old v1-style root) still anchors', () => {
    const keys = generateKey();
    const bare = issueCertificate({
      subject: '/C=CA/O=Old/CN=Old Root',
      publicKey: keys.publicKey,
      signingKey: keys.privateKey,
      subjectKeyIdentifier: false,
      authorityKeyIdentifier: false,
    });
    assert.equal(bare.parsed.extensions.length, 0);
    const oldUser = createUserCertificate(
      { cert: bare.parsed, key: keys.privateKey, chain: [] },
      '/C=CA/O=Old/CN=Gus',
    );
    check(createVerifier({ trustedCAs: [bare.der] }).verifyChain(chainOf(oldUser)), {
      ok: true,
      dn: '/C=CA/O=Old/CN=Gus',
    });
    // but it is no anchor for a chain that does not end in it
    check(createVerifier({ trustedCAs: [bare.der] }).verifyChain(chainOf(alice)), {
      ok: false,
      code: 'untrusted_issuer',
    });
  });

  test('an intermediate without cA=TRUE cannot issue', () => {
    const notCa = createUserCertificate(ca, '/C=CA/O=Grid/CN=Not A CA', {
      issue: { keyUsage: ['digitalSignature'] },
    });
    const keys = generateKey();
    const victim = issueCertificate({
      subject: '/C=CA/O=Grid/CN=Frank',
      publicKey: keys.publicKey,
      issuer: notCa,
    });
    check(defaultVerifier.verifyChain([victim.der, notCa.cert.der]), { ok: false, code: 'invalid_proxy' });
  });

  test('same-named certificates sharing one key end quickly, without a signature check', () => {
    const keys = generateKey();
    const loopName = '/C=CA/O=Grid/CN=Loop CA';
    const loops: Buffer[] = [];
    for (let i = 0; i < 15; i++) {
      loops.push(
        issueCertificate({
          subject: loopName,
          publicKey: keys.publicKey,
          signingKey: keys.privateKey,
          ca: true,
          serial: i + 1,
        }).der,
      );
    }
    const leaf = issueCertificate({
      subject: '/C=CA/O=Grid/CN=Loop User',
      publicKey: generateKey().publicKey,
      issuer: { cert: parseCertificate(loops[0] as Buffer), key: keys.privateKey },
    });
    const v = verifier();
    check(v.verifyChain([leaf.der, ...loops]), { ok: false, code: 'untrusted_issuer' });
    // no name chains to a trusted CA: not one signature was worth checking
    assert.equal(v.signatureChecks, 0);
    // more certificates than a real chain has are refused for their number alone
    check(v.verifyChain([leaf.der, ...loops, ...loops.slice(0, 5).map((d) => Buffer.from(d))]), {
      ok: false,
      code: 'invalid_certificate',
      reason: /too many certificates presented/,
    });
  });
});

describe('verifyChain: revocation', () => {
  const revokedUser = createUserCertificate(ca, '/C=CA/O=Grid/CN=Revoked User');
  const crl = issueCrl({ issuer: ca, revoked: [{ serial: revokedUser.cert.serial, date: ago(HOUR) }] });
  const expiredCrl = issueCrl({ issuer: ca, thisUpdate: ago(10 * DAY), nextUpdate: ago(DAY) });
  const wrongKeyCrl = issueCrl({
    issuer: ca,
    revoked: [{ serial: revokedUser.cert.serial }],
    signWith: generateKey().privateKey,
  });

  test('revoked end-entity certificate, with a CRL', () => {
    const v = verifier({ crls: [crl.der] });
    check(v.verifyChain(chainOf(revokedUser)), { ok: false, code: 'revoked', reason: /Revoked User/ });
    check(v.verifyChain(chainOf(createProxy(revokedUser))), { ok: false, code: 'revoked' });
    check(v.verifyChain(chainOf(alice)), { ok: true });
  });

  test('the same with crlMode off', () => {
    check(verifier({ crls: [crl.der], crlMode: 'off' }).verifyChain(chainOf(revokedUser)), { ok: true });
  });

  test('require mode: a valid CRL is enough, none is not', () => {
    check(verifier({ crls: [crl.der], crlMode: 'require' }).verifyChain(chainOf(alice)), { ok: true });
    check(verifier({ crlMode: 'require' }).verifyChain(chainOf(alice)), { ok: false, code: 'crl_missing' });
  });

  test('expired CRL', () => {
    check(verifier({ crls: [expiredCrl.der] }).verifyChain(chainOf(alice)), {
      ok: false,
      code: 'crl_expired',
      reason: /CRL of \/C=CA\/O=Grid\/CN=Test Grid CA has expired/,
    });
    check(verifier({ crls: [expiredCrl.der], crlMode: 'require' }).verifyChain(chainOf(alice)), {
      ok: false,
      code: 'crl_expired',
    });
  });

  test('a newer CRL wins over an expired one', () => {
    check(verifier({ crls: [expiredCrl.der, crl.der] }).verifyChain(chainOf(alice)), { ok: true });
  });

  test('CRL signed by the wrong key: ignored in if-present, crl_missing in require', () => {
    const ifPresent = verifier({ crls: [wrongKeyCrl.der] });
    check(ifPresent.verifyChain(chainOf(revokedUser)), { ok: true });
    assert.match(ifPresent.warnings.join('\n'), /does not verify/);
    check(verifier({ crls: [wrongKeyCrl.der], crlMode: 'require' }).verifyChain(chainOf(revokedUser)), {
      ok: false,
      code: 'crl_missing',
    });
  });

  test('a revoked sub-CA revokes its users', () => {
    const sub = createCA('/C=CA/O=Grid/CN=Revoked Sub CA', { issuer: ca });
    const user = createUserCertificate(sub, '/C=CA/O=Grid/CN=Sub User');
    const subCrl = issueCrl({ issuer: ca, revoked: [{ serial: sub.cert.serial }] });
    check(verifier({ crls: [subCrl.der] }).verifyChain(chainOf(user)), {
      ok: false,
      code: 'revoked',
      reason: /Revoked Sub CA/,
    });
  });

  test('garbage CRLs are reported, not fatal', () => {
    const v = verifier({ crls: [Buffer.from('not a crl')] });
    assert.equal(v.warnings.length, 1);
    check(v.verifyChain(chainOf(alice)), { ok: true });
  });
});

test('trusted CAs may be given parsed', () => {
  const parsed: ParsedCertificate[] = [ca.cert];
  check(createVerifier({ trustedCAs: parsed }).verifyChain(chainOf(createProxy(alice))), { ok: true });
});
