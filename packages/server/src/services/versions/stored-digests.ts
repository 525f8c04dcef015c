/**
 * Digests of bytes already stored that a version or variant does not record: ADLER32 of those stored before it
 * was computed, MD5 or SHA-512 of those stored while they were configured off. Computed when a download first
 * asks for one the server computes now (ADLER32 always, MD5 and SHA-512 as configured: one configured off is
 * not computed for a download either, whoever asks), by reading the blob once, and recorded. Each reading is
 * a whole blob's: a process runs one at a time, and every request for the same blob meanwhile waits for that
 * one rather than reading it again.
 */
import type { DigestName } from '@repoman/core';
import { type HashingPool, hashStream } from '../../blobs/hashing.ts';
import { BlobNotFoundError, type BlobStore } from '../../blobs/store.ts';
import type { Db } from '../../db/schema.ts';
import {
  type DigestTable,
  type FillableDigests,
  recordDigests,
  recordedDigests,
  type VersionRow,
} from '../../db/versions-dal.ts';
import { translateStorageError } from '../common.ts';

/** A version or a variant: the blob it names and the digests it recorded when it was read. */
export type DigestTarget = Pick<VersionRow, 'id' | 'blob_key' | 'sha256' | 'md5' | 'sha512' | 'adler32'> & {
  table: DigestTable;
};

/** Digests by name, lowercase hex. */
export type KnownDigests = Partial<Record<DigestName, string>>;

/** The digests a row may lack and be given later (`sha256` it always has). */
const FILLABLE = ['md5', 'sha512', 'adler32'] as const satisfies readonly (keyof FillableDigests)[];
const fillable = (name: DigestName): name is (typeof FILLABLE)[number] =>
  (FILLABLE as readonly string[]).includes(name);

/** Of `digests`, those among `names` that are there. */
function known(
  digests: Partial<Record<DigestName, string | null>>,
  names: readonly DigestName[],
): KnownDigests {
  const found: KnownDigests = {};
  for (const name of names) {
    const value = digests[name];
    if (value) found[name] = value;
  }
  return found;
}

export function createStoredDigests(deps: {
  db: Db;
  store: Pick<BlobStore, 'read'>;
  hashing: HashingPool;
  /** The digests this server computes for uploads (policy.digests): the only ones it computes on demand. */
  computes: readonly DigestName[];
}) {
  const { db, store, hashing, computes } = deps;
  /** Readings under way, by blob key. */
  const reading = new Map<string, Promise<KnownDigests>>();
  /** Blobs whose bytes no longer match their recorded SHA-256: no digest of them is recorded or read again. */
  const damaged = new Set<string>();
  /** The end of the queue of readings: each starts when the one before it has ended. */
  let queue: Promise<unknown> = Promise.resolve();

  function inTurn<T>(task: () => Promise<T>): Promise<T> {
    const turn = queue.then(task);
    queue = turn.catch(() => {});
    return turn;
  }

  /** Reads the blob and records the digests `missing` names; what it found, or nothing if the row is gone. */
  async function compute(target: DigestTarget, missing: readonly DigestName[]): Promise<KnownDigests> {
    // Recorded meanwhile (by another process, or an earlier turn)? Then there is nothing to read.
    const recorded = await recordedDigests(db, target.table, target.id);
    if (!recorded) return {};
    const left = missing.filter((name) => !recorded[name]);
    if (left.length === 0) return known(recorded, missing);
    let digests: KnownDigests;
    try {
      digests = await hashStream(hashing, await store.read(target.blob_key), left);
    } catch (error) {
      if (error instanceof BlobNotFoundError) return {}; // pruned since: the download answers for that
      throw error;
    }
    if (digests.sha256 !== recorded.sha256) {
      damaged.add(target.blob_key);
      return known(recorded, missing);
    }
    const filled: FillableDigests = {};
    for (const name of left) if (fillable(name)) filled[name] = digests[name] ?? null;
    await recordDigests(db, target.table, target.id, filled);
    return { ...known(recorded, missing), ...known(digests, left) };
  }

  /**
   * The `wanted` digests of the target's bytes: those it records, and any other the server computes (not
   * SHA-1 or such, nor one configured off) computed now and recorded. Left out if its bytes no longer match
   * their SHA-256 (fsck --verify finds those), or if the version was removed meanwhile.
   */
  return async function digestsOf(
    target: DigestTarget,
    wanted: readonly DigestName[],
  ): Promise<KnownDigests> {
    const found = known(target, wanted);
    let missing = wanted.filter((name) => fillable(name) && computes.includes(name) && !found[name]);
    if (missing.length === 0 || damaged.has(target.blob_key)) return found;
    // The same blob being read for another request: wait for it, then read again only for what it lacked.
    for (let pending = reading.get(target.blob_key); pending; pending = reading.get(target.blob_key)) {
      Object.assign(found, known(await pending.catch(() => ({})), missing));
      missing = missing.filter((name) => !found[name]);
      if (missing.length === 0 || damaged.has(target.blob_key)) return found;
    }
    const computing = inTurn(() => compute(target, missing));
    reading.set(target.blob_key, computing);
    try {
      return { ...found, ...(await computing) };
    } catch (error) {
      throw translateStorageError(error);
    } finally {
      if (reading.get(target.blob_key) === computing) reading.delete(target.blob_key);
    }
  };
}

export type StoredDigests = ReturnType<typeof createStoredDigests>;
