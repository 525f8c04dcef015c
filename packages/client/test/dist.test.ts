/**
 * The built client depends on nothing at run time: it is typed by `@repoman/core` (`import type` only, erased
 * when it is built), and this test fails if any file of dist/ would load core, or any other package.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { buildClient, clientRoot } from './build.ts';

function filesBelow(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? filesBelow(join(dir, entry.name)) : [join(dir, entry.name)],
  );
}

describe('the built client', () => {
  it('loads no package at run time, @repoman/core included: only Node and its own files', () => {
    buildClient();
    const builtins = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);
    const loaded: string[] = [];
    for (const file of filesBelow(join(clientRoot, 'dist')).filter((f) => f.endsWith('.js'))) {
      const code = readFileSync(file, 'utf8');
      const specifiers = [
        ...code.matchAll(/^\s*(?:import|export)\s[^;]*?\bfrom\s*['"]([^'"]+)['"]/gm),
        ...code.matchAll(/^\s*import\s*['"]([^'"]+)['"]/gm),
        ...code.matchAll(/\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g),
        ...code.matchAll(/\brequire\s*\(\s*['"]([^'"]+)['"]\s*\)/g),
      ].map((match) => match[1] as string);
      for (const specifier of specifiers)
        if (!specifier.startsWith('.') && !builtins.has(specifier)) loaded.push(`${file}: ${specifier}`);
    }
    assert.deepEqual(loaded, [], 'the built client imports packages');
    const typed = filesBelow(join(clientRoot, 'src')).filter((f) =>
      readFileSync(f, 'utf8').includes('@repoman/core'),
    );
    assert.ok(typed.length > 5, 'the client is typed by core (import type), which the build erases');
  });
});
