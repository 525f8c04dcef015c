/**
 * Several servers, one repository: two Repoman servers (real child processes) on one PostgreSQL schema and one
 * object store (OpenStack Swift's S3 API), behind a real HAProxy in TCP mode that passes TLS through and says
 * who the client is with the PROXY protocol. Clients log in with a grid proxy certificate through the balancer.
 * One server is killed in the middle of a resumable upload, which the other finishes.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { type ClientCredential, clientFor, freePort } from './helpers/http.ts';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import { dropSchema, PG_URL, requirePostgres } from './helpers/postgres.ts';
import { PERMIT_ALL } from './helpers/server.ts';
import { newBucket, type Swift, startSwift } from './helpers/swift.ts';

const run = promisify(execFile);
const MAIN = resolve(import.meta.dirname, '../src/main.ts');
const TUS = { 'tus-resumable': '1.0.0' };
const CLIENT = '127.0.0.2'; // where clients connect from, to tell their address from the balancer's
const BALANCER = '127.0.0.3'; // where HAProxy connects to the servers from
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

interface Child {
  name: string;
  port: number;
  process: ChildProcess | null;
  url: string;
  output: string;
}

describe('two servers behind HAProxy on one PostgreSQL and one object store', () => {
  let dir: string;
  let pki: TestPki;
  let swift: Swift;
  let haproxy: ChildProcess | null = null;
  let balancerUrl: string;
  const schema = `repoman_multi_${process.pid}`;
  const servers: Child[] = [];
  let env: Record<string, string>;
  let files: string;

  async function startRepoman(child: Child) {
    const proc = spawn(process.execPath, [MAIN, 'serve'], {
      env: {
        ...process.env,
        ...env,
        REPOMAN_DATA_DIR: join(dir, child.name),
        REPOMAN_HTTPS_PORT: String(child.port),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.process = proc;
    child.output = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${child.name} did not start:\n${child.output}`)),
        60_000,
      );
      const onData = (chunk: Buffer) => {
        child.output += chunk.toString();
        if (/serving HTTPS at/.test(child.output)) {
          clearTimeout(timer);
          resolve();
        }
      };
      proc.stdout?.on('data', onData);
      proc.stderr?.on('data', onData);
      proc.once('exit', (code) => reject(new Error(`${child.name} exited ${code}:\n${child.output}`)));
    });
  }

  async function kill(child: Child) {
    if (!child.process || child.process.exitCode !== null || child.process.signalCode !== null) {
      child.process = null;
      return;
    }
    const exited = new Promise((done) => child.process?.once('exit', done));
    child.process?.kill('SIGKILL');
    await exited;
    child.process = null;
  }

  /** curl from the client address, with Bob's grid proxy: status, body. */
  async function curl(args: string[]) {
    const { stdout } = await run(
      'curl',
      [
        '-sS',
        '--interface',
        CLIENT,
        '--cacert',
        join(files, 'ca.pem'),
        '--cert',
        join(files, 'proxy.pem'),
        '-w',
        '\n%{http_code}',
        ...args,
      ],
      { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 },
    );
    const cut = stdout.lastIndexOf('\n');
    return { status: Number(stdout.subarray(cut + 1).toString()), body: stdout.subarray(0, cut) };
  }

  const as = (child: Child, credential: ClientCredential) => clientFor(child.url, pki.ca.certPem, credential);

  before(async () => {
    await requirePostgres();
    dir = await mkdtemp(join(tmpdir(), 'repoman-multi-'));
    files = join(dir, 'client');
    pki = await makeTestPki();
    swift = await startSwift();
    await run('mkdir', ['-p', join(dir, 'certificates'), files]);
    await writeFile(join(dir, 'certificates', 'ca.pem'), pki.ca.certPem);
    await writeFile(join(dir, 'certificates', 'ca.namespaces'), PERMIT_ALL);
    await writeFile(join(dir, 'hostcert.pem'), pki.host.certPem);
    await writeFile(join(dir, 'hostkey.pem'), pki.host.keyPem, { mode: 0o600 });
    await writeFile(join(files, 'ca.pem'), pki.ca.certPem);
    const proxy = pki.proxy('bob', 'rfc');
    await writeFile(join(files, 'proxy.pem'), `${proxy.cert}${proxy.key}`, { mode: 0o600 });
    env = {
      REPOMAN_HTTPS_LISTEN: '127.0.0.1',
      REPOMAN_HTTP_ENABLED: 'false',
      REPOMAN_WORKERS: '1', // each server is one process: killing it kills the server
      REPOMAN_HTTPS_CERT: join(dir, 'hostcert.pem'),
      REPOMAN_HTTPS_KEY: join(dir, 'hostkey.pem'),
      REPOMAN_TRUST_CA_DIR: join(dir, 'certificates'),
      REPOMAN_ADMINS: `admin=${pki.dn('admin')}`,
      REPOMAN_DATABASE_URL: PG_URL,
      REPOMAN_DATABASE_SCHEMA: schema,
      REPOMAN_BALANCER_ADDRESSES: BALANCER,
      REPOMAN_UPLOADS_LEASE_SECONDS: '10',
      REPOMAN_CONVERSIONS_ENABLED: 'false',
      ...swift.serverEnv(newBucket()),
    };
    for (const name of ['a', 'b']) {
      const port = await freePort();
      servers.push({ name, port, process: null, url: `https://localhost:${port}`, output: '' });
    }
    // Both at once, on a fresh schema: their migrations must not trip over each other.
    await Promise.all(servers.map((child) => startRepoman(child)));

    const front = await freePort();
    balancerUrl = `https://localhost:${front}`;
    const config = [
      'global',
      '  maxconn 512',
      'defaults',
      '  mode tcp',
      '  timeout connect 5s',
      '  timeout client 120s',
      '  timeout server 120s',
      'frontend repoman',
      `  bind 127.0.0.1:${front}`,
      '  default_backend servers',
      'backend servers',
      '  balance roundrobin',
      '  option httpchk',
      '  http-check send meth GET uri /api/health ver HTTP/1.1 hdr host localhost',
      '  http-check expect status 200',
      ...servers.map(
        (child) =>
          `  server ${child.name} 127.0.0.1:${child.port} send-proxy-v2 source ${BALANCER} check check-ssl verify none check-send-proxy inter 300 fall 2 rise 1`,
      ),
      '',
    ].join('\n');
    await writeFile(join(dir, 'haproxy.cfg'), config);
    // Debian's haproxy is in /usr/sbin, which not every PATH has.
    const binary = existsSync('/usr/sbin/haproxy') ? '/usr/sbin/haproxy' : 'haproxy';
    haproxy = spawn(binary, ['-f', join(dir, 'haproxy.cfg'), '-db'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let haproxyOutput = '';
    haproxy.stdout?.on('data', (chunk) => (haproxyOutput += chunk));
    haproxy.stderr?.on('data', (chunk) => (haproxyOutput += chunk));
    for (let i = 0; ; i++) {
      const up = await curl([`${balancerUrl}/api/health`]).catch(() => null);
      if (up?.status === 200) break;
      if (i > 100) throw new Error(`HAProxy did not come up:\n${haproxyOutput}`);
      await sleep(100);
    }
    const admin = as(servers[0] as Child, pki.credential('admin'));
    assert.equal(
      (await admin.post('/api/users', { user_name: 'bob', client_dn: pki.dn('bob') })).status,
      201,
    );
  });

  after(async () => {
    haproxy?.kill();
    for (const child of servers) if (child.process) await kill(child);
    await swift?.stop();
    await dropSchema(schema).catch(() => {});
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('logs a grid proxy in through the balancer on both servers, and records the client’s own address', async () => {
    for (let i = 0; i < 4; i++) {
      const who = await curl([`${balancerUrl}/api/whoami`]);
      assert.equal(who.status, 200, who.body.toString());
      assert.equal(JSON.parse(who.body.toString()).user_name, 'bob');
    }
    const created = await curl(['-d', 'name=via.img', `${balancerUrl}/api/images`]);
    assert.equal(created.status, 201, created.body.toString());
    const admin = as(servers[1] as Child, pki.credential('admin'));
    const [entry] = (await admin.get('/api/audit?action=image.create&target=bob/via.img')).json.items;
    assert.equal(entry.address, CLIENT, 'the PROXY header’s address, not the balancer’s');
    assert.equal(entry.dn, pki.dn('bob'), 'the proxy resolved to its owner');
    // The servers take the PROXY protocol from the balancer only: a client cannot claim an address.
    const forged = tls.connect({
      host: '127.0.0.1',
      port: (servers[0] as Child).port,
      servername: 'localhost',
    });
    forged.on('error', () => {});
    forged.write('PROXY TCP4 198.51.100.1 127.0.0.1 1 2\r\n');
    await new Promise((done) => forged.once('close', done));
  });

  it('serves an upload through one server at once through the other', async () => {
    const image = randomBytes(7 * 1024 * 1024 + 5);
    const [a, b] = servers as [Child, Child];
    await writeFile(join(files, 'one.img'), image);
    assert.equal((await as(a, pki.credential('bob')).post('/api/images', { name: 'one.img' })).status, 201);
    const put = await curl(['-T', join(files, 'one.img'), `${a.url}/api/images/raw/one.img`]);
    assert.equal(put.status, 201, put.body.toString());
    const got = await curl([`${b.url}/api/images/raw/bob/one.img`]);
    assert.equal(got.status, 200);
    assert.equal(sha256(got.body), sha256(image));
    const viaBalancer = await curl([`${balancerUrl}/api/images/raw/bob/one.img`]);
    assert.equal(sha256(viaBalancer.body), sha256(image));
  });

  it('gives concurrent uploads and edits through both servers one whole winner and gapless versions', async () => {
    const [a, b] = servers as [Child, Child];
    const bob = (child: Child) => as(child, pki.credential('bob'));
    await bob(a).post('/api/images', { name: 'race.img' });
    const bodies = Array.from({ length: 6 }, (_, i) => Buffer.alloc(1024 * 1024 + i, i + 1));
    const results = await Promise.all(
      bodies.map((body, i) => bob(i % 2 === 0 ? a : b).put('/api/images/raw/race.img', body)),
    );
    for (const res of results) assert.ok(res.status === 200 || res.status === 201, res.text);
    // The version each upload became, as the audit log recorded it.
    const admin = as(a, pki.credential('admin'));
    const uploads = (await admin.get('/api/audit?action=image.upload&target=bob/race.img')).json.items;
    const versions = uploads
      .map((e: { detail: { version: number } }) => e.detail.version)
      .sort((x: number, y: number) => x - y);
    assert.deepEqual(versions, [1, 2, 3, 4, 5, 6], 'every upload a version of its own, no gaps');
    const served = await bob(b).get('/api/images/raw/race.img');
    assert.ok(
      bodies.some((body) => sha256(body) === sha256(served.body)),
      'one of them, whole',
    );
    // Two servers renaming one image at once: one wins, the other is told.
    const renames = await Promise.all([
      bob(a).patch('/api/images/race.img', { name: 'race-a.img' }),
      bob(b).patch('/api/images/race.img', { name: 'race-b.img' }),
    ]);
    assert.deepEqual(renames.map((res) => res.status).sort(), [200, 404]);
    // The same for groups and users, renamed by an admin through each server at once.
    const adminOn = (child: Child) => as(child, pki.credential('admin'));
    await adminOn(a).post('/api/groups', { name: 'crew' });
    await adminOn(a).post('/api/users', { user_name: 'carl', client_dn: pki.dn('carl') });
    for (const [path, field, names] of [
      ['/api/groups/crew', 'name', ['crew-a', 'crew-b']],
      ['/api/users/carl', 'user_name', ['carl-a', 'carl-b']],
    ] as const) {
      const both = await Promise.all([
        adminOn(a).patch(path, { [field]: names[0] }),
        adminOn(b).patch(path, { [field]: names[1] }),
      ]);
      assert.deepEqual(
        both.map((res) => res.status).sort(),
        [200, 404],
        `${path}: ${both.map((r) => r.text)}`,
      );
    }
  });

  it('finishes on one server a resumable upload started on the other after that one is killed', async () => {
    const [a, b] = servers as [Child, Child];
    const image = randomBytes(12 * 1024 * 1024 + 3);
    await as(a, pki.credential('bob')).post('/api/images', { name: 'resumed.img' });
    const created = await as(a, pki.proxy('bob', 'rfc')).request('POST', '/api/uploads', {
      headers: {
        ...TUS,
        'upload-length': String(image.length),
        'upload-metadata': `image ${Buffer.from('resumed.img').toString('base64')}`,
      },
    });
    assert.equal(created.status, 201, created.text);
    const path = created.headers.location as string;
    // A PATCH to A that sends 8 MiB of its 12 and stalls: A sends a 5 MiB part to the store, then dies.
    const socket = tls.connect({
      host: '127.0.0.1',
      port: a.port,
      servername: 'localhost',
      ca: pki.ca.certPem,
      ...pki.proxy('bob', 'rfc'),
    });
    socket.on('error', () => {});
    await new Promise((done) => socket.once('secureConnect', done));
    socket.write(
      `PATCH ${path} HTTP/1.1\r\nHost: localhost\r\nTus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\nContent-Length: ${image.length}\r\n\r\n`,
    );
    socket.write(image.subarray(0, 8 * 1024 * 1024));
    await sleep(2000);
    await kill(a);
    socket.destroy();

    // B waits out A's lease (10 s here), then says where the upload stands: what reached the store.
    const onB = as(b, pki.proxy('bob', 'rfc'));
    let offset = -1;
    for (let i = 0; i < 60 && offset < 0; i++) {
      const head = await onB.request('HEAD', path, { headers: TUS });
      if (head.status === 200) offset = Number(head.headers['upload-offset']);
      else await sleep(500);
    }
    assert.ok(offset >= 0 && offset <= 8 * 1024 * 1024, `offset ${offset}`);
    const rest = await onB.request('PATCH', path, {
      body: image.subarray(offset),
      headers: { ...TUS, 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream' },
    });
    assert.equal(rest.status, 204, rest.text);
    const got = await curl([`${b.url}/api/images/raw/bob/resumed.img`]);
    assert.equal(sha256(got.body), sha256(image), 'whole, byte for byte');
    // The balancer has noticed A is gone: everything goes to B.
    for (let i = 0; i < 4; i++) assert.equal((await curl([`${balancerUrl}/api/whoami`])).status, 200);
    // A comes back and serves the same repository.
    await startRepoman(a);
    const fromA = await curl([`${a.url}/api/images/raw/bob/resumed.img`]);
    assert.equal(sha256(fromA.body), sha256(image));
  });
});
