/** Data access for users. Every function takes the database or a transaction. */
import type { Selectable } from 'kysely';
import type { Db, UsersTable } from './schema.ts';

export type UserRow = Selectable<UsersTable>;

export const findUserByName = (db: Db, name: string) =>
  db.selectFrom('users').selectAll().where('name', '=', name).executeTakeFirst();

export const findUserById = (db: Db, id: number) =>
  db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();

export const findUserByDn = (db: Db, dn: string) =>
  db.selectFrom('users').selectAll().where('dn', '=', dn).executeTakeFirst();

export type NewUser = Omit<UserRow, 'id' | 'quota' | 'issuer_dn'> & {
  quota?: number | null;
  issuer_dn?: string | null;
};

export async function insertUser(db: Db, user: NewUser): Promise<UserRow> {
  return db.insertInto('users').values(user).returningAll().executeTakeFirstOrThrow();
}

/** Inserts unless a row with the same name or DN exists (a concurrent start made it). */
export async function insertUserIfMissing(db: Db, user: NewUser): Promise<void> {
  await db
    .insertInto('users')
    .values(user)
    .onConflict((oc) => oc.doNothing())
    .execute();
}

/**
 * Updates the user only if it still has the name it was found by (another request, perhaps on another server,
 * may have renamed it meanwhile); false if it has not.
 */
export async function updateUserIfNamed(
  db: Db,
  id: number,
  name: string,
  patch: Partial<Omit<UserRow, 'id'>>,
): Promise<boolean> {
  const result = await db
    .updateTable('users')
    .set(patch)
    .where('id', '=', id)
    .where('name', '=', name)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/**
 * Binds a user to the CA that issued their certificate, if no CA is bound yet (first login); false if one was
 * bound meanwhile (by another login or an admin).
 */
export async function bindIssuerIfUnbound(db: Db, id: number, issuerDn: string): Promise<boolean> {
  const result = await db
    .updateTable('users')
    .set({ issuer_dn: issuerDn })
    .where('id', '=', id)
    .where('issuer_dn', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

export async function deleteUser(db: Db, id: number): Promise<void> {
  await db.deleteFrom('users').where('id', '=', id).execute();
}

export async function listUsers(db: Db, page: { limit: number; offset: number }) {
  const [rows, count] = await Promise.all([
    db
      .selectFrom('users')
      .selectAll()
      .orderBy('name')
      .orderBy('id')
      .limit(page.limit)
      .offset(page.offset)
      .execute(),
    db
      .selectFrom('users')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow(),
  ]);
  return { rows, total: Number(count.n) };
}

/** Group names of each user, sorted. */
export async function groupsOfUsers(db: Db, userIds: readonly number[]): Promise<Map<number, string[]>> {
  const result = new Map<number, string[]>(userIds.map((id) => [id, []]));
  if (userIds.length === 0) return result;
  const rows = await db
    .selectFrom('group_members')
    .innerJoin('groups', 'groups.id', 'group_members.group_id')
    .select(['group_members.user_id as userId', 'groups.name as name'])
    .where('group_members.user_id', 'in', userIds)
    .orderBy('groups.name')
    .execute();
  for (const row of rows) result.get(row.userId)?.push(row.name);
  return result;
}

/** The union of the permissions of each user's groups, sorted. */
export async function permissionsOfUsers(db: Db, userIds: readonly number[]): Promise<Map<number, string[]>> {
  const result = new Map<number, string[]>(userIds.map((id) => [id, []]));
  if (userIds.length === 0) return result;
  const rows = await db
    .selectFrom('group_permissions')
    .innerJoin('group_members', 'group_members.group_id', 'group_permissions.group_id')
    .select(['group_members.user_id as userId', 'group_permissions.permission'])
    .distinct()
    .where('group_members.user_id', 'in', userIds)
    .orderBy('group_permissions.permission')
    .execute();
  for (const row of rows) result.get(row.userId)?.push(row.permission);
  return result;
}

export async function permissionsOfUser(db: Db, userId: number): Promise<string[]> {
  return (await permissionsOfUsers(db, [userId])).get(userId) ?? [];
}
