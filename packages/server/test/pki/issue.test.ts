import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  derToPem,
  firstPrivateKeyPem,
  OID,
  parseCertificate,
  parseCrl,
  parsePemCertificates,
  pemToDers,
  readPrivateKey,
} from '../../src/pki/certificate.ts';
import { encodeNull, encodeOid } from '../../src/pki/der.ts';
import {
  chainPem,
  createCA,
  createProxy,
  createServerCertificate,
  createUserCertificate,
  credentialPem,
  generateKey,
  issueCertificate,
  issueCrl,
  keyPem,
  loadCredential,
} from '../../src/pki/issue.ts';
import { ago, DAY, HOUR, openssl, put, tempDir } from './fixtures.ts';

const dir = await tempDir();
const ca = createCA('/C=CA/O=Grid/CN=Test Grid CA');
const caFile = await put(dir, 'ca.pem', derToPem(ca.cert.der));
const alice = createUserCertificate(ca, '/C=CA/O=Grid/OU=phys.example.org/CN=Alice Example');

let fileCount = 0;
async function verifyWithOpenssl(leaf: string, untrusted: string[] = [], extra: string[] = []) {
  const leafFile = await put(dir, `leaf${fileCount++}.pem`, leaf);
  const args = ['verify', '-CAfile', caFile, ...extra];
  if (untrusted.length)
    args.push('-untrusted', await put(dir, `chain${fileCount++}.pem`, untrusted.join('')));
  return openssl([...args, leafFile]);
}

const pemsOf = (certs: { der: Buffer }[]) => certs.map((c) => derToPem(c.der));

