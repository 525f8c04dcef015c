/**
 * Hostile input, written by hand on a raw TLS connection so that nothing normalises it on the way: path
 * traversal (`..`, `%2e%2e`, encoded slashes, NUL), overlong and non-ASCII names, malformed JSON and forms,
 * garbage `Content-Length` and `Range`, and SQL metacharacters in every field. Never a 5xx, always a JSON error
 * with a code, no file outside the repository served, and the repository exactly as it was. Run once per
 * database engine.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { clientFor, tlsSocket } from './helpers/http.ts';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import { type Engine, startServerFor, type TestServer } from './helpers/server.ts';

interface RawResponse {
  status: number;
  head: string;
  body: string;
  code: string | undefined;
}

/** What the corpus tried, for the closing report: inputs by class. */
export const tried = new Map<string, number>();

export function hostileInputSuite(engine: Engine) {
  describe(`hostile input on ${engine}`, () => {
    let pki: TestPki;
    let server: TestServer;
    let as: (name: string) => ReturnType<typeof clientFor>;
    const image = Buffer.alloc(1000, 'i');

    /** One request exactly as written, on its own connection; the whole response. */
    async function send(request: string | Buffer, user = 'bob'): Promise<RawResponse> {
      const socket = await tlsSocket(server.httpsPort, pki.ca.certPem, pki.credential(user));
      const chunks: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      const closed = new Promise((resolve) => socket.once('close', resolve));
      socket.write(request); // the server closes the connection (Connection: close) once it has answered
      const timer = setTimeout(() => socket.destroy(), 10_000);
      await closed;
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const cut = text.indexOf('\r\n\r\n');
      const head = cut < 0 ? text : text.slice(0, cut);
      const body = cut < 0 ? '' : text.slice(cut + 4);
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
      return { status, head, body, code: /"code":"([a-z_]+)"/.exec(body)?.[1] };
    }

    const request = (method: string, path: string, headers: string[] = [], body = '') =>
      `${method} ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n${[
        ...headers,
        ...(body ? [`Content-Length: ${Buffer.byteLength(body)}`] : []),
      ]
        .map((h) => `${h}\r\n`)
        .join('')}\r\n${body}`;

    /** Sends each input, expecting a clean refusal: a 4xx with a JSON code (one of `codes`, when given). */
    async function refused(kind: string, inputs: (string | Buffer)[], codes?: string[]) {
      for (const input of inputs) {
        const response = await send(input);
        const what = `${kind}: ${JSON.stringify(input.toString().slice(0, 160))} -> ${response.head.split('\r\n')[0]} ${response.body.slice(0, 200)}`;
        assert.ok(response.status >= 400 && response.status < 500, what);
        assert.ok(response.code, `a JSON error with a code: ${what}`);
        if (codes) assert.ok(codes.includes(response.code as string), what);
        assert.doesNotMatch(response.body, /root:|BEGIN .*PRIVATE KEY/, `nothing of the host: ${what}`);
      }
      tried.set(kind, (tried.get(kind) ?? 0) + inputs.length);
    }

    /** Everything an admin can see, to compare before and after. */
    async function snapshot() {
      const admin = as('admin');
      const get = async (path: string) => (await admin.get(path)).json;
      return {
        images: await get('/api/images?limit=1000'),
        users: await get('/api/users?limit=1000'),
        groups: await get('/api/groups?limit=1000'),
        versions: await get('/api/images/bob/vm.img/versions'),
        transfers: await get('/api/transfers?limit=1000'),
        bytes: (await admin.get('/api/images/raw/bob/vm.img')).body.toString('latin1'),
      };
    }
    let before_: Awaited<ReturnType<typeof snapshot>>;

    before(async () => {
      pki = await makeTestPki();
      server = await startServerFor(pki, engine, { REPOMAN_UPLOADS_MAX_IMAGE_SIZE: String(1024 * 1024) });
      as = (name) => clientFor(server.httpsUrl, pki.ca.certPem, pki.credential(name));
      for (const user of ['bob', 'pam'])
        await as('admin').post('/api/users', { user_name: user, client_dn: pki.dn(user) });
      await as('admin').post('/api/groups', { name: 'team', users: ['bob'] });
      await as('bob').post('/api/images', { name: 'vm.img', description: 'the original' });
      await as('bob').put('/api/images/raw/vm.img', image);
      await as('pam').post('/api/images', { name: 'secret.img' });
      before_ = await snapshot();
    });
    after(async () => server?.stop());

    it('refuses hostile transfer offers and answers, and no offer is made, taken or lost', async () => {
      // One real offer, so that a hostile answer has something to miss.
      const offer = (await as('bob').post('/api/images/vm.img/transfer', { to: 'pam' })).json;
      assert.equal(typeof offer.id, 'string', JSON.stringify(offer));
      const pending = await snapshot();
      const json = (method: string, path: string, body: string, user = 'bob') =>
        send(request(method, path, ['Content-Type: application/json'], body), user);
      const offers = [
        '{"to":"pam\u0000"}',
        '{"to":42}',
        '{"to":["pam"]}',
        '{"to":null}',
        '{"to":"pam\' OR \'1\'=\'1"}',
        `{"to":"${'p'.repeat(65)}"}`,
        '{"to":"../admin"}',
        '{"to":"pam","direct":"yes"}',
        '{"to":"pam","owner":"pam"}',
        '{"__proto__":{"to":"pam"}}',
        '{}',
      ];
      const answers = [
        '{"name":"../../etc/passwd"}',
        '{"name":"a\u0000b"}',
        '{"name":42}',
        '{"name":".hidden"}',
        '{"name":"transfer"}',
        '{"to":"pam"}',
      ];
      const ids = [
        '..%2f..%2fetc%2fpasswd',
        '%00',
        `${offer.id}%00`,
        "x'%20OR%20'1'='1",
        'a'.repeat(5000),
        '%2e%2e',
      ];
      let count = 0;
      for (const body of offers) {
        for (const path of ['/api/images/vm.img/transfer', '/api/images/bob/vm.img/transfer']) {
          const response = await json('POST', path, body);
          assert.ok(
            response.status >= 400 && response.status < 500 && response.code,
            `${body} -> ${response.head}`,
          );
          count++;
        }
      }
      for (const body of answers) {
        const response = await json('POST', `/api/transfers/${offer.id}/accept`, body, 'pam');
        assert.ok(
          response.status >= 400 && response.status < 500 && response.code,
          `${body} -> ${response.head}`,
        );
        count++;
      }
      for (const id of ids) {
        for (const [method, suffix] of [
          ['GET', ''],
          ['DELETE', ''],
          ['POST', '/accept'],
          ['POST', '/decline'],
        ] as const) {
          const response = await send(request(method, `/api/transfers/${id}${suffix}`), 'pam');
          assert.ok(
            response.status >= 400 && response.status < 500 && response.code,
            `${method} ${id}: ${response.head}`,
          );
          count++;
        }
      }
      for (const query of ['direction=sideways', 'direction=%00', 'limit=abc', 'offset=-1', 'to=pam']) {
        const response = await send(request('GET', `/api/transfers?${query}`));
        assert.ok(response.status === 400 && response.code, `${query}: ${response.head}`);
        count++;
      }
      tried.set('hostile transfer offers and answers', count);
      assert.deepEqual(await snapshot(), pending);
      assert.equal((await as('bob').delete(`/api/transfers/${offer.id}`)).status, 204);
      assert.deepEqual(await snapshot(), before_);
    });

    it('reaches no file and no other image through traversal, encoded slashes, NUL or odd names', async () => {
      const paths = [
        '/api/images/raw/bob/../../../../etc/passwd',
        '/api/images/raw/bob/..%2f..%2f..%2fetc%2fpasswd',
        '/api/images/raw/bob/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
        '/api/images/raw/bob/%2e%2e%2f%2e%2e%2fetc%2fpasswd',
        '/api/images/raw/%2e%2e/vm.img',
        '/api/images/raw/bob%2fvm.img',
        '/api/images/raw/bob/vm.img%2f..%2f..%2fhostkey.pem',
        '/api/images/raw/pam/..%2fbob%2fvm.img',
        '/api/images/raw/bob/vm.img%00',
        '/api/images/raw/bob/vm.img%00.txt',
        '/api/images/bob/vm.img%00',
        '/api/images/bob/%00',
        '/api/images/raw/bob/vm.img%2500',
        '/api/images/raw/bob/%ff%fe',
        '/api/images/raw/bob/%',
        '/api/images/raw/bob/%zz',
        '/api/images/raw/bob/..',
        '/api/images/raw/bob/.',
        '/api/images/raw/bob/.vm.img',
        `/api/images/raw/bob/${'a'.repeat(5000)}`,
        `/api/images/bob/${'a'.repeat(129)}`,
        `/api/images/bob/${encodeURIComponent('vm.ímg')}`,
        `/api/images/bob/${encodeURIComponent('образ.img')}`,
        '/api/images/raw/bob/secret.img',
        '/api/images/raw/pam/secret.img',
        '/api/images/pam/secret.img',
        "/api/images/raw/bob/vm.img'%20OR%20'1'='1",
        '/api/images/raw/bob/vm.img;ls',
        '/api/images/raw/bob/vm.img%0d%0aX-Injected:%201',
        '/api/users/..%2fadmin',
        '/api/users/admin%00',
        '/api/users/%2e%2e',
        '/api/groups/team%2f..%2fadmins',
        '/api/jobs/..%2f..%2fetc%2fpasswd',
        '/api/uploads/..%2f..%2fetc%2fpasswd',
      ];
      await refused(
        'paths (traversal, encoded slashes, NUL, odd names)',
        paths.map((p) => request('GET', p)),
      );
      // The same against writes: nothing is created, changed or deleted anywhere. (A PUT to a free name in
      // one's own namespace creates it, as grid tools expect: bob/secret.img is such a name, not an attack.)
      await refused(
        'paths on writes',
        paths.flatMap((p) => [
          ...(p === '/api/images/raw/bob/secret.img' ? [] : [request('PUT', p, [], 'x')]),
          request('DELETE', p),
          request('PATCH', p, ['Content-Type: application/json'], '{"description":"changed"}'),
        ]),
      );
      assert.deepEqual(await snapshot(), before_);
    });

    it('refuses malformed JSON and forms with a 400 or 415 and a code', async () => {
      const json = (body: string) => request('POST', '/api/images', ['Content-Type: application/json'], body);
      const bodies = [
        '{',
        '{"name":',
        '{"name":"x",}',
        "{'name':'x'}",
        '[]',
        'null',
        '"vm2.img"',
        '42',
        '{"name":42}',
        '{"name":null}',
        '{"name":["a"]}',
        '{"name":{"$ne":""}}',
        '{"name":"x","read_only":"yes"}',
        '{"name":"x","extra":1}',
        '{"__proto__":{"isAdmin":true},"name":"proto.img"}',
        '{"constructor":{"prototype":{"isAdmin":true}},"name":"proto.img"}',
        `${'['.repeat(100000)}`,
        '{"name":"\\ud800.img"}',
        '\u0000',
        '{"name":"../../etc/passwd"}',
        '{"name":"a/b"}',
        '{"name":".hidden"}',
        '{"name":"raw"}',
        '{"name":"conversions"}',
        `{"name":"${'n'.repeat(129)}"}`,
        '{"name":"spaces are not allowed"}',
        '{"name":"vm.img"}',
        '{"name":"x","owner":"pam"}',
        '{"name":"x","expires":"not a date"}',
      ];
      await refused('malformed JSON bodies', bodies.map(json));
      const form = (body: string) =>
        request('POST', '/api/images', ['Content-Type: application/x-www-form-urlencoded'], body);
      await refused(
        'malformed forms',
        ['name=%zz', 'name=a&name=b', 'name=', '=x', 'name=x&read_only=maybe', 'name=x%00y', '%%%'].map(form),
      );
      await refused(
        'bodies of the wrong type',
        [
          request('POST', '/api/images', ['Content-Type: text/plain'], 'name=x'),
          request('POST', '/api/images', ['Content-Type: application/xml'], '<name>x</name>'),
          request('PATCH', '/api/images/vm.img', ['Content-Type: multipart/form-data; boundary=x'], '--x--'),
        ],
        ['unsupported_media_type', 'bad_request'],
      );
      assert.deepEqual(await snapshot(), before_);
    });

    it('refuses NUL and wrong types anywhere: queries, nested fields, resumable metadata; takes comma lists', async () => {
      const b64 = (text: string) => Buffer.from(text).toString('base64');
      await refused(
        'NUL and wrong types beyond the top level',
        [
          request('GET', '/api/images?name_prefix=%00'),
          request('GET', '/api/images?os_type=a%00b'),
          request(
            'POST',
            '/api/groups',
            ['Content-Type: application/json'],
            '{"name":"g","users":["a\\u0000"]}',
          ),
          request('POST', '/api/groups', ['Content-Type: application/json'], '{"name":"g","users":[1,2]}'),
          request(
            'POST',
            '/api/groups',
            ['Content-Type: application/json'],
            '{"name":"g","users":[["bob"]]}',
          ),
          request('POST', '/api/uploads', [
            'Tus-Resumable: 1.0.0',
            'Upload-Length: 1',
            `Upload-Metadata: image ${b64('a\u0000b')}`,
          ]),
          request('POST', '/api/uploads', [
            'Tus-Resumable: 1.0.0',
            'Upload-Length: 1',
            `Upload-Metadata: image ${b64('vm.img')},owner ${b64('bob\u0000')}`,
          ]),
        ],
        ['invalid_field'],
      );
      // A comma list where a list of names is taken stays as documented.
      const made = await as('admin').post('/api/groups', { name: 'listed', users: 'bob,pam' });
      assert.equal(made.status, 201, made.text);
      assert.deepEqual((await as('admin').get('/api/groups/listed')).json.users.sort(), ['bob', 'pam']);
      assert.equal((await as('admin').delete('/api/groups/listed')).status, 204);
      assert.deepEqual(await snapshot(), before_);
    });

    it('refuses numbers out of range or not in decimal digits in every numeric query parameter, anonymous too', async () => {
      /** One request on a connection without a certificate: HTTPS, or plain HTTP. */
      const anonymous = (text: string, plainHttp: boolean) =>
        new Promise<RawResponse>((resolve) => {
          const socket = plainHttp
            ? net.connect(server.httpPort as number, '127.0.0.1')
            : tls.connect({
                host: '127.0.0.1',
                port: server.httpsPort,
                ca: pki.ca.certPem,
                servername: 'localhost',
              });
          let answer = '';
          socket.on('data', (chunk: Buffer) => {
            answer += chunk.toString('latin1');
          });
          socket.on('error', () => {});
          socket.on('close', () => {
            const [head = '', body = ''] = answer.split('\r\n\r\n');
            const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
            resolve({ status, head, body, code: /"code":"([a-z_]+)"/.exec(body)?.[1] });
          });
          socket.write(text);
        });
      const hostile = [
        '1e21',
        '-1',
        '9007199254740993',
        '0x10',
        'NaN',
        '1e3',
        '1.5',
        '+5',
        ' 5',
        'Infinity',
        '9'.repeat(400),
        '',
      ];
      // Every list route: those the OpenAPI document says take an offset (new ones join by themselves).
      const document = (await as('bob').get('/api/openapi.json')).json as {
        paths: Record<string, { get?: { parameters?: { in: string; name: string }[] } }>;
      };
      const lists = Object.entries(document.paths)
        .filter(([, item]) => item.get?.parameters?.some((p) => p.in === 'query' && p.name === 'offset'))
        .map(([path]) =>
          path.replace('{user}', 'bob').replace('{group}', 'team').replace('{image}', 'vm.img'),
        );
      for (const known of ['/api/images', '/api/users', '/api/groups', '/api/audit', '/api/users/bob/shared'])
        assert.ok(lists.includes(known), `${known} among the list routes: ${lists.join(', ')}`);
      const queries = [
        ...lists.flatMap((path) =>
          hostile.flatMap((value) => [
            `${path}?offset=${encodeURIComponent(value)}`,
            `${path}?limit=${encodeURIComponent(value)}`,
          ]),
        ),
        // Version numbers beyond any version (PostgreSQL's integer ends at 2147483647).
        ...['1e21', '9007199254740993', '2147483648', '0x10', '-1', 'NaN'].flatMap((value) => [
          `/api/images/raw/bob/vm.img?version=${encodeURIComponent(value)}`,
          `/api/images/bob/vm.img/variants/raw?version=${encodeURIComponent(value)}`,
        ]),
      ];
      let count = 0;
      for (const path of queries) {
        const method = path.includes('/variants/') ? 'DELETE' : 'GET';
        for (const [who, response] of [
          ['bob', await send(request(method, path))],
          ['anonymous', await anonymous(request(method, path), false)],
          ['anonymous on plain HTTP', await anonymous(request(method, path), true)],
        ] as const) {
          const what = `${who} ${method} ${path} -> ${response.head.split('\r\n')[0]} ${response.body.slice(0, 200)}`;
          assert.ok(response.status >= 400 && response.status < 500, what);
          // Whoever may list it at all is told the value is wrong; the others are refused as before.
          if (who === 'bob' || path === '/api/images' || path.startsWith('/api/images?'))
            assert.equal(response.code, 'invalid_field', what);
          else assert.ok(response.code, what);
          count++;
        }
      }
      // The same numbers as version numbers in bodies.
      const bodies = ['1e21', '9007199254740993', '2147483648', '-1'].flatMap((version) => [
        request(
          'POST',
          '/api/images/vm.img/rollback',
          ['Content-Type: application/json'],
          `{"version":${version}}`,
        ),
        request(
          'POST',
          '/api/images/vm.img/conversions',
          ['Content-Type: application/json'],
          `{"format":"raw","version":${version}}`,
        ),
      ]);
      await refused('numbers out of range in bodies', bodies, ['invalid_field']);
      // The largest offset is still an offset: an empty page, not an error.
      const far = await as('bob').get('/api/images?offset=1000000000');
      assert.equal(far.status, 200, far.text);
      assert.deepEqual(far.json.items, []);
      tried.set('numbers out of range or not decimal in query parameters', count);
      assert.deepEqual(await snapshot(), before_);
    });

    it('answers what the HTTP parser refuses in our JSON, on the plain-HTTP port too', async () => {
      const plain = (text: string) =>
        new Promise<string>((resolve) => {
          const socket = net.connect(server.httpPort as number, '127.0.0.1');
          let answer = '';
          socket.on('data', (chunk: Buffer) => {
            answer += chunk.toString('latin1');
          });
          socket.on('close', () => resolve(answer));
          socket.on('error', () => {});
          socket.write(text);
        });
      for (const text of [
        'GET /api/images/raw/bob/vm.img HTTP/1.1\r\nHost: localhost\r\nContent-Length: abc\r\n\r\n',
        'GET /api/images/raw/bob/vm.img HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n',
        'GARBAGE\r\n\r\n',
      ]) {
        const answer = await plain(text);
        assert.match(
          answer,
          /^HTTP\/1\.1 400 [\s\S]*\r\n\r\n\{"error":\{"code":"bad_request"/,
          JSON.stringify(answer),
        );
      }
      tried.set('malformed requests on plain HTTP', 3);
    });

    it('never answers garbage Content-Length, Range or validators with a 5xx', async () => {
      const lengths = ['abc', '-1', '1e3', '0x10', '99999999999999999999', '1, 2', '5 5', '+5'];
      await refused(
        'garbage Content-Length',
        lengths.map(
          (length) =>
            `PUT /api/images/raw/vm.img HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: ${length}\r\n\r\nxxxxx`,
        ),
      );
      await refused('Content-Length and Transfer-Encoding both', [
        'PUT /api/images/raw/vm.img HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
        'PUT /api/images/raw/vm.img HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nxxxx',
        'PUT /api/images/raw/vm.img HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n0\r\n\r\n',
      ]);
      // Ranges and validators: served whole, in part, 304 or 416, never worse.
      const ranges = [
        'bytes=abc',
        'bytes=5-1',
        'bytes=-0',
        'bytes=99999999999999999999-',
        'bytes=0-99999999999999999999',
        'bytes=0-1,2-3',
        'items=0-1',
        'bytes=--1',
        'bytes=1000-',
        'bytes= 0 - 1',
        `bytes=${'0'.repeat(5000)}-1`,
      ];
      let count = 0;
      for (const header of [
        ...ranges.map((r) => `Range: ${r}`),
        'If-Range: garbage',
        'If-None-Match: ,,,',
        'If-Modified-Since: yesterday',
        'If-Modified-Since: Tue, 99 Foo 9999 99:99:99 GMT',
      ]) {
        const response = await send(request('GET', '/api/images/raw/bob/vm.img', [header]));
        assert.ok([200, 206, 304, 416].includes(response.status), `${header} -> ${response.status}`);
        if (response.status === 416) assert.equal(response.code, 'range_not_satisfiable');
        count++;
      }
      tried.set('garbage Range and validators', count);
      assert.deepEqual(await snapshot(), before_);
    });

    it('refuses hostile WebDAV and grid requests cleanly, and the repository stays as it was', async () => {
      const propfind = (body: string | Buffer, headers: string[] = ['Depth: 0']) =>
        Buffer.concat([
          Buffer.from(
            `PROPFIND /api/images/raw/bob/vm.img HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n${headers.map((h) => `${h}\r\n`).join('')}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n`,
          ),
          Buffer.isBuffer(body) ? body : Buffer.from(body),
        ]);
      await refused(
        'hostile PROPFIND bodies',
        [
          '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><propfind xmlns="DAV:"><prop>&lol2;</prop></propfind>',
          '<!DOCTYPE x SYSTEM "file:///etc/passwd"><propfind xmlns="DAV:"/>',
          '<propfind xmlns="DAV:"><prop>',
          '<propfind xmlns="DAV:"></prop></propfind>',
          '<p:propfind xmlns:q="DAV:"/>',
          '<propfind xmlns="DAV:"/><propfind xmlns="DAV:"/>',
          'not xml at all',
          `${`<propfind xmlns="DAV:">${'<a>'.repeat(5000)}${'</a>'.repeat(5000)}</propfind>`.slice(0, 60_000)}<`,
          Buffer.from([0xff, 0xfe, 0x3c, 0x00, 0x70, 0x00]),
          `<propfind xmlns="DAV:"><prop>${'<getetag/>'.repeat(10_000)}</prop></propfind>`,
          `<propfind xmlns="DAV:"><prop>${Array.from({ length: 100 }, (_, i) => `<p${i}/>`).join('')}</prop></propfind>`,
          '<propfind xmlns="DAV:"><prop><D:a&amp;b/></prop></propfind>',
          `<propfind xmlns="DAV:">${'<a>'.repeat(100)}`,
          // Inputs that make a backtracking tokenizer quadratic: each must be refused as fast as any other
          // (the corpus's connections are cut after 10 s without an answer).
          `<propfind xmlns="DAV:">${'<a'.repeat(32_000)}`,
          `<propfind xmlns="DAV:">${'<?'.repeat(32_000)}`,
          `<propfind xmlns="DAV:">${'<!--'.repeat(16_000)}`,
          `<propfind xmlns="DAV:" ${'a= '.repeat(20_000)}/>`,
        ].map((body) => propfind(body)),
        ['bad_request', 'payload_too_large'],
      );
      await refused(
        'PROPFIND Depth',
        ['Depth: 2', 'Depth: -1', `Depth: ${'1'.repeat(300)}`, 'Depth: 1 1'].map((depth) =>
          propfind('', [depth]),
        ),
        ['bad_request'],
      );
      await refused(
        'PROPFIND depth infinity on a collection',
        [
          request('PROPFIND', '/api/images/raw/bob/', ['Depth: infinity']),
          request('PROPFIND', '/api/images/raw/'),
        ],
        ['propfind_finite_depth'],
      );
      await refused(
        'hostile MOVE destinations',
        [
          [],
          ['Destination: '],
          ['Destination: /api/images/raw/bob/../../../etc/passwd'],
          ['Destination: /api/images/raw/bob/%2e%2e%2fsecret.img'],
          ['Destination: /api/images/raw/bob/a%00b.img'],
          ['Destination: /api/images/raw/pam/stolen.img'],
          ['Destination: https://elsewhere.example/etc/passwd'],
          ['Destination: /api/images/raw/bob/vm.img'],
          ['Destination: /api/images/raw/bob/x/y/z'],
          ['Destination: /api/images/raw/bob/%zz'],
          ['Destination: http://[::1'],
          [`Destination: /api/images/raw/bob/${'n'.repeat(5000)}`],
        ].map((headers) => request('MOVE', '/api/images/raw/bob/vm.img', headers)),
      );
      await refused(
        'methods no route takes',
        ['LOCK', 'UNLOCK', 'PROPPATCH', 'SEARCH', 'MKCOL', 'REPORT'].map((method) =>
          request(method, '/api/images/raw/bob/vm.img', [], method === 'PROPPATCH' ? '<x/>' : ''),
        ),
        ['method_not_allowed'],
      );
      await refused(
        'MKCOL',
        [
          request('MKCOL', '/api/images/raw/bob/'),
          request('MKCOL', '/api/images/raw/new-namespace/'),
          request('MKCOL', '/api/images/raw/bob', [], '<x/>'),
          request('MKCOL', '/api/images/raw/..%2f..%2fetc/'),
        ],
        ['method_not_allowed', 'forbidden', 'invalid_field', 'bad_request'],
      );
      await refused(
        'hostile third-party copies',
        [
          [],
          ['Source: '],
          ['Source: https://a.example/x', 'Destination: https://b.example/y'],
          ['Source: file:///etc/passwd'],
          ['Source: gopher://example.org/'],
          ['Source: https://user:secret@example.org/x'],
          ['Source: not a url'],
          [`Source: https://example.org/${'x'.repeat(70_000)}`],
          ['Destination: ftp://example.org/x'],
          ['Source: https://example.org/x', 'Overwrite: F'],
        ].map((headers) => request('COPY', '/api/images/raw/bob/vm.img', headers)),
        ['bad_request', 'destination_exists', 'headers_too_large'],
      );
      await refused('third-party copies of what is not one’s own', [
        request('COPY', '/api/images/raw/pam/secret.img', ['Destination: https://example.org/x']),
        request('COPY', '/api/images/raw/pam/planted.img', ['Source: https://example.org/x']),
        request('COPY', '/api/images/raw/bob/..%2f..%2fpam%2fsecret.img', [
          'Destination: https://example.org/x',
        ]),
      ]);
      await refused('DELETE of what is not one’s own', [
        request('DELETE', '/api/images/raw/pam/secret.img'),
        request('DELETE', '/api/images/raw/bob/..%2f..%2fpam%2fsecret.img'),
        request('DELETE', '/api/images/raw/bob/%00'),
      ]);
      await refused('PUT creating where it may not', [
        request('PUT', '/api/images/raw/pam/planted.img', [], 'x'),
        request('PUT', '/api/images/raw/bob/..', [], 'x'),
        request('PUT', '/api/images/raw/bob/a%2fb.img', [], 'x'),
        request('PUT', `/api/images/raw/bob/${'n'.repeat(300)}.img`, [], 'x'),
      ]);
      await refused(
        'too many ranges',
        [
          `bytes=${Array.from({ length: 1200 }, (_, i) => `${i}-${i}`).join(',')}`,
          `bytes=${Array.from({ length: 20 }, () => '0-').join(',')}`,
        ].map((range) => request('GET', '/api/images/raw/bob/vm.img', [`Range: ${range}`])),
        ['too_many_ranges', 'headers_too_large'],
      );
      // Want-Digest is advice: junk in it is passed over, never refused and never a 5xx.
      for (const want of [
        '',
        ',,,',
        'adler32;q=x',
        'md5;q=2',
        `${'sha-256,'.repeat(2000)}`,
        'SHA;q=1',
        'adler32;;;q',
      ]) {
        const response = await send(request('HEAD', '/api/images/raw/bob/vm.img', [`Want-Digest: ${want}`]));
        assert.ok(
          [200, 431].includes(response.status),
          `Want-Digest: ${want.slice(0, 40)} -> ${response.status}`,
        );
      }
      tried.set('Want-Digest junk', 7);
      assert.deepEqual(await snapshot(), before_);
    });

    it('refuses hostile capability requests and tokens cleanly, and the repository stays as it was', async () => {
      const ask = (
        body: string,
        path = '/api/images/raw/bob/vm.img',
        type = 'application/macaroon-request',
      ) => request('POST', path, [`Content-Type: ${type}`], body);
      await refused('hostile capability requests', [
        ask('{'),
        ask('[]'),
        ask('"caveats"'),
        ask('{"caveats": [42]}'),
        ask(`{"caveats": [${'"activity:LIST",'.repeat(40)}"activity:LIST"]}`),
        ask(`{"caveats": ["${'x'.repeat(5000)}"]}`),
        ask('{"caveats": ["activity:DOWNLOAD,ROOT"]}'),
        ask('{"caveats": ["path:/api/images/raw/bob/../pam/secret.img"]}'),
        ask('{"caveats": ["path:/api/images/raw/pam/"]}'),
        ask('{"caveats": ["before:tomorrow"]}'),
        ask('{"caveats": ["ip:999.1.1.1/8"]}'),
        ask('{"caveats": ["ip:10.0.0.0/99"]}'),
        ask('{"caveats": ["home:/"]}'),
        ask('{"caveats": ["activity:"]}'),
        ask('{"validity": "PT-1H"}'),
        ask('{"validity": "P1Y"}'),
        ask('{"validity": "PT0S"}'),
        ask('{"validity": 60}'),
        ask('{"validity": "PT1H", "secret": "x"}'),
        ask('{"caveats": ["activity:UPLOAD"]}', '/api/images/raw/pam/secret.img'),
        ask('{}', '/api/images/raw/pam/secret.img'),
        ask('{}', '/api/images/raw/nobody/'),
        ask('{}', '/api/images/raw/bob/vm.img', 'application/json'),
        ask('{}', '/api/images/raw/bob/vm.img', 'text/plain'),
        ask(`{"caveats": ["${'a'.repeat(70_000)}"]}`),
      ]);
      const token = (value: string) =>
        request('GET', '/api/images/raw/bob/vm.img', [`Authorization: Bearer ${value}`]);
      await refused(
        'hostile capabilities',
        [
          token('x'),
          token('MDAx'),
          token(
            'MDAxY2xvY2F0aW9uIGh0dHA6Ly9teWJhbmsvCjAwMjZpZGVudGlmaWVyIHdlIHVzZWQgb3VyIHNlY3JldCBrZXkKMDAxNmNpZCB0ZXN0ID0gY2F2ZWF0CjAwMmZzaWduYXR1cmUgGXusegRK8zMyhluSZuJtSTvdZopmDkTYjOGpmMI9vWcK',
          ),
          token(Buffer.from('ffffidentifier x\n').toString('base64')),
          token(Buffer.from('0010location x\n0010identifier\n').toString('base64url')),
          token('A'.repeat(9000)),
          token('%00'),
          token("' or 1=1 --"),
          request('GET', `/api/images/raw/bob/vm.img?authz=${'Z'.repeat(100)}`),
          request('GET', '/api/images/raw/bob/vm.img?authz=Bearer%20x'),
          request('DELETE', '/api/capabilities/..%2f..%2fx'),
          request('DELETE', `/api/capabilities/${'0'.repeat(32)}`),
        ],
        ['capability_invalid', 'capability_not_found', 'headers_too_large', 'bad_request'],
      );
      assert.deepEqual(await snapshot(), before_);
    });

    it('refuses hostile bearer tokens, identity links and sign-ins, and changes nothing', async () => {
      const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
      const jwt = (header: unknown, claims: unknown, signature = 'c2ln') =>
        `${b64(header)}.${b64(claims)}.${signature}`;
      const bearer = (value: string, path = '/api/whoami') =>
        request('GET', path, [`Authorization: Bearer ${value}`]);
      await refused(
        'hostile bearer tokens',
        [
          bearer(jwt({ alg: 'none' }, { iss: 'https://iam.example', sub: 'admin' }, '')),
          bearer(jwt({ alg: 'HS256' }, { iss: 'https://iam.example', sub: 'admin' })),
          bearer(jwt({ alg: 'RS256', kid: '../../etc/passwd' }, { iss: 'https://iam.example' })),
          bearer(jwt({ alg: 'RS256', crit: ['x'] }, { iss: 'https://iam.example' })),
          bearer(jwt({ alg: 'RS256' }, { iss: 'http://127.0.0.1:9/' })),
          bearer(jwt({ alg: 'RS256' }, [1, 2, 3])),
          bearer(jwt({ alg: 'RS256' }, 'claims')),
          bearer(`eyJ${'A'.repeat(9000)}.eyJ.x`),
          bearer('eyJhbGciOiJSUzI1NiJ9.!!!.x'),
          bearer(
            `${b64({ alg: 'RS256' })}.${b64({ iss: 'https://iam.example' })}.`,
            '/api/images/raw/bob/vm.img',
          ),
          request('POST', '/api/whoami/identities', [`Authorization: Bearer ${jwt({ alg: 'ES256' }, {})}`]),
        ],
        // (a token beside a certificate links nothing: bad_request)
        ['token_invalid', 'capability_invalid', 'headers_too_large', 'bad_request'],
      );
      const link = (body: string, user = 'bob') =>
        send(
          request('POST', `/api/users/${user}/identities`, ['Content-Type: application/json'], body),
          'admin',
        );
      const bodies = [
        '{',
        '[]',
        '{"issuer":"https://iam.example"}',
        '{"subject":"x"}',
        '{"issuer":"https://iam.example","subject":""}',
        '{"issuer":"https://iam.example","subject":42}',
        `{"issuer":"https://iam.example","subject":"${'s'.repeat(300)}"}`,
        `{"issuer":"${'i'.repeat(3000)}","subject":"x"}`,
        '{"issuer":"https://iam.example","subject":"x","user_id":1}',
        '{"issuer":"https://iam.example","subject":"x"}',
      ];
      for (const body of bodies) {
        const response = await link(body);
        assert.ok(
          response.status >= 400 && response.status < 500,
          `${body.slice(0, 80)} -> ${response.status}`,
        );
        assert.ok(response.code, body.slice(0, 80));
      }
      tried.set('hostile identity links', bodies.length);
      await refused('hostile sign-ins', [
        request('GET', '/api/auth/sign-in'),
        request('GET', '/api/auth/sign-in?issuer=https%3A%2F%2Fiam.example'),
        request('GET', `/api/auth/sign-in?issuer=${'x'.repeat(3000)}`),
        request('GET', '/api/auth/sign-in?issuer=x&return_to=https%3A%2F%2Fevil.example'),
        request('GET', '/api/auth/sign-in?issuer=x&extra=1'),
        request('DELETE', '/api/users/bob/identities/x'),
        request('DELETE', '/api/users/bob/identities/-1'),
        request('DELETE', '/api/users/bob/identities/99999999999999999999'),
      ]);
      // A callback nobody started goes back to the start page with the reason, and signs nobody in.
      for (const query of [
        '',
        '?state=x&code=y',
        `?state=${'s'.repeat(150)}&code=y`,
        '?error=access_denied',
      ]) {
        const response = await send(request('GET', `/api/auth/callback${query}`));
        assert.equal(response.status, 303, `callback${query}`);
        assert.match(response.head, /location: \/\?sign_in_error=/i);
        assert.doesNotMatch(response.head, /__Host-repoman_session=[^;\r]/);
      }
      assert.deepEqual(await snapshot(), before_);
    });

    it('refuses hostile endorsements, subscribers and image-list requests, and changes nothing', async () => {
      const endorse = (body: string, group = 'team') =>
        send(
          request('POST', `/api/groups/${group}/endorsements`, ['Content-Type: application/json'], body),
          'admin',
        );
      const bodies = [
        '{',
        '[]',
        '{"image":"bob/vm.img"}',
        '{"expires":"2099-01-01"}',
        '{"image":"bob/vm.img","expires":"tomorrow"}',
        '{"image":"bob/vm.img","expires":"2099-02-30"}',
        '{"image":"bob/vm.img","expires":"1999-01-01"}',
        '{"image":"bob/vm.img","expires":42}',
        '{"image":"bob/vm.img","expires":"2099-01-01","version":0}',
        '{"image":"bob/vm.img","expires":"2099-01-01","version":2147483648}',
        '{"image":"bob/vm.img","expires":"2099-01-01","version":"1"}',
        '{"image":"bob/vm.img","expires":"2099-01-01","version":7}',
        '{"image":"vm.img","expires":"2099-01-01"}',
        '{"image":"bob/../pam/secret.img","expires":"2099-01-01"}',
        '{"image":"pam/secret.img","expires":"2099-01-01"}',
        `{"image":"${'b'.repeat(300)}/x","expires":"2099-01-01"}`,
        `{"image":"bob/vm.img","expires":"2099-01-01","comment":"${'c'.repeat(70_000)}"}`,
        '{"image":"bob/vm.img","expires":"2099-01-01","endorser":"pam"}',
        '{"__proto__":{"image":"bob/vm.img"},"expires":"2099-01-01"}',
      ];
      let count = 0;
      for (const body of bodies) {
        const response = await endorse(body);
        const what = `POST endorsements ${body.slice(0, 80)} -> ${response.status} ${response.body.slice(0, 160)}`;
        assert.ok(response.status >= 400 && response.status < 500, what);
        assert.ok(response.code, what);
        count++;
      }
      for (const group of ['..%2f..%2fetc', 'nobody', '%00', 'a'.repeat(300)]) {
        const response = await endorse('{"image":"bob/vm.img","expires":"2099-01-01"}', group);
        assert.ok(
          response.status >= 400 && response.status < 500 && response.code,
          `${group} -> ${response.status}`,
        );
        count++;
      }
      // Garbage as an endorser's signed list (the admin may endorse for team): refused, nothing published.
      for (const body of [
        'not a MIME message',
        'MIME-Version: 1.0\r\nContent-Type: multipart/signed; boundary="b"\r\n\r\n--b\r\n{}\r\n--b--\r\n',
        `MIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol="application/x-pkcs7-signature"; boundary="b"\r\n\r\n--b\r\n{}\r\n--b\r\nContent-Type: application/x-pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\n${Buffer.alloc(600, 0x30).toString('base64')}\r\n--b--\r\n`,
        '\u0001'.repeat(1000),
      ]) {
        const json = await send(request('GET', '/api/groups/team/endorsers/admin/image-list.json'), 'admin');
        const etag = /etag: ("[^"]*")/i.exec(json.head)?.[1] ?? '"x"';
        const response = await send(
          request(
            'PUT',
            '/api/groups/team/endorsers/admin/image-list',
            ['Content-Type: text/plain', `If-Match: ${etag}`],
            body,
          ),
          'admin',
        );
        assert.equal(
          response.code,
          'list_signature_invalid',
          `${body.slice(0, 40)} -> ${response.status} ${response.body}`,
        );
        count++;
      }
      tried.set('hostile endorsements', count);
      const basic = (value: string) => [`Authorization: Basic ${value}`];
      await refused('hostile image-list and subscriber requests', [
        request(
          'PUT',
          '/api/groups/team/endorsers/bob/image-list',
          ['Content-Type: text/plain', 'If-Match: "x"'],
          'MIME-Version: 1.0\r\n\r\n',
        ),
        request('PUT', '/api/groups/team/endorsers/bob/image-list', ['Content-Type: application/json'], '{}'),
        request('PUT', '/api/groups/team/endorsers/pam/image-list', ['Content-Type: text/plain'], 'x'),
        request('PUT', '/api/groups/team/endorsers/..%2fpam/image-list', ['Content-Type: text/plain'], 'x'),
        request('GET', '/api/groups/team/endorsers/nobody/image-list.json'),
        request(
          'PUT',
          '/api/groups/team/image-list/access',
          ['Content-Type: application/json'],
          '{"subscribers_only":"yes"}',
        ),
        request('PUT', '/api/groups/team/image-list/access', ['Content-Type: application/json'], '{}'),
        request(
          'PUT',
          '/api/groups/nobody/image-list/access',
          ['Content-Type: application/json'],
          '{"subscribers_only":true}',
        ),
        request('GET', '/api/groups/nobody/image-list'),
        request('GET', '/api/groups/..%2f..%2fetc/image-list.json'),
        request('GET', '/api/images/pam/secret.img/image-list'),
        request('GET', '/api/images/bob/nothing.img/image-list.json'),
        request('DELETE', '/api/groups/team/endorsements/bob/vm.img'),
        request('DELETE', '/api/groups/team/endorsements/..%2f/vm.img'),
        request('DELETE', '/api/groups/team/subscribers/x'),
        request('POST', '/api/groups/team/subscribers', ['Content-Type: application/json'], '{"name":""}'),
        request('POST', '/api/groups/team/subscribers', ['Content-Type: application/json'], '{"name":42}'),
        request(
          'POST',
          '/api/groups/team/subscribers',
          ['Content-Type: application/json'],
          `{"name":"${'n'.repeat(300)}"}`,
        ),
      ]);
      // Junk basic auth on a list of public images only is ignored: it needs none.
      for (const value of [
        '',
        '%%%',
        Buffer.from(':').toString('base64'),
        'A'.repeat(5000),
        Buffer.from('\u0000:x').toString('base64'),
      ]) {
        const response = await send(request('GET', '/api/groups/team/image-list.json', basic(value)));
        assert.ok(
          [200, 400, 431].includes(response.status),
          `Basic ${value.slice(0, 20)} -> ${response.status}`,
        );
      }
      tried.set('junk subscriber tokens', 5);
      assert.deepEqual(await snapshot(), before_);
    });

    it('refuses hostile clouds: bad URLs, half credentials, addresses it may not reach; nothing is kept', async () => {
      const register = (body: string, group = 'team') =>
        send(request('POST', `/api/clouds/${group}`, ['Content-Type: application/json'], body), 'admin');
      const cred = '"application_credential_id":"x","application_credential_secret":"y"';
      const bodies = [
        '{',
        '[]',
        `{"name":"c",${cred}}`,
        '{"name":"c","auth_url":"http://127.0.0.1:9/v3"}',
        `{"name":"c","auth_url":"file:///etc/passwd",${cred}}`,
        `{"name":"c","auth_url":"javascript:alert(1)",${cred}}`,
        `{"name":"c","auth_url":"http://user:pw@127.0.0.1:9/v3",${cred}}`,
        `{"name":"c","auth_url":"not a url",${cred}}`,
        `{"name":"c","auth_url":"http://169.254.169.254/v3",${cred}}`,
        `{"name":"c","auth_url":"http://[::ffff:127.0.0.1]:9/v3",${cred}}`,
        `{"name":"c","auth_url":"http://10.0.0.1:5000/v3",${cred}}`,
        '{"name":"c","auth_url":"http://127.0.0.1:9/v3","application_credential_id":"x"}',
        '{"name":"c","auth_url":"http://127.0.0.1:9/v3","username":"u","password":"p"}',
        `{"name":"c","auth_url":"http://127.0.0.1:9/v3",${cred},"username":"u","password":"p","project":"q"}`,
        `{"name":"../c","auth_url":"http://127.0.0.1:9/v3",${cred}}`,
        `{"name":"c","auth_url":"http://127.0.0.1:9/v3",${cred},"visibility":"public"}`,
        `{"name":"c","auth_url":"http://127.0.0.1:9/v3",${cred},"transfer":"ftp"}`,
        `{"name":"c","auth_url":"http://127.0.0.1:9/v3",${cred},"name_prefix":"${'p'.repeat(100)}"}`,
        `{"name":"c","auth_url":"http://127.0.0.1:9/v3",${cred},"disk_format":"exe"}`,
        `{"name":"c","auth_url":"${'h'.repeat(3000)}",${cred}}`,
        `{"name":"c","auth_url":"http://127.0.0.1:9/v3",${cred},"secret":"x"}`,
      ];
      let count = 0;
      for (const body of bodies) {
        const response = await register(body);
        const what = `POST clouds ${body.slice(0, 100)} -> ${response.status} ${response.body.slice(0, 200)}`;
        assert.ok(response.status >= 400 && response.status < 500, what);
        assert.ok(response.code, what);
        assert.doesNotMatch(response.body, /root:/, what);
        count++;
      }
      for (const path of [
        '/api/clouds/nobody',
        '/api/clouds/team/..%2f..%2fx',
        '/api/clouds/team/c/status',
        '/api/clouds/team/c/images/bob/vm.img',
      ]) {
        const response = await send(request('GET', path), 'admin');
        assert.ok(
          response.status >= 400 && response.status < 500 && response.code,
          `${path} -> ${response.status}`,
        );
        count++;
      }
      tried.set('hostile clouds', count);
      const listed = await as('admin').get('/api/clouds');
      assert.deepEqual(listed.json, [], 'no cloud was kept');
      assert.deepEqual(await snapshot(), before_);
    });

    it('stores SQL metacharacters and non-ASCII text in every field verbatim, and finds nothing with them', async () => {
      const nasty = [
        "'; DROP TABLE images; --",
        '" OR "1"="1',
        "x' OR '1'='1' --",
        'a\\b\\\\c',
        '100% _under_ [brackets]',
        '/* comment */ ; select 1',
        'Ünïcödé ✓ 画像 🚀',
        '\u202eevil\u202c',
        'line\nbreak\ttab',
        '$1 $$ ? :name @p',
      ];
      let count = 0;
      for (const value of nasty) {
        const body = {
          description: value,
          os_variant: value,
          os_type: value,
          os_arch: value,
          hypervisor: value,
        };
        const patched = await as('bob').patch('/api/images/vm.img', body);
        assert.equal(patched.status, 200, JSON.stringify(patched.json));
        const shown = (await as('bob').get('/api/images/vm.img')).json;
        for (const field of Object.keys(body)) assert.equal(shown[field], value, field);
        // As filters, they match only themselves.
        for (const filter of ['os_variant', 'os_type', 'name_prefix']) {
          const found = (await as('bob').get(`/api/images?${filter}=${encodeURIComponent(value)}`)).json;
          assert.ok(
            found.items.every((i: { name: string }) => i.name === 'vm.img'),
            `${filter}=${value}`,
          );
        }
        const full = await as('bob').patch('/api/users/bob', { full_name: value });
        assert.equal(full.status, 200, JSON.stringify(full.json));
        assert.equal((await as('bob').get('/api/users/bob')).json.full_name, value);
        count += 5 + 3 + 1;
      }
      // NUL has no place in text on PostgreSQL: refused the same way on both engines, never a 500.
      const nul = await as('bob').patch('/api/images/vm.img', { description: 'a\u0000b' });
      assert.equal(nul.status, 400, JSON.stringify(nul.json));
      assert.equal(nul.json.error.code, 'invalid_field');
      const nulName = await as('bob').patch('/api/users/bob', { full_name: 'a\u0000b' });
      assert.equal(nulName.status, 400, JSON.stringify(nulName.json));
      // SQL in names, owners and group names is just a name that does not exist, or is not allowed.
      for (const path of [
        `/api/images?owner=${encodeURIComponent("bob' OR '1'='1")}`,
        `/api/users/${encodeURIComponent("bob' --")}`,
        `/api/groups/${encodeURIComponent('team; DROP TABLE groups')}`,
      ]) {
        const response = await as('bob').get(path);
        assert.ok([400, 404].includes(response.status), `${path} -> ${response.status}`);
        count++;
      }
      tried.set('SQL metacharacters and non-ASCII in fields', count + 2);
      await as('bob').patch('/api/images/vm.img', {
        description: 'the original',
        os_variant: null,
        os_type: null,
        os_arch: null,
        hypervisor: null,
      });
      await as('bob').patch('/api/users/bob', { full_name: null });
      const after_ = await snapshot();
      assert.equal(after_.bytes, before_.bytes);
      assert.deepEqual(after_.versions, before_.versions);
      assert.equal(after_.images.total, before_.images.total);
      assert.equal(after_.users.total, before_.users.total);
    });
  });
}
