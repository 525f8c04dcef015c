/**
 * How the server serves the web interface's files: `/` and the application's paths answer its page, built files
 * are cached for good under their hashed names, compressed when the client takes it, with a strict content
 * security policy; the API's unknown paths stay JSON; without a build, `/` says so. Uses curl, over HTTPS and HTTP.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import { startServerFor, type TestServer } from './helpers/server.ts';

const run = promisify(execFile);
const INDEX =
  '<!doctype html><html><head><script type="module" src="/assets/app-1a2b3c.js"></script></head></html>';
const SCRIPT = `console.log(${JSON.stringify('repoman '.repeat(200))});`;

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** curl, as a browser would ask: without a certificate, accepting what it is told. */
async function curl(url: string, args: string[] = []): Promise<Answer> {
  const { stdout } = await run('curl', ['-sk', '-D', '-', '-o', '-', ...args, url], {
    encoding: 'buffer',
    maxBuffer: 1 << 24,
  });
  const split = stdout.indexOf('\r\n\r\n');
  const head = stdout.subarray(0, split).toString('latin1').split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of head.slice(1)) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(head[0]?.split(' ')[1]), headers, body: stdout.subarray(split + 4) };
}

describe('the web interface files', () => {
  let pki: TestPki;
  let server: TestServer;
  let bare: TestServer;
  let web: string;

  before(async () => {
    pki = await makeTestPki();
    web = await mkdtemp(join(tmpdir(), 'repoman-web-'));
    await mkdir(join(web, 'assets'), { recursive: true });
    await writeFile(join(web, 'index.html'), INDEX);
    await writeFile(join(web, 'assets', 'app-1a2b3c.js'), SCRIPT);
    await writeFile(join(web, 'favicon.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>');
    server = await startServerFor(pki, 'sqlite', { REPOMAN_WEB_DIR: web });
    bare = await startServerFor(pki, 'sqlite', { REPOMAN_WEB_ENABLED: 'false' });
  });
  after(async () => {
    await server?.stop();
    await bare?.stop();
    await rm(web, { recursive: true, force: true });
  });

  it('answers / and the application’s own paths with its page, under a strict policy', async () => {
    for (const path of ['/', '/images/bob/rhel9.img', '/images/bob/rhel9.img/edit', '/admin/groups']) {
      const answer = await curl(server.httpsUrl + path);
      assert.equal(answer.status, 200, path);
      assert.equal(answer.body.toString(), INDEX, path);
      assert.equal(answer.headers['content-type'], 'text/html; charset=utf-8');
      assert.equal(answer.headers['cache-control'], 'no-cache');
      assert.match(answer.headers['content-security-policy'] ?? '', /default-src 'none'; script-src 'self'/);
      assert.match(answer.headers['content-security-policy'] ?? '', /frame-ancestors 'none'/);
      assert.equal(answer.headers['x-content-type-options'], 'nosniff');
    }
  });

  it('sends the security headers docs/web.md shows, whole', async () => {
    const doc = await readFile(new URL('../../../docs/web.md', import.meta.url), 'utf8');
    const policy = doc.match(/strict `Content-Security-Policy`[^`]*```text\n\s*(.+)\n\s*```/)?.[1];
    const answer = await curl(server.httpsUrl);
    assert.equal(answer.headers['content-security-policy'], policy);
    const others = doc.match(/^- Other headers: (.+)$/m)?.[1] ?? '';
    const named = [...others.matchAll(/`([\w-]+): ([^`]+)`/g)];
    assert.equal(named.length, 3, others);
    for (const [, name, value] of named) assert.equal(answer.headers[name?.toLowerCase() ?? ''], value, name);
  });

  it('serves built files for good, compressed, and 304 when unchanged', async () => {
    const url = `${server.httpsUrl}/assets/app-1a2b3c.js`;
    const plain = await curl(url);
    assert.equal(plain.status, 200);
    assert.equal(plain.body.toString(), SCRIPT);
    assert.equal(plain.headers['content-type'], 'text/javascript; charset=utf-8');
    assert.equal(plain.headers['cache-control'], 'public, max-age=31536000, immutable');
    assert.equal(plain.headers['content-encoding'], undefined);
    const gzip = await curl(url, ['-H', 'accept-encoding: gzip']);
    assert.equal(gzip.headers['content-encoding'], 'gzip');
    assert.equal(gunzipSync(gzip.body).toString(), SCRIPT);
    assert.ok(gzip.body.length < SCRIPT.length / 4, `${gzip.body.length} bytes compressed`);
    const brotli = await curl(url, ['-H', 'accept-encoding: gzip, deflate, br']);
    assert.equal(brotli.headers['content-encoding'], 'br');
    assert.equal(brotli.headers.vary, 'accept-encoding');
    const refused = await curl(url, ['-H', 'accept-encoding: br;q=0, gzip']);
    assert.equal(refused.headers['content-encoding'], 'gzip', 'br;q=0 is a refusal');
    // Each encoding is a representation of its own, with its own entity tag.
    assert.notEqual(gzip.headers.etag, plain.headers.etag);
    assert.notEqual(brotli.headers.etag, gzip.headers.etag);
    const again = await curl(url, ['-H', `if-none-match: ${plain.headers.etag}`]);
    assert.equal(again.status, 304);
    assert.equal(again.body.length, 0);
    const weak = await curl(url, [
      '-H',
      'accept-encoding: gzip',
      '-H',
      `if-none-match: "x", W/${gzip.headers.etag}`,
    ]);
    assert.equal(weak.status, 304, 'a weak tag in a list matches');
    const other = await curl(url, ['-H', 'accept-encoding: br', '-H', `if-none-match: ${gzip.headers.etag}`]);
    assert.equal(other.status, 200, 'the gzip tag does not stand for the Brotli body');
    const head = await curl(url, ['-I']);
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], String(SCRIPT.length));
  });

  it('answers a missing built file and unknown API paths with JSON 404s, never the page', async () => {
    for (const path of ['/assets/gone-9z8y7x.js', '/api/nothing', '/api']) {
      const answer = await curl(server.httpsUrl + path);
      assert.equal(answer.status, 404, path);
      assert.equal(JSON.parse(answer.body.toString()).error.code, 'not_found', path);
    }
    // Over plain HTTP, the API beyond public images is HTTPS's.
    const plain = await curl(`${server.httpUrl}/api/nothing`);
    assert.equal(plain.status, 403);
    assert.equal(JSON.parse(plain.body.toString()).error.code, 'https_required');
  });

  it('serves the same over plain HTTP, where the page shows public images', async () => {
    assert.ok(server.httpUrl);
    const page = await curl(`${server.httpUrl}/images/bob/public.img`);
    assert.equal(page.status, 200);
    assert.equal(page.body.toString(), INDEX);
    const icon = await curl(`${server.httpUrl}/favicon.svg`);
    assert.equal(icon.headers['content-type'], 'image/svg+xml');
    assert.equal(icon.headers['cache-control'], 'no-cache');
  });

  it('says so at / when the interface is switched off, and the API goes on', async () => {
    const answer = await curl(`${bare.httpsUrl}/`);
    assert.equal(answer.status, 404);
    const body = JSON.parse(answer.body.toString());
    assert.equal(body.error.code, 'not_found');
    assert.match(body.error.message, /web interface is switched off/);
    assert.equal((await curl(`${bare.httpsUrl}/api/health`)).status, 200);
  });
});