describe('certificates accepted by openssl verify', () => {
  test('CA and user certificate, EC and RSA', async () => {
    const rsaCa = createCA('/C=CA/O=Grid/CN=RSA CA', { keyKind: 'rsa' });
    const self = await openssl([
      'verify',
      '-CAfile',
      await put(dir, 'rsaca.pem', derToPem(rsaCa.cert.der)),
      await put(dir, 'rsaca2.pem', derToPem(rsaCa.cert.der)),
    ]);
    assert.equal(self.code, 0, self.stdout + self.stderr);
    for (const cred of [alice, createUserCertificate(ca, '/C=CA/O=Grid/CN=Rob', { keyKind: 'rsa' })]) {
      const r = await verifyWithOpenssl(derToPem(cred.cert.der), [], ['-purpose', 'sslclient']);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /: OK/);
    }
  });

  test('server certificate with DNS and IP subjectAltNames', async () => {
    const host = createServerCertificate(ca, ['localhost', '127.0.0.1', '::1']);
    const r = await verifyWithOpenssl(
      derToPem(host.cert.der),
      [],
      ['-purpose', 'sslserver', '-verify_hostname', 'localhost'],
    );
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const ip = await verifyWithOpenssl(derToPem(host.cert.der), [], ['-verify_ip', '::1']);
    assert.equal(ip.code, 0, ip.stdout + ip.stderr);
    assert.deepEqual(host.cert.subjectAltName?.dns, ['localhost']);
    assert.deepEqual(host.cert.subjectAltName?.ip, ['127.0.0.1', '0:0:0:0:0:0:0:1']);
  });

  test('sub-CA and its user, with -untrusted', async () => {
    const sub = createCA('/C=CA/O=Grid/CN=Sub CA', { issuer: ca });
    const carol = createUserCertificate(sub, '/C=CA/O=Grid/CN=Carol');
    const r = await verifyWithOpenssl(derToPem(carol.cert.der), pemsOf(carol.chain));
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const missing = await verifyWithOpenssl(derToPem(carol.cert.der));
    assert.notEqual(missing.code, 0);
  });

  test('RFC 3820 proxies (-allow_proxy_certs): full, limited, path length, proxy of a proxy', async () => {
    const p1 = createProxy(alice, { pathLen: 1 });
    for (const proxy of [createProxy(alice), createProxy(alice, { type: 'limited' }), p1, createProxy(p1)]) {
      const r = await verifyWithOpenssl(derToPem(proxy.cert.der), pemsOf(proxy.chain), [
        '-allow_proxy_certs',
      ]);
      assert.equal(r.code, 0, `${proxy.cert.subject.oneline}: ${r.stdout}${r.stderr}`);
    }
  });

  test('openssl rejects what it should: forged, bad name, path length', async () => {
    const bob = createUserCertificate(ca, '/C=CA/O=Grid/CN=Bob');
    const cases: [ReturnType<typeof createProxy>, RegExp][] = [
      [createProxy(alice, { signWith: bob.key }), /signature failure/],
      [
        createProxy(alice, { issue: { subject: '/C=CA/O=Grid/CN=Bob/CN=1' } }),
        /proxy subject name violation/,
      ],
      [createProxy(createProxy(alice, { pathLen: 0 })), /proxy path length constraint exceeded/],
    ];
    for (const [proxy, why] of cases) {
      const r = await verifyWithOpenssl(derToPem(proxy.cert.der), pemsOf(proxy.chain), [
        '-allow_proxy_certs',
      ]);
      assert.notEqual(r.code, 0);
      assert.match(r.stdout + r.stderr, why);
    }
  });

  test('openssl x509 -text parses every kind of certificate we make', async () => {
    const certs = {
      rfc: createProxy(alice, { pathLen: 2 }),
      limited: createProxy(alice, { type: 'limited' }),
      draft: createProxy(alice, { type: 'draft' }),
      legacy: createProxy(alice, { type: 'legacy' }),
    };
    const text = async (der: Buffer) => {
      const r = await openssl([
        'x509',
        '-noout',
        '-text',
        '-in',
        await put(dir, `text${fileCount++}.pem`, derToPem(der)),
      ]);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout;
    };
    const rfc = await text(certs.rfc.cert.der);
    assert.match(
      rfc,
      /Proxy Certificate Information: critical\s+Path Length Constraint: 0?2\s+Policy Language: Inherit all/,
    );
    assert.match(await text(certs.limited.cert.der), /Policy Language: 1\.3\.6\.1\.4\.1\.3536\.1\.1\.1\.9/);
    assert.match(await text(certs.draft.cert.der), /1\.3\.6\.1\.4\.1\.3536\.1\.222: critical/);
    const legacy = await text(certs.legacy.cert.der);
    assert.match(legacy, /Subject: C = CA, O = Grid, OU = phys.example.org, CN = Alice Example, CN = proxy/);
    assert.doesNotMatch(legacy, /Proxy Certificate Information/);
    const user = await text(alice.cert.der);
    assert.match(user, /X509v3 Key Usage: critical\s+Digital Signature/);
    assert.match(user, /X509v3 Extended Key Usage: \s+TLS Web Client Authentication/);
    assert.match(user, /X509v3 Basic Constraints: critical\s+CA:FALSE/);
    assert.match(user, /X509v3 Subject Key Identifier/);
    assert.match(user, /Signature Algorithm: ecdsa-with-SHA256/);
  });
});

describe('CRLs', () => {
  test('verified by openssl crl -CAfile, and parsed back', async () => {
    const crl = issueCrl({
      issuer: ca,
      revoked: [{ serial: alice.cert.serial, date: ago(HOUR) }, { serial: 255n }],
      thisUpdate: ago(HOUR),
      nextUpdate: new Date(Date.now() + DAY),
    });
    const file = await put(dir, 'crl.pem', crl.pem);
    const r = await openssl(['crl', '-in', file, '-CAfile', caFile, '-noout']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout + r.stderr, /verify OK/);
    const parsed = parseCrl(crl.der);
    assert.equal(parsed.issuer.oneline, '/C=CA/O=Grid/CN=Test Grid CA');
    assert.deepEqual([...parsed.revoked.keys()], [alice.cert.serial, 'ff']);
    assert.ok(parsed.nextUpdate && parsed.nextUpdate > parsed.thisUpdate);
    assert.deepEqual(pemToDers(crl.pem, 'X509 CRL'), [crl.der]);
  });

  test('a CRL signed by another key fails openssl crl -CAfile', async () => {
    const crl = issueCrl({ issuer: ca, signWith: generateKey().privateKey });
    const r = await openssl([
      'crl',
      '-in',
      await put(dir, 'badcrl.pem', crl.pem),
      '-CAfile',
      caFile,
      '-noout',
    ]);
    assert.match(r.stdout + r.stderr, /verify failure/);
  });
});

