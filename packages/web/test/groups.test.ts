/**
 * A group's page in Chromium (the harness of web.test.ts): an endorser reaches it from an image's page,
 * endorses the image through its form, sees it in the table and the list's links, keeps the group's lists for
 * subscribers only and back, manages a subscriber and withdraws the endorsement; a member without image_endorse
 * sees the table and who may fetch the lists, and no form nor checkbox. Screenshots in artefacts/web/groups/.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { clientFor, expectError } from '../../server/test/helpers/http.ts';
import { makeTestPki, type TestPki } from '../../server/test/helpers/pki.ts';
import { startServerFor, type TestServer } from '../../server/test/helpers/server.ts';
import { type BrowserSession, openBrowser } from './helpers/browser.ts';

const artefacts = join(import.meta.dirname, '..', '..', '..', 'artefacts', 'web', 'groups');
/** What Chromium logs for every 4xx answer the page handles itself; not an error of the page. */
const expectedNoise = /Failed to load resource: the server responded with a status of 40[134]/;

describe('a group’s page in Chromium', () => {
  let pki: TestPki;
  let server: TestServer;
  let signing: string;
  const sessions: BrowserSession[] = [];
  const as = (user: string) => clientFor(server.httpsUrl, pki.ca.certPem, pki.credential(user));
  /** Over HTTPS with the test CA, as a site without a certificate or token. */
  const anonymous = () => clientFor(server.httpsUrl, pki.ca.certPem, null);
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

  before(async () => {
    await rm(artefacts, { recursive: true, force: true });
    pki = await makeTestPki();
    // The server signs its lists (with a certificate of the test CA), so that sites fetch the signed list.
    signing = await mkdtemp(join(tmpdir(), 'repoman-web-groups-'));
    const signer = pki.credential('lists');
    await writeFile(join(signing, 'signer.pem'), signer.cert);
    await writeFile(join(signing, 'signer.key'), signer.key, { mode: 0o600 });
    server = await startServerFor(pki, 'sqlite', {
      REPOMAN_IMAGE_LISTS_SIGNING_CERT: join(signing, 'signer.pem'),
      REPOMAN_IMAGE_LISTS_SIGNING_KEY: join(signing, 'signer.key'),
    });
    for (const user of ['bob', 'pam'])
      await as('admin').post('/api/users', { user_name: user, client_dn: pki.dn(user) });
    // bob endorses for atlas (image_endorse, from another group of his); pam is only a member.
    await as('admin').post('/api/groups', { name: 'atlas', users: ['bob', 'pam'] });
    await as('admin').post('/api/groups', {
      name: 'endorsers',
      users: ['bob'],
      permissions: ['image_endorse'],
    });
    await as('bob').post('/api/images', { name: 'alpine.img', unauthenticated_access: true });
    assert.equal((await as('bob').put('/api/images/raw/alpine.img', randomBytes(64 * 1024))).status, 201);
  });
  after(async () => {
    for (const session of sessions) await session.close();
    await server?.stop();
    if (signing) await rm(signing, { recursive: true, force: true });
  });

  it('an endorser endorses an image from its page, sees the list’s links, and withdraws it', async () => {
    const bob = await browser('bob');
    const { page } = bob;
    await page.goto(`${server.httpsUrl}/images/bob/alpine.img`);
    await page.getByRole('link', { name: 'Endorse this version for atlas' }).click();
    await page.waitForURL(`${server.httpsUrl}/groups/atlas?endorse=bob/alpine.img`);
    await page.getByRole('heading', { name: 'Group atlas' }).waitFor();
    const form = page.getByRole('form', { name: 'Endorse a version' });
    assert.equal(await form.getByLabel('Image').inputValue(), 'bob/alpine.img');

    // The server's refusal, in its words.
    await form.getByLabel('Version').fill('7');
    await form.getByLabel('Expires at 00:00 UTC on').fill('2099-06-30');
    await form.getByRole('button', { name: 'Endorse' }).click();
    await form.getByRole('alert').getByText('bob/alpine.img has no version 7').waitFor();

    await form.getByLabel('Version').fill('');
    await form.getByLabel('Comment').fill('Tested on the batch farm');
    await form.getByRole('button', { name: 'Endorse' }).click();
    await form.getByText(/^Endorsed bob\/alpine\.img version 1 for atlas until /).waitFor();
    const row = page.getByRole('row', { name: /bob\/alpine\.img/ });
    await row.getByRole('cell', { name: 'Tested on the batch farm' }).waitFor();
    assert.equal(
      await row.getByRole('link', { name: 'bob/alpine.img' }).getAttribute('href'),
      '/images/bob/alpine.img',
    );
    const list = `${server.httpsUrl}/api/groups/atlas/image-list`;
    assert.equal(await page.getByRole('link', { name: 'Open the signed list' }).getAttribute('href'), list);
    assert.equal(
      await page.getByRole('link', { name: 'Open the list’s JSON' }).getAttribute('href'),
      `${list}.json`,
    );
    assert.match((await page.locator('main').textContent()) ?? '', /openssl smime -verify/);
    assert.equal((await anonymous().get('/api/groups/atlas/image-list')).status, 200);
    const endorsed = (await as('bob').get('/api/groups/atlas/endorsements')).json;
    assert.deepEqual(
      endorsed.items.map((e: { image: string; version: number }) => [e.image, e.version]),
      [['bob/alpine.img', 1]],
    );
    await bob.screenshot('endorsed');

    // The lists for subscribers only: saved at once, then a site without a token is refused.
    await page.getByText('Anyone may fetch the lists (while they hold public images only)').waitFor();
    const only = page.getByRole('checkbox', {
      name: 'Only subscribers (and members) may fetch this group’s lists',
    });
    assert.equal(await only.isChecked(), false);
    await only.check();
    await page
      .getByRole('status')
      .getByText('Only subscribers and members may now fetch atlas’s lists.')
      .waitFor();
    await page.getByText('Only subscribers and members may fetch the lists', { exact: true }).waitFor();
    assert.equal(await only.isChecked(), true);
    assert.equal(await only.isDisabled(), false);
    assert.match(
      (await page.locator('main').textContent()) ?? '',
      /Sites subscribe to the signed list \(with vmcatcher or cloudkeeper\) with a subscriber token/,
    );
    assert.equal(
      await page.getByRole('link', { name: 'Subscribers', exact: true }).getAttribute('href'),
      '#subscribers-heading',
    );
    assert.deepEqual((await as('bob').get('/api/groups/atlas/image-list/access')).json, {
      group: 'atlas',
      subscribers_only: true,
    });
    expectError(await anonymous().get('/api/groups/atlas/image-list'), 401, 'list_token_required');
    await bob.screenshot('subscribers-only');
    await only.uncheck();
    await page
      .getByRole('status')
      .getByText('Anyone may now fetch atlas’s lists while they hold public images only.')
      .waitFor();
    await page.getByText('Anyone may fetch the lists (while they hold public images only)').waitFor();
    assert.deepEqual((await as('bob').get('/api/groups/atlas/image-list/access')).json, {
      group: 'atlas',
      subscribers_only: false,
    });
    assert.equal((await anonymous().get('/api/groups/atlas/image-list')).status, 200);

    // A subscriber: its token shown once, then revoked.
    await page.getByLabel('Add a subscriber (site name)').fill('site-a');
    await page.getByRole('button', { name: 'Add subscriber' }).click();
    await page.getByText('Its token is shown only now', { exact: false }).waitFor();
    await page.getByRole('row', { name: /site-a/ }).waitFor();
    await bob.screenshot('subscriber-added');
    await page.getByRole('button', { name: 'Revoke the token of site-a' }).click();
    await page.getByRole('button', { name: 'Yes, revoke it' }).click();
    await page.getByText('Revoked the token of site-a.').waitFor();
    assert.deepEqual((await as('bob').get('/api/groups/atlas/subscribers')).json, []);

    await page.getByRole('button', { name: 'Withdraw the endorsement of bob/alpine.img' }).click();
    await page.getByRole('button', { name: 'Yes, withdraw it' }).click();
    await page.getByText('Withdrew atlas’s endorsement of bob/alpine.img.').waitFor();
    await page.getByText('No endorsements in the list.').waitFor();
    assert.equal((await as('bob').get('/api/groups/atlas/endorsements')).json.total, 0);
    assert.deepEqual(pageErrors(bob), []);
  });

  it('a member without image_endorse reaches the page from their account and sees no form', async () => {
    const made = await as('bob').post('/api/groups/atlas/endorsements', {
      image: 'bob/alpine.img',
      expires: '2099-01-31',
    });
    assert.equal(made.status, 201);
    const kept = await as('bob').put('/api/groups/atlas/image-list/access', { subscribers_only: true });
    assert.equal(kept.status, 200, kept.text);
    const pam = await browser('pam');
    const { page } = pam;
    await page.goto(`${server.httpsUrl}/account`);
    await page.getByRole('link', { name: 'atlas', exact: true }).click();
    await page.getByRole('heading', { name: 'Group atlas' }).waitFor();
    await page.getByRole('row', { name: /bob\/alpine\.img/ }).waitFor();
    await page.getByRole('link', { name: 'Open the signed list' }).waitFor();
    // Who may fetch the lists, and how sites get a token; no checkbox to change it.
    await page.getByText('Only subscribers and members may fetch the lists', { exact: true }).waitFor();
    assert.match(
      (await page.locator('main').textContent()) ?? '',
      /with a subscriber token, .* The group’s endorsers give sites their tokens\./,
    );
    assert.equal(await page.getByRole('checkbox', { name: /^Only subscribers/ }).count(), 0);
    assert.equal(await page.getByRole('heading', { name: 'Endorse a version' }).count(), 0);
    assert.equal(await page.getByRole('heading', { name: 'Subscribers' }).count(), 0);
    assert.equal(await page.getByRole('button', { name: /^Withdraw/ }).count(), 0);
    await pam.screenshot('member-view');
    // Expired ones too, on request (there are none more here).
    await page.getByLabel('Show expired too').check();
    await page.getByText('1 endorsement', { exact: true }).waitFor();
    // Nor does her image page offer to endorse.
    await page.goto(`${server.httpsUrl}/images/bob/alpine.img`);
    await page.getByRole('heading', { name: 'alpine.img' }).waitFor();
    assert.equal(await page.getByRole('link', { name: /^Endorse this version/ }).count(), 0);
    assert.deepEqual(pageErrors(pam), []);
    // Nor may she change who fetches the lists.
    expectError(
      await as('pam').put('/api/groups/atlas/image-list/access', { subscribers_only: false }),
      403,
      'forbidden',
    );
    await as('bob').put('/api/groups/atlas/image-list/access', { subscribers_only: false });
  });
});
