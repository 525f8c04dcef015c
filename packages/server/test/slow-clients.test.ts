/**
 * Slow and abusive clients (reliability, part 5), against a server with short timeouts: headers sent slowly
 * (slowloris) and bodies that stall are cut, a client that stops reading a download is let go, many idle
 * connections do not keep others out, and one address holds no more than connections.max_per_address.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { LINGER_MS } from '../src/http/lingering-close.ts';
import { type ClientCredential, clientFor, tlsSocket } from './helpers/http.ts';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import { startServerFor, type TestServer } from './helpers/server.ts';

describe('slow and abusive clients', () => {
  let pki: TestPki;
  let server: TestServer;
  let bob: ReturnType<typeof clientFor>;

  const connect = () => tlsSocket(server.httpsPort, pki.ca.certPem, pki.credential('bob'));
  /** A TLS connection from another loopback address (each holds at most connections.max_per_address). */
  const connectFrom = async (localAddress: string) => {
    const raw = net.connect({ host: '127.0.0.1', port: server.httpsPort, localAddress });
    const socket = tls.connect({
      socket: raw,
      ca: pki.ca.certPem,
      ...pki.credential('bob'),
      servername: 'localhost',
    });
    socket.on('error', () => {});
    await new Promise((resolve) => socket.once('secureConnect', resolve));
    return socket;
  };

  /** Whether the server closes the socket within `ms` (it should, well before). */
  const closedWithin = (socket: tls.TLSSocket, ms: number) =>
    new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      socket.once('close', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });

  before(async () => {
    pki = await makeTestPki();
    server = await startServerFor(pki, 'sqlite', {
      REPOMAN_TIMEOUTS_HEADERS_SECONDS: '1',
      REPOMAN_TIMEOUTS_IDLE_SECONDS: '2',
    });
    const admin = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('admin'));
    await admin.post('/api/users', { user_name: 'bob', client_dn: pki.dn('bob') });
    bob = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('bob'));
    await bob.post('/api/images', { name: 'slow.img' });
    // Larger than what the kernel buffers of a loopback connection can hold, so that a reader can stall it.
    await bob.request('PUT', '/api/images/raw/slow.img', { body: randomBytes(48 * 1024 * 1024) });
  });
  after(async () => server?.stop());

  it('cuts a client that sends its headers too slowly (slowloris)', async () => {
    const socket = await connect();
    socket.write('GET /api/whoami HTTP/1.1\r\nHost: localhost\r\nX-Slow: a');
    const trickle = setInterval(() => socket.write('a'), 200); // a byte now and then, never the end
    let answer = '';
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString('latin1');
    });
    try {
      assert.ok(await closedWithin(socket, 15_000), 'the server closed the connection');
      assert.match(answer, /^HTTP\/1\.1 408 [\s\S]*"code":"request_timeout"/, 'told why, in our JSON');
    } finally {
      clearInterval(trickle);
    }
  });

  it('cuts an upload whose body stalls, and changes nothing', async () => {
    const before = (await bob.get('/api/images/slow.img')).json;
    const socket = await connect();
    socket.write(
      `PUT /api/images/raw/slow.img HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${1024 * 1024}\r\n\r\n`,
    );
    socket.write(randomBytes(100));
    assert.ok(await closedWithin(socket, 15_000), 'the server closed the connection');
    await new Promise((resolve) => setTimeout(resolve, 200));
    const after = (await bob.get('/api/images/slow.img')).json;
    assert.equal(after.version, before.version);
    assert.deepEqual(await readdir(join(server.dir, 'data', 'blobs', 'uploads')), []);
  });

  it('lets go of a client that stops reading a download', async () => {
    const socket = await connect();
    socket.write('GET /api/images/raw/bob/slow.img HTTP/1.1\r\nHost: localhost\r\n\r\n');
    let received = (await new Promise<Buffer>((resolve) => socket.once('data', resolve))).length;
    socket.pause(); // reads nothing more: the server's writes back up, then nothing moves
    // Five times the idle timeout: on a busy machine the server may take a while to fill the buffers first.
    await new Promise((resolve) => setTimeout(resolve, 10_000));
    // Reading again, the client finds the connection ended by the server, far short of the image.
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
    });
    socket.resume();
    assert.ok(await closedWithin(socket, 15_000), 'the server closed the connection');
    assert.ok(received < 48 * 1024 * 1024, `${received} bytes arrived: the server gave up on the reader`);
  });

  it('answers a refused request to a client that goes on sending, and closes only after lingering', async () => {
    const body = JSON.stringify({ name: 'big.img', description: 'x'.repeat(2 * 1024 * 1024) });
    const refusals: [string, string, RegExp][] = [
      [
        'oversized headers',
        `GET /api/whoami HTTP/1.1\r\nHost: localhost\r\nX-Pad: ${'x'.repeat(64 * 1024)}\r\n`,
        /^HTTP\/1\.1 431 [\s\S]*"code":"headers_too_large"/,
      ],
      [
        'a JSON body too large',
        `POST /api/images HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
        /^HTTP\/1\.1 413 [\s\S]*"code":"payload_too_large"/,
      ],
      [
        'an upload refused from its headers',
        `PUT /api/images/raw/nobody/none.img HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${1 << 30}\r\n\r\n`,
        /^HTTP\/1\.1 404 [\s\S]*"code":"image_not_found"/,
      ],
    ];
    for (const [what, head, expected] of refusals) {
      // A client that does not close its side when the server does, and sends on regardless.
      // (tls.connect takes allowHalfOpen, as net.connect does; its type does not say so.)
      const socket = tls.connect({
        port: server.httpsPort,
        host: '127.0.0.1',
        ca: pki.ca.certPem,
        ...pki.credential('bob'),
        servername: 'localhost',
        allowHalfOpen: true,
      } as tls.ConnectionOptions);
      await new Promise((resolve) => socket.once('secureConnect', resolve));
      const started = Date.now();
      let answer = '';
      let ended = -1;
      let failed = -1;
      socket.on('data', (chunk: Buffer) => {
        answer += chunk.toString('latin1');
      });
      socket.on('end', () => {
        ended = Date.now() - started;
      });
      socket.on('error', () => {
        failed = Date.now() - started;
      });
      socket.write(head);
      const junk = Buffer.alloc(64 * 1024, 'y');
      const sending = setInterval(() => socket.writable && socket.write(junk), 20);
      try {
        assert.ok(await closedWithin(socket, 10_000), `${what}: the server closed the connection`);
      } finally {
        clearInterval(sending);
      }
      assert.match(answer, expected, `${what}: the client read the whole answer`);
      assert.ok(ended >= 0, `${what}: the server ended its side cleanly (FIN) after the answer`);
      // Closing at once would reset the connection under a client still sending, losing the answer at times.
      assert.ok(failed < 0 || failed >= LINGER_MS / 2, `${what}: no reset before lingering (${failed} ms)`);
    }
  });

  it('serves others while hundreds of connections sit idle', async () => {
    // From four addresses, 50 each: within the default connections.max_per_address (256).
    const idle = await Promise.all(
      Array.from({ length: 200 }, (_, i) => connectFrom(`127.0.0.${2 + (i % 4)}`)),
    );
    try {
      const whoami = await bob.get('/api/whoami');
      assert.equal(whoami.status, 200);
      assert.equal(whoami.json.user_name, 'bob');
    } finally {
      for (const socket of idle) socket.destroy();
    }
  });
});

describe('a connection that never says hello', () => {
  it('is closed once the TLS handshake timeout has passed, long before the idle timeout', async () => {
    const pki = await makeTestPki();
    const server = await startServerFor(pki, 'sqlite', {
      REPOMAN_TIMEOUTS_HANDSHAKE_SECONDS: '1',
      REPOMAN_TIMEOUTS_IDLE_SECONDS: '600',
    });
    try {
      const socket = net.connect(server.httpsPort, '127.0.0.1');
      socket.on('error', () => {});
      await new Promise((resolve) => socket.once('connect', resolve));
      // Bounded only so that a failure ends: the idle timeout alone would take ten minutes.
      const closed = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), 30_000);
        socket.once('close', () => {
          clearTimeout(timer);
          resolve(true);
        });
      });
      assert.ok(closed, 'the server closed the silent connection');
    } finally {
      await server.stop();
    }
  });
});

describe('connections per address', () => {
  const MAX = 3;
  const REFUSED = 2;
  const BALANCER = '127.0.0.3';
  let pki: TestPki;
  let server: TestServer;

  before(async () => {
    pki = await makeTestPki();
    server = await startServerFor(pki, 'sqlite', {
      REPOMAN_CONNECTIONS_MAX_PER_ADDRESS: String(MAX),
      REPOMAN_CONNECTIONS_MAX_REFUSED_CERTIFICATES_PER_MINUTE: String(REFUSED),
      REPOMAN_BALANCER_ADDRESSES: BALANCER,
      REPOMAN_METRICS_ALLOW: '127.0.0.2',
      // Nothing but the cap closes an idle connection while the test runs.
      REPOMAN_TIMEOUTS_HANDSHAKE_SECONDS: '600',
      REPOMAN_TIMEOUTS_HEADERS_SECONDS: '600',
      REPOMAN_TIMEOUTS_IDLE_SECONDS: '600',
    });
    const admin = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('admin'));
    await admin.post('/api/users', { user_name: 'bob', client_dn: pki.dn('bob') });
  });
  after(async () => server?.stop());
  const sockets: net.Socket[] = [];
  afterEach(() => {
    for (const socket of sockets.splice(0)) socket.destroy();
  });

  /** A TCP connection from `from`, connected (the server may yet close it) and saying nothing. */
  const open = async (port: number, from: string) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress: from });
    sockets.push(socket);
    socket.on('error', () => {});
    await new Promise((resolve) => socket.once('connect', resolve));
    return socket;
  };

  /** Bob's TLS handshake over `raw`, and `GET /api/whoami` after it: the user name, or null if it was closed. */
  const whoamiOver = (raw: net.Socket) =>
    new Promise<string | null>((resolve) => {
      const socket = tls.connect({
        socket: raw,
        ca: pki.ca.certPem,
        ...pki.credential('bob'),
        servername: 'localhost',
      });
      socket.on('error', () => resolve(null));
      socket.on('close', () => resolve(null));
      const request = https.request(
        { path: '/api/whoami', host: 'localhost', createConnection: () => socket },
        (response) => {
          let body = '';
          response.on('data', (chunk) => (body += chunk));
          response.on('end', () => resolve(JSON.parse(body).user_name));
        },
      );
      request.on('error', () => resolve(null));
      request.end();
    });

  /** Writes `text` (a PROXY header and a request) and reads one answer: '' if the server closed instead. */
  const exchange = (socket: net.Socket, text: string) =>
    new Promise<string>((resolve) => {
      let answer = '';
      const onData = (chunk: Buffer) => {
        answer += chunk.toString('latin1');
        const end = answer.indexOf('\r\n\r\n');
        const length = Number(/^content-length: *(\d+)/im.exec(answer)?.[1] ?? Number.NaN);
        if (end >= 0 && answer.length >= end + 4 + length) {
          socket.off('data', onData);
          resolve(answer);
        }
      };
      socket.on('data', onData);
      socket.once('close', () => resolve(answer));
      socket.write(text);
    });

  it('closes a connection past the cap at once, before TLS, and lets other addresses in', async () => {
    const held = await Promise.all(Array.from({ length: MAX }, () => open(server.httpsPort, '127.0.0.1')));
    const over = await open(server.httpsPort, '127.0.0.1');
    assert.equal(await whoamiOver(over), null, 'one connection more from 127.0.0.1 was closed before TLS');
    assert.equal(await whoamiOver(await open(server.httpsPort, '127.0.0.2')), 'bob', '127.0.0.2 got in');
    // The plain-HTTP port counts with the HTTPS port: 127.0.0.1 holds all it may already.
    const plain = await open(server.httpPort as number, '127.0.0.1');
    assert.equal(await exchange(plain, 'GET /api/health HTTP/1.1\r\nHost: localhost\r\n\r\n'), '');
    const metrics = await exchange(
      await open(server.httpPort as number, '127.0.0.2'),
      'GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n',
    );
    assert.match(
      metrics,
      /^repoman_connections_refused_total\{port="https",reason="connections"\} 1$/m,
      'closed before TLS',
    );
    assert.match(metrics, /^repoman_connections_refused_total\{port="http",reason="connections"\} 1$/m);
    // The connections held are served, and each that closes lets a new one in.
    assert.equal(await whoamiOver(held[0] as net.Socket), 'bob', 'a connection held is served');
    (held[1] as net.Socket).destroy();
    let freed: string | null = null;
    // The server learns of the closes a moment after they happen: a refused attempt changes nothing.
    for (let attempt = 0; attempt < 100 && freed === null; attempt++) {
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 20));
      freed = await whoamiOver(await open(server.httpsPort, '127.0.0.1'));
    }
    assert.equal(freed, 'bob', 'a closed connection freed its slot');
  });

  it('holds back an address whose certificates were refused too often this minute, and no other', async () => {
    // connections.max_refused_certificates_per_minute is REFUSED here: the next refusal holds 127.0.0.4 back
    const untrusted = pki.bad('untrusted');
    const attempt = (from: string, credential: ClientCredential) =>
      new Promise<number | null>((resolve) => {
        const raw = net.connect({ host: '127.0.0.1', port: server.httpsPort, localAddress: from });
        raw.on('error', () => resolve(null));
        const socket = tls.connect({
          socket: raw,
          ca: pki.ca.certPem,
          ...credential,
          servername: 'localhost',
        });
        socket.on('error', () => resolve(null));
        const request = https.request(
          { path: '/api/whoami', host: 'localhost', createConnection: () => socket },
          (response) => {
            response.resume();
            response.on('end', () => resolve(response.statusCode ?? null));
          },
        );
        request.on('error', () => resolve(null));
        request.end();
      });
    for (let i = 0; i < REFUSED + 1; i++) assert.equal(await attempt('127.0.0.4', untrusted), 401);
    // held back: closed as it arrives, before TLS, even with a good certificate
    assert.equal(await attempt('127.0.0.4', pki.credential('bob')), null);
    assert.equal(await attempt('127.0.0.5', pki.credential('bob')), 200, 'another address is served');
    const metrics = await exchange(
      await open(server.httpPort as number, '127.0.0.2'),
      'GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n',
    );
    assert.match(
      metrics,
      /^repoman_connections_refused_total\{port="https",reason="refused_certificates"\} 1$/m,
    );
  });

  it("counts a balancer's connections for the clients their PROXY headers name, never for the balancer", async () => {
    const port = server.httpPort as number;
    const proxied = (client: string) => `PROXY TCP4 ${client} 127.0.0.1 40000 ${port}\r\n`;
    const health = 'GET /api/health HTTP/1.1\r\nHost: localhost\r\n\r\n';
    // Kept open after their answer (keep-alive): counted for 203.0.113.9, through the balancer's address.
    const held = await Promise.all(Array.from({ length: MAX }, () => open(port, BALANCER)));
    for (const socket of held)
      assert.match(await exchange(socket, proxied('203.0.113.9') + health), /^HTTP\/1\.1 200 /);
    const over = await open(port, BALANCER);
    assert.equal(
      await exchange(over, proxied('203.0.113.9') + health),
      '',
      'one more for 203.0.113.9 is closed',
    );
    const other = await open(port, BALANCER);
    assert.match(
      await exchange(other, proxied('203.0.113.10') + health),
      /^HTTP\/1\.1 200 /,
      'another client gets in',
    );
    // The balancer's own connections (health checks: no client named) count for nobody.
    const checks = await Promise.all(Array.from({ length: MAX + 1 }, () => open(port, BALANCER)));
    for (const socket of checks)
      assert.match(await exchange(socket, `PROXY UNKNOWN\r\n${health}`), /^HTTP\/1\.1 200 /);
  });
});
