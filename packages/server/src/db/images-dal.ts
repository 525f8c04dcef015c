/** Data access for images and their shares. */
import { type Expression, type ExpressionBuilder, type Selectable, type SqlBool, sql } from 'kysely';
import { fromJson, jsonArray, jsonPair } from './json-columns.ts';
import { prepared } from './prepared.ts';
import type { Database, Db, Engine, ImagesTable, ImageVersionsTable } from './schema.ts';

export type ImageRow = Selectable<ImagesTable>;
/** What an image shows of its current version: its digests and what its bytes are. */
type CurrentVersion = Pick<
  Selectable<ImageVersionsTable>,
  'sha256' | 'md5' | 'sha512' | 'adler32' | 'disk_format' | 'virtual_size' | 'compression' | 'partition_table'
>;
/** An image with its owner's name and its current version's fields (all null before the first upload). */
export type ImageWithOwner = ImageRow & { owner_name: string } & {
  [K in keyof CurrentVersion]: CurrentVersion[K] | null;
};
/** An image with who it is shared with. */
export type ImageWithShares = ImageWithOwner & { shares: ImageShareRows };
/** An image with who it is shared with and its owner's groups: all that decides who may see it. */
export type ImageWithAccess = ImageWithShares & { ownerGroups: string[] };

function selectImages(db: Db) {
  return db
    .selectFrom('images')
    .innerJoin('users', 'users.id', 'images.owner_id')
    .leftJoin('image_versions as current', (join) =>
      join.onRef('current.image_id', '=', 'images.id').onRef('current.version', '=', 'images.version'),
    )
    .selectAll('images')
    .select([
      'users.name as owner_name',
      'current.sha256',
      'current.md5',
      'current.sha512',
      'current.adler32',
      'current.disk_format',
      'current.virtual_size',
      'current.compression',
      'current.partition_table',
    ]);
}

/**
 * Who an image is shared with, as two columns of its row: `[[id, name], …]` sorted by name. (Users and groups
 * by their id `in` the image's shares: the engines then look each share's row up by its key, rather than scan
 * every user in name order to save sorting.)
 */
function shareColumns(engine: Engine, eb: ExpressionBuilder<Database, 'images'>) {
  return [
    eb
      .selectFrom('users as su')
      .where('su.id', 'in', (sub) =>
        sub
          .selectFrom('image_user_shares as us')
          .select('us.user_id')
          .whereRef('us.image_id', '=', 'images.id'),
      )
      .select(
        jsonArray(engine, jsonPair(engine, sql.ref('su.id'), sql.ref('su.name')), sql.ref('su.name')).as('j'),
      )
      .as('user_shares'),
    eb
      .selectFrom('groups as sg')
      .where('sg.id', 'in', (sub) =>
        sub
          .selectFrom('image_group_shares as gs')
          .select('gs.group_id')
          .whereRef('gs.image_id', '=', 'images.id'),
      )
      .select(
        jsonArray(engine, jsonPair(engine, sql.ref('sg.id'), sql.ref('sg.name')), sql.ref('sg.name')).as('j'),
      )
      .as('group_shares'),
  ];
}

/** An image with the share columns, and with the owner's groups as a column (`[name, …]`, sorted). */
function selectImagesWithAccess(db: Db, engine: Engine) {
  return selectImages(db).select((eb) => [
    ...shareColumns(engine, eb),
    eb
      .selectFrom('group_members as og')
      .innerJoin('groups as g', 'g.id', 'og.group_id')
      .whereRef('og.user_id', '=', 'images.owner_id')
      .select(jsonArray(engine, sql.ref('g.name'), sql.ref('g.name')).as('j'))
      .as('owner_groups'),
  ]);
}

type Pairs = [number, string][];
const named = (pairs: Pairs) => pairs.map(([id, name]) => ({ id, name }));

/**
 * The row with what its JSON columns hold. (Added to the row as it is: copying rows of thirty columns without
 * those, with a rest pattern, took longer than the query.)
 */
function withShares<R extends ImageWithOwner & { user_shares: unknown; group_shares: unknown }>(
  row: R,
): R & { shares: ImageShareRows } {
  const shares = {
    users: named(fromJson<Pairs>(row.user_shares)),
    groups: named(fromJson<Pairs>(row.group_shares)),
  };
  return Object.assign(row, { shares });
}

function withAccess(
  row: ImageWithOwner & { user_shares: unknown; group_shares: unknown; owner_groups: unknown },
): ImageWithAccess {
  return Object.assign(withShares(row), { ownerGroups: fromJson<string[]>(row.owner_groups) });
}

