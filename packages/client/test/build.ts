/** What the client's tests share: the executable users install is the compiled one, built here first. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

export const clientRoot = resolve(import.meta.dirname, '..');
export const BIN = join(clientRoot, 'bin', 'repoman.js');

/** Every file below `dir`. */
function filesBelow(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? filesBelow(join(dir, entry.name)) : [join(dir, entry.name)],
  );
}

/** Whether dist/ holds a build newer than every source file (then there is nothing to write). */
function upToDate(): boolean {
  const src = join(clientRoot, 'src');
  return filesBelow(src).every((file) => {
    const built = join(clientRoot, 'dist', relative(src, file)).replace(/\.ts$/, '.js');
    return existsSync(built) && statSync(built).mtimeMs >= statSync(file).mtimeMs;
  });
}

/**
 * Compiles the client (bin/repoman.js runs dist/), failing the test with tsc's output if it cannot. Test files
 * run side by side, each building first: one builds at a time (a lock directory), and a build already done is
 * not written again, so that no test runs the client while another rewrites its files under it.
 */
export function buildClient(): void {
  const lock = join(clientRoot, 'dist.building');
  const wait = new Int32Array(new SharedArrayBuffer(4));
  for (let tries = 0; ; tries++) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      // A lock left by a test process that died holds no one back for long.
      const held = statSync(lock, { throwIfNoEntry: false });
      if (tries > 1200 || (held && Date.now() - held.mtimeMs > 120_000))
        rmSync(lock, { recursive: true, force: true });
      Atomics.wait(wait, 0, 0, 100);
    }
  }
  try {
    if (upToDate()) return;
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
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}
