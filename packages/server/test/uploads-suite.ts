/**
 * Resumable uploads over tus 1.0: the real tus-js-client uploading through a TCP relay that cuts the
 * connection in the middle, resuming where the server stood; and the protocol's rules one request at a time
 * (offsets, checksums, termination, expiry, refusals before the body). Run once per database engine
 * (uploads-sqlite.test.ts, uploads-postgres.test.ts).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DefaultHttpStack, Upload } from 'tus-js-client';
import { adler32 } from './helpers/adler32.ts';
import { clientFor, expectError, request, tlsSocket } from './helpers/http.ts';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import { cuttingRelay } from './helpers/relay.ts';
import { type Engine, startServerFor, type TestServer } from './helpers/server.ts';
import { newBucket, type Swift, startSwift } from './helpers/swift.ts';

const TUS = { 'tus-resumable': '1.0.0' };
const b64 = (text: string) => Buffer.from(text).toString('base64');
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

export function uploadsSuite(engine: Engine, storage: 'directory' | 's3' = 'directory') {
  describe(`resumable uploads (tus) on ${engine}${storage === 's3' ? ' and S3 (Swift)' : ''}`, () => {
    let swift: Swift | undefined;
    let storageEnv: Record<string, string> = {};
    let pki: TestPki;
    let server: TestServer;
    let files: string;
    let as: (name: string) => ReturnType<typeof clientFor>;
    // On S3, large enough for the object store's parts (5 MiB here) to take several requests' bytes.
    const image = randomBytes((storage === 's3' ? 11 : 3) * 1024 * 1024 + 77);

    /** A tus-js-client upload of `path` as `user`, resolved with what it saw. */
    function tusUpload(
      user: string,
      path: string,
      endpoint: string,
      metadata: Record<string, string>,
      extra: Partial<ConstructorParameters<typeof Upload>[1]> = {},
    ) {
      const credential = pki.credential(user);
      const heads: number[] = [];
      const methods: string[] = [];
      return new Promise<{ url: string; heads: number[]; methods: string[]; version: string | undefined }>(
        (resolve, reject) => {
          let version: string | undefined;
          const upload = new Upload(createReadStream(path), {
            endpoint,
            metadata,
            retryDelays: [0, 200, 500],
            httpStack: new DefaultHttpStack({
              ca: pki.ca.certPem,
              cert: credential.cert,
              key: credential.key,
            }),
            onAfterResponse: (req, res) => {
              methods.push(`${req.getMethod()} ${res.getStatus()}`);
              if (req.getMethod() === 'HEAD') heads.push(Number(res.getHeader('upload-offset')));
              version = res.getHeader('repoman-version') ?? version;
            },
            onError: reject,
            onSuccess: () => resolve({ url: upload.url as string, heads, methods, version }),
            ...extra,
          });
          upload.start();
        },
      );
    }

    /** Creates an upload by hand; returns its path (/api/uploads/<id>). */
    async function create(user: string, name: string, length: number, more: Record<string, string> = {}) {
      const res = await as(user).request('POST', '/api/uploads', {
        headers: {
          ...TUS,
          'upload-length': String(length),
          'upload-metadata': `image ${b64(name)}`,
          ...more,
        },
      });
      assert.equal(res.status, 201, res.text);
      return res.headers.location as string;
    }

    const patch = (
      user: string,
      path: string,
      offset: number,
      body: Buffer,
      headers: Record<string, string> = {},
    ) =>
      as(user).request('PATCH', path, {
        body,
        headers: {
          ...TUS,
          'content-type': 'application/offset+octet-stream',
          'upload-offset': String(offset),
          ...headers,
        },
      });

    const head = (user: string, path: string) => as(user).request('HEAD', path, { headers: TUS });
    const current = async (name: string) => (await as('bob').get(`/api/images/bob/${name}`)).json;
    const partFiles = async () => (await server.store.listUploads()).map((u) => u.name);

    before(async () => {
      pki = await makeTestPki();
      if (storage === 's3') {
        swift = await startSwift();
        storageEnv = swift.serverEnv(newBucket());
      }
      server = await startServerFor(pki, engine, {
        ...storageEnv,
        REPOMAN_UPLOADS_MAX_IMAGE_SIZE: String(16 * 1024 * 1024),
      });
      as = (name) => clientFor(server.httpsUrl, pki.ca.certPem, pki.credential(name));
      files = join(server.dir, 'client');
      await mkdir(files);
      await writeFile(join(files, 'image.bin'), image);
      for (const user of ['bob', 'pam']) {
        await as('admin').post('/api/users', { user_name: user, client_dn: pki.dn(user) });
      }
      for (const name of ['tus.img', 'cut.img', 'proto.img', 'sum.img', 'gone.img', 'small.img'])
        await as('bob').post('/api/images', { name });
    });
    after(async () => {
      await server?.stop();
      await swift?.stop();
    });

    it('tus-js-client uploads an image that downloads byte for byte, as a new version', async () => {
      const done = await tusUpload('bob', join(files, 'image.bin'), `${server.httpsUrl}/api/uploads`, {
        image: 'tus.img',
        filename: 'image.bin',
      });
      assert.match(done.url, /^https:\/\/127\.0\.0\.1:\d+\/api\/uploads\/[0-9a-f]{32}$/);
      assert.equal(done.version, '1');
      const json = await current('tus.img');
      assert.equal(json.version, 1);
      assert.equal(json.size, image.length);
      assert.equal(json.digests.sha256, sha256(image));
      assert.equal(json.digests.md5, createHash('md5').update(image).digest('hex'));
      assert.equal(json.digests.adler32, adler32(image));
      const body = await as('bob').get('/api/images/raw/bob/tus.img');
      assert.equal(sha256(body.body), sha256(image));
    });

    it('resumes where the server stood after the connection is cut in the middle', async () => {
      const relay = await cuttingRelay(server.httpsPort, image.length / 2);
      try {
        const done = await tusUpload(
          'bob',
          join(files, 'image.bin'),
          `https://localhost:${relay.port}/api/uploads`,
          {
            image: 'cut.img',
          },
        );
        assert.ok(relay.cut, 'the relay cut the first connection');
        // After the cut the client asked where the upload stood, and the server had kept the first part.
        assert.equal(done.heads.length, 1, done.methods.join(', '));
        assert.ok((done.heads[0] as number) > image.length / 4, `resumed at ${done.heads[0]}`);
        // Half the image crossed the network once, not twice.
        assert.ok(relay.upstreamBytes < image.length * 1.3, `${relay.upstreamBytes} bytes sent`);
      } finally {
        await relay.close();
      }
      const json = await current('cut.img');
      assert.equal(json.version, 1);
      assert.equal(json.digests.sha256, sha256(image));
      assert.equal(json.digests.sha512, createHash('sha512').update(image).digest('hex'));
      assert.equal(json.digests.adler32, adler32(image)); // one hasher, fed by both requests
      assert.deepEqual(await partFiles(), []);
    });

    it('speaks the protocol: OPTIONS, creation, HEAD, offsets, creation-with-upload, version header', async () => {
      const options = await as('bob').request('OPTIONS', '/api/uploads');
      assert.equal(options.status, 204);
      assert.equal(options.headers['tus-version'], '1.0.0');
      assert.equal(options.headers['tus-resumable'], '1.0.0');
      assert.deepEqual((options.headers['tus-extension'] as string).split(','), [
        'creation',
        'creation-with-upload',
        'termination',
        'checksum',
        'expiration',
      ]);
      assert.equal(options.headers['tus-max-size'], String(16 * 1024 * 1024));
      assert.match(String(options.headers['tus-checksum-algorithm']), /sha1/);

      const part = image.subarray(0, 1000);
      const created = await as('bob').request('POST', '/api/uploads', {
        body: part,
        headers: {
          ...TUS,
          'upload-length': '3000',
          'upload-metadata': `image ${b64('proto.img')},filename ${b64('x.img')},empty`,
          'content-type': 'application/offset+octet-stream',
        },
      });
      assert.equal(created.status, 201, created.text);
      assert.equal(created.headers['upload-offset'], '1000');
      assert.ok(Date.parse(created.headers['upload-expires'] as string) > Date.now());
      const path = created.headers.location as string;

      const status = await head('bob', path);
      assert.equal(status.status, 200);
      assert.equal(status.headers['upload-offset'], '1000');
      assert.equal(status.headers['upload-length'], '3000');
      assert.equal(status.headers['cache-control'], 'no-store');
      assert.match(String(status.headers['upload-metadata']), /^image /);

      expectError(await patch('bob', path, 0, image.subarray(0, 10)), 409, 'upload_offset_mismatch');
      expectError(
        await patch('bob', path, 1000, image.subarray(1000, 1010), {
          'content-type': 'application/octet-stream',
        }),
        415,
        'unsupported_media_type',
      );
      expectError(await patch('bob', path, 1000, Buffer.alloc(2001)), 413, 'payload_too_large');
      assert.equal((await head('pam', path)).status, 404, "another user's upload does not exist for them");
      const noVersion = await as('bob').request('HEAD', path, { headers: {} });
      assert.equal(noVersion.status, 412);
      assert.equal(noVersion.headers['tus-version'], '1.0.0');
      expectError(
        await patch('bob', path, 1000, Buffer.alloc(1), { 'tus-resumable': '0.2.2' }),
        412,
        'tus_version_unsupported',
      );

      // Through a proxy that only passes POST: X-HTTP-Method-Override.
      const overridden = await as('bob').request('POST', path, {
        body: image.subarray(1000, 2000),
        headers: {
          ...TUS,
          'x-http-method-override': 'PATCH',
          'content-type': 'application/offset+octet-stream',
          'upload-offset': '1000',
        },
      });
      assert.equal(overridden.status, 204, overridden.text);
      const middle = { status: overridden.status, headers: overridden.headers };
      assert.equal(middle.status, 204);
      assert.equal(middle.headers['upload-offset'], '2000');
      assert.equal((await current('proto.img')).version, 0, 'nothing is published before the last byte');
      const last = await patch('bob', path, 2000, image.subarray(2000, 3000));
      assert.equal(last.status, 204);
      assert.equal(last.headers['upload-offset'], '3000');
      assert.equal(last.headers['repoman-version'], '1');
      const json = await current('proto.img');
      assert.equal(json.version, 1);
      assert.equal(json.digests.sha256, sha256(image.subarray(0, 3000)));
      // A retried last request (its answer was lost) finds the upload finished, not a new version.
      assert.equal((await patch('bob', path, 3000, Buffer.alloc(0))).status, 204);
      assert.equal((await head('bob', path)).headers['upload-offset'], '3000');
      assert.equal((await current('proto.img')).version, 1);

      const empty = await as('bob').request('POST', '/api/uploads', {
        headers: { ...TUS, 'upload-length': '0', 'upload-metadata': `image ${b64('proto.img')}` },
      });
      assert.equal(empty.status, 201);
      assert.equal(empty.headers['repoman-version'], '2');
      assert.equal((await current('proto.img')).size, 0);
    });

    it('checks each request against Upload-Checksum and the whole image against declared digests', async () => {
      const path = await create('bob', 'sum.img', 2000);
      const first = image.subarray(0, 1000);
      const sha1 = (data: Buffer) => createHash('sha1').update(data).digest('base64');
      const bad = await patch('bob', path, 0, first, {
        'upload-checksum': `sha1 ${sha1(Buffer.from('other'))}`,
      });
      expectError(bad, 460, 'checksum_mismatch');
      assert.equal((await head('bob', path)).headers['upload-offset'], '0', 'a mismatched body is not kept');
      expectError(
        await patch('bob', path, 0, first, { 'upload-checksum': `crc32 AAAAAA==` }),
        400,
        'checksum_algorithm_unsupported',
      );
      const good = await patch('bob', path, 0, first, { 'upload-checksum': `sha1 ${sha1(first)}` });
      assert.equal(good.status, 204, good.text);
      const second = image.subarray(1000, 2000);
      const sha256b64 = createHash('sha256').update(second).digest('base64');
      const end = await patch('bob', path, 1000, second, { 'upload-checksum': `sha256 ${sha256b64}` });
      assert.equal(end.status, 204, end.text);
      assert.equal((await current('sum.img')).digests.sha256, sha256(image.subarray(0, 2000)));

      // A creation-with-upload whose body fails its checksum leaves no upload behind.
      const refusedCreation = await as('bob').request('POST', '/api/uploads', {
        body: first,
        headers: {
          ...TUS,
          'upload-length': '2000',
          'upload-metadata': `image ${b64('sum.img')}`,
          'content-type': 'application/offset+octet-stream',
          'upload-checksum': `sha1 ${sha1(Buffer.from('other'))}`,
        },
      });
      expectError(refusedCreation, 460, 'checksum_mismatch');
      assert.deepEqual(await partFiles(), []);

      // A whole-image digest in the metadata that the bytes do not match: refused, the image unchanged.
      const wrong = await create('bob', 'sum.img', 100, {
        'upload-metadata': `image ${b64('sum.img')},sha256 ${b64('0'.repeat(64))}`,
      });
      expectError(await patch('bob', wrong, 0, image.subarray(0, 100)), 400, 'digest_mismatch');
      assert.equal((await current('sum.img')).version, 1);
      assert.equal((await head('bob', wrong)).status, 404);
      assert.deepEqual(await partFiles(), []);
    });

    it('refuses a vmdk that reads /etc/shadow once it is whole, and forgets the upload', async () => {
      const descriptor = Buffer.from(
        '# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "/etc/shadow" 0\n',
      );
      const path = await create('bob', 'sum.img', descriptor.length);
      const refused = await patch('bob', path, 0, descriptor);
      expectError(refused, 400, 'external_extent_refused');
      assert.match(refused.json.error.message, /\/etc\/shadow/);
      assert.equal((await head('bob', path)).status, 404);
      assert.deepEqual(await partFiles(), []);
    });

    it('refuses a whole upload that is not in the format its metadata declared', async () => {
      const path = await create('bob', 'sum.img', 1000, {
        'upload-metadata': `image ${b64('sum.img')},disk_format ${b64('qcow2')}`,
      });
      const refused = await patch('bob', path, 0, image.subarray(0, 1000));
      expectError(refused, 400, 'format_mismatch');
      assert.match(refused.json.error.message, /declared qcow2, but its bytes are raw/);
      assert.equal((await head('bob', path)).status, 404);
    });

    it('refuses from the headers before reading a byte, and terminates on DELETE', async () => {
      const post = (user: string, headers: Record<string, string>) =>
        as(user).request('POST', '/api/uploads', { headers: { ...TUS, ...headers } });
      expectError(await post('bob', { 'upload-metadata': `image ${b64('small.img')}` }), 400, 'bad_request');
      expectError(
        await post('bob', { 'upload-defer-length': '1', 'upload-metadata': `image ${b64('small.img')}` }),
        400,
        'bad_request',
      );
      expectError(await post('bob', { 'upload-length': '10' }), 400, 'invalid_field');
      expectError(
        await post('bob', {
          'upload-length': String(17 * 1024 * 1024),
          'upload-metadata': `image ${b64('small.img')}`,
        }),
        413,
        'image_too_large',
      );
      await as('bob').post('/api/images/small.img/share/user/pam');
      expectError(
        await post('pam', {
          'upload-length': '10',
          'upload-metadata': `image ${b64('small.img')},owner ${b64('bob')}`,
        }),
        403,
        'forbidden',
      );
      expectError(
        await post('bob', { 'upload-length': '10', 'upload-metadata': `image ${b64('nothing.img')}` }),
        404,
        'image_not_found',
      );
      // The HTTP port serves public downloads only.
      const plain = await request(`${server.httpUrl}/api/uploads`, 'POST', null, '', {
        headers: { ...TUS, 'upload-length': '10', 'upload-metadata': `image ${b64('small.img')}` },
      });
      expectError(plain, 403, 'https_required');

      // A PATCH at the wrong offset is answered before its body: the server never reads it.
      const path = await create('bob', 'small.img', 1024 * 1024);
      const refused = await rawPatch(path, 12345, 1024 * 1024);
      assert.match(refused.head, /^HTTP\/1\.1 409 /);
      assert.equal(refused.sentBody, false, 'the body was never asked for');

      const deleted = await as('bob').request('DELETE', path, { headers: TUS });
      assert.equal(deleted.status, 204);
      assert.equal((await head('bob', path)).status, 404);
      assert.deepEqual(await partFiles(), []);
      assert.equal((await current('small.img')).version, 0);
    });

    it('lets a newer request take over an upload whose older request is still hanging', async () => {
      const path = await create('bob', 'gone.img', 4000);
      // Half a body and then nothing, as from a client whose network went away without a reset.
      const socket = await stalledPatch(path, image.subarray(0, 1500), 4000);
      // HEAD stops the stalled request and reports what it stored.
      const offset = Number((await head('bob', path)).headers['upload-offset']);
      assert.equal(offset, 1500);
      socket.destroy();
      const rest = await patch('bob', path, 1500, image.subarray(1500, 4000));
      assert.equal(rest.status, 204, rest.text);
      assert.equal((await current('gone.img')).digests.sha256, sha256(image.subarray(0, 4000)));
    });

    // Several servers share one repository on PostgreSQL.
    if (engine === 'postgres')
      it('lets a request on a second server take an upload over from a stalled one on the first', async () => {
        const other = await startServerFor(pki, engine, storageEnv, false, server);
        try {
          await as('bob').post('/api/images', { name: 'two.img' });
          const path = await create('bob', 'two.img', 4000);
          const stalled = await stalledPatch(path, image.subarray(0, 1500), 4000);
          // Server two asks server one to let go, and reports the bytes server one stored meanwhile.
          const onOther = clientFor(other.httpsUrl, pki.ca.certPem, pki.credential('bob'));
          const status = await onOther.request('HEAD', path, { headers: TUS });
          assert.equal(status.status, 200);
          assert.equal(status.headers['upload-offset'], '1500');
          stalled.destroy();
          const rest = await onOther.request('PATCH', path, {
            body: image.subarray(1500, 4000),
            headers: { ...TUS, 'content-type': 'application/offset+octet-stream', 'upload-offset': '1500' },
          });
          assert.equal(rest.status, 204, rest.text);
          assert.equal((await current('two.img')).digests.sha256, sha256(image.subarray(0, 4000)));
        } finally {
          await other.stop();
        }
      });

    /** Bob's TLS connection with a PATCH's headers sent (and `extra` header lines), the body left to the caller. */
    async function patchByHand(path: string, offset: number, length: number, extra: string) {
      const socket = await tlsSocket(server.httpsPort, pki.ca.certPem, pki.credential('bob'));
      socket.write(
        `PATCH ${path} HTTP/1.1\r\nHost: localhost\r\nTus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\nUpload-Offset: ${offset}\r\nContent-Length: ${length}\r\n${extra}\r\n`,
      );
      return socket;
    }

    /** Starts a PATCH of `length` bytes, sends `part`, waits until the server has stored it, and stalls. */
    async function stalledPatch(path: string, part: Buffer, length: number) {
      const socket = await patchByHand(path, 0, length, '');
      socket.write(part);
      if (storage === 's3') {
        // An object store keeps a request's last bytes in memory until the request ends (the request that
        // takes the upload over ends it): give them time to arrive.
        await new Promise((resolve) => setTimeout(resolve, 500));
        return socket;
      }
      const uploads = join(server.dir, 'data', 'blobs', 'uploads');
      for (let i = 0; i < 250; i++) {
        const sizes = await Promise.all(
          (await readdir(uploads)).map(
            async (name) => (await stat(join(uploads, name)).catch(() => null))?.size,
          ),
        );
        if (sizes.includes(part.length)) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return socket;
    }

    /** A PATCH by hand over TLS with Expect: 100-continue: what the server answered, and whether it asked for the body. */
    async function rawPatch(path: string, offset: number, length: number) {
      const socket = await patchByHand(path, offset, length, 'Expect: 100-continue\r\n');
      const head = await new Promise<string>((resolve) =>
        socket.once('data', (chunk: Buffer) => resolve(chunk.toString())),
      );
      socket.destroy();
      return { head, sentBody: head.startsWith('HTTP/1.1 100') };
    }
  });
}

