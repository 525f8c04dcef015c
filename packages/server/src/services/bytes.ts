/**
 * Image bytes: admitting an upload from its headers alone, receiving it into a new blob while hashing it,
 * publishing it as the image's next version in one transaction, and opening a version for download.
 * A refused, short, cut or mismatched upload leaves the image exactly as it was.
 */
import { spawn } from 'node:child_process';
import { Duplex, type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createZstdDecompress } from 'node:zlib';
import { type DigestAlgorithm, type Digests, type ExpectedDigests, RepomanError } from '@repoman/core';
import { type Actor, canModifyImage, canReadImage } from '../authz.ts';
import { Hasher, HashingError, type HashingPool } from '../blobs/hashing.ts';
import {
  BlobNotFoundError,
  type BlobStore,
  BlobStoreFullError,
  type BlobUpload,
  type ByteRange,
  deleteBlobsQuietly,
} from '../blobs/store.ts';
import type { Db } from '../db/connect.ts';
import { findImageById, type ImageWithOwner } from '../db/images-dal.ts';
import {
  addVersion,
  findVersion,
  listVersions,
  lockImage,
  pruneVersions,
  setCurrentVersion,
  type VersionRow,
} from '../db/versions-dal.ts';
import { type Inspection, inspect, type Refusal } from '../formats/inspect.ts';
import { guardService, nowIso, translateStorageError } from './common.ts';
import { createImageAccess, type ImageRef } from './image-access.ts';
import { createQuotaService, type QuotaService } from './quota.ts';

export interface UploadPolicy {
  /** Largest image accepted, in bytes. */
  maxImageSize: number;
  /** Versions kept per image; older blobs are deleted. */
  keepVersions: number;
  /** Digests computed for every upload besides SHA-256. */
  digests: DigestAlgorithm[];
  /** Formats uploads may be in. */
  allowedFormats: ReadonlySet<string>;
  /** Features refused by default that this repository takes (core's FEATURES). */
  allowedFeatures: ReadonlySet<string>;
  /**
   * Downloads are answered with a redirect to a presigned URL valid this many seconds, where the store can
   * make one (an object store); absent: the server streams the bytes itself.
   */
  redirectSeconds?: number | undefined;
}

export interface AdmittedUpload {
  imageId: number;
  ownerId: number;
  ref: ImageRef;
  declaredLength: number | undefined;
  /** The format the uploader said the image is in, if they did. */
  declaredFormat?: string | undefined;
  /** Store a compressed upload decompressed. */
  decompress?: boolean;
  /** The resumable upload it comes from: its own reservation is not counted against the quota. */
  uploadId?: string | undefined;
}

export interface ReceivedVersion {
  version: number;
  size: number;
  digests: Digests;
  created: boolean;
}

/** Fails the stream as soon as it passes `max` bytes, so an undeclared huge body stops early. */
export function sizeLimit(max: number, tooLarge: () => RepomanError): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      seen += chunk.length;
      if (seen > max) callback(tooLarge());
      else callback(null, chunk);
    },
  });
}

/** What went wrong while a body streamed into the store, as the client should hear it. */
export function streamFailure(error: unknown): unknown {
  if (error instanceof RepomanError || error instanceof HashingError) return error;
  if (error instanceof BlobStoreFullError)
    return new RepomanError('insufficient_storage', undefined, { cause: error });
  // The client went away or its stream broke: its fault, not the database's or ours.
  return new RepomanError('upload_incomplete', `The upload ended early: ${(error as Error).message}`, {
    cause: error,
  });
}

/**
 * Streams `source` into `upload` through the hasher, failing past `max` bytes, all in one pass with
 * backpressure. Both sides settle (the store has written or dropped every byte) before it returns.
 */
export async function streamInto(
  source: Readable,
  upload: BlobUpload,
  hasher: Hasher,
  max: number,
  signal?: AbortSignal,
  through: Duplex[] = [],
): Promise<void> {
  const tap = hasher.tap();
  const tooLarge = () =>
    new RepomanError('image_too_large', `The image is larger than the limit of ${max} bytes`);
  const outcomes = await Promise.allSettled([
    pipeline([source, ...through, sizeLimit(max, tooLarge), tap], signal ? { signal } : {}),
    upload.write(tap, signal),
  ]);
  const rejected = outcomes.find((outcome) => outcome.status === 'rejected');
  if (rejected) throw streamFailure(rejected.reason);
}

