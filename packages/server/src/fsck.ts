/**
 * `repoman-server fsck`: checks that the database and the blob store agree. Every version must have its blob
 * with the recorded size (and, with `verify`, the recorded SHA-256); every blob must belong to a version; no
 * upload may be abandoned. With `repair`: orphan blobs and abandoned uploads are removed, and broken versions
 * are dropped (an image whose served version broke falls back to its newest intact one). With `fillDigests`:
 * versions and variants lacking some of those digests (stored before they were computed) get them, from one
 * reading of their blob whose SHA-256 is checked too.
 */
import type { DigestName } from '@repoman/core';
import { STALE_UPLOAD_MS } from './blobs/common.ts';
import { HashingPool, hashStream } from './blobs/hashing.ts';
import type { BlobStore } from './blobs/store.ts';
import { allVariants, deleteVariant } from './db/jobs-dal.ts';
import type { Db } from './db/schema.ts';
import { pendingUploadKeys } from './db/uploads-dal.ts';
import {
  allVersions,
  type DigestTable,
  deleteVersion,
  type FillableDigests,
  findVersionByBlob,
  imagesWithoutCurrentVersion,
  recordDigests,
  resetCurrentVersion,
  type VersionRow,
} from './db/versions-dal.ts';

export type ProblemKind = 'missing' | 'size' | 'digest' | 'no_current' | 'orphan' | 'stale_upload';

export interface Problem {
  kind: ProblemKind;
  /** `owner/image vN` or the blob or upload name. */
  subject: string;
  detail: string;
  repaired: boolean;
}

export interface FsckReport {
  versions: number;
  blobs: number;
  problems: Problem[];
  /** With `fillDigests`: the versions and variants given the digests they lacked. */
  filled?: number;
}

export interface FsckOptions {
  verify?: boolean;
  repair?: boolean;
  /** Digests to compute and record for every version and variant that lacks them (MD5, SHA-512, ADLER32). */
  fillDigests?: readonly Exclude<DigestName, 'sha256'>[];
  /** Uploads untouched for longer are abandoned (default an hour; another server may be writing younger ones). */
  staleUploadMs?: number;
}

export async function fsck(db: Db, store: BlobStore, options: FsckOptions = {}): Promise<FsckReport> {
  const hashing = new HashingPool();
  try {
    return await checkAll(db, store, hashing, options);
  } finally {
    await hashing.close();
  }
}

