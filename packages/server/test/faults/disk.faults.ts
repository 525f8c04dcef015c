/**
 * Disk full (reliability, part 2), run by `npm run test:faults` as root: the blob directory on a 24 MiB tmpfs,
 * filled up in the middle of uploads by PUT and by the resumable protocol. The upload gets 507, the previous
 * version stays whole and downloadable, nothing temporary is left of the PUT, and once space returns the
 * resumable upload goes on and the next PUT succeeds.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { clientFor } from '../helpers/http.ts';
import { makeTestPki, type TestPki } from '../helpers/pki.ts';
import { startServerFor, type TestServer } from '../helpers/server.ts';

const run = promisify(execFile);
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const MiB = 1024 * 1024;

describe('the blob directory filling up', () => {
  let pki: TestPki;
  let server: TestServer;
  let mount: string;
  let files: string;
  let bob: ReturnType<typeof clientFor>;

  /** curl -T as bob: the status, and the JSON error code if any. */
  async function put(file: string, image: string) {
    const { stdout } = await run('curl', [
      '-sS',
      '--cacert',
      join(files, 'ca.pem'),
      '--cert',
      join(files, 'bob.pem'),
      '--key',
      join(files, 'bob.key'),
      '-T',
      file,
      '-w',
      '\n%{http_code}',
      `${server.httpsUrl}/api/images/raw/${image}`,
    ]);
    const lines = stdout.trimEnd().split('\n');
    const status = Number(lines.pop());
    const body = lines.join('\n');
    return { status, code: body ? (JSON.parse(body).error?.code as string | undefined) : undefined };
  }

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('this test mounts a tmpfs: run it as root (CI does)');
    mount = await mkdtemp(join(tmpdir(), 'repoman-full-'));
    await run('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', mount]);
    files = await mkdtemp(join(tmpdir(), 'repoman-full-files-'));
    pki = await makeTestPki();
    server = await startServerFor(pki, 'sqlite', { REPOMAN_BLOB_DIR: mount });
    const admin = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('admin'));
    await admin.post('/api/users', { user_name: 'bob', client_dn: pki.dn('bob') });
    bob = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('bob'));
    await writeFile(join(files, 'ca.pem'), pki.ca.certPem);
    await writeFile(join(files, 'bob.pem'), pki.credential('bob').cert);
    await writeFile(join(files, 'bob.key'), pki.credential('bob').key);
  });
  after(async () => {
    await server?.stop();
    if (mount) {
      await run('umount', [mount]).catch(() => {});
      await rm(mount, { recursive: true, force: true });
    }
    if (files) await rm(files, { recursive: true, force: true });
  });

  it('answers 507, keeps the previous version, and recovers when space returns', async () => {
    await bob.post('/api/images', { name: 'full.img' });
    const first = randomBytes(4 * MiB);
    await writeFile(join(files, 'first.bin'), first);
    assert.equal((await put(join(files, 'first.bin'), 'full.img')).status, 201);

    // Leave about 5 MiB free, then try 8.
    await writeFile(join(mount, 'filler'), Buffer.alloc(14 * MiB));
    const second = randomBytes(8 * MiB);
    await writeFile(join(files, 'second.bin'), second);
    const refused = await put(join(files, 'second.bin'), 'full.img');
    assert.deepEqual(refused, { status: 507, code: 'insufficient_storage' });
    const image = (await bob.get('/api/images/full.img')).json;
    assert.equal(image.version, 1);
    assert.equal(image.digests.sha256, sha256(first));
    assert.equal(
      sha256((await bob.get('/api/images/raw/bob/full.img')).body),
      sha256(first),
      'still served whole',
    );
    assert.deepEqual(await readdir(join(mount, 'uploads')), [], 'nothing is left of the refused upload');

    // The resumable protocol: the bytes that fitted stay, and the upload goes on once there is room.
    const created = await bob.request('POST', '/api/uploads', {
      headers: {
        'tus-resumable': '1.0.0',
        'upload-length': String(second.length),
        'upload-metadata': `image ${Buffer.from('full.img').toString('base64')}`,
      },
    });
    const location = created.headers.location as string;
    const tus = { 'tus-resumable': '1.0.0', 'content-type': 'application/offset+octet-stream' };
    const cut = await bob.request('PATCH', location, {
      body: second,
      headers: { ...tus, 'upload-offset': '0' },
    });
    assert.equal(cut.status, 507, cut.text);
    const kept = Number((await bob.request('HEAD', location, { headers: tus })).headers['upload-offset']);
    assert.ok(kept > 0 && kept < second.length, `kept ${kept} bytes`);

    await rm(join(mount, 'filler'));
    const rest = await bob.request('PATCH', location, {
      body: second.subarray(kept),
      headers: { ...tus, 'upload-offset': String(kept) },
    });
    assert.equal(rest.status, 204, rest.text);
    assert.equal((await bob.get('/api/images/full.img')).json.digests.sha256, sha256(second));
    assert.equal((await put(join(files, 'first.bin'), 'full.img')).status, 200, 'a PUT succeeds again');
    assert.equal((await bob.get('/api/images/full.img')).json.version, 3);
  });
});
