/** Data access for endorsements (a group's endorsement of one version of an image) and the image lists. */
import type { Selectable } from 'kysely';
import type { Db, EndorsementsTable, ImageListsTable, ListSubscribersTable } from './schema.ts';

export type EndorsementRow = Selectable<EndorsementsTable>;
export type ImageListRow = Selectable<ImageListsTable>;
export type SubscriberRow = Selectable<ListSubscribersTable>;

/** An endorsement with what a list and the API show of it: its group, image, version and endorser. */
export interface EndorsementDetail extends EndorsementRow {
  group_name: string;
  image_uuid: string;
  image_name: string;
  owner_name: string;
  description: string | null;
  os_variant: string | null;
  os_type: string | null;
  os_arch: string | null;
  hypervisor: string | null;
  unauthenticated_access: boolean | number;
  size: number;
  sha512: string | null;
  disk_format: string | null;
  endorser_name: string;
  endorser_full_name: string | null;
}

export interface EndorsementFilter {
  groupId?: number;
  imageId?: number;
  /** Only those expiring after this moment (ISO 8601). */
  activeAt?: string;
}

function selectDetails(db: Db) {
  return db
    .selectFrom('endorsements as e')
    .innerJoin('groups as g', 'g.id', 'e.group_id')
    .innerJoin('images as i', 'i.id', 'e.image_id')
    .innerJoin('users as o', 'o.id', 'i.owner_id')
    .innerJoin('users as u', 'u.id', 'e.endorser_id')
    .innerJoin('image_versions as v', (join) =>
      join.onRef('v.image_id', '=', 'e.image_id').onRef('v.version', '=', 'e.version'),
    )
    .selectAll('e')
    .select([
      'g.name as group_name',
      'i.uuid as image_uuid',
      'i.name as image_name',
      'o.name as owner_name',
      'i.description',
      'i.os_variant',
      'i.os_type',
      'i.os_arch',
      'i.hypervisor',
      'i.unauthenticated_access',
      'v.size',
      'v.sha512',
      'v.disk_format',
      'u.name as endorser_name',
      'u.full_name as endorser_full_name',
    ]);
}

function filtered(db: Db, filter: EndorsementFilter) {
  let query = selectDetails(db);
  if (filter.groupId !== undefined) query = query.where('e.group_id', '=', filter.groupId);
  if (filter.imageId !== undefined) query = query.where('e.image_id', '=', filter.imageId);
  if (filter.activeAt !== undefined) query = query.where('e.expires', '>', filter.activeAt);
  return query;
}

/** Endorsements, sorted by group, owner and image name (a stable order, for pages and for lists). */
export async function listEndorsements(
  db: Db,
  filter: EndorsementFilter,
  page?: { limit: number; offset: number },
): Promise<{ items: EndorsementDetail[]; total: number }> {
  const sorted = filtered(db, filter)
    .orderBy('g.name')
    .orderBy('o.name')
    .orderBy('i.name')
    .$if(page !== undefined, (q) => q.limit(page?.limit ?? 0).offset(page?.offset ?? 0));
  const [items, count] = await Promise.all([
    sorted.execute(),
    page === undefined
      ? undefined
      : filtered(db, filter)
          .clearSelect()
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .executeTakeFirst(),
  ]);
  return { items, total: page === undefined ? items.length : Number(count?.n ?? 0) };
}

export async function findEndorsement(
  db: Db,
  groupId: number,
  imageId: number,
): Promise<EndorsementDetail | undefined> {
  return selectDetails(db)
    .where('e.group_id', '=', groupId)
    .where('e.image_id', '=', imageId)
    .executeTakeFirst();
}

/** Endorses, replacing the group's endorsement of the image if there is one (one per image and group). */
export async function upsertEndorsement(db: Db, row: EndorsementRow): Promise<void> {
  await db
    .insertInto('endorsements')
    .values(row)
    .onConflict((c) =>
      c.columns(['group_id', 'image_id']).doUpdateSet({
        id: row.id,
        version: row.version,
        endorser_id: row.endorser_id,
        comment: row.comment,
        created: row.created,
        expires: row.expires,
      }),
    )
    .execute();
}

export async function deleteEndorsement(db: Db, groupId: number, imageId: number): Promise<boolean> {
  const result = await db
    .deleteFrom('endorsements')
    .where('group_id', '=', groupId)
    .where('image_id', '=', imageId)
    .executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}

/** Whether a group endorses this version of the image (expired endorsements too: they still pin it). */
export async function isEndorsedVersion(db: Db, imageId: number, version: number): Promise<boolean> {
  const row = await db
    .selectFrom('endorsements')
    .select('id')
    .where('image_id', '=', imageId)
    .where('version', '=', version)
    .executeTakeFirst();
  return row !== undefined;
}

