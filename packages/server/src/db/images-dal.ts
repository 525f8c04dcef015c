/** Data access for images and their shares. */
import { type Expression, type ExpressionBuilder, type Selectable, type SqlBool, sql } from 'kysely';
import type { Database, Db, ImagesTable, ImageVersionsTable } from './schema.ts';

export type ImageRow = Selectable<ImagesTable>;
/** What an image shows of its current version: its digests and what its bytes are. */
type CurrentVersion = Pick<
  Selectable<ImageVersionsTable>,
  'sha256' | 'md5' | 'sha512' | 'disk_format' | 'virtual_size' | 'compression' | 'partition_table'
>;
/** An image with its owner's name and its current version's fields (all null before the first upload). */
export type ImageWithOwner = ImageRow & { owner_name: string } & {
  [K in keyof CurrentVersion]: CurrentVersion[K] | null;
};

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
      'current.disk_format',
      'current.virtual_size',
      'current.compression',
      'current.partition_table',
    ]);
}

export const findImage = (db: Db, ownerName: string, name: string) =>
  selectImages(db).where('users.name', '=', ownerName).where('images.name', '=', name).executeTakeFirst();

export const findImageById = (db: Db, id: number) =>
  selectImages(db).where('images.id', '=', id).executeTakeFirst();

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

export async function sharesOfImage(db: Db, imageId: number): Promise<ImageShareRows> {
  return (await sharesOfImages(db, [imageId])).get(imageId) as ImageShareRows;
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

export async function listImages(db: Db, query: ImageQuery) {
  type Eb = ExpressionBuilder<Database, 'images'>;
  const sharedWith = (eb: Eb, userId: number) =>
    eb.or([
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

  // Every condition is on the images table (or a subquery of it), so the total is counted from that table
  // alone, without the joins the page needs for owner names and current versions.
  const conditions = (eb: Eb): Expression<SqlBool> => {
    const all: Expression<SqlBool>[] = [];
    const visible = query.visibleTo;
    if (visible?.userId === null) all.push(eb('images.unauthenticated_access', '=', true));
    else if (visible)
      all.push(
        eb.or([
          eb('images.owner_id', '=', visible.userId),
          eb('images.unauthenticated_access', '=', true),
          sharedWith(eb, visible.userId),
        ]),
      );
    if (query.ownerId !== undefined) all.push(eb('images.owner_id', '=', query.ownerId));
    if (query.sharedWith !== undefined) all.push(sharedWith(eb, query.sharedWith));
    const group = query.sharedWithGroup;
    if (group !== undefined)
      all.push(
        eb.exists(
          eb
            .selectFrom('image_group_shares as gs')
            .select('gs.image_id')
            .whereRef('gs.image_id', '=', 'images.id')
            .where('gs.group_id', '=', group),
        ),
      );
    if (query.public !== undefined) all.push(eb('images.unauthenticated_access', '=', query.public));
    if (query.namePrefix) {
      const prefix = query.namePrefix;
      all.push(sql<SqlBool>`substr(images.name, 1, ${prefix.length}) = ${prefix}` as Expression<SqlBool>);
    }
    for (const field of ['os_variant', 'os_type', 'os_arch', 'hypervisor'] as const) {
      const value = query[field];
      if (value !== undefined) all.push(eb(`images.${field}`, '=', value));
    }
    const format = query.disk_format;
    if (format !== undefined)
      all.push(
        eb.exists(
          eb
            .selectFrom('image_versions as v')
            .select('v.image_id')
            .whereRef('v.image_id', '=', 'images.id')
            .whereRef('v.version', '=', 'images.version')
            .where('v.disk_format', '=', format),
        ),
      );
    return eb.and(all);
  };

  const sortColumn = {
    name: 'images.name',
    owner: 'users.name',
    created: 'images.created',
    modified: 'images.modified',
  } as const;
  // A total order: the chosen column, then owner and name (unique together), so pages never overlap.
  const rows = await selectImages(db)
    .where(conditions)
    .orderBy(sortColumn[query.sort], query.order)
    .orderBy('users.name', query.order)
    .orderBy('images.name', query.order)
    .limit(query.limit)
    .offset(query.offset)
    .execute();
  const count = await db
    .selectFrom('images')
    .where(conditions)
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return { rows, total: Number(count.n) };
}
