/** Image metadata in per-user namespaces: creation, visibility, edits, sharing. The bytes are another service. */
import {
  type CreateImageBody,
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
  canSeeImageShares,
  canShareImage,
  canShareImageWithGroup,
  canTransferDirectly,
  canTransferImage,
  type ImageTarget,
} from '../authz.ts';
import { type BlobStore, deleteBlobsQuietly } from '../blobs/store.ts';
import { endorsingGroups } from '../db/endorsements-dal.ts';
import { findGroupByName } from '../db/groups-dal.ts';
import type { ImageRow, ImageWithShares } from '../db/images-dal.ts';
import * as images from '../db/images-dal.ts';
import type { Db } from '../db/schema.ts';
import { findUserByName } from '../db/users-dal.ts';
import { blobKeysOfImages, lockImage } from '../db/versions-dal.ts';
import {
  checkedImageName,
  emptyToNull,
  guardService,
  nowIso,
  type PageOf,
  requireUserRow,
} from './common.ts';
import { createImageAccess, type ImageRef, type ImageView, imageView, visibilityOf } from './image-access.ts';
import { insertImageSlot } from './image-slots.ts';
import { moveImage, type QuotaCheck } from './transfers.ts';

export type { ImageRef, ImageView } from './image-access.ts';

const ISO_INSTANT =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:?\d{2}))?$/i;

/**
 * `expires`: a date (midnight UTC) or a date-time with its offset (`Z` or `±hh:mm`), strictly: no rolled-over
 * days, no local time, years 1970-9999; the same instant on both engines.
 */
export function parseExpiry(value: string | null | undefined): string | null | undefined {
  const text = emptyToNull(value);
  if (text === undefined || text === null) return text;
  const fail = (): never => {
    throw new RepomanError(
      'invalid_field',
      `expires must be a date (2027-01-31) or a date-time with its offset (2027-01-31T12:00:00Z); got '${text}'`,
      { details: { field: 'expires' } },
    );
  };
  const m = ISO_INSTANT.exec(text.trim()) ?? fail();
  const [year, month, day, hour, minute, second] = [1, 2, 3, 4, 5, 6].map((i) =>
    Number(m[i] ?? 0),
  ) as number[];
  const millis = Number(`0.${m[7] ?? '0'}`) * 1000;
  const offset = m[8] && m[8].toUpperCase() !== 'Z' ? m[8] : null;
  if ((year as number) < 1970 || (hour as number) > 23 || (minute as number) > 59 || (second as number) > 59)
    fail();
  const utc = Date.UTC(year as number, (month as number) - 1, day, hour, minute, second, millis);
  const check = new Date(utc);
  if (check.getUTCMonth() !== (month as number) - 1 || check.getUTCDate() !== day) fail();
  let shift = 0; // (the year is checked again after the offset: 9999-12-31T23:00-05:00 is in 10000)
  if (offset) {
    const [, sign, hh, mm] = /^([+-])(\d{2}):?(\d{2})$/.exec(offset) ?? fail();
    if (Number(hh) > 23 || Number(mm) > 59) fail();
    shift = (sign === '-' ? -1 : 1) * (Number(hh) * 60 + Number(mm)) * 60_000;
  }
  const instant = new Date(utc - shift);
  if (instant.getUTCFullYear() > 9999) fail();
  return instant.toISOString();
}

function editablePatch(body: ImageEditableFields): Partial<ImageRow> {
  const patch: Partial<ImageRow> = {};
  for (const field of ['description', 'os_variant', 'os_type', 'os_arch', 'hypervisor'] as const) {
    if (body[field] !== undefined) patch[field] = emptyToNull(body[field]) ?? null;
  }
  if (body.read_only !== undefined) patch.read_only = body.read_only;
  if (body.unauthenticated_access !== undefined) patch.unauthenticated_access = body.unauthenticated_access;
  const expires = parseExpiry(body.expires);
  if (expires !== undefined) patch.expires = expires;
  return patch;
}

