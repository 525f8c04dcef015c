/**
 * The cloud sync against a real Keystone and Glance (scripts/openstack.sh) and a real Repoman over HTTPS:
 * a cloud registered with an application credential (checked at once, its secret sealed and never shown), an
 * image chosen for it appearing in Glance, active, with Repoman's SHA-512 and properties, by web-download
 * (public, and private through a capability URL) and by upload; a new version replacing it, the old one
 * retired after the grace period; a Glance image it does not own left alone and a same-name one reported as a
 * conflict; Glance stopped mid-sync, then back; a wrong credential a clear refusal.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { BIN, buildClient } from '../../../client/test/build.ts';
import { clientFor, expectError } from '../helpers/http.ts';
import { type OpenStackFixture, startOpenStack } from '../helpers/openstack.ts';
import { makeTestPki, type TestPki } from '../helpers/pki.ts';
import { startServerFor, type TestServer } from '../helpers/server.ts';

const run = promisify(execFile);
const sha512 = (data: Buffer) => createHash('sha512').update(data).digest('hex');

describe('syncing images into an OpenStack cloud', () => {
  let pki: TestPki;
  let cloud: OpenStackFixture;
  let server: TestServer;
  let as: (name: string) => ReturnType<typeof clientFor>;
  let credential: { id: string; secret: string };
  const v1 = randomBytes(200_000);
  const v2 = randomBytes(150_000);
  const secret = randomBytes(120_000);

  type Copy = {
    image: string;
    version: number;
    state: string;
    glance_id: string | null;
    detail: string | null;
  };
  const status = async (name = 'site') =>
    (await as('mgr').get(`/api/clouds/vo/${name}/status`)).json as Copy[];
  /** Waits (polling, no fixed sleep) until `check` holds of the cloud's status. */
  async function until(what: string, check: (copies: Copy[]) => boolean, name = 'site', ms = 90_000) {
    const end = Date.now() + ms;
    let copies: Copy[] = [];
    while (Date.now() < end) {
      copies = await status(name);
      if (check(copies)) return copies;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    assert.fail(`timed out waiting until ${what}: ${JSON.stringify(copies)}`);
  }
  const glanceImages = async () =>
    ((await cloud.glance('GET', '/v2/images?limit=100')).json.images ?? []) as Record<string, string>[];

  before(async () => {
    pki = await makeTestPki();
    cloud = await startOpenStack({ caPem: pki.ca.certPem });
    credential = await cloud.applicationCredential('repoman');
    server = await startServerFor(pki, 'sqlite', {
      REPOMAN_CLOUDS_ALLOWED_NETWORKS: '127.0.0.0/8',
      REPOMAN_CLOUDS_SYNC_SECONDS: '5',
      REPOMAN_CLOUDS_GRACE_SECONDS: '2',
    });
    as = (name) => clientFor(server.httpsUrl, pki.ca.certPem, pki.credential(name));
    const admin = as('admin');
    for (const name of ['bob', 'mgr', 'mia'])
      assert.equal(
        (await admin.post('/api/users', { user_name: name, client_dn: pki.dn(name) })).status,
        201,
      );
    await admin.post('/api/groups', { name: 'managers', users: ['mgr'], permissions: ['cloud_manage'] });
    await admin.post('/api/groups', { name: 'vo', users: ['bob', 'mgr', 'mia'] });
    await as('mgr').get('/api/whoami');
    const bob = as('bob');
    await bob.post('/api/images', {
      name: 'worker.img',
      unauthenticated_access: true,
      os_variant: 'almalinux9',
    });
    assert.equal((await bob.put('/api/images/raw/worker.img', v1)).status, 201);
    await bob.post('/api/images', { name: 'secret.img' });
    assert.equal((await bob.put('/api/images/raw/secret.img', secret)).status, 201);
    await bob.post('/api/images/secret.img/share/group/vo');
  });
  after(async () => {
    await server?.stop();
    await cloud?.stop();
  });

  it('registers a cloud only with a credential that works, and never shows its secret', async () => {
    const body = {
      name: 'site',
      auth_url: cloud.authUrl,
      region: 'RegionOne',
      application_credential_id: credential.id,
      application_credential_secret: credential.secret,
      name_prefix: 'repoman-',
      follow_endorsed: false,
    };
    expectError(await as('mia').post('/api/clouds/vo', body), 403, 'forbidden');
    const wrong = await as('mgr').post('/api/clouds/vo', { ...body, application_credential_secret: 'wrong' });
    expectError(wrong, 400, 'cloud_check_failed');
    assert.match(wrong.json.error.message, /Keystone refused the credential/);
    const made = await as('mgr').post('/api/clouds/vo', body);
    assert.equal(made.status, 201, made.text);
    assert.deepEqual(made.json.credential, { kind: 'application_credential', id: credential.id });
    assert.doesNotMatch(made.text, new RegExp(credential.secret));
    expectError(await as('mgr').post('/api/clouds/vo', body), 409, 'cloud_exists');
    // At rest: sealed, not the secret.
    const db = new DatabaseSync(join(server.dir, 'data', 'repoman.db'), { readOnly: true });
    const row = db.prepare('select credential_secret from clouds').get() as { credential_secret: string };
    db.close();
    assert.match(row.credential_secret, /^v1\.[0-9a-f]{8}\./);
    assert.ok(!row.credential_secret.includes(credential.secret));
    // A new Keystone URL without the credential given again: refused (the secret goes only where it was
    // given for), and a Keystone that repeats what it was sent does not get the secret into an answer.
    const moved = await as('mgr').patch('/api/clouds/vo/site', { auth_url: 'http://127.0.0.1:9/v3' });
    expectError(moved, 400, 'invalid_field');
    const echo = http.createServer((request, response) => {
      let body = '';
      request.on('data', (chunk) => {
        body += chunk;
      });
      request.on('end', () => {
        response.writeHead(401, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ error: { message: `The request you sent was ${body}` } }));
      });
    });
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    try {
      const port = (echo.address() as AddressInfo).port;
      const echoed = await as('mgr').post('/api/clouds/vo', {
        ...body,
        name: 'echo',
        auth_url: `http://127.0.0.1:${port}/v3`,
      });
      expectError(echoed, 400, 'cloud_check_failed');
      assert.doesNotMatch(echoed.text, new RegExp(credential.secret));
      assert.match(echoed.text, /\*\*\*/);
    } finally {
      echo.close();
    }
    // Members see it; others do not.
    assert.equal((await as('mia').get('/api/clouds/vo/site')).status, 200);
    expectError(await as('admin').get('/api/clouds/vo/nothing'), 404, 'cloud_not_found');
  });

  it('puts a chosen public image into Glance by web-download, verified by SHA-512, with its properties', async () => {
    const chosen = await as('mgr').request('PUT', '/api/clouds/vo/site/images/bob/worker.img');
    assert.equal(chosen.status, 200, chosen.text);
    const copies = await until('worker.img is present', (c) => c.some((x) => x.state === 'present'));
    const copy = copies.find((c) => c.image === 'bob/worker.img') as Copy;
    assert.equal(copy.version, 1);
    const image = (await cloud.glance('GET', `/v2/images/${copy.glance_id}`)).json;
    assert.equal(image.status, 'active');
    assert.equal(image.name, 'repoman-worker.img');
    assert.equal(image.os_hash_value, sha512(v1));
    assert.equal(image.repoman_version, '1');
    assert.equal(image.repoman_sha512, sha512(v1));
    assert.equal(image.os_distro, 'almalinux9');
    assert.equal(image.visibility, 'private');
    // A change of the cloud's visibility reaches the copies already there.
    assert.equal((await as('mgr').patch('/api/clouds/vo/site', { visibility: 'community' })).status, 200);
    const end = Date.now() + 30_000;
    let now = image;
    while (now.visibility !== 'community' && Date.now() < end) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      now = (await cloud.glance('GET', `/v2/images/${copy.glance_id}`)).json;
    }
    assert.equal(now.visibility, 'community');
    assert.equal((await as('mgr').patch('/api/clouds/vo/site', { visibility: 'private' })).status, 200);
  });

  it('replaces it with a new version, and retires the old one after the grace period', async () => {
    const before = (await status()).find((c) => c.version === 1) as Copy;
    assert.equal((await as('bob').put('/api/images/raw/worker.img', v2)).status, 200);
    await as('mgr').post('/api/clouds/vo/site/sync');
    await until(
      'version 2 is present and version 1 gone',
      (c) => c.some((x) => x.version === 2 && x.state === 'present') && !c.some((x) => x.version === 1),
    );
    const left = await glanceImages();
    assert.ok(!left.some((i) => i.id === before.glance_id), 'the old copy is deleted');
    const now = left.find((i) => i.repoman_image && i.repoman_version === '2');
    assert.equal(now?.os_hash_value, sha512(v2));
  });

  it('leaves images it does not own alone, and reports a same-name one as a conflict', async () => {
    const theirs = (
      await cloud.glance('POST', '/v2/images', {
        name: 'repoman-secret.img',
        disk_format: 'raw',
        container_format: 'bare',
      })
    ).json;
    await as('mgr').request('PUT', '/api/clouds/vo/site/images/bob/secret.img');
    const copies = await until('secret.img is a conflict', (c) =>
      c.some((x) => x.image === 'bob/secret.img' && x.state === 'conflict'),
    );
    assert.match(
      copies.find((c) => c.image === 'bob/secret.img')?.detail ?? '',
      /another image named repoman-secret\.img/,
    );
    assert.equal((await cloud.glance('GET', `/v2/images/${theirs.id}`)).status, 200);
    // Gone, the conflict is over: the private image goes by a capability URL.
    assert.equal((await cloud.glance('DELETE', `/v2/images/${theirs.id}`)).status, 204);
    await as('mgr').post('/api/clouds/vo/site/sync');
    const done = await until('secret.img is present', (c) =>
      c.some((x) => x.image === 'bob/secret.img' && x.state === 'present'),
    );
    const copy = done.find((c) => c.image === 'bob/secret.img') as Copy;
    assert.equal(
      (await cloud.glance('GET', `/v2/images/${copy.glance_id}`)).json.os_hash_value,
      sha512(secret),
    );
  });

  it('stops sending an image its chooser may no longer read, and lets it be unchosen', async () => {
    const bob = as('bob');
    await bob.post('/api/images', { name: 'team.img' });
    assert.equal((await bob.put('/api/images/raw/team.img', randomBytes(80_000))).status, 201);
    await bob.post('/api/images/team.img/share/group/vo');
    await as('mgr').request('PUT', '/api/clouds/vo/site/images/bob/team.img');
    await until('team.img is present', (c) =>
      c.some((x) => x.image === 'bob/team.img' && x.state === 'present'),
    );
    // Unshared: no longer visible to the group, so no longer wanted there: retired, then gone.
    await bob.delete('/api/images/team.img/share/group/vo');
    await as('mgr').post('/api/clouds/vo/site/sync');
    await until('team.img is retired and gone', (c) => !c.some((x) => x.image === 'bob/team.img'));
    // The manager can no longer read it, and may still unchoose it.
    assert.equal((await as('mgr').get('/api/images/bob/team.img')).status, 404);
    assert.equal((await as('mgr').request('DELETE', '/api/clouds/vo/site/images/bob/team.img')).status, 200);
  });

  it('fails cleanly while Glance is down, and succeeds once it is back', async () => {
    await as('mgr').request('DELETE', '/api/clouds/vo/site/images/bob/secret.img');
    await cloud.stopGlance();
    try {
      await as('mgr').post('/api/clouds/vo/site/sync');
      const end = Date.now() + 60_000;
      let shown: { last_error: string | null } = { last_error: null };
      while (Date.now() < end && !shown.last_error) {
        shown = (await as('mgr').get('/api/clouds/vo/site')).json;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      assert.match(String(shown.last_error), /ECONNREFUSED|refused|9292|Glance/i);
    } finally {
      await cloud.startGlance();
    }
    await as('mgr').post('/api/clouds/vo/site/sync');
    await until('secret.img is retired and gone', (c) => !c.some((x) => x.image === 'bob/secret.img'));
    const shown = (await as('mgr').get('/api/clouds/vo/site')).json;
    assert.equal(shown.last_error, null);
  });

  it('uploads into a cloud that cannot reach Repoman', async () => {
    // Another project (the same bytes twice in one project are a conflict), with a user's password.
    const user = await cloud.projectUser('uploads');
    const made = await as('mgr').post('/api/clouds/vo', {
      name: 'upload',
      auth_url: cloud.authUrl,
      username: user.username,
      password: user.password,
      project: user.project,
      transfer: 'upload',
      name_prefix: 'up-',
      follow_endorsed: false,
    });
    assert.equal(made.status, 201, made.text);
    assert.equal(made.json.credential.kind, 'password');
    assert.doesNotMatch(made.text, new RegExp(user.password));
    await as('mgr').request('PUT', '/api/clouds/vo/upload/images/bob/worker.img');
    const copies = await until(
      'worker.img is present by upload',
      (c) => c.some((x) => x.state === 'present'),
      'upload',
    );
    const image = (await cloud.glance('GET', `/v2/images/${copies[0]?.glance_id}`)).json;
    assert.equal(image.name, 'up-worker.img');
    assert.equal(image.os_hash_value, sha512(v2));
  });

  it('converts an image to the format a cloud takes before it goes there', async () => {
    const user = await cloud.projectUser('qcow2s');
    const made = await as('mgr').post('/api/clouds/vo', {
      name: 'qcow2',
      auth_url: cloud.authUrl,
      username: user.username,
      password: user.password,
      project: user.project,
      disk_format: 'qcow2',
      follow_endorsed: false,
    });
    assert.equal(made.status, 201, made.text);
    await as('mgr').request('PUT', '/api/clouds/vo/qcow2/images/bob/worker.img');
    const copies = await until(
      'worker.img is present as qcow2',
      (c) => c.some((x) => x.state === 'present'),
      'qcow2',
    );
    const image = (await cloud.glance('GET', `/v2/images/${copies[0]?.glance_id}`)).json;
    assert.equal(image.disk_format, 'qcow2');
    const versions = (await as('bob').get('/api/images/bob/worker.img/versions')).json.items;
    const variant = versions[0].variants.find((v: { format: string }) => v.format === 'qcow2');
    assert.ok(variant, 'the conversion made a qcow2 variant, in its owner’s name');
    assert.equal(image.os_hash_value, variant.digests.sha512);
  });

  it('is driven from the client: add-cloud from an RC file’s variables, sync --wait, cloud-status', async () => {
    buildClient();
    const home = await mkdtemp(join(tmpdir(), 'repoman-cloud-client-'));
    try {
      const mgr = pki.credential('mgr');
      await writeFile(join(home, 'mgr.pem'), mgr.cert);
      await writeFile(join(home, 'mgr.key'), mgr.key, { mode: 0o600 });
      await writeFile(join(home, 'ca.pem'), pki.ca.certPem);
      const user = await cloud.projectUser('cli');
      const base = [
        BIN,
        '-r',
        'localhost',
        '-p',
        String(server.httpsPort),
        '--cert',
        join(home, 'mgr.pem'),
        '--key',
        join(home, 'mgr.key'),
        '--ca',
        join(home, 'ca.pem'),
      ];
      const rc = {
        HOME: home,
        PATH: process.env.PATH,
        OS_AUTH_URL: cloud.authUrl,
        OS_USERNAME: user.username,
        OS_PASSWORD: user.password,
        OS_PROJECT_NAME: user.project,
      };
      const repoman = (args: string[], env: NodeJS.ProcessEnv = rc) =>
        run(process.execPath, [...base, ...args], { env, timeout: 120_000 }).then(
          (r) => ({ status: 0, ...r }),
          (e: { code: number; stdout: string; stderr: string }) => ({
            status: e.code,
            stdout: e.stdout,
            stderr: e.stderr,
          }),
        );
      const refused = await repoman(['add-cloud', 'vo/cli', '--no-endorsed'], {
        ...rc,
        OS_PASSWORD: 'wrong',
      });
      assert.equal(refused.status, 1, refused.stderr);
      assert.match(refused.stderr, /Keystone refused the credential/);
      const added = await repoman(['add-cloud', 'vo/cli', '--no-endorsed', '--prefix', 'cli-']);
      assert.equal(added.status, 0, added.stderr);
      assert.match(added.stdout, /\[OK\] Registered cloud vo\/cli/);
      const synced = await repoman(['sync', 'vo/cli', '--add', 'bob/worker.img', '--wait']);
      assert.equal(synced.status, 0, synced.stderr);
      assert.match(synced.stdout, /bob\/worker\.img\s+2\s+present \(verified\)/);
      const shown = JSON.parse((await repoman(['cloud-status', 'vo/cli', '--json'])).stdout);
      assert.equal(shown.copies[0].state, 'present');
      const listed = await repoman(['list-clouds', 'vo']);
      assert.match(listed.stdout, /vo\/cli\s+/);
      assert.match(listed.stdout, /vo\/site\s+/);
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });

  it('counts transfers in /metrics and records every change in the audit log', async () => {
    const metrics = (await as('admin').get('/metrics')).text;
    assert.match(metrics, /repoman_cloud_transfers_total\{cloud="[0-9a-f-]+",outcome="ok"\} [1-9]/);
    const log = await as('admin').get('/api/audit?action=cloud.');
    const actions = new Set((log.json.items as { action: string }[]).map((e) => e.action));
    for (const action of ['cloud.create', 'cloud.choose', 'cloud.image_create', 'cloud.image_delete'])
      assert.ok(actions.has(action), `${action} in ${[...actions].join(', ')}`);
  });
});
