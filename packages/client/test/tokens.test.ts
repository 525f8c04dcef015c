/**
 * The client with bearer tokens: found by each rule of WLCG Bearer Token Discovery (and `--token`), preferred
 * over a proxy or not as `[User] prefer` says, reported by `whoami`, and used for transfers, against a real
 * server trusting a real OpenID provider (the server's tests' helpers/oidc.ts).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { clientFor } from '../../server/test/helpers/http.ts';
import { issuerToml, startIssuer, type TestIssuer } from '../../server/test/helpers/oidc.ts';
import { makeTestPki, type TestPki } from '../../server/test/helpers/pki.ts';
import { startServerWithConfig, type TestServer } from '../../server/test/helpers/server.ts';
import { Api } from '../src/api.ts';
import { findToken } from '../src/config.ts';
import { BIN, buildClient } from './build.ts';

describe('bearer token discovery', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'repoman-bt-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));
  const uid = process.getuid?.() ?? '';

  it('takes --token, then BEARER_TOKEN, BEARER_TOKEN_FILE, $XDG_RUNTIME_DIR/bt_u<uid>, /tmp/bt_u<uid>', async () => {
    const runtime = join(dir, 'run');
    const tmp = join(dir, 'tmp');
    await mkdir(runtime);
    await mkdir(tmp);
    await writeFile(join(dir, 'file'), '  from-file\n');
    await writeFile(join(runtime, `bt_u${uid}`), 'from-runtime\n');
    await writeFile(join(tmp, `bt_u${uid}`), 'from-tmp');
    const env = { BEARER_TOKEN: 'from-env', BEARER_TOKEN_FILE: join(dir, 'file'), XDG_RUNTIME_DIR: runtime };
    const found = (e: NodeJS.ProcessEnv, flags = {}) => {
      const t = findToken(flags, e, tmp);
      return t && [t.token, t.source];
    };
    assert.deepEqual(found(env, { token: 'from-flag' }), ['from-flag', '--token']);
    assert.deepEqual(found(env), ['from-env', '$BEARER_TOKEN']);
    assert.deepEqual(found({ ...env, BEARER_TOKEN: '' }), ['from-file', join(dir, 'file')]);
    assert.deepEqual(found({ XDG_RUNTIME_DIR: runtime }), ['from-runtime', join(runtime, `bt_u${uid}`)]);
    assert.deepEqual(found({}), ['from-tmp', join(tmp, `bt_u${uid}`)]);
    assert.equal(findToken({}, {}, join(dir, 'nowhere')), null);
    assert.throws(() => findToken({}, { BEARER_TOKEN_FILE: join(dir, 'missing') }, tmp), /cannot be read/);
    assert.throws(() => findToken({ token: 'two words' }, {}, tmp), /more than one word/);
  });
});

describe('the client with bearer tokens', () => {
  let pki: TestPki;
  let server: TestServer;
  let issuer: TestIssuer;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  const image = randomBytes(300_000);

  const repoman = (args: string[], extra: NodeJS.ProcessEnv = {}) =>
    new Promise<{ status: number; stdout: string; stderr: string }>((done) => {
      execFile(
        process.execPath,
        [BIN, ...args],
        { env: { ...env, ...extra }, timeout: 60_000 },
        (error, stdout, stderr) =>
          done({ status: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
      );
    });

  before(async () => {
    buildClient();
    pki = await makeTestPki();
    issuer = await startIssuer({ clients: ['bob-cli'] });
    server = await startServerWithConfig(pki, 'sqlite', issuerToml(issuer));
    const admin = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('admin'));
    assert.equal(
      (await admin.post('/api/users', { user_name: 'bob', client_dn: pki.dn('bob') })).status,
      201,
    );
    assert.equal(
      (await admin.post('/api/users/bob/identities', { issuer: issuer.url, subject: 'bob-cli' })).status,
      201,
    );
    dir = await mkdtemp(join(tmpdir(), 'repoman-client-tokens-'));
    await mkdir(join(dir, 'certificates'));
    await writeFile(join(dir, 'certificates', 'ca.pem'), pki.ca.certPem);
    await mkdir(join(dir, 'home', '.repoman'), { recursive: true });
    await writeFile(
      join(dir, 'home', '.repoman', 'repoman.conf'),
      `[Repository]\nrepository: localhost\nport: ${server.httpsPort}\n`,
    );
    await writeFile(join(dir, 'image.bin'), image);
    const proxy = pki.proxy('admin', 'rfc');
    await writeFile(join(dir, 'admin-proxy.pem'), `${proxy.cert}\n${proxy.key}`, { mode: 0o600 });
    // No proxy, no user certificate: what a user with only a token has.
    env = {
      PATH: process.env.PATH,
      HOME: join(dir, 'home'),
      X509_CERT_DIR: join(dir, 'certificates'),
      X509_USER_PROXY: '',
    };
  });
  after(async () => {
    await server?.stop();
    await issuer?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('finds the token in BEARER_TOKEN and says in whoami which credential it used', async () => {
    const token = await issuer.token('bob-cli');
    const run = await repoman(['whoami'], { BEARER_TOKEN: token });
    assert.equal(run.status, 0, run.stderr);
    assert.equal(run.stdout.trim(), 'bob');
    assert.match(run.stderr, /a bearer token from \$BEARER_TOKEN \(http:\/\/127\.0\.0\.1:\d+\)/);
    const json = JSON.parse((await repoman(['whoami', '--json'], { BEARER_TOKEN: token })).stdout);
    assert.equal(json.credential.kind, 'token');
    assert.equal(json.credential.source, '$BEARER_TOKEN');
  });

  it('finds it in BEARER_TOKEN_FILE and in $XDG_RUNTIME_DIR/bt_u<uid>, and takes --token', async () => {
    const token = await issuer.token('bob-cli');
    await writeFile(join(dir, 'token'), `${token}\n`, { mode: 0o600 });
    const fromFile = JSON.parse(
      (await repoman(['whoami', '--json'], { BEARER_TOKEN_FILE: join(dir, 'token') })).stdout,
    );
    assert.equal(fromFile.credential.source, join(dir, 'token'));
    const runtime = join(dir, 'runtime');
    await mkdir(runtime, { recursive: true });
    await writeFile(join(runtime, `bt_u${process.getuid?.()}`), token, { mode: 0o600 });
    const fromRuntime = JSON.parse(
      (await repoman(['whoami', '--json'], { XDG_RUNTIME_DIR: runtime })).stdout,
    );
    assert.equal(fromRuntime.user_name, 'bob');
    assert.match(fromRuntime.credential.source, /runtime\/bt_u\d+$/);
    const flag = JSON.parse((await repoman(['whoami', '--json', '--token', token])).stdout);
    assert.equal(flag.credential.source, '--token');
  });

  it('presents a proxy before a token unless the configuration prefers the token', async () => {
    const token = await issuer.token('bob-cli');
    const both = { BEARER_TOKEN: token, X509_USER_PROXY: join(dir, 'admin-proxy.pem') };
    assert.equal((await repoman(['whoami'], both)).stdout.trim(), 'admin');
    const conf = join(dir, 'prefer.conf');
    await writeFile(conf, '[User]\nprefer: token\n');
    assert.equal((await repoman(['whoami'], { ...both, REPOMAN_CLIENT_CONFIG: conf })).stdout.trim(), 'bob');
    await writeFile(conf, '[User]\nprefer: tokens\n');
    const wrong = await repoman(['whoami'], { ...both, REPOMAN_CLIENT_CONFIG: conf });
    assert.equal(wrong.status, 1);
    assert.match(wrong.stderr, /prefer is certificate or token/);
  });

  it('uploads and downloads with a token, and says in one line what its scopes refuse', async () => {
    const token = await issuer.token('bob-cli');
    const as = { BEARER_TOKEN: token };
    assert.equal((await repoman(['ci', 'tok.img'], as)).status, 0);
    const put = await repoman(['pi', join(dir, 'image.bin'), 'tok.img'], as);
    assert.equal(put.status, 0, put.stderr);
    const got = await repoman(['gi', 'tok.img', join(dir, 'back.bin')], as);
    assert.equal(got.status, 0, got.stderr);
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    assert.equal(sha(await readFile(join(dir, 'back.bin'))), sha(image));
    const readOnly = { BEARER_TOKEN: await issuer.token('bob-cli', { scope: 'storage.read:/bob' }) };
    const refused = await repoman(['pi', join(dir, 'image.bin'), 'tok.img', '--force'], readOnly);
    assert.equal(refused.status, 1);
    const line = refused.stderr.trim().split('\n').at(-1) ?? '';
    // (put-image's resumable uploads are not a storage path a scope names: grid tools PUT the bytes' URL)
    assert.match(
      line,
      /^\[FAILED\] put-image: A token with storage scopes \(storage\.read:\/bob\) is good only for/,
    );
  });

  it('sends the token to its own server only, and never over a header a request set itself', async () => {
    const seen: (string | undefined)[] = [];
    const other = createServer({ cert: pki.host.certPem, key: pki.host.keyPem }, (req, res) => {
      seen.push(req.headers.authorization);
      res.end('{}');
    });
    await new Promise<void>((done) => other.listen(0, '127.0.0.1', done));
    const api = new Api({
      base: `https://localhost:${server.httpsPort}`,
      ca: [pki.ca.certPem],
      caSource: 'test',
      credential: { kind: 'token', token: 'secret-token', source: 'test', notAfter: null, subject: null },
    });
    try {
      await api.request('GET', `https://localhost:${(other.address() as AddressInfo).port}/elsewhere`);
      await api.request('GET', `https://localhost:${(other.address() as AddressInfo).port}/x`, {
        headers: { authorization: 'Basic abc' },
      });
      assert.deepEqual(seen, [undefined, 'Basic abc']);
    } finally {
      api.close();
      other.close();
    }
  });
});
