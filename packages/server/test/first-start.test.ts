/**
 * The README's promise, end to end with real processes: `repoman-server serve` on an empty directory makes
 * its data directory, prints a curl command that works, reuses everything on the next start; a user certified
 * by the development CA logs in with a proxy made by the real grid-proxy-init and manages images with curl.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
const MAIN = resolve(import.meta.dirname, '../src/main.ts');

interface Started {
  child: ChildProcess;
  output: string;
  curlArgs: string[];
  httpsUrl: string;
  httpUrl?: string;
}

function startServer(
  cwd: string,
  command: string[] = [process.execPath, MAIN, 'serve'],
  env: Record<string, string> = {},
): Promise<Started> {
  const child = spawn(command[0] as string, command.slice(1), {
    cwd,
    detached: true, // its own process group: `npm start` runs the server in a child of its own
    env: {
      ...process.env,
      REPOMAN_HTTPS_LISTEN: '127.0.0.1',
      REPOMAN_HTTPS_PORT: '0',
      REPOMAN_HTTP_LISTEN: '127.0.0.1',
      REPOMAN_HTTP_PORT: '0',
      REPOMAN_LOG_LEVEL: 'warn',
      REPOMAN_WORKERS: '1', // one process is enough here; test/workers.test.ts starts several
      ...env, // an empty value unsets a setting
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolvePromise, reject) => {
    let output = '';
    const timer = setTimeout(
      () => reject(new Error(`server did not print a curl command:\n${output}`)),
      60_000,
    );
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const curl = output.match(/^ {2}curl (.+)$/m);
      const url = output.match(/serving HTTPS at (\S+?)(?: and HTTP at (\S+))?$/m);
      if (curl?.[1] && url?.[1]) {
        clearTimeout(timer);
        resolvePromise({
          child,
          output,
          curlArgs: curl[1].split(' '),
          httpsUrl: url[1],
          ...(url[2] ? { httpUrl: url[2] } : {}),
        });
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.on('exit', (code) => reject(new Error(`server exited with ${code}:\n${output}`)));
  });
}

async function stopServer(started: Started) {
  const { child } = started;
  if (child.exitCode !== null || child.signalCode !== null) return; // stopped already
  const exited = new Promise((r) => child.once('exit', r));
  try {
    process.kill(-(child.pid as number), 'SIGTERM'); // the whole group
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error; // gone meanwhile
    return;
  }
  await exited;
}

async function curl(cwd: string, args: string[]) {
  const { stdout } = await run('curl', ['-sS', '--max-time', '20', '-w', '\n%{http_code}', ...args], {
    cwd,
    timeout: 30_000,
  });
  const lines = stdout.trimEnd().split('\n');
  const status = Number(lines.pop());
  const body = lines.join('\n');
  return { status, json: body ? JSON.parse(body) : undefined };
}

describe('npm start on an empty directory', () => {
  let dir: string;
  let first: Started;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'repoman-first-'));
    first = await startServer(dir);
  });
  after(async () => {
    if (first?.child.exitCode === null) await stopServer(first);
    await rm(dir, { recursive: true, force: true });
  });

  it('creates the data directory with database, blobs, CA, host certificate and admin credentials', async () => {
    for (const path of [
      'repoman.db',
      'blobs',
      'ca/ca.pem',
      'ca/ca.key',
      'host/hostcert.pem',
      'host/hostkey.pem',
      'admin/admin.pem',
      'admin/usercert.pem',
      'admin/userkey.pem',
    ]) {
      await stat(join(dir, 'repoman-data', path));
    }
    const mode = async (path: string) => (await stat(join(dir, 'repoman-data', path))).mode & 0o777;
    for (const secret of [
      'admin/admin.pem',
      'admin/userkey.pem',
      'ca/ca.key',
      'host/hostkey.pem',
      'repoman.db',
    ]) {
      assert.equal(await mode(secret), 0o600, secret);
    }
    for (const private_ of ['.', 'admin', 'ca', 'host', 'blobs'])
      assert.equal(await mode(private_), 0o700, private_);
    const combined = await readFile(join(dir, 'repoman-data/admin/admin.pem'), 'utf8');
    assert.match(combined, /BEGIN CERTIFICATE[\s\S]+BEGIN PRIVATE KEY/);
  });

  it('prints a curl command that calls whoami as the admin', async () => {
    assert.deepEqual(first.curlArgs.slice(0, 4), [
      '--cert',
      'repoman-data/admin/admin.pem',
      '--cacert',
      'repoman-data/ca/ca.pem',
    ]);
    const res = await curl(dir, first.curlArgs);
    assert.equal(res.status, 200);
    assert.equal(res.json.user_name, 'admin');
    assert.deepEqual(res.json.groups, ['admins', 'users']);
  });

  it('lets a new user with a grid-proxy-init proxy manage images with curl alone', async () => {
    const admin = first.curlArgs.slice(0, 4);
    const base = first.httpsUrl;
    await run(
      process.execPath,
      [MAIN, 'issue-certificate', '--dn', '/O=Repoman Development/CN=Bob', '--out', 'repoman-data/users/bob'],
      { cwd: dir },
    );
    const created = await curl(dir, [
      ...admin,
      '-d',
      'user_name=bob',
      '-d',
      'client_dn=/O=Repoman Development/CN=Bob',
      `${base}/api/users`,
    ]);
    assert.equal(created.status, 201);

    for (const flavour of ['-rfc', '-old']) {
      const proxy = `repoman-data/users/bob/proxy${flavour}.pem`;
      await run(
        'grid-proxy-init',
        // Globus on OpenSSL 3 cannot -verify its own legacy proxies, so only the RFC one is verified locally.
        [
          flavour,
          '-q',
          '-cert',
          'repoman-data/users/bob/usercert.pem',
          '-key',
          'repoman-data/users/bob/userkey.pem',
          '-out',
          proxy,
          '-certdir',
          'repoman-data/certificates',
          ...(flavour === '-rfc' ? ['-verify'] : []),
        ],
        { cwd: dir },
      );
      const bob = ['--cert', proxy, '--cacert', 'repoman-data/ca/ca.pem'];
      const name = `rhel${flavour}.img`;
      const whoami = await curl(dir, [...bob, `${base}/api/whoami`]);
      assert.equal(whoami.json.user_name, 'bob', JSON.stringify(whoami.json));
      const slot = await curl(dir, [
        ...bob,
        '-d',
        `name=${name}`,
        '-d',
        'os_type=linux',
        `${base}/api/images`,
      ]);
      assert.equal(slot.status, 201, JSON.stringify(slot.json));
      const list = await curl(dir, [...bob, `${base}/api/images`]);
      assert.deepEqual(
        list.json.items.map((i: { name: string }) => i.name),
        [name],
      );
      const modified = await curl(dir, [
        ...bob,
        '-X',
        'PATCH',
        '-H',
        'content-type: application/json',
        '-d',
        '{"description":"Analysis VM"}',
        `${base}/api/images/${name}`,
      ]);
      assert.equal(modified.json.description, 'Analysis VM');
      const shared = await curl(dir, [...bob, '-X', 'POST', `${base}/api/images/${name}/share/user/admin`]);
      assert.deepEqual(shared.json.shared_with.users, ['admin']);
      const seen = await curl(dir, [...admin, `${base}/api/images/bob/${name}`]);
      assert.equal(seen.status, 200);
      const deleted = await curl(dir, [...bob, '-X', 'DELETE', `${base}/api/images/${name}`]);
      assert.equal(deleted.status, 204);
      assert.equal((await curl(dir, [...bob, `${base}/api/images/${name}`])).status, 404);
    }
  });

  it('reuses the CA, certificates and admin on the next start', async () => {
    const caBefore = await readFile(join(dir, 'repoman-data/ca/ca.pem'), 'utf8');
    const adminBefore = await readFile(join(dir, 'repoman-data/admin/admin.pem'), 'utf8');
    const names = async () =>
      (await curl(dir, [...first.curlArgs.slice(0, 4), `${first.httpsUrl}/api/users`])).json.items.map(
        (u: { user_name: string }) => u.user_name,
      );
    const usersBefore = await names();
    assert.ok(usersBefore.includes('admin'));
    await stopServer(first);
    first = await startServer(dir);
    assert.equal(await readFile(join(dir, 'repoman-data/ca/ca.pem'), 'utf8'), caBefore);
    assert.equal(await readFile(join(dir, 'repoman-data/admin/admin.pem'), 'utf8'), adminBefore);
    const res = await curl(dir, first.curlArgs);
    assert.equal(res.json.user_name, 'admin');
    assert.deepEqual(await names(), usersBefore, 'the same users, the admin not made again');
  });

  it('fsck finds missing, truncated, corrupt and orphan blobs, and --repair fixes what it can', async () => {
    const admin = first.curlArgs.slice(0, 4);
    const base = first.httpsUrl;
    await writeFile(join(dir, 'a.img'), Buffer.alloc(4096, 1));
    await writeFile(join(dir, 'b.img'), Buffer.alloc(4096, 3));
    for (const name of ['one.img', 'two.img', 'three.img']) {
      await curl(dir, [...admin, '-d', `name=${name}`, `${base}/api/images`]);
      assert.equal(
        (await curl(dir, [...admin, '-T', 'a.img', `${base}/api/images/raw/${name}`])).status,
        201,
      );
    }
    assert.equal((await curl(dir, [...admin, '-T', 'b.img', `${base}/api/images/raw/one.img`])).status, 200);
    const fsckRun = (...flags: string[]) =>
      run(process.execPath, [MAIN, 'fsck', ...flags], { cwd: dir }).then(
        (r) => ({ code: 0, out: r.stdout }),
        (e: { code: number; stdout: string }) => ({ code: e.code, out: e.stdout }),
      );
    const clean = await fsckRun('--verify');
    assert.equal(clean.code, 0, clean.out);
    assert.match(clean.out, /4 versions, 4 blobs, 0 problems/);

    // Which blob is which version, from the database itself.
    const database = new DatabaseSync(join(dir, 'repoman-data/repoman.db'), { readOnly: true });
    const blobOf = (image: string, version: number) => {
      const row = database
        .prepare(
          'select blob_key from image_versions v join images i on i.id = v.image_id where i.name = ? and v.version = ?',
        )
        .get(image, version) as { blob_key: string };
      return join(dir, 'repoman-data/blobs/blobs', row.blob_key.slice(0, 2), row.blob_key);
    };
    const [oneV2, two, three] = [blobOf('one.img', 2), blobOf('two.img', 1), blobOf('three.img', 1)];
    database.close();
    await writeFile(oneV2, Buffer.alloc(4096, 2)); // corrupt: same size, other bytes
    await writeFile(two, Buffer.alloc(10)); // truncated
    await rm(three); // missing
    const orphan = join(dir, 'repoman-data/blobs/blobs', 'ff', 'ff'.padEnd(32, '0'));
    await mkdir(join(orphan, '..'), { recursive: true });
    await writeFile(orphan, 'an orphan');
    const hourAgo = new Date(Date.now() - 2 * 3600_000);
    await utimes(orphan, hourAgo, hourAgo); // a fresh one could be a running server's upload being recorded

    const quick = await fsckRun();
    assert.equal(quick.code, 1);
    assert.doesNotMatch(quick.out, /^digest /m, 'digests only with --verify');
    const found = await fsckRun('--verify');
    assert.equal(found.code, 1);
    for (const kind of ['missing', 'size', 'digest', 'orphan'])
      assert.match(found.out, new RegExp(`^${kind} `, 'm'));
    const repaired = await fsckRun('--verify', '--repair');
    assert.equal(repaired.code, 0, repaired.out);
    const after = await fsckRun('--verify');
    assert.match(after.out, /1 versions, 1 blobs, 0 problems/);
    const one = await curl(dir, [...admin, `${base}/api/images/one.img`]);
    assert.equal(one.json.version, 1, 'one.img falls back to its intact version');
    assert.equal(one.json.digests.sha256, createHash('sha256').update(Buffer.alloc(4096, 1)).digest('hex'));
    const two_ = await curl(dir, [...admin, `${base}/api/images/two.img`]);
    assert.equal(two_.json.raw_file_uploaded, false, 'an image left with no intact version serves nothing');
  });

  it('makes the admin again from its credential when the database starts empty', async () => {
    await stopServer(first);
    for (const file of ['repoman.db', 'repoman.db-wal', 'repoman.db-shm'])
      await rm(join(dir, 'repoman-data', file), { force: true });
    first = await startServer(dir);
    const res = await curl(dir, first.curlArgs);
    assert.equal(res.json.user_name, 'admin');
    assert.deepEqual(res.json.groups, ['admins', 'users']);
  });
});

/** Whether a TCP connection to host:port is accepted (false when refused). */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolvePromise, reject) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolvePromise(true);
    });
    socket.once('error', (error: NodeJS.ErrnoException) =>
      error.code === 'ECONNREFUSED' ? resolvePromise(false) : reject(error),
    );
  });
}

