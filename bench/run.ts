/**
 * `npm run bench`: every benchmark in turn, with the same options: the memory of one large transfer
 * (memory.ts) and the throughput of 1 to 9 clients (throughput.ts), each beside nginx.
 *
 *   npm run bench -- [--quick | --smoke] [--size-mib N] [--clients 1-9] [--only memory,throughput]
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const args = process.argv.slice(2);
const at = args.indexOf('--only');
const only = at >= 0 ? (args.splice(at, 2)[1] ?? '').split(',') : ['memory', 'throughput'];
const options = (name: string) =>
  name === 'memory'
    ? args
        .filter(
          (a, i) =>
            !['--clients', '--out'].includes(a) && !['--clients', '--out'].includes(args[i - 1] ?? ''),
        )
        .map((a) => (a === '--smoke' ? '--quick' : a))
    : args;
for (const name of only) {
  const result = spawnSync(process.execPath, [join(import.meta.dirname, `${name}.ts`), ...options(name)], {
    stdio: 'inherit',
  });
  if (result.status !== 0) process.exit(result.status ?? 1);
}
