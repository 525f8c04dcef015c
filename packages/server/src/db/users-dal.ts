/** Data access for users. Every function takes the database or a transaction. */
import { type ExpressionBuilder, type Selectable, sql } from 'kysely';
import { fromJson, jsonArray } from './json-columns.ts';
import { prepared } from './prepared.ts';
import type { Database, Db, Engine, UsersTable } from './schema.ts';

export type UserRow = Selectable<UsersTable>;
/** A user with the names of their groups and the union of those groups' permissions, each sorted. */
export type UserWithGroups = UserRow & { groupNames: string[]; permissionNames: string[] };

/** A user's groups and permissions as two columns of their row (JSON arrays, sorted). */
function groupColumns(engine: Engine, eb: ExpressionBuilder<Database, 'users'>) {
  const groupsOfUser = () =>
    eb.selectFrom('group_members as gm').select('gm.group_id').whereRef('gm.user_id', '=', 'users.id');
  return [
    eb
      .selectFrom('groups as g')
      .where('g.id', 'in', groupsOfUser())
      .select(jsonArray(engine, sql.ref('g.name'), sql.ref('g.name')).as('j'))
      .as('group_names'),
    eb
      .selectFrom('group_permissions as gp')
      .where('gp.group_id', 'in', groupsOfUser())
      .select(
        jsonArray(engine, sql.ref('gp.permission'), sql.ref('gp.permission'), { distinct: true }).as('j'),
      )
      .as('permission_names'),
  ];
}

function withGroups<R extends UserRow & { group_names: unknown; permission_names: unknown }>(
  row: R,
): R & UserWithGroups {
  return Object.assign(row, {
    groupNames: fromJson<string[]>(row.group_names),
    permissionNames: fromJson<string[]>(row.permission_names),
  });
}

const selectWithGroups = (db: Db, engine: Engine) =>
  db
    .selectFrom('users')
    .selectAll('users')
    .select((eb) => groupColumns(engine, eb));
const byName = prepared((db, v: { name: string }, engine) =>
  selectWithGroups(db, engine).where('users.name', '=', v.name),
);
const byId = prepared((db, v: { id: number }, engine) =>
  selectWithGroups(db, engine).where('users.id', '=', v.id),
);

/** The user with their groups and permissions, in one query. */
export async function findUserWithGroups(db: Db, name: string): Promise<UserWithGroups | undefined> {
  const row = (await byName(db, { name }))[0];
  return row && withGroups(row);
}

export async function findUserWithGroupsById(db: Db, id: number): Promise<UserWithGroups | undefined> {
  const row = (await byId(db, { id }))[0];
  return row && withGroups(row);
}

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

const userPage = prepared((db, v: { limit: number; offset: number }, engine) =>
  db
    .selectFrom('users')
    .selectAll('users')
    .select((eb) => [
      ...groupColumns(engine, eb),
      eb
        .selectFrom('users as counted')
        .select((inner) => inner.fn.countAll<number>().as('n'))
        .as('total'),
    ])
    .orderBy('users.name')
    .orderBy('users.id')
    .limit(v.limit)
    .offset(v.offset),
);
const userTotal = prepared((db, _v: object) =>
  db.selectFrom('users').select((eb) => eb.fn.countAll<number>().as('n')),
);

/** A page of users with their groups and permissions, and how many there are, in one query. */
export async function listUsers(
  db: Db,
  page: { limit: number; offset: number },
): Promise<{ rows: UserWithGroups[]; total: number }> {
  const rows = await userPage(db, page);
  const first = rows[0];
  if (first) return { rows: rows.map(withGroups), total: Number(first.total) };
  // a page past the end has no row to carry the total
  const total = page.offset > 0 || page.limit < 1 ? Number((await userTotal(db, {}))[0]?.n ?? 0) : 0;
  return { rows: [], total };
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
