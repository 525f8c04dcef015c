/** Data access for capabilities (macaroons) and the secret they are signed with. */
import { randomBytes } from 'node:crypto';
import type { Selectable } from 'kysely';
import type { CapabilitiesTable, Db } from './schema.ts';

export type CapabilityRow = Selectable<CapabilitiesTable>;
export type CapabilityWithUser = CapabilityRow & { user_name: string };

/** The current secret; the first one is made here, at first use (by whichever server gets there first). */
export async function currentKey(db: Db): Promise<{ generation: number; secret: string }> {
  const latest = () =>
    db
      .selectFrom('capability_keys')
      .select(['generation', 'secret'])
      .orderBy('generation', 'desc')
      .limit(1)
      .executeTakeFirst();
  const found = await latest();
  if (found) return found;
  await db
    .insertInto('capability_keys')
    .values({ generation: 1, secret: randomBytes(32).toString('hex'), created: new Date().toISOString() })
    .onConflict((c) => c.column('generation').doNothing())
    .execute();
  const made = await latest();
  if (!made) throw new Error('the capability secret could not be made');
  return made;
}

/**
 * Replaces the secret, in one transaction: a new generation, the old ones deleted, and every capability not
 * yet revoked marked revoked by the rotation (none of them verifies against the new secret anyway).
 */
export async function rotateKey(db: Db, now: string): Promise<{ generation: number; revoked: number }> {
  return db.transaction().execute(async (tx) => {
    const current = await tx
      .selectFrom('capability_keys')
      .select((eb) => eb.fn.max('generation').as('g'))
      .executeTakeFirst();
    const generation = Number(current?.g ?? 0) + 1;
    await tx
      .insertInto('capability_keys')
      .values({ generation, secret: randomBytes(32).toString('hex'), created: now })
      .execute();
    await tx.deleteFrom('capability_keys').where('generation', '<', generation).execute();
    const revoked = await tx
      .updateTable('capabilities')
      .set({ revoked: now, revoked_reason: 'secret_rotated' })
      .where('revoked', 'is', null)
      .where('expires', '>', now)
      .executeTakeFirst();
    return { generation, revoked: Number(revoked.numUpdatedRows) };
  });
}

export async function insertCapability(db: Db, row: CapabilityRow): Promise<void> {
  await db.insertInto('capabilities').values(row).execute();
}

/** The capability and the secret of its generation (null when rotated away), in one query. */
export async function findCapabilityWithKey(
  db: Db,
  id: string,
): Promise<(CapabilityWithUser & { secret: string | null }) | undefined> {
  return db
    .selectFrom('capabilities as c')
    .innerJoin('users', 'users.id', 'c.user_id')
    .leftJoin('capability_keys as k', 'k.generation', 'c.key_generation')
    .selectAll('c')
    .select(['users.name as user_name', 'k.secret'])
    .where('c.id', '=', id)
    .executeTakeFirst();
}

export interface CapabilityQuery {
  /** One user's; null: everyone's (admins). */
  userId: number | null;
  /** Only those still usable at this instant; null: all. */
  usableAt: string | null;
  limit: number;
  offset: number;
}

/** Newest first (then by id: pages never overlap). */
export async function listCapabilities(db: Db, query: CapabilityQuery) {
  const { userId, usableAt } = query;
  const chosen = db
    .selectFrom('capabilities as c')
    .$if(userId !== null, (q) => q.where('c.user_id', '=', userId as number))
    .$if(usableAt !== null, (q) =>
      q.where('c.revoked', 'is', null).where('c.expires', '>', usableAt as string),
    );
  const [items, total] = await Promise.all([
    chosen
      .innerJoin('users', 'users.id', 'c.user_id')
      .selectAll('c')
      .select('users.name as user_name')
      .orderBy('c.created', 'desc')
      .orderBy('c.id')
      .limit(query.limit)
      .offset(query.offset)
      .execute(),
    chosen.select((eb) => eb.fn.countAll<number | string>().as('n')).executeTakeFirstOrThrow(),
  ]);
  return { items, total: Number(total.n) };
}

/** Marks it revoked, unless it already is: whether this call did. */
export async function revokeCapability(db: Db, id: string, now: string): Promise<boolean> {
  const result = await db
    .updateTable('capabilities')
    .set({ revoked: now, revoked_reason: 'revoked' })
    .where('id', '=', id)
    .where('revoked', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}

/** Capabilities expired before `before` are of no use to anyone, their owner's list included: gone. */
export async function deleteCapabilitiesExpiredBefore(db: Db, before: string): Promise<void> {
  await db.deleteFrom('capabilities').where('expires', '<', before).execute();
}
