/**
 * The grid's own HTTP tools against a real server, with a real grid proxy (grid-proxy-init) and the CA in a
 * hashed certificate directory, as on a grid node: gfal2's command line (gfal-copy, -f, gfal-ls, gfal-stat,
 * gfal-sum, gfal-rm), its Python binding, davix's command line (davix-put, davix-get, davix-ls) and a davix
 * vector read (DavPosix::preadVec, compiled here against the system's davix) whose bytes must match dd's.
 * docs/grid-tools.md shows the same commands.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
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
import { issuerToml, startIssuer, type TestIssuer } from './helpers/oidc.ts';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { put, type RunResult, run, tempDir } from './pki/fixtures.ts';

const dir = await tempDir('repoman-grid-');
const certDir = join(dir, 'certificates');
// grid-proxy-init and Globus want RSA keys
const ca = createCA('/C=CA/O=Grid/CN=Grid Tools Test CA', { keyKind: 'rsa' });
const host = createServerCertificate(ca, ['localhost', '127.0.0.1'], { keyKind: 'rsa' });
const ALICE_DN = '/C=CA/O=Grid/OU=phys.example.org/CN=Alice Example';
const alice = createUserCertificate(ca, ALICE_DN, { keyKind: 'rsa' });
const ADMIN_DN = '/C=CA/O=Grid/OU=phys.example.org/CN=Admin Example';
const admin = createUserCertificate(ca, ADMIN_DN, { keyKind: 'rsa' });

let server: TestServer;
let base: string;
let proxyFile: string;
/** An OpenID provider whose tokens name alice (subject alice-cli): gfal2 and davix with bearer tokens. */
let issuer: TestIssuer;
let env: NodeJS.ProcessEnv;
const caPem = derToPem(ca.cert.der);

/** A grid tool, run with the proxy and the certificate directory (as X509_USER_PROXY and X509_CERT_DIR). */
async function tool(file: string, args: string[], timeoutMs = 60_000): Promise<RunResult> {
  try {
    return await run(file, args, { env, timeoutMs });
  } catch (error) {
    assert.fail(`${(error as Error).message}: run npm test, whose setup installs gfal2 and davix`);
  }
}

async function ok(file: string, args: string[]): Promise<string> {
  const result = await tool(file, args);
  assert.equal(
    result.code,
    0,
    `${file} ${args.join(' ')} failed (${result.code}): ${result.stdout}${result.stderr}`,
  );
  return result.stdout;
}

const digest = (algorithm: string, bytes: Buffer) => createHash(algorithm).update(bytes).digest('hex');

/** ADLER32 as zlib computes it (an implementation other than the server's), 8 hex digits. */
async function adler32Hex(bytes: Buffer): Promise<string> {
  const file = await put(dir, `adler-${bytes.length}`, bytes);
  const result = await run('/usr/bin/python3', [
    '-c',
    'import sys, zlib; print("%08x" % zlib.adler32(open(sys.argv[1], "rb").read()))',
    file,
  ]);
  assert.equal(result.code, 0, result.stderr);
  return result.stdout.trim();
}

before(async () => {
  await gridCertDir(certDir, [{ ca, subjects: '"/C=CA/O=Grid/*"' }]);
  ({ proxyFile, env } = await gridProxy(dir, alice, certDir));
  issuer = await startIssuer({ clients: ['alice-cli'] });

  server = await startTestServer({
    engine: 'sqlite',
    caPems: [caPem],
    hostCertPem: chainPem(host),
    hostKeyPem: keyPem(host),
    admins: [{ name: 'admin', dn: ADMIN_DN }],
    configToml: issuerToml(issuer),
  });
  base = `https://localhost:${server.httpsPort}`;
  const asAdmin = clientFor(base, caPem, { cert: chainPem(admin), key: keyPem(admin) });
  const created = await asAdmin.post('/api/users', { user_name: 'alice', client_dn: ALICE_DN });
  assert.equal(created.status, 201, created.text);
  const linked = await asAdmin.post('/api/users/alice/identities', {
    issuer: issuer.url,
    subject: 'alice-cli',
  });
  assert.equal(linked.status, 201, linked.text);
});