describe('parseCertificate', () => {
  test('agrees with node:crypto X509Certificate', () => {
    const cert = createProxy(alice).cert;
    const x = new X509Certificate(cert.der);
    assert.equal(cert.serial, x.serialNumber.toLowerCase().replace(/^0+(?=.)/, ''));
    assert.equal(cert.notBefore.getTime(), new Date(x.validFrom).getTime());
    assert.equal(cert.notAfter.getTime(), new Date(x.validTo).getTime());
    assert.deepEqual(
      cert.subject.rdns.map((r) => `${r[0]?.type}=${r[0]?.value}`),
      x.subject.split('\n'),
    );
    assert.equal(cert.signatureAlgorithm, '1.2.840.10045.4.3.2');
    assert.ok(cert.x509.verify(alice.cert.publicKey));
    assert.equal(cert.version, 3);
  });

  test('serials are lowercase hex without leading zeros', () => {
    const keys = generateKey();
    for (const [serial, hex] of [
      [0x00ab, 'ab'],
      [255, 'ff'],
      [0, '0'],
      [2n ** 120n + 1n, `1${'0'.repeat(29)}1`],
    ] as const) {
      const issued = issueCertificate({
        subject: '/CN=x',
        publicKey: keys.publicKey,
        signingKey: keys.privateKey,
        serial,
      });
      assert.equal(issued.parsed.serial, hex);
    }
  });

  test('extensions: basicConstraints, keyUsage, EKU, SKI/AKI, proxyCertInfo in both layouts', () => {
    const sub = createCA('/C=CA/O=Grid/CN=Sub', { issuer: ca, pathLen: 0 });
    assert.deepEqual(sub.cert.basicConstraints, { ca: true, pathLen: 0 });
    assert.deepEqual([...(sub.cert.keyUsage ?? [])], ['keyCertSign', 'cRLSign']);
    assert.deepEqual(sub.cert.authorityKeyIdentifier?.keyIdentifier, ca.cert.subjectKeyIdentifier);
    assert.deepEqual(alice.cert.extKeyUsage, [OID.clientAuth, OID.emailProtection]);
    assert.deepEqual(alice.cert.basicConstraints, { ca: false });

    const rfc = createProxy(alice, { pathLen: 3 }).cert;
    assert.deepEqual(rfc.proxyCertInfo, {
      kind: 'rfc3820',
      critical: true,
      pathLen: 3,
      policyLanguage: OID.pplInheritAll,
    });
    assert.equal(rfc.subjectKeyIdentifier, undefined);
    assert.equal(rfc.basicConstraints, undefined);
    assert.deepEqual([...(rfc.keyUsage ?? [])], [...(alice.cert.keyUsage ?? [])]);
    assert.equal(rfc.subject.rdns.at(-1)?.[0]?.value, BigInt(`0x${rfc.serial}`).toString(10));

    const draft = createProxy(alice, { type: 'draft', pathLen: 1 }).cert;
    assert.deepEqual(draft.proxyCertInfo, {
      kind: 'draft',
      critical: true,
      pathLen: 1,
      policyLanguage: OID.pplInheritAll,
    });
    // GSI-3 layout: SEQUENCE { SEQUENCE { OID }, [1] { INTEGER } }
    assert.equal(
      draft.extensions.find((e) => e.oid === OID.proxyCertInfoDraft)?.value.toString('hex'),
      '3011300a06082b06010505071501a103020101',
    );
    assert.equal(createProxy(alice, { type: 'limited' }).cert.proxyCertInfo?.policyLanguage, OID.pplLimited);
  });

  test('a duplicate extension makes the certificate invalid', () => {
    const keys = generateKey();
    const issued = issueCertificate({
      subject: '/CN=dup',
      publicKey: keys.publicKey,
      signingKey: keys.privateKey,
      extensions: [
        { oid: '1.3.6.1.4.1.99999.7', critical: false, value: encodeNull() },
        { oid: '1.3.6.1.4.1.99999.8', critical: false, value: encodeNull() },
      ],
    });
    // rename the second extension to the first one's OID (the signature no longer matters to the parser)
    const second = encodeOid('1.3.6.1.4.1.99999.8');
    const at = issued.der.indexOf(second);
    assert.ok(at > 0);
    const dup = Buffer.from(issued.der);
    dup[at + second.length - 1] = 0x07;
    assert.throws(
      () => parseCertificate(dup),
      /invalid certificate: duplicate extension 1\.3\.6\.1\.4\.1\.99999\.7/,
    );
  });

  test('garbage is refused with a clear error', () => {
    assert.throws(() => parseCertificate(Buffer.from('hello')), /not a valid X\.509 certificate/);
    assert.throws(
      () => parseCertificate(Buffer.concat([alice.cert.der, Buffer.from([0])])),
      /invalid certificate: .*trailing data/,
    );
  });
});