export function createImageService(deps: {
  db: Db;
  /** Deletes a removed image's blobs. */
  store: Pick<BlobStore, 'delete'>;
  /** Images one namespace may hold (users.max_images); absent: no limit. */
  maxImagesPerUser?: number | undefined;
  /** Checked when an admin gives an image away: the receiver's quota must hold its bytes. */
  checkQuota: QuotaCheck;
}) {
  const { db, store, checkQuota } = deps;
  const maxImages = deps.maxImagesPerUser ?? Number.POSITIVE_INFINITY;

  const { find } = createImageAccess(db);

  /** Sites run what groups endorse: an endorsed image is not deleted (or replaced) under them. */
  async function refuseIfEndorsed(imageId: number, name: string) {
    const groups = await endorsingGroups(db, imageId);
    if (groups.length > 0)
      throw new RepomanError(
        'image_endorsed',
        `${name} is endorsed by ${groups.join(', ')}; withdraw the endorsements before deleting it`,
        { details: { groups } },
      );
  }

  async function viewById(actor: Actor, id: number): Promise<ImageView> {
    const row = await images.findImageWithAccessById(db, id);
    if (!row) throw new RepomanError('image_not_found', 'The image was deleted meanwhile');
    return views(actor, [row])[0] as ImageView;
  }

  /** Views of a page of images, with share lists for those who may see them (the owner and admins). */
  function views(actor: Actor | null, rows: ImageWithShares[]): ImageView[] {
    return rows.map((row) =>
      imageView(row, actor && canSeeImageShares(actor, { ownerId: row.owner_id }) ? row.shares : undefined),
    );
  }

  return guardService(
    {
      /** `owner/name` of an image by its id (for the audit log), or undefined if it is gone. */
      async nameOf(id: number): Promise<string | undefined> {
        const row = await images.findImageById(db, id);
        return row ? `${row.owner_name}/${row.name}` : undefined;
      },

      async create(actor: Actor, body: CreateImageBody): Promise<ImageView> {
        const name = checkedImageName(body.name);
        const ownerName = body.owner ?? body.user_name ?? actor.name;
        const owner =
          ownerName === actor.name
            ? { id: actor.id, name: actor.name }
            : await requireUserRow(db, ownerName, 'owner');
        if (!canCreateImage(actor, owner.id)) {
          throw new RepomanError(
            'forbidden',
            owner.id === actor.id
              ? 'Creating images needs the image_create permission'
              : `Only admins may create images in another user's namespace ('${owner.name}')`,
          );
        }
        const id = await db
          .transaction()
          .execute((trx) => insertImageSlot(trx, owner, name, editablePatch(body), maxImages, nowIso()));
        return viewById(actor, id);
      },

      /** The image with this id as the actor sees it (after it changed hands, under its new name). */
      async viewOf(actor: Actor, id: number): Promise<ImageView> {
        return viewById(actor, id);
      },

      async get(actor: Actor | null, ref: ImageRef): Promise<ImageView> {
        // whoever may change or delete an image may also see it
        const mayChange = (a: Actor, t: ImageTarget) => canModifyImage(a, t) || canDeleteImage(a, t);
        return (await find(actor, ref, mayChange)).view;
      },

      async modify(actor: Actor, ref: ImageRef, body: ModifyImageBody): Promise<ImageView> {
        const { row, target } = await find(actor, ref, canModifyImage);
        if (!canModifyImage(actor, target))
          throw new RepomanError('forbidden', `You may not modify ${ref.owner}/${ref.name}`);
        const patch = editablePatch(body);
        // Publishing (or unpublishing) an image is the owner's call, like sharing it.
        if (
          patch.unauthenticated_access !== undefined &&
          Boolean(patch.unauthenticated_access) !== Boolean(row.unauthenticated_access) &&
          !canShareImage(actor, target)
        ) {
          throw new RepomanError(
            'forbidden',
            'Only the owner or an admin may make an image public or private',
          );
        }
        let newOwner: { id: number; name: string } | undefined;
        if (body.owner !== undefined && body.owner !== row.owner_name) {
          if (!canTransferImage(actor, target)) {
            throw new RepomanError(
              'forbidden',
              'Only the owner or an admin may give an image to another user',
            );
          }
          // Without the receiver's consent an image could be planted in their namespace (and pass their
          // quota): only admins give directly; owners make an offer.
          if (!canTransferDirectly(actor)) {
            throw new RepomanError(
              'transfer_offer_required',
              `Giving ${ref.owner}/${ref.name} away is an offer ${body.owner} accepts: POST /api/images/${ref.owner}/${ref.name}/transfer with {"to": "${body.owner}"}`,
              { details: { to: body.owner } },
            );
          }
          newOwner = await requireUserRow(db, body.owner, 'owner');
        }
        if (body.name !== undefined && body.name !== row.name) patch.name = checkedImageName(body.name);
        if (newOwner) {
          const to = newOwner;
          const { name, ...rest } = patch;
          const moved = await db.transaction().execute((trx) =>
            moveImage(trx, {
              imageId: row.id,
              fromId: row.owner_id,
              to,
              name,
              patch: rest,
              checkQuota,
              maxImages,
            }),
          );
          if (!moved)
            throw new RepomanError('image_not_found', `No image '${ref.name}' in namespace '${ref.owner}'`);
          return viewById(actor, row.id);
        }
        // A rename stays in the image's own namespace, which whoever may rename the image can see whole.
        if (patch.name !== undefined && (await images.findImage(db, row.owner_name, patch.name))) {
          throw new RepomanError(
            'image_exists',
            `An image '${patch.name}' already exists in namespace '${row.owner_name}'`,
          );
        }
        if (Object.keys(patch).length > 0) {
          patch.modified = nowIso();
          // As if one request came after the other: a change to an image renamed (or given away) meanwhile
          // finds no image of the name it asked for.
          if (!(await images.updateImageIfNamed(db, row.id, row, patch)))
            throw new RepomanError('image_not_found', `No image '${ref.name}' in namespace '${ref.owner}'`);
        }
        return viewById(actor, row.id);
      },

      /** Deletes an image; with `dryRun`, makes every check a deletion makes and stops there. */
      async remove(actor: Actor, ref: ImageRef, options: { dryRun?: boolean } = {}): Promise<void> {
        const { row, target } = await find(actor, ref, canDeleteImage);
        if (!canDeleteImage(actor, target))
          throw new RepomanError('forbidden', `You may not delete ${ref.owner}/${ref.name}`);
        if (row.read_only) {
          throw new RepomanError(
            'image_read_only',
            `${ref.owner}/${ref.name} is read-only; clear read_only before deleting it`,
          );
        }
        await refuseIfEndorsed(row.id, `${ref.owner}/${ref.name}`);
        if (options.dryRun) return;
        const blobs = await db.transaction().execute(async (trx) => {
          await lockImage(trx, row.id); // an upload finishing now either lands before this or finds no image
          const keys = await blobKeysOfImages(trx, [row.id]);
          await images.deleteImage(trx, row.id);
          return keys;
        });
        // After the rows: a crash in between leaves orphan blobs (found by fsck), never an image without bytes.
        await deleteBlobsQuietly(store, blobs);
      },

      /**
       * Renames an image within its namespace (WebDAV's MOVE). An image that already has the new name is replaced,
       * deleted with its versions and shares, only with `overwrite` and only by whoever may delete it, in the same
       * transaction as the rename: both happen or neither. The uuid of the image it replaced, if any.
       */
      async rename(
        actor: Actor,
        ref: ImageRef,
        newName: string,
        options: { overwrite: boolean },
      ): Promise<{ replaced: string | null }> {
        const { row, target } = await find(actor, ref, canModifyImage);
        if (!canModifyImage(actor, target))
          throw new RepomanError('forbidden', `You may not rename ${ref.owner}/${ref.name}`);
        const name = checkedImageName(newName);
        if (name === row.name) throw new RepomanError('forbidden', 'The new name of an image is its name');
        const there = await find(actor, { owner: row.owner_name, name }, canDeleteImage).catch(
          (error: unknown) => {
            if (error instanceof RepomanError && error.code === 'image_not_found') return null;
            throw error;
          },
        );
        if (there) {
          if (!options.overwrite)
            throw new RepomanError(
              'destination_exists',
              `${row.owner_name}/${name} exists, and the request said not to replace it`,
            );
          if (!canDeleteImage(actor, there.target))
            throw new RepomanError('forbidden', `You may not replace ${row.owner_name}/${name}`);
          if (there.row.read_only)
            throw new RepomanError(
              'image_read_only',
              `${row.owner_name}/${name} is read-only; clear read_only before replacing it`,
            );
          await refuseIfEndorsed(there.row.id, `${row.owner_name}/${name}`);
        }
        const blobs = await db.transaction().execute(async (trx) => {
          let keys: string[] = [];
          if (there) {
            await lockImage(trx, there.row.id);
            keys = await blobKeysOfImages(trx, [there.row.id]);
            await images.deleteImage(trx, there.row.id);
          }
          // As if one request came after the other: renamed or given away meanwhile, it is not found.
          if (!(await images.updateImageIfNamed(trx, row.id, row, { name, modified: nowIso() })))
            throw new RepomanError('image_not_found', `No image '${ref.name}' in namespace '${ref.owner}'`);
          return keys;
        });
        await deleteBlobsQuietly(store, blobs);
        return { replaced: there ? there.row.uuid : null };
      },

      async share(
        actor: Actor,
        ref: ImageRef,
        kind: 'user' | 'group',
        name: string,
        on: boolean,
      ): Promise<ImageView> {
        const { row, target } = await find(actor, ref);
        if (kind === 'user') {
          if (!canShareImage(actor, target))
            throw new RepomanError('forbidden', 'Only the owner or an admin may share an image');
          const user = await requireUserRow(db, name);
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
        return viewById(actor, row.id);
      },

      /** The images the caller may see; without a caller (no certificate), the public ones. */
      async list(actor: Actor | null, query: ImageListQuery): Promise<PageOf<ImageView>> {
        const ownerId = query.owner === undefined ? undefined : (await findUserByName(db, query.owner))?.id;
        if (query.owner !== undefined && ownerId === undefined) return { items: [], total: 0 };
        if (query.shared && !actor) return { items: [], total: 0 };
        const { rows, total } = await images.listImages(db, {
          visibleTo: visibilityOf(actor),
          ...(ownerId === undefined ? {} : { ownerId }),
          ...(query.shared && actor ? { sharedWith: actor.id } : {}),
          ...(query.public === undefined ? {} : { public: query.public }),
          ...(query.name_prefix ? { namePrefix: query.name_prefix } : {}),
          ...(query.os_variant === undefined ? {} : { os_variant: query.os_variant }),
          ...(query.os_type === undefined ? {} : { os_type: query.os_type }),
          ...(query.os_arch === undefined ? {} : { os_arch: query.os_arch }),
          ...(query.hypervisor === undefined ? {} : { hypervisor: query.hypervisor }),
          ...(query.disk_format === undefined ? {} : { disk_format: query.disk_format }),
          sort: query.sort ?? 'name',
          order: query.order ?? 'asc',
          limit: query.limit,
          offset: query.offset,
        });
        return { items: views(actor, rows), total };
      },

      /** Images shared with a group (what `/api/groups/{g}/shared` shows): for its members and admins. */
      async sharedWithGroup(
        actor: Actor,
        groupName: string,
        page: { limit: number; offset: number },
      ): Promise<PageOf<ImageView>> {
        const group = await findGroupByName(db, groupName);
        if (!group) throw new RepomanError('group_not_found', `No group '${groupName}'`);
        if (!actor.isAdmin && !actor.groups.has(group.name))
          throw new RepomanError(
            'forbidden',
            `Only members of ${group.name} and admins may see what is shared with it`,
          );
        const { rows, total } = await images.listImages(db, {
          visibleTo: null,
          sharedWithGroup: group.id,
          sort: 'name',
          order: 'asc',
          ...page,
        });
        return { items: views(actor, rows), total };
      },

      /** Images shared with a user directly or through their groups (what `/api/users/{u}/shared` shows). */
      async sharedWith(
        actor: Actor,
        userName: string,
        page: { limit: number; offset: number },
      ): Promise<PageOf<ImageView>> {
        const user = await requireUserRow(db, userName);
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
        return { items: views(actor, rows), total };
      },
    },
    () => 'image_exists',
  );
}

export type ImageService = ReturnType<typeof createImageService>;
