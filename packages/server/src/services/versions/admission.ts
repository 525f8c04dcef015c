/**
 * Admission: everything about an upload that can be decided from its headers (permission, read_only, the
 * declared format and length, the owner's quota), decided before a byte of the body is read.
 */
import { RepomanError } from '@repoman/core';
import { type Actor, canModifyImage } from '../../authz.ts';
import { findImageById } from '../../db/images-dal.ts';
import type { Db } from '../../db/schema.ts';
import type { createImageAccess, ImageRef } from '../image-access.ts';
import type { QuotaService } from '../quota.ts';
import type { AdmittedUpload, UploadPolicy } from './policy.ts';

export interface AdmitOptions {
  /** The resumable upload this is (its own reservation is not counted against the quota). */
  uploadId?: string | undefined;
  declaredFormat?: string | undefined;
  decompress?: boolean | undefined;
}

/** The image an upload goes to: by its name, or by its id (a resumable upload records the id). */
export type UploadTarget = ImageRef | { imageId: number };

export function createAdmission(deps: {
  db: Db;
  policy: Pick<UploadPolicy, 'allowedFormats' | 'maxImageSize'>;
  quota: Pick<QuotaService, 'check'>;
  access: ReturnType<typeof createImageAccess>;
}) {
  const { db, policy, quota, access } = deps;

  async function refOf(target: UploadTarget): Promise<ImageRef> {
    if (!('imageId' in target)) return target;
    const image = await findImageById(db, target.imageId);
    if (!image) throw new RepomanError('image_not_found', 'The image of this upload was deleted');
    return { owner: image.owner_name, name: image.name };
  }

  return async function admit(
    actor: Actor,
    target: UploadTarget,
    declaredLength: number | undefined,
    options: AdmitOptions = {},
  ): Promise<AdmittedUpload> {
    const { uploadId, declaredFormat, decompress = false } = options;
    if (declaredFormat !== undefined && !policy.allowedFormats.has(declaredFormat))
      throw new RepomanError(
        'format_not_allowed',
        `This repository accepts ${[...policy.allowedFormats].join(', ')}; not ${declaredFormat}`,
      );
    const ref = await refOf(target);
    const { row, target: image } = await access.find(actor, ref, canModifyImage);
    if (!canModifyImage(actor, image))
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
    await quota.check(row.owner_id, declaredLength ?? 0, { q: db, exceptUpload: uploadId });
    return {
      imageId: row.id,
      ownerId: row.owner_id,
      ref: { owner: row.owner_name, name: row.name },
      declaredLength,
      declaredFormat,
      decompress,
      uploadId,
    };
  };
}
