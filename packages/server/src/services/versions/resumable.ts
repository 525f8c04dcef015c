/**
 * Resumable uploads (the tus 1.0 protocol's state, without its HTTP): an upload is created for an image with
 * its final length, receives its bytes over as many requests as the network needs, and once whole becomes
 * the image's next version through the same checks and the same publishing transaction as a PUT.
 *
 * Durable state is in the database (offset, expiry, a lease) and the blob store's upload; any server sharing
 * them can take the next request. Hash state lives in memory: while one server keeps receiving an upload,
 * each byte is hashed once as it arrives; elsewhere, or after a restart, the bytes already stored are
 * hashed again before new ones are appended.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type ExpectedDigests, RepomanError } from '@repoman/core';
import type { Actor } from '../../authz.ts';
import { Hasher, type HashingPool } from '../../blobs/hashing.ts';
import type { BlobStore, BlobUpload } from '../../blobs/store.ts';
import { pendingUploadsOfUser } from '../../db/quota-dal.ts';
import type { Db } from '../../db/schema.ts';
import {
  deleteLeased,
  deleteUnlessLeased,
  expiredUploads,
  findUpload,
  insertUpload,
  pendingUploadKeys,
  releaseAllLeases,
  renewLease,
  requestTakeover,
  takeLease,
  type UploadRow,
  updateLeased,
} from '../../db/uploads-dal.ts';
import { findImageVersionByBlob, findVersionByBlob } from '../../db/versions-dal.ts';
import { guardService, nowIso } from '../common.ts';
import type { ImageRef } from '../image-access.ts';
import type { QuotaService } from '../quota.ts';
import type { VersionsService } from './index.ts';
import { ingestSettled } from './ingest.ts';

export interface ResumablePolicy {
  /** An upload nobody has continued for this long expires and its bytes are deleted. */
  expiryMs: number;
  /**
   * A request's hold on an upload outlives the request by this much when it stops sending (a server that dies
   * mid-upload holds it this long); renewed while bytes flow. Default 30 s.
   */
  leaseMs?: number | undefined;
  /** Unfinished, unexpired uploads one user may have at a time. Default 10. */
  maxPendingPerUser?: number | undefined;
}

/** A checksum of one request's body (tus checksum extension): a `node:crypto` algorithm and the raw digest. */
export interface ChunkChecksum {
  algorithm: string;
  digest: Buffer;
}

/** What the creation of an upload declared (tus Upload-Metadata, parsed by the route). */
export interface UploadDeclaration {
  /** The header as the client sent it, answered back on HEAD. */
  metadata: string | null;
  /** Digests of the whole image. */
  expected: ExpectedDigests;
  /** The format the bytes must be in. */
  declaredFormat?: string | undefined;
  /** Store a compressed upload decompressed. */
  decompress: boolean;
}

export interface UploadState {
  id: string;
  length: number;
  offset: number;
  metadata: string | null;
  expires: string;
  /** The version it became, once finished. */
  version: number | null;
  imageId: number;
}

/** When a request arrived (a newer one takes an upload over from an older one), and whether it went away. */
export interface RequestOrder {
  arrival: bigint;
  signal?: AbortSignal | undefined;
}

export interface AppendOptions extends RequestOrder {
  /** Where the client believes the upload stands (Upload-Offset). */
  offset: number;
  body: Readable;
  /** Content-Length of the body, when given. */
  declaredLength?: number | undefined;
  checksum?: ChunkChecksum | undefined;
  /** Called once the request is accepted, just before its body is read (to answer Expect: 100-continue). */
  onAccepted?: () => void;
}

/** A lease outlives a request that stops sending by this much (unless configured); renewed while bytes flow. */
const DEFAULT_LEASE_MS = 30_000;
const DEFAULT_MAX_PENDING = 10;
/** How often a request holding an upload renews its lease and looks whether another server asked for it. */
const LEASE_CHECK_MS = 1000;
/** How long a request waits for another server's request to let an upload go. */
const TAKEOVER_WAIT_MS = 15_000;
/** Hash states kept for uploads between their requests (each a few hundred bytes and a worker session). */
const MAX_IDLE_HASHERS = 64;

const stateOf = (row: UploadRow): UploadState => ({
  id: row.id,
  length: row.length,
  offset: row.upload_offset,
  metadata: row.metadata,
  expires: row.expires,
  version: row.version,
  imageId: row.image_id,
});

const later = (ms: number) => new Date(Date.now() + ms).toISOString();

const gone = () => new RepomanError('upload_incomplete', 'The client went away');

const discard = () =>
  new Writable({
    write(_chunk, _encoding, callback) {
      callback();
    },
  });