describe('PEM and credentials', () => {
  test('grid proxy file layout: certificate, PKCS#8 key, then the chain without the CA', () => {
    const sub = createCA('/C=CA/O=Grid/CN=Sub CA', { issuer: ca });
    const carol = createUserCertificate(sub, '/C=CA/O=Grid/CN=Carol');
    const proxy = createProxy(createProxy(carol));
    const text = credentialPem(proxy);
    const labels = [...text.matchAll(/-----BEGIN ([A-Z ]+)-----/g)].map((m) => m[1]);
    assert.deepEqual(labels, ['CERTIFICATE', 'PRIVATE KEY', 'CERTIFICATE', 'CERTIFICATE', 'CERTIFICATE']);
    const certs = parsePemCertificates(text).map((c) => c.subject.oneline);
    assert.equal(certs.length, 4);
    assert.equal(certs[2], '/C=CA/O=Grid/CN=Carol');
    assert.equal(certs[3], '/C=CA/O=Grid/CN=Sub CA');
    assert.ok(!certs.includes('/C=CA/O=Grid/CN=Test Grid CA'));
    assert.equal(chainPem(proxy), pemsOf([proxy.cert, ...proxy.chain]).join(''));
  });

  test('the first private key of a combined PEM is the credential key', () => {
    const proxy = createProxy(alice);
    const text = credentialPem(proxy);
    assert.equal(firstPrivateKeyPem(text), keyPem(proxy));
    const key = readPrivateKey(text);
    assert.equal(key.export({ format: 'pem', type: 'pkcs8' }), keyPem(proxy));
    const loaded = loadCredential(text);
    assert.equal(loaded.cert.fingerprint256, proxy.cert.fingerprint256);
    assert.deepEqual(
      loaded.chain.map((c) => c.subject.oneline),
      proxy.chain.map((c) => c.subject.oneline),
    );
    assert.throws(() => loadCredential(derToPem(alice.cert.der), keyPem(proxy)), /does not belong/);
    assert.throws(() => readPrivateKey(derToPem(alice.cert.der)), /no private key/);
  });

  test('derToPem and pemToDers round trip, ignoring other blocks', () => {
    const text = `junk\n${derToPem(alice.cert.der)}${keyPem(alice)}${derToPem(ca.cert.der).replace(/\n/g, '\r\n')}`;
    assert.deepEqual(pemToDers(text), [alice.cert.der, ca.cert.der]);
    assert.throws(() => pemToDers('-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----'), /base64/);
  });
});
