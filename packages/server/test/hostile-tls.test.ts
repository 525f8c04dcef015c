/**
 * Hostile certificates and TLS against a real server: old protocol versions and weak cipher suites are
 * refused in the handshake (by the server: the client here offers them on purpose); truncated chains, chains
 * longer than the limit, a CA certificate and a server-only certificate used to log in get a 401 with the
 * reason, and none of them reaches anything.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { clientFor, expectError } from './helpers/http.ts';
import { type BadKind, makeTestPki, type TestPki } from './helpers/pki.ts';
import { startServerFor, startTestServer, type TestServer } from './helpers/server.ts';

const run = promisify(execFile);

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

/** Offers suites with the system's openssl, which still has some that the server's TLS library lacks. */
async function opensslOffers(server: TestServer, pki: TestPki, dir: string, cipher: string) {
  await writeFile(join(dir, 'ca.pem'), pki.ca.certPem);
  const args = ['s_client', '-connect', `127.0.0.1:${server.httpsPort}`, '-tls1_2'];
  args.push('-cipher', `${cipher}:@SECLEVEL=0`, '-CAfile', join(dir, 'ca.pem'));
  const result = await run('sh', ['-c', 'exec openssl "$@" < /dev/null', 'sh', ...args], {
    timeout: 10_000,
  }).then(
    (r) => ({ code: 0, out: r.stdout + r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({
      code: e.code,
      out: `${e.stdout}${e.stderr}`,
    }),
  );
  return result;
}

describe('hostile TLS and certificates', () => {
  let pki: TestPki;
  let server: TestServer;
  let rsa: TestServer;

  before(async () => {
    pki = await makeTestPki();
    server = await startServerFor(pki, 'sqlite');
    // The same server with an RSA host key, whose suites differ (static RSA key exchange is possible there).
    const host = pki.hostRsa();
    rsa = await startTestServer({
      engine: 'sqlite',
      caPems: [pki.ca.certPem],
      hostCertPem: host.certPem,
      hostKeyPem: host.keyPem,
      admins: [{ name: 'admin', dn: pki.dn('admin') }],
    });
    await clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('admin')).post('/api/users', {
      user_name: 'bob',
      client_dn: pki.dn('bob'),
    });
  });
  after(async () => {
    await server?.stop();
    await rsa?.stop();
  });

  it('speaks TLS 1.2 and 1.3 with forward-secret AEAD suites, for ECDSA and RSA host keys', async () => {
    for (const [host, suites] of [
      [
        server,
        ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305'],
      ],
      [rsa, ['ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-RSA-CHACHA20-POLY1305']],
    ] as const) {
      const v13 = await handshake(host, pki, {});
      assert.deepEqual('protocol' in v13 && v13.protocol, 'TLSv1.3');
      for (const cipher of suites) {
        const v12 = await handshake(host, pki, { maxVersion: 'TLSv1.2', ciphers: cipher });
        assert.ok('protocol' in v12, `${cipher}: ${'error' in v12 ? v12.error.message : ''}`);
        assert.equal(v12.protocol, 'TLSv1.2');
        assert.equal(v12.cipher, cipher);
      }
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

  it('refuses weak suites: static RSA key exchange, CBC, no encryption, no authentication', async () => {
    for (const [host, cipher] of [
      [rsa, 'AES128-SHA'],
      [rsa, 'AES256-GCM-SHA384'],
      [rsa, 'AES128-GCM-SHA256'],
      [rsa, 'ECDHE-RSA-AES128-SHA'],
      [rsa, 'ECDHE-RSA-AES256-SHA384'],
      [server, 'ECDHE-ECDSA-AES128-SHA'],
      [server, 'ECDHE-ECDSA-AES256-SHA384'],
      [server, 'ECDHE-ECDSA-AES128-SHA256'],
    ] as const) {
      assert.ok(tls.getCiphers().includes(cipher.toLowerCase()), `this client can offer ${cipher}`);
      const result = await handshake(host, pki, { maxVersion: 'TLSv1.2', ciphers: `${cipher}:@SECLEVEL=0` });
      assert.ok('error' in result, `${cipher} was accepted`);
      assert.match(
        `${result.error.code} ${result.error.message}`,
        /handshake failure|alert number 40/i,
        cipher,
      );
    }
    // Null and anonymous suites, offered by the system's openssl (Node's own cannot offer them).
    const dir = rsa.dir;
    for (const [host, cipher] of [
      [rsa, 'NULL-SHA256'],
      [rsa, 'ADH-AES128-GCM-SHA256'],
      [server, 'AECDH-AES128-SHA'],
      [server, 'ECDHE-ECDSA-NULL-SHA'],
    ] as const) {
      const result = await opensslOffers(host, pki, dir, cipher);
      assert.notEqual(result.code, 0, `${cipher} was accepted: ${result.out}`);
      assert.match(result.out, /handshake failure|alert number 40|no cipher/i, cipher);
      assert.doesNotMatch(result.out, /Cipher is (?!\(NONE\))/, cipher);
    }
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
      // Nothing opens to it, reading or writing, beyond what is public to anyone.
      assert.equal((await as.get('/api/users')).status, 401);
      const images = await as.get('/api/images');
      assert.equal(images.status, 200);
      assert.ok(
        images.json.items.every((image: { unauthenticated_access: boolean }) => image.unauthenticated_access),
      );
      assert.equal((await as.post('/api/images', { name: 'x.img' })).status, 401);
    });
  }
});