after(async () => {
  await server?.stop();
  await issuer?.close();
});

const url = (path: string) => `${base}/api/images/raw/${path}`;
const asAlice = () => clientFor(base, caPem, { cert: chainPem(alice), key: keyPem(alice) });

describe('gfal2 (command line)', () => {
  const first = pattern(3 * 1024 * 1024 + 17, 1);
  const second = pattern(2 * 1024 * 1024 + 5, 2);
  /** `first` copied in as `alice/name` with gfal-copy (a name each test has to itself). */
  const copyIn = async (name: string) => {
    const local = await put(dir, `${name}.local`, first);
    await ok('gfal-copy', [`file://${local}`, url(`alice/${name}`)]);
  };
  /** gfal.img, which the listing and checksum tests read: copied in once, by whichever needs it first. */
  let shared: Promise<void> | undefined;
  const gfalImage = () => {
    shared ??= copyIn('gfal.img');
    return shared;
  };

  it('copies a file in to a name that does not exist yet, and out again', async () => {
    await copyIn('gfal-in.img');
    const image = (await asAlice().get('/api/images/alice/gfal-in.img')).json;
    assert.equal(image.size, first.length);
    assert.equal(image.digests.sha256, digest('sha256', first));
    assert.equal(image.unauthenticated_access, false, 'made private, as POST would');

    const out = join(dir, 'first.out');
    await ok('gfal-copy', [url('alice/gfal-in.img'), `file://${out}`]);
    assert.ok((await readFile(out)).equals(first));
  });

  it('lists a namespace and an image with their sizes and times (gfal-ls -l, gfal-stat)', async () => {
    await gfalImage();
    const listing = await ok('gfal-ls', [url('alice/')]);
    // The namespace as the JSON API lists it (other tests add to it, in any order).
    const held = (await asAlice().get('/api/images?owner=alice&limit=1000')).json.items.map(
      (image: { name: string }) => image.name,
    );
    assert.deepEqual(listing.trim().split('\n').sort(), held.sort());
    assert.ok(held.includes('gfal.img'));
    const long = await ok('gfal-ls', ['-l', url('alice/')]);
    assert.match(long, new RegExp(`\\s${first.length}\\s.*gfal\\.img`));
    assert.doesNotMatch(long, /1970/, 'times are the images’, not the epoch');
    const one = await ok('gfal-ls', ['-l', url('alice/gfal.img')]);
    assert.match(one, new RegExp(`^-\\S+\\s.*\\s${first.length}\\s.*gfal\\.img`, 'm'));
    assert.doesNotMatch(one, /1970/);
    const stat = await ok('gfal-stat', [url('alice/gfal.img')]);
    assert.match(stat, new RegExp(`Size: ${first.length}\\b`));
    assert.match(stat, /regular file/);
    const namespace = await ok('gfal-stat', [url('alice/')]);
    assert.match(namespace, /directory/);
    const root = await ok('gfal-ls', ['-l', url('')]);
    assert.match(root, /^d.*\salice\s*$/m, 'the namespaces Alice sees, as directories');
    await ok('gfal-mkdir', ['-p', url('alice/')]); // exists: MKCOL's 405 reads as "exists"
  });

  it('gives ADLER32, MD5 and SHA256 as computed locally (gfal-sum)', async () => {
    await gfalImage();
    const sums = {
      ADLER32: await adler32Hex(first),
      MD5: digest('md5', first),
      SHA256: digest('sha256', first),
    };
    for (const [algorithm, expected] of Object.entries(sums)) {
      const out = await ok('gfal-sum', [url('alice/gfal.img'), algorithm]);
      assert.equal(out.trim().split(/\s+/).at(-1), expected, `${algorithm}: ${out}`);
    }
  });

  it('refuses to overwrite without -f, and replaces the image with -f', async () => {
    await copyIn('gfal-over.img');
    const local = await put(dir, 'second.img', second);
    const refused = await tool('gfal-copy', [`file://${local}`, url('alice/gfal-over.img')]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr + refused.stdout, /exists/i);

    await ok('gfal-copy', ['-f', `file://${local}`, url('alice/gfal-over.img')]);
    const image = (await asAlice().get('/api/images/alice/gfal-over.img')).json;
    assert.equal(image.size, second.length);
    assert.equal(image.digests.sha256, digest('sha256', second));
    assert.equal(image.version, 1, 'a new image (its versions went with the old one)');
  });

  it('copies with checksum verification (gfal-copy -K ADLER32)', async () => {
    const local = await put(dir, 'checked.img', first);
    await ok('gfal-copy', ['-K', 'ADLER32', `file://${local}`, url('alice/checked.img')]);
    const out = join(dir, 'checked.out');
    await ok('gfal-copy', ['-K', 'MD5', url('alice/checked.img'), `file://${out}`]);
    assert.ok((await readFile(out)).equals(first));
  });

  it('removes an image (gfal-rm)', async () => {
    await copyIn('gfal-rm.img');
    await ok('gfal-rm', [url('alice/gfal-rm.img')]);
    assert.equal((await asAlice().get('/api/images/alice/gfal-rm.img')).status, 404);
    const gone = await tool('gfal-stat', [url('alice/gfal-rm.img')]);
    assert.notEqual(gone.code, 0);
    assert.match(gone.stderr, /No such file|not found|404/i);
  });
});

