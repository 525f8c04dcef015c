/** Data access for resumable uploads: their offsets, expiry, and the lease that lets one request write at a time. */
import type { Insertable, Selectable } from 'kysely';
import type { Db, UploadsTable } from './schema.ts';

export type UploadRow = Selectable<UploadsTable>;

export async function insertUpload(db: Db, row: Insertable<UploadsTable>): Promise<void> {
  await db.insertInto('uploads').values(row).execute();
}

export const findUpload = (db: Db, id: string) =>
  db.selectFrom('uploads').selectAll().where('id', '=', id).executeTakeFirst();

/** Deletes the upload unless a request (on any server) holds it; false if one does. */
export async function deleteUnlessLeased(db: Db, id: string, now: string): Promise<boolean> {
  const result = await db
    .deleteFrom('uploads')
    .where('id', '=', id)
    .where((eb) => eb.or([eb('lease', 'is', null), eb('lease_until', '<', now)]))
    .executeTakeFirst();
  return Number(result.numDeletedRows) === 1;
}

/** Deletes the upload that the caller's lease holds. */
export async function deleteLeased(db: Db, id: string, lease: string): Promise<void> {
  await db.deleteFrom('uploads').where('id', '=', id).where('lease', '=', lease).execute();
}

/** Takes the upload for one request unless another holds an unexpired lease; false if it does. */
export async function takeLease(
  db: Db,
  id: string,
  lease: string,
  now: string,
  until: string,
): Promise<boolean> {
  const result = await db
    .updateTable('uploads')
    .set({ lease, lease_until: until, takeover: null })
    .where('id', '=', id)
    .where((eb) => eb.or([eb('lease', 'is', null), eb('lease_until', '<', now), eb('lease', '=', lease)]))
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** Lets go of every lease: for a server alone on its database, at start-up (no request of it survives). */
export async function releaseAllLeases(db: Db): Promise<void> {
  await db.updateTable('uploads').set({ lease: null, lease_until: null, takeover: null }).execute();
}

/** Asks the request holding the upload (on another server) to let it go. */
export async function requestTakeover(db: Db, id: string, now: string): Promise<void> {
  await db
    .updateTable('uploads')
    .set({ takeover: now })
    .where('id', '=', id)
    .where('lease', 'is not', null)
    .execute();
}

/**
 * Keeps the lease (until `until`, or as it is when null) unless another request has asked for the upload;
 * false if it has, or the lease is gone.
 */
export async function renewLease(db: Db, id: string, lease: string, until: string | null): Promise<boolean> {
  const result = await db
    .updateTable('uploads')
    .set((eb) => ({ lease_until: until ?? eb.ref('lease_until') }))
    .where('id', '=', id)
    .where('lease', '=', lease)
    .where('takeover', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** Records what the lease holder did and, unless it goes on, lets the upload go. */
export async function updateLeased(
  db: Db,
  id: string,
  lease: string,
  patch: Partial<Pick<UploadRow, 'upload_offset' | 'modified' | 'expires' | 'version' | 'lease_until'>>,
  release: boolean,
): Promise<boolean> {
  const result = await db
    .updateTable('uploads')
    .set({ ...patch, ...(release ? { lease: null, lease_until: null, takeover: null } : {}) })
    .where('id', '=', id)
    .where('lease', '=', lease)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** Uploads past their expiry (finished ones included) that no request holds. */
export const expiredUploads = (db: Db, now: string) =>
  db
    .selectFrom('uploads')
    .selectAll()
    .where('expires', '<', now)
    .where((eb) => eb.or([eb('lease', 'is', null), eb('lease_until', '<', now)]))
    .execute();

/** Blob keys of the uploads still waiting for bytes: the stale-upload sweep leaves their files alone. */
export async function pendingUploadKeys(db: Db): Promise<Set<string>> {
  const rows = await db.selectFrom('uploads').select('blob_key').where('version', 'is', null).execute();
  return new Set(rows.map((r) => r.blob_key));
}
