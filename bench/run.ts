/**
 * `npm run bench`: every benchmark in turn, with the same options: the memory of one large transfer
 * (memory.ts), the throughput of 1 to 9 clients with 1 and one-per-core workers beside nginx and Glance
 * (throughput.ts) and of 150 and 500 (scale.ts), each beside nginx, metadata requests under load on SQLite and
 * PostgreSQL (metadata.ts), and downloads from an object store, proxied and redirected, beside the local
 * directory (s3.ts), and a victim's latency under a flood of costly certificate chains beside the same without
 * it (flood.ts), a third-party copy between two servers beside a plain download and an upload (tpc.ts), and an
 * image into an OpenStack cloud by Repoman's sync beside a web-download import by hand (clouds.ts); then
 * the targets, met or not.
 *
 *   npm run bench -- [--quick | --smoke] [--size-mib N] [--only memory,throughput,scale,metadata,s3,flood,tpc,clouds]
 *                    [--out DIR] [any benchmark's own option, e.g. --workers 1,2 --glance DIR --modes a,b]
 *
 * Each benchmark gets the options it declares (read from its parseArgs), so that one's option does not stop
 * another; an option no benchmark declares stops the run before anything starts.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { targetReport } from './targets.ts';

const args = process.argv.slice(2);
const at = args.indexOf('--only');
const only =
  at >= 0
    ? (args.splice(at, 2)[1] ?? '').split(',')
    : ['memory', 'throughput', 'scale', 'metadata', 's3', 'flood', 'tpc', 'clouds'];

/** The options a benchmark declares in its parseArgs: each name, and whether it takes a value. */
function declared(name: string): Map<string, boolean> {
  const source = readFileSync(join(import.meta.dirname, `${name}.ts`), 'utf8');
  const options = new Map<string, boolean>();
  for (const m of source.matchAll(/'?([a-z][a-z0-9-]*)'?: \{ type: '(string|boolean)'/g))
    options.set(m[1] as string, m[2] === 'string');
  return options;
}

/** `args` split into options (with their values), each kept for the benchmarks that declare it. */
const given: { name: string; words: string[] }[] = [];
for (let i = 0; i < args.length; i++) {
  const word = args[i] as string;
  const name = word.replace(/^--/, '').split('=')[0] as string;
  const takesValue =
    !word.includes('=') && (name === 'out' || only.some((b) => declared(b).get(name) === true));
  const option = { name, words: takesValue ? [word, args[++i] ?? ''] : [word] };
  // A word after an option no benchmark knows is taken for its value.
  while (!takesValue && !only.some((b) => declared(b).has(name)) && args[i + 1]?.startsWith('-') === false)
    option.words.push(args[++i] as string);
  given.push(option);
}
// --out is also where the targets go.
const unknown = given.filter(({ name }) => name !== 'out' && !only.some((b) => declared(b).has(name)));
if (unknown.length > 0) {
  console.error(`no benchmark of ${only.join(', ')} takes ${unknown.map((o) => `--${o.name}`).join(', ')}`);
  process.exit(2);
}

for (const name of only) {
  const options = declared(name);
  // memory.ts compares one transfer: the client counts and the output directory are the others'.
  const mine = given.filter((o) => options.has(o.name)).flatMap((o) => o.words);
  const result = spawnSync(process.execPath, [join(import.meta.dirname, `${name}.ts`), ...mine], {
    stdio: 'inherit',
  });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

const outAt = args.indexOf('--out');
const out = resolve(outAt >= 0 ? (args[outAt + 1] ?? '') : join(import.meta.dirname, 'results'));
const report = await targetReport(out);
await writeFile(join(out, 'targets.md'), `${report}\n`);
console.log(`\nTargets\n\n${report}`);