/** Expiry needs a server whose uploads expire in a second. */
export function expirySuite(engine: Engine) {
  describe(`resumable upload expiry on ${engine}`, () => {
    let pki: TestPki;
    let server: TestServer;
    before(async () => {
      pki = await makeTestPki();
      server = await startServerFor(pki, engine, { REPOMAN_UPLOADS_RESUMABLE_EXPIRY_SECONDS: '1' });
    });
    after(async () => server?.stop());

    it('expires an upload nobody continues and removes its bytes', async () => {
      const admin = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('admin'));
      await admin.post('/api/images', { name: 'slow.img' });
      const created = await admin.request('POST', '/api/uploads', {
        body: Buffer.alloc(100, 1),
        headers: {
          ...TUS,
          'upload-length': '200',
          'upload-metadata': `image ${b64('slow.img')}`,
          'content-type': 'application/offset+octet-stream',
        },
      });
      assert.equal(created.status, 201, created.text);
      const path = created.headers.location as string;
      const uploads = join(server.dir, 'data', 'blobs', 'uploads');
      assert.equal((await readdir(uploads)).length, 1);
      await server.sweep();
      assert.equal((await readdir(uploads)).length, 1, 'an upload waiting for its client is kept');
      await new Promise((resolve) => setTimeout(resolve, 1200));
      assert.equal((await admin.request('HEAD', path, { headers: TUS })).status, 410);
      await server.sweep();
      assert.deepEqual(await readdir(uploads), []);
      assert.equal((await admin.request('HEAD', path, { headers: TUS })).status, 404);
    });
  });
}
