/**
 * The web interface's typed client is generated from the server's OpenAPI document and must follow it; the
 * build is what the server serves, and stays small.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { loadWebAssets } from '../../server/src/http/web.ts';
import { apiFiles } from '../scripts/api-files.ts';

const root = new URL('..', import.meta.url);

describe('the web interface build', () => {
  it('has API types generated from the server’s current OpenAPI document', async () => {
    for (const [path, text] of Object.entries(await apiFiles())) {
      const committed = await readFile(new URL(path, root), 'utf8');
      assert.ok(committed === text, `${path} is out of date: run npm run api -w packages/web`);
    }
  });

  it('is built (npm install builds it) with an entry page and under 150 KB of compressed JavaScript', async () => {
    const assets = await loadWebAssets(new URL('dist', root).pathname);
    assert.ok(assets, 'packages/web/dist holds the built interface (npm run build)');
    assert.match(
      assets.index.body.toString(),
      /<script type="module" crossorigin src="\/assets\/index-[\w-]+\.js">/,
    );
    assert.ok(assets.scriptBytes.gzip > 10_000, `${assets.scriptBytes.gzip} bytes: the whole application`);
    assert.ok(
      assets.scriptBytes.gzip < 150 * 1024,
      `${assets.scriptBytes.gzip} bytes of compressed JavaScript`,
    );
  });
});
