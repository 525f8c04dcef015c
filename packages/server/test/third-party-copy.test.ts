/**
 * Third-party copy (WLCG HTTP-TPC) between two real servers, each with a CA of its own and each listing the
 * other's in its trust.ca_dir, as two sites would: `COPY` with `Source:` (pull) and `Destination:` (push) as
 * curl sends it and as gfal2 drives it (`gfal-copy --copy-mode pull|push`, with capabilities it asks for
 * itself), performance markers as davix reads them, checksums compared, a push to a name not taken yet; a
 * pull from a plain HTTPS server; and what the destination policy refuses (loopback, unless allowed),
 * redirect loops, bytes that do not match the source's checksum, and copies past the owner's quota.
 *
 * Server B may reach loopback (tpc.allowed_networks); server A may not, as by default.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { derToPem } from '../src/pki/certificate.ts';
import {
  chainPem,
  createCA,
  createServerCertificate,
  createUserCertificate,
  keyPem,
} from '../src/pki/issue.ts';
import { gridCertDir, gridProxy, pattern } from './helpers/grid.ts';
import { clientFor, expectError, request } from './helpers/http.ts';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { type RunResult, run, tempDir } from './pki/fixtures.ts';

const dir = await tempDir('repoman-tpc-');
const certDir = join(dir, 'certificates');
// Two sites, each with its own CA (RSA keys: grid-proxy-init wants them), and a plain web server's.
const caA = createCA('/C=CA/O=Grid/CN=Site A CA', { keyKind: 'rsa' });
const caB = createCA('/C=CH/O=Grid/CN=Site B CA', { keyKind: 'rsa' });
const caWeb = createCA('/C=DE/O=Web/CN=Plain Web CA', { keyKind: 'rsa' });
const hostA = createServerCertificate(caA, ['localhost', '127.0.0.1'], { keyKind: 'rsa' });
const hostB = createServerCertificate(caB, ['localhost', '127.0.0.1'], { keyKind: 'rsa' });
const hostWeb = createServerCertificate(caWeb, ['localhost', '127.0.0.1'], { keyKind: 'rsa' });
const ALICE_DN = '/C=CA/O=Grid/OU=phys.example.org/CN=Alice Example';
const alice = createUserCertificate(caA, ALICE_DN, { keyKind: 'rsa' });
const ADMIN_DN = '/C=CA/O=Grid/OU=phys.example.org/CN=Admin Example';
const admin = createUserCertificate(caA, ADMIN_DN, { keyKind: 'rsa' });
const pem = (ca: typeof caA) => derToPem(ca.cert.der);
const aliceCredential = { cert: chainPem(alice), key: keyPem(alice) };

let serverA: TestServer;
let serverB: TestServer;
let web: https.Server;
let webBase: string;
let proxyFile: string;
let env: NodeJS.ProcessEnv;
/** What the plain web server answers at each path: bytes and headers, or a redirect. */
const webFiles = new Map<string, { bytes?: Buffer; headers?: Record<string, string>; location?: string }>();

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const b64sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('base64');

const raw = (server: TestServer, path: string) =>
  `https://localhost:${server.httpsPort}/api/images/raw/${path}`;
const caOf = (server: TestServer) => (server === serverA ? pem(caA) : pem(caB));
const asAdmin = (server: TestServer) =>
  clientFor(`https://localhost:${server.httpsPort}`, caOf(server), {
    cert: chainPem(admin),
    key: keyPem(admin),
  });
const asAlice = (server: TestServer) =>
  clientFor(`https://localhost:${server.httpsPort}`, caOf(server), aliceCredential);

/** A capability of Alice's for `path` on `server`. */
async function capability(server: TestServer, path: string, activities: string): Promise<string> {
  const answer = await asAlice(server).request('POST', `/api/images/raw/${path}`, {
    body: JSON.stringify({ caveats: [`activity:${activities}`], validity: 'PT10M' }),
    headers: { 'content-type': 'application/macaroon-request' },
  });
  assert.equal(answer.status, 200, answer.text);
  return answer.json.macaroon;
}

/** A COPY as curl sends it: Alice's certificate to `server`, the other end's capability in TransferHeader. */
function copy(server: TestServer, path: string, headers: Record<string, string>) {
  return request(
    `https://localhost:${server.httpsPort}/api/images/raw/${path}`,
    'COPY',
    aliceCredential,
    caOf(server),
    {
      headers,
    },
  );
}

