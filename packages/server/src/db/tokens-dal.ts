/** Data access for token identities, browser sessions and sign-ins under way. */
import type { Selectable } from 'kysely';
import type { Db, SessionsTable, SignInsTable, TokenIdentitiesTable } from './schema.ts';
import type { UserRow } from './users-dal.ts';

export type TokenIdentityRow = Selectable<TokenIdentitiesTable>;
export type SessionRow = Selectable<SessionsTable>;
export type SignInRow = Selectable<SignInsTable>;

/**
 * The DN kept for a user made from a token identity, who has no certificate: no certificate's DN can be it
 * (those begin with `/`), and an admin may set a real one later.
 */
export const TOKEN_ONLY_DN_PREFIX = 'token:';
export const isTokenOnlyDn = (dn: string) => dn.startsWith(TOKEN_ONLY_DN_PREFIX);

/** The user an issuer's subject is linked to, with the link's id. */
export async function findUserByTokenIdentity(
  db: Db,
  issuer: string,
  subject: string,
): Promise<(UserRow & { identity_id: number }) | undefined> {
  return db
    .selectFrom('token_identities as t')
    .innerJoin('users', 'users.id', 't.user_id')
    .selectAll('users')
    .select('t.id as identity_id')
    .where('t.issuer', '=', issuer)
    .where('t.subject', '=', subject)
    .executeTakeFirst();
}

export async function insertTokenIdentity(
  db: Db,
  row: { user_id: number; issuer: string; subject: string; created: string },
): Promise<TokenIdentityRow> {
  return db
    .insertInto('token_identities')
    .values({ ...row, last_used: null })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function tokenIdentitiesOfUser(db: Db, userId: number): Promise<TokenIdentityRow[]> {
  return db
    .selectFrom('token_identities')
    .selectAll()
    .where('user_id', '=', userId)
    .orderBy('issuer')
    .orderBy('subject')
    .execute();
}

/** Unlinks one of the user's identities; false if they have no such one. */
export async function deleteTokenIdentity(db: Db, userId: number, id: number): Promise<boolean> {
  const result = await db
    .deleteFrom('token_identities')
    .where('id', '=', id)
    .where('user_id', '=', userId)
    .executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}

export async function touchTokenIdentity(db: Db, id: number, now: string): Promise<void> {
  await db.updateTable('token_identities').set({ last_used: now }).where('id', '=', id).execute();
}

/** The groups of these names that exist, with the permissions each grants its members. */
export async function groupsWithPermissions(
  db: Db,
  names: readonly string[],
): Promise<Map<string, string[]>> {
  const found = new Map<string, string[]>();
  if (names.length === 0) return found;
  const rows = await db
    .selectFrom('groups')
    .leftJoin('group_permissions', 'group_permissions.group_id', 'groups.id')
    .select(['groups.name', 'group_permissions.permission'])
    .where('groups.name', 'in', names)
    .execute();
  for (const row of rows) {
    const list = found.get(row.name) ?? [];
    if (row.permission !== null) list.push(row.permission);
    found.set(row.name, list);
  }
  return found;
}

// ---- browser sessions ----

export async function insertSession(db: Db, row: SessionRow): Promise<void> {
  await db.insertInto('sessions').values(row).execute();
}

/** The session unexpired at `now`, if any. */
export async function findSession(db: Db, id: string, now: string): Promise<SessionRow | undefined> {
  return db
    .selectFrom('sessions')
    .selectAll()
    .where('id', '=', id)
    .where('expires', '>', now)
    .executeTakeFirst();
}

export async function deleteSession(db: Db, id: string): Promise<void> {
  await db.deleteFrom('sessions').where('id', '=', id).execute();
}

/** The sessions of an identity that had no user now belong to the user it was linked to. */
export async function attachSessions(db: Db, issuer: string, subject: string, userId: number): Promise<void> {
  await db
    .updateTable('sessions')
    .set({ user_id: userId })
    .where('issuer', '=', issuer)
    .where('subject', '=', subject)
    .execute();
}

/** An unlinked identity's sessions lose their user (they stay signed in as nobody known). */
export async function detachSessions(db: Db, issuer: string, subject: string): Promise<void> {
  await db
    .updateTable('sessions')
    .set({ user_id: null })
    .where('issuer', '=', issuer)
    .where('subject', '=', subject)
    .execute();
}

// ---- sign-ins under way ----

export async function insertSignIn(db: Db, row: SignInRow): Promise<void> {
  await db.insertInto('sign_ins').values(row).execute();
}

/** The sign-in of this state, taken (deleted) so that it serves once; undefined if none or expired. */
export async function takeSignIn(db: Db, state: string, now: string): Promise<SignInRow | undefined> {
  const row = await db.selectFrom('sign_ins').selectAll().where('state', '=', state).executeTakeFirst();
  if (!row) return undefined;
  const deleted = await db.deleteFrom('sign_ins').where('state', '=', state).executeTakeFirst();
  // Another request took it first: only one callback signs in.
  if (Number(deleted.numDeletedRows) === 0 || row.expires <= now) return undefined;
  return row;
}

/** Sign-ins under way, in all and from one address. */
export async function countSignIns(db: Db, address: string): Promise<{ all: number; here: number }> {
  const row = await db
    .selectFrom('sign_ins')
    .select((eb) => [
      eb.fn.countAll().as('all'),
      eb.fn.sum(eb.case().when('address', '=', address).then(1).else(0).end()).as('here'),
    ])
    .executeTakeFirst();
  return { all: Number(row?.all ?? 0), here: Number(row?.here ?? 0) };
}

/** Expired sessions and sign-ins, removed. */
export async function deleteExpiredSessions(db: Db, now: string): Promise<void> {
  await db.deleteFrom('sessions').where('expires', '<=', now).execute();
  await db.deleteFrom('sign_ins').where('expires', '<=', now).execute();
}
