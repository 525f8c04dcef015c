/**
 * Queries built once and run with new values (db/prepared.ts), and PostgreSQL's named prepared statements
 * (db/connect.ts): each run answers with its own values, a list's shape picks its own query, and a statement
 * prepared before a migration added a column still runs after it.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { openDatabase } from '../src/db/connect.ts';
import { findImage, findImageById, insertImage, listImages } from '../src/db/images-dal.ts';
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

describe('queries built once', () => {
  let dir: string;
  const schema = `repoman_prepared_${process.pid}`;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'repoman-prepared-'));
    await requirePostgres();
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
    await dropSchema(schema);
    await dropSchema(`${schema}_stale`);
  });

  for (const engine of ['sqlite', 'postgres'] as const) {
    it(`answer each run with its own values, each list shape with its own clauses, on ${engine}`, async () => {
      const handle = await openDatabase(
        engine === 'sqlite' ? { url: `sqlite:${join(dir, 'r.db')}` } : { url: PG_URL, schema },
      );
      try {
        const { db } = handle;
        const { ann, ben } = await fill(db);
        assert.equal((await findImage(db, 'ann', 'b.img'))?.owner_id, ann);
        assert.equal((await findImage(db, 'ben', 'a.img'))?.owner_id, ben);
        assert.equal(await findImage(db, 'ben', 'b.img'), undefined);
        const a = await findImage(db, 'ann', 'a.img');
        assert.equal((await findImageById(db, a?.id as number))?.name, 'a.img');
        const names = async (query: Partial<Parameters<typeof listImages>[1]>) => {
          const { rows, total } = await listImages(db, {
            visibleTo: null,
            sort: 'name',
            order: 'asc',
            limit: 10,
            offset: 0,
            ...query,
          });
          return { names: rows.map((r) => `${r.owner_name}/${r.name}`), total };
        };
        assert.deepEqual(await names({}), {
          names: ['ann/a.img', 'ben/a.img', 'ann/b.img', 'ben/c.img'],
          total: 4,
        });
        assert.deepEqual(await names({ ownerId: ben }), { names: ['ben/a.img', 'ben/c.img'], total: 2 });
        assert.deepEqual(await names({ ownerId: ann }), { names: ['ann/a.img', 'ann/b.img'], total: 2 });
        assert.deepEqual(await names({ os_type: 'linux', order: 'desc' }), {
          names: ['ben/a.img', 'ann/a.img'],
          total: 2,
        });
        assert.deepEqual(await names({ namePrefix: 'c' }), { names: ['ben/c.img'], total: 1 });
        assert.deepEqual(await names({ namePrefix: 'a.' }), { names: ['ann/a.img', 'ben/a.img'], total: 2 });
        assert.deepEqual(await names({ visibleTo: { userId: ann }, limit: 1, offset: 1 }), {
          names: ['ann/b.img'],
          total: 2,
        });
        assert.deepEqual(await names({ visibleTo: { userId: null } }), { names: [], total: 0 });
        assert.deepEqual(await names({ offset: 9 }), { names: [], total: 4 });
      } finally {
        await handle.close();
      }
    });
  }

  it('run a prepared PostgreSQL statement again after a migration added a column to its table', async () => {
    const handle = await openDatabase({ url: PG_URL, schema: `${schema}_stale`, poolSize: 1 });
    try {
      const { db } = handle;
      await fill(db);
      // prepared on the pool's one connection: a statement with parameters, and one without (a first page)
      const list = { visibleTo: null, sort: 'name', order: 'asc', limit: 10, offset: 0 } as const;
      const before = await findImage(db, 'ann', 'a.img');
      assert.equal((await listImages(db, list)).total, 4);
      await sql`alter table images add column added_later text`.execute(db);
      const after = await findImage(db, 'ann', 'a.img');
      assert.equal(after?.id, before?.id);
      assert.ok(after && 'added_later' in after, 'the statement was prepared again, with the new column');
      assert.equal((await findImage(db, 'ann', 'a.img'))?.id, before?.id);
      const listed = await listImages(db, list);
      assert.equal(listed.total, 4);
      assert.ok(listed.rows.every((row) => 'added_later' in row));
    } finally {
      await handle.close();
    }
  });
});