describe('gfal2 (Python binding)', () => {
  it('copies in, stats, lists, sums and removes', async () => {
    const bytes = pattern(1024 * 1024 + 3, 3);
    const local = await put(dir, 'python.img', bytes);
    const script = `
import gfal2, json, sys
ctx = gfal2.creat_context()
src, dst, ns = sys.argv[1], sys.argv[2], sys.argv[3]
params = ctx.transfer_parameters()
params.overwrite = True
ctx.filecopy(params, src, dst)
st = ctx.stat(dst)
print(json.dumps({
  "size": st.st_size, "mtime": st.st_mtime,
  "names": ctx.listdir(ns),
  "adler32": ctx.checksum(dst, "ADLER32"),
}))
ctx.unlink(dst)
`;
    const file = await put(dir, 'gfal.py', script);
    const out = await ok('/usr/bin/python3', [
      file,
      `file://${local}`,
      url('alice/python.img'),
      url('alice/'),
    ]);
    const result = JSON.parse(out);
    assert.equal(result.size, bytes.length);
    assert.ok(Math.abs(result.mtime - Date.now() / 1000) < 120, `mtime ${result.mtime} is now`);
    assert.ok(result.names.includes('python.img'), result.names.join(','));
    assert.equal(result.adler32, await adler32Hex(bytes));
    assert.equal((await asAlice().get('/api/images/alice/python.img')).status, 404);
  });
});