const imageByName = prepared((db, v: { owner: string; name: string }) =>
  selectImages(db).where('users.name', '=', v.owner).where('images.name', '=', v.name),
);
const imageById = prepared((db, v: { id: number }) => selectImages(db).where('images.id', '=', v.id));
const accessByName = prepared((db, v: { owner: string; name: string }, engine) =>
  selectImagesWithAccess(db, engine).where('users.name', '=', v.owner).where('images.name', '=', v.name),
);
const accessById = prepared((db, v: { id: number }, engine) =>
  selectImagesWithAccess(db, engine).where('images.id', '=', v.id),
);

export const findImage = async (db: Db, ownerName: string, name: string) =>
  (await imageByName(db, { owner: ownerName, name }))[0];

export const findImageById = async (db: Db, id: number) => (await imageById(db, { id }))[0];

/** The image with its shares and its owner's groups, in one query (what `find` decides access from). */
export async function findImageWithAccess(
  db: Db,
  ownerName: string,
  name: string,
): Promise<ImageWithAccess | undefined> {
  const row = (await accessByName(db, { owner: ownerName, name }))[0];
  return row && withAccess(row);
}

export async function findImageWithAccessById(db: Db, id: number): Promise<ImageWithAccess | undefined> {
  const row = (await accessById(db, { id }))[0];
  return row && withAccess(row);
}

export async function insertImage(db: Db, image: Omit<ImageRow, 'id' | 'last_version'>): Promise<number> {
  const row = await db.insertInto('images').values(image).returning('id').executeTakeFirstOrThrow();
  return row.id;
}

export async function updateImage(db: Db, id: number, patch: Partial<Omit<ImageRow, 'id'>>): Promise<void> {
  await db.updateTable('images').set(patch).where('id', '=', id).execute();
}

/**
 * Updates the image only if it still has the name and owner it was found by (another request, perhaps on
 * another server, may have renamed or given it away meanwhile); false if it has not.
 */
