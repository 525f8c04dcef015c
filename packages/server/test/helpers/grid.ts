/**
 * A grid node's set-up for the tests that run the grid's own tools (grid-tools.test.ts,
 * third-party-copy.test.ts): CAs in a hashed certificate directory with their signing policies, a user's
 * RFC 3820 proxy made by grid-proxy-init, and the environment gfal2 and davix read them from.
 */
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { derToPem } from '../../src/pki/certificate.ts';
import { type Credential, keyPem } from '../../src/pki/issue.ts';
import { subjectHash, subjectHashOld } from '../../src/pki/names.ts';
import { put, run } from '../pki/fixtures.ts';

/** Bytes that are not all alike, so that a range read from the wrong place, or a short copy, shows. */
export function pattern(size: number, seed: number): Buffer {
  const bytes = Buffer.alloc(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    bytes[i] = x >>> 24;
  }
  return bytes;
}

/**
 * `certDir` made as /etc/grid-security/certificates is: each CA under both of its subject hashes, with a
 * signing policy letting it sign the names `subjects` matches (a Globus pattern, such as `"/C=CA/O=Grid/*"`).
 */
export async function gridCertDir(
  certDir: string,
  cas: { ca: Credential; subjects: string }[],
): Promise<void> {
  await mkdir(certDir, { recursive: true });
  for (const { ca, subjects } of cas) {
    const policy = `access_id_CA X509 '${ca.cert.subject.oneline}'\npos_rights globus CA:sign\ncond_subjects globus '${subjects}'\n`;
    for (const hash of [subjectHash(ca.cert.subject.der), subjectHashOld(ca.cert.subject.der)]) {
      await put(certDir, `${hash}.0`, derToPem(ca.cert.der), 0o644);
      await put(certDir, `${hash}.signing_policy`, policy, 0o644);
    }
  }
}

/**
 * The user's RFC 3820 proxy, made in `dir` by grid-proxy-init against `certDir`, and the environment the grid
 * tools find it in (X509_USER_PROXY, X509_CERT_DIR).
 */
export async function gridProxy(
  dir: string,
  user: Credential,
  certDir: string,
): Promise<{ proxyFile: string; env: NodeJS.ProcessEnv }> {
  await put(dir, 'usercert.pem', derToPem(user.cert.der), 0o644);
  await put(dir, 'userkey.pem', keyPem(user), 0o400);
  const proxyFile = join(dir, 'x509up_user');
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: dir,
    X509_USER_PROXY: proxyFile,
    X509_CERT_DIR: certDir,
    // gfal2's scripts run the first python on PATH that has gfal2: Debian's, whatever else PATH holds.
    GFAL_PYTHONBIN: '/usr/bin/python3',
  };
  const userCert = join(dir, 'usercert.pem');
  const userKey = join(dir, 'userkey.pem');
  const args = ['-rfc', '-q', '-cert', userCert, '-key', userKey, '-certdir', certDir, '-out', proxyFile];
  let made: Awaited<ReturnType<typeof run>>;
  try {
    made = await run('grid-proxy-init', args, { env });
  } catch (error) {
    assert.fail(`${(error as Error).message}: run npm test, whose setup installs the grid tools`);
  }
  assert.equal(made.code, 0, `grid-proxy-init failed: ${made.stdout}${made.stderr}`);
  return { proxyFile, env };
}