/** The lines of a perf-marker stream, and its last (the outcome). */
function outcome(text: string): { lines: string[]; last: string } {
  const lines = text.split('\n').filter((line) => line !== '');
  return { lines, last: lines.at(-1) ?? '' };
}

async function uploadTo(server: TestServer, name: string, bytes: Buffer) {
  await asAlice(server).post('/api/images', { name });
  const put = await asAlice(server).put(`/api/images/raw/${name}`, bytes);
  assert.ok(put.status < 300, put.text);
}

before(async () => {
  await gridCertDir(certDir, [
    { ca: caA, subjects: '"/C=CA/O=Grid/*"' },
    { ca: caB, subjects: '"/C=CH/O=Grid/*"' },
  ]);
  ({ proxyFile, env } = await gridProxy(dir, alice, certDir));

  const common = {
    engine: 'sqlite' as const,
    admins: [{ name: 'admin', dn: ADMIN_DN }],
  };
  // Each site trusts the users' CA and the other site's; B also the plain web server's.
  serverA = await startTestServer({
    ...common,
    caPems: [pem(caA), pem(caB)],
    hostCertPem: chainPem(hostA),
    hostKeyPem: keyPem(hostA),
    env: { REPOMAN_TPC_MARKER_SECONDS: '1' },
  });
  serverB = await startTestServer({
    ...common,
    caPems: [pem(caA), pem(caB), pem(caWeb)],
    hostCertPem: chainPem(hostB),
    hostKeyPem: keyPem(hostB),
    env: {
      REPOMAN_TPC_ALLOWED_NETWORKS: '127.0.0.0/8,::1',
      REPOMAN_TPC_MARKER_SECONDS: '1',
      REPOMAN_TPC_MAX_REDIRECTS: '3',
    },
  });
  for (const server of [serverA, serverB]) {
    const created = await asAdmin(server).post('/api/users', { user_name: 'alice', client_dn: ALICE_DN });
    assert.equal(created.status, 201, created.text);
  }
  await asAlice(serverB).post('/api/images', { name: 'placeholder.img' }); // B's namespace has an image

  web = https.createServer({ cert: chainPem(hostWeb), key: keyPem(hostWeb) }, (req, res) => {
    const file = webFiles.get(req.url ?? '');
    if (!file) return void res.writeHead(404).end('no such file');
    if (file.location) return void res.writeHead(302, { location: file.location }).end();
    const bytes = file.bytes ?? Buffer.alloc(0);
    res.writeHead(200, { 'content-length': String(bytes.length), ...file.headers }).end(bytes);
  });
  await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
  webBase = `https://localhost:${(web.address() as AddressInfo).port}`;
});

after(async () => {
  await serverA?.stop();
  await serverB?.stop();
  web?.close();
});

