/**
 * Data access for image variants (a version converted to another format) and the jobs that make them. A job
 * is claimed by one server with a lease, which it renews while it runs; a lease left to expire (its server
 * died) puts the job back in the queue.
 */
import type { ExpressionBuilder, Insertable, Selectable } from 'kysely';
import type { Database, Db, ImageVariantsTable, JobsTable } from './schema.ts';

export type VariantRow = Selectable<ImageVariantsTable>;
export type JobRow = Selectable<JobsTable>;

export const listVariants = (db: Db, versionIds: readonly number[]) =>
  versionIds.length === 0
    ? Promise.resolve([] as VariantRow[])
    : db
        .selectFrom('image_variants')
        .selectAll()
        .where('version_id', 'in', versionIds)
        .orderBy('format')
        .execute();

export const findVariant = (db: Db, versionId: number, format: string) =>
  db
    .selectFrom('image_variants')
    .selectAll()
    .where('version_id', '=', versionId)
    .where('format', '=', format)
    .executeTakeFirst();

/** Records a variant, replacing one of the same format; returns the replaced blob's key, to delete. */
export async function putVariant(db: Db, row: Insertable<ImageVariantsTable>): Promise<string | undefined> {
  const old = await db
    .deleteFrom('image_variants')
    .where('version_id', '=', row.version_id)
    .where('format', '=', row.format)
    .returning('blob_key')
    .executeTakeFirst();
  await db.insertInto('image_variants').values(row).execute();
  return old?.blob_key;
}

export async function deleteVariant(db: Db, versionId: number, format: string): Promise<string | undefined> {
  const old = await db
    .deleteFrom('image_variants')
    .where('version_id', '=', versionId)
    .where('format', '=', format)
    .returning('blob_key')
    .executeTakeFirst();
  return old?.blob_key;
}

/** Every variant with its version's image, for fsck. */
export const allVariants = (db: Db) =>
  db
    .selectFrom('image_variants')
    .innerJoin('image_versions', 'image_versions.id', 'image_variants.version_id')
    .innerJoin('images', 'images.id', 'image_versions.image_id')
    .innerJoin('users', 'users.id', 'images.owner_id')
    .selectAll('image_variants')
    .select(['images.name as image_name', 'users.name as owner_name', 'image_versions.version'])
    .orderBy('image_variants.id')
    .execute();

export async function insertJob(db: Db, row: Insertable<JobsTable>): Promise<void> {
  await db.insertInto('jobs').values(row).execute();
}

export const findJob = (db: Db, id: string) =>
  db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst();

/** A job for the same conversion that is still queued or running (asking twice runs it once). */
export const findPendingJob = (
  db: Db,
  imageId: number,
  version: number,
  format: string,
  compressed: boolean,
) =>
  db
    .selectFrom('jobs')
    .selectAll()
    .where('image_id', '=', imageId)
    .where('version', '=', version)
    .where('format', '=', format)
    .where('compressed', '=', compressed)
    .where('state', 'in', ['queued', 'running'])
    .executeTakeFirst();

export const listJobsOf = (db: Db, userId: number, limit: number) =>
  db
    .selectFrom('jobs')
    .selectAll()
    .where('user_id', '=', userId)
    .orderBy('created', 'desc')
    .limit(limit)
    .execute();

/**
 * Claims the oldest queued job for `lease`, or none. The state check in the UPDATE makes a claim atomic:
 * two servers never run one job.
 */
export async function claimJob(
  db: Db,
  lease: string,
  now: string,
  until: string,
): Promise<JobRow | undefined> {
  for (;;) {
    const next = await db
      .selectFrom('jobs')
      .select('id')
      .where('state', '=', 'queued')
      .orderBy('created')
      .executeTakeFirst();
    if (!next) return undefined;
    const claimed = await db
      .updateTable('jobs')
      .set((eb) => ({
        state: 'running',
        lease,
        lease_until: until,
        started: now,
        attempts: eb('attempts', '+', 1),
      }))
      .where('id', '=', next.id)
      .where('state', '=', 'queued')
      .returningAll()
      .executeTakeFirst();
    if (claimed) return claimed;
  }
}

/** Keeps a running job's lease and records its progress; false if the job was cancelled or taken away. */
export async function renewJob(
  db: Db,
  id: string,
  lease: string,
  until: string,
  progress: number,
): Promise<boolean> {
  const result = await db
    .updateTable('jobs')
    .set({ lease_until: until, progress })
    .where('id', '=', id)
    .where('lease', '=', lease)
    .where('state', '=', 'running')
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** Ends a job the lease holds; false if it no longer does (cancelled, or taken back by another server). */
export async function finishJob(
  db: Db,
  id: string,
  lease: string,
  outcome: { state: 'succeeded' | 'failed'; error_code?: string; error_message?: string; finished: string },
): Promise<boolean> {
  const result = await db
    .updateTable('jobs')
    .set({
      ...outcome,
      lease: null,
      lease_until: null,
      ...(outcome.state === 'succeeded' ? { progress: 1 } : {}),
    })
    .where('id', '=', id)
    .where('lease', '=', lease)
    .where('state', '=', 'running')
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** Cancels a job that has not finished; false if it had. */
export async function cancelJob(db: Db, id: string, now: string): Promise<boolean> {
  const result = await db
    .updateTable('jobs')
    .set({ state: 'cancelled', lease: null, lease_until: null, finished: now })
    .where('id', '=', id)
    .where('state', 'in', ['queued', 'running'])
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/**
 * Jobs whose server stopped renewing their lease (it died) go back to the queue, or fail after
 * `maxAttempts`; `everyLease` also takes back live leases (a lone server at start-up: none of its jobs survived).
 */
export async function recoverJobs(
  db: Db,
  now: string,
  maxAttempts: number,
  everyLease = false,
): Promise<void> {
  const stale = (eb: ExpressionBuilder<Database, 'jobs'>) =>
    everyLease
      ? eb('state', '=', 'running')
      : eb.and([eb('state', '=', 'running'), eb('lease_until', '<', now)]);
  await db
    .updateTable('jobs')
    .set({
      state: 'failed',
      lease: null,
      lease_until: null,
      finished: now,
      error_code: 'conversion_failed',
      error_message: `The conversion was interrupted ${maxAttempts} times (its server stopped)`,
    })
    .where(stale)
    .where('attempts', '>=', maxAttempts)
    .execute();
  await db
    .updateTable('jobs')
    .set({ state: 'queued', lease: null, lease_until: null, progress: 0 })
    .where(stale)
    .execute();
}

/** Puts the jobs a stopping server was running back in the queue. */
export async function releaseJobs(db: Db, lease: string): Promise<void> {
  await db
    .updateTable('jobs')
    .set({ state: 'queued', lease: null, lease_until: null, progress: 0 })
    .where('lease', '=', lease)
    .where('state', '=', 'running')
    .execute();
}

/** Finished jobs older than `before` are forgotten. */
export async function forgetJobs(db: Db, before: string): Promise<void> {
  await db
    .deleteFrom('jobs')
    .where('state', 'in', ['succeeded', 'failed', 'cancelled'])
    .where('finished', '<', before)
    .execute();
}
