/**
 * `repoman endorse`, `withdraw`, `list-endorsements` and `image-list`, the built executable against a real
 * server that signs image lists: an endorser's own list signed with the system's openssl and their key, a
 * grid proxy that does not sign, and lists verified as a site verifies them (signature, signer, expiry, and
 * every image downloaded without a certificate and checked).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { chainPem, createCA } from '../../server/src/pki/issue.ts';
import { clientFor } from '../../server/test/helpers/http.ts';
import { makeTestPki, type TestPki } from '../../server/test/helpers/pki.ts';
import { startServerFor, type TestServer } from '../../server/test/helpers/server.ts';
import { BIN, buildClient } from './build.ts';

const run = promisify(execFile);
const inDays = (days: number) => new Date(Date.now() + days * 86_400_000).toISOString().slice(0, 10);

interface Run {
  status: number;
  stdout: string;
  stderr: string;
}

describe('image lists from the repoman client', () => {
  let pki: TestPki;
  let server: TestServer;
  let dir: string;
  let env: NodeJS.ProcessEnv;

  function repoman(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<Run> {
    return new Promise((done) => {
      execFile(
        process.execPath,
        [BIN, ...args],
        { cwd: dir, env: { ...env, ...extraEnv }, maxBuffer: 16 * 1024 * 1024, timeout: 60_000 },
        (error, stdout, stderr) => {
          done({ status: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
        },
      );
    });
  }
  async function ok(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<Run> {
    const result = await repoman(args, extraEnv);
    assert.equal(result.status, 0, `repoman ${args.join(' ')}: ${result.stdout}${result.stderr}`);
    return result;
  }
  async function fails(args: string[], status: number, pattern: RegExp, extraEnv: NodeJS.ProcessEnv = {}) {
    const result = await repoman(args, extraEnv);
    assert.equal(result.status, status, `repoman ${args.join(' ')}: ${result.stdout}${result.stderr}`);
    const line = result.stderr.trim().split('\n').at(-1) ?? '';
    assert.match(line, /^\[FAILED\] /);
    assert.match(line, pattern);
  }
  /** Eve, an endorser of the VO, with her certificate and key (not a proxy): she can sign. */
  const asEve = () => ({ X509_USER_PROXY: '' });
  const eveFlags = () => ['--cert', join(dir, 'eve.pem'), '--key', join(dir, 'eve.key')];

  before(async () => {
    buildClient();
    pki = await makeTestPki();
    dir = await mkdtemp(join(tmpdir(), 'repoman-client-lists-'));
    const signer = pki.credential('lists');
    await writeFile(join(dir, 'signer.pem'), signer.cert);
    await writeFile(join(dir, 'signer.key'), signer.key, { mode: 0o600 });
    server = await startServerFor(pki, 'sqlite', {
      REPOMAN_IMAGE_LISTS_SIGNING_CERT: join(dir, 'signer.pem'),
      REPOMAN_IMAGE_LISTS_SIGNING_KEY: join(dir, 'signer.key'),
    });
    // The CAs as a site keeps them: hashed, for openssl -CApath.
    const certificates = join(dir, 'certificates');
    await mkdir(certificates);
    await writeFile(join(certificates, 'ca.pem'), pki.ca.certPem);
    await run('openssl', ['rehash', certificates]);
    const bob = pki.proxy('bob', 'rfc');
    await writeFile(join(dir, 'bob-proxy.pem'), `${bob.cert}\n${bob.key}`, { mode: 0o600 });
    const eve = pki.credential('eve');
    await writeFile(join(dir, 'eve.pem'), eve.cert);
    await writeFile(join(dir, 'eve.key'), eve.key, { mode: 0o600 });
    env = {
      PATH: process.env.PATH,
      HOME: join(dir, 'home'),
      X509_CERT_DIR: certificates,
      X509_USER_PROXY: join(dir, 'bob-proxy.pem'),
    };
    await mkdir(join(dir, 'home', '.repoman'), { recursive: true });
    await writeFile(
      join(dir, 'home', '.repoman', 'repoman.conf'),
      `[Repository]\nrepository: localhost\nport: ${server.httpsPort}\n`,
    );
    const admin = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('admin'));
    for (const name of ['bob', 'eve'])
      assert.equal(
        (await admin.post('/api/users', { user_name: name, client_dn: pki.dn(name) })).status,
        201,
      );
    await admin.post('/api/groups', { name: 'endorsers', users: ['eve'], permissions: ['image_endorse'] });
    await admin.post('/api/groups', { name: 'vo', users: ['bob', 'eve'] });
    // Eve has logged in once: her CA is bound to her account, as a list's hv:ca needs.
    await clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('eve')).get('/api/whoami');
    const asBob = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('bob'));
    await asBob.post('/api/images', { name: 'worker.img', unauthenticated_access: true, os_type: 'linux' });
    assert.equal((await asBob.put('/api/images/raw/worker.img', Buffer.alloc(300_000, 7))).status, 201);
  });
  after(async () => {
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('endorses, signs the endorser’s own list with openssl, and verifies both lists as a site does', async () => {
    const endorsed = await ok(
      [
        ...eveFlags(),
        'endorse',
        'bob/worker.img',
        '--group',
        'vo',
        '--expires',
        inDays(60),
        '--comment',
        'For production',
      ],
      asEve(),
    );
    assert.match(endorsed.stdout, /\[OK\] vo endorses bob\/worker\.img version 1 until/);
    assert.match(endorsed.stderr, /Signed your own list of vo \(version \d+, 1 image\(s\)\)/);
    const group = await ok(['image-list', 'vo', '--verify']);
    assert.match(
      group.stdout,
      /\[OK\] Signed by \/C=CA\/O=Grid\/OU=repoman\.test\/CN=Lists Example, valid until .*; 1 image\(s\) downloaded and checked/,
    );
    assert.match(group.stderr, /^ok {2}worker\.img 1 {2}293\.0 KiB$/m);
    const own = await ok(['image-list', 'vo', '--endorser', 'eve', '--verify', '--json']);
    const verified = JSON.parse(own.stdout);
    assert.equal(verified.signer, pki.dn('eve'));
    assert.equal(verified.images.length, 1);
    assert.equal(verified.images[0].ok, true);
    // The list as JSON, and saved as signed.
    const printed = JSON.parse((await ok(['image-list', 'vo'])).stdout);
    assert.equal(printed['hv:imagelist']['hv:images'][0]['hv:image']['sl:comments'], 'For production');
    await ok(['image-list', 'vo', '--output', join(dir, 'vo.list')]);
    assert.match(await readFile(join(dir, 'vo.list'), 'utf8'), /multipart\/signed/);
    const table = (await ok(['list-endorsements', 'vo'])).stdout;
    assert.match(table, /bob\/worker\.img\s+1\s+293\.0 KiB\s+eve\s+/);
  });

  it('refuses a signer its CAs do not know, and who may not endorse, with one line', async () => {
    const other = join(dir, 'other-cas');
    await mkdir(other, { recursive: true });
    await writeFile(join(other, 'ca.pem'), chainPem(createCA('/C=CA/O=Elsewhere/CN=Another CA')));
    await run('openssl', ['rehash', other]);
    await fails(['image-list', 'vo', '--verify', '--ca-dir', other], 1, /signature does not verify/);
    await fails(['endorse', 'worker.img', '--group', 'vo', '--expires', inDays(5)], 1, /image_endorse/);
    await fails(['endorse', 'worker.img', '--expires', inDays(5)], 2, /--group/);
    await fails(['endorse', 'worker.img', '--group', 'vo'], 2, /--expires/);
  });

  it('endorses with a grid proxy without signing, and says why', async () => {
    const admin = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('admin'));
    await admin.post('/api/groups/endorsers/users/bob');
    const result = await ok(['endorse', 'worker.img', '--group', 'vo', '--expires', inDays(30)]);
    assert.match(result.stderr, /is a grid proxy, and sites trust end-entity DNs/);
    await admin.delete('/api/groups/endorsers/users/bob');
  });

  it('withdraws, and the lists no longer offer the image', async () => {
    await ok([...eveFlags(), 'withdraw', 'bob/worker.img', '--group', 'vo'], asEve());
    const printed = JSON.parse((await ok(['image-list', 'vo'])).stdout);
    assert.deepEqual(printed['hv:imagelist']['hv:images'], []);
    assert.match((await ok(['list-endorsements', 'vo'])).stdout, /vo endorses nothing now/);
    await fails(
      [...eveFlags(), 'withdraw', 'bob/worker.img', '--group', 'vo'],
      1,
      /does not endorse/,
      asEve(),
    );
  });
});