describe('davix', () => {
  const bytes = pattern(4 * 1024 * 1024 + 11, 4);
  const credentials = () => ['--cert', proxyFile, '--key', proxyFile, '--capath', certDir];

  it('puts to a new name, gets it back, and lists the namespace', async () => {
    const local = await put(dir, 'davix.img', bytes);
    await ok('davix-put', [...credentials(), local, url('alice/davix.img')]);
    const out = join(dir, 'davix.out');
    await ok('davix-get', [...credentials(), url('alice/davix.img'), out]);
    assert.ok((await readFile(out)).equals(bytes));
    const listing = await ok('davix-ls', [...credentials(), url('alice/')]);
    assert.ok(listing.split('\n').includes('davix.img'), listing);
    const long = await ok('davix-ls', [...credentials(), '-l', url('alice/')]);
    assert.match(long, new RegExp(`${bytes.length}.*davix\\.img`));
    assert.doesNotMatch(long, /1970/);
  });

  it('reads a vector of ranges (DavPosix::preadVec) that match dd', async () => {
    // An image of its own, put with davix as the other test does, and read back in ranges.
    const local = await put(dir, 'davix-readv.img', bytes);
    await ok('davix-put', [...credentials(), local, url('alice/davix-readv.img')]);
    const binary = join(dir, 'davix-readv');
    const compiled = await run(
      'g++',
      [
        '-std=c++17',
        '-O1',
        '-I/usr/include/davix',
        '-o',
        binary,
        join(import.meta.dirname, 'grid/davix-readv.cc'),
        '-ldavix',
      ],
      { timeoutMs: 120_000 },
    );
    assert.equal(compiled.code, 0, `compiling the davix vector read failed: ${compiled.stderr}`);
    const fragments: [number, number][] = [
      [0, 4096],
      [1_000_000, 65_536],
      [2_500_000, 1],
      [bytes.length - 100, 100],
      [3_000_000, 300_000],
    ];
    const result = await run(
      binary,
      [url('alice/davix-readv.img'), proxyFile, certDir, ...fragments.map(([o, l]) => `${o}:${l}`)],
      { env, timeoutMs: 60_000 },
    );
    assert.equal(result.code, 0, result.stderr);
    const expected: Buffer[] = [];
    for (const [offset, length] of fragments) {
      const dd = await run(
        'dd',
        [`if=${local}`, 'iflag=skip_bytes,count_bytes', `skip=${offset}`, `count=${length}`, 'status=none'],
        { timeoutMs: 60_000 },
      );
      assert.equal(dd.code, 0, dd.stderr);
      expected.push(Buffer.from(dd.stdout, 'latin1'));
    }
    assert.ok(Buffer.from(result.stdout, 'latin1').equals(Buffer.concat(expected)));
    await ok('davix-rm', [...credentials(), url('alice/davix-readv.img')]);
    assert.equal((await asAlice().get('/api/images/alice/davix-readv.img')).status, 404);
  });
});

describe('capabilities (macaroons)', () => {
  const bytes = pattern(3 * 1024 * 1024 + 3, 5);

  it('gfal-token asks for one, good for reading and not for writing (gfal-token -w: for both)', async () => {
    await asAlice().post('/api/images', { name: 'token.img' });
    assert.equal((await asAlice().put('/api/images/raw/token.img', bytes)).status, 201);
    const token = (await ok('gfal-token', [url('alice/token.img')])).trim();
    assert.match(token, /^MDA[A-Za-z0-9_-]+$/);
    // No certificate: the token alone.
    const anonymous = (headers: Record<string, string>, method = 'GET', body?: Buffer) =>
      request(url('alice/token.img'), method, null, caPem, { headers, ...(body ? { body } : {}) });
    const read = await anonymous({ authorization: `Bearer ${token}` });
    assert.equal(read.status, 200, read.text);
    assert.ok(read.body.equals(bytes));
    expectError(
      await anonymous({ authorization: `Bearer ${token}` }, 'PUT', Buffer.from('x')),
      403,
      'capability_denied',
    );
    const writer = (await ok('gfal-token', ['-w', url('alice/token.img')])).trim();
    assert.equal(
      (await anonymous({ authorization: `Bearer ${writer}` }, 'PUT', bytes.subarray(0, 1000))).status,
      200,
    );
    const shown = (await asAlice().get('/api/images/alice/token.img')).json;
    assert.equal(shown.size, 1000);
  });

  it('lets qemu-img convert a private qcow2 through a capability URL, without a certificate', async () => {
    const disk = pattern(4 * 1024 * 1024, 6); // whole sectors: qemu-img rounds a disk up to them
    const raw = await put(dir, 'disk.raw', disk);
    const qcow2 = join(dir, 'disk.qcow2');
    const made = await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2], {
      timeoutMs: 60_000,
    });
    assert.equal(made.code, 0, made.stderr);
    await asAlice().post('/api/images', { name: 'private.qcow2' });
    const uploaded = await asAlice().put('/api/images/raw/private.qcow2', await readFile(qcow2));
    assert.equal(uploaded.status, 201, uploaded.text);
    const issued = await asAlice().request('POST', '/api/images/raw/alice/private.qcow2', {
      body: '{"caveats": ["activity:DOWNLOAD"], "validity": "PT10M"}',
      headers: { 'content-type': 'application/macaroon-request' },
    });
    assert.equal(issued.status, 200, issued.text);
    // The test CA is not in the system's store that qemu's curl driver reads: sslverify is off here only.
    const source = JSON.stringify({
      'file.driver': 'https',
      'file.url': issued.json.uri.targetWithMacaroon,
      'file.sslverify': 'off',
    });
    const out = join(dir, 'converted.raw');
    const converted = await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', `json:${source}`, out], {
      timeoutMs: 120_000,
    });
    assert.equal(converted.code, 0, `${converted.stdout}${converted.stderr}`);
    assert.equal(digest('sha256', await readFile(out)), digest('sha256', disk));
    // Without the capability, the same URL is a private image.
    const bare = JSON.stringify({
      'file.driver': 'https',
      'file.url': issued.json.uri.target,
      'file.sslverify': 'off',
    });
    const refused = await run('qemu-img', ['info', `json:${bare}`], { timeoutMs: 60_000 });
    assert.notEqual(refused.code, 0);
  });
});