const portOf = (url: string | undefined) => Number(new URL(url as string).port);

describe('where a first start listens', () => {
  let dir: string;
  const servers: Started[] = [];
  const start = async (env: Record<string, string>) => {
    const started = await startServer(dir, undefined, env);
    servers.push(started);
    return started;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'repoman-listen-'));
  });
  after(async () => {
    for (const started of servers) await stopServer(started);
    await rm(dir, { recursive: true, force: true });
  });

  // Linux answers all of 127.0.0.0/8 on loopback: a server on every address accepts 127.0.0.2, one on
  // 127.0.0.1 alone refuses it.
  it('answers loopback only while the development CA is trusted, and says so', async () => {
    const started = await start({ REPOMAN_HTTPS_LISTEN: '', REPOMAN_HTTP_LISTEN: '' });
    assert.match(
      started.output,
      /on loopback only \(127\.0\.0\.1\): users are checked against the development CA/,
    );
    assert.match(
      started.output,
      /set https\.listen and http\.listen \(REPOMAN_HTTPS_LISTEN, REPOMAN_HTTP_LISTEN\)/,
    );
    assert.match(started.httpsUrl, /^https:\/\/localhost:\d+$/, 'the name of the host certificate');
    for (const url of [started.httpsUrl, started.httpUrl]) {
      assert.equal(await accepts('127.0.0.1', portOf(url)), true, url);
      assert.equal(await accepts('127.0.0.2', portOf(url)), false, url);
    }
    const whoami = await curl(dir, started.curlArgs);
    assert.equal(whoami.json.user_name, 'admin', 'the printed command works');
    await stopServer(started);
  });

  it('listens where the configuration says', async () => {
    const started = await start({ REPOMAN_HTTPS_LISTEN: '0.0.0.0', REPOMAN_HTTP_LISTEN: '' });
    assert.doesNotMatch(started.output, /set https\.listen/);
    assert.match(started.output, /on loopback only .*\n.*set http\.listen \(REPOMAN_HTTP_LISTEN\)/);
    assert.equal(await accepts('127.0.0.2', portOf(started.httpsUrl)), true, 'HTTPS on every address');
    assert.equal(await accepts('127.0.0.2', portOf(started.httpUrl)), false, 'HTTP still on loopback');
    await stopServer(started);
  });
});

