/**
 * Who may do what: small pure functions over plain data, tested on their own. Services load the facts
 * (memberships, shares) and ask; nothing here touches the database or HTTP.
 *
 * Admins (members of the `admins` group) may do everything. Otherwise the original Repoman's permission names
 * apply, without its holes: nobody can grant themselves more than they have.
 */
import { ADMINS_GROUP, type Permission, USERS_GROUP } from '@repoman/core';

export interface Actor {
  id: number;
  name: string;
  isAdmin: boolean;
  permissions: ReadonlySet<Permission>;
  /** Names of the groups the actor belongs to. */
  groups: ReadonlySet<string>;
  /** Authenticated with a limited proxy: may read, never change anything. */
  limited: boolean;
}

export interface UserTarget {
  id: number;
  /** Whether the target user is an admin: only admins may change or delete admins. */
  isAdmin: boolean;
  /** The target's permissions: a non-admin may act only on users who hold nothing the actor lacks. */
  permissions: ReadonlySet<Permission>;
}

export interface GroupTarget {
  name: string;
  permissions: readonly Permission[];
}

export interface ImageTarget {
  ownerId: number;
  /** Groups of the owner, for the image_*_group permissions. */
  ownerGroups: ReadonlySet<string>;
  public: boolean;
  sharedWithUsers: ReadonlySet<number>;
  sharedWithGroups: ReadonlySet<string>;
}

export type UserField =
  | 'user_name'
  | 'client_dn'
  | 'issuer_dn'
  | 'full_name'
  | 'email'
  | 'suspended'
  | 'quota';

const has = (actor: Actor, permission: Permission) => actor.isAdmin || actor.permissions.has(permission);

// ---- users ----

export const canCreateUser = (actor: Actor) => has(actor, 'user_create');

/** DNs, emails, suspension and permissions of a user are private to the user and admins. */
export const canSeeUserDetails = (actor: Actor, target: { id: number }) =>
  actor.isAdmin || actor.id === target.id;

/**
 * Taking over an account (its DN) must not gain anything: a non-admin acts only on non-admin users who
 * hold no permission the actor lacks.
 */
const outranks = (actor: Actor, target: UserTarget) =>
  !target.isAdmin && [...target.permissions].every((p) => actor.permissions.has(p));

/** user_modify_self covers the actor's own full name and email; everything else needs user_modify. */
export function canModifyUser(actor: Actor, target: UserTarget, fields: readonly UserField[]): boolean {
  if (actor.isAdmin) return true;
  // storage is the operators' to hand out; which CA may vouch for a user is theirs to say
  if (fields.includes('quota') || fields.includes('issuer_dn')) return false;
  if (actor.id === target.id && fields.every((f) => f === 'full_name' || f === 'email')) {
    return actor.permissions.has('user_modify_self') || actor.permissions.has('user_modify');
  }
  return actor.permissions.has('user_modify') && outranks(actor, target);
}

export const canDeleteUser = (actor: Actor, target: UserTarget) =>
  actor.isAdmin || (actor.permissions.has('user_delete') && outranks(actor, target));

// ---- groups ----

export const canCreateGroup = (actor: Actor) => has(actor, 'group_create');
export const canDeleteGroup = (actor: Actor, group: GroupTarget) =>
  actor.isAdmin || (group.name !== ADMINS_GROUP && actor.permissions.has('group_delete'));
export const canRenameGroup = (actor: Actor, group: GroupTarget) =>
  actor.isAdmin || (group.name !== ADMINS_GROUP && actor.permissions.has('group_modify'));

/**
 * Changing a group's members (not of `admins` or `users`, never oneself) is allowed only for groups that grant
 * nothing the actor lacks and that the actor belongs to: no self-escalation, no joining groups to read their shares.
 */
export function canChangeMembers(actor: Actor, group: GroupTarget, memberId?: number): boolean {
  if (actor.isAdmin) return true;
  if (group.name === ADMINS_GROUP || group.name === USERS_GROUP || memberId === actor.id) return false;
  if (!actor.permissions.has('group_modify_membership') || !actor.groups.has(group.name)) return false;
  return group.permissions.every((p) => actor.permissions.has(p));
}

/** A non-admin may grant or revoke only permissions they hold themselves, never on `admins`. */
export function canChangePermission(actor: Actor, group: GroupTarget, permission: Permission): boolean {
  if (actor.isAdmin) return true;
  if (group.name === ADMINS_GROUP || !actor.permissions.has('group_modify_permissions')) return false;
  return actor.permissions.has(permission);
}

// ---- images ----