/**
 * A decompressor for a compressed upload: zlib's for gzip and zstd, the system's `xz` and `bzip2` in a child
 * process for the others. `done` settles when it has finished, and rejects if the stream was corrupt.
 */
function decompressor(format: string): { stream: Duplex; done: Promise<void> } {
  if (format === 'gzip' || format === 'zstd') {
    const stream = format === 'gzip' ? createGunzip() : createZstdDecompress();
    return { stream, done: Promise.resolve() };
  }
  // xz's header may ask for a dictionary of up to 1.5 GiB; 512 MiB covers every preset (-9e needs 65 MiB).
  const args = format === 'xz' ? ['-dc', '--memlimit-decompress=512MiB'] : ['-dc'];
  const child = spawn(format, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { LC_ALL: 'C' } });
  let errors = '';
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    if (errors.length < 2048) errors += text;
  });
  const done = new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0
        ? resolve()
        : reject(new Error(errors.trim().split('\n').at(-1) || `${format} exit ${code}`)),
    );
  });
  done.catch(() => {});
  child.stdin.on('error', () => {}); // it stopped reading: its exit status says why
  const stream = Duplex.from({ writable: child.stdin, readable: child.stdout });
  return { stream, done };
}

/** Compressed uploads that may be unpacked on ingest (an OVA is an archive of several files: kept whole). */
const UNPACKABLE = new Set(['gzip', 'xz', 'zstd', 'bzip2']);

const COMPRESSIONS = new Set(['gzip', 'xz', 'zstd', 'bzip2']);

/** What a version records of its inspection. */
function formatColumns(inspection: Inspection) {
  const compressed = COMPRESSIONS.has(inspection.format);
  return {
    disk_format: compressed ? null : inspection.format,
    virtual_size: inspection.virtualSize,
    compression: compressed ? inspection.format : null,
    partition_table: inspection.partitionTable ?? null,
  };
}

const REFUSAL_CODES = {
  backing_file: 'backing_file_refused',
  external_data_file: 'external_data_file_refused',
  external_extent: 'external_extent_refused',
  header_invalid: 'invalid_image_header',
  format_unsupported: 'format_unsupported',
} as const satisfies Record<Refusal['code'], string>;

