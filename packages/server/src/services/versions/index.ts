/**
 * The versions service: the byte path of an image, and the only code that turns bytes into versions or
 * versions into bytes. HTTP asks it; it decides.
 *
 * - admission (`admitUpload`): what the headers alone decide, before a byte is read (admission.ts);
 * - ingest: the body into a new blob, hashed, limited, maybe unpacked (ingest.ts), for PUT, the resumable
 *   uploads (resumable.ts) and conversions alike;
 * - publishing: the one transaction that makes a version (publish.ts);
 * - downloads (`openDownload`): a descriptor of the bytes to serve (download.ts);
 * - the versions kept, and rollback to one of them.
 * A refused, short, cut or mismatched upload leaves the image exactly as it was.
 */

import type { Readable } from 'node:stream';
import { type ExpectedDigests, RepomanError } from '@repoman/core';
import { type Actor, canModifyImage } from '../../authz.ts';
import { Hasher, type HashingPool } from '../../blobs/hashing.ts';
import type { BlobStore } from '../../blobs/store.ts';
import { listVariants } from '../../db/jobs-dal.ts';
import type { Db } from '../../db/schema.ts';
import { findVersion, listVersions, lockImage, setCurrentVersion } from '../../db/versions-dal.ts';
import { guardService, nowIso } from '../common.ts';
import { createImageAccess, type ImageRef } from '../image-access.ts';
import type { QuotaService } from '../quota.ts';
import { createAdmission } from './admission.ts';
import { createDownloads } from './download.ts';
import { ingest } from './ingest.ts';
import type { AdmittedUpload, ReceivedVersion, UploadPolicy } from './policy.ts';
import { createPublisher } from './publish.ts';
import { type VersionView, versionView } from './views.ts';

export type { Download, DownloadOptions } from './download.ts';
export type { AdmittedUpload, ReceivedVersion, UploadPolicy } from './policy.ts';
export type { KnownDigests } from './stored-digests.ts';
export type { VariantView, VersionView } from './views.ts';

export function createVersionsService(deps: {
  db: Db;
  store: Pick<BlobStore, 'createUpload' | 'delete' | 'read' | 'downloadUrl'>;
  policy: UploadPolicy;
  hashing: HashingPool;
  quota: Pick<QuotaService, 'check' | 'room' | 'lock'>;
  /** Images one namespace may hold (users.max_images), for uploads that make their image; absent: no limit. */
  maxImagesPerUser?: number | undefined;
}) {
  const { db, store, policy, hashing, quota, maxImagesPerUser } = deps;
  const access = createImageAccess(db);
  const publisher = createPublisher({ db, store, policy, hashing, quota, maxImagesPerUser });
  const admitUpload = createAdmission({ db, policy, quota, access, maxImagesPerUser });
  const openDownload = createDownloads({ db, store, policy, access, hashing });

  const service = guardService({
    admitUpload,

    /** Streams the body into a new blob, checks it, and publishes it as the image's next version. */
    async receive(
      admitted: AdmittedUpload,
      body: Readable,
      expected: ExpectedDigests,
      signal?: AbortSignal,
    ): Promise<ReceivedVersion> {
      const hasher = new Hasher(hashing, publisher.algorithmsFor(expected));
      const upload = await store.createUpload();
      try {
        // A body of undeclared length (chunked) stops at the owner's room, not after it has all been stored.
        const limit = await publisher.limitFor(admitted);
        await ingest(body, upload, hasher, { max: limit.max, signal }).catch((error: unknown) => {
          throw publisher.overQuota(error, limit, 'The upload');
        });
        if (admitted.declaredLength !== undefined && hasher.bytes !== admitted.declaredLength) {
          throw new RepomanError(
            'length_mismatch',
            `Received ${hasher.bytes} bytes but Content-Length said ${admitted.declaredLength}`,
          );
        }
        return await publisher.publish(admitted, upload, hasher, expected);
      } catch (error) {
        hasher.dispose();
        await upload.abort(); // nothing once published: a blob committed but not recorded is already gone
        throw error;
      }
    },

    openDownload,

    /** For the resumable uploads: a whole upload published through the same checks and transaction. */
    publish: publisher.publish,

    /** The kept versions, newest first, each with its variants; `ref` as the image is named now. */
    async list(actor: Actor | null, ref: ImageRef): Promise<{ ref: ImageRef; versions: VersionView[] }> {
      const { row } = await access.find(actor, ref, canModifyImage);
      const versions = await listVersions(db, row.id);
      const variants = await listVariants(
        db,
        versions.map((version) => version.id),
      );
      return {
        ref: { owner: row.owner_name, name: row.name },
        versions: versions.map((version) =>
          versionView(
            version,
            row.version,
            variants.filter((variant) => variant.version_id === version.id),
          ),
        ),
      };
    },

    /** Serves an older, still kept version again; the next upload still gets a new number. */
    async rollback(actor: Actor, ref: ImageRef, version: number): Promise<void> {
      const { row, target } = await access.find(actor, ref, canModifyImage);
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
  return {
    ...service,
    /** The digests an upload computes: the configured ones and any the client declared. */
    algorithmsFor: publisher.algorithmsFor,
    maxImageSize: policy.maxImageSize,
  };
}

export type VersionsService = ReturnType<typeof createVersionsService>;
