/**
 * Giving an image away: its owner offers it to another user, who accepts (the image moves into their
 * namespace, if it fits their quota and no image of theirs has its name) or declines; the giver may cancel,
 * and an offer nobody answers expires. Admins may give an image away at once.
 *
 * Nothing here looks into the receiver's namespace before they accept: whether they have an image of that
 * name is theirs to know, not the giver's (an offer of `x` to bob is made whether or not bob has a private
 * `x`). Every change of owner goes through `moveImage`, in one transaction, with the locks taken in one
 * order everywhere (the image, then its offers, then the receiver), so that concurrent accepts, uploads and
 * deletions on any number of servers see each other whole.
 */
import { randomUUID } from 'node:crypto';
import {
  type AcceptTransferBody,
  RepomanError,
  type Transfer,
  type TransferBody,
  type TransferListQuery,
} from '@repoman/core';
import {
  type Actor,
  canAnswerTransfer,
  canCancelTransfer,
  canOfferImage,
  canSeeTransfer,
  canTransferDirectly,
  type TransferTarget,
} from '../authz.ts';
import type { ImageRow } from '../db/images-dal.ts';
import * as images from '../db/images-dal.ts';
import { imagesOfOwner, lockUsers } from '../db/quota-dal.ts';
import type { Db } from '../db/schema.ts';
import {
  bytesOfImages,
  deleteTransfersExpiredBefore,
  deleteTransfersOfImage,
  findTransfer,
  listTransfers,
  replaceTransfer,
  type TransferWithNames,
  takeTransfer,
} from '../db/transfers-dal.ts';
import { lockImage } from '../db/versions-dal.ts';
import { checkedImageName, guardService, nowIso, type PageOf, requireUserRow } from './common.ts';
import { createImageAccess, type ImageRef, shareNames } from './image-access.ts';
import { tooManyImages } from './image-slots.ts';

/** How long an offer waits for its answer. */
export interface TransferPolicy {
  offerExpiryMs: number;
}

/** The quota check of the bytes service: `incoming` more bytes must fit beside what the user stores. */
export type QuotaCheck = (userId: number, incoming: number, q: Db) => Promise<void>;

/** How long an expired offer still answers 410 (instead of 404) before it is deleted. */
const EXPIRED_KEPT_MS = 7 * 24 * 3600 * 1000;

/** An offer as its parties see it: the API's fields but its URLs, with the image as it is now. */
export interface TransferView extends Omit<Transfer, 'url' | 'image' | 'image_url'> {
  image: ImageRef;
}

/** Who gives which image to whom: what an answered offer leaves to say. */
export type TransferParties = Pick<TransferView, 'id' | 'image' | 'from' | 'to'>;

const partiesNamed = (row: TransferWithNames): TransferParties => ({
  id: row.id,
  image: { owner: row.owner_name, name: row.image_name },
  from: row.from_name,
  to: row.to_name,
});

const partiesOf = (row: { from_id: number; to_id: number }): TransferTarget => ({
  fromId: row.from_id,
  toId: row.to_id,
});
const isExpired = (row: { expires: string }, now = nowIso()) => row.expires <= now;

/**
 * Moves an image into `to`'s namespace (under `name`, or its own), with `patch`'s other changes, inside `trx`;
 * false if it is no longer `fromId`'s (given away or deleted meanwhile). Refuses a name the receiver already
 * has (409 image_exists: their own namespace, so naming it tells nobody anything new) and bytes their quota
 * cannot hold (507 quota_exceeded). Pending offers of the image go: they were the old owner's.
 */
