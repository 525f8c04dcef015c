/** Data access for image versions: one row per successful upload, each naming its blob. */
import type { Selectable } from 'kysely';
import type { Db, ImageVersionsTable } from './schema.ts';

export type VersionRow = Selectable<ImageVersionsTable>;

export const findVersion = (db: Db, imageId: number, version: number) =>
  db
    .selectFrom('image_versions')
    .selectAll()
    .where('image_id', '=', imageId)
    .where('version', '=', version)
    .executeTakeFirst();

/** The version or variant stored under a blob key, if any. */
export const findVersionByBlob = (db: Db, blobKey: string) =>
  db
    .selectFrom('image_versions')
    .select('id')
    .where('blob_key', '=', blobKey)
    .union(db.selectFrom('image_variants').select('id').where('blob_key', '=', blobKey))
    .executeTakeFirst();

/** The version of an image stored under a blob key, if one is (a resumable upload already published). */
export const findImageVersionByBlob = (db: Db, imageId: number, blobKey: string) =>
  db
    .selectFrom('image_versions')
    .select('version')
    .where('image_id', '=', imageId)
    .where('blob_key', '=', blobKey)
    .executeTakeFirst();

export const listVersions = (db: Db, imageId: number) =>
  db
    .selectFrom('image_versions')
    .selectAll()
    .where('image_id', '=', imageId)
    .orderBy('version', 'desc')
    .execute();

/** Blob keys of variants of these versions (they go with their version, by the foreign key). */
async function variantKeys(db: Db, versionIds: readonly number[]): Promise<string[]> {
  if (versionIds.length === 0) return [];
  const rows = await db
    .selectFrom('image_variants')
    .select('blob_key')
    .where('version_id', 'in', versionIds)
    .execute();
  return rows.map((r) => r.blob_key);
}

/** Blob keys of every version of these images and their variants (to delete the bytes with the images). */
export async function blobKeysOfImages(db: Db, imageIds: readonly number[]): Promise<string[]> {
  if (imageIds.length === 0) return [];
  const rows = await db
    .selectFrom('image_versions')
    .select(['id', 'blob_key'])
    .where('image_id', 'in', imageIds)
    .execute();
  return [
    ...rows.map((r) => r.blob_key),
    ...(await variantKeys(
      db,
      rows.map((r) => r.id),
    )),
  ];
}

/** Bytes each user stores: every kept version of every image they own. */
export async function usageOfOwners(db: Db, ownerIds: readonly number[]): Promise<Map<number, number>> {
  const result = new Map<number, number>(ownerIds.map((id) => [id, 0]));
  if (ownerIds.length === 0) return result;
  const rows = await db
    .selectFrom('image_versions')
    .innerJoin('images', 'images.id', 'image_versions.image_id')
    .select(['images.owner_id as ownerId', (eb) => eb.fn.sum<number>('image_versions.size').as('bytes')])
    .where('images.owner_id', 'in', ownerIds)
    .groupBy('images.owner_id')
    .execute();
  for (const row of rows) result.set(row.ownerId, Number(row.bytes));
  // Converted variants are stored too, and count.
  const variants = await db
    .selectFrom('image_variants')
    .innerJoin('image_versions', 'image_versions.id', 'image_variants.version_id')
    .innerJoin('images', 'images.id', 'image_versions.image_id')
    .select(['images.owner_id as ownerId', (eb) => eb.fn.sum<number>('image_variants.size').as('bytes')])
    .where('images.owner_id', 'in', ownerIds)
    .groupBy('images.owner_id')
    .execute();
  for (const row of variants) result.set(row.ownerId, (result.get(row.ownerId) ?? 0) + Number(row.bytes));
  return result;
}

/** Blob keys of every version of every image a user owns. */
export async function blobKeysOfOwner(db: Db, ownerId: number): Promise<string[]> {
  const rows = await db
    .selectFrom('image_versions')
    .innerJoin('images', 'images.id', 'image_versions.image_id')
    .select(['image_versions.id', 'image_versions.blob_key'])
    .where('images.owner_id', '=', ownerId)
    .execute();
  return [
    ...rows.map((r) => r.blob_key),
    ...(await variantKeys(
      db,
      rows.map((r) => r.id),
    )),
  ];
}

/**
 * Takes the next version number of an image (the UPDATE locks its row until commit, so concurrent uploads get
 * consecutive numbers) and records the version; undefined if the image is gone.
 */
export async function addVersion(
  db: Db,
  imageId: number,
  version: Omit<VersionRow, 'id' | 'image_id' | 'version'>,
) {
  const updated = await db
    .updateTable('images')
    .set((eb) => ({
      last_version: eb('last_version', '+', 1),
      version: eb('last_version', '+', 1),
      size: version.size,
      uploaded: version.created,
      modified: version.created,
    }))
    .where('id', '=', imageId)
    .returning('last_version')
    .executeTakeFirst();
  if (!updated) return undefined;
  await db
    .insertInto('image_versions')
    .values({ ...version, image_id: imageId, version: updated.last_version })
    .execute();
  return updated.last_version;
}

