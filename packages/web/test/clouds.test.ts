/**
 * The Clouds page in Chromium (the harness of web.test.ts): images against a group's clouds. No OpenStack runs
 * here, so the clouds and what they hold are put straight into the server's database (as the authz matrix
 * does), at an address nothing answers on and with their next sync far away. A cloud manager reaches the page
 * from the group's, sees a present copy and a conflict's detail, chooses another image and saves (the server
 * then has it chosen, and the failed sync it asked for shows under the cloud), is shown the server's refusal of
 * a cloud whose Keystone cannot be reached, and forgets a cloud; a member without cloud_manage sees the states
 * and nothing to change. Screenshots in artefacts/web/clouds/.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import { clientFor } from '../../server/test/helpers/http.ts';
import { makeTestPki, type TestPki } from '../../server/test/helpers/pki.ts';
import { startServerFor, type TestServer } from '../../server/test/helpers/server.ts';
import { type BrowserSession, openBrowser } from './helpers/browser.ts';

const artefacts = join(import.meta.dirname, '..', '..', '..', 'artefacts', 'web', 'clouds');
/** What Chromium logs for every 4xx answer the page handles itself; not an error of the page. */
const expectedNoise = /Failed to load resource: the server responded with a status of 40[0134]/;
const CONFLICT = 'same name, other bytes: Glance image centos.img (5d1c0a) is not Repoman’s';

