/**
 * PostgreSQL's named prepared statements (db/connect.ts): a statement prepared before a migration added a column
 * to its table still runs after it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { openDatabase } from '../src/db/connect.ts';
import { findImage, insertImage } from '../src/db/images-dal.ts';
import type { Db } from '../src/db/schema.ts';
import { insertUser } from '../src/db/users-dal.ts';
import { dropSchema, PG_URL, requirePostgres } from './helpers/postgres.ts';

const now = new Date().toISOString();
const image = (ownerId: number, name: string, osType: string | null) => ({
  uuid: crypto.randomUUID(),
  owner_id: ownerId,
  name,
  description: null,
  os_variant: null,
  os_type: osType,
  os_arch: null,
  hypervisor: null,
  read_only: false,
  unauthenticated_access: false,
  expires: null,
  version: 0,
  size: null,
  created: now,
  modified: now,
  uploaded: null,
});

async function fill(db: Db) {
  const ids: number[] = [];
  for (const [name, dn] of [
    ['ann', '/CN=Ann'],
    ['ben', '/CN=Ben'],
  ] as const) {
    const row = await insertUser(db, {
      name,
      dn,
      full_name: null,
      email: null,
      suspended: false,
      created: now,
      modified: now,
    });
    ids.push(row.id);
  }
  const [ann, ben] = ids as [number, number];
  for (const [owner, name, os] of [
    [ann, 'a.img', 'linux'],
    [ann, 'b.img', null],
    [ben, 'a.img', 'linux'],
    [ben, 'c.img', 'windows'],
  ] as const)
    await insertImage(db, image(owner, name, os));
  return { ann, ben };
}

describe('prepared statements', () => {
  const schema = `repoman_prepared_${process.pid}`;
  before(async () => {
    await requirePostgres();
  });
  after(async () => {
    await dropSchema(`${schema}_stale`);
  });

  it('run a prepared PostgreSQL statement again after a migration added a column to its table', async () => {
    const handle = await openDatabase({ url: PG_URL, schema: `${schema}_stale`, poolSize: 1 });
    try {
      const { db } = handle;
      await fill(db);
      const before = await findImage(db, 'ann', 'a.img'); // prepared on the pool's one connection
      await sql`alter table images add column added_later text`.execute(db);
      const after = await findImage(db, 'ann', 'a.img');
      assert.equal(after?.id, before?.id);
      assert.ok(after && 'added_later' in after, 'the statement was prepared again, with the new column');
      assert.equal((await findImage(db, 'ann', 'a.img'))?.id, before?.id);
    } finally {
      await handle.close();
    }
  });
});
