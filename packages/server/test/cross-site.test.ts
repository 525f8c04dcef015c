/**
 * Cross-site request forgery: a browser sends its user's certificate with any request, so a change another site
 * makes the browser send (a form, a bodiless POST) must be refused, while the server's own pages and clients
 * that are not browsers (curl, the repoman client) go on working.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { clientFor, expectError } from './helpers/http.ts';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import { startServerFor, type TestServer } from './helpers/server.ts';

describe('changes sent by other sites', () => {
  let pki: TestPki;
  let server: TestServer;
  const admin = () => clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('admin'));
  const form = { 'content-type': 'application/x-www-form-urlencoded' };

  before(async () => {
    pki = await makeTestPki();
    server = await startServerFor(pki, 'sqlite');
  });
  after(async () => server?.stop());

  it('refuses a form another site submits, by Sec-Fetch-Site or by Origin, and changes nothing', async () => {
    const attempts: Record<string, string>[] = [
      { 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' },
      { 'sec-fetch-site': 'same-site', origin: 'https://repoman.example.org:8080' },
      { origin: 'https://evil.example' },
      { origin: 'null' },
      { origin: server.httpUrl as string }, // the plain-HTTP port is another origin
    ];
    for (const headers of attempts) {
      const created = await admin().request('POST', '/api/groups', {
        body: 'name=forged&users=admin',
        headers: { ...form, ...headers },
      });
      expectError(created, 403, 'cross_site_request');
      const bodiless = await admin().request('POST', '/api/users/admin', { headers });
      expectError(bodiless, 403, 'cross_site_request');
    }
    expectError(await admin().get('/api/groups/forged'), 404, 'group_not_found');
    // Reading stays open: a page elsewhere may link to an image.
    const read = await admin().request('GET', '/api/whoami', { headers: { 'sec-fetch-site': 'cross-site' } });
    assert.equal(read.status, 200);
  });

  it('takes changes from its own pages and from clients that are not browsers', async () => {
    const own = { 'sec-fetch-site': 'same-origin', origin: server.httpsUrl };
    const fromPage = await admin().request('POST', '/api/groups', {
      body: 'name=ours',
      headers: { ...form, ...own },
    });
    assert.equal(fromPage.status, 201, fromPage.text);
    const byOrigin = await admin().request('POST', '/api/groups', {
      body: 'name=ours2',
      headers: { ...form, origin: server.httpsUrl },
    });
    assert.equal(byOrigin.status, 201, byOrigin.text);
    const typed = await admin().request('POST', '/api/groups', {
      body: 'name=typed',
      headers: { ...form, 'sec-fetch-site': 'none' }, // typed into the address bar, or a bookmark
    });
    assert.equal(typed.status, 201, typed.text);
    const curl = await admin().post('/api/groups', { name: 'curl' });
    assert.equal(curl.status, 201, curl.text);
  });
});
