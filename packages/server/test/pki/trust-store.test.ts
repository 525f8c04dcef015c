import assert from 'node:assert/strict';
import { mkdir, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { derToPem, parseCertificate } from '../../src/pki/certificate.ts';
import { createCA, createProxy, createUserCertificate, issueCrl, keyPem } from '../../src/pki/issue.ts';
import { subjectHash } from '../../src/pki/names.ts';
import { loadCrlDirectory, loadTrustDirectory } from '../../src/pki/trust-store.ts';
import { createVerifier } from '../../src/pki/verify.ts';
import { put, tempDir } from './fixtures.ts';

const ca = createCA('/C=CA/O=Grid/CN=Test Grid CA');
const sub = createCA('/C=CA/O=Grid/CN=Sub CA', { issuer: ca });
const other = createCA('/C=CA/O=Other/CN=Other CA');
const derCa = createCA('/C=CA/O=Der/CN=DER CA');
const alice = createUserCertificate(ca, '/C=CA/O=Grid/CN=Alice');
const revoked = createUserCertificate(ca, '/C=CA/O=Grid/CN=Mallory');
const hash = subjectHash(ca.cert.subject.der);

const fingerprints = (ders: Buffer[]) => ders.map((d) => parseCertificate(d).subject.oneline).sort();

test('loadTrustDirectory reads an /etc/grid-security/certificates layout', async () => {
  const dir = await tempDir();
  await put(dir, 'TestGridCA.pem', derToPem(ca.cert.der));
  await symlink('TestGridCA.pem', join(dir, `${hash}.0`));
  await put(dir, `${hash}.signing_policy`, "access_id_CA X509 '/C=CA/O=Grid/CN=Test Grid CA'\n");
  await put(
    dir,
    `${hash}.namespaces`,
    'TO Issuer "/C=CA/O=Grid/CN=Test Grid CA" PERMIT Subject "/C=CA/O=Grid/.*"\n',
  );
  await put(dir, `${hash}.info`, 'alias = TestGridCA\n');
  await put(dir, `${hash}.crl_url`, 'http://example.org/crl\n');
  await put(dir, `${hash}.r0`, issueCrl({ issuer: ca }).pem);
  await put(dir, 'bundle.crt', derToPem(sub.cert.der) + derToPem(other.cert.der));
  await put(dir, `${subjectHash(derCa.cert.subject.der)}.1`, derCa.cert.der);
  await put(dir, '.hidden.pem', derToPem(createCA('/CN=Hidden').cert.der));
  await put(dir, 'broken.pem', '-----BEGIN CERTIFICATE-----\nMIIBroken=\n-----END CERTIFICATE-----\n');
  await put(dir, 'empty.0', '');
  await put(dir, 'user.pem', derToPem(alice.cert.der));
  await put(dir, 'README', 'not a certificate\n');
  await mkdir(join(dir, 'subdir.pem'));
  await symlink('missing.pem', join(dir, 'dangling.0'));

  const loaded = await loadTrustDirectory(dir);
  assert.deepEqual(fingerprints(loaded.certificates), [
    '/C=CA/O=Der/CN=DER CA',
    '/C=CA/O=Grid/CN=Sub CA',
    '/C=CA/O=Grid/CN=Test Grid CA',
    '/C=CA/O=Other/CN=Other CA',
  ]);
  assert.equal(loaded.warnings.length, 3, loaded.warnings.join('\n'));
  assert.match(loaded.warnings.join('\n'), /broken\.pem: not a valid certificate/);
  assert.match(loaded.warnings.join('\n'), /empty\.0: not a valid certificate/);
  assert.match(loaded.warnings.join('\n'), /user\.pem: \/C=CA\/O=Grid\/CN=Alice is not a CA certificate/);
});

test('loadCrlDirectory reads .r0, .crl and PEM files, PEM or DER', async () => {
  const dir = await tempDir();
  const caCrl = issueCrl({ issuer: ca, revoked: [{ serial: revoked.cert.serial }] });
  const otherCrl = issueCrl({ issuer: other });
  const subCrl = issueCrl({ issuer: sub });
  await put(dir, `${hash}.r0`, caCrl.pem);
  await put(dir, 'other.crl', otherCrl.der);
  await put(dir, 'sub.pem', subCrl.pem);
  await put(dir, 'copy.r1', caCrl.der);
  await put(dir, 'TestGridCA.pem', derToPem(ca.cert.der));
  await put(dir, 'bad.r0', 'garbage');
  await put(dir, 'key.pem', keyPem(alice));

  const loaded = await loadCrlDirectory(dir);
  assert.equal(loaded.crls.length, 3);
  assert.deepEqual(
    new Set(loaded.crls.map((d) => d.toString('hex'))),
    new Set([caCrl.der, otherCrl.der, subCrl.der].map((d) => d.toString('hex'))),
  );
  assert.deepEqual(loaded.warnings.length, 1, loaded.warnings.join('\n'));
  assert.match(loaded.warnings[0] as string, /bad\.r0: not a valid CRL/);

  // the loaded directories drive a verifier end to end
  const cas = await loadTrustDirectory(dir);
  const verifier = createVerifier({ trustedCAs: cas.certificates, crls: loaded.crls });
  assert.equal(verifier.verifyChain([createProxy(alice).cert.der, alice.cert.der]).ok, true);
  const result = verifier.verifyChain([revoked.cert.der]);
  assert.equal(result.ok ? 'ok' : result.code, 'revoked');
});

test('a missing directory is an error the caller sees', async () => {
  await assert.rejects(loadTrustDirectory('/nonexistent/repoman-pki'), /ENOENT/);
  await assert.rejects(loadCrlDirectory('/nonexistent/repoman-pki'), /ENOENT/);
});
