/**
 * Slow and abusive clients (reliability, part 5), against a server with short timeouts: headers sent slowly
 * (slowloris) and bodies that stall are cut, a client that stops reading a download is let go, and many idle
 * connections do not keep others out.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type tls from 'node:tls';
import { clientFor, tlsSocket } from './helpers/http.ts';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import { startServerFor, type TestServer } from './helpers/server.ts';

describe('slow and abusive clients', () => {
  let pki: TestPki;
  let server: TestServer;
  let bob: ReturnType<typeof clientFor>;

  const connect = () => tlsSocket(server.httpsPort, pki.ca.certPem, pki.credential('bob'));

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

  it('serves others while hundreds of connections sit idle', async () => {
    const idle = await Promise.all(Array.from({ length: 200 }, () => connect()));
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
