/**
 * Hostile certificates and TLS against a real server: old protocol versions and weak cipher suites are
 * refused in the handshake (by the server: the client here offers them on purpose); truncated chains, chains
 * longer than the limit, a CA certificate and a server-only certificate used to log in get a 401 with the
 * reason, and none of them reaches anything.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { clientFor, expectError } from './helpers/http.ts';
import { type BadKind, makeTestPki, type TestPki } from './helpers/pki.ts';
import { startServerFor, type TestServer } from './helpers/server.ts';

/** Tries a handshake with these options; resolves with what was negotiated, or the error. */
function handshake(server: TestServer, pki: TestPki, options: tls.ConnectionOptions) {
  return new Promise<{ protocol: string | null; cipher: string } | { error: Error & { code?: string } }>(
    (resolve) => {
      const socket = tls.connect({
        host: '127.0.0.1',
        port: server.httpsPort,
        servername: 'localhost',
        ca: pki.ca.certPem,
        ...pki.credential('bob'),
        ...options,
      });
      socket.once('secureConnect', () => {
        resolve({ protocol: socket.getProtocol(), cipher: socket.getCipher().name });
        socket.destroy();
      });
      socket.once('error', (error) => resolve({ error }));
    },
  );
}

describe('hostile TLS and certificates', () => {
  let pki: TestPki;
  let server: TestServer;

  before(async () => {
    pki = await makeTestPki();
    server = await startServerFor(pki, 'sqlite');
    await clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('admin')).post('/api/users', {
      user_name: 'bob',
      client_dn: pki.dn('bob'),
    });
  });
  after(async () => server?.stop());

  it('speaks TLS 1.2 and 1.3 with forward-secret AEAD suites', async () => {
    const v13 = await handshake(server, pki, {});
    assert.deepEqual('protocol' in v13 && v13.protocol, 'TLSv1.3');
    // The test host certificate has an ECDSA key; RSA host certificates get the ECDHE-RSA forms of these.
    for (const cipher of [
      'ECDHE-ECDSA-AES128-GCM-SHA256',
      'ECDHE-ECDSA-AES256-GCM-SHA384',
      'ECDHE-ECDSA-CHACHA20-POLY1305',
    ]) {
      const v12 = await handshake(server, pki, { maxVersion: 'TLSv1.2', ciphers: cipher });
      assert.ok('protocol' in v12, `${cipher}: ${'error' in v12 ? v12.error.message : ''}`);
      assert.equal(v12.protocol, 'TLSv1.2');
      assert.equal(v12.cipher, cipher);
    }
  });

  it('refuses TLS 1.0 and 1.1 in the handshake', async () => {
    for (const version of ['TLSv1', 'TLSv1.1'] as const) {
      const result = await handshake(server, pki, {
        minVersion: version,
        maxVersion: version,
        ciphers: 'DEFAULT:@SECLEVEL=0',
      });
      assert.ok('error' in result, `${version} was accepted`);
      // The server's alert, not this client's own refusal to try.
      assert.match(
        `${result.error.code} ${result.error.message}`,
        /ALERT_PROTOCOL_VERSION|protocol version/i,
        version,
      );
    }
  });

  it('refuses weak suites: no forward secrecy, CBC; and knows none without encryption or authentication', async () => {
    for (const cipher of [
      'AES128-SHA',
      'AES256-GCM-SHA384',
      'ECDHE-ECDSA-AES128-SHA',
      'ECDHE-ECDSA-AES256-SHA384',
      'ECDHE-ECDSA-AES128-SHA256',
    ]) {
      assert.ok(tls.getCiphers().includes(cipher.toLowerCase()), `this client can offer ${cipher}`);
      const result = await handshake(server, pki, {
        maxVersion: 'TLSv1.2',
        ciphers: `${cipher}:@SECLEVEL=0`,
      });
      assert.ok('error' in result, `${cipher} was accepted`);
      assert.match(
        `${result.error.code} ${result.error.message}`,
        /handshake failure|alert number 40/i,
        cipher,
      );
    }
    // Null, anonymous, export, RC4 and 3DES suites are not even built into the TLS library the server uses.
    for (const cipher of [
      'null-sha256',
      'ecdhe-ecdsa-null-sha',
      'adh-aes128-gcm-sha256',
      'aecdh-aes128-sha',
      'des-cbc3-sha',
      'rc4-sha',
      'exp-rc4-md5',
    ])
      assert.ok(!tls.getCiphers().includes(cipher), cipher);
  });

  const bad: [BadKind, RegExp][] = [
    ['truncated', /issuer|chain|trusted/i],
    ['too-long', /depth|long|chain/i],
    ['ca-as-client', /CA certificate|not an end-entity|CA/i],
    ['server-only', /client authentication/i],
  ];
  for (const [kind, reason] of bad) {
    it(`refuses a ${kind} certificate chain with a 401 and its reason`, async () => {
      const as = clientFor(server.httpsUrl, pki.ca.certPem, pki.bad(kind));
      const whoami = await as.get('/api/whoami');
      expectError(whoami, 401, 'certificate_invalid');
      assert.match(whoami.json.error.message, reason);
      // Nothing opens to it, reading or writing.
      assert.equal((await as.get('/api/images')).status, 401);
      assert.equal((await as.post('/api/images', { name: 'x.img' })).status, 401);
    });
  }
});
