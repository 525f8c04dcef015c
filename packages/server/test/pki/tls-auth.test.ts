import assert from 'node:assert/strict';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { derToPem } from '../../src/pki/certificate.ts';
import {
  type Credential,
  chainPem,
  createCA,
  createProxy,
  createServerCertificate,
  createUserCertificate,
  credentialPem,
  keyPem,
} from '../../src/pki/issue.ts';
import {
  attachCertificateAuth,
  certificateAuthOf,
  tlsServerOptionsForClientAuth,
} from '../../src/pki/tls-auth.ts';
import { createVerifier, type Verifier } from '../../src/pki/verify.ts';
import { DAY, put, run, tempDir } from './fixtures.ts';

const ALICE_DN = '/C=CA/O=Grid/OU=phys.example.org/CN=Alice Example';
const ca = createCA('/C=CA/O=Grid/CN=Test Grid CA');
const caPem = derToPem(ca.cert.der);
const host = createServerCertificate(ca, ['localhost', '127.0.0.1']);
const alice = createUserCertificate(ca, ALICE_DN);
const bob = createUserCertificate(ca, '/C=CA/O=Grid/CN=Bob');
const rfc = createProxy(alice);
const credentials: Record<string, Credential> = {
  eec: alice,
  rfc,
  'proxy of proxy': createProxy(rfc),
  legacy: createProxy(alice, { type: 'legacy' }),
  draft: createProxy(alice, { type: 'draft' }),
  forged: createProxy(alice, { signWith: bob.key }),
};

const dir = await tempDir();
const caFile = await put(dir, 'ca.pem', caPem);

// counts verifyChain calls, to show the chain is verified once per connection
let verifications = 0;
const inner = createVerifier({ trustedCAs: [ca.cert.der] });
const countingVerifier: Verifier = {
  verifyChain: (ders, now) => {
    verifications++;
    return inner.verifyChain(ders, now);
  },
  warnings: inner.warnings,
  get signatureChecks() {
    return inner.signatureChecks;
  },
};

const server = https.createServer(
  { cert: chainPem(host), key: keyPem(host), ...tlsServerOptionsForClientAuth([caPem]) },
  (req, res) => {
    const socket = req.socket as TLSSocket;
    const auth = certificateAuthOf(socket);
    // the same verdict seen two days later: a kept-alive connection must not outlive its proxy
    const later = certificateAuthOf(socket, new Date(Date.now() + 2 * DAY));
    res.setHeader('content-type', 'application/json');
    if (!auth.ok) {
      res.statusCode = 401;
      res.end(JSON.stringify({ error: { code: auth.code, message: auth.reason } }));
      return;
    }
    res.end(
      JSON.stringify({
        dn: auth.dn,
        proxyType: auth.proxyType,
        proxyDepth: auth.proxyDepth,
        later: later.ok ? 'ok' : later.code,
        verifications,
      }),
    );
  },
);
attachCertificateAuth(server, () => countingVerifier);
let port = 0;

before(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});
after(() => {
  server.closeAllConnections();
  server.close();
});

type Reply = { status: number; body: Record<string, unknown> };

/** Requests over one kept-alive connection with node:https; the proxy file serves as both cert and key. */
async function nodeRequests(cred: Credential | undefined, count = 1): Promise<Reply[]> {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  const pem = cred ? credentialPem(cred) : undefined;
  const replies: Reply[] = [];
  try {
    for (let i = 0; i < count; i++) {
      replies.push(
        await new Promise<Reply>((resolve, reject) => {
          const req = https.request(
            { host: '127.0.0.1', port, path: '/', agent, ca: caPem, ...(pem ? { cert: pem, key: pem } : {}) },
            (res) => {
              let text = '';
              res.setEncoding('utf8');
              res.on('data', (chunk) => {
                text += chunk;
              });
              res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
            },
          );
          req.on('error', reject);
          req.end();
        }),
      );
    }
  } finally {
    agent.destroy();
  }
  return replies;
}

async function curl(cred: Credential | undefined): Promise<Reply> {
  const args = ['-sS', '--max-time', '10', '--cacert', caFile, '-w', '\n%{http_code}'];
  if (cred) {
    const file = await put(dir, `cred-${Math.random().toString(16).slice(2)}.pem`, credentialPem(cred));
    args.push('--cert', file, '--key', file);
  }
  const r = await run('curl', [...args, `https://127.0.0.1:${port}/`]);
  assert.equal(r.code, 0, `curl failed: ${r.stderr}`);
  const lines = r.stdout.trimEnd().split('\n');
  const status = Number(lines.pop());
  return { status, body: JSON.parse(lines.join('\n')) };
}

const clients: [string, (cred: Credential | undefined) => Promise<Reply>][] = [
  ['node https', async (cred) => (await nodeRequests(cred))[0] as Reply],
  ['curl', curl],
];

for (const [clientName, request] of clients) {
  describe(`${clientName} client`, () => {
    const accepted: [string, string, number][] = [
      ['eec', 'none', 0],
      ['rfc', 'rfc3820', 1],
      ['proxy of proxy', 'rfc3820', 2],
      ['legacy', 'legacy', 1],
      ['draft', 'draft', 1],
    ];
    for (const [name, proxyType, proxyDepth] of accepted) {
      test(`${name}: authenticated as the end-entity DN`, async () => {
        const reply = await request(credentials[name]);
        assert.equal(reply.status, 200, JSON.stringify(reply.body));
        assert.equal(reply.body.dn, ALICE_DN);
        assert.equal(reply.body.proxyType, proxyType);
        assert.equal(reply.body.proxyDepth, proxyDepth);
      });
    }

    test('forged proxy: a proper 401 with the reason, not a reset', async () => {
      const reply = await request(credentials.forged);
      assert.equal(reply.status, 401);
      assert.deepEqual(Object.keys(reply.body), ['error']);
      const error = reply.body.error as { code: string; message: string };
      assert.equal(error.code, 'bad_signature');
      assert.match(error.message, /certificate signature failure/);
    });

    test('no certificate: 401 no_certificate', async () => {
      const reply = await request(undefined);
      assert.equal(reply.status, 401);
      assert.equal((reply.body.error as { code: string }).code, 'no_certificate');
    });
  });
}

test('two requests on one kept-alive connection: both authenticated, the chain verified once', async () => {
  const before = verifications;
  const [first, second] = await nodeRequests(credentials['proxy of proxy'], 2);
  assert.equal(first?.status, 200);
  assert.equal(second?.status, 200);
  assert.equal(first?.body.dn, ALICE_DN);
  assert.equal(second?.body.dn, ALICE_DN);
  assert.equal(second?.body.proxyDepth, 2);
  assert.equal(verifications - before, 1);
  // and the verdict is re-checked against the clock on every request
  assert.equal(second?.body.later, 'expired');
});

test('tlsServerOptionsForClientAuth asks for certificates but leaves the verdict to us', () => {
  const opts = tlsServerOptionsForClientAuth([caPem]);
  assert.equal(opts.requestCert, true);
  assert.equal(opts.rejectUnauthorized, false);
  assert.equal(opts.minVersion, 'TLSv1.2');
  assert.deepEqual(opts.ca, [caPem]);
  assert.ok(opts.secureOptions > 0);
});
