/**
 * The web interface in a real browser: Debian's Chromium, signed in with real client certificates (an NSS
 * database per browser), against a real Repoman server on SQLite and a local directory, over HTTPS and plain
 * HTTP. Every step leaves a screenshot in artefacts/web/ui/.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { clientFor } from '../../server/test/helpers/http.ts';
import { makeTestPki, type TestPki } from '../../server/test/helpers/pki.ts';
import { startServerFor, type TestServer } from '../../server/test/helpers/server.ts';
import { type BrowserSession, openBrowser } from './helpers/browser.ts';

const artefacts = join(import.meta.dirname, '..', '..', '..', 'artefacts', 'web', 'ui');
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
/** What Chromium logs for every 4xx answer the page handles itself; not an error of the page. */
/** The page's document, typed by hand: this file is checked without the DOM's types. */
type Focus = { document: { activeElement: { textContent: string | null; id: string } | null } };
const expectedNoise = /Failed to load resource: the server responded with a status of 40[134]/;

describe('the web interface in Chromium', () => {
  let pki: TestPki;
  let server: TestServer;
  let files: string;
  const sessions: BrowserSession[] = [];
  const as = (user: string) => clientFor(server.httpsUrl, pki.ca.certPem, pki.credential(user));
  const publicImage = randomBytes(300 * 1024);

  /** A browser signed in as `user` (a certificate of no user for 'carol'; none at all for null). */
  const browser = async (user: string | null) => {
    const session = await openBrowser({
      origin: server.httpsUrl,
      caPem: pki.ca.certPem,
      ...(user ? { credential: pki.credential(user) } : {}),
      artefacts,
    });
    sessions.push(session);
    return session;
  };
  const pageErrors = (session: BrowserSession) => session.errors.filter((e) => !expectedNoise.test(e));

  before(async () => {
    await rm(artefacts, { recursive: true, force: true });
    pki = await makeTestPki();
    server = await startServerFor(pki, 'sqlite');
    files = join(server.dir, 'files');
    const { mkdir } = await import('node:fs/promises');
    await mkdir(files);
    for (const user of ['bob', 'pam'])
      await as('admin').post('/api/users', {
        user_name: user,
        client_dn: pki.dn(user),
        full_name: `${user} Example`,
      });
    await as('admin').post('/api/groups', { name: 'atlas', users: ['bob', 'pam'] });
    await as('bob').post('/api/images', {
      name: 'rhel9-worker.qcow2',
      description: 'RHEL 9 batch worker',
      os_type: 'linux',
      os_variant: 'rhel9',
      os_arch: 'x86_64',
      hypervisor: 'kvm',
    });
    await as('bob').post('/api/images', {
      name: 'alpine-public.img',
      description: 'A public test image',
      unauthenticated_access: true,
    });
    assert.equal((await as('bob').put('/api/images/raw/alpine-public.img', publicImage)).status, 201);
    await as('pam').post('/api/images', { name: 'pam-private.img', description: 'Only for pam' });
  });
  after(async () => {
    for (const session of sessions) await session.close();
    await server?.stop();
  });

  it('an admin signs in and sees every image, and the admin pages', async () => {
    const admin = await browser('admin');
    const { page } = admin;
    await page.goto(`${server.httpsUrl}/`);
    await page.getByRole('link', { name: 'rhel9-worker.qcow2' }).waitFor();
    assert.equal(await page.locator('header .who').textContent(), 'admin');
    // Admins see everything: bob's and pam's private images too.
    await page.getByRole('link', { name: 'pam-private.img' }).waitFor();
    await admin.screenshot('admin-images');
    await page.getByRole('link', { name: 'Admin', exact: true }).click();
    await page.getByRole('heading', { name: 'Admin' }).waitFor();
    await page.getByText(pki.dn('bob')).first().waitFor();
    await admin.screenshot('admin-users');
    assert.deepEqual(pageErrors(admin), []);
  });

  it('a user signs in and sees their own images, an image page with its commands', async () => {
    const bob = await browser('bob');
    const { page } = bob;
    await page.goto(`${server.httpsUrl}/?view=mine`);
    await page.getByRole('link', { name: 'rhel9-worker.qcow2' }).waitFor();
    // The keyboard alone: the first Tab reaches the skip link, which leads to the content.
    await page.keyboard.press('Tab');
    assert.equal(
      await page.evaluate(() => (globalThis as unknown as Focus).document.activeElement?.textContent),
      'Skip to content',
    );
    await page.keyboard.press('Enter');
    assert.equal(
      await page.evaluate(() => (globalThis as unknown as Focus).document.activeElement?.id),
      'main',
    );
    assert.equal(await page.locator('header .who').textContent(), 'bob');
    assert.equal(await page.getByRole('link', { name: 'pam-private.img' }).count(), 0);
    assert.match((await page.locator('.count').textContent()) ?? '', /^2 images$/);
    await bob.screenshot('user-images');
    await page.getByRole('link', { name: 'alpine-public.img' }).click();
    await page.getByRole('heading', { name: /alpine-public\.img/ }).waitFor();
    const text = (await page.locator('main').textContent()) ?? '';
    assert.ok(text.includes(sha256(publicImage)), 'the SHA-256 is shown');
    assert.match(text, /qemu-img info http:\/\/127\.0\.0\.1:\d+\/api\/images\/raw\/bob\/alpine-public\.img/);
    assert.match(text, /openstack image create --import-method web-download --uri http:/);
    assert.match(text, /repoman get-image bob\/alpine-public\.img/);
    await bob.screenshot('user-image-page');
    // A phone-sized window: the same page, one column.
    await page.setViewportSize({ width: 390, height: 844 });
    await bob.screenshot('user-image-page-phone');
    type Root = { document: { documentElement: { scrollWidth: number } } };
    const width = await page.evaluate(
      () => (globalThis as unknown as Root).document.documentElement.scrollWidth,
    );
    assert.ok(width <= 390, `the page is ${width} pixels wide on a 390-pixel screen`);
    await page.setViewportSize({ width: 1280, height: 800 });
    // A converted variant, by a job the page follows (qemu-img on the server).
    await page.getByLabel('to', { exact: true }).selectOption('qcow2');
    await page.getByRole('button', { name: 'Convert', exact: true }).click();
    await page.getByText('Converted to qcow2: download it from the table.').waitFor({ timeout: 30_000 });
    await page.getByRole('link', { name: /^qcow2, .* of version 1$/ }).waitFor();
    await bob.screenshot('user-image-converted');
    const versions = (await as('bob').get('/api/images/bob/alpine-public.img/versions')).json;
    assert.equal(versions.items[0].variants[0].format, 'qcow2');
    assert.deepEqual(pageErrors(bob), []);
  });

  it('an unknown certificate gets a page with its DN to send to an admin', async () => {
    const carol = await browser('carol');
    const { page } = carol;
    await page.goto(`${server.httpsUrl}/account`);
    const card = page.getByTestId('unknown-certificate');
    await card.waitFor();
    assert.ok(((await card.textContent()) ?? '').includes(pki.dn('carol')), 'the DN is shown');
    await carol.screenshot('unknown-certificate');
    // The images page says the same, and lists the public images meanwhile.
    await page.goto(`${server.httpsUrl}/`);
    await page.getByRole('link', { name: 'alpine-public.img' }).waitFor();
    assert.equal(await page.getByRole('link', { name: 'rhel9-worker.qcow2' }).count(), 0);
    await card.waitFor();
    assert.deepEqual(pageErrors(carol), []);
  });

  it('uploads 50 MB with tus, resumes after a reload mid-way, and the SHA-256 is right', async () => {
    const data = randomBytes(50 * 1024 * 1024);
    const path = join(files, 'worker-50mb.img');
    await writeFile(path, data);
    const bob = await browser('bob');
    const { page } = bob;
    // A slow uplink (8 MB/s), so that the reload comes mid-way.
    const cdp = await bob.context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false,
      latency: 0,
      downloadThroughput: -1,
      uploadThroughput: 8 * 1024 * 1024,
    });

    await page.goto(`${server.httpsUrl}/upload`);
    await page.getByLabel('Name').fill('worker-50mb.img');
    await page.getByLabel('Description').fill('Uploaded from the browser');
    await page.getByRole('button', { name: 'Create and choose a file' }).click();
    await page.getByRole('heading', { name: /Upload to bob\/worker-50mb\.img/ }).waitFor();
    await page.getByLabel('File').setInputFiles(path);
    await page.getByRole('button', { name: /^Upload 50\.0 MiB$/ }).click();
    const progress = page.getByRole('progressbar', { name: 'Upload progress' });
    await progress.waitFor();
    // Runs in the page (typed by hand: this file is checked without the DOM's types; the page's policy forbids
    // evaluating strings).
    type Page = { document: { querySelector(selector: string): { value: number } | null } };
    await page.waitForFunction(
      (min) => ((globalThis as unknown as Page).document.querySelector('progress')?.value ?? 0) > min,
      0.25 * data.length,
      { timeout: 30_000 },
    );
    await bob.screenshot('upload-in-progress');
    // Pause and resume in the page, then leave it mid-way: a reload.
    await page.getByRole('button', { name: 'Pause' }).click();
    await page.getByText(/· paused/).waitFor();
    await bob.screenshot('upload-paused');
    await page.getByRole('button', { name: 'Resume' }).click();
    await page.waitForFunction(
      (min) => ((globalThis as unknown as Page).document.querySelector('progress')?.value ?? 0) > min,
      0.4 * data.length,
      { timeout: 30_000 },
    );
    page.once('dialog', (dialog) => void dialog.accept()); // "leave the page?" while bytes flow
    await page.reload();

    // The browser remembers the upload; the server kept what reached it.
    await page.getByRole('heading', { name: 'Unfinished uploads in this browser' }).waitFor();
    const stored = await page.evaluate(() =>
      Object.keys(localStorage)
        .filter((key) => key.startsWith('tus::'))
        .map((key) => JSON.parse(localStorage.getItem(key) ?? '{}').uploadUrl as string),
    );
    assert.equal(stored.length, 1);
    const uploadPath = new URL(stored[0] as string).pathname;
    const head = await as('bob').request('HEAD', uploadPath, { headers: { 'tus-resumable': '1.0.0' } });
    const offset = Number(head.headers['upload-offset']);
    assert.ok(offset > 5 * 1024 * 1024 && offset < data.length, `the server holds ${offset} bytes`);
    await bob.screenshot('upload-after-reload');

    await cdp.send('Network.emulateNetworkConditions', {
      offline: false,
      latency: 0,
      downloadThroughput: -1,
      uploadThroughput: -1,
    });
    await page.getByLabel('File').setInputFiles(path);
    await page.getByRole('button', { name: 'Resume upload' }).click();
    const digest = page.getByTestId('sha256');
    await digest.waitFor({ timeout: 60_000 });
    assert.equal(await digest.textContent(), sha256(data));
    await bob.screenshot('upload-done');
    const image = (await as('bob').get('/api/images/bob/worker-50mb.img')).json;
    assert.equal(image.version, 1);
    assert.equal(image.size, data.length);
    assert.equal(image.digests.sha256, sha256(data));
    assert.deepEqual(pageErrors(bob), []);
  });

  it('shares an image with a group, and a member of the group sees it', async () => {
    const bob = await browser('bob');
    const { page } = bob;
    await page.goto(`${server.httpsUrl}/images/bob/rhel9-worker.qcow2/edit`);
    await page.getByRole('heading', { name: 'Sharing' }).waitFor();
    await page.getByLabel('Share with group').fill('atlas');
    await page.getByRole('button', { name: 'Share' }).nth(1).click();
    await page.getByRole('button', { name: 'Stop sharing with group atlas' }).waitFor();
    await bob.screenshot('edit-shared-with-group');
    const image = (await as('bob').get('/api/images/bob/rhel9-worker.qcow2')).json;
    assert.deepEqual(image.shared_with.groups, ['atlas']);

    const pam = await browser('pam');
    await pam.page.goto(`${server.httpsUrl}/?view=shared`);
    await pam.page.getByRole('link', { name: 'rhel9-worker.qcow2' }).waitFor();
    assert.match((await pam.page.locator('.count').textContent()) ?? '', /^1 image$/);
    await pam.screenshot('member-sees-shared');
    assert.deepEqual(pageErrors(bob), []);
    assert.deepEqual(pageErrors(pam), []);
  });

  it('an admin creates a user from the DN an unknown certificate showed, who can then sign in', async () => {
    const admin = await browser('admin');
    const { page } = admin;
    await page.goto(`${server.httpsUrl}/admin?dn=${encodeURIComponent(pki.dn('carol'))}`);
    assert.equal(await page.getByLabel('Certificate DN', { exact: true }).inputValue(), pki.dn('carol'));
    await page.getByLabel('User name', { exact: true }).fill('carol');
    await page.getByLabel('Full name', { exact: true }).fill('Carol Example');
    await page.getByRole('button', { name: 'Create user' }).click();
    await page.getByText('Created user carol.').waitFor();
    await admin.screenshot('admin-created-user');
    await page.goto(`${server.httpsUrl}/admin/groups`);
    await page.getByRole('heading', { name: 'atlas', exact: true }).waitFor();
    await page.getByLabel('Add a member to atlas', { exact: true }).fill('carol');
    await page.getByRole('button', { name: 'Add to atlas' }).click();
    await page.getByText('Added carol to atlas.').waitFor();
    await admin.screenshot('admin-groups');
    await page.goto(`${server.httpsUrl}/admin/audit`);
    await page.getByRole('heading', { name: 'Audit log' }).waitFor();
    await page.getByRole('cell', { name: 'user.create' }).first().waitFor();
    await admin.screenshot('admin-audit');
    // Every entry has its client's address, those of uploads cut by the reload above too.
    const log = (await as('admin').get('/api/audit?limit=1000')).json;
    assert.ok(log.items.some((e: { outcome: string }) => e.outcome === 'upload_incomplete'));
    for (const entry of log.items) assert.equal(entry.address, '127.0.0.1', JSON.stringify(entry));
    assert.deepEqual(pageErrors(admin), []);

    const carol = await browser('carol');
    await carol.page.goto(`${server.httpsUrl}/account`);
    await carol.page.getByText(pki.dn('carol')).waitFor();
    assert.equal(await carol.page.locator('header .who').textContent(), 'carol');
    assert.match((await carol.page.locator('main').textContent()) ?? '', /atlas/);
    await carol.screenshot('new-user-account');
    assert.deepEqual(pageErrors(carol), []);

    // Her first sign-in bound her to the CA of her certificate; an admin unbinds it (a CA renamed).
    await page.goto(`${server.httpsUrl}/admin`);
    await page.getByText(`from ${pki.caDn}`).first().waitFor();
    await page.getByRole('button', { name: 'Unbind the CA of carol' }).click();
    await page.getByText('carol is bound to the CA of their next login.').waitFor();
    assert.equal((await as('admin').get('/api/users/carol')).json.issuer_dn, null);
    assert.deepEqual(pageErrors(admin), []);
  });

  it('gives an image away: offered on its Edit page, accepted, declined or withdrawn on the Account page', async () => {
    for (const name of ['handover.img', 'spare.img', 'moved-by-admin.img'])
      await as('bob').post('/api/images', { name, description: `${name} for pam` });
    const bob = await browser('bob');
    await bob.page.goto(`${server.httpsUrl}/images/bob/handover.img/edit`);
    await bob.page.getByRole('heading', { name: 'Give away' }).waitFor();
    assert.equal(await bob.page.getByLabel('Give it now, without asking (admins)').count(), 0);
    await bob.page.getByLabel('Give to user').fill('pam');
    await bob.page.getByRole('button', { name: 'Offer…' }).click();
    await bob.page.getByRole('button', { name: 'Yes, offer it to pam' }).click();
    await bob.page.getByText(/^Offered to pam until .*repoman accept-transfer [\w-]+\)\.$/).waitFor();
    await bob.page.getByRole('button', { name: 'Withdraw the offer' }).waitFor();
    await bob.screenshot('give-away-offered');
    assert.equal((await as('bob').get('/api/images/bob/handover.img')).json.owner, 'bob', 'still bob’s');

    // pam takes it under another name, on her Account page.
    const pam = await browser('pam');
    await pam.page.goto(`${server.httpsUrl}/account`);
    await pam.page.getByRole('heading', { name: 'Images offered to you' }).waitFor();
    await pam.page.getByRole('button', { name: 'Accept bob/handover.img' }).click();
    await pam.page.getByLabel('Name in your namespace').fill('from-bob.img');
    await pam.screenshot('account-accepting-offer');
    await pam.page.getByRole('button', { name: 'Yes, accept it as from-bob.img' }).click();
    await pam.page.getByRole('link', { name: 'pam/from-bob.img' }).waitFor();
    assert.equal(
      (await as('pam').get('/api/images/pam/from-bob.img')).json.description,
      'handover.img for pam',
    );
    assert.equal((await as('bob').get('/api/images/bob/handover.img')).status, 404);

    // Declined by pam: the image stays bob's.
    await as('bob').post('/api/images/spare.img/transfer', { to: 'pam' });
    await pam.page.reload();
    await pam.page.getByRole('button', { name: 'Decline bob/spare.img' }).click();
    await pam.page.getByRole('button', { name: 'Yes, decline it' }).click();
    await pam.page.getByText('Nobody is offering you an image.').waitFor();
    assert.equal((await as('bob').get('/api/images/bob/spare.img')).json.owner, 'bob');

    // Withdrawn by bob from his Account page.
    await as('bob').post('/api/images/spare.img/transfer', { to: 'pam' });
    await bob.page.goto(`${server.httpsUrl}/account`);
    await bob.page.getByRole('button', { name: 'Withdraw the offer of bob/spare.img to pam' }).click();
    await bob.screenshot('account-withdrawing-offer');
    await bob.page.getByRole('button', { name: 'Yes, withdraw it' }).click();
    await bob.page.getByText(/^You are offering no image\./).waitFor();
    assert.deepEqual((await as('pam').get('/api/transfers')).json.items, []);

    // An admin gives at once, and lands on the image in its new namespace.
    const admin = await browser('admin');
    await admin.page.goto(`${server.httpsUrl}/images/bob/moved-by-admin.img/edit`);
    await admin.page.getByLabel('Give to user').fill('pam');
    await admin.page.getByLabel('Give it now, without asking (admins)').check();
    await admin.page.getByRole('button', { name: 'Give now…' }).click();
    await admin.page.getByRole('button', { name: 'Yes, give it to pam' }).click();
    await admin.page.waitForURL(`${server.httpsUrl}/images/pam/moved-by-admin.img`);
    assert.equal((await as('pam').get('/api/images/pam/moved-by-admin.img')).json.owner, 'pam');
    for (const session of [bob, pam, admin]) assert.deepEqual(pageErrors(session), []);
  });

  it('refuses a change another site makes the signed-in browser send (a forged form)', async () => {
    // A page elsewhere that posts a form to Repoman as soon as it loads: the admin's browser sends the
    // admin's certificate with it.
    const evil = http.createServer((_request, response) => {
      response.writeHead(200, { 'content-type': 'text/html' });
      response.end(
        `<!doctype html><form method="post" action="${server.httpsUrl}/api/groups">` +
          '<input name="name" value="forged"><input name="users" value="admin"></form>' +
          '<script>document.forms[0].submit()</script>',
      );
    });
    await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', resolve));
    try {
      const admin = await browser('admin');
      const answered = admin.page.waitForResponse((r) => r.url() === `${server.httpsUrl}/api/groups`);
      await admin.page.goto(`http://127.0.0.1:${(evil.address() as AddressInfo).port}/`);
      const response = await answered;
      assert.equal(response.status(), 403);
      assert.equal((await response.json()).error.code, 'cross_site_request');
      await admin.screenshot('forged-form-refused');
    } finally {
      evil.close();
    }
    assert.equal((await as('admin').get('/api/groups/forged')).status, 404, 'no group was made');
  });

  it('shows a public image and downloads it over plain HTTP, without a certificate', async () => {
    assert.ok(server.httpUrl);
    const anonymous = await browser(null);
    const { page } = anonymous;
    await page.goto(`${server.httpUrl}/`);
    await page.getByRole('link', { name: 'alpine-public.img' }).waitFor();
    // Only public images over HTTP.
    assert.equal(await page.getByRole('link', { name: 'rhel9-worker.qcow2' }).count(), 0);
    assert.equal(await page.getByRole('link', { name: 'pam-private.img' }).count(), 0);
    const signIn = page.getByRole('link', { name: 'Sign in over HTTPS' });
    assert.equal(await signIn.getAttribute('href'), `${server.httpsUrl}/`);
    await anonymous.screenshot('http-public-list');
    await page.getByRole('link', { name: 'alpine-public.img' }).click();
    await page.getByRole('heading', { name: /alpine-public\.img/ }).waitFor();
    await anonymous.screenshot('http-public-image');
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('link', { name: 'Download' }).click(),
    ]);
    const saved = await download.path();
    assert.equal(sha256(await readFile(saved)), sha256(publicImage));
    assert.equal(new URL(download.url()).protocol, 'http:');
    assert.deepEqual(pageErrors(anonymous), []);
  });
});
