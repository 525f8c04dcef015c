/**
 * Conversions with the real qemu-img: a qcow2 converted to raw, downloaded with curl and compared with
 * `qemu-img compare`, then back to qcow2 and to stream-optimised vmdk; jobs with progress; variants listed,
 * counted in the quota, removed with their version and checked by fsck; the converter's own locks (no backing
 * file read even if one slipped past the inspector, a memory limit). Run once per database engine.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { createDirectoryStore } from '../src/blobs/directory.ts';
import { openDatabase } from '../src/db/connect.ts';
import { ConversionError, convert, convertArguments } from '../src/formats/convert.ts';
import { inspect } from '../src/formats/inspect.ts';
import { fsck } from '../src/fsck.ts';
import { adler32 } from './helpers/adler32.ts';
import { clientFor, expectError, type Response } from './helpers/http.ts';
import { encryptedQcow2 } from './helpers/images.ts';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import { PG_URL } from './helpers/postgres.ts';
import { type Engine, startServerFor, type TestServer } from './helpers/server.ts';

const run = promisify(execFile);
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const MIB = 1024 * 1024;

interface JobJson {
  id: string;
  url: string;
  state: string;
  progress: number;
  error: { code: string; message: string } | null;
  variant: {
    format: string;
    size: number;
    digests: { sha256: string; adler32: string | null };
    file_url: string;
  } | null;
}

export function conversionsSuite(engine: Engine) {
  describe(`conversions on ${engine}`, () => {
    let pki: TestPki;
    let server: TestServer;
    let files: string;
    let as: (name: string) => ReturnType<typeof clientFor>;
    // Random bytes, a hole, and text that compresses.
    const data = Buffer.concat([
      randomBytes(3 * MIB),
      Buffer.alloc(5 * MIB),
      Buffer.alloc(2 * MIB, 'repoman '),
    ]);

    async function curl(user: string, args: string[]) {
      const creds = ['--cert', join(files, `${user}.pem`), '--key', join(files, `${user}.key`)];
      const { stdout } = await run(
        'curl',
        ['-sS', '--cacert', join(files, 'ca.pem'), ...creds, '-w', '\n%{http_code}', ...args],
        { maxBuffer: 16 * MIB },
      );
      const cut = stdout.lastIndexOf('\n');
      return { status: Number(stdout.slice(cut + 1)), body: stdout.slice(0, cut) };
    }
    /** Awaits a response that must be an error with this status and code; returns its error. */
    async function refuse(pending: Promise<Response>, status: number, code: string) {
      const response = await pending;
      expectError(response, status, code);
      return response.json.error as { code: string; message: string };
    }
    const raw = (path: string) => `${server.httpsUrl}/api/images/raw/${path}`;
    const qemu = (...args: string[]) => run('qemu-img', args, { cwd: files });

    /** Polls the job until it is final, checking that progress only grows. */
    async function waitFor(user: string, job: JobJson): Promise<JobJson> {
      let last = 0;
      for (let i = 0; i < 600; i++) {
        const current = (await as(user).get(`/api/jobs/${job.id}`)).json as JobJson;
        assert.ok(current.progress >= last, `progress went from ${last} to ${current.progress}`);
        last = current.progress;
        if (!['queued', 'running'].includes(current.state)) return current;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      throw new Error(`job ${job.id} never finished`);
    }

    async function convertTo(user: string, image: string, body: object): Promise<JobJson> {
      const response = await as(user).post(`/api/images/${image}/conversions`, body);
      assert.equal(response.status, 202, JSON.stringify(response.json));
      const { job } = response.json as { job: JobJson };
      assert.equal(response.headers.location, job.url);
      return waitFor(user, job);
    }

    const blobCount = async () => {
      const root = join(server.dir, 'data', 'blobs', 'blobs');
      const dirs = await readdir(root).catch(() => [] as string[]);
      return (await Promise.all(dirs.map((d) => readdir(join(root, d))))).flat().length;
    };

    before(async () => {
      await run('qemu-img', ['--version']).catch(() => {
        throw new Error('qemu-img is missing: apt-get install qemu-utils (.ci/run does)');
      });
      pki = await makeTestPki();
      server = await startServerFor(pki, engine, {
        REPOMAN_UPLOADS_MAX_IMAGE_SIZE: String(64 * MIB),
        REPOMAN_UPLOADS_KEEP_VERSIONS: '2',
        REPOMAN_UPLOADS_ALLOWED_FEATURES: 'encrypted',
      });
      as = (name) => clientFor(server.httpsUrl, pki.ca.certPem, pki.credential(name));
      files = join(server.dir, 'client');
      await mkdir(files);
      await writeFile(join(files, 'ca.pem'), pki.ca.certPem);
      for (const user of ['admin', 'bob', 'pam']) {
        await writeFile(join(files, `${user}.pem`), pki.credential(user).cert);
        await writeFile(join(files, `${user}.key`), pki.credential(user).key);
        if (user !== 'admin')
          await as('admin').post('/api/users', { user_name: user, client_dn: pki.dn(user) });
      }
      await writeFile(join(files, 'disk.raw'), data);
      await qemu('convert', '-q', '-f', 'raw', '-O', 'qcow2', 'disk.raw', 'disk.qcow2');
      await as('bob').post('/api/images', { name: 'disk' });
      await as('bob').post('/api/images/disk/share/user/pam');
      assert.equal((await curl('bob', ['-T', join(files, 'disk.qcow2'), raw('bob/disk')])).status, 201);
    });
    after(async () => server?.stop());

    it('converts a qcow2 to raw: a job with progress, a variant downloaded with curl, identical by qemu-img compare', async () => {
      const job = await convertTo('bob', 'disk', { format: 'raw' });
      assert.equal(job.state, 'succeeded', JSON.stringify(job.error));
      assert.equal(job.progress, 1);
      assert.equal(job.variant?.format, 'raw');
      assert.equal(job.variant?.size, data.length);
      assert.equal(job.variant?.digests.sha256, sha256(data));
      assert.equal(job.variant?.digests.adler32, adler32(data));
      const fetched = join(files, 'fetched.raw');
      const got = await curl('pam', [
        '-D',
        join(files, 'headers'),
        '-o',
        fetched,
        `${raw('bob/disk')}?format=raw`,
      ]);
      assert.equal(got.status, 200); // pam may read the image, so its variants too
      assert.match(await readFile(join(files, 'headers'), 'latin1'), /repr-digest: sha-256=/i);
      const { stdout } = await qemu('compare', '-f', 'raw', '-F', 'qcow2', fetched, 'disk.qcow2');
      assert.match(stdout, /Images are identical/);
      assert.equal(sha256(await readFile(fetched)), sha256(data));
      // Asked again, the variant is there already: no second job.
      const again = await as('bob').post('/api/images/disk/conversions', { format: 'raw' });
      assert.equal(again.status, 200);
      assert.equal(again.json.variant.digests.sha256, sha256(data));
    });

    it('converts raw back to qcow2, and to stream-optimised vmdk, each identical to the original', async () => {
      await as('bob').post('/api/images', { name: 'back' });
      assert.equal((await curl('bob', ['-T', join(files, 'fetched.raw'), raw('bob/back')])).status, 201);
      for (const [body, format, file] of [
        [{ format: 'qcow2' }, 'qcow2', 'back.qcow2'],
        [{ format: 'vmdk' }, 'vmdk', 'back.vmdk'],
      ] as const) {
        const job = await convertTo('bob', 'back', body);
        assert.equal(job.state, 'succeeded', JSON.stringify(job.error));
        assert.equal(
          (await curl('bob', ['-o', join(files, file), `${raw('bob/back')}?format=${format}`])).status,
          200,
        );
        const info = JSON.parse((await qemu('info', '--output=json', '-f', format, file)).stdout);
        assert.equal(info['virtual-size'], data.length);
        if (format === 'vmdk') assert.equal(info['format-specific'].data['create-type'], 'streamOptimized');
        const { stdout } = await qemu('compare', '-f', format, '-F', 'qcow2', file, 'disk.qcow2');
        assert.match(stdout, /Images are identical/);
      }
      // A public image's variants are public too, over HTTPS and plain HTTP, at the URL the versions list gives.
      await as('bob').patch('/api/images/back', { unauthenticated_access: true });
      const listed = (await as('bob').get('/api/images/back/versions')).json.items[0].variants;
      const vmdkUrl = listed.find((v: { format: string }) => v.format === 'vmdk').file_url as string;
      const anonymous = await run('curl', [
        '-sS',
        '--cacert',
        join(files, 'ca.pem'),
        '-o',
        join(files, 'anon.vmdk'),
        '-w',
        '%{http_code}',
        vmdkUrl,
      ]);
      assert.equal(anonymous.stdout, '200');
      const overHttp = await run('curl', [
        '-sS',
        '-o',
        join(files, 'plain.vmdk'),
        '-w',
        '%{http_code}',
        `${server.httpUrl}/api/images/raw/bob/back?format=vmdk`,
      ]);
      assert.equal(overHttp.stdout, '200');
      assert.deepEqual(await readFile(join(files, 'plain.vmdk')), await readFile(join(files, 'back.vmdk')));
      await as('bob').patch('/api/images/back', { unauthenticated_access: false });
      // A compressed qcow2 replaces the plain one, and is smaller.
      const plain = (await as('bob').get('/api/images/back/versions')).json.items[0].variants;
      const job = await convertTo('bob', 'back', { format: 'qcow2', compress: true });
      assert.equal(job.state, 'succeeded', JSON.stringify(job.error));
      const variants = (await as('bob').get('/api/images/back/versions')).json.items[0].variants;
      assert.deepEqual(
        variants.map((v: { format: string; compressed: boolean }) => [v.format, v.compressed]),
        [
          ['qcow2', true],
          ['vmdk', false],
        ],
      );
      const size = (list: { format: string; size: number }[]) =>
        list.find((v) => v.format === 'qcow2')?.size ?? 0;
      assert.ok(size(variants) < size(plain), `${size(variants)} < ${size(plain)}`);
    });

    it('refuses what it cannot or need not do, and hides jobs from others', async () => {
      await refuse(
        as('bob').post('/api/images/back/conversions', { format: 'raw' }),
        400,
        'conversion_not_needed',
      );
      await refuse(
        as('bob').post('/api/images/disk/conversions', { format: 'qcow2', compress: true }),
        400,
        'conversion_unsupported',
      );
      await refuse(
        as('bob').post('/api/images/disk/conversions', { format: 'vmdk', compress: true }),
        400,
        'invalid_field',
      );
      await refuse(
        as('bob').post('/api/images/disk/conversions', { format: 'floppy' }),
        400,
        'invalid_field',
      );
      await refuse(
        as('bob').post('/api/images/disk/conversions', { format: 'vmdk', version: 9 }),
        404,
        'version_not_found',
      );
      await refuse(as('pam').post('/api/images/bob/disk/conversions', { format: 'vmdk' }), 403, 'forbidden');
      await refuse(as('bob').get('/api/images/raw/bob/disk?format=vmdk'), 404, 'variant_not_found');
      // A gzip-compressed upload has no disk format to convert from.
      await writeFile(
        join(files, 'disk.raw.gz'),
        (await run('gzip', ['-c', join(files, 'disk.raw')], { encoding: 'buffer', maxBuffer: 64 * MIB }))
          .stdout,
      );
      await as('bob').post('/api/images', { name: 'packed' });
      assert.equal((await curl('bob', ['-T', join(files, 'disk.raw.gz'), raw('bob/packed')])).status, 201);
      const refused = await refuse(
        as('bob').post('/api/images/packed/conversions', { format: 'qcow2' }),
        400,
        'conversion_unsupported',
      );
      assert.match(refused.message, /gzip-compressed/);
      // Jobs are seen by who asked, the image's owner and admins; to anyone else they do not exist.
      const { job } = (await as('bob').post('/api/images/disk/conversions', { format: 'vmdk' })).json as {
        job: JobJson;
      };
      await refuse(as('pam').get(`/api/jobs/${job.id}`), 404, 'job_not_found');
      assert.equal((await as('admin').get(`/api/jobs/${job.id}`)).status, 200);
      assert.ok((await as('bob').get('/api/jobs')).json.items.some((j: JobJson) => j.id === job.id));
      assert.equal((await waitFor('bob', job)).state, 'succeeded');
      await refuse(as('bob').get('/api/jobs/no-such-job'), 404, 'job_not_found');
    });

    it('counts variants in the quota, and removes them with their version and their image', async () => {
      const usage = async () => (await as('bob').get('/api/users/bob')).json.usage as number;
      const before = await usage();
      assert.equal((await as('bob').delete('/api/images/disk/variants/vmdk')).status, 204);
      const versions = (await as('bob').get('/api/images/disk/versions')).json.items;
      assert.deepEqual(
        versions[0].variants.map((v: { format: string }) => v.format),
        ['raw'],
      );
      assert.ok((await usage()) < before);
      // fsck knows variants: none is an orphan; a lost one is found, and dropped by --repair.
      const database = await openDatabase(
        engine === 'postgres'
          ? { url: PG_URL, schema: server.schema as string }
          : { url: `sqlite:${join(server.dir, 'data', 'repoman.db')}` },
      );
      try {
        const store = createDirectoryStore(join(server.dir, 'data', 'blobs'));
        assert.deepEqual((await fsck(database.db, store, { verify: true })).problems, []);
        const back = (await as('bob').get('/api/images/back/versions')).json.items[0];
        const vmdk = back.variants.find((v: { format: string }) => v.format === 'vmdk');
        const row = await database.db
          .selectFrom('image_variants')
          .select('blob_key')
          .where('sha256', '=', vmdk.digests.sha256)
          .executeTakeFirstOrThrow();
        await store.delete(row.blob_key);
        const report = await fsck(database.db, store, { repair: true });
        assert.deepEqual(
          report.problems.map((p) => [p.kind, p.subject]),
          [['missing', 'bob/back v1 vmdk']],
        );
        assert.equal((await as('bob').get('/api/images/back/versions')).json.items[0].variants.length, 1);
      } finally {
        await database.close();
      }
      // Two newer uploads (two versions are kept): version 1 goes, and its raw variant with it.
      const blobs = await blobCount();
      for (const name of ['one', 'two']) {
        await writeFile(join(files, name), name);
        assert.equal((await curl('bob', ['-T', join(files, name), raw('bob/disk')])).status, 200);
      }
      assert.equal(await blobCount(), blobs + 2 - 2, 'version 1 and its raw variant were deleted');
      await refuse(as('bob').get('/api/images/raw/bob/disk?version=1&format=raw'), 404, 'version_not_found');
      for (const name of ['disk', 'back', 'packed'])
        assert.equal((await as('bob').delete(`/api/images/${name}`)).status, 204);
      assert.equal(await blobCount(), 0);
    });

    it('stores a gzip, xz, zstd or bzip2 upload decompressed when asked (PUT and resumable), refusing corrupt streams and bombs', async () => {
      const qcow2 = await readFile(join(files, 'disk.qcow2'));
      await as('bob').post('/api/images', { name: 'unpacked' });
      const tools = [
        ['gzip', ['gzip', '-c']],
        ['xz', ['xz', '-c', '-T1']],
        ['zstd', ['zstd', '-c', '-q']],
        ['bzip2', ['bzip2', '-c']],
      ] as const;
      for (const [name, [tool, ...args]] of tools) {
        const packed = join(files, `disk.qcow2.${name}`);
        const { stdout } = await run(tool, [...args, join(files, 'disk.qcow2')], {
          encoding: 'buffer',
          maxBuffer: 64 * MIB,
        });
        await writeFile(packed, stdout);
        const put = await curl('bob', ['-T', packed, `${raw('bob/unpacked')}?decompress=true`]);
        assert.ok([200, 201].includes(put.status), put.body);
        const shown = JSON.parse(put.body);
        assert.deepEqual(
          [shown.disk_format, shown.compression, shown.size],
          ['qcow2', null, qcow2.length],
          name,
        );
        assert.equal(shown.digests.sha256, sha256(qcow2), name);
      }
      // Without the flag the upload is stored as sent.
      const kept = await curl('bob', ['-T', join(files, 'disk.qcow2.xz'), raw('bob/unpacked')]);
      assert.equal(JSON.parse(kept.body).compression, 'xz');
      const current = (await as('bob').get('/api/images/unpacked')).json;
      // A cut or corrupt stream is refused, and nothing changes.
      const whole = await readFile(join(files, 'disk.qcow2.gzip'));
      await writeFile(join(files, 'cut.gz'), whole.subarray(0, whole.length - 1000));
      await writeFile(
        join(files, 'cut.xz'),
        (await readFile(join(files, 'disk.qcow2.xz'))).subarray(0, 5000),
      );
      for (const file of ['cut.gz', 'cut.xz']) {
        const cut = await curl('bob', ['-T', join(files, file), `${raw('bob/unpacked')}?decompress=true`]);
        assert.equal(cut.status, 400, cut.body);
        assert.equal(JSON.parse(cut.body).error.code, 'decompression_failed');
      }
      // A small file that unpacks past the size limit stops at the limit.
      const bomb = (
        await run('sh', ['-c', 'head -c 100M /dev/zero | gzip -c'], {
          encoding: 'buffer',
          maxBuffer: 8 * MIB,
        })
      ).stdout;
      await writeFile(join(files, 'bomb.gz'), bomb);
      const boom = await curl('bob', [
        '-T',
        join(files, 'bomb.gz'),
        `${raw('bob/unpacked')}?decompress=true`,
      ]);
      assert.equal(boom.status, 413, boom.body);
      assert.equal(JSON.parse(boom.body).error.code, 'image_too_large');
      // Under a quota, the unpacked bytes stop at what it leaves.
      await as('admin').patch('/api/users/pam', { quota: 2 * MIB });
      await as('pam').post('/api/images', { name: 'small' });
      const small = await curl('pam', ['-T', join(files, 'bomb.gz'), `${raw('pam/small')}?decompress=true`]);
      assert.equal(small.status, 507, small.body);
      assert.match(JSON.parse(small.body).error.message, /quota leaves/);
      await as('pam').delete('/api/images/small');
      const after = (await as('bob').get('/api/images/unpacked')).json;
      assert.equal(after.version, current.version);
      assert.deepEqual(await readdir(join(server.dir, 'data', 'blobs', 'uploads')), []);
      // A resumable upload asks in its metadata.
      const b64 = (text: string) => Buffer.from(text).toString('base64');
      const zst = await readFile(join(files, 'disk.qcow2.zstd'));
      const created = await as('bob').request('POST', '/api/uploads', {
        headers: {
          'tus-resumable': '1.0.0',
          'upload-length': String(zst.length),
          'upload-metadata': `image ${b64('unpacked')},decompress ${b64('true')},disk_format ${b64('qcow2')}`,
          'content-type': 'application/offset+octet-stream',
        },
        body: zst,
      });
      assert.equal(created.status, 201, JSON.stringify(created.json));
      const shown = (await as('bob').get('/api/images/unpacked')).json;
      assert.deepEqual(
        [shown.version, shown.disk_format, shown.digests.sha256],
        [after.version + 1, 'qcow2', sha256(qcow2)],
      );
      assert.equal((await as('bob').delete('/api/images/unpacked')).status, 204);
    });

    it('fails a job cleanly with qemu-img’s reason: an encrypted image (allowed here) without its key', async () => {
      await encryptedQcow2(join(files, 'locked.qcow2'));
      await as('bob').post('/api/images', { name: 'locked' });
      const put = await curl('bob', ['-T', join(files, 'locked.qcow2'), raw('bob/locked')]);
      assert.equal(put.status, 201, put.body);
      const job = await convertTo('bob', 'locked', { format: 'raw' });
      assert.equal(job.state, 'failed');
      assert.equal(job.error?.code, 'conversion_failed');
      assert.match(job.error?.message ?? '', /secret|encrypt|key/i);
      // qemu-img names the files it read; the server's paths are not the owner's business.
      const told = job.error?.message ?? '';
      assert.ok(!told.includes(server.dir), `no path of the server: ${told}`);
      assert.doesNotMatch(told, /(^|[\s'"(:=])\/[\w.-]/, `no absolute path at all: ${told}`);
      assert.match(told, /bob\/locked \(version 1\)/, `the image named instead: ${told}`);
      assert.equal(job.variant, null);
      assert.deepEqual((await as('bob').get('/api/images/locked/versions')).json.items[0].variants, []);
      assert.equal((await as('bob').delete('/api/images/locked')).status, 204);
      assert.deepEqual(await readdir(join(server.dir, 'data', 'conversions')), [], 'no temporary file left');
    });

    it('locks qemu-img in: it never reads another file, even one that slipped past the inspector; memory and output are limited', async () => {
      const secret = join(files, 'secret');
      await writeFile(secret, Buffer.alloc(MIB, 'S'));
      const request = {
        qemuImg: 'qemu-img',
        source: join(files, 'evil.qcow2'),
        sourceFormat: 'qcow2',
        target: join(files, 'evil.raw'),
        format: 'raw' as const,
        compress: false,
        cwd: files,
        limits: { cpuSeconds: 60, memoryBytes: 1024 * MIB, outputBytes: 64 * MIB },
      };
      // A qcow2 with a backing file: qemu-img info names it, and the job stops before converting.
      await qemu('create', '-q', '-f', 'qcow2', '-b', secret, '-F', 'raw', 'evil.qcow2', '1M');
      await assert.rejects(convert(request), /Refused: qemu-img would read '.*secret'/);
      // Even run without that check, the conversion itself opens no backing file: zeros, not the secret.
      await run('qemu-img', convertArguments(request), { cwd: files });
      assert.deepEqual(
        await readFile(join(files, 'evil.raw')),
        Buffer.alloc(MIB),
        'zeros, not the backing file',
      );
      // A sparse vmdk of capacity 0 is read through its descriptor, which here names the secret behind a
      // decoy type in a comment: the inspector refuses it, and so does the check before converting.
      await qemu('create', '-q', '-f', 'vmdk', 'decoy.vmdk', '1M');
      const vmdk = await readFile(join(files, 'decoy.vmdk'));
      vmdk.writeBigUInt64LE(0n, 12); // capacity 0
      const at = Number(vmdk.readBigUInt64LE(28)) * 512;
      const text = `# Disk DescriptorFile\n# xcreateType="monolithicFlat"\nversion=1\nCID=ffffffff\nparentCID=ffffffff\ncreateType="monolithicSparse"\nRW 2048 FLAT "${secret}" 0\n`;
      vmdk.fill(0, at, at + Number(vmdk.readBigUInt64LE(36)) * 512);
      vmdk.write(text, at, 'latin1');
      await writeFile(join(files, 'decoy.vmdk'), vmdk);
      const inspected = await inspect(vmdk.length, async (offset, length) =>
        vmdk.subarray(offset, offset + length),
      );
      assert.ok(inspected.refusals.length > 0, 'the inspector refuses it');
      await assert.rejects(
        convert({ ...request, source: join(files, 'decoy.vmdk'), sourceFormat: 'vmdk' }),
        /Refused: qemu-img would read '.*secret'/,
      );
      // Address space and output size.
      await writeFile(join(files, 'noise.raw'), randomBytes(2 * MIB));
      const noise = {
        ...request,
        source: join(files, 'noise.raw'),
        sourceFormat: 'raw',
        format: 'qcow2' as const,
      };
      await assert.rejects(
        convert({ ...noise, limits: { ...noise.limits, memoryBytes: 4 * MIB } }),
        ConversionError,
      );
      await assert.rejects(
        convert({
          ...noise,
          target: join(files, 'noise.qcow2'),
          limits: { ...noise.limits, outputBytes: 256 * 1024 },
        }),
        /wrote more than the limit of 262144 bytes/,
      );
      for (const file of ['evil.raw', 'noise.raw', 'noise.qcow2', 'decoy.vmdk'])
        await rm(join(files, file), { force: true });
    });
  });
}
