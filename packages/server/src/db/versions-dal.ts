/** Data access for image versions: one row per successful upload, each naming its blob. */
import type { Kysely, Selectable } from 'kysely';
import type { Database, ImageVersionsTable } from './schema.ts';

export type VersionRow = Selectable<ImageVersionsTable>;
type Q = Kysely<Database>;

export const findVersion = (db: Q, imageId: number, version: number) =>
  db
    .selectFrom('image_versions')
    .selectAll()
    .where('image_id', '=', imageId)
    .where('version', '=', version)
    .executeTakeFirst();

export const listVersions = (db: Q, imageId: number) =>
  db
    .selectFrom('image_versions')
    .selectAll()
    .where('image_id', '=', imageId)
    .orderBy('version', 'desc')
    .execute();

/** Blob keys of every version of these images (to delete the bytes with the images). */
export async function blobKeysOfImages(db: Q, imageIds: readonly number[]): Promise<string[]> {
  if (imageIds.length === 0) return [];
  const rows = await db
    .selectFrom('image_versions')
    .select('blob_key')
    .where('image_id', 'in', imageIds)
    .execute();
  return rows.map((r) => r.blob_key);
}

/** Blob keys of every version of every image a user owns. */
export async function blobKeysOfOwner(db: Q, ownerId: number): Promise<string[]> {
  const rows = await db
    .selectFrom('image_versions')
    .innerJoin('images', 'images.id', 'image_versions.image_id')
    .select('image_versions.blob_key')
    .where('images.owner_id', '=', ownerId)
    .execute();
  return rows.map((r) => r.blob_key);
}

/**
 * Takes the next version number of an image (the UPDATE locks its row until commit, so concurrent uploads get
 * consecutive numbers) and records the version; undefined if the image is gone.
 */
export async function addVersion(
  db: Q,
  imageId: number,
  version: Omit<VersionRow, 'id' | 'image_id' | 'version'>,
) {
  const updated = await db
    .updateTable('images')
    .set((eb) => ({
      version: eb('version', '+', 1),
      size: version.size,
      uploaded: version.created,
      modified: version.created,
    }))
    .where('id', '=', imageId)
    .returning('version')
    .executeTakeFirst();
  if (!updated) return undefined;
  await db
    .insertInto('image_versions')
    .values({ ...version, image_id: imageId, version: updated.version })
    .execute();
  return updated.version;
}

/** Removes all but the newest `keep` versions; returns their blob keys, for deletion after commit. */
export async function pruneVersions(db: Q, imageId: number, keep: number): Promise<string[]> {
  const old = await db
    .selectFrom('image_versions')
    .select(['id', 'blob_key'])
    .where('image_id', '=', imageId)
    .orderBy('version', 'desc')
    .offset(keep)
    .limit(1_000_000)
    .execute();
  if (old.length === 0) return [];
  await db
    .deleteFrom('image_versions')
    .where(
      'id',
      'in',
      old.map((r) => r.id),
    )
    .execute();
  return old.map((r) => r.blob_key);
}
