/**
 * What the plain-HTTP port answers, request by request, and that docs/authentication.md says the same: public
 * images and the health check as over HTTPS; a private image as one that does not exist (404, so nothing
 * private is confirmed); an image without a namespace 401 (there is no caller to own one); anything else 403
 * `https_required`.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { clientFor, expectError } from './helpers/http.ts';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import { startServerFor, type TestServer } from './helpers/server.ts';

const IMAGE = Buffer.alloc(4096, 7);

describe('the plain-HTTP port', () => {
  let pki: TestPki;
  let server: TestServer;
  let plain: ReturnType<typeof clientFor>;

  before(async () => {
    pki = await makeTestPki();
    server = await startServerFor(pki, 'sqlite');
    const admin = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('admin'));
    for (const [name, open] of [
      ['pub.img', true],
      ['vm.img', false],
    ] as const) {
      assert.equal((await admin.post('/api/images', { name, unauthenticated_access: open })).status, 201);
      assert.equal((await admin.put(`/api/images/raw/${name}`, IMAGE)).status, 201);
    }
    plain = clientFor(server.httpUrl as string, '', null);
  });
  after(async () => {
    await server?.stop();
  });

  it('serves public images and the health check as HTTPS does', async () => {
    const list = await plain.get('/api/images');
    assert.equal(list.status, 200);
    assert.deepEqual(
      list.json.items.map((i: { name: string }) => i.name),
      ['pub.img'],
    );
    assert.equal((await plain.get('/api/images/admin/pub.img')).json.name, 'pub.img');
    const bytes = await plain.get('/api/images/raw/admin/pub.img');
    assert.equal(bytes.status, 200);
    assert.ok(bytes.body.equals(IMAGE));
    assert.equal((await plain.get('/api/health')).status, 200);
  });

  it('answers a private image as one that does not exist', async () => {
    for (const path of [
      '/api/images/admin/vm.img',
      '/api/images/admin/none.img',
      '/api/images/raw/admin/vm.img',
      '/api/images/raw/admin/vm.img?version=1',
      '/api/images/raw/admin/none.img',
    ])
      expectError(await plain.get(path), 404, 'image_not_found');
  });

  it('answers an image without a namespace 401: without a certificate there is no caller', async () => {
    for (const path of ['/api/images/pub.img', '/api/images/raw/pub.img'])
      expectError(await plain.get(path), 401, 'certificate_required');
  });

  it('answers anything else 403 https_required', async () => {
    for (const [method, path] of [
      ['GET', '/api/whoami'],
      ['GET', '/api/users'],
      ['GET', '/api/groups'],
      ['GET', '/api/audit'],
      ['GET', '/api/openapi.json'],
      ['GET', '/api/images/admin/pub.img/versions'],
      ['GET', '/api/no-such-route'],
      ['POST', '/api/images'],
      ['PATCH', '/api/images/admin/pub.img'],
      ['DELETE', '/api/images/admin/pub.img'],
      ['PUT', '/api/images/raw/admin/pub.img'],
      ['POST', '/api/uploads'],
    ])
      expectError(await plain.request(method as string, path as string), 403, 'https_required');
  });

  it('is described so by docs/authentication.md', async () => {
    const doc = await readFile(new URL('../../../docs/authentication.md', import.meta.url), 'utf8');
    const rows = doc
      .split('\n')
      .filter((line) => line.startsWith('| plain HTTP'))
      .map((line) => line.split('|').map((cell) => cell.trim()));
    const answerOf = (situation: RegExp) => rows.find((row) => situation.test(row[1] ?? ''))?.[2] ?? '';
    assert.match(answerOf(/private or does not exist/), /^`404 image_not_found`/);
    assert.match(answerOf(/without a namespace/), /^`401 certificate_required`/);
    assert.match(answerOf(/anything else/), /^`403 https_required`/);
  });
});
