/**
 * Publishing: a whole upload, checked (its format and safety, the client's digests, the owner's quota), made
 * durable and recorded as the image's next version in one transaction that also prunes old versions. A
 * compressed upload asked to be unpacked is unpacked first, and the unpacked bytes are published instead.
 * On failure before the commit the upload is left to the caller; after it, the blob is deleted, so nothing
 * unrecorded stays behind.
 */
import { type DigestName, type ExpectedDigests, RepomanError } from '@repoman/core';
import { Hasher, type HashingPool } from '../../blobs/hashing.ts';
import {
  type BlobStore,
  BlobStoreFullError,
  type BlobUpload,
  deleteBlobsQuietly,
} from '../../blobs/store.ts';
import { findImage, findImageById } from '../../db/images-dal.ts';
import type { Db } from '../../db/schema.ts';
import { addVersion, pruneVersions } from '../../db/versions-dal.ts';
import { type Inspection, inspect, type Refusal } from '../../formats/inspect.ts';
import { nowIso, translateStorageError } from '../common.ts';
import { insertImageSlot } from '../image-slots.ts';
import type { QuotaService } from '../quota.ts';
import { decompressor, ingest, UNPACKABLE } from './ingest.ts';
import type { AdmittedUpload, ReceivedVersion, UploadPolicy } from './policy.ts';

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

/** An image that would make a hypervisor read other files, or whose header lies, is never stored. */
function refuseUnsafe(inspection: Inspection): void {
  const [refusal] = inspection.refusals;
  if (!refusal) return;
  throw new RepomanError(REFUSAL_CODES[refusal.code], `Refused: ${refusal.reason} (${inspection.format})`, {
    details: { format: inspection.format },
  });
}

/** The digests the hasher computed, once each one the client declared has been checked. */
async function checkDigests(hasher: Hasher, expected: ExpectedDigests) {
  const digests = await hasher.digests();
  for (const [algorithm, value] of Object.entries(expected) as [DigestName, string][]) {
    if (digests[algorithm] !== value) {
      throw new RepomanError(
        'digest_mismatch',
        `The image's ${algorithm} is ${digests[algorithm]}, not ${value} as the client said`,
      );
    }
  }
  return digests;
}

/** A whole upload, inspected: what each publishing step works on. */
interface Inspected {
  admitted: AdmittedUpload;
  upload: BlobUpload;
  hasher: Hasher;
  /** The digests the client declared for these bytes. */
  expected: ExpectedDigests;
  inspection: Inspection;
}

