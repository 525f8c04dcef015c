/**
 * Endorsements: a group (a VO) vouches for one version of an image, until a date, for the sites that subscribe
 * to its image list (services/image-lists.ts). An endorsement names a version, so a new upload changes nothing
 * sites run until an endorser endorses it; the version is kept meanwhile (never pruned, and the image not
 * deleted under it). One endorsement per image and group: endorsing again replaces it.
 */

import { randomBytes } from 'node:crypto';
import { type EndorseBody, type EndorsementListQuery, RepomanError } from '@repoman/core';
import { type Actor, canEndorseFor, canEndorseImage, canReadImage, isVisibleToGroup } from '../authz.ts';
import type { HashingPool } from '../blobs/hashing.ts';
import type { BlobStore } from '../blobs/store.ts';
import {
  deleteEndorsement,
  deleteSubscriber,
  type EndorsementDetail,
  findEndorsement,
  insertSubscriber,
  listEndorsements,
  listSubscribers,
  setSubscribersOnly,
  subscribersOnly,
  upsertEndorsement,
} from '../db/endorsements-dal.ts';
import { findGroupByName, type GroupRow } from '../db/groups-dal.ts';
import type { Db } from '../db/schema.ts';
import { findVersion } from '../db/versions-dal.ts';
import { guardService, nowIso, type PageOf } from './common.ts';
import { createImageAccess, type ImageRef } from './image-access.ts';
import { tokenDigest } from './image-lists.ts';
import { parseExpiry } from './images.ts';
import { createStoredDigests } from './versions/stored-digests.ts';

/** An endorsement as the API shows it, but its URLs (which only HTTP knows). */
export interface EndorsementView {
  group: string;
  owner: string;
  name: string;
  version: number;
  size: number;
  sha512: string;
  endorser: string;
  comment: string | null;
  created: string;
  expires: string;
  expired: boolean;
}

export function endorsementView(row: EndorsementDetail, now = nowIso()): EndorsementView {
  return {
    group: row.group_name,
    owner: row.owner_name,
    name: row.image_name,
    version: row.version,
    size: row.size,
    // Endorsing records it: a version without it is never endorsed.
    sha512: row.sha512 ?? '',
    endorser: row.endorser_name,
    comment: row.comment,
    created: row.created,
    expires: row.expires,
    expired: row.expires <= now,
  };
}

/** A subscriber of a group's lists, as its endorsers see it (the token is shown once, when made). */
export interface SubscriberView {
  id: string;
  group: string;
  name: string;
  created_by: string | null;
  created: string;
}

/** `owner/name`, as an endorsement's body names its image. */
export function imageRefOf(text: string): ImageRef {
  const parts = text.split('/');
  if (parts.length !== 2 || !parts[0] || !parts[1])
    throw new RepomanError('invalid_field', `image must be owner/name; got '${text}'`, {
      details: { field: 'image' },
    });
  return { owner: parts[0], name: parts[1] };
}

