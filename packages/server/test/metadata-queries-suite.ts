/**
 * What the metadata requests read in one query each (docs/performance.md, metadata): a page of a list with its
 * total, an image with who it is shared with and its owner's groups, a user with their groups and permissions.
 * The answers must be what separate queries gave: sorted bytewise, without repeats, and a total that counts the
 * very list its page was taken from, even while images are added. Run once per database engine.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { clientFor } from './helpers/http.ts';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import { type Engine, startServerFor, type TestServer } from './helpers/server.ts';

export function metadataQueriesSuite(engine: Engine) {
  describe(`metadata queries on ${engine}`, () => {
    let pki: TestPki;
    let server: TestServer;
    const as = (name: string) => clientFor(server.httpsUrl, pki.ca.certPem, pki.credential(name));

    before(async () => {
      pki = await makeTestPki();
      server = await startServerFor(pki, engine);
      // names whose bytewise order differs from a natural one: '-' < digits < '_' < letters
      for (const name of ['bob', 'carol', 'zed', 'a_b', 'a-b', 'a1']) {
        const created = await as('admin').post('/api/users', { user_name: name, client_dn: pki.dn(name) });
        assert.equal(created.status, 201, created.text);
      }
      for (const name of ['team_a', 'team-b']) {
        const created = await as('admin').post('/api/groups', {
          name,
          users: ['bob'],
          permissions: ['image_create', 'image_modify'],
        });
        assert.equal(created.status, 201, created.text);
      }
    });
    after(async () => server?.stop());

    it('keeps a page and its total in agreement while images are added', async () => {
      const before = (await as('carol').get('/api/images?limit=1000')).json.total as number;
      let adding = true;
      const add = (async () => {
        try {
          for (let round = 0; round < 25; round++)
            await Promise.all(
              [0, 1, 2].map(async (k) => {
                const created = await as('carol').post('/api/images', { name: `grow-${round}-${k}.img` });
                assert.equal(created.status, 201, created.text);
              }),
            );
        } finally {
          adding = false;
        }
      })();
      let lists = 0;
      while (adding) {
        const page = (await as('carol').get('/api/images?limit=1000')).json;
        assert.equal(page.items.length, page.total, 'the total counts the list the page shows');
        lists++;
      }
      await add;
      assert.ok(lists > 1, `listed ${lists} times while adding`);
      const last = (await as('carol').get('/api/images?limit=1000')).json;
      assert.equal(last.total, before + 75);
      assert.equal(last.items.length, before + 75);
    });

    it('tells the total on a page past the end of a list, and on an empty list', async () => {
      // Carol's list as it is (the other tests add to it, in any order), then pages of it.
      for (const k of [1, 2, 3, 4, 5, 6])
        assert.equal((await as('carol').post('/api/images', { name: `page-${k}.img` })).status, 201);
      const total = (await as('carol').get('/api/images?limit=1000')).json.total as number;
      const past = (await as('carol').get(`/api/images?limit=10&offset=${total + 100}`)).json;
      assert.deepEqual(past.items, []);
      assert.equal(past.total, total);
      const middle = (await as('carol').get(`/api/images?limit=10&offset=${total - 5}`)).json;
      assert.equal(middle.items.length, 5);
      assert.equal(middle.total, total);
      // Someone nothing is shared with sees an empty list of nothing.
      const alone = await as('admin').post('/api/users', { user_name: 'alone', client_dn: pki.dn('alone') });
      assert.equal(alone.status, 201, alone.text);
      const none = (await as('alone').get('/api/images?limit=10')).json;
      assert.deepEqual([none.items, none.total], [[], 0]);
      const users = (await as('admin').get('/api/users?limit=1000')).json.total as number;
      const beyond = (await as('admin').get(`/api/users?limit=2&offset=${users + 100}`)).json;
      assert.deepEqual(beyond.items, []);
      assert.equal(beyond.total, users);
    });

    it('reads an image with who it is shared with, sorted, whichever request reads it', async () => {
      assert.equal((await as('bob').post('/api/images', { name: 'shared.img' })).status, 201);
      for (const user of ['zed', 'a_b', 'a-b', 'a1'])
        assert.equal((await as('bob').post(`/api/images/shared.img/share/user/${user}`, {})).status, 200);
      for (const group of ['team_a', 'team-b'])
        assert.equal((await as('bob').post(`/api/images/shared.img/share/group/${group}`, {})).status, 200);
      const expected = { users: ['a-b', 'a1', 'a_b', 'zed'], groups: ['team-b', 'team_a'] };
      assert.deepEqual((await as('bob').get('/api/images/bob/shared.img')).json.shared_with, expected);
      assert.deepEqual((await as('admin').get('/api/images/bob/shared.img')).json.shared_with, expected);
      const listed = (await as('bob').get('/api/images?name_prefix=shared')).json.items;
      assert.deepEqual(
        listed.map((i: { shared_with: unknown }) => i.shared_with),
        [expected],
      );
      // Shared with them, they see it, but not whom else it is shared with.
      const seen = await as('zed').get('/api/images/bob/shared.img');
      assert.equal(seen.status, 200);
      assert.equal(seen.json.shared_with, undefined);
      // Only the owner unshares; once unshared, a user outside its groups no longer sees it.
      assert.equal((await as('a1').delete('/api/images/bob/shared.img/share/user/a1')).status, 403);
      assert.equal((await as('bob').delete('/api/images/shared.img/share/user/a1')).status, 200);
      assert.equal((await as('a1').get('/api/images/bob/shared.img')).status, 404);
    });

    it('shows a user their groups and the union of their permissions, sorted, each once', async () => {
      const me = (await as('bob').get('/api/whoami')).json;
      assert.deepEqual(me.groups, ['team-b', 'team_a', 'users']);
      assert.equal(new Set(me.permissions).size, me.permissions.length, 'no permission twice');
      assert.deepEqual(me.permissions, [...me.permissions].sort());
      assert.ok(me.permissions.includes('image_modify'));
      const shown = (await as('admin').get('/api/users/bob')).json;
      assert.deepEqual([shown.groups, shown.permissions], [me.groups, me.permissions]);
      const listed = (await as('admin').get('/api/users?limit=1000')).json.items.find(
        (u: { user_name: string }) => u.user_name === 'bob',
      );
      assert.deepEqual([listed.groups, listed.permissions], [me.groups, me.permissions]);
      // Others see the groups, not the permissions.
      const other = (await as('carol').get('/api/users/bob')).json;
      assert.deepEqual([other.groups, other.permissions], [me.groups, undefined]);
    });
  });
}