/** Each group's earliest unexpired endorsement: when its image list expires. */
export async function earliestExpiries(db: Db, now: string): Promise<{ group: string; expires: string }[]> {
  const rows = await db
    .selectFrom('endorsements as e')
    .innerJoin('groups as g', 'g.id', 'e.group_id')
    .select(['g.name as group', (eb) => eb.fn.min('e.expires').as('expires')])
    .where('e.expires', '>', now)
    .groupBy('g.name')
    .orderBy('g.name')
    .execute();
  return rows.map((row) => ({ group: row.group, expires: new Date(String(row.expires)).toISOString() }));
}

/** The groups endorsing any version of the image, expired endorsements included (they still pin it). */
export async function endorsingGroups(db: Db, imageId: number): Promise<string[]> {
  const rows = await db
    .selectFrom('endorsements as e')
    .innerJoin('groups as g', 'g.id', 'e.group_id')
    .select('g.name')
    .where('e.image_id', '=', imageId)
    .orderBy('g.name')
    .execute();
  return rows.map((r) => r.name);
}

// ---- image lists ----

/** The list of this scope, made (with its stable identifier) the first time it is asked for. */
export async function imageListOf(db: Db, scope: string, id: string): Promise<ImageListRow> {
  const find = () => db.selectFrom('image_lists').selectAll().where('scope', '=', scope).executeTakeFirst();
  const found = await find();
  if (found) return found;
  await db
    .insertInto('image_lists')
    .values({
      id,
      scope,
      version: 0,
      fingerprint: null,
      issued: null,
      expires: null,
      document: null,
      signed: null,
    })
    .onConflict((c) => c.column('scope').doNothing())
    .execute();
  const made = await find();
  if (!made) throw new Error(`the image list ${scope} could not be made`);
  return made;
}

/**
 * Records a list issued anew, if nobody else (another server, another request) has issued it since `version`
 * was read; false if someone has (their list is as good: the caller serves it).
 */
export async function recordIssuedList(
  db: Db,
  scope: string,
  previousVersion: number,
  issued: Pick<ImageListRow, 'version' | 'fingerprint' | 'issued' | 'expires' | 'document' | 'signed'>,
): Promise<boolean> {
  const result = await db
    .updateTable('image_lists')
    .set(issued)
    .where('scope', '=', scope)
    .where('version', '=', previousVersion)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** Publishes an endorser's signature of the list, if the list is still the version they signed. */
export async function recordSignature(
  db: Db,
  scope: string,
  version: number,
  signed: string,
): Promise<boolean> {
  const result = await db
    .updateTable('image_lists')
    .set({ signed })
    .where('scope', '=', scope)
    .where('version', '=', version)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

// ---- subscribers ----

export async function insertSubscriber(db: Db, row: SubscriberRow): Promise<void> {
  await db.insertInto('list_subscribers').values(row).execute();
}

export const listSubscribers = (db: Db, groupId: number) =>
  db
    .selectFrom('list_subscribers as s')
    .leftJoin('users as u', 'u.id', 's.created_by')
    .selectAll('s')
    .select('u.name as created_by_name')
    .where('s.group_id', '=', groupId)
    .orderBy('s.created')
    .orderBy('s.id')
    .execute();

export async function deleteSubscriber(db: Db, groupId: number, id: string): Promise<boolean> {
  const result = await db
    .deleteFrom('list_subscribers')
    .where('group_id', '=', groupId)
    .where('id', '=', id)
    .executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}

/** The group ids a token subscribes to (one, or none if it is no token of ours). */
export async function groupOfToken(db: Db, tokenSha256: string): Promise<number | undefined> {
  const row = await db
    .selectFrom('list_subscribers')
    .select('group_id')
    .where('token_sha256', '=', tokenSha256)
    .executeTakeFirst();
  return row?.group_id;
}

// ---- who may read a group's lists ----

/** Of these groups, those whose lists are for their subscribers only. */
export async function subscribersOnly(db: Db, groupIds: readonly number[]): Promise<Set<number>> {
  if (groupIds.length === 0) return new Set();
  const rows = await db
    .selectFrom('image_list_access')
    .select('group_id')
    .where('group_id', 'in', groupIds)
    .where('subscribers_only', '=', true)
    .execute();
  return new Set(rows.map((r) => r.group_id));
}

export async function setSubscribersOnly(db: Db, groupId: number, on: boolean): Promise<void> {
  await db
    .insertInto('image_list_access')
    .values({ group_id: groupId, subscribers_only: on })
    .onConflict((c) => c.column('group_id').doUpdateSet({ subscribers_only: on }))
    .execute();
}
