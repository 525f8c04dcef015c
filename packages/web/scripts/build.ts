/**
 * `npm run build -w packages/web` (the last step of the root `npm run build`): builds the interface into dist/
 * with Vite, unless dist/ was built from exactly what it would be built from now. The inputs are this
 * package's sources, core's sources (the interface imports them) and the locked dependency versions; they
 * are compared by content, so a checkout that only touches files does not rebuild. Up to date, it prints
 * nothing; built, one line. `--force` builds anyway.
 *
 * What the last build was made from is kept in node_modules/.cache, not in dist/: the server serves every
 * file of dist/.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { gzipSync } from 'node:zlib';

const web = resolve(import.meta.dirname, '..');
const root = resolve(web, '../..');

export interface WebBuild {
  /** Files and directories the build reads (directories are walked). */
  inputs: string[];
  outDir: string;
  /** Where what the last build was made from is recorded. */
  stamp: string;
}

export const WEB_BUILD: WebBuild = {
  inputs: [
    ...['index.html', 'vite.config.ts', 'package.json', 'tsconfig.json', 'src', 'public'].map((p) =>
      join(web, p),
    ),
    join(root, 'packages/core/src'),
    join(root, 'packages/core/package.json'),
    join(root, 'package-lock.json'),
  ],
  outDir: join(web, 'dist'),
  stamp: join(root, 'node_modules/.cache/repoman/web-build.json'),
};

interface Stamp {
  inputs: string;
  /** Every file the build wrote, relative to outDir, with its size: a dist/ changed since is rebuilt. */
  outputs: Record<string, number>;
}

function filesUnder(path: string): string[] {
  if (!existsSync(path)) return [];
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name));
}

/** One digest of every input file's path and content. */
export function inputsDigest(inputs: string[]): string {
  const hash = createHash('sha256');
  const files = [...new Set(inputs.flatMap(filesUnder))].sort();
  for (const file of files) {
    hash.update(`${relative(root, file).split(sep).join('/')}\0`);
    hash.update(createHash('sha256').update(readFileSync(file)).digest());
  }
  return hash.digest('hex');
}

function outputsOf(outDir: string): Record<string, number> {
  const outputs: Record<string, number> = {};
  for (const file of filesUnder(outDir).sort())
    outputs[relative(outDir, file).split(sep).join('/')] = statSync(file).size;
  return outputs;
}

function readStamp(path: string): Stamp | null {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Stamp;
  } catch {
    return null;
  }
}

/** Whether outDir holds, untouched, what a build of these inputs made. */
export function isUpToDate(build: WebBuild, digest = inputsDigest(build.inputs)): boolean {
  const stamp = readStamp(build.stamp);
  if (!stamp || stamp.inputs !== digest || Object.keys(stamp.outputs).length === 0) return false;
  const now = outputsOf(build.outDir);
  const names = Object.keys(now);
  return (
    names.length === Object.keys(stamp.outputs).length && names.every((n) => now[n] === stamp.outputs[n])
  );
}

/** Builds the interface unless it is up to date; returns the line to print, or null when nothing was done. */
export async function buildWeb(build: WebBuild = WEB_BUILD, force = false): Promise<string | null> {
  const digest = inputsDigest(build.inputs);
  if (!force && isUpToDate(build, digest)) return null;
  const vite = await import('vite');
  // Vite's own report is a dozen lines per build; warnings and errors still show.
  await vite.build({ root: web, logLevel: 'warn', build: { outDir: build.outDir, emptyOutDir: true } });
  const outputs = outputsOf(build.outDir);
  mkdirSync(dirname(build.stamp), { recursive: true });
  writeFileSync(build.stamp, `${JSON.stringify({ inputs: digest, outputs } satisfies Stamp)}\n`);
  const scripts = Object.keys(outputs)
    .filter((name) => name.endsWith('.js'))
    .map((name) => readFileSync(join(build.outDir, name)));
  const raw = scripts.reduce((sum, body) => sum + body.length, 0);
  const gzip = scripts.reduce((sum, body) => sum + gzipSync(body, { level: 9 }).length, 0);
  const kb = (n: number) => `${(n / 1000).toFixed(1)} kB`;
  return `Built the web interface into ${relative(root, build.outDir)}: ${kb(raw)} of JavaScript, ${kb(gzip)} compressed`;
}

if (import.meta.main) {
  const line = await buildWeb(WEB_BUILD, process.argv.includes('--force'));
  if (line) process.stdout.write(`${line}\n`);
}