describe('the Clouds page in Chromium', () => {
  let pki: TestPki;
  let server: TestServer;
  const sessions: BrowserSession[] = [];
  const as = (user: string) => clientFor(server.httpsUrl, pki.ca.certPem, pki.credential(user));
  const browser = async (user: string) => {
    const session = await openBrowser({
      origin: server.httpsUrl,
      caPem: pki.ca.certPem,
      credential: pki.credential(user),
      artefacts,
    });
    sessions.push(session);
    return session;
  };
  const pageErrors = (session: BrowserSession) => session.errors.filter((e) => !expectedNoise.test(e));

  /** Two clouds of atlas, alpine and centos chosen for `site`: alpine present there, centos in conflict. */
  function insertClouds(uuids: Record<string, string>) {
    const db = new DatabaseSync(join(server.dir, 'data', 'repoman.db'));
    try {
      const group = db.prepare("select id from groups where name = 'atlas'").get() as { id: number };
      const now = new Date().toISOString();
      const later = new Date(Date.now() + 86_400_000).toISOString();
      for (const name of ['site', 'spare'])
        db.prepare(
          `insert into clouds (id, group_id, name, auth_url, region, credential_kind, credential, credential_secret,
             disk_format, visibility, shared_projects, name_prefix, transfer, follow_endorsed, created_by, created,
             modified, next_sync) values (?, ?, ?, 'http://127.0.0.1:9/v3', 'RegionOne', 'application_credential',
             '{"kind":"application_credential","id":"x"}', 'v1.0.0.0.0', null, 'private', '[]', '', 'web-download', 0,
             null, ?, ?, ?)`,
        ).run(`cloud-${name}`, group.id, name, now, now, later);
      for (const image of ['alpine.img', 'centos.img'])
        db.prepare(
          "insert into cloud_images (cloud_id, image_id, added) select 'cloud-site', id, ? from images where name = ?",
        ).run(now, image);
      const copy = db.prepare(
        `insert into cloud_copies (cloud_id, image_uuid, image_name, version, glance_id, state, detail, attempts,
           next_attempt, retire_after, updated) values ('cloud-site', ?, ?, 1, ?, ?, ?, 0, null, null, ?)`,
      );
      copy.run(uuids['alpine.img'] ?? '', 'bob/alpine.img', 'a1b2c3', 'present', null, now);
      copy.run(uuids['centos.img'] ?? '', 'bob/centos.img', null, 'conflict', CONFLICT, now);
    } finally {
      db.close();
    }
  }

  before(async () => {
    await rm(artefacts, { recursive: true, force: true });
    pki = await makeTestPki();
    server = await startServerFor(pki, 'sqlite');
    for (const user of ['bob', 'pam'])
      await as('admin').post('/api/users', { user_name: user, client_dn: pki.dn(user) });
    // bob manages atlas's clouds (cloud_manage, from another group of his); pam is only a member.
    await as('admin').post('/api/groups', { name: 'atlas', users: ['bob', 'pam'] });
    await as('admin').post('/api/groups', {
      name: 'cloudops',
      users: ['bob'],
      permissions: ['cloud_manage'],
    });
    const uuids: Record<string, string> = {};
    for (const [name, open] of [
      ['alpine.img', true],
      ['centos.img', true],
      ['worker.img', false],
    ] as const) {
      const made = await as('bob').post('/api/images', { name, unauthenticated_access: open });
      assert.equal(made.status, 201, made.text);
      uuids[name] = made.json.uuid;
      assert.equal((await as('bob').put(`/api/images/raw/${name}`, randomBytes(64 * 1024))).status, 201);
    }
    insertClouds(uuids);
  });
  after(async () => {
    for (const session of sessions) await session.close();
    await server?.stop();
  });

  it('a cloud manager sees the matrix, chooses an image and saves', async () => {
    const bob = await browser('bob');
    const { page } = bob;
    await page.goto(`${server.httpsUrl}/groups/atlas`);
    await page.getByRole('link', { name: 'Clouds', exact: true }).first().waitFor();
    await page.getByRole('main').getByRole('link', { name: 'Clouds', exact: true }).click();
    await page.waitForURL(`${server.httpsUrl}/clouds#atlas`);
    const atlas = page.getByRole('region', { name: 'atlas' });
    await atlas.getByRole('columnheader', { name: 'site' }).waitFor();
    await atlas.getByRole('columnheader', { name: 'spare' }).waitFor();

    const alpine = atlas.getByRole('row', { name: /bob\/alpine\.img/ });
    const cells = alpine.getByRole('cell');
    assert.match((await cells.nth(0).textContent()) ?? '', /✓ present v1, verified/);
    assert.ok(await alpine.getByLabel('Keep bob/alpine.img in site').isChecked());
    assert.equal(await alpine.getByLabel('Keep bob/alpine.img in spare').isChecked(), false);
    // The conflict, and what is in the way, on expanding it.
    const centos = atlas.getByRole('row', { name: /bob\/centos\.img/ });
    await centos.getByText('conflict').click();
    await centos.getByText(CONFLICT).waitFor();
    // worker.img is bob's own: listed to choose, in no cloud yet.
    const worker = atlas.getByRole('row', { name: /bob\/worker\.img/ });
    assert.equal(await worker.getByLabel('Keep bob/worker.img in site').isChecked(), false);
    await bob.screenshot('manager-matrix');

    await worker.getByLabel('Keep bob/worker.img in site').check();
    await worker.getByText('chosen (unsaved)').waitFor();
    await atlas.getByRole('button', { name: 'Save 1 change' }).click();
    await atlas.getByRole('status').getByText('Saved 1 change; asked site to sync now.').waitFor();
    const site = (await as('bob').get('/api/clouds/atlas/site')).json;
    assert.deepEqual([...site.images].sort(), ['bob/alpine.img', 'bob/centos.img', 'bob/worker.img']);
    assert.ok(await worker.getByLabel('Keep bob/worker.img in site').isChecked());
    await worker.getByText('chosen, waiting for a sync').waitFor();
    // The sync it asked for cannot reach the cloud: the page, polling, shows why under the cloud's name.
    await atlas.getByText('Last sync failed:').waitFor({ timeout: 15_000 });
    await bob.screenshot('manager-saved');
    assert.deepEqual(pageErrors(bob), []);
  });

  it('a member without cloud_manage sees the states and nothing to change', async () => {
    const pam = await browser('pam');
    const { page } = pam;
    await page.goto(`${server.httpsUrl}/`);
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Clouds' }).click();
    await page.getByRole('heading', { name: 'Clouds', level: 1 }).waitFor();
    const atlas = page.getByRole('region', { name: 'atlas' });
    const alpine = atlas.getByRole('row', { name: /bob\/alpine\.img/ });
    await alpine.getByText('present').waitFor();
    await atlas
      .getByRole('row', { name: /bob\/centos\.img/ })
      .getByText('conflict')
      .waitFor();
    await atlas.getByRole('row', { name: /bob\/worker\.img/ }).waitFor();
    assert.equal(await atlas.getByRole('checkbox').count(), 0);
    assert.equal(await page.getByRole('button', { name: /^Save/ }).count(), 0);
    assert.equal(await page.getByRole('button', { name: /^Forget/ }).count(), 0);
    assert.equal(await page.getByRole('button', { name: 'Register a cloud…' }).count(), 0);
    await pam.screenshot('member-view');
    assert.deepEqual(pageErrors(pam), []);
  });

  it('registering shows the server’s refusal; forgetting a cloud asks first', async () => {
    const body = {
      name: 'cern',
      auth_url: 'http://127.0.0.1:9/v3',
      application_credential_id: 'abc',
      application_credential_secret: 'not-a-secret',
    };
    const refused = await as('bob').post('/api/clouds/atlas', body);
    assert.equal(refused.status, 400);
    assert.equal(refused.json.error.code, 'cloud_check_failed');

    const bob = await browser('bob');
    const { page } = bob;
    await page.goto(`${server.httpsUrl}/clouds`);
    await page.getByRole('button', { name: 'Register a cloud…' }).click();
    const form = page.getByRole('form', { name: 'Register a cloud' });
    assert.equal(await form.getByRole('combobox', { name: /^Group/ }).inputValue(), 'atlas');
    await form.getByLabel('Name', { exact: true }).fill(body.name);
    await form.getByLabel('Keystone URL').fill(body.auth_url);
    await form.getByLabel('Application credential ID').fill(body.application_credential_id);
    await form.getByLabel('Application credential secret').fill(body.application_credential_secret);
    await form.getByRole('button', { name: 'Register' }).click();
    const alert = form.getByRole('alert');
    await alert.getByText(refused.json.error.message).waitFor();
    assert.match((await alert.textContent()) ?? '', /^The cloud was not registered\./);
    await bob.screenshot('register-refused');
    // The user-and-password kind asks for its own fields.
    await form.getByLabel('User, password and project').check();
    await form.getByLabel('Project', { exact: true }).waitFor();
    assert.equal(await form.getByLabel('Application credential ID').count(), 0);
    await form.getByRole('button', { name: 'Cancel' }).click();

    const atlas = page.getByRole('region', { name: 'atlas' });
    await atlas.getByRole('button', { name: 'Forget cloud spare' }).click();
    const confirm = atlas.getByRole('alertdialog');
    await confirm.getByText('The images Repoman made there stay in the cloud').waitFor();
    await confirm.getByRole('button', { name: 'Cancel' }).click();
    assert.equal(await atlas.getByRole('alertdialog').count(), 0);
    await atlas.getByRole('button', { name: 'Forget cloud spare' }).click();
    await bob.screenshot('forget-confirm');
    await atlas.getByRole('button', { name: 'Yes, forget spare' }).click();
    await page.getByText('Forgot atlas’s cloud spare.', { exact: false }).waitFor();
    await atlas.getByRole('columnheader', { name: 'spare' }).waitFor({ state: 'detached' });
    assert.equal((await as('bob').get('/api/clouds/atlas/spare')).status, 404);
    assert.deepEqual(pageErrors(bob), []);
  });
});