describe('third-party copy with COPY, as curl sends it', () => {
  it('pulls an image from another repository with a capability, verified by checksum, with perf markers', async () => {
    const bytes = pattern(5 * 1024 * 1024 + 3, 1);
    await uploadTo(serverA, 'pulled.img', bytes);
    const token = await capability(serverA, 'alice/pulled.img', 'DOWNLOAD');
    const answer = await copy(serverB, 'alice/pulled.img', {
      source: raw(serverA, 'alice/pulled.img'),
      transferheaderauthorization: `Bearer ${token}`,
    });
    assert.equal(answer.status, 202, answer.text);
    assert.match(String(answer.headers['content-type']), /^text\/perf-marker-stream/);
    const { lines, last } = outcome(answer.text);
    assert.match(last, /^success: Created \(5242883 bytes; verified: sha256/);
    // Every line one davix knows; the last marker counts every byte.
    for (const line of lines.slice(0, -1))
      assert.match(
        line.trim(),
        /^(Perf Marker|Timestamp: \d+|Stripe Index: 0|Stripe Bytes Transferred: \d+|Total Stripe Count: 1|End)$/,
      );
    assert.equal(
      lines
        .filter((l) => l.trim().startsWith('Stripe Bytes Transferred:'))
        .at(-1)
        ?.trim(),
      `Stripe Bytes Transferred: ${bytes.length}`,
    );
    const image = (await asAlice(serverB).get('/api/images/alice/pulled.img')).json;
    assert.equal(image.digests.sha256, sha256(bytes));
    assert.equal(image.unauthenticated_access, false);
  });

  it('pushes an image to a name not taken yet at the other repository, verified by checksum', async () => {
    const bytes = pattern(2 * 1024 * 1024 + 9, 2);
    await uploadTo(serverB, 'pushed.img', bytes);
    const token = await capability(serverA, 'alice/pushed-there.img', 'UPLOAD');
    const answer = await copy(serverB, 'alice/pushed.img', {
      destination: raw(serverA, 'alice/pushed-there.img'),
      transferheaderauthorization: `Bearer ${token}`,
    });
    assert.equal(answer.status, 202, answer.text);
    assert.match(outcome(answer.text).last, /^success: Created \(2097161 bytes; verified: sha256/);
    assert.equal(
      (await asAlice(serverA).get('/api/images/alice/pushed-there.img')).json.digests.sha256,
      sha256(bytes),
    );
    // Recorded once the outcome is known: which way, the other end without its query, the bytes.
    const audit = await asAdmin(serverB).get('/api/audit?action=image.copy&limit=10');
    const entry = audit.json.items.find((e: { target: string }) => e.target === 'alice/pushed.img');
    assert.equal(entry?.outcome, 'ok');
    assert.deepEqual(
      [entry?.detail.direction, entry?.detail.remote, entry?.detail.bytes],
      ['push', raw(serverA, 'alice/pushed-there.img'), bytes.length],
    );
  });

  it('pulls from a plain HTTPS server, and verifies what it says of the bytes', async () => {
    const bytes = pattern(300_000, 3);
    webFiles.set('/plain.img', { bytes, headers: { 'repr-digest': `sha-256=:${b64sha256(bytes)}:` } });
    const answer = await copy(serverB, 'alice/from-web.img', { source: `${webBase}/plain.img` });
    assert.match(outcome(answer.text).last, /^success: Created \(300000 bytes; verified: sha256\)/);
    assert.equal(
      (await asAlice(serverB).get('/api/images/alice/from-web.img')).json.digests.sha256,
      sha256(bytes),
    );
    // RFC 3230 Digest (ADLER32 as dCache gives it) is read too; none at all is a success unverified...
    webFiles.set('/bare.img', { bytes });
    const bare = await copy(serverB, 'alice/bare.img', { source: `${webBase}/bare.img` });
    assert.match(outcome(bare.text).last, /^success: Created \(300000 bytes; verified: no checksum given\)/);
    // ...unless the copy requires one.
    const required = await copy(serverB, 'alice/bare2.img', {
      source: `${webBase}/bare.img`,
      requirechecksumverification: 'true',
    });
    assert.match(outcome(required.text).last, /^failure: .*gave no checksum/);
    expectError(await asAlice(serverB).get('/api/images/alice/bare2.img'), 404, 'image_not_found');
  });

  it('publishes nothing when the bytes do not match the source’s checksum', async () => {
    const bytes = pattern(100_000, 4);
    webFiles.set('/lying.img', { bytes, headers: { digest: 'adler32=00000001' } });
    const answer = await copy(serverB, 'alice/lying.img', { source: `${webBase}/lying.img` });
    assert.match(outcome(answer.text).last, /^failure: .*(adler32|digest)/i);
    expectError(await asAlice(serverB).get('/api/images/alice/lying.img'), 404, 'image_not_found');
  });

  it('refuses loopback where it is not allowed, in any form and after any redirect, loops, and the quota', async () => {
    const token = await capability(serverB, 'alice/placeholder.img', 'DOWNLOAD');
    const refused = await copy(serverA, 'alice/ssrf.img', {
      source: raw(serverB, 'alice/placeholder.img'),
      transferheaderauthorization: `Bearer ${token}`,
    });
    assert.equal(refused.status, 202);
    assert.match(
      outcome(refused.text).last,
      /^failure: The copy was refused: localhost resolves to 127\.0\.0\.1 is a loopback address/,
    );
    const literal = await copy(serverA, 'alice/ssrf.img', {
      source: 'https://169.254.169.254/latest/meta-data/',
    });
    assert.match(
      outcome(literal.text).last,
      /^failure: The copy was refused: 169\.254\.169\.254 is a link-local address/,
    );
    // An IPv4-mapped IPv6 address is the IPv4 address it carries, however written.
    const mapped = await copy(serverA, 'alice/ssrf.img', {
      source: `https://[::ffff:127.0.0.1]:${serverB.httpsPort}/api/images/raw/alice/placeholder.img`,
    });
    assert.match(
      outcome(mapped.text).last,
      /^failure: The copy was refused: ::ffff:7f00:1 is a loopback address/,
    );
    // Every redirect is a destination of its own: to a refused address, or from https down to http.
    webFiles.set('/to-metadata', { location: 'https://169.254.169.254/latest/meta-data/' });
    const redirected = await copy(serverB, 'alice/ssrf.img', { source: `${webBase}/to-metadata` });
    assert.match(
      outcome(redirected.text).last,
      /^failure: The copy was refused: 169\.254\.169\.254 is a link-local/,
    );
    webFiles.set('/downgrade', {
      location: `http://localhost:${serverB.httpPort}/api/images/raw/alice/x.img`,
    });
    const downgraded = await copy(serverB, 'alice/ssrf.img', { source: `${webBase}/downgrade` });
    assert.match(outcome(downgraded.text).last, /^failure: .*redirected from https to plain http/);
    webFiles.set('/loop', { location: '/loop' });
    const loop = await copy(serverB, 'alice/loop.img', { source: `${webBase}/loop` });
    assert.match(outcome(loop.text).last, /^failure: .*redirected more than 3 times/);
    const admin_ = asAdmin(serverB);
    // Room for 2000 bytes more: a copy of 5000 is refused once the source says how long it is.
    const usage = (await admin_.get('/api/users/alice')).json.usage as number;
    await admin_.patch('/api/users/alice', { quota: usage + 2000 });
    try {
      webFiles.set('/big.img', { bytes: Buffer.alloc(5000, 1) });
      const big = await copy(serverB, 'alice/big.img', { source: `${webBase}/big.img` });
      assert.match(outcome(big.text).last, /^failure: .*quota/);
    } finally {
      await admin_.patch('/api/users/alice', { quota: null });
    }
    expectError(await asAlice(serverB).get('/api/images/alice/big.img'), 404, 'image_not_found');
  });

  it('takes a capability for the copy itself, as FTS sends one instead of a certificate', async () => {
    const bytes = pattern(70_000, 6);
    webFiles.set('/for-fts.img', { bytes });
    const token = await capability(serverB, 'alice/by-token.img', 'UPLOAD');
    const bearer = (headers: Record<string, string>, path = 'alice/by-token.img') =>
      request(raw(serverB, path), 'COPY', null, pem(caB), {
        headers: { authorization: `Bearer ${token}`, ...headers },
      });
    const answer = await bearer({ source: `${webBase}/for-fts.img` });
    assert.match(outcome(answer.text).last, /^success: Created/);
    assert.equal((await asAlice(serverB).get('/api/images/alice/by-token.img')).json.size, bytes.length);
    // An UPLOAD capability pulls into its image; it does not push the image elsewhere.
    expectError(await bearer({ destination: `${webBase}/x` }), 403, 'capability_denied');
  });

  it('refuses a bad COPY at once: no Source or Destination, both, a bad URL, Overwrite: F, a stranger', async () => {
    expectError(await copy(serverB, 'alice/x.img', {}), 400, 'bad_request');
    expectError(
      await copy(serverB, 'alice/x.img', { source: `${webBase}/a`, destination: `${webBase}/b` }),
      400,
      'bad_request',
    );
    expectError(await copy(serverB, 'alice/x.img', { source: 'file:///etc/passwd' }), 400, 'bad_request');
    expectError(
      await copy(serverB, 'alice/x.img', { source: 'https://user:pw@example.org/x' }),
      400,
      'bad_request',
    );
    await uploadTo(serverB, 'kept.img', Buffer.from('kept'));
    expectError(
      await copy(serverB, 'alice/kept.img', { source: `${webBase}/plain.img`, overwrite: 'F' }),
      412,
      'destination_exists',
    );
    expectError(
      await copy(serverB, 'admin/theirs.img', { source: `${webBase}/plain.img` }),
      404,
      'image_not_found',
    );
    expectError(
      await copy(serverB, 'alice/nothing.img', { destination: `${webBase}/x` }),
      404,
      'image_not_found',
    );
  });
});

describe('third-party copy as gfal2 drives it', () => {
  /** gfal2 asks each end for the capability it hands the other (RETRIEVE_BEARER_TOKEN). */
  const gfal = (args: string[]): Promise<RunResult> =>
    run('gfal-copy', ['-D', 'HTTP PLUGIN:RETRIEVE_BEARER_TOKEN=true', ...args], { env, timeoutMs: 120_000 });

  it('copies with --copy-mode pull and push between the two repositories, checked with -K ADLER32', async () => {
    const bytes = pattern(4 * 1024 * 1024 + 1, 5);
    await uploadTo(serverA, 'gfal-src.img', bytes);
    const pulled = await gfal([
      '--copy-mode',
      'pull',
      '-K',
      'ADLER32',
      raw(serverA, 'alice/gfal-src.img'),
      raw(serverB, 'alice/gfal-pulled.img'),
    ]);
    assert.equal(pulled.code, 0, `${pulled.stdout}${pulled.stderr}`);
    assert.equal(
      (await asAlice(serverB).get('/api/images/alice/gfal-pulled.img')).json.digests.sha256,
      sha256(bytes),
    );
    const pushed = await gfal([
      '--copy-mode',
      'push',
      '-K',
      'ADLER32',
      raw(serverB, 'alice/gfal-pulled.img'),
      raw(serverA, 'alice/gfal-pushed.img'),
    ]);
    assert.equal(pushed.code, 0, `${pushed.stdout}${pushed.stderr}`);
    assert.equal(
      (await asAlice(serverA).get('/api/images/alice/gfal-pushed.img')).json.digests.sha256,
      sha256(bytes),
    );
  });

  it('reports a copy the destination policy refuses as a failure', async () => {
    await uploadTo(serverB, 'gfal-refused-source.img', pattern(64 * 1024, 5));
    const refused = await gfal([
      '--copy-mode',
      'pull',
      raw(serverB, 'alice/gfal-refused-source.img'),
      raw(serverA, 'alice/gfal-refused.img'),
    ]);
    assert.notEqual(refused.code, 0);
    assert.match(`${refused.stdout}${refused.stderr}`, /loopback/);
  });
});

describe('repoman copy', () => {
  const CLIENT = join(import.meta.dirname, '..', '..', 'client', 'src', 'main.ts');
  /** The client, configured for server B, with Alice's proxy and both sites' CAs (X509_CERT_DIR). */
  const repoman = (args: string[]) =>
    run(
      process.execPath,
      [CLIENT, '-r', 'localhost', '-p', String(serverB.httpsPort), '-P', proxyFile, ...args],
      {
        env,
        timeoutMs: 120_000,
      },
    );

  it('copies an image between two repositories, pulled by default and pushed with --push', async () => {
    const bytes = pattern(3 * 1024 * 1024 + 7, 7);
    await uploadTo(serverA, 'client-src.img', bytes);
    const pulled = await repoman(['copy', raw(serverA, 'alice/client-src.img'), 'client-pulled.img']);
    assert.equal(pulled.code, 0, pulled.stderr);
    assert.match(
      pulled.stdout,
      /^\[OK\] Copied .*client-src\.img to .*client-pulled\.img \(3145735 bytes; verified: sha256/,
    );
    assert.equal(
      (await asAlice(serverB).get('/api/images/alice/client-pulled.img')).json.digests.sha256,
      sha256(bytes),
    );
    const pushed = await repoman([
      'copy',
      '--push',
      'client-pulled.img',
      raw(serverA, 'alice/client-pushed.img'),
    ]);
    assert.equal(pushed.code, 0, pushed.stderr);
    assert.equal(
      (await asAlice(serverA).get('/api/images/alice/client-pushed.img')).json.digests.sha256,
      sha256(bytes),
    );
    // The capabilities the copies used were revoked once they were over.
    const usable = (await asAlice(serverA).get('/api/capabilities?limit=1000')).json.items as {
      path: string;
    }[];
    assert.ok(!usable.some((c) => c.path.includes('client-')), JSON.stringify(usable));
  });

  it('fails with the copy’s reason and a non-zero exit', async () => {
    await uploadTo(serverB, 'client-refused-source.img', pattern(64 * 1024, 6));
    const refused = await repoman(['copy', 'client-refused-source.img', raw(serverA, 'alice/refused.img')]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr.trim().split('\n').at(-1) ?? '', /^\[FAILED\] .*The copy failed: .*loopback/);
  });
});
