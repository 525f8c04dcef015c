/**
 * Data access for limits: what a user's unfinished resumable uploads reserve of their quota, how many uploads
 * and images they hold, and the lock that makes checking and taking room one step across servers.
 */
import type { Db } from './schema.ts';

/**
 * Locks the users' rows until the transaction ends (an UPDATE: a row lock on PostgreSQL, the write lock on
 * SQLite), in ascending id order so that two transactions locking the same users cannot deadlock. Whoever
 * checks a limit and then takes room under it holds this lock first.
 */
export async function lockUsers(db: Db, ids: readonly number[]): Promise<void> {
  for (const id of [...new Set(ids)].sort((a, b) => a - b)) {
    await db
      .updateTable('users')
      .set((eb) => ({ quota: eb.ref('quota') })) // not the key: inserts referring to the user go on
      .where('id', '=', id)
      .execute();
  }
}

/**
 * Bytes the owner's unfinished, unexpired resumable uploads reserve: their whole declared Upload-Length, from
 * creation on (what they have received is part of it). `except`: an upload whose own reservation is not counted.
 */
export async function reservedBytesOfOwner(db: Db, ownerId: number, now: string, except?: string) {
  let query = db
    .selectFrom('uploads')
    .innerJoin('images', 'images.id', 'uploads.image_id')
    .select((eb) => eb.fn.sum<number>('uploads.length').as('bytes'))
    .where('images.owner_id', '=', ownerId)
    .where('uploads.version', 'is', null)
    .where('uploads.expires', '>=', now);
  if (except !== undefined) query = query.where('uploads.id', '!=', except);
  const row = await query.executeTakeFirst();
  return Number(row?.bytes ?? 0);
}

/** Unfinished, unexpired resumable uploads a user started (to any namespace). */
export async function pendingUploadsOfUser(db: Db, userId: number, now: string): Promise<number> {
  const row = await db
    .selectFrom('uploads')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('user_id', '=', userId)
    .where('version', 'is', null)
    .where('expires', '>=', now)
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

/** Images in a user's namespace. */
export async function imagesOfOwner(db: Db, ownerId: number): Promise<number> {
  const row = await db
    .selectFrom('images')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('owner_id', '=', ownerId)
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}
