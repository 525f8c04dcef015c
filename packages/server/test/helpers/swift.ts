/**
 * A real S3 server for the tests: OpenStack Swift with its s3api middleware, started on loopback by the
 * project's own script (scripts/swift-s3.sh). If it cannot start, the tests that need it fail and say why.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { S3Settings } from '../../src/blobs/s3-settings.ts';

const run = promisify(execFile);
const SCRIPT = resolve(import.meta.dirname, '../../../../scripts/swift-s3.sh');

export interface Swift {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Store settings for a bucket of its own (made on first use). */
  settings(bucket?: string, partSizeMib?: number): S3Settings;
  /** REPOMAN_* variables that make a server keep its blobs in `bucket`. */
  serverEnv(bucket: string, extra?: Record<string, string>): Record<string, string>;
  stop(): Promise<void>;
}

export const newBucket = () => `repoman-test-${randomBytes(5).toString('hex')}`;

export async function startSwift(): Promise<Swift> {
  const dir = await mkdtemp(join(tmpdir(), 'repoman-swift-'));
  let stdout: string;
  try {
    ({ stdout } = await run(SCRIPT, ['start', dir], { timeout: 120_000 }));
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    const { stderr, message } = error as { stderr?: string; message: string };
    throw new Error(
      `The S3 tests need OpenStack Swift (Debian: swift swift-proxy swift-account swift-container swift-object memcached), started by scripts/swift-s3.sh: ${stderr?.trim() || message}`,
    );
  }
  const env = Object.fromEntries(
    stdout
      .trim()
      .split('\n')
      .map((line) => line.split('=', 2) as [string, string]),
  );
  const endpoint = env.S3_ENDPOINT as string;
  const accessKeyId = env.AWS_ACCESS_KEY_ID as string;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY as string;
  return {
    endpoint,
    accessKeyId,
    secretAccessKey,
    settings: (bucket = newBucket(), partSizeMib = 5) => ({
      endpoint,
      region: 'us-east-1',
      bucket,
      prefix: '',
      pathStyle: true,
      accessKeyId,
      secretAccessKey,
      partSize: partSizeMib * 1024 * 1024,
      createBucket: true,
      maxSockets: 64,
    }),
    serverEnv: (bucket, extra = {}) => ({
      REPOMAN_BLOB_STORE: 's3',
      REPOMAN_S3_ENDPOINT: endpoint,
      REPOMAN_S3_BUCKET: bucket,
      REPOMAN_S3_PATH_STYLE: 'true',
      REPOMAN_S3_ACCESS_KEY_ID: accessKeyId,
      REPOMAN_S3_SECRET_ACCESS_KEY: secretAccessKey,
      REPOMAN_S3_PART_SIZE_MIB: '5',
      REPOMAN_S3_CREATE_BUCKET: 'true',
      ...extra,
    }),
    async stop() {
      await run(SCRIPT, ['stop', dir]).catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
}