export function createBytesService(deps: {
  db: Db;
  store: BlobStore;
  policy: UploadPolicy;
  hashing: HashingPool;
  quota?: QuotaService;
}) {
  const { db, store, policy, hashing } = deps;
  const quota = deps.quota ?? createQuotaService({ db });
  const { find } = createImageAccess(db);

  /**
   * The owner's quota counts every kept version and variant and what unfinished uploads reserve (except
   * `exceptUpload`'s own); `incoming` more bytes must fit beside them.
   */
  const checkQuota = (ownerId: number, incoming: number, q: Db = db, exceptUpload?: string) =>
    quota.check(ownerId, incoming, { q, exceptUpload });

  /** Bytes the owner may still store (Infinity without a quota). */
  const quotaRoom = (ownerId: number, exceptUpload?: string) => quota.room(ownerId, { exceptUpload });

  /** Where a body without a declared length stops: the size limit, or the owner's room if that is less. */
  async function streamLimit(admitted: AdmittedUpload) {
    const room = await quotaRoom(admitted.ownerId, admitted.uploadId);
    return { max: Math.min(policy.maxImageSize, room), byQuota: room < policy.maxImageSize, room };
  }

  /** A stream stopped at the owner's room, rather than at the size limit, is over quota. */
  function overQuota(error: unknown, limit: { byQuota: boolean; room: number }, what: string): unknown {
    if (limit.byQuota && error instanceof RepomanError && error.code === 'image_too_large')
      return new RepomanError(
        'quota_exceeded',
        `${what} passes the ${limit.room} bytes the owner's quota leaves; nothing was kept`,
        { details: { room: limit.room } },
      );
    return error;
  }

  /** An image that would make a hypervisor read other files, or whose header lies, is never stored. */
  async function refuseUnsafe(inspection: Inspection): Promise<void> {
    const [refusal] = inspection.refusals;
    if (!refusal) return;
    const code = REFUSAL_CODES[refusal.code];
    throw new RepomanError(code, `Refused: ${refusal.reason} (${inspection.format})`, {
      details: {
        format: inspection.format,
      },
    });
  }

  /** The digests an upload computes: the configured ones, and any the client declared. */
  function algorithmsFor(expected: ExpectedDigests): DigestAlgorithm[] {
    return [...new Set([...policy.digests, ...(Object.keys(expected) as DigestAlgorithm[])])];
  }

  /**
   * Checks a whole upload (quota, the client's digests), makes its blob durable and records it as the image's
   * next version, pruning old ones, in one transaction. On failure before the commit the upload is left to
   * the caller; after it, the blob is deleted, so nothing unrecorded stays behind.
   */
  async function checkDigests(hasher: Hasher, expected: ExpectedDigests) {
    const digests = await hasher.digests();
    for (const [algorithm, value] of Object.entries(expected) as [DigestAlgorithm, string][]) {
      if (digests[algorithm] !== value) {
        throw new RepomanError(
          'digest_mismatch',
          `The image's ${algorithm} is ${digests[algorithm]}, not ${value} as the client said`,
        );
      }
    }
    return digests;
  }

  /**
   * Publishes a whole upload. One asked to be decompressed, and compressed, is first checked against the
   * client's digests as sent, then unpacked into a new upload that is published instead (the compressed one
   * is discarded once it is).
   */
  async function publish(
    admitted: AdmittedUpload,
    upload: BlobUpload,
    hasher: Hasher,
    expected: ExpectedDigests,
  ): Promise<ReceivedVersion> {
    const inspection = await inspect(hasher.bytes, (offset, length) => upload.readAt(offset, length));
    if (!admitted.decompress || !UNPACKABLE.has(inspection.format))
      return publishWhole(admitted, upload, hasher, expected, inspection);
    await checkDigests(hasher, expected);
    const unpacked = await store.createUpload();
    const unpackedHasher = new Hasher(hashing, algorithmsFor({}));
    try {
      // Unpacked bytes stop at the size limit, or at what the owner's quota leaves if that is less.
      const limit = await streamLimit(admitted);
      const { stream, done } = decompressor(inspection.format);
      try {
        await streamInto(await upload.readBack(), unpacked, unpackedHasher, limit.max, undefined, [stream]);
        await done;
      } catch (caught) {
        const error = overQuota(caught, limit, 'Unpacked, the image');
        if (error instanceof RepomanError && error.code === 'quota_exceeded') throw error;
        if (error instanceof RepomanError && error.code !== 'upload_incomplete') throw error;
        const reason = (error instanceof RepomanError ? (error.cause as Error) : (error as Error))?.message;
        throw new RepomanError(
          'decompression_failed',
          `The ${inspection.format} stream could not be decompressed: ${reason}`,
        );
      }
      const inner = await inspect(unpackedHasher.bytes, (offset, length) => unpacked.readAt(offset, length));
      const declared = admitted.declaredFormat;
      const received = await publishWhole(
        { ...admitted, declaredFormat: declared === inspection.format ? undefined : declared },
        unpacked,
        unpackedHasher,
        {},
        inner,
      );
      hasher.dispose();
      await upload.abort().catch(() => {});
      return received;
    } catch (error) {
      unpackedHasher.dispose();
      await unpacked.abort().catch(() => {});
      throw error;
    }
  }

  async function publishWhole(
    admitted: AdmittedUpload,
    upload: BlobUpload,
    hasher: Hasher,
    expected: ExpectedDigests,
    inspection: Inspection,
  ): Promise<ReceivedVersion> {
    const size = hasher.bytes;
    await refuseUnsafe(inspection);
    if (admitted.declaredFormat !== undefined && admitted.declaredFormat !== inspection.format)
      throw new RepomanError(
        'format_mismatch',
        `The upload was declared ${admitted.declaredFormat}, but its bytes are ${inspection.format}`,
      );
    if (inspection.encrypted && !policy.allowedFeatures.has('encrypted'))
      throw new RepomanError(
        'feature_not_allowed',
        `The ${inspection.format} image is encrypted (${inspection.encryption}); this repository does not take encrypted images`,
        { details: { feature: 'encrypted' } },
      );
    if (!policy.allowedFormats.has(inspection.format))
      throw new RepomanError(
        'format_not_allowed',
        `This repository accepts ${[...policy.allowedFormats].join(', ')}; the image is ${inspection.format}`,
      );
    await checkQuota(admitted.ownerId, size, db, admitted.uploadId);
    const digests = await checkDigests(hasher, expected);
    await upload.commit().catch((error: unknown) => {
      throw error instanceof BlobStoreFullError
        ? new RepomanError('insufficient_storage', undefined, { cause: error })
        : error;
    });
    try {
      const now = nowIso();
      const outcome = await db.transaction().execute(async (trx) => {
        const version = await addVersion(trx, admitted.imageId, {
          blob_key: upload.key,
          size,
          sha256: digests.sha256,
          md5: digests.md5 ?? null,
          sha512: digests.sha512 ?? null,
          ...formatColumns(inspection),
          created: now,
        });
        if (version === undefined) return undefined;
        // Checked again under the image's row lock: read_only or a quota may have changed meanwhile.
        const image = await findImageById(trx, admitted.imageId);
        if (image?.read_only)
          throw new RepomanError(
            'image_read_only',
            `${admitted.ref.owner}/${admitted.ref.name} became read-only`,
          );
        const pruned = await pruneVersions(trx, admitted.imageId, policy.keepVersions);
        // After the image's lock, as everywhere: an upload created meanwhile cannot take the same room.
        await quota.lock(trx, [admitted.ownerId]);
        await checkQuota(admitted.ownerId, 0, trx, admitted.uploadId);
        return { version, pruned };
      });
      if (!outcome) {
        throw new RepomanError(
          'image_not_found',
          `${admitted.ref.owner}/${admitted.ref.name} was deleted during the upload`,
        );
      }
      await deleteBlobsQuietly(store, outcome.pruned);
      return { version: outcome.version, size, digests, created: outcome.version === 1 };
    } catch (error) {
      await deleteBlobsQuietly(store, [upload.key]);
      throw translateStorageError(error);
    }
  }

  const service = guardService({
    /** Everything that can be decided from the headers, decided before a byte of the body is read. */
    async admitUpload(
      actor: Actor,
      ref: ImageRef,
      declaredLength: number | undefined,
      options: {
        /** The resumable upload this is (its own reservation is not counted against the quota). */
        uploadId?: string | undefined;
        declaredFormat?: string | undefined;
        decompress?: boolean;
      } = {},
    ): Promise<AdmittedUpload> {
      const { uploadId, declaredFormat, decompress = false } = options;
      if (declaredFormat !== undefined && !policy.allowedFormats.has(declaredFormat))
        throw new RepomanError(
          'format_not_allowed',
          `This repository accepts ${[...policy.allowedFormats].join(', ')}; not ${declaredFormat}`,
        );
      const { row, target } = await find(actor, ref, canModifyImage);
      if (!canModifyImage(actor, target))
        throw new RepomanError('forbidden', `You may not upload to ${ref.owner}/${ref.name}`);
      if (row.read_only)
        throw new RepomanError(
          'image_read_only',
          `${ref.owner}/${ref.name} is read-only; clear read_only to upload`,
        );
      if (declaredLength !== undefined && declaredLength > policy.maxImageSize) {
        throw new RepomanError(
          'image_too_large',
          `${declaredLength} bytes is more than the limit of ${policy.maxImageSize}`,
        );
      }
      await checkQuota(row.owner_id, declaredLength ?? 0, db, uploadId);
      return {
        imageId: row.id,
        ownerId: row.owner_id,
        ref: { owner: row.owner_name, name: row.name },
        declaredLength,
        declaredFormat,
        decompress,
        uploadId,
      };
    },

    /** Streams the body into a new blob, checks it, and publishes it as the image's next version. */
    async receive(
      admitted: AdmittedUpload,
      body: Readable,
      expected: ExpectedDigests,
      signal?: AbortSignal,
    ): Promise<ReceivedVersion> {
      const hasher = new Hasher(hashing, algorithmsFor(expected));
      const upload = await store.createUpload();
      try {
        // A body of undeclared length (chunked) stops at the owner's room, not after it has all been stored.
        const limit = await streamLimit(admitted);
        await streamInto(body, upload, hasher, limit.max, signal).catch((error: unknown) => {
          throw overQuota(error, limit, 'The upload');
        });
        if (admitted.declaredLength !== undefined && hasher.bytes !== admitted.declaredLength) {
          throw new RepomanError(
            'length_mismatch',
            `Received ${hasher.bytes} bytes but Content-Length said ${admitted.declaredLength}`,
          );
        }
        return await publish(admitted, upload, hasher, expected);
      } catch (error) {
        hasher.dispose();
        await upload.abort(); // nothing once published: a blob committed but not recorded is already gone
        throw error;
      }
    },

    publish,

    /** The image and the version to serve: the current one, or `version` if asked for and still kept. */
    async openDownload(
      actor: Actor | null,
      ref: ImageRef,
      version?: number,
    ): Promise<{ image: ImageWithOwner; version: VersionRow }> {
      const { row, view, target } = await find(actor, ref);
      // Holders of image_modify or image_delete see images their permission reaches, but reading the bytes
      // is for those the image is shared with (and its owner, admins, everyone if it is public).
      if (!canReadImage(actor, target))
        throw new RepomanError(
          'forbidden',
          `${ref.owner}/${ref.name} is not shared with you: you may see it and change it, not download it`,
        );
      if (view.expired)
        throw new RepomanError('image_expired', `${ref.owner}/${ref.name} expired on ${row.expires}`);
      if (row.version === 0)
        throw new RepomanError(
          'image_not_uploaded',
          `No bytes have been uploaded to ${ref.owner}/${ref.name} yet`,
        );
      const wanted = version ?? row.version;
      const found = await findVersion(db, row.id, wanted);
      if (!found)
        throw new RepomanError(
          'version_not_found',
          `${ref.owner}/${ref.name} has no version ${wanted} (any more)`,
        );
      return { image: row, version: found };
    },

    async read(version: Pick<VersionRow, 'blob_key' | 'version'>, range?: ByteRange) {
      try {
        return await store.read(version.blob_key, range);
      } catch (error) {
        // Pruned or removed by fsck since the download was opened.
        if (error instanceof BlobNotFoundError)
          throw new RepomanError('version_not_found', `Version ${version.version} is no longer kept`);
        throw error;
      }
    },

    /**
     * Where the client may fetch the version's bytes straight from the store, or null when the server serves
     * them itself (redirects off, or a store that cannot make such URLs).
     */
    async redirectUrl(
      version: Pick<VersionRow, 'blob_key'>,
      headers: { contentDisposition: string; contentType: string },
    ): Promise<string | null> {
      if (!policy.redirectSeconds || !store.downloadUrl) return null;
      return store.downloadUrl(version.blob_key, { expiresSeconds: policy.redirectSeconds, ...headers });
    },

    async versions(
      actor: Actor | null,
      ref: ImageRef,
    ): Promise<{ image: ImageWithOwner; versions: VersionRow[] }> {
      const { row } = await find(actor, ref, canModifyImage);
      return { image: row, versions: await listVersions(db, row.id) };
    },

    /** Serves an older, still kept version again; the next upload still gets a new number. */
    async rollback(actor: Actor, ref: ImageRef, version: number): Promise<void> {
      const { row, target } = await find(actor, ref, canModifyImage);
      if (!canModifyImage(actor, target))
        throw new RepomanError('forbidden', `You may not roll back ${ref.owner}/${ref.name}`);
      if (row.read_only)
        throw new RepomanError(
          'image_read_only',
          `${ref.owner}/${ref.name} is read-only; clear read_only first`,
        );
      await db.transaction().execute(async (trx) => {
        await lockImage(trx, row.id); // an upload's pruning cannot remove the version under us
        const found = await findVersion(trx, row.id, version);
        if (!found)
          throw new RepomanError(
            'version_not_found',
            `${ref.owner}/${ref.name} has no version ${version} (any more)`,
          );
        await setCurrentVersion(trx, row.id, found, nowIso());
      });
    },
  });
  return { ...service, algorithmsFor, checkQuota, quotaRoom, quota, maxImageSize: policy.maxImageSize };
}

export type BytesService = ReturnType<typeof createBytesService>;
