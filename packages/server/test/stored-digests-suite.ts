/**
 * ADLER32 beside the other digests: computed for every upload (also with MD5 and SHA-512 configured off), and
 * given to versions stored before it was, by `fsck --fill-digests` or when a download first asks for it (one
 * reading per blob, one at a time, never recorded for damaged bytes). Run once per database engine
 * (stored-digests-sqlite.test.ts, stored-digests-postgres.test.ts).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { Actor } from '../src/authz.ts';
import { createDirectoryStore } from '../src/blobs/directory.ts';
import { HashingPool } from '../src/blobs/hashing.ts';
import type { BlobStore } from '../src/blobs/store.ts';
import { type DatabaseHandle, openDatabase } from '../src/db/connect.ts';
import { fsck } from '../src/fsck.ts';
import { createQuotaService } from '../src/services/quota.ts';
import { createVersionsService } from '../src/services/versions/index.ts';
import { adler32 } from './helpers/adler32.ts';
import { clientFor } from './helpers/http.ts';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import { PG_URL } from './helpers/postgres.ts';
import { type Engine, startServerFor, type TestServer } from './helpers/server.ts';

const run = promisify(execFile);
const MAIN = resolve(import.meta.dirname, '../src/main.ts');

export function storedDigestsSuite(engine: Engine) {
  describe(`stored digests on ${engine}`, () => {
    let pki: TestPki;
    let server: TestServer;
    let database: DatabaseHandle;
    let blobs: BlobStore;
    let hashing: HashingPool;
    let as: (name: string) => ReturnType<typeof clientFor>;
    /** What the server is configured with: MD5 and SHA-512 off. */
    const settings = { REPOMAN_UPLOADS_MD5: 'false', REPOMAN_UPLOADS_SHA512: 'false' };
    const admin: Actor = {
      id: 1,
      name: 'admin',
      isAdmin: true,
      permissions: new Set(),
      groups: new Set(),
      limited: false,
    };

    /** Uploads `bytes` as bob's image `name` (made if need be); its JSON. */
    async function upload(name: string, bytes: Buffer) {
      await as('bob').post('/api/images', { name });
      const put = await as('bob').put(`/api/images/raw/${name}`, bytes);
      assert.ok(put.status < 300, JSON.stringify(put.json));
      return put.json;
    }

    /** The image as its JSON shows it now. */
    const shown = async (name: string) => (await as('bob').get(`/api/images/${name}`)).json;

    /** Forgets what a version recorded, as for one stored before the server computed it. */
    async function forget(name: string, columns: ('adler32' | 'md5')[] = ['adler32']) {
      const image = await database.db
        .selectFrom('images')
        .select(['id', 'version'])
        .where('name', '=', name)
        .executeTakeFirstOrThrow();
      const nulls: { adler32?: null; md5?: null } = {};
      for (const column of columns) nulls[column] = null;
      await database.db
        .updateTable('image_versions')
        .set(nulls)
        .where('image_id', '=', image.id)
        .where('version', '=', image.version)
        .execute();
    }

    /** Overwrites the blob of a name's current version with other bytes of its length (a disk gone bad). */
    async function damage(name: string, length: number) {
      const { blob_key: key } = await database.db
        .selectFrom('image_versions')
        .innerJoin('images', 'images.id', 'image_versions.image_id')
        .select('image_versions.blob_key')
        .where('images.name', '=', name)
        .whereRef('image_versions.version', '=', 'images.version')
        .executeTakeFirstOrThrow();
      await writeFile(join(server.dir, 'data', 'blobs', 'blobs', key.slice(0, 2), key), randomBytes(length));
    }

    /** A versions service of the test's own over the server's database and blobs: another process's. */
    function versionsOver(store: BlobStore) {
      return createVersionsService({
        db: database.db,
        store,
        hashing,
        quota: createQuotaService({ db: database.db }),
        policy: {
          maxImageSize: 1 << 30,
          keepVersions: 3,
          digests: ['adler32'],
          allowedFormats: new Set(['raw']),
          allowedFeatures: new Set(),
        },
      });
    }

    /** The blob store, counting the readings under way and the most there were at once. */
    function watched() {
      const watch = { reads: 0, open: 0, most: 0 };
      const store: BlobStore = {
        ...blobs,
        async read(key, range) {
          watch.reads++;
          watch.most = Math.max(watch.most, ++watch.open);
          const readable = await blobs.read(key, range);
          readable.once('close', () => watch.open--);
          return readable;
        },
      };
      return { store, watch };
    }

    before(async () => {
      pki = await makeTestPki();
      server = await startServerFor(pki, engine, settings);
      as = (name) => clientFor(server.httpsUrl, pki.ca.certPem, pki.credential(name));
      await as('admin').post('/api/users', { user_name: 'bob', client_dn: pki.dn('bob') });
      database = await openDatabase(
        engine === 'postgres'
          ? { url: PG_URL, schema: server.schema as string }
          : { url: `sqlite:${join(server.dir, 'data', 'repoman.db')}` },
      );
      blobs = createDirectoryStore(join(server.dir, 'data', 'blobs'));
      hashing = new HashingPool();
    });
    after(async () => {
      await hashing?.close();
      await database?.close();
      await server?.stop();
    });

    it('computes ADLER32 of every upload, also with MD5 and SHA-512 off', async () => {
      const bytes = randomBytes(2 * 1024 * 1024 + 5);
      const json = await upload('plain.img', bytes);
      assert.deepEqual(json.digests, {
        sha256: createHash('sha256').update(bytes).digest('hex'),
        md5: null,
        sha512: null,
        adler32: adler32(bytes),
      });
      assert.deepEqual((await shown('plain.img')).digests, json.digests);
      // Leading zeros kept: the ADLER32 of three zero bytes is 00030001.
      assert.equal((await upload('zeros.img', Buffer.alloc(3))).digests.adler32, '00030001');
    });

    it('fsck --fill-digests gives a version stored before ADLER32 its own, and reads nothing else', async () => {
      const bytes = randomBytes(1024 * 1024 + 17);
      await upload('old.img', bytes);
      await forget('old.img');
      assert.equal((await shown('old.img')).digests.adler32, null);

      const { store, watch } = watched();
      const report = await fsck(database.db, store, { fillDigests: ['adler32'] });
      assert.deepEqual(report.problems, []);
      assert.equal(report.filled, 1);
      assert.equal(watch.reads, 1, 'only the blob lacking a digest was read');
      assert.equal((await shown('old.img')).digests.adler32, adler32(bytes));
      assert.equal((await fsck(database.db, store, { fillDigests: ['adler32'] })).filled, 0);
      assert.equal(watch.reads, 1);
      assert.equal((await fsck(database.db, store)).filled, undefined, 'not asked, not said');

      // From the command line, as an admin runs it: the configured digests (here ADLER32 alone).
      await forget('old.img');
      const env = {
        ...process.env,
        ...settings,
        REPOMAN_DATA_DIR: join(server.dir, 'data'),
        ...(engine === 'postgres'
          ? { REPOMAN_DATABASE_URL: PG_URL, REPOMAN_DATABASE_SCHEMA: server.schema as string }
          : {}),
      };
      const cli = await run(process.execPath, [MAIN, 'fsck', '--fill-digests'], { env });
      assert.match(cli.stdout, /0 problems; digests filled in for 1 versions and variants/);
      assert.equal((await shown('old.img')).digests.adler32, adler32(bytes));
      assert.equal((await shown('old.img')).digests.md5, null, 'MD5 is configured off');
    });

    it('fsck --fill-digests records nothing for bytes that no longer match their SHA-256', async () => {
      const bytes = randomBytes(64 * 1024);
      await upload('rotten.img', bytes);
      await forget('rotten.img');
      await damage('rotten.img', bytes.length);
      const report = await fsck(database.db, blobs, { fillDigests: ['adler32'] });
      assert.deepEqual(
        report.problems.map((p) => [p.kind, p.subject]),
        [['digest', 'bob/rotten.img v1']],
      );
      assert.equal(report.filled, 0);
      assert.equal((await shown('rotten.img')).digests.adler32, null);
      await as('bob').delete('/api/images/rotten.img');
    });

    it('computes a digest a download asks for once, records it, and shares the reading', async () => {
      const bytes = randomBytes(3 * 1024 * 1024 + 1);
      await upload('asked.img', bytes);
      await forget('asked.img', ['adler32', 'md5']);
      const { store, watch } = watched();
      const versions = versionsOver(store);
      const ref = { owner: 'bob', name: 'asked.img' };

      // Asked by three requests at once: one reading, and all three get it.
      const downloads = await Promise.all([1, 2, 3].map(() => versions.openDownload(admin, ref)));
      const answers = await Promise.all(
        downloads.map((download) => download.digests(['adler32', 'sha256', 'md5'])),
      );
      // MD5 is configured off: asked for, it is left out, not computed (whoever asks cannot undo the setting).
      const expected = {
        adler32: adler32(bytes),
        sha256: createHash('sha256').update(bytes).digest('hex'),
      };
      for (const answer of answers) assert.deepEqual(answer, expected);
      assert.equal(watch.reads, 1);
      // Recorded: the image shows it, and the next ask reads nothing.
      const digests = (await shown('asked.img')).digests;
      assert.equal(digests.adler32, expected.adler32);
      assert.equal(digests.md5, null, 'configured off, so not computed for a download either');
      assert.deepEqual(await (await versions.openDownload(admin, ref)).digests(['adler32', 'md5']), {
        adler32: expected.adler32,
      });
      assert.equal(watch.reads, 1);
      assert.equal(digests.sha512, null, 'not asked for, so left alone');
    });

    it('reads one blob at a time, and answers for the bytes of the version asked for', async () => {
      const first = randomBytes(1024 * 1024);
      const second = randomBytes(1024 * 1024 + 3);
      await upload('a.img', first);
      await upload('b.img', second);
      await forget('a.img');
      await forget('b.img');
      const { store, watch } = watched();
      const versions = versionsOver(store);
      const [a, b, aAgain] = await Promise.all(
        ['a.img', 'b.img', 'a.img'].map((name) => versions.openDownload(admin, { owner: 'bob', name })),
      );
      // a.img's reading, then b.img's; a.img asked again meanwhile waits for its own, not for b.img's too.
      const answered: string[] = [];
      const asks = (
        [
          [a, 'a'],
          [b, 'b'],
          [aAgain, 'a again'],
        ] as const
      ).map(async ([download, label]) => {
        const digests = await download?.digests(['adler32']);
        answered.push(label);
        return digests;
      });
      assert.deepEqual(await Promise.all(asks), [
        { adler32: adler32(first) },
        { adler32: adler32(second) },
        { adler32: adler32(first) },
      ]);
      assert.deepEqual(answered, ['a', 'a again', 'b']);
      assert.equal(watch.reads, 2);
      assert.equal(watch.most, 1, 'never two readings at once');

      // An older version keeps its own digests.
      const newer = randomBytes(1000);
      await upload('a.img', newer);
      await forget('a.img');
      const older = await versions.openDownload(admin, { owner: 'bob', name: 'a.img' }, { version: 1 });
      assert.deepEqual(await older.digests(['adler32', 'sha512']), { adler32: adler32(first) });
      const current = await versions.openDownload(admin, { owner: 'bob', name: 'a.img' });
      assert.deepEqual(await current.digests(['adler32']), { adler32: adler32(newer) });
    });

    it('leaves out a digest of damaged bytes, and does not read them again', async () => {
      const bytes = randomBytes(128 * 1024);
      await upload('damaged.img', bytes);
      await forget('damaged.img');
      await damage('damaged.img', bytes.length);
      const { store, watch } = watched();
      const versions = versionsOver(store);
      const ref = { owner: 'bob', name: 'damaged.img' };
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      for (let ask = 0; ask < 2; ask++)
        assert.deepEqual(await (await versions.openDownload(admin, ref)).digests(['adler32', 'sha256']), {
          sha256,
        });
      assert.equal(watch.reads, 1);
      assert.equal((await shown('damaged.img')).digests.adler32, null);
      await as('bob').delete('/api/images/damaged.img');
    });
  });
}