export function createPublisher(deps: {
  db: Db;
  store: Pick<BlobStore, 'createUpload' | 'delete'>;
  policy: Pick<
    UploadPolicy,
    'digests' | 'maxImageSize' | 'keepVersions' | 'allowedFormats' | 'allowedFeatures'
  >;
  hashing: HashingPool;
  quota: Pick<QuotaService, 'check' | 'room' | 'lock'>;
  /** Images one namespace may hold (users.max_images), for an upload that makes its image; absent: no limit. */
  maxImagesPerUser?: number | undefined;
}) {
  const { db, store, policy, hashing, quota } = deps;
  const maxImages = deps.maxImagesPerUser ?? Number.POSITIVE_INFINITY;

  /**
   * The image an upload that makes its image goes to, within the publishing transaction: made now, or, if
   * another upload made it meanwhile, that one (this upload is then its next version, as if it came second).
   */
  async function slotFor(
    trx: Db,
    admitted: AdmittedUpload,
    now: string,
  ): Promise<{ id: number; made: boolean }> {
    const owner = { id: admitted.ownerId, name: admitted.ref.owner };
    try {
      return { id: await insertImageSlot(trx, owner, admitted.ref.name, {}, maxImages, now), made: true };
    } catch (error) {
      if (!(error instanceof RepomanError && error.code === 'image_exists')) throw error;
      const existing = await findImage(trx, owner.name, admitted.ref.name);
      if (!existing) throw error;
      return { id: existing.id, made: false };
    }
  }

  /** The digests an upload computes: the configured ones, and any the client declared. */
  function algorithmsFor(expected: ExpectedDigests): DigestName[] {
    return [...new Set([...policy.digests, ...(Object.keys(expected) as DigestName[])])];
  }

  /** Where a body without a declared length stops: the size limit, or the owner's room if that is less. */
  async function limitFor(admitted: AdmittedUpload) {
    const room = await quota.room(admitted.ownerId, { exceptUpload: admitted.uploadId });
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

  /**
   * Unpacks a compressed upload into a new one and publishes that, once the compressed bytes have been
   * checked against the client's digests as sent (the compressed upload is discarded once it is).
   */
  async function publishUnpacked(whole: Inspected): Promise<ReceivedVersion> {
    const { admitted, upload, hasher, expected, inspection } = whole;
    await checkDigests(hasher, expected);
    const unpacked = await store.createUpload();
    const unpackedHasher = new Hasher(hashing, algorithmsFor({}));
    try {
      // Unpacked bytes stop at the size limit, or at what the owner's quota leaves if that is less.
      const limit = await limitFor(admitted);
      const { stream, done } = decompressor(inspection.format);
      try {
        await ingest(await upload.readBack(), unpacked, unpackedHasher, {
          max: limit.max,
          through: [stream],
        });
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
      const received = await publishWhole({
        admitted: { ...admitted, declaredFormat: declared === inspection.format ? undefined : declared },
        upload: unpacked,
        hasher: unpackedHasher,
        expected: {},
        inspection: inner,
      });
      hasher.dispose();
      await upload.abort().catch(() => {});
      return received;
    } catch (error) {
      unpackedHasher.dispose();
      await unpacked.abort().catch(() => {});
      throw error;
    }
  }

  /** What the repository refuses to store, whatever the quota: unsafe, mislabelled or unwanted images. */
  function refuseUnwanted(admitted: AdmittedUpload, inspection: Inspection): void {
    refuseUnsafe(inspection);
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
  }

  /** The one transaction that makes a version: recorded, pruned, quota checked again under the locks. */
  async function record(
    admitted: AdmittedUpload,
    blobKey: string,
    size: number,
    digests: ReceivedVersion['digests'],
    inspection: Inspection,
  ) {
    const now = nowIso();
    const outcome = await db.transaction().execute(async (trx) => {
      const slot =
        admitted.imageId === null ? await slotFor(trx, admitted, now) : { id: admitted.imageId, made: false };
      const imageId = slot.id;
      const version = await addVersion(trx, imageId, {
        blob_key: blobKey,
        size,
        sha256: digests.sha256,
        md5: digests.md5 ?? null,
        sha512: digests.sha512 ?? null,
        adler32: digests.adler32 ?? null,
        ...formatColumns(inspection),
        created: now,
      });
      if (version === undefined) return undefined;
      // Checked again under the image's row lock: read_only or a quota may have changed meanwhile.
      const image = await findImageById(trx, imageId);
      if (image?.read_only)
        throw new RepomanError(
          'image_read_only',
          `${admitted.ref.owner}/${admitted.ref.name} became read-only`,
        );
      const pruned = await pruneVersions(trx, imageId, policy.keepVersions);
      // After the image's lock, as everywhere: an upload created meanwhile cannot take the same room.
      await quota.lock(trx, [admitted.ownerId]);
      await quota.check(admitted.ownerId, 0, { q: trx, exceptUpload: admitted.uploadId });
      return { version, pruned, madeImage: slot.made };
    });
    if (!outcome) {
      throw new RepomanError(
        'image_not_found',
        `${admitted.ref.owner}/${admitted.ref.name} was deleted during the upload`,
      );
    }
    return outcome;
  }

  async function publishWhole(whole: Inspected): Promise<ReceivedVersion> {
    const { admitted, upload, hasher, expected, inspection } = whole;
    const size = hasher.bytes;
    refuseUnwanted(admitted, inspection);
    await quota.check(admitted.ownerId, size, { q: db, exceptUpload: admitted.uploadId });
    const digests = await checkDigests(hasher, expected);
    await upload.commit().catch((error: unknown) => {
      throw error instanceof BlobStoreFullError
        ? new RepomanError('insufficient_storage', undefined, { cause: error })
        : error;
    });
    try {
      const outcome = await record(admitted, upload.key, size, digests, inspection);
      await deleteBlobsQuietly(store, outcome.pruned);
      return {
        version: outcome.version,
        size,
        digests,
        created: outcome.version === 1,
        createdImage: outcome.madeImage,
      };
    } catch (error) {
      await deleteBlobsQuietly(store, [upload.key]);
      throw translateStorageError(error);
    }
  }

  /**
   * Publishes a whole upload as the image's next version. One asked to be decompressed, and compressed, is
   * unpacked and the unpacked bytes published instead.
   */
  async function publish(
    admitted: AdmittedUpload,
    upload: BlobUpload,
    hasher: Hasher,
    expected: ExpectedDigests,
  ): Promise<ReceivedVersion> {
    const inspection = await inspect(hasher.bytes, (offset, length) => upload.readAt(offset, length));
    const whole: Inspected = { admitted, upload, hasher, expected, inspection };
    return admitted.decompress && UNPACKABLE.has(inspection.format)
      ? publishUnpacked(whole)
      : publishWhole(whole);
  }

  return { publish, algorithmsFor, limitFor, overQuota };
}

export type Publisher = ReturnType<typeof createPublisher>;