describe('bearer tokens with grid tools, without a proxy', () => {
  const bytes = pattern(1024 * 1024 + 3, 7);
  /** The environment of someone with a token and no proxy at all. */
  const tokenEnv = async (scope?: string) => {
    const token = await issuer.token('alice-cli', scope ? { scope } : {});
    return {
      ...env,
      X509_CERT_DIR: certDir,
      X509_USER_PROXY: join(dir, 'no-proxy-here'),
      BEARER_TOKEN: token,
    };
  };
  /** How the change to `target` was authenticated, from the audit log. */
  const credentialOf = async (target: string) => {
    const asAdmin = clientFor(base, caPem, { cert: chainPem(admin), key: keyPem(admin) });
    const log = await asAdmin.get(`/api/audit?action=image.upload&target=${target}`);
    return log.json.items[0]?.detail;
  };

  it('gfal-copy copies in and out with BEARER_TOKEN', async () => {
    const local = await put(dir, 'token-gfal.img', bytes);
    const withToken = await tokenEnv('storage.read:/alice storage.create:/alice');
    const copied = await run('gfal-copy', [`file://${local}`, url('alice/token-gfal.img')], {
      env: withToken,
    });
    assert.equal(copied.code, 0, copied.stderr);
    const detail = await credentialOf('alice/token-gfal.img');
    assert.equal(detail?.credential, 'token');
    assert.equal(detail?.token_scopes, 'storage.read:/alice storage.create:/alice');
    const out = join(dir, 'token-gfal.out');
    const back = await run('gfal-copy', [url('alice/token-gfal.img'), `file://${out}`], { env: withToken });
    assert.equal(back.code, 0, back.stderr);
    assert.ok((await readFile(out)).equals(bytes));
    // storage.create does not replace: gfal-copy -f is refused
    const again = await run('gfal-copy', ['-f', `file://${local}`, url('alice/token-gfal.img')], {
      env: withToken,
    });
    assert.notEqual(again.code, 0);
  });

  it('davix-put and davix-get copy in and out with an Authorization header', async () => {
    const local = await put(dir, 'token-davix.img', bytes);
    const noProxy = await tokenEnv();
    const header = ['--header', `Authorization: Bearer ${noProxy.BEARER_TOKEN}`, '--capath', certDir];
    const putting = await run('davix-put', [...header, local, url('alice/token-davix.img')], {
      env: noProxy,
    });
    assert.equal(putting.code, 0, putting.stderr);
    assert.equal((await credentialOf('alice/token-davix.img'))?.credential, 'token');
    const out = join(dir, 'token-davix.out');
    const getting = await run('davix-get', [...header, url('alice/token-davix.img'), out], { env: noProxy });
    assert.equal(getting.code, 0, getting.stderr);
    assert.ok((await readFile(out)).equals(bytes));
  });
});
