/** Image metadata in per-user namespaces: creation, visibility, edits, sharing. The bytes are another service. */
import { randomUUID } from 'node:crypto';
import {
  type CreateImageBody,
  checkImageName,
  type ImageEditableFields,
  type ImageListQuery,
  type ModifyImageBody,
  RepomanError,
} from '@repoman/core';
import {
  type Actor,
  canCreateImage,
  canDeleteImage,
  canModifyImage,
  canReadImage,
  canSeeImageShares,
  canShareImage,
  canShareImageWithGroup,
  canTransferImage,
  type ImageTarget,
} from '../authz.ts';
import type { Db } from '../db/connect.ts';
import { findGroupByName } from '../db/groups-dal.ts';
import type { ImageRow, ImageWithOwner } from '../db/images-dal.ts';
import * as images from '../db/images-dal.ts';
import { findUserByName, groupsOfUsers } from '../db/users-dal.ts';
import { emptyToNull, guardService, nowIso, type PageOf } from './common.ts';

export interface ImageView {
  row: ImageWithOwner;
  expired: boolean;
  /** Present for the owner and admins. */
  shares?: { users: string[]; groups: string[] };
}

export interface ImageRef {
  owner: string;
  name: string;
}

function checkedImageName(name: string): string {
  const problem = checkImageName(name);
  if (problem === 'reserved')
    throw new RepomanError('invalid_name', `'${name}' is a reserved word and cannot name an image`);
  if (problem) {
    throw new RepomanError(
      'invalid_name',
      `An image name has 1-128 letters, digits, '.', '_' or '-' and does not start with '.' (got '${name}')`,
    );
  }
  return name;
}

function checkedExpiry(value: string | null | undefined): string | null | undefined {
  const text = emptyToNull(value);
  if (text === undefined || text === null) return text;
  const date = new Date(text);
  if (Number.isNaN(date.getTime()) || !/^\d{4}-\d{2}-\d{2}/.test(text)) {
    throw new RepomanError('invalid_field', `expires must be an ISO 8601 date or date-time (got '${text}')`);
  }
  return date.toISOString();
}

function editablePatch(body: ImageEditableFields): Partial<ImageRow> {
  const patch: Partial<ImageRow> = {};
  for (const field of ['description', 'os_variant', 'os_type', 'os_arch', 'hypervisor'] as const) {
    if (body[field] !== undefined) patch[field] = emptyToNull(body[field]) ?? null;
  }
  if (body.read_only !== undefined) patch.read_only = body.read_only;
  if (body.unauthenticated_access !== undefined) patch.unauthenticated_access = body.unauthenticated_access;
  const expires = checkedExpiry(body.expires);
  if (expires !== undefined) patch.expires = expires;
  return patch;
}

export const isExpired = (row: Pick<ImageRow, 'expires'>, now = new Date()) =>
  row.expires !== null && new Date(row.expires).getTime() <= now.getTime();

