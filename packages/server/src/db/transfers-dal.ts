/** Data access for transfer offers: an image offered by its owner to another user, until answered or expired. */
import type { Selectable } from 'kysely';
import type { Db, ImageTransfersTable } from './schema.ts';

export type TransferRow = Selectable<ImageTransfersTable>;
/** An offer with the names it shows: the image as it is now, the giver and the receiver. */
export type TransferWithNames = TransferRow & {
  image_name: string;
  owner_id: number;
  owner_name: string;
  from_name: string;
  to_name: string;
};

function selectTransfers(db: Db) {
  return db
    .selectFrom('image_transfers as t')
    .innerJoin('images', 'images.id', 't.image_id')
    .innerJoin('users as owner', 'owner.id', 'images.owner_id')
    .innerJoin('users as giver', 'giver.id', 't.from_id')
    .innerJoin('users as receiver', 'receiver.id', 't.to_id')
    .selectAll('t')
    .select([
      'images.name as image_name',
      'images.owner_id',
      'owner.name as owner_name',
      'giver.name as from_name',
      'receiver.name as to_name',
    ]);
}

export const findTransfer = (db: Db, id: string): Promise<TransferWithNames | undefined> =>
  selectTransfers(db).where('t.id', '=', id).executeTakeFirst();

/** Makes the image's one pending offer this one (an earlier offer of it, to anyone, is replaced). */
export async function replaceTransfer(db: Db, row: TransferRow): Promise<void> {
  await db.deleteFrom('image_transfers').where('image_id', '=', row.image_id).execute();
  await db.insertInto('image_transfers').values(row).execute();
}

/**
 * Takes the offer out of the table, if it is still there: the one statement that decides which of two
 * concurrent answers (on any server) gets it. Inside a transaction, a failure puts it back.
 */
export async function takeTransfer(db: Db, id: string): Promise<TransferRow | undefined> {
  return db.deleteFrom('image_transfers').where('id', '=', id).returningAll().executeTakeFirst();
}

export async function deleteTransfersOfImage(db: Db, imageId: number): Promise<void> {
  await db.deleteFrom('image_transfers').where('image_id', '=', imageId).execute();
}

/** Offers that expired before `before` (they answer 410 until then): gone for good. */
export async function deleteTransfersExpiredBefore(db: Db, before: string): Promise<void> {
  await db.deleteFrom('image_transfers').where('expires', '<', before).execute();
}

export interface TransferQuery {
  /** Offers to or from this user; null: every offer (admins). */
  userId: number | null;
  direction?: 'to' | 'from' | undefined;
  /** Only offers that have not expired at this instant. */
  now: string;
  limit: number;
  offset: number;
}

/** Pending offers, oldest first (then by id: a total order, so pages never overlap). */
export async function listTransfers(db: Db, query: TransferQuery) {
  let rows = selectTransfers(db).where('t.expires', '>', query.now);
  let count = db.selectFrom('image_transfers as t').where('t.expires', '>', query.now);
  const { userId, direction } = query;
  if (userId !== null) {
    if (direction === 'to') {
      rows = rows.where('t.to_id', '=', userId);
      count = count.where('t.to_id', '=', userId);
    } else if (direction === 'from') {
      rows = rows.where('t.from_id', '=', userId);
      count = count.where('t.from_id', '=', userId);
    } else {
      rows = rows.where((eb) => eb.or([eb('t.to_id', '=', userId), eb('t.from_id', '=', userId)]));
      count = count.where((eb) => eb.or([eb('t.to_id', '=', userId), eb('t.from_id', '=', userId)]));
    }
  }
  const [items, total] = await Promise.all([
    rows.orderBy('t.created').orderBy('t.id').limit(query.limit).offset(query.offset).execute(),
    count.select((eb) => eb.fn.countAll<number | string>().as('n')).executeTakeFirstOrThrow(),
  ]);
  return { items, total: Number(total.n) };
}

/** Bytes each image stores: every kept version and its converted variants (what moves with it). */
export async function bytesOfImages(db: Db, imageIds: readonly number[]): Promise<Map<number, number>> {
  const result = new Map<number, number>(imageIds.map((id) => [id, 0]));
  if (imageIds.length === 0) return result;
  const versions = await db
    .selectFrom('image_versions')
    .select(['image_id as imageId', (eb) => eb.fn.sum<number>('size').as('bytes')])
    .where('image_id', 'in', imageIds)
    .groupBy('image_id')
    .execute();
  for (const row of versions) result.set(row.imageId, Number(row.bytes));
  const variants = await db
    .selectFrom('image_variants')
    .innerJoin('image_versions', 'image_versions.id', 'image_variants.version_id')
    .select([
      'image_versions.image_id as imageId',
      (eb) => eb.fn.sum<number>('image_variants.size').as('bytes'),
    ])
    .where('image_versions.image_id', 'in', imageIds)
    .groupBy('image_versions.image_id')
    .execute();
  for (const row of variants) result.set(row.imageId, (result.get(row.imageId) ?? 0) + Number(row.bytes));
  return result;
}
