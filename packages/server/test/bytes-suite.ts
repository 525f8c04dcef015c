/**
 * Image bytes over real HTTPS and HTTP with the clients users have: curl and wget upload and download, ranges
 * compared with dd, refusals that arrive before the body, and failed uploads that change nothing. Run once per
 * database engine (bytes-sqlite.test.ts, bytes-postgres.test.ts).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { CreateMultipartUploadCommand } from '@aws-sdk/client-s3';
import { createS3Store } from '../src/blobs/s3.ts';
import type { S3Settings } from '../src/blobs/s3-settings.ts';
import { adler32 } from './helpers/adler32.ts';
import { clientFor, expectError } from './helpers/http.ts';
import { encryptedQcow2 } from './helpers/images.ts';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import { PG_URL } from './helpers/postgres.ts';
import { type Engine, startServerFor, type TestServer } from './helpers/server.ts';
import { newBucket, type Swift, startSwift } from './helpers/swift.ts';

const run = promisify(execFile);
const MAIN = resolve(import.meta.dirname, '../src/main.ts');
const MAX = 8 * 1024 * 1024;

export function bytesSuite(engine: Engine, storage: 'directory' | 's3' = 'directory') {
  describe(`image bytes on ${engine}${storage === 's3' ? ' and S3 (Swift)' : ''}`, () => {
    let swift: Swift | undefined;
    let storageEnv: Record<string, string> = {};
    let pki: TestPki;
    let server: TestServer;
    let files: string;
    let as: (name: string) => ReturnType<typeof clientFor>;
    const image = randomBytes(3 * 1024 * 1024 + 123);
    const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

    /** curl as a user (or anonymously), returning status, headers and the bytes uploaded. */
    async function curl(user: string | null, args: string[]) {
      const creds = user ? ['--cert', join(files, `${user}.pem`), '--key', join(files, `${user}.key`)] : [];
      const { stdout } = await run(
        'curl',
        ['-sS', '--cacert', join(files, 'ca.pem'), ...creds, '-w', '\n%{http_code} %{size_upload}', ...args],
        { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 },
      );
      const text = stdout.toString('latin1');
      const cut = text.lastIndexOf('\n');
      const [status, uploaded] = text
        .slice(cut + 1)
        .split(' ')
        .map(Number);
      return { status: status as number, uploaded: uploaded as number, body: stdout.subarray(0, cut) };
    }

    const raw = (path: string) => `${server.httpsUrl}/api/images/raw/${path}`;

    before(async () => {
      pki = await makeTestPki();
      if (storage === 's3') {
        swift = await startSwift();
        storageEnv = swift.serverEnv(newBucket());
      }
      server = await startServerFor(pki, engine, {
        ...storageEnv,
        REPOMAN_UPLOADS_MAX_IMAGE_SIZE: String(MAX),
        REPOMAN_UPLOADS_KEEP_VERSIONS: '2',
        REPOMAN_UPLOADS_ALLOWED_FORMATS: 'raw,qcow2,gzip',
      });
      as = (name) => clientFor(server.httpsUrl, pki.ca.certPem, pki.credential(name));
      files = join(server.dir, 'client');
      await run('mkdir', ['-p', files]);
      await writeFile(join(files, 'ca.pem'), pki.ca.certPem);
      await writeFile(join(files, 'image.bin'), image); // random bytes: an off-by-one range cannot pass
      for (const user of ['admin', 'bob', 'pam']) {
        await writeFile(join(files, `${user}.pem`), pki.credential(user).cert);
        await writeFile(join(files, `${user}.key`), pki.credential(user).key);
        if (user !== 'admin')
          await as('admin').post('/api/users', { user_name: user, client_dn: pki.dn(user) });
      }
      await as('bob').post('/api/images', { name: 'vm.img' });
    });
    after(async () => {
      await server?.stop();
      await swift?.stop();
    });

    const blobFiles = async () => {
      const keys: string[] = [];
      for await (const key of server.store.list()) keys.push(key);
      return keys;
    };
    const uploadsLeft = async () => (await server.store.listUploads()).map((u) => u.name);

    it('uploads with curl -T and downloads the same bytes with curl', async () => {
      const put = await curl('bob', ['-T', join(files, 'image.bin'), raw('vm.img')]);
      assert.equal(put.status, 201, put.body.toString());
      const json = JSON.parse(put.body.toString());
      assert.equal(json.version, 1);
      assert.equal(json.size, image.length);
      assert.equal(json.digests.sha256, sha256(image));
      assert.equal(json.digests.md5, createHash('md5').update(image).digest('hex'));
      assert.equal(json.digests.sha512, createHash('sha512').update(image).digest('hex'));
      assert.equal(json.digests.adler32, adler32(image));
      const get = await curl('bob', ['-o', join(files, 'out.bin'), raw('bob/vm.img')]);
      assert.equal(get.status, 200);
      assert.equal(sha256(await readFile(join(files, 'out.bin'))), sha256(image));
    });

    it('sends the headers HTTP clients use, and answers HEAD and conditional requests', async () => {
      const head = await as('bob').request('HEAD', '/api/images/raw/bob/vm.img');
      assert.equal(head.status, 200);
      assert.equal(head.headers['content-type'], 'application/octet-stream');
      assert.equal(head.headers['content-length'], String(image.length));
      assert.equal(head.headers['accept-ranges'], 'bytes');
      assert.equal(head.headers.etag, `"${sha256(image)}"`);
      assert.match(head.headers['content-disposition'] ?? '', /filename="vm.img"/);
      assert.equal(
        head.headers['repr-digest'],
        `sha-256=:${createHash('sha256').update(image).digest('base64')}:`,
      );
      assert.equal(head.text, '');
      const etag = head.headers.etag as string;
      const lastModified = head.headers['last-modified'] as string;
      assert.equal(
        (await as('bob').get('/api/images/raw/bob/vm.img', undefined, { headers: { 'if-none-match': etag } }))
          .status,
        304,
      );
      assert.equal(
        (
          await as('bob').get('/api/images/raw/bob/vm.img', undefined, {
            headers: { 'if-modified-since': lastModified },
          })
        ).status,
        304,
      );
      const stale = await as('bob').get('/api/images/raw/bob/vm.img', undefined, {
        headers: { range: 'bytes=0-9', 'if-range': '"other"' },
      });
      assert.equal(stale.status, 200, 'If-Range with another ETag gets the whole image');
    });

    it('serves single ranges that match dd of the same bytes, and 416 outside them', async () => {
      const size = image.length;
      for (const [range, skip, count] of [
        ['500-2499', 500, 2000],
        [`${size - 100}-`, size - 100, 100],
        ['-777', size - 777, 777],
        ['0-0', 0, 1],
      ] as const) {
        const out = join(files, 'range.bin');
        const res = await curl('bob', ['-r', range, '-o', out, raw('bob/vm.img')]);
        assert.equal(res.status, 206, range);
        const { stdout } = await run(
          'dd',
          [`if=${join(files, 'image.bin')}`, 'bs=1', `skip=${skip}`, `count=${count}`, 'status=none'],
          {
            encoding: 'buffer',
            maxBuffer: 8 * 1024 * 1024,
          },
        );
        assert.deepEqual(await readFile(out), stdout, range);
      }
      const outside = await as('bob').get('/api/images/raw/bob/vm.img', undefined, {
        headers: { range: `bytes=${size}-` },
      });
      assert.equal(outside.status, 416);
      assert.equal(outside.headers['content-range'], `bytes */${size}`);
      assert.equal(outside.json.error.code, 'range_not_satisfiable');
    });

    it('refuses before reading the body: curl never sends it', async () => {
      const cases: [string | null, string, number, string][] = [
        // (a free name in one's own namespace would be created: another's is "not found")
        ['bob', 'pam/nothing.img', 404, 'image_not_found'],
        ['pam', 'bob/vm.img', 404, 'image_not_found'],
        [null, 'bob/vm.img', 401, 'certificate_required'],
      ];
      for (const [user, path, status, code] of cases) {
        const res = await curl(user, ['-T', join(files, 'image.bin'), raw(path)]);
        assert.equal(res.status, status, res.body.toString());
        assert.equal(JSON.parse(res.body.toString()).error.code, code);
        assert.equal(res.uploaded, 0, `${path}: the body was sent`);
      }
      await writeFile(join(files, 'huge.bin'), Buffer.alloc(MAX + 1));
      const tooBig = await curl('bob', ['-T', join(files, 'huge.bin'), raw('vm.img')]);
      assert.equal(tooBig.status, 413);
      assert.equal(tooBig.uploaded, 0);
      await as('bob').patch('/api/images/vm.img', { read_only: true });
      const readOnly = await curl('bob', ['-T', join(files, 'image.bin'), raw('vm.img')]);
      assert.equal(readOnly.status, 409);
      assert.equal(readOnly.uploaded, 0);
      await as('bob').patch('/api/images/vm.img', { read_only: false });
    });

    it('rejects a body that does not match its digest or outgrows the limit, and keeps the previous version', async () => {
      const wrong = Buffer.alloc(32).toString('base64');
      const mismatch = await curl('bob', [
        '-T',
        join(files, 'image.bin'),
        '-H',
        `Content-Digest: sha-256=:${wrong}:`,
        raw('vm.img'),
      ]);
      assert.equal(mismatch.status, 400);
      assert.equal(JSON.parse(mismatch.body.toString()).error.code, 'digest_mismatch');
      const chunked = await curl('bob', [
        '-T',
        join(files, 'huge.bin'),
        '-H',
        'Transfer-Encoding: chunked',
        raw('vm.img'),
      ]);
      assert.equal(chunked.status, 413, chunked.body.toString());
      const md5 = createHash('md5').update(image).digest('base64');
      const good = await curl('bob', [
        '-T',
        join(files, 'image.bin'),
        '-H',
        `Content-MD5: ${md5}`,
        raw('vm.img'),
      ]);
      assert.equal(good.status, 200, good.body.toString());
      assert.equal(JSON.parse(good.body.toString()).version, 2);
      assert.equal((await as('bob').get('/api/images/vm.img')).json.version, 2);
    });

    it('leaves the image and no temporary file behind when the client cuts the upload', async () => {
      const before = (await as('bob').get('/api/images/vm.img')).json;
      const credential = pki.credential('bob');
      await new Promise<void>((resolve, reject) => {
        const socket = tls.connect(
          {
            host: '127.0.0.1',
            port: server.httpsPort,
            ca: pki.ca.certPem,
            cert: credential.cert,
            key: credential.key,
            servername: 'localhost',
          },
          () => {
            socket.write(
              `PUT /api/images/raw/vm.img HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${image.length}\r\n\r\n`,
            );
            socket.write(image.subarray(0, 100_000), () => setTimeout(() => socket.destroy(), 200));
          },
        );
        socket.on('close', () => resolve());
        socket.on('error', reject);
      });
      await new Promise((r) => setTimeout(r, 300));
      const now = (await as('bob').get('/api/images/vm.img')).json;
      assert.equal(now.version, before.version);
      assert.equal(now.digests.sha256, before.digests.sha256);
      assert.deepEqual(await uploadsLeft(), []);
    });

    it('serves public images without a certificate over HTTPS and plain HTTP (wget), and nothing else', async () => {
      await as('bob').patch('/api/images/vm.img', { unauthenticated_access: true });
      const out = join(files, 'wget.bin');
      await run('wget', ['-q', '-O', out, `${server.httpUrl}/api/images/raw/bob/vm.img`]);
      assert.equal(sha256(await readFile(out)), sha256(image));
      const anonymous = await curl(null, ['-o', out, raw('bob/vm.img')]);
      assert.equal(anonymous.status, 200);
      // Their list and metadata too (what the web interface shows there), and only theirs.
      const names = async () => {
        const list = await curl(null, [`${server.httpUrl}/api/images`]);
        assert.equal(list.status, 200);
        return JSON.parse(list.body.toString()).items.map((i: { name: string }) => `${i.name}`);
      };
      assert.deepEqual(await names(), ['vm.img']);
      assert.equal((await curl(null, [`${server.httpUrl}/api/images/bob/vm.img`])).status, 200);
      await as('bob').patch('/api/images/vm.img', { unauthenticated_access: false });
      const hidden = await curl(null, ['-o', out, `${server.httpUrl}/api/images/raw/bob/vm.img`]);
      assert.equal(hidden.status, 404);
      assert.deepEqual(await names(), []);
      assert.equal((await curl(null, [`${server.httpUrl}/api/images/bob/vm.img`])).status, 404);
      const other = await curl(null, [`${server.httpUrl}/api/users`]);
      assert.equal(other.status, 403);
    });

    it('survives clients that drop downloads halfway, and serves the next one whole', async () => {
      await as('bob').patch('/api/images/vm.img', { unauthenticated_access: true });
      try {
        const url = `${server.httpUrl}/api/images/raw/bob/vm.img`;
        const dropped = await Promise.all(
          Array.from(
            { length: 20 },
            () =>
              new Promise<number>((resolve, reject) => {
                const request = http.get(url, (response) => {
                  let seen = 0;
                  response.on('data', (chunk: Buffer) => {
                    seen += chunk.length;
                    if (seen > 64 * 1024) request.destroy(); // gone after the first bytes, reset mid-stream
                  });
                  response.on('close', () => resolve(seen));
                });
                request.on('error', () => {});
                request.on('close', () => resolve(-1));
                setTimeout(() => reject(new Error('a dropped download never ended')), 10_000).unref();
              }),
          ),
        );
        assert.ok(dropped.every((seen) => seen < image.length));
        await new Promise((resolve) => setTimeout(resolve, 200));
        // The server is still here (an unhandled rejection would have ended this process) and serves it whole.
        const whole = await curl(null, ['-o', join(files, 'after.bin'), url]);
        assert.equal(whole.status, 200);
        assert.equal(sha256(await readFile(join(files, 'after.bin'))), sha256(image));
      } finally {
        await as('bob').patch('/api/images/vm.img', { unauthenticated_access: false });
      }
    });

    it('refuses an image that would read other files, and keeps the previous version', async () => {
      await run('qemu-img', [
        'create',
        '-q',
        '-f',
        'qcow2',
        '-b',
        '/etc/passwd',
        '-F',
        'raw',
        join(files, 'evil.qcow2'),
      ]);
      const before = (await as('bob').get('/api/images/vm.img')).json;
      const put = await curl('bob', ['-T', join(files, 'evil.qcow2'), raw('vm.img')]);
      assert.equal(put.status, 400);
      const { error } = JSON.parse(put.body.toString());
      assert.equal(error.code, 'backing_file_refused');
      assert.match(error.message, /\/etc\/passwd/);
      const after = (await as('bob').get('/api/images/vm.img')).json;
      assert.equal(after.version, before.version);
      assert.equal(after.digests.sha256, before.digests.sha256);
      assert.deepEqual(await uploadsLeft(), []);
    });

    it("refuses the review's files that qemu would open with another file, and keeps the previous version", async () => {
      // A vmdk descriptor behind a comment other than '# Disk DescriptorFile' (qemu's probe skips any comment),
      // and a QED whose backing file is /etc/passwd: both once passed as raw.
      await writeFile(
        join(files, 'comment.img'),
        '# a comment\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\nRW 2048 FLAT "/etc/shadow" 0\n',
      );
      const qed = ['create', '-q', '-f', 'qed'];
      await run('qemu-img', [...qed, '-b', '/etc/passwd', '-F', 'raw', join(files, 'evil.qed')]);
      await run('qemu-img', [...qed, join(files, 'plain.qed'), '1M']);
      const before = (await as('bob').get('/api/images/vm.img')).json;
      for (const [file, code, named] of [
        ['comment.img', 'external_extent_refused', /\/etc\/shadow/],
        ['evil.qed', 'backing_file_refused', /\/etc\/passwd/],
        ['plain.qed', 'format_unsupported', /qed/],
      ] as const) {
        const put = await curl('bob', ['-T', join(files, file), raw('vm.img')]);
        assert.equal(put.status, 400, file);
        const { error } = JSON.parse(put.body.toString());
        assert.equal(error.code, code, file);
        assert.match(error.message, named, file);
      }
      const after = (await as('bob').get('/api/images/vm.img')).json;
      assert.equal(after.version, before.version);
      assert.equal(after.digests.sha256, before.digests.sha256);
      assert.deepEqual(await uploadsLeft(), []);
    });

    it('refuses an encrypted qcow2 unless the repository allows the feature', async () => {
      await encryptedQcow2(join(files, 'locked.qcow2'));
      const before = (await as('bob').get('/api/images/vm.img')).json;
      const put = await curl('bob', ['-T', join(files, 'locked.qcow2'), raw('vm.img')]);
      assert.equal(put.status, 400);
      const { error } = JSON.parse(put.body.toString());
      assert.equal(error.code, 'feature_not_allowed');
      assert.match(error.message, /encrypted \(luks\)/);
      assert.equal((await as('bob').get('/api/images/vm.img')).json.version, before.version);
    });

    it('refuses an image in another format than declared, or in a format the repository does not take', async () => {
      await run('qemu-img', ['create', '-q', '-f', 'qcow2', join(files, 'declared.qcow2'), '64M']);
      await run('qemu-img', ['create', '-q', '-f', 'vmdk', join(files, 'other.vmdk'), '64M']);
      const before = (await as('bob').get('/api/images/vm.img')).json;
      const mismatch = await curl('bob', [
        '-T',
        join(files, 'declared.qcow2'),
        `${raw('vm.img')}?disk_format=raw`,
      ]);
      assert.equal(mismatch.status, 400);
      assert.match(mismatch.body.toString(), /"format_mismatch".*declared raw, but its bytes are qcow2/);
      const vmdk = await curl('bob', ['-T', join(files, 'other.vmdk'), raw('vm.img')]);
      assert.equal(vmdk.status, 400);
      assert.match(vmdk.body.toString(), /"format_not_allowed".*raw, qcow2, gzip; the image is vmdk/);
      // Declared up front, the refusal comes before the body.
      const early = await curl('bob', ['-T', join(files, 'other.vmdk'), `${raw('vm.img')}?disk_format=vmdk`]);
      assert.equal(early.status, 400);
      assert.equal(early.uploaded, 0, 'the body was never sent');
      const bad = await curl('bob', ['-T', join(files, 'other.vmdk'), `${raw('vm.img')}?disk_format=floppy`]);
      assert.equal(bad.status, 400);
      assert.equal((await as('bob').get('/api/images/vm.img')).json.version, before.version);
    });

    it('lets qemu-img read a public qcow2 image straight from its HTTP URL', async () => {
      const qemu = await run('qemu-img', ['--version']).catch(() => {
        throw new Error('qemu-img is missing: apt-get install qemu-utils qemu-block-extra (.ci/run does)');
      });
      assert.match(qemu.stdout, /qemu-img version/);
      const disk = join(files, 'disk.qcow2');
      await run('qemu-img', ['create', '-q', '-f', 'qcow2', disk, '1G']);
      await as('bob').post('/api/images', { name: 'disk.qcow2', unauthenticated_access: true });
      assert.equal((await curl('bob', ['-T', disk, raw('disk.qcow2')])).status, 201);
      const { stdout } = await run('qemu-img', [
        'info',
        '--output=json',
        `${server.httpUrl}/api/images/raw/bob/disk.qcow2`,
      ]);
      const info = JSON.parse(stdout);
      assert.equal(info.format, 'qcow2');
      assert.equal(info['virtual-size'], 1024 ** 3);
      // What the inspector found is recorded with the version, shown, and filterable.
      const shown = (await as('bob').get('/api/images/disk.qcow2')).json;
      assert.equal(shown.disk_format, 'qcow2');
      assert.equal(shown.virtual_size, 1024 ** 3);
      assert.equal(shown.compression, null);
      const versions = (await as('bob').get('/api/images/disk.qcow2/versions')).json;
      assert.equal(versions.items[0].disk_format, 'qcow2');
      const qcow2s = (await as('bob').get('/api/images?disk_format=qcow2')).json;
      assert.deepEqual(
        qcow2s.items.map((i: { name: string }) => i.name),
        ['disk.qcow2'],
      );
      assert.equal((await as('bob').get('/api/images/vm.img')).json.disk_format, 'raw');
      // A compressed upload keeps its registered media type on the way out.
      await run('gzip', ['-k', '-f', disk]);
      assert.equal((await curl('bob', ['-T', `${disk}.gz`, raw('disk.qcow2')])).status, 200);
      const gz = (await as('bob').get('/api/images/disk.qcow2')).json;
      assert.deepEqual([gz.disk_format, gz.compression], [null, 'gzip']);
      const head = await as('bob').request('HEAD', '/api/images/raw/bob/disk.qcow2');
      assert.equal(head.headers['content-type'], 'application/gzip');
      assert.equal((await as('bob').delete('/api/images/disk.qcow2')).status, 204);
    });

    it('keeps the last versions, serves older ones by number, and deletes the bytes of the rest', async () => {
      await writeFile(join(files, 'small.bin'), 'version three');
      assert.equal((await curl('bob', ['-T', join(files, 'small.bin'), raw('vm.img')])).status, 200);
      assert.equal((await as('bob').get('/api/images/vm.img')).json.version, 3);
      assert.equal((await as('bob').get('/api/images/raw/vm.img?version=2')).status, 200);
      const gone = await as('bob').get('/api/images/raw/vm.img?version=1');
      assert.equal(gone.json.error.code, 'version_not_found');
      assert.equal((await blobFiles()).length, 2, 'two versions kept');
      assert.equal((await as('bob').get('/api/images/raw/vm.img')).text, 'version three');
    });

    it('lists the kept versions and rolls back to one, numbering the next upload after all', async () => {
      const listed = await as('bob').get('/api/images/vm.img/versions');
      assert.deepEqual(
        listed.json.items.map((v: { version: number; current: boolean }) => [v.version, v.current]),
        [
          [3, true],
          [2, false],
        ],
      );
      assert.equal(listed.json.items[1].digests.sha256, sha256(image));
      expectError(await as('pam').get('/api/images/bob/vm.img/versions'), 404, 'image_not_found');
      const back = await as('bob').post('/api/images/vm.img/rollback', { version: 2 });
      assert.equal(back.status, 200, back.text);
      assert.equal(back.json.version, 2);
      assert.equal(back.json.digests.sha256, sha256(image));
      const rolledBack = join(files, 'rolled-back.bin');
      assert.equal((await curl('bob', ['-o', rolledBack, raw('vm.img')])).status, 200);
      assert.equal(sha256(await readFile(rolledBack)), sha256(image));
      expectError(
        await as('bob').post('/api/images/vm.img/rollback', { version: 1 }),
        404,
        'version_not_found',
      );
      await writeFile(join(files, 'small.bin'), 'version four');
      const fourth = await curl('bob', ['-T', join(files, 'small.bin'), raw('vm.img')]);
      assert.equal(JSON.parse(fourth.body.toString()).version, 4);
      const after = await as('bob').get('/api/images/vm.img/versions');
      assert.deepEqual(
        after.json.items.map((v: { version: number }) => v.version),
        [4, 3],
      );
    });

    it('numbers concurrent uploads without gaps and serves one of them whole', async () => {
      await as('bob').post('/api/images', { name: 'race.img' });
      const bodies = ['first', 'second', 'third'].map((w) => Buffer.from(w.repeat(1000)));
      await Promise.all(bodies.map((b, i) => writeFile(join(files, `race${i}.bin`), b)));
      const results = await Promise.all(
        bodies.map((_, i) => curl('bob', ['-T', join(files, `race${i}.bin`), raw('race.img')])),
      );
      for (const r of results) assert.ok(r.status === 200 || r.status === 201, r.body.toString());
      // Each answer is the image as it stands once that upload is in (perhaps already a later one's version):
      // the version each upload became is what the audit log recorded.
      const audit = await as('admin').get('/api/audit?action=image.upload&target=bob/race.img');
      const versions = audit.json.items.map((e: { detail: { version: number } }) => e.detail.version).sort();
      assert.deepEqual(versions, [1, 2, 3]);
      const served = Buffer.from((await as('bob').get('/api/images/raw/race.img')).text);
      assert.ok(bodies.some((b) => b.equals(served)));
    });

    it('enforces quotas set by admins, before the body, and shows usage in whoami', async () => {
      const usage = (await as('bob').get('/api/whoami')).json.usage as number;
      assert.ok(usage > 0 && usage + 100 < image.length, `usage ${usage}`);
      expectError(await as('bob').patch('/api/users/bob', { quota: 10 ** 12 }), 403, 'forbidden');
      assert.equal((await as('admin').patch('/api/users/bob', { quota: usage + 100 })).status, 200);
      const me = (await as('bob').get('/api/whoami')).json;
      assert.deepEqual([me.quota, me.usage], [usage + 100, usage]);
      const refused = await curl('bob', ['-T', join(files, 'image.bin'), raw('vm.img')]);
      assert.equal(refused.status, 507, refused.body.toString());
      assert.equal(JSON.parse(refused.body.toString()).error.code, 'quota_exceeded');
      assert.equal(refused.uploaded, 0);
      const chunked = await curl('bob', [
        '-T',
        join(files, 'image.bin'),
        '-H',
        'Transfer-Encoding: chunked',
        raw('vm.img'),
      ]);
      assert.equal(chunked.status, 507, 'also when the length is only known at the end');
      assert.equal((await as('bob').get('/api/whoami')).json.usage, usage);
      assert.equal((await as('admin').patch('/api/users/bob', { quota: null })).status, 200);
    });

    it('answers 404 before any upload and 410 once expired, and deletes the bytes with the image', async () => {
      await as('bob').post('/api/images', { name: 'empty.img' });
      assert.equal((await as('bob').get('/api/images/raw/empty.img')).json.error.code, 'image_not_uploaded');
      await as('bob').patch('/api/images/vm.img', { expires: '2001-01-01' });
      const expired = await as('bob').get('/api/images/raw/vm.img');
      assert.equal(expired.status, 410);
      const before = (await blobFiles()).length;
      assert.equal((await as('bob').delete('/api/images/vm.img')).status, 204);
      assert.equal((await blobFiles()).length, before - 2);
      await as('admin').delete('/api/users/bob');
      assert.deepEqual(await blobFiles(), [], "bob's remaining bytes went with him");
    });

    if (storage === 's3')
      it('redirects authorised downloads to a presigned URL of the object store when asked to', async () => {
        const other = await startServerFor(
          pki,
          engine,
          { ...storageEnv, REPOMAN_S3_REDIRECT_DOWNLOADS: 'true', REPOMAN_S3_REDIRECT_SECONDS: '60' },
          false,
          server,
        );
        try {
          await as('admin').post('/api/images', { name: 'redirected.img' });
          assert.equal(
            (await curl('admin', ['-T', join(files, 'image.bin'), raw('redirected.img')])).status,
            201,
          );
          const url = `${other.httpsUrl}/api/images/raw/admin/redirected.img`;
          const bare = await curl('admin', ['-D', '-', '-o', '/dev/null', url]);
          assert.equal(bare.status, 307);
          const location = /^location: (.+)$/im.exec(bare.body.toString())?.[1]?.trim() ?? '';
          assert.ok(location.startsWith(`${swift?.endpoint}/`), location);
          assert.match(location, /X-Amz-Expires=60/);
          // curl -L follows it; the range goes along.
          const whole = await curl('admin', ['-L', url]);
          assert.equal(whole.status, 200);
          assert.equal(sha256(whole.body), sha256(image));
          const range = await curl('admin', ['-L', '-r', '1000-1999', url]);
          assert.equal(range.status, 206);
          assert.ok(range.body.equals(image.subarray(1000, 2000)));
          // The server still decides who may read: no redirect for someone the image is not shared with.
          const refused = await curl('pam', [url]);
          assert.equal(refused.status, 404);
          // HEAD is answered by the server itself, with the image's headers.
          const head = await curl('admin', ['-I', url]);
          assert.equal(head.status, 200);
          assert.match(head.body.toString(), new RegExp(`content-length: ${image.length}`, 'i'));
          assert.equal((await as('admin').delete('/api/images/redirected.img')).status, 204);
        } finally {
          await other.stop();
        }
      });

    if (storage === 's3')
      it('fsck finds a missing blob, an orphan, an abandoned upload and a stray multipart upload on S3', async () => {
        await as('admin').post('/api/images', { name: 'fsck.img' });
        for (const fill of [1, 2])
          assert.equal(
            (await as('admin').put('/api/images/raw/fsck.img', Buffer.alloc(4096, fill))).status < 300,
            true,
          );
        const env = {
          ...process.env,
          ...storageEnv,
          REPOMAN_DATA_DIR: join(server.dir, 'data'),
          REPOMAN_DATABASE_URL: PG_URL,
          REPOMAN_DATABASE_SCHEMA: server.schema as string,
        };
        const fsckRun = (...flags: string[]) =>
          run(process.execPath, [MAIN, 'fsck', '--stale-minutes', '0', ...flags], { env }).then(
            (r) => ({ code: 0, out: r.stdout }),
            (e: { code: number; stdout: string; stderr: string }) => ({
              code: e.code,
              out: e.stdout + e.stderr,
            }),
          );
        const clean = await fsckRun('--verify');
        assert.equal(clean.code, 0, clean.out);
        assert.match(clean.out, /2 versions, 2 blobs, 0 problems/);

        const [served] = await blobFiles();
        await server.store.delete(served as string); // missing
        const orphan = await server.store.createUpload();
        await orphan.write(Readable.from([randomBytes(1000)]));
        await orphan.commit(); // a blob no version names
        const abandoned = await server.store.createUpload();
        await abandoned.write(Readable.from([randomBytes(6 * 1024 * 1024)])); // a part sent, a tail kept
        const stray = `blobs/${randomBytes(16).toString('hex')}`;
        await createS3Store(swift?.settings(storageEnv.REPOMAN_S3_BUCKET) as S3Settings).client.send(
          new CreateMultipartUploadCommand({ Bucket: storageEnv.REPOMAN_S3_BUCKET, Key: stray }),
        );
        await new Promise((resolve) => setTimeout(resolve, 1100)); // object stores' times are in seconds

        const found = await fsckRun();
        assert.equal(found.code, 1, found.out);
        assert.match(found.out, /^missing .*fsck\.img v\d: its blob \w+ is gone/m);
        assert.match(found.out, new RegExp(`^orphan +${orphan.key}: `, 'm'));
        assert.match(found.out, new RegExp(`^stale_upload +upload ${abandoned.key}: `, 'm'));
        assert.match(found.out, new RegExp(`^stale_upload +multipart ${stray.slice(6)} `, 'm'));
        const repaired = await fsckRun('--repair');
        assert.equal(repaired.code, 0, repaired.out);
        const after = await fsckRun('--verify');
        assert.equal(after.code, 0, after.out);
        assert.match(after.out, /1 versions, 1 blobs, 0 problems/);
        assert.deepEqual(await uploadsLeft(), []);
      });

    if (storage === 's3')
      it('reports in /api/health whether the database and the object store answer', async () => {
        const healthy = await as('bob').get('/api/health');
        assert.equal(healthy.status, 200);
        assert.equal(healthy.json.status, 'ok');
        assert.equal(healthy.json.database.status, 'ok');
        assert.equal(healthy.json.store.status, 'ok');
        await swift?.stop(); // the object store goes away
        await new Promise((resolve) => setTimeout(resolve, 1100)); // health is asked at most once a second
        const failing = await as('bob').get('/api/health');
        assert.equal(failing.status, 503);
        assert.deepEqual(
          [failing.json.status, failing.json.database.status, failing.json.store.status],
          ['unavailable', 'ok', 'failing'],
        );
      });
  });
}
