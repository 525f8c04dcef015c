/**
 * Who a certificate's DN is, remembered briefly (services/identity.ts): a change made behind the server's back
 * (another server sharing the database) applies once the memory lapses, and `forget` (which the services that
 * change users and groups call) applies it at once.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type DatabaseHandle, openDatabase } from '../src/db/connect.ts';
import { findUserById, insertUser, updateUserIfNamed } from '../src/db/users-dal.ts';
import { createIdentityService } from '../src/services/identity.ts';

const now = new Date().toISOString();
const ann = {
  name: 'ann',
  dn: '/CN=Ann',
  full_name: null,
  email: null,
  suspended: false,
  created: now,
  modified: now,
};

describe('the identity cache', () => {
  let dir: string;
  let database: DatabaseHandle;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'repoman-identity-'));
    database = await openDatabase({ url: `sqlite:${join(dir, 'r.db')}` });
  });
  after(async () => {
    await database.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('sees a change made elsewhere once its time lapses, and at once after forget', async () => {
    const identity = createIdentityService({ db: database.db, cacheMs: 300 });
    const who = { dn: ann.dn, issuerDn: '/O=Example/CN=Example CA', limited: false };
    await assert.rejects(identity.actorFor(who), { code: 'unknown_certificate' });
    const row = await insertUser(database.db, ann);
    // Remembered: still unknown until the memory lapses.
    await assert.rejects(identity.actorFor(who), { code: 'unknown_certificate' });
    await sleep(350);
    assert.equal((await identity.actorFor(who)).name, 'ann');
    assert.equal((await identity.actorFor({ ...who, limited: true })).limited, true);

    assert.ok(await updateUserIfNamed(database.db, row.id, 'ann', { suspended: true }));
    assert.equal((await identity.actorFor(who)).name, 'ann', 'remembered for a moment');
    await identity.forget();
    await assert.rejects(identity.actorFor(who), { code: 'user_suspended' });
  });

  it('binds a user to the CA of their first login, and refuses the same DN from another CA', async () => {
    const identity = createIdentityService({ db: database.db, cacheMs: 0 });
    const row = await insertUser(database.db, { ...ann, name: 'bea', dn: '/O=Example/CN=Bea' });
    assert.equal(row.issuer_dn, null, 'an existing user (or one an admin made without a CA) is unbound');
    const real = { dn: row.dn, issuerDn: '/O=Example/CN=Example CA', limited: false };
    assert.equal((await identity.actorFor(real)).name, 'bea');
    assert.equal((await findUserById(database.db, row.id))?.issuer_dn, real.issuerDn);
    // another CA issuing the same DN is another identity, even one whose name differs only in case
    for (const issuerDn of ['/O=Evil/CN=Evil CA', '/O=example/CN=Example CA']) {
      await assert.rejects(identity.actorFor({ ...real, issuerDn }), { code: 'certificate_issuer_mismatch' });
    }
    // an admin re-binds (here: unbinds) the user, and the next login binds the CA it comes from
    assert.ok(await updateUserIfNamed(database.db, row.id, 'bea', { issuer_dn: null }));
    const renamed = { ...real, issuerDn: '/O=Example/CN=Example CA 2' };
    assert.equal((await identity.actorFor(renamed)).name, 'bea');
    await assert.rejects(identity.actorFor(real), { code: 'certificate_issuer_mismatch' });
  });
});
