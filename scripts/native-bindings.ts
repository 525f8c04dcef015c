/**
 * Installs the native binding of rolldown (the bundler Vite builds the web interface with) when npm left it
 * out. npm skips an optional dependency whose `engines` the Node running npm does not meet: under Debian 12's
 * Node 18 and npm 9, `npm install` leaves out `@rolldown/binding-*` (it wants Node 20.19 or newer), although the
 * build runs on the repository's own Node 24. Run by `npm run build` on that Node, this installs the binding
 * for this platform with the same npm, now running on Node 24, and does nothing when it is there already.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const require = createRequire(join(root, 'packages/web/package.json'));

let rolldown: string;
try {
  rolldown = dirname(require.resolve('rolldown/package.json'));
} catch {
  process.exit(0); // no rolldown: nothing of ours to help
}
const manifest = JSON.parse(readFileSync(join(rolldown, 'package.json'), 'utf8')) as {
  optionalDependencies?: Record<string, string>;
};
const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
const libc = process.platform === 'linux' ? (report?.header?.glibcVersionRuntime ? 'gnu' : 'musl') : '';
const prefix = `@rolldown/binding-${process.platform}-${process.arch}`;
const binding = Object.entries(manifest.optionalDependencies ?? {}).find(
  ([name]) => (name === prefix || name.startsWith(`${prefix}-`)) && (!libc || name.endsWith(`-${libc}`)),
);
if (!binding) process.exit(0); // a platform rolldown has no binding for: its WebAssembly fallback, if any
const [name, version] = binding;
try {
  createRequire(join(rolldown, 'package.json')).resolve(`${name}/package.json`);
  process.exit(0);
} catch {
  // missing: install it below
}

console.error(`build: npm left out ${name} (it wants a newer Node than npm ran on); installing it`);
const npm = process.env.npm_execpath;
// That npm runs on this Node, whose own CA list would miss a site's TLS proxy that the system's store holds
// (the Node npm first ran on used the system's store): trust the system's store too.
const result = spawnSync(
  npm ? process.execPath : 'npm',
  [
    ...(npm ? ['--use-system-ca', npm] : []),
    'install',
    '--no-save',
    '--no-audit',
    '--no-fund',
    '--ignore-scripts',
    `${name}@${version}`,
  ],
  { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] },
);
if (result.status !== 0) {
  console.error(`build: could not install ${name}@${version}; run: npm install --no-save ${name}@${version}`);
  process.exit(1);
}