describe('npm start as users run it', () => {
  const root = resolve(import.meta.dirname, '../../..');
  let dir: string;
  let started: Started;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'repoman-npm-start-'));
    // The real command: it builds the JavaScript, then runs it with the flags of package.json, as a primary
    // and two workers (the default on a 2-core machine).
    started = await startServer(root, ['npm', 'start', '--silent'], {
      REPOMAN_DATA_DIR: join(dir, 'data'),
      REPOMAN_WORKERS: '2',
    });
  });
  after(async () => {
    if (started?.child.exitCode === null) await stopServer(started);
    await rm(dir, { recursive: true, force: true });
  });

  it('serves uploads hashed by the built hashing worker, and downloads them whole', async () => {
    const image = randomBytes(5 * 1024 * 1024 + 3);
    await writeFile(join(dir, 'image.bin'), image);
    const base = started.httpsUrl;
    assert.equal(
      (await curl(root, [...started.curlArgs.slice(0, 4), '-d', 'name=built.img', `${base}/api/images`]))
        .status,
      201,
    );
    const put = await curl(root, [
      ...started.curlArgs.slice(0, 4),
      '-T',
      join(dir, 'image.bin'),
      `${base}/api/images/raw/built.img`,
    ]);
    assert.equal(put.status, 201);
    assert.equal(put.json.digests.sha256, createHash('sha256').update(image).digest('hex'));
    assert.equal(put.json.digests.md5, createHash('md5').update(image).digest('hex'));
    assert.equal(put.json.digests.sha512, createHash('sha512').update(image).digest('hex'));
    const out = join(dir, 'out.bin');
    await run(
      'curl',
      ['-sS', '--fail', ...started.curlArgs.slice(0, 4), '-o', out, `${base}/api/images/raw/admin/built.img`],
      { cwd: root },
    );
    assert.ok((await readFile(out)).equals(image));
  });
});

describe('a start that fails before the workers start', () => {
  it('stops with the message and exit status of a lone server, and no process left', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'repoman-failed-start-'));
    try {
      const child = spawn(process.execPath, [MAIN, 'serve'], {
        cwd: dir,
        env: {
          ...process.env,
          REPOMAN_HTTPS_PORT: '0',
          REPOMAN_HTTP_PORT: '0',
          REPOMAN_WORKERS: '2',
          REPOMAN_DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none', // nothing listens on port 1
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const code = await new Promise<number | null>((r) => child.once('exit', (status) => r(status)));
      assert.equal(code, 1, stderr);
      assert.match(stderr, /^repoman-server: .*ECONNREFUSED/m, 'the start-up work says why it failed');
      assert.match(stderr, /^repoman-server: the start-up work failed \(exit status 1\)/m);
      assert.doesNotMatch(stderr, /database_unavailable|at .*\.ts:\d+/, 'no stack trace');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
