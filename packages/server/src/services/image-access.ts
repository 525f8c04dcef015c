/**
 * Finding an image for an actor: the one place that decides whether an image is visible, so that another
 * user's private image always looks exactly like a missing one.
 */
import { RepomanError } from '@repoman/core';
import {
  type Actor,
  canDeleteImage,
  canModifyImage,
  canReadImage,
  canSeeImageShares,
  type ImageTarget,
} from '../authz.ts';
import type { Db } from '../db/connect.ts';
import type { ImageRow, ImageShareRows, ImageWithOwner } from '../db/images-dal.ts';
import * as images from '../db/images-dal.ts';
import { groupsOfUsers } from '../db/users-dal.ts';

export interface ImageRef {
  owner: string;
  name: string;
}

export interface ImageView {
  row: ImageWithOwner;
  expired: boolean;
  /** Present for the owner and admins. */
  shares?: { users: string[]; groups: string[] };
}

export const isExpired = (row: Pick<ImageRow, 'expires'>, now = new Date()) =>
  row.expires !== null && new Date(row.expires).getTime() <= now.getTime();

export const shareNames = (shares: ImageShareRows) => ({
  users: shares.users.map((u) => u.name),
  groups: shares.groups.map((g) => g.name),
});

export function createImageAccess(db: Db) {
  const notFound = (ref: ImageRef) =>
    new RepomanError('image_not_found', `No image '${ref.name}' in namespace '${ref.owner}'`);

  async function targetOf(row: ImageWithOwner): Promise<ImageTarget & { shares: ImageShareRows }> {
    const [shares, ownerGroups] = await Promise.all([
      images.sharesOfImage(db, row.id),
      groupsOfUsers(db, [row.owner_id]),
    ]);
    return {
      ownerId: row.owner_id,
      ownerGroups: new Set(ownerGroups.get(row.owner_id) ?? []),
      public: Boolean(row.unauthenticated_access),
      sharedWithUsers: new Set(shares.users.map((u) => u.id)),
      sharedWithGroups: new Set(shares.groups.map((g) => g.name)),
      shares,
    };
  }

  /**
   * The image, if the actor may see it or may act on it with `may` (image_modify and the like reach images
   * not shared with their holder); otherwise a 404 indistinguishable from a missing image.
   */
  async function find(
    actor: Actor | null,
    ref: ImageRef,
    may?: (actor: Actor, image: ImageTarget) => boolean,
  ) {
    const row = await images.findImage(db, ref.owner, ref.name);
    if (!row) throw notFound(ref);
    const target = await targetOf(row);
    // Whoever may change or delete an image sees it on every route (then a 403 says what they may not do).
    const allowed =
      canReadImage(actor, target) ||
      (actor !== null &&
        (canModifyImage(actor, target) || canDeleteImage(actor, target) || may?.(actor, target) === true));
    if (!allowed) throw notFound(ref);
    const view: ImageView = { row, expired: isExpired(row) };
    if (actor && canSeeImageShares(actor, target)) view.shares = shareNames(target.shares);
    return { row, target, view };
  }

  return { find };
}
