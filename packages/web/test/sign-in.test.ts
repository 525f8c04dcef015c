/**
 * Browser sign-in with OpenID Connect in Chromium, without a certificate: the start page offers the issuer,
 * the provider's own login and consent pages (a real oidc-provider), back to Repoman with a session cookie,
 * an image uploaded from the Upload page, a sign-in linked to nobody explained, and signing out. Screenshots
 * in artefacts/web/sign-in/.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { clientFor } from '../../server/test/helpers/http.ts';
import { issuerToml, startIssuer, type TestIssuer } from '../../server/test/helpers/oidc.ts';
import { makeTestPki, type TestPki } from '../../server/test/helpers/pki.ts';
import { startServerWithConfig, type TestServer } from '../../server/test/helpers/server.ts';
import { type BrowserSession, openBrowser } from './helpers/browser.ts';

const artefacts = join(import.meta.dirname, '..', '..', '..', 'artefacts', 'web', 'sign-in');
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('browser sign-in with an OpenID provider, in Chromium', () => {
  let pki: TestPki;
  let server: TestServer;
  let issuer: TestIssuer;
  const sessions: BrowserSession[] = [];

  before(async () => {
    await rm(artefacts, { recursive: true, force: true });
    pki = await makeTestPki();
    issuer = await startIssuer({ clients: [] });
    server = await startServerWithConfig(
      pki,
      'sqlite',
      issuerToml(issuer, {
        name: 'Test IAM',
        client_id: issuer.webClient.id,
        client_secret: issuer.webClient.secret,
      }),
    );
    issuer.setRedirectUris([`${server.httpsUrl}/api/auth/callback`]);
    const admin = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('admin'));
    assert.equal(
      (await admin.post('/api/users', { user_name: 'sam', client_dn: pki.dn('sam') })).status,
      201,
    );
    assert.equal(
      (await admin.post('/api/users/sam/identities', { issuer: issuer.url, subject: 'sam' })).status,
      201,
    );
    assert.equal(
      (await admin.post('/api/users', { user_name: 'pat', client_dn: pki.dn('pat') })).status,
      201,
    );
  });
  after(async () => {
    for (const session of sessions) await session.close();
    await server?.stop();
    await issuer?.close();
  });

  /** A browser (without a certificate, unless given one) signed in at the provider as `login`. */
  async function signIn(
    login: string,
    certificate?: { cert: string; key: string },
    button = 'Sign in with Test IAM',
  ): Promise<BrowserSession> {
    const session = await openBrowser({
      origin: server.httpsUrl,
      caPem: pki.ca.certPem,
      artefacts,
      ...(certificate ? { credential: certificate } : {}),
    });
    sessions.push(session);
    const { page } = session;
    await page.goto(`${server.httpsUrl}/account`);
    await page.getByRole('link', { name: button }).click();
    // The provider's own pages: its login form, then its consent.
    await page.locator('input[name="login"]').fill(login);
    await page.locator('input[name="password"]').fill('any password');
    await session.screenshot(`${login}-provider-login`);
    await page.locator('button[type="submit"]').click();
    await page.locator('button[type="submit"]').click({ timeout: 10_000 });
    await page.waitForURL(`${server.httpsUrl}/**`);
    return session;
  }

  it('signs in through the provider’s login page, uploads an image, and signs out', async () => {
    const session = await signIn('sam');
    const { page } = session;
    await page.getByRole('link', { name: 'sam', exact: true }).waitFor();
    await page.goto(`${server.httpsUrl}/account`);
    await page.getByText(/Signed in with/).waitFor();
    await session.screenshot('sam-account');
    // Upload from the browser, as with a certificate.
    const data = randomBytes(2 * 1024 * 1024);
    const files = join(server.dir, 'files');
    await mkdir(files, { recursive: true });
    await writeFile(join(files, 'from-session.img'), data);
    await page.goto(`${server.httpsUrl}/upload`);
    await page.getByLabel('Name').fill('from-session.img');
    await page.getByRole('button', { name: 'Create and choose a file' }).click();
    await page.getByRole('heading', { name: /Upload to sam\/from-session\.img/ }).waitFor();
    await page.getByLabel('File').setInputFiles(join(files, 'from-session.img'));
    await page.getByRole('button', { name: /^Upload 2\.00 MiB$/ }).click();
    await page
      .getByText(/Uploaded/)
      .first()
      .waitFor({ timeout: 30_000 });
    await session.screenshot('sam-uploaded');
    const stored = await clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('admin')).get(
      '/api/images/sam/from-session.img',
    );
    assert.equal(stored.json.digests.sha256, sha256(data));
    // The upload is audited as made in a browser session.
    const audit = await clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('admin')).get(
      '/api/audit?action=image.upload&target=sam/from-session.img',
    );
    assert.equal(audit.json.items[0]?.detail.credential, 'session');
    await page.goto(`${server.httpsUrl}/account`);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('link', { name: 'Sign in with Test IAM' }).waitFor();
    await session.screenshot('signed-out');
  });

  it('explains a sign-in that no Repoman user is linked to', async () => {
    const session = await signIn('nobody-here');
    const { page } = session;
    await page.goto(`${server.httpsUrl}/account`);
    await page.getByTestId('unlinked-identity').waitFor();
    const text = await page.getByTestId('unlinked-identity').textContent();
    assert.match(text ?? '', /nobody-here/);
    await session.screenshot('unlinked');
  });

  it('links the identity signed in with to the certificate’s account, from the Account page', async () => {
    const session = await signIn(
      'pat-at-iam',
      pki.credential('pat'),
      'Link an identity: sign in with Test IAM',
    );
    const { page } = session;
    await page.waitForURL(`${server.httpsUrl}/account`);
    await page.getByTestId('offered-identity').waitFor();
    await session.screenshot('pat-offered');
    await page.getByRole('button', { name: 'Link it to pat' }).click();
    await page.getByTestId('identities').getByText('pat-at-iam').waitFor();
    await session.screenshot('pat-linked');
    const admin = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('admin'));
    const linked = await admin.get('/api/users/pat/identities');
    assert.deepEqual(
      linked.json.items.map((i: { subject: string }) => i.subject),
      ['pat-at-iam'],
    );
  });
});
