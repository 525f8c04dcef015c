/**
 * The benchmark's smoke mode: the throughput benchmark with tiny files and one client runs Repoman (the
 * build) beside nginx, and prints and writes its table and charts. Figures are not checked: speed is the
 * benchmark's business (npm run bench), never a test's.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '../../..');

describe('npm run bench, smoke mode', () => {
  let out: string | undefined;
  after(async () => {
    if (out) await rm(out, { recursive: true, force: true });
  });

  it('measures every mode against Repoman and nginx, and writes the table, the figures and the charts', async () => {
    assert.ok(
      existsSync(join(root, 'packages/server/dist/main.js')),
      'the benchmark runs the build: npm run build (npm install does it)',
    );
    out = await mkdtemp(join(tmpdir(), 'repoman-bench-smoke-'));
    const { stdout } = await run(
      process.execPath,
      [join(root, 'bench/throughput.ts'), '--smoke', '--clients', '1', '--size-mib', '1', '--out', out],
      { timeout: 180_000, maxBuffer: 16 * 1024 * 1024 },
    );
    for (const mode of [
      'download, HTTP',
      'download, HTTPS \\(default suite\\)',
      'download, HTTPS \\(AES-128-GCM forced\\)',
      'upload to disk, HTTPS, SHA-256 only',
      'upload to disk, HTTPS, SHA-256 \\+ MD5 \\+ SHA-512',
    ])
      assert.match(
        stdout,
        new RegExp(`^\\| ${mode} \\| 1 \\| \\d+ MB/s \\| \\d+ MB/s \\| [\\d.]+ \\|`, 'm'),
        mode,
      );
    const results = JSON.parse(await readFile(join(out, 'throughput.json'), 'utf8'));
    assert.equal(results.steps.length, 10, 'five modes, one client, two servers');
    for (const step of results.steps) assert.ok(step.rate > 0 && step.rss > 0, JSON.stringify(step));
    assert.match(await readFile(join(out, 'throughput-http-download.svg'), 'utf8'), /<polyline /);
    assert.ok(existsSync(join(out, 'throughput-http-download.png')), 'the PNG chart (rsvg-convert)');
  });
});
