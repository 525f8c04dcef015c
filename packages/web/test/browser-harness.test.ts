/** The browser harness logs in with a real client certificate and trusts the server through the test CA only. */
import assert from 'node:assert/strict';
import { readdir, rm, stat } from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { makeTestPki, type TestPki } from '../../server/test/helpers/pki.ts';
import { type BrowserSession, checkBrowserTools, openBrowser, POLICY_DIR } from './helpers/browser.ts';

const artefacts = join(import.meta.dirname, '..', '..', '..', 'artefacts', 'web', 'harness');

const html = (text: string) =>
  text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c] ?? c);

/** An HTTPS server asking for (not requiring) a client certificate, answering with its subject's CN. */
async function whoamiServer(pki: TestPki): Promise<{ origin: string; server: https.Server }> {
  const server = https.createServer(
    {
      cert: pki.host.certPem,
      key: pki.host.keyPem,
      ca: pki.ca.certPem,
      requestCert: true,
      rejectUnauthorized: false,
    },
    (req, res) => {
      const socket = req.socket as TLSSocket;
      const peer = socket.getPeerCertificate();
      const cn = socket.authorized && peer.subject ? String(peer.subject.CN) : 'none';
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(
        `<!doctype html><html><head><title>whoami</title></head><body><h1 id="who">${html(cn)}</h1></body></html>`,
      );
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { origin: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

describe('browser harness', () => {
  let pki: TestPki;
  const servers: https.Server[] = [];
  let origin: string;
  const sessions: BrowserSession[] = [];

  const open = async (options: Omit<Parameters<typeof openBrowser>[0], 'artefacts'>) => {
    const session = await openBrowser({ ...options, artefacts });
    sessions.push(session);
    return session;
  };
  const who = async (session: BrowserSession, at: string) => {
    const response = await session.page.goto(`${at}/`);
    assert.equal(response?.status(), 200);
    return session.page.locator('#who').textContent();
  };

  before(async () => {
    // a missing tool or policy directory fails every test with what to install, not a bare ENOENT
    await checkBrowserTools();
    await rm(artefacts, { recursive: true, force: true });
    pki = await makeTestPki();
    const first = await whoamiServer(pki);
    servers.push(first.server);
    origin = first.origin;
  });

  after(async () => {
    await Promise.all(sessions.map((session) => session.close()));
    for (const server of servers) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("presents the user's certificate without a prompt", async () => {
    const session = await open({ origin, caPem: pki.ca.certPem, credential: pki.credential('bob') });
    assert.equal(await who(session, origin), 'Bob Example');
    const shot = await session.screenshot('with-certificate');
    assert.ok((await stat(shot)).size > 0);
    assert.deepEqual(session.errors, []);
  });

  it('goes on without a certificate when it has none', async () => {
    const session = await open({ origin, caPem: pki.ca.certPem });
    assert.equal(await who(session, origin), 'none');
    await session.screenshot('without-certificate');
    assert.deepEqual(session.errors, []);
  });

  it('trusts the server only through the CA in its database', async () => {
    const other = await makeTestPki();
    const session = await open({ origin, caPem: other.ca.certPem, credential: other.credential('bob') });
    await assert.rejects(session.page.goto(`${origin}/`), /net::ERR_CERT_AUTHORITY_INVALID/);
  });

  it('keeps sessions for two servers at once apart', async () => {
    // each session's policy file is in force in both browsers: neither may take the other's selection away
    const second = await whoamiServer(pki);
    servers.push(second.server);
    const [alice, carol] = await Promise.all([
      open({ origin, caPem: pki.ca.certPem, credential: pki.credential('alice') }),
      open({ origin: second.origin, caPem: pki.ca.certPem, credential: pki.credential('carol') }),
    ]);
    assert.deepEqual(await Promise.all([who(alice, origin), who(carol, second.origin)]), [
      'Alice Example',
      'Carol Example',
    ]);
  });

  it('closes leaving no policy file behind', async () => {
    const mine = async () =>
      (await readdir(POLICY_DIR)).filter((name) => name.startsWith(`repoman-test-${process.pid}-`));
    assert.equal((await mine()).length, sessions.length);
    await Promise.all(sessions.map((session) => session.close()));
    assert.deepEqual(await mine(), []);
  });
});