/** Locks the image's row until the transaction ends (an UPDATE on PostgreSQL; SQLite serialises writers). */
export async function lockImage(db: Db, imageId: number): Promise<void> {
  await db
    .updateTable('images')
    .set((eb) => ({ version: eb.ref('version') }))
    .where('id', '=', imageId)
    .execute();
}

export async function lockImagesOfOwner(db: Db, ownerId: number): Promise<void> {
  await db
    .updateTable('images')
    .set((eb) => ({ version: eb.ref('version') }))
    .where('owner_id', '=', ownerId)
    .execute();
}

/** Makes an existing version the one served (a rollback). */
export async function setCurrentVersion(
  db: Db,
  imageId: number,
  version: VersionRow,
  now: string,
): Promise<void> {
  await db
    .updateTable('images')
    .set({ version: version.version, size: version.size, uploaded: now, modified: now })
    .where('id', '=', imageId)
    .execute();
}

/**
 * Removes all but the newest `keep` versions, never the one served nor one a group endorses (its image lists
 * pin it); returns their blob keys, for deletion after commit.
 */
export async function pruneVersions(db: Db, imageId: number, keep: number): Promise<string[]> {
  const image = await db.selectFrom('images').select('version').where('id', '=', imageId).executeTakeFirst();
  const endorsed = new Set(
    (await db.selectFrom('endorsements').select('version').where('image_id', '=', imageId).execute()).map(
      (row) => row.version,
    ),
  );
  const old = (
    await db
      .selectFrom('image_versions')
      .select(['id', 'blob_key', 'version'])
      .where('image_id', '=', imageId)
      .orderBy('version', 'desc')
      .offset(keep)
      .limit(1_000_000)
      .execute()
  ).filter((row) => row.version !== image?.version && !endorsed.has(row.version));
  if (old.length === 0) return [];
  const variants = await variantKeys(
    db,
    old.map((r) => r.id),
  );
  await db
    .deleteFrom('image_versions')
    .where(
      'id',
      'in',
      old.map((r) => r.id),
    )
    .execute();
  return [...old.map((r) => r.blob_key), ...variants];
}

/** The tables whose rows name a blob and record its digests: versions, and their variants. */
export type DigestTable = 'image_versions' | 'image_variants';
/** The digests a row may lack (recorded as null), and be given later. */
export type FillableDigests = Partial<Pick<VersionRow, 'md5' | 'sha512' | 'adler32'>>;

/** The digests a version or variant records now, by its id; undefined if it is gone. */
export const recordedDigests = (db: Db, table: DigestTable, id: number) =>
  db.selectFrom(table).select(['sha256', 'md5', 'sha512', 'adler32']).where('id', '=', id).executeTakeFirst();

/** Records digests computed after the bytes were stored. */
export async function recordDigests(
  db: Db,
  table: DigestTable,
  id: number,
  digests: FillableDigests,
): Promise<void> {
  await db.updateTable(table).set(digests).where('id', '=', id).execute();
}

/** Every version with its image's name, for fsck. */
export const allVersions = (db: Db) =>
  db
    .selectFrom('image_versions')
    .innerJoin('images', 'images.id', 'image_versions.image_id')
    .innerJoin('users', 'users.id', 'images.owner_id')
    .selectAll('image_versions')
    .select(['images.name as image_name', 'users.name as owner_name', 'images.version as current_version'])
    .orderBy('image_versions.id')
    .execute();

/** Removes a version and its variants; returns the variants' blob keys, for deletion after commit. */
export async function deleteVersion(db: Db, id: number): Promise<string[]> {
  const variants = await variantKeys(db, [id]);
  await db.deleteFrom('image_versions').where('id', '=', id).execute();
  return variants;
}

/** After versions were removed: serve the newest one left, or none. */
export async function resetCurrentVersion(db: Db, imageId: number, now: string): Promise<void> {
  const newest = await db
    .selectFrom('image_versions')
    .selectAll()
    .where('image_id', '=', imageId)
    .orderBy('version', 'desc')
    .executeTakeFirst();
  await db
    .updateTable('images')
    .set(
      newest
        ? { version: newest.version, size: newest.size, uploaded: newest.created, modified: now }
        : { version: 0, size: null, uploaded: null, modified: now },
    )
    .where('id', '=', imageId)
    .execute();
}

/** Images whose served version has no row (a crash or race left the pointer dangling), for fsck. */
export const imagesWithoutCurrentVersion = (db: Db) =>
  db
    .selectFrom('images')
    .innerJoin('users', 'users.id', 'images.owner_id')
    .leftJoin('image_versions as current', (join) =>
      join.onRef('current.image_id', '=', 'images.id').onRef('current.version', '=', 'images.version'),
    )
    .select(['images.id', 'images.name', 'images.version', 'users.name as owner_name'])
    .where('images.version', '>', 0)
    .where('current.id', 'is', null)
    .execute();
