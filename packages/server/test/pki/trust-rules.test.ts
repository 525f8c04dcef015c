/**
 * Who a CA may vouch for (its .namespaces and .signing_policy files, its nameConstraints) and what a chain may
 * cost to check (key sizes, exponents, names matched before any signature), on the verifier and the loader.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { describe, test } from 'node:test';
import { derToPem, parseCertificate } from '../../src/pki/certificate.ts';
import {
  type Credential,
  chainPem,
  createCA,
  createProxy,
  createUserCertificate,
  generateKey,
  issueCertificate,
  rsaPublicKeyNobodyHolds,
} from '../../src/pki/issue.ts';
import { subjectHash } from '../../src/pki/names.ts';
import { loadTrustDirectory } from '../../src/pki/trust-store.ts';
import { createVerifier, type VerifyResult } from '../../src/pki/verify.ts';
import { constrainedSubCa, openssl, put, tempDir } from './fixtures.ts';

const chainOf = (cred: Credential): Buffer[] => [cred.cert.der, ...cred.chain.map((c) => c.der)];

function expectRefused(result: VerifyResult, code: string, reason?: RegExp): void {
  assert.ok(!result.ok, 'expected a refusal, got success');
  assert.equal(result.code, code, result.reason);
  if (reason) assert.match(result.reason, reason);
}

function expectAccepted(result: VerifyResult, dn?: string): void {
  assert.ok(result.ok, result.ok ? '' : `${result.code}: ${result.reason}`);
  if (dn) assert.equal(result.dn, dn);
}

// The review's attack: a second trusted CA whose signing policy allows only /O=Evil/*, issuing the admin's DN.
const ADMIN_DN = '/O=Repoman Development/CN=Repoman Administrator';
const devCa = createCA('/O=Repoman Development/CN=Repoman Development CA');
const evilCa = createCA('/O=Evil/CN=Evil CA');
const devPolicy =
  "access_id_CA X509 '/O=Repoman Development/CN=Repoman Development CA'\npos_rights globus CA:sign\ncond_subjects globus '\"/O=Repoman Development/*\"'\n";
const evilPolicy =
  "access_id_CA X509 '/O=Evil/CN=Evil CA'\npos_rights globus CA:sign\ncond_subjects globus '\"/O=Evil/*\"'\n";

async function trustDir(files: Record<string, string | Buffer>): Promise<string> {
  const dir = await tempDir('repoman-trust-');
  for (const [name, content] of Object.entries(files)) await put(dir, name, content);
  return dir;
}

async function verifierFor(dir: string, mode: 'require' | 'enforce-if-present' = 'require') {
  const loaded = await loadTrustDirectory(dir);
  return {
    verifier: createVerifier({
      trustedCAs: loaded.certificates,
      namespaces: { mode, byCa: loaded.namespaces },
    }),
    warnings: loaded.warnings,
  };
}

describe('CA namespaces: .signing_policy and .namespaces', () => {
  test('a CA may vouch only for the subjects its signing policy allows (the admin DN from an evil CA)', async () => {
    const dir = await trustDir({
      'dev.pem': chainPem(devCa),
      'dev.signing_policy': devPolicy,
      [`${subjectHash(evilCa.cert.subject.der)}.0`]: chainPem(evilCa),
      [`${subjectHash(evilCa.cert.subject.der)}.signing_policy`]: evilPolicy,
    });
    const { verifier, warnings } = await verifierFor(dir);
    assert.deepEqual(warnings, []);
    expectAccepted(verifier.verifyChain(chainOf(createUserCertificate(devCa, ADMIN_DN))), ADMIN_DN);
    const forged = createUserCertificate(evilCa, ADMIN_DN);
    expectRefused(
      verifier.verifyChain(chainOf(forged)),
      'outside_namespace',
      /namespace of the CA \/O=Evil\/CN=Evil CA/,
    );
    // and through a proxy of it: proxies resolve to the end-entity certificate
    expectRefused(verifier.verifyChain(chainOf(createProxy(forged))), 'outside_namespace');
    expectAccepted(
      verifier.verifyChain(chainOf(createUserCertificate(evilCa, '/O=Evil/CN=Eve'))),
      '/O=Evil/CN=Eve',
    );
    // matching is over the whole subject, case-insensitively, as grid middleware does
    expectAccepted(verifier.verifyChain(chainOf(createUserCertificate(evilCa, '/o=EVIL/CN=Eve'))));
    expectRefused(
      verifier.verifyChain(chainOf(createUserCertificate(evilCa, '/C=XX/O=Evil/CN=Eve'))),
      'outside_namespace',
    );
  });

  test('.namespaces wins over .signing_policy when both exist and disagree; DENY beats PERMIT', async () => {
    const namespaces = [
      '##',
      '## NAMESPACES-VERSION: 1.0',
      '##',
      'TO Issuer "/O=Evil/CN=Evil CA" \\',
      '  PERMIT Subject "/O=Evil/OU=Users/.*"',
      'TO Issuer SELF DENY Subject "/O=Evil/OU=Users/CN=Mallory.*"   # a comment',
      // an entry naming another CA does not widen that CA's namespace
      `TO Issuer "${ADMIN_DN}" PERMIT Subject ".*"`,
      '',
    ].join('\n');
    const dir = await trustDir({
      'evil.pem': chainPem(evilCa),
      'evil.signing_policy': evilPolicy, // would allow /O=Evil/CN=Eve
      'evil.namespaces': namespaces,
    });
    const { verifier } = await verifierFor(dir);
    const user = (dn: string) => verifier.verifyChain(chainOf(createUserCertificate(evilCa, dn)));
    expectAccepted(user('/O=Evil/OU=Users/CN=Eve'));
    expectRefused(
      user('/O=Evil/CN=Eve'),
      'outside_namespace',
      /\.namespaces permits only "\/O=Evil\/OU=Users\/\.\*"/,
    );
    expectRefused(user('/O=Evil/OU=Users/CN=Mallory M'), 'outside_namespace', /denied by/);
  });

  test('without either file: "require" (the default) lets the CA vouch for nobody, "enforce-if-present" for anyone', async () => {
    const dir = await trustDir({ 'evil.pem': chainPem(evilCa) });
    const eve = chainOf(createUserCertificate(evilCa, '/O=Elsewhere/CN=Eve'));
    const required = await verifierFor(dir, 'require');
    expectRefused(
      required.verifier.verifyChain(eve),
      'outside_namespace',
      /has no \.namespaces or \.signing_policy/,
    );
    expectAccepted((await verifierFor(dir, 'enforce-if-present')).verifier.verifyChain(eve));
  });

  test('a file that cannot be read fails closed, and a stray file is reported', async () => {
    const dir = await trustDir({
      'evil.pem': chainPem(evilCa),
      'evil.namespaces': 'TO Issuer SELF ALLOW Subject ".*"\n',
      'nobody.signing_policy': evilPolicy,
    });
    const { verifier, warnings } = await verifierFor(dir, 'enforce-if-present');
    assert.match(warnings.join('\n'), /evil\.namespaces:1: expected TO Issuer/);
    assert.match(warnings.join('\n'), /nobody\.signing_policy: belongs to no CA certificate/);
    expectRefused(
      verifier.verifyChain(chainOf(createUserCertificate(evilCa, '/O=Evil/CN=Eve'))),
      'outside_namespace',
      /cannot be read/,
    );
  });

  test("a sub-CA must be in its parent's namespace, and its users in its own", async () => {
    const root = createCA('/O=Grid/CN=Grid Root');
    const sub = createCA('/O=Grid/CN=Grid Users CA', { issuer: root });
    const rogue = createCA('/O=Rogue/CN=Rogue Sub CA', { issuer: root });
    const dir = await trustDir({
      'root.pem': chainPem(root),
      'root.namespaces': 'TO Issuer SELF PERMIT Subject "/O=Grid/CN=Grid Users CA"\n',
      'sub.pem': sub.cert.x509.toString(),
      'sub.namespaces': 'TO Issuer SELF PERMIT Subject "/O=Grid/OU=Users/.*"\n',
    });
    const { verifier } = await verifierFor(dir);
    expectAccepted(verifier.verifyChain(chainOf(createUserCertificate(sub, '/O=Grid/OU=Users/CN=Ann'))));
    expectRefused(
      verifier.verifyChain(chainOf(createUserCertificate(sub, '/O=Grid/CN=Ann'))),
      'outside_namespace',
    );
    // the rogue sub-CA is presented by its user; the root's namespace does not hold it
    expectRefused(
      verifier.verifyChain(chainOf(createUserCertificate(rogue, '/O=Grid/OU=Users/CN=Ann'))),
      'outside_namespace',
      /Rogue Sub CA is outside the namespace of the CA \/O=Grid\/CN=Grid Root/,
    );
  });
});

describe('name constraints, critical or not', () => {
  const root = createCA('/O=Root Org/CN=Constrained Root');
  for (const critical of [false, true]) {
    test(`a ${critical ? 'critical' : 'non-critical'} permitted subtree holds (openssl agrees)`, async () => {
      const { credential: subCred, der: subDer } = constrainedSubCa(
        root,
        '/O=Sub Org/CN=Sub CA',
        '/O=Sub Org',
        critical,
      );
      const verifier = createVerifier({ trustedCAs: [root.cert.der] });
      const inside = createUserCertificate(subCred, '/O=Sub Org/CN=Ann');
      const outside = createUserCertificate(subCred, ADMIN_DN);
      expectAccepted(verifier.verifyChain([inside.cert.der, subDer]));
      expectRefused(
        verifier.verifyChain([outside.cert.der, subDer]),
        'outside_namespace',
        /permitted subtree violation/,
      );
      expectRefused(
        verifier.verifyChain([
          createProxy({ ...outside, chain: [subCred.cert] }).cert.der,
          outside.cert.der,
          subDer,
        ]),
        'outside_namespace',
      );
      // openssl verify says the same of the outside one
      const dir = await tempDir();
      const rootFile = await put(dir, 'root.pem', chainPem(root));
      const subFile = await put(dir, 'sub.pem', derToPem(subDer));
      const ok = await openssl([
        'verify',
        '-CAfile',
        rootFile,
        '-untrusted',
        subFile,
        await put(dir, 'in.pem', inside.cert.x509.toString()),
      ]);
      assert.equal(ok.code, 0, ok.stderr + ok.stdout);
      const bad = await openssl([
        'verify',
        '-CAfile',
        rootFile,
        '-untrusted',
        subFile,
        await put(dir, 'out.pem', outside.cert.x509.toString()),
      ]);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stdout + bad.stderr, /permitted subtree violation/);
    });
  }
});

/**
 * The review's costly chain: CAs sharing one huge RSA key, named so that they chain up to a trusted CA, and a
 * leaf that none of them really signed. Before: one slow signature check per certificate.
 */
