/** What the client's tests share: the executable users install is the compiled one, built here first. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';

export const clientRoot = resolve(import.meta.dirname, '..');
export const BIN = join(clientRoot, 'bin', 'repoman.js');

/** Compiles the client (bin/repoman.js runs dist/), failing the test with tsc's output if it cannot. */
export function buildClient(): void {
  const build = spawnSync(
    process.execPath,
    [
      join(clientRoot, '../../node_modules/typescript/bin/tsc'),
      '-p',
      join(clientRoot, 'tsconfig.build.json'),
    ],
    { encoding: 'utf8' },
  );
  assert.equal(build.status, 0, build.stdout + build.stderr);
}