async function checkAll(
  db: Db,
  store: BlobStore,
  hashing: HashingPool,
  options: FsckOptions,
): Promise<FsckReport> {
  const problems: Problem[] = [];
  const versions = await allVersions(db);
  const variants = await allVariants(db);
  const known = new Set([...versions.map((v) => v.blob_key), ...variants.map((v) => v.blob_key)]);
  const fill = options.fillDigests ?? [];
  let filled = 0;

  /** What is wrong with a recorded blob, or null; the digests it lacks are filled in if asked for. */
  async function check(
    subject: string,
    table: DigestTable,
    row: Pick<VersionRow, 'id' | 'blob_key' | 'size' | 'sha256' | 'md5' | 'sha512' | 'adler32'>,
  ): Promise<Omit<Problem, 'repaired'> | null> {
    const found = await store.stat(row.blob_key);
    if (!found) return { kind: 'missing', subject, detail: `its blob ${row.blob_key} is gone` };
    if (found.size !== row.size)
      return { kind: 'size', subject, detail: `its blob has ${found.size} bytes; ${row.size} were recorded` };
    const missing = fill.filter((name) => !row[name]);
    if (!options.verify && missing.length === 0) return null;
    const actual = await hashStream(hashing, await store.read(row.blob_key), missing);
    if (actual.sha256 !== row.sha256)
      return {
        kind: 'digest',
        subject,
        detail: `its blob's SHA-256 is ${actual.sha256}; ${row.sha256} was recorded`,
      };
    if (missing.length > 0) {
      const digests: FillableDigests = {};
      for (const name of missing) digests[name] = actual[name] ?? null;
      await recordDigests(db, table, row.id, digests);
      filled++;
    }
    return null;
  }

  const broken: typeof versions = [];
  for (const version of versions) {
    const subject = `${version.owner_name}/${version.image_name} v${version.version}`;
    const problem = await check(subject, 'image_versions', version);
    if (problem) {
      broken.push(version);
      problems.push({ ...problem, repaired: Boolean(options.repair) });
    }
  }
  // A broken variant is dropped alone: it can be converted again from its version.
  const brokenVariants: typeof variants = [];
  for (const variant of variants) {
    if (broken.some((v) => v.id === variant.version_id)) continue; // goes with its version
    const subject = `${variant.owner_name}/${variant.image_name} v${variant.version} ${variant.format}`;
    const problem = await check(subject, 'image_variants', variant);
    if (problem) {
      brokenVariants.push(variant);
      problems.push({ ...problem, repaired: Boolean(options.repair) });
    }
  }
  if (options.repair && broken.length + brokenVariants.length > 0) {
    const now = new Date().toISOString();
    const keys = await db.transaction().execute(async (trx) => {
      const gone: string[] = [];
      for (const version of broken) gone.push(version.blob_key, ...(await deleteVersion(trx, version.id)));
      for (const variant of brokenVariants) {
        await deleteVariant(trx, variant.version_id, variant.format);
        gone.push(variant.blob_key);
      }
      for (const imageId of new Set(
        broken.filter((v) => v.version === v.current_version).map((v) => v.image_id),
      )) {
        await resetCurrentVersion(trx, imageId, now);
      }
      return gone;
    });
    for (const key of keys) await store.delete(key);
  }

  for (const image of await imagesWithoutCurrentVersion(db)) {
    if (options.repair) await resetCurrentVersion(db, image.id, new Date().toISOString());
    problems.push({
      kind: 'no_current',
      subject: `${image.owner_name}/${image.name}`,
      detail: `it serves version ${image.version}, which does not exist`,
      repaired: Boolean(options.repair),
    });
  }

  const staleMs = options.staleUploadMs ?? STALE_UPLOAD_MS;
  let blobs = 0;
  for await (const key of store.list()) {
    blobs++;
    if (known.has(key)) continue;
    // A blob committed after the versions were read is a running server's upload about to be recorded.
    const info = await store.stat(key);
    if (!info || Date.now() - info.modified.getTime() < staleMs) continue;
    if (await findVersionByBlob(db, key)) continue; // also a variant's
    if (options.repair) await store.delete(key);
    problems.push({
      kind: 'orphan',
      subject: key,
      detail: 'no version names this blob',
      repaired: Boolean(options.repair),
    });
  }

  // Resumable uploads wait for their client until they expire (the server's sweep removes them then).
  const pending = await pendingUploadKeys(db);
  for (const upload of await store.listUploads()) {
    if (upload.ageMs <= staleMs || pending.has(upload.key)) continue;
    problems.push({
      kind: 'stale_upload',
      subject: upload.name,
      detail: `abandoned ${Math.round(upload.ageMs / 60000)} minutes ago`,
      repaired: Boolean(options.repair),
    });
  }
  if (options.repair) await store.removeStaleUploads(staleMs, pending);
  return { versions: versions.length, blobs, problems, ...(options.fillDigests ? { filled } : {}) };
}

export function formatReport(report: FsckReport): string {
  const lines = report.problems.map(
    (p) => `${p.kind.padEnd(12)} ${p.subject}: ${p.detail}${p.repaired ? ' [repaired]' : ''}`,
  );
  const open = report.problems.filter((p) => !p.repaired).length;
  lines.push(
    `fsck: ${report.versions} versions, ${report.blobs} blobs, ${report.problems.length} problems` +
      (report.problems.length > 0 ? `, ${open} left (run with --repair to fix what can be fixed)` : '') +
      (report.filled === undefined ? '' : `; digests filled in for ${report.filled} versions and variants`),
  );
  return `${lines.join('\n')}\n`;
}
