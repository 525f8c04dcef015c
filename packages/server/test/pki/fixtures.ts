// Shared helpers for the pki tests: temporary directories and running CLI tools without blocking the event loop.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { OID } from '../../src/pki/certificate.ts';
import { encodeContext, encodeSequence } from '../../src/pki/der.ts';
import { type Credential, generateKey, issueCertificate } from '../../src/pki/issue.ts';
import { encodeName, parseDnString } from '../../src/pki/names.ts';

/** A fresh directory under the OS temp dir, removed when the test file ends (call it at module level). */
export async function tempDir(prefix = 'repoman-pki-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export type RunResult = { code: number; stdout: string; stderr: string };

/** Runs a program asynchronously (servers in this process keep serving) and never throws on exit status. */
export function run(
  file: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 20_000, encoding: 'latin1' },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') reject(new Error(`${file} is not installed`));
          else resolve({ code: -1, stdout, stderr: `${stderr}${err.message}` });
          return;
        }
        resolve({ code: typeof err?.code === 'number' ? err.code : 0, stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** `openssl …`, for cross-checks against the reference implementation. */
export function openssl(args: string[]): Promise<RunResult> {
  return run('openssl', args);
}

/** Writes `content` to `dir/name` and returns the path. */
export async function put(
  dir: string,
  name: string,
  content: string | Buffer,
  mode = 0o600,
): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, content, { mode });
  return path;
}

export const HOUR = 3_600_000;
export const DAY = 24 * HOUR;
export const ago = (ms: number) => new Date(Date.now() - ms);
export const fromNow = (ms: number) => new Date(Date.now() + ms);

/**
 * A sub-CA of `issuer` named `subject`, whose nameConstraints permit only the directory subtree `permitted`
 * (critical or not): its credential, and its DER to present after its users' certificates.
 */
export function constrainedSubCa(
  issuer: Credential,
  subject: string,
  permitted: string,
  critical: boolean,
): { credential: Credential; der: Buffer } {
  const keys = generateKey();
  const value = encodeSequence(
    encodeContext(0, encodeSequence(encodeContext(4, encodeName(parseDnString(permitted))))),
  );
  const sub = issueCertificate({
    subject,
    publicKey: keys.publicKey,
    issuer,
    ca: true,
    keyUsage: ['keyCertSign', 'cRLSign'],
    extensions: [{ oid: OID.nameConstraints, critical, value }],
  });
  return { credential: { cert: sub.parsed, key: keys.privateKey, chain: [] }, der: sub.der };
}