/** Creating in one's own namespace needs image_create; in another user's, being an admin. */
export const canCreateImage = (actor: Actor, ownerId: number) =>
  actor.isAdmin || (ownerId === actor.id && actor.permissions.has('image_create'));

const isOwner = (actor: Actor, image: ImageTarget) => image.ownerId === actor.id;

/** Groups the actor shares with the image's owner, other than the default group everybody is in. */
function sharesGroupWithOwner(actor: Actor, image: ImageTarget): boolean {
  for (const g of image.ownerGroups) if (g !== USERS_GROUP && actor.groups.has(g)) return true;
  return false;
}

export function canReadImage(actor: Actor | null, image: ImageTarget): boolean {
  if (image.public) return true;
  if (!actor) return false;
  if (actor.isAdmin || isOwner(actor, image) || image.sharedWithUsers.has(actor.id)) return true;
  for (const g of image.sharedWithGroups) if (actor.groups.has(g)) return true;
  return false;
}

/** Owners may change their images; image_modify covers any image, image_modify_group those of fellow group members. */
export const canModifyImage = (actor: Actor, image: ImageTarget) =>
  actor.isAdmin ||
  isOwner(actor, image) ||
  actor.permissions.has('image_modify') ||
  (actor.permissions.has('image_modify_group') && sharesGroupWithOwner(actor, image));

export const canDeleteImage = (actor: Actor, image: ImageTarget) =>
  actor.isAdmin ||
  isOwner(actor, image) ||
  actor.permissions.has('image_delete') ||
  (actor.permissions.has('image_delete_group') && sharesGroupWithOwner(actor, image));

/** Giving an image away, or sharing it, is for its owner (and admins). */
export const canTransferImage = (actor: Actor, image: ImageTarget) => actor.isAdmin || isOwner(actor, image);
export const canShareImage = canTransferImage;

/** Sharing with a group also needs membership of it, so users cannot push images on groups they are not in. */
export const canShareImageWithGroup = (actor: Actor, image: ImageTarget, group: string) =>
  actor.isAdmin || (isOwner(actor, image) && actor.groups.has(group));

/** Share lists name other users and groups: for the owner and admins only. */
export const canSeeImageShares = (actor: Actor, image: Pick<ImageTarget, 'ownerId'>) =>
  actor.isAdmin || image.ownerId === actor.id;

// ---- transfers ----

/** The parties to an offer to give an image away. */
export interface TransferTarget {
  fromId: number;
  toId: number;
}

/** Offering an image to another user is for its owner (and admins, who may also give it away at once). */
export const canOfferImage = canTransferImage;
/** Giving an image away without the receiver's consent (a planted image could pass for theirs): admins only. */
export const canTransferDirectly = (actor: Actor) => actor.isAdmin;

/** An offer is seen by its giver, its receiver and admins; to anyone else it does not exist. */
export const canSeeTransfer = (actor: Actor, transfer: TransferTarget) =>
  actor.isAdmin || actor.id === transfer.fromId || actor.id === transfer.toId;

/** Only the receiver accepts or declines: that is the consent (an admin who wants it moved gives it directly). */
export const canAnswerTransfer = (actor: Actor, transfer: TransferTarget) => actor.id === transfer.toId;

/** The giver (or an admin) may withdraw an offer before it is answered. */
export const canCancelTransfer = (actor: Actor, transfer: TransferTarget) =>
  actor.isAdmin || actor.id === transfer.fromId;

// ---- endorsements and image lists ----

/** Endorsing for a group takes image_endorse and membership of it (as image_modify_group works), or admin. */
export const canEndorseFor = (actor: Actor, group: string) =>
  actor.isAdmin || (actor.permissions.has('image_endorse') && actor.groups.has(group));

/**
 * What a group may endorse: an image its members can see as members (public, shared with the group) or one
 * a member owns; a list must not publish what the group has no part in.
 */
export const isVisibleToGroup = (image: ImageTarget, group: string) =>
  image.public || image.sharedWithGroups.has(group) || image.ownerGroups.has(group);

/** An endorser endorses only what they can read themselves, and what is visible to the group. */
export const canEndorseImage = (actor: Actor, group: string, image: ImageTarget) =>
  canEndorseFor(actor, group) && canReadImage(actor, image) && isVisibleToGroup(image, group);

// ---- clouds ----

/** Registering a group's clouds and choosing what goes there: cloud_manage and membership, or admin. */
export const canManageClouds = (actor: Actor, group: string) =>
  actor.isAdmin || (actor.permissions.has('cloud_manage') && actor.groups.has(group));

/** A group's clouds and their state are its members' (and admins') to see. */
export const canSeeClouds = (actor: Actor, group: string) => actor.isAdmin || actor.groups.has(group);