export async function updateImageIfNamed(
  db: Db,
  id: number,
  found: { name: string; owner_id: number },
  patch: Partial<Omit<ImageRow, 'id'>>,
): Promise<boolean> {
  const result = await db
    .updateTable('images')
    .set(patch)
    .where('id', '=', id)
    .where('name', '=', found.name)
    .where('owner_id', '=', found.owner_id)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

export async function deleteImage(db: Db, id: number): Promise<void> {
  await db.deleteFrom('images').where('id', '=', id).execute();
}

export interface ImageShareRows {
  users: { id: number; name: string }[];
  groups: { id: number; name: string }[];
}

/** Who each image is shared with, names sorted, for a page of images at once. */
export async function sharesOfImages(
  db: Db,
  imageIds: readonly number[],
): Promise<Map<number, ImageShareRows>> {
  const result = new Map<number, ImageShareRows>(imageIds.map((id) => [id, { users: [], groups: [] }]));
  if (imageIds.length === 0) return result;
  const [users, groups] = await Promise.all([
    db
      .selectFrom('image_user_shares')
      .innerJoin('users', 'users.id', 'image_user_shares.user_id')
      .select(['image_user_shares.image_id as imageId', 'users.id', 'users.name'])
      .where('image_id', 'in', imageIds)
      .orderBy('users.name')
      .execute(),
    db
      .selectFrom('image_group_shares')
      .innerJoin('groups', 'groups.id', 'image_group_shares.group_id')
      .select(['image_group_shares.image_id as imageId', 'groups.id', 'groups.name'])
      .where('image_id', 'in', imageIds)
      .orderBy('groups.name')
      .execute(),
  ]);
  for (const { imageId, id, name } of users) result.get(imageId)?.users.push({ id, name });
  for (const { imageId, id, name } of groups) result.get(imageId)?.groups.push({ id, name });
  return result;
}

export async function addUserShare(db: Db, imageId: number, userId: number): Promise<void> {
  await db
    .insertInto('image_user_shares')
    .values({ image_id: imageId, user_id: userId })
    .onConflict((oc) => oc.doNothing())
    .execute();
}

export async function removeUserShare(db: Db, imageId: number, userId: number): Promise<void> {
  await db
    .deleteFrom('image_user_shares')
    .where('image_id', '=', imageId)
    .where('user_id', '=', userId)
    .execute();
}

export async function addGroupShare(db: Db, imageId: number, groupId: number): Promise<void> {
  await db
    .insertInto('image_group_shares')
    .values({ image_id: imageId, group_id: groupId })
    .onConflict((oc) => oc.doNothing())
    .execute();
}

export async function removeGroupShare(db: Db, imageId: number, groupId: number): Promise<void> {
  await db
    .deleteFrom('image_group_shares')
    .where('image_id', '=', imageId)
    .where('group_id', '=', groupId)
    .execute();
}

export interface ImageQuery {
  /**
   * Restrict to what this user may see (own, public, shared directly or through a group); `userId: null`:
   * public images only (an anonymous caller); null: everything.
   */
  visibleTo: { userId: number | null } | null;
  ownerId?: number;
  /** Only images shared with this user, directly or through one of their groups. */
  sharedWith?: number;
  /** Only images shared with this group. */
  sharedWithGroup?: number;
  public?: boolean;
  namePrefix?: string;
  os_variant?: string;
  os_type?: string;
  os_arch?: string;
  hypervisor?: string;
  disk_format?: string;
  sort: 'name' | 'owner' | 'created' | 'modified';
  order: 'asc' | 'desc';
  limit: number;
  offset: number;
}

/** What decides a list query's clauses, not its values: lists of one shape share one built query. */
function shapeOf(query: ImageQuery) {
  const visible = query.visibleTo;
  return {
    visible: visible === null ? 'all' : visible.userId === null ? 'public' : 'user',
    owner: query.ownerId !== undefined,
    sharedWith: query.sharedWith !== undefined,
    sharedWithGroup: query.sharedWithGroup !== undefined,
    public: query.public !== undefined,
    namePrefix: Boolean(query.namePrefix),
    os_variant: query.os_variant !== undefined,
    os_type: query.os_type !== undefined,
    os_arch: query.os_arch !== undefined,
    hypervisor: query.hypervisor !== undefined,
    disk_format: query.disk_format !== undefined,
    sort: query.sort,
    order: query.order,
  } as const;
}
type ListShape = ReturnType<typeof shapeOf>;
type ListValues = Omit<ImageQuery, 'visibleTo' | 'sort' | 'order' | 'namePrefix'> & {
  userId: number | null;
  namePrefix: string;
  prefixLength: number;
};
const shapeKey = (shape: ListShape) => JSON.stringify(shape);

type Eb = ExpressionBuilder<Database, 'images'>;

function sharedWith(eb: Eb, userId: number) {
  return eb.or([
    eb.exists(
      eb
        .selectFrom('image_user_shares as us')
        .select('us.image_id')
        .whereRef('us.image_id', '=', 'images.id')
        .where('us.user_id', '=', userId),
    ),
    eb.exists(
      eb
        .selectFrom('image_group_shares as gs')
        .innerJoin('group_members as gm', 'gm.group_id', 'gs.group_id')
        .select('gs.image_id')
        .whereRef('gs.image_id', '=', 'images.id')
        .where('gm.user_id', '=', userId),
    ),
  ]);
}

/**
 * The conditions of a list, every one on the images table (or a subquery of it), so that the total is counted
 * from that table alone, without the joins the page needs for owner names and current versions.
 */
function conditions(shape: ListShape, v: ListValues) {
  return (eb: Eb): Expression<SqlBool> => {
    const all: Expression<SqlBool>[] = [];
    if (shape.visible === 'public') all.push(eb('images.unauthenticated_access', '=', true));
    else if (shape.visible === 'user')
      all.push(
        eb.or([
          eb('images.owner_id', '=', v.userId as number),
          eb('images.unauthenticated_access', '=', true),
          sharedWith(eb, v.userId as number),
        ]),
      );
    if (shape.owner) all.push(eb('images.owner_id', '=', v.ownerId as number));
    if (shape.sharedWith) all.push(sharedWith(eb, v.sharedWith as number));
    if (shape.sharedWithGroup)
      all.push(
        eb.exists(
          eb
            .selectFrom('image_group_shares as gs')
            .select('gs.image_id')
            .whereRef('gs.image_id', '=', 'images.id')
            .where('gs.group_id', '=', v.sharedWithGroup as number),
        ),
      );
    if (shape.public) all.push(eb('images.unauthenticated_access', '=', v.public as boolean));
    if (shape.namePrefix)
      all.push(
        sql<SqlBool>`substr(images.name, 1, ${v.prefixLength}) = ${v.namePrefix}` as Expression<SqlBool>,
      );
    for (const field of ['os_variant', 'os_type', 'os_arch', 'hypervisor'] as const) {
      if (shape[field]) all.push(eb(`images.${field}`, '=', v[field] as string));
    }
    if (shape.disk_format)
      all.push(
        eb.exists(
          eb
            .selectFrom('image_versions as v')
            .select('v.image_id')
            .whereRef('v.image_id', '=', 'images.id')
            .whereRef('v.version', '=', 'images.version')
            .where('v.disk_format', '=', v.disk_format as string),
        ),
      );
    return eb.and(all);
  };
}

/** Whether a list of this shape has any condition (without one, `where` would say `1 = 1`). */
const filtered = (shape: ListShape) =>
  shape.visible !== 'all' ||
  Object.entries(shape).some(([key, value]) => value === true && key !== 'visible');

const SORT_COLUMN = {
  name: 'images.name',
  owner: 'users.name',
  created: 'images.created',
  modified: 'images.modified',
} as const;

/**
 * What a page adds to a list's shape: its size, written in the query, and whether it is the first. PostgreSQL
 * plans a prepared statement once (a generic plan) only if that plan is no costlier than the plans it makes for
 * each run's values, and a `limit $1` it cannot see looked costlier: it planned every list anew, 0.4 to 0.7 ms
 * of its time per request. With the size written and no offset, the first page of a list is planned once.
 */
function pageShape(shape: ListShape, query: ImageQuery) {
  const size = Number.isSafeInteger(query.limit) && query.limit >= 0 ? query.limit : null;
  return { ...shape, size, first: query.offset === 0 };
}
type PageShape = ReturnType<typeof pageShape>;

/**
 * A page of images with who each is shared with, and the total of the list, in one query: the total is a
 * subquery of the same statement, so it counts the very rows the page was taken from, even while images are
 * added or removed.
 */
const listPage = prepared(
  (db, v: ListValues, engine, { size, first, ...shape }: PageShape) =>
    selectImages(db)
      .select((eb) => [
        ...shareColumns(engine, eb),
        eb
          .selectFrom('images')
          .$if(filtered(shape), (count) => count.where(conditions(shape, v)))
          .select((inner) => inner.fn.countAll<number>().as('n'))
          .as('total'),
      ])
      .$if(filtered(shape), (page) => page.where(conditions(shape, v)))
      // A total order: the chosen column, then owner and name (unique together), so pages never overlap.
      .orderBy(SORT_COLUMN[shape.sort], shape.order)
      .orderBy('users.name', shape.order)
      .orderBy('images.name', shape.order)
      .limit(size === null ? v.limit : sql.lit(size))
      .$if(!first, (page) => page.offset(v.offset)),
  (shape) => JSON.stringify(shape),
);

/** The total alone: for a page past the end of the list, which has no row to carry it. */
const listTotal = prepared(
  (db, v: ListValues, _engine, shape: ListShape) =>
    db
      .selectFrom('images')
      .$if(filtered(shape), (count) => count.where(conditions(shape, v)))
      .select((eb) => eb.fn.countAll<number>().as('n')),
  shapeKey,
);

export async function listImages(
  db: Db,
  query: ImageQuery,
): Promise<{ rows: ImageWithShares[]; total: number }> {
  const shape = shapeOf(query);
  const values: ListValues = {
    ...query,
    userId: query.visibleTo?.userId ?? null,
    namePrefix: query.namePrefix ?? '',
    prefixLength: query.namePrefix?.length ?? 0,
  };
  const page = await listPage(db, values, pageShape(shape, query));
  const first = page[0];
  if (first) return { rows: page.map(withShares), total: Number(first.total) };
  const total =
    query.offset > 0 || query.limit < 1 ? Number((await listTotal(db, values, shape))[0]?.n ?? 0) : 0;
  return { rows: [], total };
}

/**
 * The namespaces holding images `visibleTo` may see, each with when its newest visible change was made: the
 * WebDAV listing of /api/images/raw/ (rare enough to be built each time rather than prepared).
 */
export async function visibleNamespaces(
  db: Db,
  visibleTo: ImageQuery['visibleTo'],
): Promise<{ name: string; modified: string }[]> {
  const query: ImageQuery = { visibleTo, sort: 'name', order: 'asc', limit: 0, offset: 0 };
  const shape = shapeOf(query);
  const values: ListValues = { ...query, userId: visibleTo?.userId ?? null, namePrefix: '', prefixLength: 0 };
  const rows = await db
    .selectFrom('images')
    .innerJoin('users', 'users.id', 'images.owner_id')
    .$if(filtered(shape), (q) => q.where(conditions(shape, values)))
    .select((eb) => ['users.name as name', eb.fn.max('images.modified').as('modified')])
    .groupBy('users.name')
    .orderBy('users.name')
    .execute();
  return rows.map((row) => ({ name: row.name, modified: String(row.modified) }));
}
