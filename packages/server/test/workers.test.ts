/**
 * Every core (src/cluster.ts): a server of two worker processes on one SQLite file, started as `repoman-server
 * serve` in a child process. Both workers serve; a killed worker is replaced; concurrent writes from both never
 * find the database locked; SIGTERM lets an upload in progress finish before the server exits.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import net, { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import tls from 'node:tls';
import { ACTOR_CACHE_MS } from '../src/services/identity.ts';
import { clientFor, expectError, tlsSocket } from './helpers/http.ts';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import { type ClusteredTestServer, startTestServer } from './helpers/server.ts';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** The JSON log lines of the primary and its workers. */
function logLines(server: ClusteredTestServer): Record<string, unknown>[] {
  return server
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

async function until(what: string, check: () => boolean, ms = 30_000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** The process ids that answered requests (pino's `pid` on "request completed"), by count. */
function answeredBy(server: ClusteredTestServer, since = 0): Map<number, number> {
  const counts = new Map<number, number>();
  for (const line of logLines(server).slice(since))
    if (line.msg === 'request completed')
      counts.set(line.pid as number, (counts.get(line.pid as number) ?? 0) + 1);
  return counts;
}

/** answeredBy, once `count` answers have reached the log (each process writes its own lines, in its own time). */
async function allLogged(server: ClusteredTestServer, since: number, count: number) {
  await until(`${count} answers in the log`, () => {
    let logged = 0;
    for (const n of answeredBy(server, since).values()) logged += n;
    return logged >= count;
  });
  return answeredBy(server, since);
}

/**
 * The longest event-loop delay of any worker since the last scrape, in ms (a measure, not a test: the machine
 * may be busy with other things).
 */
async function eventLoopDelay(server: ClusteredTestServer): Promise<number> {
  const text = await (await fetch(`${server.httpUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('repoman_nodejs_eventloop_lag_max_seconds '));
  return Math.round(Number(line?.split(' ')[1]) * 1000);
}

/** The workers the primary started, by slot, from its log. */
/** The workers serving now: those that started, less those that stopped, plus their replacements. */
function workerPids(server: ClusteredTestServer): number[] {
  const workers = new Set<number>();
  for (const line of logLines(server)) {
    if (line.msg === 'every worker serves') for (const pid of line.workers as number[]) workers.add(pid);
    if (line.msg === 'a worker stopped; starting another in its place') workers.delete(line.worker as number);
    if (line.msg === 'a new worker serves in place of the old') workers.add(line.worker as number);
  }
  return [...workers];
}

/** A server of two workers on SQLite, with its admin and bob. */
async function twoWorkers() {
  const pki = await makeTestPki();
  const server = (await startTestServer({
    engine: 'sqlite',
    caPems: [pki.ca.certPem],
    hostCertPem: pki.host.certPem,
    hostKeyPem: pki.host.keyPem,
    admins: [{ name: 'admin', dn: pki.dn('admin') }],
    workers: 2,
  })) as ClusteredTestServer;
  const admin = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('admin'));
  const bob = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('bob'));
  assert.equal((await admin.post('/api/users', { user_name: 'bob', client_dn: pki.dn('bob') })).status, 201);
  return { pki, server, admin, bob };
}

describe('a server of two worker processes on one SQLite file', () => {
  let pki: TestPki;
  let server: ClusteredTestServer;
  let admin: ReturnType<typeof clientFor>;
  let bob: ReturnType<typeof clientFor>;

  before(async () => {
    ({ pki, server, admin, bob } = await twoWorkers());
  });
  after(async () => server?.stop());

  it('has both workers answer, each on its own connections', async () => {
    const pids = workerPids(server);
    assert.equal(pids.length, 2);
    assert.notEqual(pids[0], pids[1]);
    const since = logLines(server).length;
    // Every request is a new connection (the test client keeps none alive): the kernel spreads them.
    const answers = await Promise.all(Array.from({ length: 24 }, () => bob.get('/api/whoami')));
    assert.deepEqual([...new Set(answers.map((r) => r.status))], [200]);
    const counts = await allLogged(server, since, 24);
    assert.deepEqual(
      [...counts.keys()].sort(),
      [...pids].sort(),
      `answered by ${JSON.stringify([...counts])}`,
    );
    // The plain-HTTP port is shared too.
    const plain = await Promise.all(
      Array.from({ length: 12 }, () => fetch(`${server.httpUrl}/api/health`).then((r) => r.status)),
    );
    assert.deepEqual([...new Set(plain)], [200]);
  });

  it('answers /metrics for the whole server, whichever worker is asked', async () => {
    const whoamis = async () => {
      const text = await (await fetch(`${server.httpUrl}/metrics`)).text();
      const line = text
        .split('\n')
        .find((l) => l.startsWith('repoman_http_requests_total{') && l.includes('route="/api/whoami"'));
      return Number(line?.split(' ').pop() ?? 0);
    };
    const before = await whoamis();
    const since = logLines(server).length;
    const answers = await Promise.all(Array.from({ length: 20 }, () => bob.get('/api/whoami')));
    assert.deepEqual([...new Set(answers.map((r) => r.status))], [200]);
    assert.equal((await allLogged(server, since, 20)).size, 2, 'both workers answered some');
    // Each scrape lands on either worker, and every one counts all twenty.
    for (let i = 0; i < 6; i++) assert.equal(await whoamis(), before + 20);
    const text = await (await fetch(`${server.httpUrl}/metrics`)).text();
    assert.match(text, /^# TYPE repoman_http_request_duration_seconds histogram$/m);
    assert.match(text, /^repoman_process_resident_memory_bytes \d+/m);
  });

  it('never answers 5xx to concurrent writes from both workers (no "database is locked")', async (t) => {
    await eventLoopDelay(server); // from now on
    const names = Array.from({ length: 30 }, (_, i) => `storm-${i}.img`);
    const created = await Promise.all(names.map((name) => bob.post('/api/images', { name })));
    assert.deepEqual([...new Set(created.map((r) => r.status))], [201]);
    const mixed = await Promise.all(
      names.flatMap((name, i) => [
        bob.patch(`/api/images/${name}`, { description: `storm ${i}` }),
        bob.request('PUT', `/api/images/raw/${name}`, { body: randomBytes(4096) }),
        bob.post(`/api/images/${name}/share/user/admin`),
        admin.get('/api/images'),
      ]),
    );
    const statuses = mixed.map((r) => r.status);
    assert.ok(
      statuses.every((status) => status < 500),
      `5xx among ${JSON.stringify(mixed.filter((r) => r.status >= 500).map((r) => r.text))}`,
    );
    const deleted = await Promise.all(names.map((name) => bob.delete(`/api/images/${name}`)));
    assert.deepEqual([...new Set(deleted.map((r) => r.status))], [204]);
    assert.doesNotMatch(server.output(), /database is locked|database_unavailable/);
    t.diagnostic(
      `the longest event-loop delay of either worker meanwhile: ${await eventLoopDelay(server)} ms`,
    );
  });

  it('never answers 5xx to concurrent account changes from both workers', async () => {
    // Each of these reads, then writes, in one transaction: on SQLite they must take the write lock first.
    const names = Array.from({ length: 16 }, (_, i) => `user${i}`);
    const created = await Promise.all(
      names.map((name) => admin.post('/api/users', { user_name: name, client_dn: pki.dn(name) })),
    );
    assert.deepEqual([...new Set(created.map((r) => r.status))], [201]);
    assert.equal((await admin.post('/api/groups', { name: 'crew' })).status, 201);
    const mixed = await Promise.all(
      names.flatMap((name, i) => [
        admin.post(`/api/groups/crew/users/${name}`),
        admin.post(`/api/groups/admins/users/${name}`),
        admin.patch(`/api/users/${name}`, { suspended: i % 2 === 0, full_name: `User ${i}` }),
        admin.delete(`/api/groups/admins/users/${name}`),
        admin.get(`/api/groups/crew`),
      ]),
    );
    assert.ok(
      mixed.every((r) => r.status < 500),
      `5xx among ${JSON.stringify(mixed.filter((r) => r.status >= 500).map((r) => r.text))}`,
    );
    const deleted = await Promise.all(names.map((name) => admin.delete(`/api/users/${name}`)));
    assert.deepEqual([...new Set(deleted.map((r) => r.status))], [204]);
    assert.doesNotMatch(server.output(), /database is locked|database_unavailable/);
  });

  it('applies an account change to the very next request, whichever worker answers it', async () => {
    assert.equal(
      (await admin.post('/api/users', { user_name: 'cal', client_dn: pki.dn('cal') })).status,
      201,
    );
    const cal = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('cal'));
    // Only a round within the cache's lifetime shows anything: a slower one is tried again.
    for (let round = 1; ; round++) {
      const began = Date.now();
      let since = logLines(server).length;
      // Both workers look Cal up, and remember him.
      const before = await Promise.all(Array.from({ length: 12 }, () => cal.get('/api/whoami')));
      assert.deepEqual([...new Set(before.map((r) => r.status))], [200]);
      const remembering = [...(await allLogged(server, since, 12)).keys()];
      assert.equal((await admin.patch('/api/users/cal', { suspended: true })).status, 200);
      since = logLines(server).length;
      const afterwards = await Promise.all(Array.from({ length: 12 }, () => cal.get('/api/whoami')));
      const answering = [...(await allLogged(server, since, 12)).keys()];
      const inTime = Date.now() - began < ACTOR_CACHE_MS;
      if (!inTime || remembering.length < 2 || answering.length < 2) {
        assert.ok(round < 5, 'five rounds in a row were too slow, or answered by one worker, to tell');
        assert.equal((await admin.patch('/api/users/cal', { suspended: false })).status, 200);
        continue;
      }
      for (const answer of afterwards) expectError(answer, 403, 'user_suspended');
      break;
    }
  });

  it('replaces a worker that dies, in its slot, and goes on serving meanwhile', async () => {
    const [first, second] = workerPids(server) as [number, number];
    process.kill(second, 'SIGKILL');
    // Once it is gone (connections that were waiting in its queue went with it), the other answers meanwhile.
    await until('the primary to see it', () =>
      logLines(server).some((l) => l.msg === 'a worker stopped; starting another in its place'),
    );
    assert.equal((await bob.get('/api/whoami')).status, 200);
    await until('the replacement', () =>
      logLines(server).some((l) => l.msg === 'a new worker serves in place of the old'),
    );
    const replaced = logLines(server).find(
      (l) => l.msg === 'a worker stopped; starting another in its place',
    );
    assert.equal(replaced?.worker, second);
    assert.equal(replaced?.signal, 'SIGKILL');
    const replacement = logLines(server).find((l) => l.msg === 'a new worker serves in place of the old')
      ?.worker as number;
    assert.ok(replacement !== first && replacement !== second);
    const since = logLines(server).length;
    const answers = await Promise.all(Array.from({ length: 24 }, () => bob.get('/api/whoami')));
    assert.deepEqual([...new Set(answers.map((r) => r.status))], [200]);
    assert.deepEqual([...(await allLogged(server, since, 24)).keys()].sort(), [first, replacement].sort());
  });
});

/** Stopping ends the server: a server of its own, so that the other tests need not run first. */
describe('a server of two worker processes stopping', () => {
  let pki: TestPki;
  let server: ClusteredTestServer;
  let bob: ReturnType<typeof clientFor>;
  before(async () => {
    ({ pki, server, bob } = await twoWorkers());
  });
  after(async () => server?.stop());

  it('on SIGTERM, stops taking connections, lets an upload in progress finish, then exits', async () => {
    assert.equal((await bob.post('/api/images', { name: 'last.img' })).status, 201);
    const body = randomBytes(2 * 1024 * 1024);
    const socket = await tlsSocket(server.httpsPort, pki.ca.certPem, pki.credential('bob'));
    let answer = '';
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString();
    });
    const ended = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.write(
      `PUT /api/images/raw/last.img HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: ${body.length}\r\n\r\n`,
    );
    socket.write(body.subarray(0, body.length / 2));
    await sleep(300);
    const exited = new Promise<number | null>((resolve) =>
      server.primary.once('exit', (code) => resolve(code)),
    );
    server.primary.kill('SIGTERM');
    // Both workers close their listeners: a new connection is refused.
    await until(
      'the listeners to close',
      () => logLines(server).filter((l) => l.msg === 'shutting down').length === 2,
    );
    await sleep(300);
    const refused = await new Promise<boolean>((resolve) => {
      const probe = connect(server.httpsPort, '127.0.0.1');
      probe.once('connect', () => {
        probe.destroy();
        resolve(false);
      });
      probe.once('error', () => resolve(true));
    });
    assert.ok(refused, 'a new connection is refused while the server drains');
    assert.equal(server.primary.exitCode, null, 'the server waits for the upload');
    socket.write(body.subarray(body.length / 2));
    await ended;
    assert.match(answer, /^HTTP\/1\.1 201 /);
    assert.equal(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)).digests?.sha256, sha256(body));
    assert.equal(await exited, 0);
  });
});

describe('the per-address limits of a server of two worker processes', () => {
  const MAX = 4;
  const REFUSED = 2;
  let pki: TestPki;
  let server: ClusteredTestServer;
  const sockets: net.Socket[] = [];

  before(async () => {
    pki = await makeTestPki();
    server = (await startTestServer({
      engine: 'sqlite',
      caPems: [pki.ca.certPem],
      hostCertPem: pki.host.certPem,
      hostKeyPem: pki.host.keyPem,
      admins: [{ name: 'admin', dn: pki.dn('admin') }],
      workers: 2,
      env: {
        REPOMAN_CONNECTIONS_MAX_PER_ADDRESS: String(MAX),
        REPOMAN_CONNECTIONS_MAX_REFUSED_CERTIFICATES_PER_MINUTE: String(REFUSED),
        REPOMAN_METRICS_ALLOW: '127.0.0.2',
        // Nothing but the cap closes an idle connection while the test runs.
        REPOMAN_TIMEOUTS_HANDSHAKE_SECONDS: '600',
      },
    })) as ClusteredTestServer;
    // From an address of its own: until the primary learns that this connection closed, it would count
    // against the cap of 127.0.0.1, which the first test fills.
    const created = await new Promise<number | undefined>((resolve, reject) => {
      const request = https.request(
        {
          host: '127.0.0.1',
          port: server.httpsPort,
          localAddress: '127.0.0.7',
          servername: 'localhost',
          method: 'POST',
          path: '/api/users',
          ca: pki.ca.certPem,
          ...pki.credential('admin'),
          headers: { 'content-type': 'application/json' },
        },
        (response) => {
          response.resume();
          response.on('end', () => resolve(response.statusCode));
        },
      );
      request.on('error', reject);
      request.end(JSON.stringify({ user_name: 'bob', client_dn: pki.dn('bob') }));
    });
    assert.equal(created, 201);
  });
  after(async () => {
    for (const socket of sockets.splice(0)) socket.destroy();
    await server?.stop();
  });

  /** A TCP connection from `from`, connected (the server may yet close it) and saying nothing. */
  const open = async (from: string) => {
    const socket = net.connect({ host: '127.0.0.1', port: server.httpsPort, localAddress: from });
    sockets.push(socket);
    socket.on('error', () => {});
    await new Promise((resolve) => socket.once('connect', resolve));
    return socket;
  };

  /**
   * A connection the server has counted: its TLS handshake is done, and the server reads nothing of a
   * connection before the primary has admitted it.
   */
  const openAdmitted = async (from: string) => {
    const raw = await open(from);
    const credential = pki.credential('bob');
    const socket = tls.connect({ socket: raw, ca: pki.ca.certPem, ...credential, servername: 'localhost' });
    await new Promise((resolve) => socket.once('secureConnect', resolve));
    return socket;
  };

  /** `GET /api/whoami` over `raw` (or a TLS connection) with `credential`: the status, or null if closed. */
  const whoamiOver = (raw: net.Socket, credential = pki.credential('bob')) =>
    new Promise<number | null>((resolve) => {
      const socket =
        raw instanceof tls.TLSSocket
          ? raw
          : tls.connect({ socket: raw, ca: pki.ca.certPem, ...credential, servername: 'localhost' });
      socket.on('error', () => resolve(null));
      socket.on('close', () => resolve(null));
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

  const refusals = async (reason: string) => {
    const text = await new Promise<string>((resolve, reject) => {
      const request = http.get(`${server.httpUrl}/metrics`, { localAddress: '127.0.0.2' }, (response) => {
        let body = '';
        response.on('data', (chunk) => (body += chunk));
        response.on('end', () => resolve(body));
      });
      request.on('error', reject);
    });
    const line = text
      .split('\n')
      .find((l) => l.startsWith(`repoman_connections_refused_total{port="https",reason="${reason}"}`));
    return Number(line?.split(' ').pop() ?? 0);
  };

  it('holds an address to connections.max_per_address on both workers together', async () => {
    const held = await Promise.all(Array.from({ length: MAX }, () => openAdmitted('127.0.0.1')));
    // Each worker alone holds fewer than MAX of them: one that counted its own would let these in.
    for (let i = 0; i < 6; i++) assert.equal(await whoamiOver(await open('127.0.0.1')), null, `attempt ${i}`);
    assert.equal(await whoamiOver(await open('127.0.0.5')), 200, 'another address gets in');
    assert.equal(await refusals('connections'), 6, 'every refusal counted once, whichever worker made it');
    assert.equal(await whoamiOver(held[0] as net.Socket), 200, 'a connection held is served');
    (held[1] as net.Socket).destroy();
    let freed: number | null = null;
    // The primary learns of the close a moment after it happens: a refused attempt changes nothing.
    for (let attempt = 0; attempt < 100 && freed === null; attempt++) {
      if (attempt > 0) await sleep(20);
      freed = await whoamiOver(await open('127.0.0.1'));
    }
    assert.equal(freed, 200, 'a closed connection freed its slot');
    for (const socket of sockets.splice(0)) socket.destroy();
  });

  it('holds back an address whose certificates were refused too often, on every worker', async () => {
    const untrusted = pki.bad('untrusted');
    // Spread over both workers: no one of them saw more than REFUSED of them.
    for (let i = 0; i < REFUSED + 1; i++)
      assert.equal(await whoamiOver(await open('127.0.0.4'), untrusted), 401);
    for (let i = 0; i < 6; i++) assert.equal(await whoamiOver(await open('127.0.0.4')), null, `attempt ${i}`);
    assert.equal(await whoamiOver(await open('127.0.0.6')), 200, 'another address is served');
    assert.equal(await refusals('refused_certificates'), 6);
  });
});
