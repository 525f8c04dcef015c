/**
 * clouds/openstack.ts against a real Keystone and Glance (scripts/openstack.sh): tokens from an application
 * credential and from a password, the image endpoint from the catalog, images made, uploaded, imported by
 * web-download, listed by their properties, changed, deactivated and deleted; Keystone's and Glance's refusals
 * in their own words; and the destination policy in front of it all.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { BlockList } from 'node:net';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import {
  type CloudEndpoint,
  CloudError,
  createOpenStack,
  type GlanceImage,
} from '../../src/clouds/openstack.ts';
import { type OpenStackFixture, startOpenStack } from '../helpers/openstack.ts';

const sha512 = (data: Buffer) => createHash('sha512').update(data).digest('hex');

describe('OpenStack (Keystone and Glance) as the cloud sync calls it', () => {
  let cloud: OpenStackFixture;
  let server: http.Server;
  let bytesUrl: string;
  const bytes = randomBytes(300_000);
  const loopback = new BlockList();
  loopback.addSubnet('127.0.0.0', 8);
  const openstack = createOpenStack({ allowed: loopback, cas: () => [], idleMs: 60_000 });
  let password: CloudEndpoint;

  /** Waits (polling, no fixed sleep) until Glance says the image is in one of `states`. */
  async function until(get: () => Promise<GlanceImage | null>, states: string[]) {
    for (let i = 0; i < 600; i++) {
      const image = await get();
      if (image && states.includes(image.status)) return image;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.fail(`the image never reached ${states.join(' or ')}`);
  }

  before(async () => {
    cloud = await startOpenStack();
    password = {
      authUrl: cloud.authUrl,
      region: 'RegionOne',
      credential: {
        kind: 'password',
        username: cloud.admin.username,
        password: cloud.admin.password,
        userDomain: 'Default',
        project: cloud.admin.project,
        projectDomain: 'Default',
      },
    };
    // Bytes for web-download to fetch, as Repoman would serve them.
    server = http.createServer((_request, response) => response.end(bytes));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    bytesUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/images/raw/bob/vm.img?version=1`;
  });
  after(async () => {
    server?.close();
    await cloud?.stop();
  });

  it('logs in with an application credential and with a password, and finds Glance in the catalog', async () => {
    const credential = await cloud.applicationCredential('repoman-test');
    const session = await openstack.login({
      authUrl: cloud.authUrl,
      region: null,
      credential: { kind: 'application_credential', ...credential },
    });
    assert.equal(session.glanceUrl, cloud.glanceUrl);
    assert.equal(session.project.name, 'admin');
    assert.ok(session.expires.getTime() > Date.now());
    const byPassword = await openstack.login(password);
    assert.equal(byPassword.project.id, session.project.id);
  });

  it('says why Keystone refuses, and never reaches what the policy does not allow', async () => {
    const wrong = openstack.login({
      ...password,
      credential: { ...password.credential, password: 'wrong' } as CloudEndpoint['credential'],
    });
    await assert.rejects(wrong, (error: unknown) => {
      assert.ok(error instanceof CloudError);
      assert.equal(error.httpStatus, 401);
      assert.match(error.message, /Keystone refused the credential: .*\(HTTP 401/);
      return true;
    });
    await assert.rejects(
      openstack.login({ ...password, region: 'Elsewhere' }),
      /no public image \(Glance\) endpoint in region Elsewhere/,
    );
    const strict = createOpenStack({ allowed: new BlockList(), cas: () => [], idleMs: 5000 });
    await assert.rejects(strict.login(password), (error: unknown) => {
      assert.equal((error as { code?: string }).code, 'destination_refused');
      assert.match(
        (error as Error).message,
        /^The cloud was refused: .*clouds do not reach \(clouds\.allowed_networks\)/,
      );
      return true;
    });
  });

  it('makes an image, uploads its bytes, and Glance checks them by SHA-512', async () => {
    const glance = openstack.glance(await openstack.login(password));
    const made = await glance.create({
      name: 'uploaded.img',
      disk_format: 'raw',
      container_format: 'bare',
      repoman_target: 'test-target',
      repoman_version: '1',
    });
    assert.equal(made.status, 'queued');
    await glance.upload(made.id, { length: bytes.length, stream: Readable.from([bytes]) });
    const active = await until(() => glance.get(made.id), ['active']);
    assert.equal(active.os_hash_algo, 'sha512');
    assert.equal(active.os_hash_value, sha512(bytes));
    assert.equal(active.size, bytes.length);
  });

  it('has Glance fetch the bytes by web-download', async () => {
    const glance = openstack.glance(await openstack.login(password));
    const made = await glance.create({
      name: 'imported.img',
      disk_format: 'raw',
      container_format: 'bare',
      repoman_target: 'test-target',
      repoman_version: '2',
    });
    await glance.importFrom(made.id, bytesUrl);
    const active = await until(() => glance.get(made.id), ['active']);
    assert.equal(active.os_hash_value, sha512(bytes));
  });

  it('lists images by their properties, changes, deactivates and deletes them', async () => {
    const glance = openstack.glance(await openstack.login(password));
    const other = await glance.create({ name: 'theirs.img', disk_format: 'raw', container_format: 'bare' });
    const ours = await glance.list({ repoman_target: 'test-target' });
    assert.deepEqual(ours.map((i) => i.name).sort(), ['imported.img', 'uploaded.img']);
    const image = ours.find((i) => i.name === 'uploaded.img') as GlanceImage;
    await glance.setProperties(image, { repoman_version: '3', os_distro: 'almalinux' });
    const changed = (await glance.get(image.id)) as GlanceImage;
    assert.deepEqual([changed.repoman_version, changed.os_distro], ['3', 'almalinux']);
    await glance.deactivate(image.id);
    assert.equal((await glance.get(image.id))?.status, 'deactivated');
    await glance.remove(image.id);
    assert.equal(await glance.get(image.id), null);
    await glance.remove(image.id); // already gone: nothing to say
    await glance.remove(other.id);
    await assert.rejects(
      glance.importFrom('00000000-0000-0000-0000-000000000000', bytesUrl),
      (error: unknown) => {
        assert.ok(error instanceof CloudError);
        assert.equal(error.httpStatus, 404);
        return true;
      },
    );
  });
});
