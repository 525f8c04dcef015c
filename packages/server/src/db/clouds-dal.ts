/** Data access for clouds (a group's OpenStack projects), the images chosen for them, and their copies. */
import type { Selectable } from 'kysely';
import type { CloudCopiesTable, CloudsTable, Db } from './schema.ts';

export type CloudRow = Selectable<CloudsTable>;
export type CloudCopyRow = Selectable<CloudCopiesTable>;
export type CloudWithGroup = CloudRow & { group_name: string };

const withGroup = (db: Db) =>
  db
    .selectFrom('clouds as c')
    .innerJoin('groups as g', 'g.id', 'c.group_id')
    .selectAll('c')
    .select('g.name as group_name');

export async function insertCloud(db: Db, row: CloudRow): Promise<void> {
  await db.insertInto('clouds').values(row).execute();
}

export async function updateCloud(db: Db, id: string, patch: Partial<Omit<CloudRow, 'id'>>): Promise<void> {
  await db.updateTable('clouds').set(patch).where('id', '=', id).execute();
}

export async function deleteCloud(db: Db, id: string): Promise<void> {
  await db.deleteFrom('clouds').where('id', '=', id).execute();
}

export const findCloud = (db: Db, groupId: number, name: string): Promise<CloudWithGroup | undefined> =>
  withGroup(db).where('c.group_id', '=', groupId).where('c.name', '=', name).executeTakeFirst();

export const findCloudById = (db: Db, id: string): Promise<CloudWithGroup | undefined> =>
  withGroup(db).where('c.id', '=', id).executeTakeFirst();

/** A group's clouds (every group's: `groupId` null), by group and name. */
export const listClouds = (db: Db, groupId: number | null): Promise<CloudWithGroup[]> =>
  withGroup(db)
    .$if(groupId !== null, (q) => q.where('c.group_id', '=', groupId as number))
    .orderBy('g.name')
    .orderBy('c.name')
    .execute();

/** Clouds due for a sync now, whose lease (if any) has run out. */
export const dueClouds = (db: Db, now: string): Promise<CloudWithGroup[]> =>
  withGroup(db)
    .where((eb) => eb.or([eb('c.next_sync', 'is', null), eb('c.next_sync', '<=', now)]))
    .where((eb) => eb.or([eb('c.lease_until', 'is', null), eb('c.lease_until', '<', now)]))
    .orderBy('c.next_sync')
    .limit(100)
    .execute();

/**
 * Takes the cloud's lease for `lease` until `until`, if nobody holds it (or the holder's ran out, or it is
 * ours already): one reconciler per cloud across several servers.
 */
export async function claimCloud(
  db: Db,
  id: string,
  lease: string,
  now: string,
  until: string,
): Promise<boolean> {
  const result = await db
    .updateTable('clouds')
    .set({ lease, lease_until: until })
    .where('id', '=', id)
    .where((eb) => eb.or([eb('lease', 'is', null), eb('lease_until', '<', now), eb('lease', '=', lease)]))
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/**
 * Lets the cloud go after a pass. A sync asked for during the pass (`next_sync` set after `claimed`) is kept if
 * it is sooner than the pass's own next one: the change it stands for was perhaps not in the pass.
 */
export async function releaseCloud(
  db: Db,
  id: string,
  lease: string,
  claimed: string,
  outcome: Pick<CloudRow, 'next_sync' | 'last_sync' | 'last_error'>,
): Promise<void> {
  const row = await db.selectFrom('clouds').select('next_sync').where('id', '=', id).executeTakeFirst();
  const asked = row?.next_sync && row.next_sync > claimed ? row.next_sync : null;
  const next = asked && outcome.next_sync && asked < outcome.next_sync ? asked : outcome.next_sync;
  await db
    .updateTable('clouds')
    .set({ ...outcome, next_sync: next, lease: null, lease_until: null })
    .where('id', '=', id)
    .where('lease', '=', lease)
    .execute();
}

/** Seals a cloud's secret anew, if it is still the one read (a change meanwhile wins). */
export async function replaceSecret(db: Db, id: string, from: string, to: string): Promise<void> {
  await db
    .updateTable('clouds')
    .set({ credential_secret: to })
    .where('id', '=', id)
    .where('credential_secret', '=', from)
    .execute();
}

// ---- images chosen ----

export interface ChosenImage {
  image_id: number;
  chosen_by: number | null;
  uuid: string;
  owner_name: string;
  name: string;
}

export const chosenImages = (db: Db, cloudId: string): Promise<ChosenImage[]> =>
  db
    .selectFrom('cloud_images as ci')
    .innerJoin('images as i', 'i.id', 'ci.image_id')
    .innerJoin('users as o', 'o.id', 'i.owner_id')
    .select(['ci.image_id', 'ci.chosen_by', 'i.uuid', 'o.name as owner_name', 'i.name'])
    .where('ci.cloud_id', '=', cloudId)
    .orderBy('o.name')
    .orderBy('i.name')
    .execute();

export async function chooseImage(
  db: Db,
  cloudId: string,
  imageId: number,
  chosenBy: number,
  added: string,
): Promise<void> {
  await db
    .insertInto('cloud_images')
    .values({ cloud_id: cloudId, image_id: imageId, chosen_by: chosenBy, added })
    .onConflict((c) => c.columns(['cloud_id', 'image_id']).doUpdateSet({ chosen_by: chosenBy }))
    .execute();
}

export async function unchooseImage(db: Db, cloudId: string, imageId: number): Promise<boolean> {
  const result = await db
    .deleteFrom('cloud_images')
    .where('cloud_id', '=', cloudId)
    .where('image_id', '=', imageId)
    .executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}

// ---- copies ----

export const copiesOf = (db: Db, cloudId: string): Promise<CloudCopyRow[]> =>
  db
    .selectFrom('cloud_copies')
    .selectAll()
    .where('cloud_id', '=', cloudId)
    .orderBy('image_name')
    .orderBy('version', 'desc')
    .execute();

export async function saveCopy(db: Db, row: CloudCopyRow): Promise<void> {
  const { image_name, glance_id, state, detail, attempts, next_attempt, retire_after, updated } = row;
  await db
    .insertInto('cloud_copies')
    .values(row)
    .onConflict((c) =>
      c
        .columns(['cloud_id', 'image_uuid', 'version'])
        .doUpdateSet({ image_name, glance_id, state, detail, attempts, next_attempt, retire_after, updated }),
    )
    .execute();
}

export async function deleteCopy(db: Db, cloudId: string, imageUuid: string, version: number): Promise<void> {
  await db
    .deleteFrom('cloud_copies')
    .where('cloud_id', '=', cloudId)
    .where('image_uuid', '=', imageUuid)
    .where('version', '=', version)
    .execute();
}