function hostileChain(trusted: Credential, key: KeyObject, length: number): Buffer[] {
  const junk = generateKey();
  const certs: Buffer[] = [];
  let issuerName = trusted.cert.subject.oneline;
  for (let i = length; i >= 1; i--) {
    const cert = issueCertificate({
      subject: `/O=Hostile/CN=Hostile CA ${i}`,
      publicKey: key,
      issuer: {
        cert:
          issuerName === trusted.cert.subject.oneline ? trusted.cert : parseCertificate(certs[0] as Buffer),
        key: junk.privateKey,
      },
      ca: true,
    });
    certs.unshift(cert.der);
    issuerName = cert.parsed.subject.oneline;
  }
  const leaf = issueCertificate({
    subject: '/O=Hostile/CN=Nobody',
    publicKey: generateKey().publicKey,
    issuer: { cert: parseCertificate(certs[0] as Buffer), key: junk.privateKey },
  });
  return [leaf.der, ...certs];
}

describe('what a chain may cost to check', () => {
  const ca = createCA('/O=Grid/CN=Cost CA');
  test('RSA keys above 8192 bits or with exponents above 2^32 are refused before any signature is checked', () => {
    for (const [bits, e, why] of [
      [16384, 2n ** 64n - 59n, /larger than the 8192/],
      [16384, 65537n, /larger than the 8192/],
      [4096, 2n ** 33n + 1n, /exponent above 2\^32/],
    ] as const) {
      const verifier = createVerifier({ trustedCAs: [ca.cert.der] });
      expectRefused(
        verifier.verifyChain(hostileChain(ca, rsaPublicKeyNobodyHolds(bits, e), 10)),
        'weak_key',
        why,
      );
      assert.equal(verifier.signatureChecks, 0, `${bits} bits, e=${e}`);
    }
  });

  test('user and proxy certificates may not carry RSA keys above 4096 bits (the most grid tools make)', () => {
    const verifier = createVerifier({ trustedCAs: [ca.cert.der] });
    const big = issueCertificate({
      subject: '/O=Grid/CN=Big',
      publicKey: rsaPublicKeyNobodyHolds(8192, 65537n),
      issuer: ca,
    });
    expectRefused(verifier.verifyChain([big.der]), 'weak_key', /larger than the 4096 accepted for a user/);
    assert.equal(verifier.signatureChecks, 0);
  });

  test('a forged chain named up to a trusted CA costs one signature check, by the trusted key', () => {
    const verifier = createVerifier({ trustedCAs: [ca.cert.der] });
    expectRefused(verifier.verifyChain(hostileChain(ca, generateKey().publicKey, 10)), 'bad_signature');
    assert.equal(verifier.signatureChecks, 1);
  });

  test('user keys below 2048 bits are refused, 2048-bit RSA and P-256 pass', () => {
    const rsaCa = createCA('/O=Grid/CN=RSA CA', { keyKind: 'rsa' });
    const verifier = createVerifier({ trustedCAs: [rsaCa.cert.der] });
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const weak = issueCertificate({ subject: '/O=Grid/CN=Weak', publicKey: small.publicKey, issuer: rsaCa });
    expectRefused(verifier.verifyChain([weak.der]), 'weak_key', /1024 bits is smaller than the 2048/);
    // a proxy's key counts too
    const user = createUserCertificate(rsaCa, '/O=Grid/CN=Ann', { keyKind: 'rsa' });
    const weakProxy = issueCertificate({
      subject: '/O=Grid/CN=Ann/CN=123',
      publicKey: small.publicKey,
      issuer: user,
      proxy: { type: 'rfc3820', policy: 'inheritAll' },
      keyUsage: ['digitalSignature'],
    });
    expectRefused(verifier.verifyChain([weakProxy.der, user.cert.der]), 'weak_key');
    expectAccepted(verifier.verifyChain(chainOf(createProxy(user))));
    expectAccepted(verifier.verifyChain(chainOf(createUserCertificate(rsaCa, '/O=Grid/CN=Bea'))));
  });
});