export function createResumableService(deps: {
  db: Db;
  store: Pick<BlobStore, 'createUpload' | 'resumeUpload'>;
  hashing: HashingPool;
  versions: Pick<VersionsService, 'admitUpload' | 'publish' | 'algorithmsFor'>;
  quota: Pick<QuotaService, 'lock' | 'check'>;
  policy: ResumablePolicy;
}) {
  const { db, store, hashing, versions, quota, policy } = deps;
  const LEASE_MS = policy.leaseMs ?? DEFAULT_LEASE_MS;
  const maxPending = policy.maxPendingPerUser ?? DEFAULT_MAX_PENDING;

  /** Requests running here, per upload: a newer one stops the older (its client has given up on it). */
  const running = new Map<string, { stop: AbortController; done: Promise<void>; arrival: bigint }>();
  /** Hash state of uploads received here, with the offset it covers. */
  const hashers = new Map<string, Hasher>();

  function setAsideHasher(id: string) {
    hashers.get(id)?.dispose();
    hashers.delete(id);
  }

  function keepHasher(id: string, hasher: Hasher) {
    hashers.delete(id);
    if (hasher.failed) return hasher.dispose();
    hasher.idle();
    hashers.set(id, hasher);
    for (const [oldest] of hashers) {
      if (hashers.size <= MAX_IDLE_HASHERS) break;
      setAsideHasher(oldest);
    }
  }

  /**
   * Runs `work` as the only request on this upload in this process, stopping any older one first. A request
   * that arrived before the one running (its client has moved on), or whose client is already gone, stops.
   */
  async function exclusively<T>(
    id: string,
    request: RequestOrder,
    work: (stop: AbortSignal) => Promise<T>,
  ): Promise<T> {
    for (let current = running.get(id); current; current = running.get(id)) {
      if (request.signal?.aborted) throw gone();
      if (current.arrival > request.arrival)
        throw new RepomanError('upload_locked', `A newer request is writing to upload ${id}`);
      current.stop.abort(new Error('a newer request for this upload arrived'));
      await current.done;
    }
    if (request.signal?.aborted) throw gone();
    const stop = new AbortController();
    let finished = () => {};
    running.set(id, { stop, done: new Promise((resolve) => (finished = resolve)), arrival: request.arrival });
    try {
      return await work(stop.signal);
    } finally {
      running.delete(id);
      finished();
    }
  }

  /** The caller's upload; someone else's is as absent as a missing one. */
  async function ownUpload(actor: Actor, id: string): Promise<UploadRow> {
    const row = await findUpload(db, id);
    if (!row || row.user_id !== actor.id) throw new RepomanError('upload_not_found', `No upload ${id}`);
    if (row.expires < nowIso())
      throw new RepomanError('upload_expired', `Upload ${id} expired at ${row.expires}`);
    return row;
  }

  /**
   * Takes the upload's lease for this request. If a request on another server holds it, asks that one to let
   * go (its client has moved on: this request is the one it sends now) and waits for it.
   */
  async function acquire(id: string, signal?: AbortSignal): Promise<string> {
    const lease = randomUUID();
    const deadline = Date.now() + TAKEOVER_WAIT_MS;
    for (;;) {
      if (await takeLease(db, id, lease, nowIso(), later(LEASE_MS))) return lease;
      if (!(await findUpload(db, id))) throw new RepomanError('upload_not_found', `No upload ${id}`);
      // Asked again each time: another request may have taken the upload between two tries.
      await requestTakeover(db, id, nowIso());
      if (Date.now() > deadline)
        throw new RepomanError('upload_locked', `Another server is receiving upload ${id}`);
      if (signal?.aborted) throw gone();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** Lets the upload go, recording what the request did. */
  const release = (id: string, lease: string, patch: Parameters<typeof updateLeased>[3] = {}) =>
    updateLeased(db, id, lease, patch, true).catch(() => false); // the upload may be gone (finished, failed, deleted)

  /**
   * Deletes the upload and its bytes (best effort for the bytes: fsck finds what is left), under the caller's
   * lease or when no request holds it; false if one does.
   */
  async function remove(row: UploadRow, lease?: string): Promise<boolean> {
    if (lease) await deleteLeased(db, row.id, lease);
    else if (!(await deleteUnlessLeased(db, row.id, nowIso()))) return false;
    setAsideHasher(row.id);
    // Its bytes go, unless they are a version's: published by a server that died before it said so here.
    if (row.version === null && !(await findVersionByBlob(db, row.blob_key)))
      await (await store.resumeUpload(row.blob_key))?.abort().catch(() => {});
    return true;
  }

  /**
   * A hasher covering exactly the `offset` bytes already stored: the one kept here, or (with `catchUp`) a
   * fresh one fed the stored bytes. Without `catchUp`, null: the request is not hashed as it arrives, and the
   * whole upload is hashed once when it is complete (cheaper than re-reading it for every request).
   */
  async function hasherAt(
    row: UploadRow,
    blob: BlobUpload,
    offset: number,
    expected: ExpectedDigests,
    catchUp: boolean,
  ): Promise<Hasher | null> {
    const kept = hashers.get(row.id);
    hashers.delete(row.id);
    if (kept && !kept.failed && kept.bytes === offset) return kept;
    kept?.dispose();
    if (offset > 0 && !catchUp) return null;
    const hasher = new Hasher(hashing, versions.algorithmsFor(expected));
    if (offset > 0) {
      try {
        await pipeline(await blob.readBack(), hasher.tap(), discard());
      } catch (error) {
        hasher.dispose();
        throw error;
      }
    }
    return hasher;
  }

  /** The image the upload belongs to, as an admitted upload: permission, read_only, size and quota rechecked. */
  function admit(actor: Actor, row: UploadRow) {
    return versions.admitUpload(actor, { imageId: row.image_id }, row.length, {
      uploadId: row.id,
      declaredFormat: row.declared_format ?? undefined,
      decompress: Boolean(row.decompress),
    });
  }

  /**
   * Holds the upload's lease for one request. It lives while bytes flow (and while the finished upload is
   * published): a stalled request lets it lapse. `lost` fires when another server asks the request to let go,
   * when the lease was taken, or when it cannot be renewed in time (the database is away).
   */
  function holdLease(id: string, lease: string) {
    const lost = new AbortController();
    let flowed = 0;
    let renewed = 0;
    let publishing = false;
    let heldUntil = Date.now() + LEASE_MS;
    const renew = setInterval(() => {
      const extend = publishing || flowed !== renewed;
      renewed = flowed;
      renewLease(db, id, lease, extend ? later(LEASE_MS) : null).then(
        (held) => {
          if (!held) lost.abort(new Error('another request took the upload over'));
          else if (extend) heldUntil = Date.now() + LEASE_MS;
        },
        () => {
          if (Date.now() > heldUntil - 5 * LEASE_CHECK_MS) lost.abort(new Error('the upload lease ran out'));
        },
      );
    }, LEASE_CHECK_MS);
    renew.unref();
    return {
      lost: lost.signal,
      /** Bytes arrived: the next renewal extends the lease. */
      flowed: (bytes: number) => {
        flowed += bytes;
      },
      /** From now on the lease is extended whether bytes flow or not. */
      publishing: () => {
        publishing = true;
      },
      stop: () => clearInterval(renew),
    };
  }

  /**
   * Checks the request against where the upload stands: its offset, and a declared length that would pass the
   * end. A finished upload answers the retried last request with its state; any other request on it fails.
   */
  function checkPosition(row: UploadRow, options: AppendOptions): UploadState | undefined {
    const { upload_offset: offset, length, id } = row;
    if (row.version !== null) {
      if (options.offset === length) return stateOf(row); // finished already: a retried last request
      throw new RepomanError('upload_offset_mismatch', `Upload ${id} is finished`);
    }
    if (options.offset !== offset) {
      throw new RepomanError(
        'upload_offset_mismatch',
        `Upload ${id} stands at ${offset} bytes, not ${options.offset}`,
        {
          details: { offset },
        },
      );
    }
    if (options.declaredLength !== undefined && offset + options.declaredLength > length) {
      throw new RepomanError(
        'payload_too_large',
        `The upload is ${length} bytes long; ${options.declaredLength} bytes at ${offset} go past its end`,
      );
    }
    return undefined;
  }

  /** The upload's bytes in the store and how many there are; an upload whose bytes are gone is removed. */
  async function storedBytes(row: UploadRow, lease: string): Promise<{ blob: BlobUpload; stored: number }> {
    const blob = await store.resumeUpload(row.blob_key);
    const stored = await blob?.size().catch(() => null);
    if (!blob || stored === null || stored === undefined) {
      await remove(row, lease);
      throw new RepomanError('upload_expired', `The bytes of upload ${row.id} are gone; start a new one`);
    }
    return { blob, stored };
  }

  /**
   * Appends the request's body at the upload's offset, hashed on the way if the hash state kept here covers
   * the bytes before it. A body that fails its checksum (or cannot be checked) is cut off again and nothing is
   * recorded; otherwise a cut request keeps what reached the store, and the caller records that offset before
   * it reports the failure.
   */
  async function receiveBody(
    row: UploadRow,
    blob: BlobUpload,
    expected: ExpectedDigests,
    options: AppendOptions,
    signal: AbortSignal,
    flowed: (bytes: number) => void,
  ): Promise<{ recorded: number; failure: unknown }> {
    const { id, upload_offset: offset, length } = row;
    const hasher = await hasherAt(row, blob, offset, expected, false);
    const chunkHash = options.checksum ? createHash(options.checksum.algorithm) : null;
    options.onAccepted?.();
    const meter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        chunkHash?.update(chunk);
        flowed(chunk.length);
        callback(null, chunk);
      },
    });
    // Both sides settle before anything looks at the file: a stopped request's last buffered bytes must land
    // before its size is read and its lease let go.
    const failure = await ingestSettled(options.body, blob, hasher, {
      max: length - offset,
      tooLarge: () =>
        new RepomanError(
          'payload_too_large',
          `The upload is ${length} bytes long; this request goes past its end`,
        ),
      through: [meter],
      signal,
    });
    const checksumFailed =
      options.checksum && (failure !== null || !chunkHash?.digest().equals(options.checksum.digest));
    if (checksumFailed) {
      // A body that is not what its checksum says, or that cannot be checked, is not kept.
      hasher?.dispose();
      await blob.truncate(offset);
      if (failure) throw failure;
      throw new RepomanError(
        'checksum_mismatch',
        `The request body's ${options.checksum?.algorithm} does not match Upload-Checksum`,
      );
    }
    // A cut request keeps what reached the store: the client resumes from there.
    const recorded = await blob.size();
    if (hasher && hasher.bytes === recorded) keepHasher(id, hasher);
    else hasher?.dispose(); // it saw bytes the store did not take: hash the stored ones again later
    return { recorded, failure };
  }

  /** Publishes a complete upload as the image's next version, once, and records that it did. */
  async function complete(
    row: UploadRow,
    lease: string,
    admitted: Awaited<ReturnType<typeof admit>>,
    blob: BlobUpload,
    expected: ExpectedDigests,
  ): Promise<UploadState> {
    const { id, length } = row;
    // Recorded before publishing, which may change what the store can do with the bytes (an object store
    // completes its multipart upload): a server that dies meanwhile leaves an upload whose next request, at
    // its full length, publishes it.
    await updateLeased(db, id, lease, { upload_offset: length }, false);
    // A server that died between publishing and recording it here left a version of these very bytes: the
    // upload is that version, not the source of a second one under the same blob.
    const already = await findImageVersionByBlob(db, row.image_id, row.blob_key);
    if (already) {
      setAsideHasher(id);
      await updateLeased(db, id, lease, { version: already.version, upload_offset: length }, false);
      return stateOf({ ...row, upload_offset: length, version: already.version });
    }
    const hasher = await hasherAt(row, blob, length, expected, true);
    if (!hasher) throw new Error('no hasher for a complete upload');
    let version: number;
    try {
      version = (await versions.publish(admitted, blob, hasher, expected)).version;
    } catch (error) {
      // Nothing was published. The upload goes, so that no client mistakes its full offset for success.
      hasher.dispose();
      await remove(row, lease).catch(() => {});
      throw error;
    }
    await updateLeased(db, id, lease, { version, upload_offset: length }, false);
    return stateOf({ ...row, upload_offset: length, version });
  }

  const service = guardService({
    /**
     * Starts an upload of `length` bytes to an image, decided from the headers like a PUT. Its whole length is
     * reserved against the owner's quota from now until it finishes, expires or is deleted; a user has at most
     * `maxPendingPerUser` such uploads.
     */
    async create(
      actor: Actor,
      ref: ImageRef,
      length: number,
      declaration: UploadDeclaration,
    ): Promise<UploadState> {
      const { metadata, expected, declaredFormat, decompress } = declaration;
      // Permission, read_only, size and a first look at the quota, before anything is stored.
      const probe = await versions.admitUpload(actor, ref, length, { declaredFormat });
      // (A resumable upload goes to an image that exists: it is never admitted to make one.)
      if (probe.imageId === null)
        throw new RepomanError('image_not_found', `No image '${ref.name}' in namespace '${ref.owner}'`);
      const blob = await store.createUpload();
      const now = nowIso();
      const row: UploadRow = {
        id: randomBytes(16).toString('hex'),
        user_id: actor.id,
        image_id: probe.imageId,
        blob_key: blob.key,
        length,
        upload_offset: 0,
        metadata,
        expected: JSON.stringify(expected),
        declared_format: declaredFormat ?? null,
        decompress,
        version: null,
        lease: null,
        lease_until: null,
        takeover: null,
        created: now,
        modified: now,
        expires: later(policy.expiryMs),
      };
      try {
        await db.transaction().execute(async (trx) => {
          // Checked and taken under the users' locks: two creations at once (on any server) cannot both pass.
          await quota.lock(trx, [actor.id, probe.ownerId]);
          const pending = await pendingUploadsOfUser(trx, actor.id, nowIso());
          if (pending >= maxPending)
            throw new RepomanError(
              'too_many_uploads',
              `${actor.name} has ${pending} unfinished uploads, as many as this repository allows; finish or delete one (DELETE /api/uploads/{id}) or let it expire`,
              { details: { pending, limit: maxPending } },
            );
          await quota.check(probe.ownerId, length, { q: trx });
          await insertUpload(trx, row);
        });
      } catch (error) {
        await blob.abort().catch(() => {});
        throw error;
      }
      return stateOf(row);
    },

    /** Where the upload stands (stopping a request of ours still writing to it, so the offset is final). */
    async status(actor: Actor, id: string, order: RequestOrder): Promise<UploadState> {
      await ownUpload(actor, id);
      return exclusively(id, order, async () => {
        const lease = await acquire(id, order.signal);
        try {
          return stateOf(await ownUpload(actor, id));
        } finally {
          await release(id, lease);
        }
      });
    },

    /** Appends a request's body at `offset`; the upload is published as a new version once whole. */
    async append(actor: Actor, id: string, options: AppendOptions): Promise<UploadState> {
      await ownUpload(actor, id);
      return exclusively(id, options, async (stop) => {
        const lease = await acquire(id, options.signal);
        const held = holdLease(id, lease);
        /** The offset to record when the lease is let go; unset while nothing was written. */
        let recorded: number | undefined;
        try {
          // Read under the lease: a request another server was running has recorded its bytes by now.
          const row = await ownUpload(actor, id);
          const offset = row.upload_offset;
          const finished = checkPosition(row, options);
          if (finished) return finished;
          const admitted = await admit(actor, row);
          const { blob, stored } = await storedBytes(row, lease);
          // The store may hold bytes a cut request wrote but never recorded (or, after a crash, fewer).
          if (stored < offset) {
            recorded = stored;
            throw new RepomanError('upload_offset_mismatch', `Upload ${id} stands at ${stored} bytes`, {
              details: { offset: stored },
            });
          }
          if (stored > offset) await blob.truncate(offset);

          const expected = JSON.parse(row.expected) as ExpectedDigests;
          const signal = AbortSignal.any([stop, held.lost, ...(options.signal ? [options.signal] : [])]);
          const received = await receiveBody(row, blob, expected, options, signal, held.flowed);
          recorded = received.recorded;
          if (received.failure) throw received.failure;

          if (recorded < row.length)
            return stateOf({ ...row, upload_offset: recorded, expires: later(policy.expiryMs) });
          if (recorded > row.length) {
            await remove(row, lease);
            throw new Error(`upload ${id} held ${recorded} bytes, more than its ${row.length}; discarded`);
          }
          held.publishing();
          return await complete(row, lease, admitted, blob, expected);
        } finally {
          held.stop();
          await release(
            id,
            lease,
            recorded === undefined
              ? {}
              : { upload_offset: recorded, modified: nowIso(), expires: later(policy.expiryMs) },
          );
        }
      });
    },

    /** Deletes an upload and the bytes received (tus termination). A finished upload's version stays. */
    async terminate(actor: Actor, id: string, order: RequestOrder): Promise<void> {
      await ownUpload(actor, id);
      await exclusively(id, order, async () => {
        const lease = await acquire(id, order.signal);
        try {
          await remove(await ownUpload(actor, id), lease);
        } finally {
          await release(id, lease);
        }
      });
    },

    /** Removes uploads past their expiry that no request holds; returns how many. */
    async expire(): Promise<number> {
      let removed = 0;
      for (const row of await expiredUploads(db, nowIso())) if (await remove(row)) removed++;
      return removed;
    },

    /** At the start of a server alone on its database: the leases of requests that died with it go. */
    async releaseLeases(): Promise<void> {
      await releaseAllLeases(db);
    },

    /** Blob keys of unfinished uploads: the stale-upload sweep must leave them alone. */
    async pendingKeys(): Promise<Set<string>> {
      return pendingUploadKeys(db);
    },
  });

  return {
    ...service,
    close() {
      for (const id of [...hashers.keys()]) setAsideHasher(id);
    },
  };
}

export type ResumableService = ReturnType<typeof createResumableService>;
