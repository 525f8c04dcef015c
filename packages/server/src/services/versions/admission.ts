/**
 * Admission: everything about an upload that can be decided from its headers (permission, read_only, the
 * declared format and length, the owner's quota), decided before a byte of the body is read.
 */
import { RepomanError } from '@repoman/core';
import { type Actor, canCreateImage, canModifyImage } from '../../authz.ts';
import { findImageById } from '../../db/images-dal.ts';
import { imagesOfOwner } from '../../db/quota-dal.ts';
import type { Db } from '../../db/schema.ts';
import { findUserByName } from '../../db/users-dal.ts';
import { checkedImageName } from '../common.ts';
import type { createImageAccess, ImageRef } from '../image-access.ts';
import { tooManyImages } from '../image-slots.ts';
import type { QuotaService } from '../quota.ts';
import type { AdmittedUpload, UploadPolicy } from './policy.ts';

export interface AdmitOptions {
  /** The resumable upload this is (its own reservation is not counted against the quota). */
  uploadId?: string | undefined;
  declaredFormat?: string | undefined;
  decompress?: boolean | undefined;
  /**
   * An image of that name that does not exist is made when the upload is published (a PUT to a free name, as
   * grid tools write files), where the caller may create it: in their own namespace, or (admins) in anyone's.
   * Elsewhere the name stays "not found", revealing nothing.
   */
  createIfMissing?: boolean | undefined;
}

/** The image an upload goes to: by its name, or by its id (a resumable upload records the id). */
export type UploadTarget = ImageRef | { imageId: number };

export function createAdmission(deps: {
  db: Db;
  policy: Pick<UploadPolicy, 'allowedFormats' | 'maxImageSize'>;
  quota: Pick<QuotaService, 'check'>;
  access: ReturnType<typeof createImageAccess>;
  /** Images one namespace may hold (users.max_images); absent: no limit. */
  maxImagesPerUser?: number | undefined;
}) {
  const { db, policy, quota, access } = deps;
  const maxImages = deps.maxImagesPerUser ?? Number.POSITIVE_INFINITY;

  async function refOf(target: UploadTarget): Promise<ImageRef> {
    if (!('imageId' in target)) return target;
    const image = await findImageById(db, target.imageId);
    if (!image) throw new RepomanError('image_not_found', 'The image of this upload was deleted');
    return { owner: image.owner_name, name: image.name };
  }

  function checkLength(declaredLength: number | undefined) {
    if (declaredLength !== undefined && declaredLength > policy.maxImageSize)
      throw new RepomanError(
        'image_too_large',
        `${declaredLength} bytes is more than the limit of ${policy.maxImageSize}`,
      );
  }

  /**
   * An upload that makes its image when it is published: everything `POST /api/images` would check is checked
   * now, from the headers (the name, the right to create, the namespace's image limit, the owner's quota), and
   * checked again when the image is made. `notFound` is what the caller is told where they may not create.
   */
  async function admitCreation(
    actor: Actor,
    ref: ImageRef,
    declaredLength: number | undefined,
    options: AdmitOptions,
    notFound: RepomanError,
  ): Promise<AdmittedUpload> {
    if (ref.owner !== actor.name && !actor.isAdmin) throw notFound;
    const name = checkedImageName(ref.name);
    const owner = ref.owner === actor.name ? actor : await findUserByName(db, ref.owner);
    if (!owner) throw notFound;
    if (!canCreateImage(actor, owner.id))
      throw new RepomanError('forbidden', 'Creating images needs the image_create permission');
    const held = await imagesOfOwner(db, owner.id);
    if (held >= maxImages) throw tooManyImages(ref.owner, held, maxImages);
    checkLength(declaredLength);
    await quota.check(owner.id, declaredLength ?? 0, { q: db });
    return {
      imageId: null,
      ownerId: owner.id,
      ref: { owner: ref.owner, name },
      declaredLength,
      declaredFormat: options.declaredFormat,
      decompress: options.decompress ?? false,
      uploadId: undefined,
    };
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
    let found: Awaited<ReturnType<typeof access.find>>;
    try {
      found = await access.find(actor, ref, canModifyImage);
    } catch (error) {
      const missing = error instanceof RepomanError && error.code === 'image_not_found';
      if (!missing || !options.createIfMissing || 'imageId' in target) throw error;
      return admitCreation(actor, ref, declaredLength, options, error);
    }
    const { row, target: image } = found;
    if (!canModifyImage(actor, image))
      throw new RepomanError('forbidden', `You may not upload to ${ref.owner}/${ref.name}`);
    if (row.read_only)
      throw new RepomanError(
        'image_read_only',
        `${ref.owner}/${ref.name} is read-only; clear read_only to upload`,
      );
    checkLength(declaredLength);
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