export function createEndorsementService(deps: { db: Db; store: BlobStore; hashing: HashingPool }) {
  const { db } = deps;
  const access = createImageAccess(db);
  // An endorsed version must have its SHA-512 (`sl:checksum:sha512`): computed when endorsed if the upload
  // did not (the digest configured off then), whatever the server computes for downloads.
  const digestsOf = createStoredDigests({
    db,
    store: deps.store,
    hashing: deps.hashing,
    computes: ['sha512'],
  });

  async function requireGroup(name: string): Promise<GroupRow> {
    const group = await findGroupByName(db, name);
    if (!group) throw new RepomanError('group_not_found', `No group '${name}'`);
    return group;
  }

  function mayEndorse(actor: Actor, group: GroupRow) {
    if (!canEndorseFor(actor, group.name))
      throw new RepomanError(
        'forbidden',
        `You may not endorse images for ${group.name}: that takes the image_endorse permission and membership of the group`,
      );
  }

  return guardService({
    /**
     * A new subscriber of the group's lists (a site), by its endorsers: the token is shown once, here; the
     * server keeps its SHA-256.
     */
    async addSubscriber(
      actor: Actor,
      groupName: string,
      name: string,
    ): Promise<SubscriberView & { token: string }> {
      const group = await requireGroup(groupName);
      mayEndorse(actor, group);
      const token = randomBytes(24).toString('base64url');
      const row = {
        id: crypto.randomUUID(),
        group_id: group.id,
        name: name.trim(),
        token_sha256: tokenDigest(token),
        created_by: actor.id,
        created: nowIso(),
      };
      if (!row.name)
        throw new RepomanError('invalid_field', 'name must not be empty', { details: { field: 'name' } });
      await insertSubscriber(db, row);
      return {
        id: row.id,
        group: group.name,
        name: row.name,
        created_by: actor.name,
        created: row.created,
        token,
      };
    },

    /** Whether the group's lists are for its subscribers only (anyone with a certificate may ask). */
    async listAccess(
      _actor: Actor,
      groupName: string,
    ): Promise<{ group: string; subscribers_only: boolean }> {
      const group = await requireGroup(groupName);
      return { group: group.name, subscribers_only: (await subscribersOnly(db, [group.id])).has(group.id) };
    },

    /** Makes the group's lists for its subscribers (and members) only, or not, by its endorsers. */
    async setListAccess(
      actor: Actor,
      groupName: string,
      on: boolean,
    ): Promise<{ group: string; subscribers_only: boolean }> {
      const group = await requireGroup(groupName);
      mayEndorse(actor, group);
      await setSubscribersOnly(db, group.id, on);
      return { group: group.name, subscribers_only: on };
    },

    /** The group's subscribers (never their tokens), for its endorsers and admins. */
    async subscribers(actor: Actor, groupName: string): Promise<SubscriberView[]> {
      const group = await requireGroup(groupName);
      mayEndorse(actor, group);
      return (await listSubscribers(db, group.id)).map((row) => ({
        id: row.id,
        group: group.name,
        name: row.name,
        created_by: row.created_by_name,
        created: row.created,
      }));
    },

    /** Revokes a subscriber's token: its next fetch of a list holding private images is refused. */
    async removeSubscriber(actor: Actor, groupName: string, id: string): Promise<void> {
      const group = await requireGroup(groupName);
      mayEndorse(actor, group);
      if (!(await deleteSubscriber(db, group.id, id)))
        throw new RepomanError('subscriber_not_found', `${group.name} has no subscriber '${id}'`);
    },

    /** Endorses a version (the image's current one by default) for the group, replacing its endorsement. */
    async endorse(actor: Actor, groupName: string, body: EndorseBody): Promise<EndorsementView> {
      const group = await requireGroup(groupName);
      mayEndorse(actor, group);
      const ref = imageRefOf(body.image);
      const { row, target } = await access.find(actor, ref);
      if (!isVisibleToGroup(target, group.name))
        throw new RepomanError(
          'forbidden',
          `${ref.owner}/${ref.name} is not visible to ${group.name}: make it public, share it with the group, or ask a member to own it`,
        );
      if (!canEndorseImage(actor, group.name, target))
        throw new RepomanError('forbidden', `You may not endorse ${ref.owner}/${ref.name}`);
      const number = body.version ?? row.version;
      if (number === 0)
        throw new RepomanError('image_not_uploaded', `${ref.owner}/${ref.name} has no bytes to endorse yet`);
      const version = await findVersion(db, row.id, number);
      if (!version)
        throw new RepomanError('version_not_found', `${ref.owner}/${ref.name} has no version ${number}`);
      const expires = parseExpiry(body.expires);
      if (!expires || expires <= nowIso())
        throw new RepomanError('invalid_field', `expires must be in the future; got '${body.expires}'`, {
          details: { field: 'expires' },
        });
      if (!version.sha512) {
        const digests = await digestsOf({ ...version, table: 'image_versions' }, ['sha512']);
        if (!digests.sha512)
          throw new RepomanError(
            'conflict',
            `The SHA-512 of ${ref.owner}/${ref.name} version ${number} cannot be computed: its bytes do not match their SHA-256 (run fsck --verify)`,
          );
      }
      await upsertEndorsement(db, {
        id: crypto.randomUUID(),
        group_id: group.id,
        image_id: row.id,
        version: number,
        endorser_id: actor.id,
        comment: body.comment?.trim() || null,
        created: nowIso(),
        expires,
      });
      const made = await findEndorsement(db, group.id, row.id);
      // Withdrawn, or the version pruned, in between: as if this request had come first.
      if (!made)
        throw new RepomanError('version_not_found', `${ref.owner}/${ref.name} version ${number} is gone`);
      return endorsementView(made);
    },

    /** Withdraws the group's endorsement of the image: its lists drop it; the image itself stays. */
    async withdraw(actor: Actor, groupName: string, ref: ImageRef): Promise<void> {
      const group = await requireGroup(groupName);
      mayEndorse(actor, group);
      const { row } = await access.find(actor, ref);
      if (!(await deleteEndorsement(db, group.id, row.id)))
        throw new RepomanError(
          'endorsement_not_found',
          `${group.name} does not endorse ${ref.owner}/${ref.name}`,
        );
    },

    async get(actor: Actor, groupName: string, ref: ImageRef): Promise<EndorsementView> {
      const group = await requireGroup(groupName);
      const { row } = await access.find(actor, ref);
      const found = await findEndorsement(db, group.id, row.id);
      if (!found)
        throw new RepomanError(
          'endorsement_not_found',
          `${group.name} does not endorse ${ref.owner}/${ref.name}`,
        );
      return endorsementView(found);
    },

    /**
     * The group's endorsements (unexpired ones unless `all`): members and admins see them all, anyone else
     * those of images they can read (the group's list shows the same to its subscribers).
     */
    async list(
      actor: Actor,
      groupName: string,
      query: Required<Pick<EndorsementListQuery, 'limit' | 'offset'>> & EndorsementListQuery,
    ): Promise<PageOf<EndorsementView>> {
      const group = await requireGroup(groupName);
      const now = nowIso();
      const filter = { groupId: group.id, ...(query.all ? {} : { activeAt: now }) };
      if (actor.isAdmin || actor.groups.has(group.name)) {
        const { items, total } = await listEndorsements(db, filter, query);
        return { items: items.map((row) => endorsementView(row, now)), total };
      }
      const { items } = await listEndorsements(db, filter);
      const visible: EndorsementDetail[] = [];
      for (const row of items) {
        const found = await access
          .find(actor, { owner: row.owner_name, name: row.image_name })
          .catch(() => null);
        if (found && canReadImage(actor, found.target)) visible.push(row);
      }
      return {
        items: visible
          .slice(query.offset, query.offset + query.limit)
          .map((row) => endorsementView(row, now)),
        total: visible.length,
      };
    },
  });
}

export type EndorsementService = ReturnType<typeof createEndorsementService>;
