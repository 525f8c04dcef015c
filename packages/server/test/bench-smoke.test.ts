/**
 * The benchmarks' smoke mode (`npm run bench -- --smoke`): every benchmark, with tiny files and few clients,
 * runs Repoman (the build) beside nginx and prints and writes its tables, charts and the targets. Figures are not checked: speed is the
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

  it('runs every benchmark against Repoman and nginx, and writes the tables, the figures, the charts and the targets', async () => {
    assert.ok(
      existsSync(join(root, 'packages/server/dist/main.js')),
      'the benchmark runs the build: npm run build (npm install does it)',
    );
    out = await mkdtemp(join(tmpdir(), 'repoman-bench-smoke-'));
    const { stdout } = await run(process.execPath, [join(root, 'bench/run.ts'), '--smoke', '--out', out], {
      timeout: 300_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    // Memory: one upload and one download beside nginx.
    assert.match(stdout, /^\| RSS peak, upload \| \d+ MB \| \d+ MB \| [\d.]+ \|$/m);
    // Throughput: every mode, for the smoke's client counts.
    for (const mode of [
      'download, HTTP',
      'download, HTTPS \\(default suite\\)',
      'download, HTTPS \\(AES-128-GCM forced\\)',
      'upload to disk, HTTPS, SHA-256 only',
      'upload to disk, HTTPS, SHA-256 \\+ MD5 \\+ SHA-512',
      'upload, discarded, HTTPS, SHA-256 only',
      'upload, discarded, HTTPS, SHA-256 \\+ MD5 \\+ SHA-512',
    ])
      assert.match(
        stdout,
        new RegExp(`^\\| ${mode} \\| 1 \\| \\d+ MB/s \\| \\d+ MB/s \\| [\\d.]+ \\|`, 'm'),
        mode,
      );
    const results = JSON.parse(await readFile(join(out, 'throughput.json'), 'utf8'));
    assert.equal(results.steps.length, 28, 'seven modes, one and two clients, two servers');
    for (const step of results.steps) {
      assert.ok(step.rate > 0 && step.rss > 0, JSON.stringify(step));
      // Uploads to disk say how long the bytes took to reach the disk after the step (nginx's do not wait).
      assert.equal(
        typeof step.syncSeconds === 'number',
        /^https-upload-(sha256|all)/.test(step.mode),
        step.mode,
      );
    }
    assert.match(
      stdout,
      /^\| upload to disk, HTTPS, SHA-256 only \| 1 \| \d+ MB\/s \| \d+ MB\/s \| \d+ MB\/s \| [\d.]+ \| [\d.]+ \|$/m,
      'the table of uploads until their bytes are on disk',
    );
    assert.match(await readFile(join(out, 'throughput-http-download.svg'), 'utf8'), /<polyline /);
    assert.ok(existsSync(join(out, 'throughput-http-download.png')), 'the PNG chart (rsvg-convert)');
    // Many clients at once: every one complete, with the right SHA-256.
    assert.match(stdout, /^\| complete, right SHA-256 \| (\d+) of \1 \| (\d+) of \2 \| \|$/m);
    // Metadata under load, on both engines, without errors.
    for (const engine of ['sqlite', 'postgres'])
      for (const request of ['whoami', 'show image', 'list images'])
        assert.match(
          stdout,
          new RegExp(
            `^\\| ${engine} \\| ${request}[^|]* \\| \\d+ \\| [\\d.]+ ms \\| [\\d.]+ ms \\| 0 \\|$`,
            'm',
          ),
        );
    // The object store (Swift's S3 API): downloads proxied, redirected and straight from the store, beside the
    // directory, and an upload to each.
    for (const mode of [
      'download, HTTPS, Repoman on its directory',
      'download, HTTPS, Repoman on S3, bytes through Repoman',
      'download, HTTPS to Repoman, 307 to the object store \\(HTTP\\)',
      'download straight from the object store \\(presigned URL, HTTP; reference\\)',
      'upload, HTTPS, to S3 \\(every digest\\)',
    ])
      assert.match(
        stdout,
        new RegExp(
          `^\\| ${mode} \\| 1 \\| \\d+ MB/s \\| [\\d.]+ \\| [\\d.]+\\+[\\d.]+ s \\| \\d+ MB \\|$`,
          'm',
        ),
        mode,
      );
    // The costly-chain flood: the victim with and without it, every attacker's chain refused.
    for (const row of ['without the flood', 'with the flood'])
      assert.match(stdout, new RegExp(`^\\| ${row} \\| \\d+ \\| [\\d.]+ ms \\| [\\d.]+ ms \\|$`, 'm'), row);
    assert.match(stdout, /^The attackers' chains were refused \d+ times \(401\)/m);
    // And the targets, each met or not (figures from tiny files on a busy machine mean nothing here).
    assert.match(stdout, /^\| metadata p99 < 50 ms \| worst [\d.]+ ms .*\| (yes|no) \|$/m);
    assert.match(
      stdout,
      /^\| a victim's p99 under a flood of costly certificate chains ≤ 2x without it \| .* \| (yes|no) \|$/m,
    );
    for (const target of [
      'upload to disk with SHA-256 ≥ 0.8 of nginx PUT, both with the bytes on disk',
      'upload, discarded, with every digest ≥ 0.8 of nginx reading and dropping the body',
    ])
      assert.match(
        stdout,
        new RegExp(`^\\| ${target} \\| worst [\\d.]+ \\(at \\d+ clients\\) \\| (yes|no) \\|$`, 'm'),
      );
  });
});
