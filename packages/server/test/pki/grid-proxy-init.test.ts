// Interoperability with the real Globus tool: proxies made by grid-proxy-init from our certificates verify here.
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { derToPem, pemToDers } from '../../src/pki/certificate.ts';
import { createCA, createUserCertificate, keyPem } from '../../src/pki/issue.ts';
import { subjectHash, subjectHashOld } from '../../src/pki/names.ts';
import { loadTrustDirectory } from '../../src/pki/trust-store.ts';
import { createVerifier, type VerifyResult } from '../../src/pki/verify.ts';
import { put, type RunResult, run, tempDir } from './fixtures.ts';

const ALICE_DN = '/C=CA/O=Grid/OU=phys.example.org/CN=Alice Example';
const dir = await tempDir();
const certDir = join(dir, 'certificates');
// grid-proxy-init needs RSA keys
const ca = createCA('/C=CA/O=Grid/CN=Test Grid CA', { keyKind: 'rsa' });
const alice = createUserCertificate(ca, ALICE_DN, { keyKind: 'rsa' });
const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, X509_CERT_DIR: certDir };

before(async () => {
  await mkdir(certDir);
  const policy = `access_id_CA X509 '${ca.cert.subject.oneline}'\npos_rights globus CA:sign\ncond_subjects globus '"/C=CA/O=Grid/*"'\n`;
  // Globus looks the CA up under the old (MD5) hash as well as the current one
  for (const hash of [subjectHash(ca.cert.subject.der), subjectHashOld(ca.cert.subject.der)]) {
    await put(certDir, `${hash}.0`, derToPem(ca.cert.der), 0o644);
    await put(certDir, `${hash}.signing_policy`, policy, 0o644);
  }
  await put(dir, 'usercert.pem', derToPem(alice.cert.der), 0o644);
  await put(dir, 'userkey.pem', keyPem(alice), 0o400);
});

async function gridProxyInit(args: string[], out: string): Promise<string> {
  let result: RunResult;
  try {
    result = await run('grid-proxy-init', [...args, '-q', '-certdir', certDir, '-out', join(dir, out)], {
      env,
      input: '',
    });
  } catch (err) {
    assert.fail(
      `grid-proxy-init is needed for this test (${(err as Error).message}): apt-get install globus-proxy-utils`,
    );
  }
  assert.equal(result.code, 0, `grid-proxy-init ${args.join(' ')} failed: ${result.stdout}${result.stderr}`);
  return readFile(join(dir, out), 'utf8');
}

const userArgs = () => ['-cert', join(dir, 'usercert.pem'), '-key', join(dir, 'userkey.pem')];

async function verifyProxyFile(text: string): Promise<VerifyResult> {
  const trust = await loadTrustDirectory(certDir);
  assert.deepEqual(trust.warnings, []);
  return createVerifier({ trustedCAs: trust.certificates }).verifyChain(pemToDers(text));
}

test('grid-proxy-init -rfc (checked by the tool against our hashed CA directory) verifies here', async () => {
  const text = await gridProxyInit(['-rfc', '-verify', ...userArgs()], 'x509up_rfc');
  assert.match(text, /-----BEGIN PRIVATE KEY-----/);
  const result = await verifyProxyFile(text);
  assert.ok(result.ok, result.ok ? '' : result.reason);
  assert.equal(result.dn, ALICE_DN);
  assert.equal(result.proxyType, 'rfc3820');
  assert.equal(result.limited, false);

  // and a proxy of that proxy
  const proxyFile = join(dir, 'x509up_rfc');
  const second = await verifyProxyFile(
    await gridProxyInit(['-cert', proxyFile, '-key', proxyFile], 'x509up_rfc2'),
  );
  assert.ok(second.ok, second.ok ? '' : second.reason);
  assert.equal(second.proxyDepth, 2);
  assert.equal(second.dn, ALICE_DN);
});

test('grid-proxy-init -old (legacy GT2 proxy) verifies here', async () => {
  // no -verify: Globus on OpenSSL 3 cannot verify its own legacy proxies ("key usage does not include certificate signing")
  const result = await verifyProxyFile(await gridProxyInit(['-old', ...userArgs()], 'x509up_old'));
  assert.ok(result.ok, result.ok ? '' : result.reason);
  assert.equal(result.dn, ALICE_DN);
  assert.equal(result.proxyType, 'legacy');
});

test('grid-proxy-init -draft and -limited verify here', async () => {
  const draft = await verifyProxyFile(await gridProxyInit(['-draft', ...userArgs()], 'x509up_draft'));
  assert.ok(draft.ok, draft.ok ? '' : draft.reason);
  assert.equal(draft.proxyType, 'draft');
  const limited = await verifyProxyFile(await gridProxyInit(['-limited', ...userArgs()], 'x509up_limited'));
  assert.ok(limited.ok, limited.ok ? '' : limited.reason);
  assert.equal(limited.limited, true);
  assert.equal(limited.dn, ALICE_DN);
});
