/**
 * Finding an image for an actor: the one place that decides whether an image is visible, so that another
 * user's private image always looks exactly like a missing one.
 */
import { type Image, RepomanError } from '@repoman/core';
import {
  type Actor,
  canDeleteImage,
  canModifyImage,
  canReadImage,
  canSeeImageShares,
  type ImageTarget,
} from '../authz.ts';
import type {
  ImageQuery,
  ImageRow,
  ImageShareRows,
  ImageWithAccess,
  ImageWithOwner,
} from '../db/images-dal.ts';
import * as images from '../db/images-dal.ts';
import type { Db } from '../db/schema.ts';

/**
 * What a list shows a caller: admins every image; a user their own, the public ones and those shared with them
 * or their groups; a caller without a certificate the public ones.
 */
export const visibilityOf = (actor: Actor | null): ImageQuery['visibleTo'] =>
  actor?.isAdmin ? null : { userId: actor?.id ?? null };

export interface ImageRef {
  owner: string;
  name: string;
}

/** An image as an actor sees it: the API's fields but its URLs, which only HTTP knows. */
export type ImageView = Omit<Image, 'url' | 'owner_url' | 'file_url' | 'http_file_url' | 'image_list_url'>;

const isExpired = (row: Pick<ImageRow, 'expires'>, now = new Date()) =>
  row.expires !== null && new Date(row.expires).getTime() <= now.getTime();

export const shareNames = (shares: ImageShareRows) => ({
  users: shares.users.map((u) => u.name),
  groups: shares.groups.map((g) => g.name),
});

/** The view of an image; `shares` only for those who may see them (the owner and admins). */
export function imageView(row: ImageWithOwner, shares?: ImageShareRows): ImageView {
  const view: ImageView = {
    uuid: row.uuid,
    name: row.name,
    owner: row.owner_name,
    description: row.description,
    os_variant: row.os_variant,
    os_type: row.os_type,
    os_arch: row.os_arch,
    hypervisor: row.hypervisor,
    read_only: Boolean(row.read_only),
    unauthenticated_access: Boolean(row.unauthenticated_access),
    expires: row.expires,
    expired: isExpired(row),
    raw_file_uploaded: row.version > 0,
    digests: row.sha256
      ? { sha256: row.sha256, md5: row.md5, sha512: row.sha512, adler32: row.adler32 }
      : null,
    version: row.version,
    size: row.size,
    disk_format: row.disk_format ?? null,
    virtual_size: row.virtual_size ?? null,
    compression: row.compression ?? null,
    partition_table: row.partition_table ?? null,
    created: row.created,
    modified: row.modified,
    uploaded: row.uploaded,
  };
  if (shares) view.shared_with = shareNames(shares);
  return view;
}

/** The facts authz.ts decides an image's access by, from its row (with its shares and its owner's groups). */
export function targetOf(row: ImageWithAccess): ImageTarget & { shares: ImageShareRows } {
  const { shares } = row;
  return {
    ownerId: row.owner_id,
    ownerGroups: new Set(row.ownerGroups),
    public: Boolean(row.unauthenticated_access),
    sharedWithUsers: new Set(shares.users.map((u) => u.id)),
    sharedWithGroups: new Set(shares.groups.map((g) => g.name)),
    shares,
  };
}

export function createImageAccess(db: Db) {
  const notFound = (ref: ImageRef) =>
    new RepomanError('image_not_found', `No image '${ref.name}' in namespace '${ref.owner}'`);

  /**
   * The image, if the actor may see it or may act on it with `may` (image_modify and the like reach images
   * not shared with their holder); otherwise a 404 indistinguishable from a missing image.
   */
  async function find(
    actor: Actor | null,
    ref: ImageRef,
    may?: (actor: Actor, image: ImageTarget) => boolean,
  ) {
    // one query: the image, who it is shared with and its owner's groups
    const row = await images.findImageWithAccess(db, ref.owner, ref.name);
    if (!row) throw notFound(ref);
    const target = targetOf(row);
    // Whoever may change or delete an image sees it on every route (then a 403 says what they may not do).
    const allowed =
      canReadImage(actor, target) ||
      (actor !== null &&
        (canModifyImage(actor, target) || canDeleteImage(actor, target) || may?.(actor, target) === true));
    if (!allowed) throw notFound(ref);
    const view = imageView(row, actor && canSeeImageShares(actor, target) ? target.shares : undefined);
    return { row, target, view };
  }

  return { find };
}
