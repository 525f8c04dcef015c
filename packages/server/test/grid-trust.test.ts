/**
 * Grid trust rules over real HTTPS: a second trusted CA may not log in as the admin (its signing policy, or a
 * sub-CA's name constraints, forbid the name), and a user is bound to the CA that issued their certificate.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { chainPem, createCA, createProxy, createUserCertificate } from '../src/pki/issue.ts';
import { type ClientCredential, clientFor, expectError } from './helpers/http.ts';
import { asClient, makeTestPki, type TestPki } from './helpers/pki.ts';
import { PERMIT_ALL, startTestServer, type TestServer } from './helpers/server.ts';
import { constrainedSubCa } from './pki/fixtures.ts';

const EVIL_POLICY =
  "access_id_CA X509 '/O=Evil/CN=Evil CA'\npos_rights globus CA:sign\ncond_subjects globus '\"/O=Evil/*\"'\n";

describe('grid trust rules over HTTPS', () => {
  let pki: TestPki;
  let server: TestServer;
  let lenient: TestServer;
  const evil = createCA('/O=Evil/CN=Evil CA');
  const other = createCA('/O=Other Grid/CN=Other CA');
  const root = createCA('/O=Root Org/CN=Constrained Root');

  before(async () => {
    pki = await makeTestPki();
    const common = {
      engine: 'sqlite' as const,
      hostCertPem: pki.host.certPem,
      hostKeyPem: pki.host.keyPem,
      admins: [{ name: 'admin', dn: pki.dn('admin') }],
    };
    server = await startTestServer({
      ...common,
      caPems: [pki.ca.certPem, chainPem(evil), chainPem(other)],
      caNamespaces: [PERMIT_ALL, { signingPolicy: EVIL_POLICY }, PERMIT_ALL],
    });
    // a root whose sub-CA is presented by its users; namespaces only where files exist
    lenient = await startTestServer({
      ...common,
      caPems: [pki.ca.certPem, chainPem(root)],
      env: { REPOMAN_TRUST_NAMESPACES: 'enforce-if-present' },
    });
  });
  after(async () => {
    await server?.stop();
    await lenient?.stop();
  });

  const as = (s: TestServer, credential: ClientCredential) =>
    clientFor(s.httpsUrl, pki.ca.certPem, credential);

  it("refuses the admin's DN from a CA whose signing policy does not cover it", async () => {
    const forged = createUserCertificate(evil, pki.dn('admin'));
    for (const credential of [asClient(forged), asClient(createProxy(forged))]) {
      for (const path of ['/api/whoami', '/api/audit']) {
        const res = await as(server, credential).get(path);
        expectError(res, 401, 'certificate_invalid');
        assert.equal(res.json.error.details.reason, 'outside_namespace');
        assert.match(res.json.error.message, /outside the namespace of the CA \/O=Evil\/CN=Evil CA/);
      }
    }
    // the real admin still gets in, and the evil CA's own users are only unknown
    assert.equal((await as(server, pki.credential('admin')).get('/api/whoami')).status, 200);
    expectError(
      await as(server, asClient(createUserCertificate(evil, '/O=Evil/CN=Eve'))).get('/api/whoami'),
      403,
      'unknown_certificate',
    );
  });

  it("refuses a sub-CA's user outside its nameConstraints, critical or not", async () => {
    for (const critical of [false, true]) {
      const { credential: subCred } = constrainedSubCa(root, '/O=Sub Org/CN=Sub CA', '/O=Sub Org', critical);
      const res = await as(lenient, asClient(createUserCertificate(subCred, pki.dn('admin')))).get(
        '/api/audit',
      );
      expectError(res, 401, 'certificate_invalid');
      assert.match(res.json.error.message, /permitted subtree violation/);
      // (a user inside the subtree is accepted: test/pki/trust-rules.test.ts; over TLS, Node hands a chain that
      // OpenSSL itself verified to the server as its leaf alone, so a sub-CA outside the trusted directory
      // cannot be shown accepting here)
    }
  });

  it('binds a user to the CA of their first login; the same DN from another CA is refused', async () => {
    const admin = as(server, pki.credential('admin'));
    const created = await admin.post('/api/users', { user_name: 'carol', client_dn: pki.dn('carol') });
    assert.equal(created.status, 201, JSON.stringify(created.json));
    assert.equal(created.json.issuer_dn, null);
    assert.equal((await as(server, pki.proxy('carol', 'rfc')).get('/api/whoami')).status, 200);
    const bound = await admin.get('/api/users/carol');
    assert.equal(bound.json.issuer_dn, pki.caDn);

    const impostor = asClient(createUserCertificate(other, pki.dn('carol')));
    const refused = await as(server, impostor).get('/api/whoami');
    expectError(refused, 403, 'certificate_issuer_mismatch');
    assert.match(refused.json.error.message, /issued by \/O=Other Grid\/CN=Other CA/);

    // only an admin re-binds: the user may not move themselves to another CA
    expectError(
      await as(server, pki.credential('carol')).patch('/api/users/carol', {
        issuer_dn: '/O=Other Grid/CN=Other CA',
      }),
      403,
      'forbidden',
    );
    const rebound = await admin.patch('/api/users/carol', { issuer_dn: 'CN=Other CA,O=Other Grid' });
    assert.equal(rebound.status, 200, JSON.stringify(rebound.json));
    assert.equal(rebound.json.issuer_dn, '/O=Other Grid/CN=Other CA');
    assert.equal((await as(server, impostor).get('/api/whoami')).status, 200);
    expectError(
      await as(server, pki.credential('carol')).get('/api/whoami'),
      403,
      'certificate_issuer_mismatch',
    );

    // an admin may name the CA when creating a user: no first login decides it
    const dave = await admin.post('/api/users', {
      user_name: 'dave',
      client_dn: pki.dn('dave'),
      issuer_dn: '/O=Other Grid/CN=Other CA',
    });
    assert.equal(dave.status, 201, JSON.stringify(dave.json));
    expectError(
      await as(server, pki.credential('dave')).get('/api/whoami'),
      403,
      'certificate_issuer_mismatch',
    );
  });
});