export async function moveImage(
  trx: Db,
  move: {
    imageId: number;
    fromId: number;
    to: { id: number; name: string };
    name?: string | undefined;
    patch?: Partial<ImageRow>;
    checkQuota: QuotaCheck;
    /** Images one namespace may hold (users.max_images). */
    maxImages?: number | undefined;
  },
): Promise<boolean> {
  await lockImage(trx, move.imageId);
  const image = await images.findImageById(trx, move.imageId);
  if (!image || image.owner_id !== move.fromId) return false;
  await deleteTransfersOfImage(trx, image.id);
  await lockUsers(trx, [move.to.id]);
  const name = move.name ?? image.name;
  if (await images.findImage(trx, move.to.name, name)) {
    throw new RepomanError(
      'image_exists',
      `An image '${name}' already exists in namespace '${move.to.name}'`,
      {
        details: {
          name,
        },
      },
    );
  }
  const held = await imagesOfOwner(trx, move.to.id);
  const limit = move.maxImages ?? Number.POSITIVE_INFINITY;
  if (held >= limit) throw tooManyImages(move.to.name, held, limit);
  const size = (await bytesOfImages(trx, [image.id])).get(image.id) ?? 0;
  await move.checkQuota(move.to.id, size, trx);
  await images.updateImage(trx, image.id, {
    ...move.patch,
    owner_id: move.to.id,
    name,
    modified: nowIso(),
  });
  return true;
}

