/** Data access for groups, their members and their permissions. */
import type { Selectable } from 'kysely';
import type { Db, GroupsTable } from './schema.ts';

export type GroupRow = Selectable<GroupsTable>;

export const findGroupByName = (db: Db, name: string) =>
  db.selectFrom('groups').selectAll().where('name', '=', name).executeTakeFirst();

export const findGroupById = (db: Db, id: number) =>
  db.selectFrom('groups').selectAll().where('id', '=', id).executeTakeFirst();

/**
 * Marks the group modified and, inside a transaction, locks its row until commit (an UPDATE takes a row lock
 * on PostgreSQL; SQLite serialises all writers anyway), so checks on its members cannot race.
 */
export async function touchGroup(db: Db, id: number, now: string): Promise<void> {
  await db.updateTable('groups').set({ modified: now }).where('id', '=', id).execute();
}

export async function insertGroup(db: Db, group: Omit<GroupRow, 'id'>): Promise<GroupRow> {
  return db.insertInto('groups').values(group).returningAll().executeTakeFirstOrThrow();
}

/** Creates the group unless one of that name exists (several servers may start at once); the new row or nothing. */
export async function insertGroupIfMissing(
  db: Db,
  group: Omit<GroupRow, 'id'>,
): Promise<GroupRow | undefined> {
  return db
    .insertInto('groups')
    .values(group)
    .onConflict((oc) => oc.column('name').doNothing())
    .returningAll()
    .executeTakeFirst();
}

/**
 * Updates the group only if it still has the name it was found by (another request, perhaps on another server,
 * may have renamed it meanwhile); false if it has not.
 */
export async function updateGroupIfNamed(
  db: Db,
  id: number,
  name: string,
  patch: Partial<Omit<GroupRow, 'id'>>,
): Promise<boolean> {
  const result = await db
    .updateTable('groups')
    .set(patch)
    .where('id', '=', id)
    .where('name', '=', name)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

export async function deleteGroup(db: Db, id: number): Promise<void> {
  await db.deleteFrom('groups').where('id', '=', id).execute();
}

export async function listGroups(db: Db, page: { limit: number; offset: number }, memberId?: number) {
  let query = db.selectFrom('groups');
  if (memberId !== undefined) {
    query = query.where(
      'id',
      'in',
      db.selectFrom('group_members').select('group_id').where('user_id', '=', memberId),
    );
  }
  const [rows, count] = await Promise.all([
    query.selectAll().orderBy('name').orderBy('id').limit(page.limit).offset(page.offset).execute(),
    query.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
  ]);
  return { rows, total: Number(count.n) };
}

/** Member names of each group, sorted. */
export async function membersOfGroups(db: Db, groupIds: readonly number[]): Promise<Map<number, string[]>> {
  const result = new Map<number, string[]>(groupIds.map((id) => [id, []]));
  if (groupIds.length === 0) return result;
  const rows = await db
    .selectFrom('group_members')
    .innerJoin('users', 'users.id', 'group_members.user_id')
    .select(['group_members.group_id as groupId', 'users.name as name'])
    .where('group_members.group_id', 'in', groupIds)
    .orderBy('users.name')
    .execute();
  for (const row of rows) result.get(row.groupId)?.push(row.name);
  return result;
}

/** Names of the group's members whose accounts are not suspended. */
export async function activeMemberNames(db: Db, groupId: number): Promise<string[]> {
  const rows = await db
    .selectFrom('group_members')
    .innerJoin('users', 'users.id', 'group_members.user_id')
    .select(['users.name as name', 'users.suspended as suspended'])
    .where('group_members.group_id', '=', groupId)
    .execute();
  return rows.filter((row) => !row.suspended).map((row) => row.name);
}

/** Permission names of each group, sorted. */
export async function permissionsOfGroups(
  db: Db,
  groupIds: readonly number[],
): Promise<Map<number, string[]>> {
  const result = new Map<number, string[]>(groupIds.map((id) => [id, []]));
  if (groupIds.length === 0) return result;
  const rows = await db
    .selectFrom('group_permissions')
    .select(['group_id', 'permission'])
    .where('group_id', 'in', groupIds)
    .orderBy('permission')
    .execute();
  for (const row of rows) result.get(row.group_id)?.push(row.permission);
  return result;
}

export async function addMember(db: Db, groupId: number, userId: number): Promise<void> {
  await db
    .insertInto('group_members')
    .values({ group_id: groupId, user_id: userId })
    .onConflict((oc) => oc.doNothing())
    .execute();
}

export async function removeMember(db: Db, groupId: number, userId: number): Promise<void> {
  await db
    .deleteFrom('group_members')
    .where('group_id', '=', groupId)
    .where('user_id', '=', userId)
    .execute();
}

export async function addPermission(db: Db, groupId: number, permission: string): Promise<void> {
  await db
    .insertInto('group_permissions')
    .values({ group_id: groupId, permission })
    .onConflict((oc) => oc.doNothing())
    .execute();
}

export async function removePermission(db: Db, groupId: number, permission: string): Promise<void> {
  await db
    .deleteFrom('group_permissions')
    .where('group_id', '=', groupId)
    .where('permission', '=', permission)
    .execute();
}
