/**
 * `npm run build` (which `npm start` and `npm run server -- ...` run first) builds only what changed: run again
 * on unchanged sources it writes nothing and prints nothing. Checked on copies, so the checkout's own builds are
 * left alone: the TypeScript packages with the command of package.json, the web interface into a directory of
 * its own.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { buildWeb, WEB_BUILD, type WebBuild } from '../scripts/build.ts';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '../../..');

const mtime = async (path: string) => (await stat(path)).mtimeMs;

describe('npm run build', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'repoman-build-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('compiles the TypeScript packages again only when their sources change', async () => {
    const copy = join(dir, 'repo');
    for (const path of ['tsconfig.json', 'packages/core', 'packages/server', 'packages/client'])
      await cp(join(root, path), join(copy, path), {
        recursive: true,
        filter: (source) => !/\/(dist|node_modules|test)$|\.tsbuildinfo$/.test(source),
      });
    await symlink(join(root, 'node_modules'), join(copy, 'node_modules'));
    await symlink(
      join(root, 'packages/server/node_modules'),
      join(copy, 'packages/server/node_modules'),
    ).catch(
      () => {}, // none when npm hoisted every dependency of the server
    );
    const scripts = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')).scripts;
    // the build's TypeScript step (the one before it may install a native binding npm left out)
    const [tsc, ...args] =
      (scripts.build as string)
        .split(' && ')
        .find((step) => step.startsWith('tsc '))
        ?.split(' ') ?? [];
    assert.equal(tsc, 'tsc', scripts.build);
    const build = () =>
      run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), ...args], { cwd: copy });
    const outputs = [
      'packages/core/dist/index.js',
      'packages/server/dist/main.js',
      'packages/client/dist/main.js',
    ];
    const mtimes = () => Promise.all(outputs.map((p) => mtime(join(copy, p))));

    await build();
    const built = await mtimes();
    const again = await build();
    assert.equal(again.stdout + again.stderr, '', 'nothing to say when nothing changed');
    assert.deepEqual(await mtimes(), built, 'nothing written when nothing changed');

    // A change in core, which the server imports, rebuilds both; the client, which does not, stays.
    await writeFile(join(copy, 'packages/core/src/index.ts'), '\nexport const ADDED_BY_A_TEST = 1;\n', {
      flag: 'a',
    });
    await build();
    const [core, server, client] = await mtimes();
    assert.ok(core !== built[0] && server !== built[1], 'core and the server are built again');
    assert.equal(client, built[2], 'the client is left as it was');
    assert.match(await readFile(join(copy, 'packages/core/dist/index.js'), 'utf8'), /ADDED_BY_A_TEST/);
  });

  it('builds the web interface again only when its inputs or its output change', async () => {
    const extra = join(dir, 'extra-input.txt');
    await writeFile(extra, 'one');
    const build: WebBuild = {
      inputs: [...WEB_BUILD.inputs, extra],
      outDir: join(dir, 'web-dist'),
      stamp: join(dir, 'web-build.json'),
    };
    const index = join(build.outDir, 'index.html');

    assert.match((await buildWeb(build)) ?? '', /^Built the web interface into .+: [\d.]+ kB of JavaScript/);
    const first = await mtime(index);
    assert.equal(await buildWeb(build), null, 'up to date: nothing built, nothing to print');
    assert.equal(await mtime(index), first);

    await writeFile(extra, 'two'); // an input changed
    assert.notEqual(await buildWeb(build), null);
    const second = await mtime(index);
    assert.notEqual(second, first);
    assert.equal(await buildWeb(build), null);

    await rm(index); // the output changed
    assert.notEqual(await buildWeb(build), null);
    await stat(index);

    await mkdir(join(build.outDir, 'stray'));
    await writeFile(join(build.outDir, 'stray', 'file.js'), 'left by something else');
    assert.notEqual(await buildWeb(build), null, 'a file the build did not write is a changed output');
  });
});