export function createImageService(deps: { db: Db }) {
  const { db } = deps;

  const notFound = (ref: ImageRef) =>
    new RepomanError('image_not_found', `No image '${ref.name}' in namespace '${ref.owner}'`);

  async function targetOf(row: ImageWithOwner): Promise<ImageTarget> {
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
    };
  }

  /** The image, if the actor may see it; another user's private image is indistinguishable from a missing one. */
  async function findVisible(actor: Actor | null, ref: ImageRef) {
    const row = await images.findImage(db, ref.owner, ref.name);
    if (!row) throw notFound(ref);
    const target = await targetOf(row);
    if (!canReadImage(actor, target)) throw notFound(ref);
    return { row, target };
  }

  async function view(actor: Actor | null, row: ImageWithOwner, target?: ImageTarget): Promise<ImageView> {
    const t = target ?? (await targetOf(row));
    const result: ImageView = { row, expired: isExpired(row) };
    if (actor && canSeeImageShares(actor, t)) {
      const shares = await images.sharesOfImage(db, row.id);
      result.shares = { users: shares.users.map((u) => u.name), groups: shares.groups.map((g) => g.name) };
    }
    return result;
  }

  async function reload(actor: Actor, id: number): Promise<ImageView> {
    const row = await images.findImageById(db, id);
    if (!row) throw new RepomanError('image_not_found');
    return view(actor, row);
  }

  async function requireUser(name: string, field?: string) {
    const user = await findUserByName(db, name);
    if (!user) {
      throw field
        ? new RepomanError('invalid_field', `No user '${name}' (in ${field})`)
        : new RepomanError('user_not_found', `No user '${name}'`);
    }
    return user;
  }

  return guardService(
    {
      async create(actor: Actor, body: CreateImageBody): Promise<ImageView> {
        const name = checkedImageName(body.name);
        const ownerName = body.owner ?? body.user_name ?? actor.name;
        const owner =
          ownerName === actor.name
            ? { id: actor.id, name: actor.name }
            : await requireUser(ownerName, 'owner');
        if (!canCreateImage(actor, owner.id)) {
          throw new RepomanError(
            'forbidden',
            owner.id === actor.id
              ? 'Creating images needs the image_create permission'
              : `Only admins may create images in another user's namespace ('${owner.name}')`,
          );
        }
        const now = nowIso();
        const id = await db.transaction().execute(async (trx) => {
          if (await images.findImage(trx, owner.name, name)) {
            throw new RepomanError(
              'image_exists',
              `An image '${name}' already exists in namespace '${owner.name}'`,
            );
          }
          return images.insertImage(trx, {
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
            ...editablePatch(body),
          });
        });
        return reload(actor, id);
      },

      async get(actor: Actor | null, ref: ImageRef): Promise<ImageView> {
        const { row, target } = await findVisible(actor, ref);
        return view(actor, row, target);
      },

      async modify(actor: Actor, ref: ImageRef, body: ModifyImageBody): Promise<ImageView> {
        const { row, target } = await findVisible(actor, ref);
        if (!canModifyImage(actor, target))
          throw new RepomanError('forbidden', `You may not modify ${ref.owner}/${ref.name}`);
        const patch = editablePatch(body);
        let ownerName = row.owner_name;
        if (body.owner !== undefined && body.owner !== row.owner_name) {
          if (!canTransferImage(actor, target)) {
            throw new RepomanError(
              'forbidden',
              'Only the owner or an admin may give an image to another user',
            );
          }
          const owner = await requireUser(body.owner, 'owner');
          patch.owner_id = owner.id;
          ownerName = owner.name;
        }
        if (body.name !== undefined && body.name !== row.name) patch.name = checkedImageName(body.name);
        if (patch.owner_id !== undefined || patch.name !== undefined) {
          const newName = patch.name ?? row.name;
          if (await images.findImage(db, ownerName, newName)) {
            throw new RepomanError(
              'image_exists',
              `An image '${newName}' already exists in namespace '${ownerName}'`,
            );
          }
        }
        if (Object.keys(patch).length > 0) {
          patch.modified = nowIso();
          await images.updateImage(db, row.id, patch);
        }
        return reload(actor, row.id);
      },

      async remove(actor: Actor, ref: ImageRef): Promise<void> {
        const { row, target } = await findVisible(actor, ref);
        if (!canDeleteImage(actor, target))
          throw new RepomanError('forbidden', `You may not delete ${ref.owner}/${ref.name}`);
        if (row.read_only) {
          throw new RepomanError(
            'image_read_only',
            `${ref.owner}/${ref.name} is read-only; clear read_only before deleting it`,
          );
        }
        await images.deleteImage(db, row.id);
      },

      async share(
        actor: Actor,
        ref: ImageRef,
        kind: 'user' | 'group',
        name: string,
        on: boolean,
      ): Promise<ImageView> {
        const { row, target } = await findVisible(actor, ref);
        if (kind === 'user') {
          if (!canShareImage(actor, target))
            throw new RepomanError('forbidden', 'Only the owner or an admin may share an image');
          const user = await requireUser(name);
          await (on ? images.addUserShare : images.removeUserShare)(db, row.id, user.id);
        } else {
          const group = await findGroupByName(db, name);
          if (!group) throw new RepomanError('group_not_found', `No group '${name}'`);
          const allowed = on ? canShareImageWithGroup(actor, target, name) : canShareImage(actor, target);
          if (!allowed) {
            throw new RepomanError(
              'forbidden',
              on
                ? `You may share only with groups you belong to ('${name}')`
                : 'Only the owner or an admin may unshare',
            );
          }
          await (on ? images.addGroupShare : images.removeGroupShare)(db, row.id, group.id);
        }
        return reload(actor, row.id);
      },

      async list(actor: Actor, query: ImageListQuery): Promise<PageOf<ImageView>> {
        const ownerId = query.owner === undefined ? undefined : (await findUserByName(db, query.owner))?.id;
        if (query.owner !== undefined && ownerId === undefined) return { items: [], total: 0 };
        const { rows, total } = await images.listImages(db, {
          visibleTo: actor.isAdmin ? null : { userId: actor.id },
          ...(ownerId === undefined ? {} : { ownerId }),
          ...(query.shared ? { sharedWith: actor.id } : {}),
          ...(query.public === undefined ? {} : { public: query.public }),
          ...(query.name_prefix ? { namePrefix: query.name_prefix } : {}),
          ...(query.os_variant === undefined ? {} : { os_variant: query.os_variant }),
          ...(query.os_type === undefined ? {} : { os_type: query.os_type }),
          ...(query.os_arch === undefined ? {} : { os_arch: query.os_arch }),
          ...(query.hypervisor === undefined ? {} : { hypervisor: query.hypervisor }),
          sort: query.sort ?? 'name',
          order: query.order ?? 'asc',
          limit: query.limit,
          offset: query.offset,
        });
        return { items: await Promise.all(rows.map((row) => view(actor, row))), total };
      },

      /** Images shared with a user directly or through their groups (what `/api/users/{u}/shared` shows). */
      async sharedWith(
        actor: Actor,
        userName: string,
        page: { limit: number; offset: number },
      ): Promise<PageOf<ImageView>> {
        const user = await requireUser(userName);
        if (!actor.isAdmin && actor.id !== user.id) {
          throw new RepomanError('forbidden', 'Only the user and admins may see what is shared with a user');
        }
        const { rows, total } = await images.listImages(db, {
          visibleTo: null,
          sharedWith: user.id,
          sort: 'name',
          order: 'asc',
          ...page,
        });
        return { items: await Promise.all(rows.map((row) => view(actor, row))), total };
      },
    },
    'image_exists',
  );
}

export type ImageService = ReturnType<typeof createImageService>;
