/**
 * `npm run bench`: every benchmark in turn, with the same options: the memory of one large transfer
 * (memory.ts), the throughput of 1 to 9 clients (throughput.ts) and of 150 (scale.ts), each beside nginx,
 * metadata requests under load on SQLite and PostgreSQL (metadata.ts), and downloads from an object store,
 * proxied and redirected, beside the local directory (s3.ts), and a victim's latency under a flood of costly
 * certificate chains beside the same without it (flood.ts); then the targets, met or not.
 *
 *   npm run bench -- [--quick | --smoke] [--size-mib N] [--only memory,throughput,scale,metadata,s3,flood]
 */
import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { targets, targetTable } from './targets.ts';

const args = process.argv.slice(2);
const at = args.indexOf('--only');
const only =
  at >= 0
    ? (args.splice(at, 2)[1] ?? '').split(',')
    : ['memory', 'throughput', 'scale', 'metadata', 's3', 'flood'];
const options = (name: string) =>
  name === 'memory'
    ? args.filter(
        (a, i) => !['--clients', '--out'].includes(a) && !['--clients', '--out'].includes(args[i - 1] ?? ''),
      )
    : args;
for (const name of only) {
  const result = spawnSync(process.execPath, [join(import.meta.dirname, `${name}.ts`), ...options(name)], {
    stdio: 'inherit',
  });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

const outAt = args.indexOf('--out');
const out = resolve(outAt >= 0 ? (args[outAt + 1] ?? '') : join(import.meta.dirname, 'results'));
const table = targetTable(await targets(out));
await writeFile(join(out, 'targets.md'), `${table}\n`);
console.log(`\nTargets\n\n${table}`);
