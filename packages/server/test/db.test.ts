import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RepomanError } from '@repoman/core';
import { sql } from 'kysely';
import { openDatabase } from '../src/db/connect.ts';
import { insertImage } from '../src/db/images-dal.ts';
import { findUpload, insertUpload } from '../src/db/uploads-dal.ts';
import { insertUser } from '../src/db/users-dal.ts';
import { guardService } from '../src/services/common.ts';
import { dropSchema, PG_URL, requirePostgres } from './helpers/postgres.ts';

const user = (name: string, dn: string) => ({
  name,
  dn,
  full_name: null,
  email: null,
  suspended: false,
  created: new Date().toISOString(),
  modified: new Date().toISOString(),
});

describe('database layer', () => {
  let dir: string;
  const schema = `repoman_dbtest_${process.pid}`;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'repoman-db-'));
    await requirePostgres();
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
    await dropSchema(schema);
  });

  for (const engine of ['sqlite', 'postgres'] as const) {
    it(`migrates ${engine} once, reopens it, and reads back booleans, timestamps and unique violations`, async () => {
      const options = engine === 'sqlite' ? { url: `sqlite:${join(dir, 'r.db')}` } : { url: PG_URL, schema };
      const first = await openDatabase(options);
      await insertUser(first.db, user('ann', '/CN=Ann'));
      await first.close();
      const second = await openDatabase(options); // migrations already applied: a no-op
      const row = await second.db
        .selectFrom('users')
        .selectAll()
        .where('name', '=', 'ann')
        .executeTakeFirstOrThrow();
      assert.equal(Boolean(row.suspended), false);
      assert.match(row.created, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
      const guarded = guardService(
        { add: () => insertUser(second.db, user('ann', '/CN=Other')) },
        () => 'user_exists',
      );
      await assert.rejects(
        guarded.add(),
        (e: unknown) => e instanceof RepomanError && e.code === 'user_exists',
      );
      await second.close();
    });
  }

  for (const engine of ['sqlite', 'postgres'] as const) {
    it(`keeps the format and decompression an upload in progress declared across 0012 on ${engine}`, async () => {
      const options =
        engine === 'sqlite'
          ? { url: `sqlite:${join(dir, 'r12.db')}` }
          : { url: PG_URL, schema: `${schema}_12` };
      const now = new Date().toISOString();
      const before = await openDatabase(options);
      try {
        const ownerId = (await insertUser(before.db, user('bob', '/CN=Bob'))).id;
        const imageId = await insertImage(before.db, {
          uuid: 'u-1',
          owner_id: ownerId,
          name: 'img',
          description: null,
          os_variant: null,
          os_type: null,
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
        const upload = (id: string, metadata: string | null) => ({
          id,
          user_id: ownerId,
          image_id: imageId,
          blob_key: id,
          length: 10,
          upload_offset: 0,
          metadata,
          expected: '{}',
          declared_format: null,
          decompress: false,
          version: null,
          lease: null,
          lease_until: null,
          takeover: null,
          created: now,
          modified: now,
          expires: now,
        });
        const b64 = (text: string) => Buffer.from(text).toString('base64');
        await insertUpload(
          before.db,
          upload('a', `image ${b64('img')},disk_format ${b64('qcow2')},decompress ${b64('true')}`),
        );
        await insertUpload(before.db, upload('b', `image ${b64('img')}`));
        await insertUpload(before.db, upload('c', null));
        // The database as the release before 0012 left it: the columns absent, the migrations not applied.
        await sql`alter table uploads drop column declared_format`.execute(before.db);
        await sql`alter table uploads drop column decompress`.execute(before.db);
        await sql`alter table image_versions drop column adler32`.execute(before.db);
        await sql`alter table image_variants drop column adler32`.execute(before.db);
        await sql`drop table sign_ins`.execute(before.db);
        await sql`drop table sessions`.execute(before.db);
        await sql`drop table token_identities`.execute(before.db);
        await sql`drop table capabilities`.execute(before.db);
        await sql`drop table capability_keys`.execute(before.db);
        await sql`drop table cloud_copies`.execute(before.db);
        await sql`drop table cloud_images`.execute(before.db);
        await sql`drop table clouds`.execute(before.db);
        await sql`drop table image_list_access`.execute(before.db);
        await sql`drop table list_subscribers`.execute(before.db);
        await sql`drop table image_lists`.execute(before.db);
        await sql`drop table endorsements`.execute(before.db);
        await sql`delete from kysely_migration where name in ('0012_upload_options', '0013_adler32', '0014_capabilities', '0015_endorsements', '0016_clouds', '0017_tokens')`.execute(
          before.db,
        );
      } finally {
        await before.close();
      }
      const after = await openDatabase(options);
      try {
        const a = await findUpload(after.db, 'a');
        assert.equal(a?.declared_format, 'qcow2');
        assert.equal(Boolean(a?.decompress), true);
        for (const id of ['b', 'c']) {
          const row = await findUpload(after.db, id);
          assert.equal(row?.declared_format, null);
          assert.equal(Boolean(row?.decompress), false);
        }
      } finally {
        await after.close();
        if (engine === 'postgres') await dropSchema(`${schema}_12`);
      }
    });
  }

  it('migrates a fresh PostgreSQL schema once when several servers start at the same moment', async () => {
    const fresh = `${schema}_race`;
    try {
      const opened = await Promise.all(
        Array.from({ length: 6 }, () => openDatabase({ url: PG_URL, schema: fresh, poolSize: 2 })),
      );
      const [first] = opened;
      const applied = await first?.db
        .withSchema(fresh)
        .selectFrom('kysely_migration' as never)
        .select('name' as never)
        .execute();
      const names = (applied ?? []).map((row) => (row as { name: string }).name);
      assert.ok(names.length > 0);
      assert.equal(new Set(names).size, names.length, 'every migration applied once');
      await insertUser(first?.db as NonNullable<typeof first>['db'], user('race', '/CN=Race'));
      await Promise.all(opened.map((handle) => handle.close()));
    } finally {
      await dropSchema(fresh);
    }
  });

  it('turns an unreachable PostgreSQL into database_unavailable (503)', async () => {
    const closedPort = 'postgres://postgres@127.0.0.1:1/none';
    const guarded = guardService({ open: () => openDatabase({ url: closedPort }) });
    await assert.rejects(guarded.open(), (e: unknown) => e instanceof RepomanError && e.status === 503);
  });

  it('refuses unknown database URLs', async () => {
    await assert.rejects(openDatabase({ url: 'mysql://x' }), /sqlite: or postgres/);
  });
});

describe('database URLs in messages', () => {
  it('never show a password', async () => {
    const { redactUrl } = await import('../src/db/url.ts');
    assert.equal(
      redactUrl('postgres://repo:s3cret@db.example.org:5432/repoman?password=x'),
      'postgres://repo@db.example.org:5432/repoman',
    );
    assert.equal(redactUrl('postgres://u:p@ss@h/db').includes('ss'), false);
    assert.equal(redactUrl('sqlite:/var/lib/repoman/repoman.db'), 'sqlite:/var/lib/repoman/repoman.db');
  });
});