export function createTransferService(deps: {
  db: Db;
  checkQuota: QuotaCheck;
  policy: TransferPolicy;
  maxImagesPerUser?: number | undefined;
}) {
  const { db, checkQuota, policy } = deps;
  const maxImages = deps.maxImagesPerUser;
  const { find } = createImageAccess(db);

  const notFound = (id: string) => new RepomanError('transfer_not_found', `No transfer offer '${id}'`);
  const expired = (row: TransferWithNames) =>
    new RepomanError(
      'transfer_expired',
      `The offer of ${row.owner_name}/${row.image_name} to ${row.to_name} expired at ${row.expires}; ${row.from_name} may offer it again`,
    );

  async function views(rows: TransferWithNames[]): Promise<TransferView[]> {
    const ids = rows.map((r) => r.image_id);
    const [sizes, shares, imageRows] = await Promise.all([
      bytesOfImages(db, ids),
      images.sharesOfImages(db, ids),
      Promise.all(ids.map((id) => images.findImageById(db, id))),
    ]);
    return rows.map((row, i) => {
      const image = imageRows[i];
      const own = shares.get(row.image_id);
      return {
        ...partiesNamed(row),
        description: image?.description ?? null,
        size: sizes.get(row.image_id) ?? 0,
        unauthenticated_access: Boolean(image?.unauthenticated_access),
        shared_with: own ? shareNames(own) : { users: [], groups: [] },
        created: row.created,
        expires: row.expires,
      };
    });
  }

  /** The offer, if the actor is a party to it (or an admin); otherwise a 404 as if it did not exist. */
  async function visible(actor: Actor, id: string): Promise<TransferWithNames> {
    const row = await findTransfer(db, id);
    if (!row || !canSeeTransfer(actor, partiesOf(row))) throw notFound(id);
    return row;
  }

  async function viewOf(id: string): Promise<TransferView> {
    const row = await findTransfer(db, id);
    if (!row) throw notFound(id);
    return (await views([row]))[0] as TransferView;
  }

  return guardService(
    {
      /**
       * Offers an image to `body.to` (201 with the offer), or, for an admin with `direct`, gives it now (the
       * image's id). An earlier pending offer of the image is replaced.
       */
      async offer(
        actor: Actor,
        ref: ImageRef,
        body: TransferBody,
      ): Promise<{ transfer: TransferView } | { moved: number }> {
        const { row, target } = await find(actor, ref, canOfferImage);
        if (!canOfferImage(actor, target))
          throw new RepomanError('forbidden', 'Only the owner or an admin may give an image to another user');
        const to = await requireUserRow(db, body.to, 'to');
        if (to.id === row.owner_id) {
          throw new RepomanError('invalid_field', `${to.name} already owns ${ref.owner}/${ref.name}`, {
            details: {
              field: 'to',
            },
          });
        }
        if (body.direct) {
          if (!canTransferDirectly(actor))
            throw new RepomanError(
              'forbidden',
              `Only admins give images away without an offer; leave out "direct" to offer it to ${to.name}`,
            );
          const moved = await db
            .transaction()
            .execute((trx) =>
              moveImage(trx, { imageId: row.id, fromId: row.owner_id, to, checkQuota, maxImages }),
            );
          if (!moved)
            throw new RepomanError('image_not_found', `No image '${ref.name}' in namespace '${ref.owner}'`);
          return { moved: row.id };
        }
        const now = new Date();
        const id = randomUUID();
        await db.transaction().execute(async (trx) => {
          await lockImage(trx, row.id);
          // Given away or deleted since it was found: as if this request came after.
          const current = await images.findImageById(trx, row.id);
          if (current?.owner_id !== row.owner_id)
            throw new RepomanError('image_not_found', `No image '${ref.name}' in namespace '${ref.owner}'`);
          await deleteTransfersExpiredBefore(trx, new Date(now.getTime() - EXPIRED_KEPT_MS).toISOString());
          await replaceTransfer(trx, {
            id,
            image_id: row.id,
            from_id: row.owner_id,
            to_id: to.id,
            created: now.toISOString(),
            expires: new Date(now.getTime() + policy.offerExpiryMs).toISOString(),
          });
        });
        return { transfer: await viewOf(id) };
      },

      /** Pending offers to and from the actor (admins: every one), oldest first; expired ones are left out. */
      async list(actor: Actor, query: TransferListQuery): Promise<PageOf<TransferView>> {
        const { items, total } = await listTransfers(db, {
          userId: actor.isAdmin && query.direction === undefined ? null : actor.id,
          direction: query.direction,
          now: nowIso(),
          limit: query.limit,
          offset: query.offset,
        });
        return { items: await views(items), total };
      },

      async get(actor: Actor, id: string): Promise<TransferView> {
        const row = await visible(actor, id);
        if (isExpired(row)) throw expired(row);
        return (await views([row]))[0] as TransferView;
      },

      /**
       * The receiver takes the image (under `body.name`, or its own): its id. Checked at this moment, in one
       * transaction: the offer is still there (a concurrent accept or cancel wins or loses whole), the image
       * is still the giver's, the receiver has no image of the name, and their quota holds its bytes.
       */
      async accept(actor: Actor, id: string, body: AcceptTransferBody): Promise<number> {
        const found = await visible(actor, id);
        if (!canAnswerTransfer(actor, partiesOf(found)))
          throw new RepomanError('forbidden', `Only ${found.to_name}, to whom it is offered, may accept it`);
        if (isExpired(found)) throw expired(found);
        const name = body.name === undefined ? undefined : checkedImageName(body.name);
        const outcome = await db.transaction().execute(async (trx) => {
          await lockImage(trx, found.image_id);
          const taken = await takeTransfer(trx, id);
          if (!taken) return 'gone' as const;
          if (isExpired(taken)) throw expired(found);
          const moved = await moveImage(trx, {
            imageId: taken.image_id,
            fromId: taken.from_id,
            to: { id: actor.id, name: actor.name },
            name,
            checkQuota,
            maxImages,
          });
          // The image changed hands another way: the offer lapsed (it stays deleted).
          return moved ? ('moved' as const) : ('lapsed' as const);
        });
        if (outcome === 'gone') throw notFound(id);
        if (outcome === 'lapsed')
          throw new RepomanError(
            'transfer_not_found',
            `The offer '${id}' lapsed: the image is no longer ${found.from_name}'s to give`,
          );
        return found.image_id;
      },

      /** The receiver says no: the offer ends and the image stays where it is. */
      async decline(actor: Actor, id: string): Promise<TransferParties> {
        const found = await visible(actor, id);
        if (!canAnswerTransfer(actor, partiesOf(found)))
          throw new RepomanError(
            'forbidden',
            `Only ${found.to_name}, to whom it is offered, may decline it; ${found.from_name} or an admin may cancel it`,
          );
        if (isExpired(found)) throw expired(found);
        if (!(await takeTransfer(db, id))) throw notFound(id);
        return partiesNamed(found);
      },

      /** The giver (or an admin) withdraws the offer, expired or not. */
      async cancel(actor: Actor, id: string): Promise<TransferParties> {
        const found = await visible(actor, id);
        if (!canCancelTransfer(actor, partiesOf(found)))
          throw new RepomanError(
            'forbidden',
            `Only ${found.from_name}, who made the offer, or an admin may cancel it; decline it instead`,
          );
        if (!(await takeTransfer(db, id))) throw notFound(id);
        return partiesNamed(found);
      },
    },
    () => 'image_exists',
  );
}

export type TransferService = ReturnType<typeof createTransferService>;
