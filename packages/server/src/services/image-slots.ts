/**
 * Making an image: the one insertion `POST /api/images` and a `PUT` to a free name (publish.ts) share, so
 * both take a namespace's last place the same way and make the same image.
 */
import { randomUUID } from 'node:crypto';
import { RepomanError } from '@repoman/core';
import * as images from '../db/images-dal.ts';
import { type ImageRow, insertImage } from '../db/images-dal.ts';
import { imagesOfOwner, lockUsers } from '../db/quota-dal.ts';
import type { Db } from '../db/schema.ts';

/** The refusal of a namespace that holds `held` images when it may hold `limit`. */
export function tooManyImages(owner: string, held: number, limit: number): RepomanError {
  return new RepomanError(
    'too_many_images',
    `The namespace '${owner}' holds ${held} images, as many as this repository allows; delete one first`,
    { details: { images: held, limit } },
  );
}

/**
 * Inserts a new image in `owner`'s namespace within `trx` (a transaction): private, with every field at its
 * default and `fields` on top; its id. The owner's row is locked first, so that two creations at once cannot
 * both take the last place (`maxImages`) or the same name (409 `image_exists`).
 */
export async function insertImageSlot(
  trx: Db,
  owner: { id: number; name: string },
  name: string,
  fields: Partial<ImageRow>,
  maxImages: number,
  now: string,
): Promise<number> {
  await lockUsers(trx, [owner.id]);
  if (await images.findImage(trx, owner.name, name))
    throw new RepomanError('image_exists', `An image '${name}' already exists in namespace '${owner.name}'`);
  const held = await imagesOfOwner(trx, owner.id);
  if (held >= maxImages) throw tooManyImages(owner.name, held, maxImages);
  return insertImage(trx, {
    uuid: randomUUID(),
    owner_id: owner.id,
    name,
    description: null,
    os_variant: null,
    os_type: null,
    os_arch: null,
    hypervisor: null,
    read_only: false,
    unauthenticated_access: false,
    expires: null,
    version: 0,
    size: null,
    created: now,
    modified: now,
    uploaded: null,
    ...fields,
  });
}
