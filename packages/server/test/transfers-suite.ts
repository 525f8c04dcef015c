/**
 * Giving images away, over real HTTPS, once per database engine (transfers-sqlite.test.ts,
 * transfers-postgres.test.ts): an owner's give-away is an offer the receiver accepts or declines, checked
 * against the receiver's quota and namespace when accepted; nothing tells the giver what the receiver has;
 * offers expire; concurrent accepts, on one server or two, move an image once and never past a quota.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openDatabase } from '../src/db/connect.ts';
import { clientFor, expectError } from './helpers/http.ts';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import { PG_URL } from './helpers/postgres.ts';
import { type Engine, startServerFor, type TestServer } from './helpers/server.ts';

export function transfersSuite(engine: Engine) {
  describe(`transfers on ${engine}`, () => {
    let pki: TestPki;
    let server: TestServer;
    let second: TestServer;
    let as: (name: string, on?: TestServer) => ReturnType<typeof clientFor>;

    const must = async <T extends { status: number; text: string }>(pending: Promise<T>, status = 0) => {
      const res = await pending;
      if (status) assert.equal(res.status, status, res.text);
      else assert.ok(res.status < 300, res.text);
      return res;
    };
    /** An image of `size` zero bytes (a raw disk) in `owner`'s namespace. */
    const image = async (owner: string, name: string, size = 0) => {
      await must(as(owner).post('/api/images', { name }), 201);
      if (size > 0) await must(as(owner).put(`/api/images/raw/${name}`, Buffer.alloc(size)));
    };
    const offer = async (owner: string, name: string, to: string) =>
      (await must(as(owner).post(`/api/images/${name}/transfer`, { to }), 201)).json;
    const usage = async (user: string) => (await as('admin').get(`/api/users/${user}`)).json.usage;
    const ownerOf = async (path: string) => (await as('admin').get(`/api/images/${path}`)).json.owner;

    before(async () => {
      pki = await makeTestPki();
      const limits = { REPOMAN_USERS_MAX_IMAGES: '20' };
      server = await startServerFor(pki, engine, limits);
      // A second server on the same database and blobs, for answers arriving at two servers at once.
      second = await startServerFor(pki, engine, limits, false, server);
      as = (name, on = server) => clientFor(on.httpsUrl, pki.ca.certPem, pki.credential(name));
      for (const name of ['alice', 'bob', 'carol', 'dave', 'erin'])
        await must(as('admin').post('/api/users', { user_name: name, client_dn: pki.dn(name) }), 201);
    });
    after(async () => {
      await second?.stop();
      await server?.stop();
    });

    it('makes an owner’s give-away an offer: nothing lands in the admin’s namespace unless they accept', async () => {
      // A giver of its own, whose offers and usage no other test touches; the admin's usage as it was.
      await must(as('admin').post('/api/users', { user_name: 'hank', client_dn: pki.dn('hank') }), 201);
      const adminHad = await usage('admin');
      await image('hank', 'plant.img', 100);
      const patched = await as('hank').patch('/api/images/plant.img', { owner: 'admin' });
      expectError(patched, 403, 'transfer_offer_required');
      assert.match(patched.json.error.message, /\/api\/images\/hank\/plant\.img\/transfer/);
      const made = await as('hank').post('/api/images/plant.img/transfer', { to: 'admin' });
      assert.equal(made.status, 201, made.text);
      assert.equal(made.headers.location, made.json.url);
      assert.equal(made.json.image, 'hank/plant.img');
      assert.deepEqual([made.json.from, made.json.to, made.json.size], ['hank', 'admin', 100]);
      // Still hank's, still counted as his; nothing in the admin's namespace.
      expectError(await as('admin').get('/api/images/admin/plant.img'), 404, 'image_not_found');
      assert.equal(await ownerOf('hank/plant.img'), 'hank');
      assert.equal(await usage('hank'), 100);
      assert.equal(await usage('admin'), adminHad);
      const offers = (await as('admin').get('/api/transfers?direction=to')).json;
      assert.deepEqual(
        offers.items.map((t: { id: string }) => t.id),
        [made.json.id],
      );
      assert.equal((await as('hank').get('/api/transfers?direction=from')).json.total, 1);
      assert.equal((await must(as('admin').post(`/api/transfers/${made.json.id}/decline`), 204)).status, 204);
      assert.equal(await ownerOf('hank/plant.img'), 'hank');
      expectError(await as('hank').get(`/api/transfers/${made.json.id}`), 404, 'transfer_not_found');
      expectError(await as('admin').post(`/api/transfers/${made.json.id}/accept`), 404, 'transfer_not_found');
    });

    it('never tells the giver that the receiver has a private image of that name', async () => {
      const bobHad = await usage('bob');
      await image('bob', 'secret.img');
      await image('alice', 'secret.img', 10);
      const made = await as('alice').post('/api/images/secret.img/transfer', { to: 'bob' });
      assert.equal(made.status, 201, 'no 409 naming bob’s private image');
      assert.doesNotMatch(made.text, /exists/);
      // The receiver learns it of their own namespace, and may take the image under another name.
      const clash = await as('bob').post(`/api/transfers/${made.json.id}/accept`);
      expectError(clash, 409, 'image_exists');
      assert.match(clash.json.error.message, /'secret\.img' already exists in namespace 'bob'/);
      assert.equal((await as('alice').get(`/api/transfers/${made.json.id}`)).status, 200, 'still pending');
      const taken = await must(
        as('bob').post(`/api/transfers/${made.json.id}/accept`, { name: 'secret-2.img' }),
        200,
      );
      assert.deepEqual([taken.json.owner, taken.json.name], ['bob', 'secret-2.img']);
      expectError(await as('alice').get('/api/images/alice/secret.img'), 404, 'image_not_found');
      assert.equal(await usage('bob'), bobHad + 10);
      // Renaming one's own image onto one's own name is about one's own namespace: that may say so.
      await image('bob', 'other.img');
      expectError(
        await as('bob').patch('/api/images/other.img', { name: 'secret.img' }),
        409,
        'image_exists',
      );
    });

    it('checks the receiver’s quota on accept; giving away again no longer escapes the giver’s', async () => {
      // Users of its own: the quotas it sets must not reach the other tests, whatever their order.
      for (const name of ['frank', 'gina'])
        await must(as('admin').post('/api/users', { user_name: name, client_dn: pki.dn(name) }), 201);
      await must(as('admin').patch('/api/users/frank', { quota: 1000 }));
      await must(as('admin').patch('/api/users/gina', { quota: 1000 }));
      const stored = await usage('frank');
      await image('frank', 'q1.img', 800 - stored);
      const first = await offer('frank', 'q1.img', 'gina');
      // Offered is not given: frank's quota still holds q1's bytes.
      await image('frank', 'q2.img');
      expectError(await as('frank').put('/api/images/raw/q2.img', Buffer.alloc(800)), 507, 'quota_exceeded');
      await must(as('gina').post(`/api/transfers/${first.id}/accept`), 200);
      assert.equal(await usage('gina'), 800 - stored);
      // The room frank got back holds one more; giving that too finds gina's quota full.
      await must(as('frank').put('/api/images/raw/q2.img', Buffer.alloc(800)));
      const second = await offer('frank', 'q2.img', 'gina');
      const refused = await as('gina').post(`/api/transfers/${second.id}/accept`);
      expectError(refused, 507, 'quota_exceeded');
      assert.equal(await ownerOf('frank/q2.img'), 'frank');
      assert.equal(await usage('frank'), stored + 800);
      assert.equal((await as('gina').get(`/api/transfers/${second.id}`)).status, 200, 'still pending');
      // An admin's direct transfer is held to the same quota.
      expectError(
        await as('admin').post('/api/images/frank/q2.img/transfer', { to: 'gina', direct: true }),
        507,
        'quota_exceeded',
      );
      expectError(
        await as('admin').patch('/api/images/frank/q2.img', { owner: 'gina' }),
        507,
        'quota_exceeded',
      );
      await must(as('admin').patch('/api/users/gina', { quota: null }));
      await must(as('gina').post(`/api/transfers/${second.id}/accept`), 200);
      assert.equal(await ownerOf('gina/q2.img'), 'gina');
      await must(as('admin').patch('/api/users/frank', { quota: null }));
    });

    it('holds an accepted image to the receiver’s image count too', async () => {
      for (let i = 0; i < 20; i++) await image('erin', `e${i}.img`);
      await image('alice', 'one-more.img');
      const made = await offer('alice', 'one-more.img', 'erin');
      expectError(await as('erin').post(`/api/transfers/${made.id}/accept`), 409, 'too_many_images');
      assert.equal(await ownerOf('alice/one-more.img'), 'alice');
      assert.equal((await as('erin').delete('/api/images/e0.img')).status, 204);
      await must(as('erin').post(`/api/transfers/${made.id}/accept`), 200);
      assert.equal(await ownerOf('erin/one-more.img'), 'erin');
    });

    it('lets only the receiver answer, the giver or an admin cancel, and shows an offer to nobody else', async () => {
      await image('alice', 'who.img');
      const made = await offer('alice', 'who.img', 'bob');
      expectError(await as('carol').get(`/api/transfers/${made.id}`), 404, 'transfer_not_found');
      expectError(await as('carol').post(`/api/transfers/${made.id}/accept`), 404, 'transfer_not_found');
      expectError(await as('carol').delete(`/api/transfers/${made.id}`), 404, 'transfer_not_found');
      assert.equal((await as('carol').get('/api/transfers')).json.total, 0);
      expectError(await as('alice').post(`/api/transfers/${made.id}/accept`), 403, 'forbidden');
      expectError(await as('admin').post(`/api/transfers/${made.id}/accept`), 403, 'forbidden');
      expectError(await as('bob').delete(`/api/transfers/${made.id}`), 403, 'forbidden');
      expectError(
        await as('bob').post('/api/images/alice/who.img/transfer', { to: 'bob' }),
        404,
        'image_not_found',
      );
      expectError(
        await as('alice').post('/api/images/who.img/transfer', { to: 'alice' }),
        400,
        'invalid_field',
      );
      expectError(
        await as('alice').post('/api/images/who.img/transfer', { to: 'nobody' }),
        400,
        'invalid_field',
      );
      expectError(
        await as('alice').post('/api/images/who.img/transfer', { to: 'bob', direct: true }),
        403,
        'forbidden',
      );
      // A new offer of the image replaces the pending one.
      const again = await offer('alice', 'who.img', 'carol');
      expectError(await as('bob').get(`/api/transfers/${made.id}`), 404, 'transfer_not_found');
      assert.equal(
        (await as('admin').get('/api/transfers')).json.items.some((t: { id: string }) => t.id === again.id),
        true,
      );
      assert.equal((await as('alice').delete(`/api/transfers/${again.id}`)).status, 204);
      expectError(await as('carol').post(`/api/transfers/${again.id}/accept`), 404, 'transfer_not_found');
      // An offer lapses when the image changes hands another way.
      const lapsing = await offer('alice', 'who.img', 'bob');
      await must(as('admin').patch('/api/images/alice/who.img', { owner: 'dave' }), 200);
      expectError(await as('bob').post(`/api/transfers/${lapsing.id}/accept`), 404, 'transfer_not_found');
      assert.equal(await ownerOf('dave/who.img'), 'dave');
    });

    it('answers an expired offer with 410, and lists it no more', async () => {
      await image('alice', 'old.img');
      const made = await offer('alice', 'old.img', 'bob');
      const hours = (Date.parse(made.expires) - Date.parse(made.created)) / 3600_000;
      assert.equal(hours, 72, 'three days by default');
      // Time is not waited for: the offer is made to have expired, as the clock would leave it.
      const database = await openDatabase(
        engine === 'postgres'
          ? { url: PG_URL, schema: server.schema as string }
          : { url: `sqlite:${join(server.dir, 'data', 'repoman.db')}` },
      );
      try {
        await database.db
          .updateTable('image_transfers')
          .set({ expires: new Date(Date.now() - 1000).toISOString() })
          .where('id', '=', made.id)
          .execute();
      } finally {
        await database.close();
      }
      expectError(await as('bob').post(`/api/transfers/${made.id}/accept`), 410, 'transfer_expired');
      expectError(await as('bob').post(`/api/transfers/${made.id}/decline`), 410, 'transfer_expired');
      expectError(await as('alice').get(`/api/transfers/${made.id}`), 410, 'transfer_expired');
      for (const who of ['alice', 'bob', 'admin'])
        assert.ok(
          !(await as(who).get('/api/transfers')).json.items.some((t: { id: string }) => t.id === made.id),
        );
      assert.equal(await ownerOf('alice/old.img'), 'alice');
      assert.equal(
        (await as('alice').delete(`/api/transfers/${made.id}`)).status,
        204,
        'the giver clears it',
      );
    });

    it('moves an image once when its offer is accepted many times at once, on two servers', async () => {
      await image('alice', 'race.img', 50);
      const made = await offer('alice', 'race.img', 'bob');
      const answers = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          as('bob', i % 2 ? second : server).post(`/api/transfers/${made.id}/accept`),
        ),
      );
      const statuses = answers.map((r) => r.status).sort();
      assert.deepEqual(
        statuses,
        [200, 404, 404, 404, 404, 404, 404, 404],
        answers.map((r) => r.text).join('\n'),
      );
      assert.equal(await ownerOf('bob/race.img'), 'bob');
    });

    it('never lets concurrent accepts pass the receiver’s quota together', async () => {
      await must(as('admin').patch('/api/users/alice', { quota: null }));
      await must(as('admin').patch('/api/users/dave', { quota: 1000 }));
      const room = 1000 - (await usage('dave'));
      const offers = [];
      for (const name of ['c1.img', 'c2.img', 'c3.img']) {
        await image('alice', name, Math.ceil(room / 2) + 1);
        offers.push(await offer('alice', name, 'dave'));
      }
      const answers = await Promise.all(
        offers.map((t, i) => as('dave', i % 2 ? second : server).post(`/api/transfers/${t.id}/accept`)),
      );
      const statuses = answers.map((r) => r.status).sort();
      assert.deepEqual(statuses, [200, 507, 507], answers.map((r) => r.text).join('\n'));
      assert.ok((await usage('dave')) <= 1000);
    });

    it('records offers, answers and cancellations in the audit log', async () => {
      await image('alice', 'logged.img');
      const made = await offer('alice', 'logged.img', 'bob');
      await must(as('bob').post(`/api/transfers/${made.id}/accept`), 200);
      const declined = await offer('bob', 'logged.img', 'carol');
      await must(as('carol').post(`/api/transfers/${declined.id}/decline`), 204);
      const cancelled = await offer('bob', 'logged.img', 'carol');
      await must(as('bob').delete(`/api/transfers/${cancelled.id}`), 204);
      expectError(await as('carol').post(`/api/transfers/${cancelled.id}/accept`), 404, 'transfer_not_found');
      const log = (await as('admin').get('/api/audit?action=transfer.&limit=20')).json.items as {
        actor: string;
        action: string;
        target: string | null;
        outcome: string;
        detail: Record<string, unknown> | null;
      }[];
      const mine = log
        .filter(
          (e) =>
            e.detail?.transfer === made.id ||
            e.detail?.transfer === declined.id ||
            e.detail?.transfer === cancelled.id,
        )
        .map((e) => `${e.actor} ${e.action} ${e.target} ${e.outcome}`)
        .reverse();
      assert.deepEqual(mine, [
        'alice transfer.offer alice/logged.img ok',
        'bob transfer.accept bob/logged.img ok',
        'bob transfer.offer bob/logged.img ok',
        'carol transfer.decline bob/logged.img ok',
        'bob transfer.offer bob/logged.img ok',
        'bob transfer.cancel bob/logged.img ok',
        'carol transfer.accept null transfer_not_found',
      ]);
    });
  });
}
