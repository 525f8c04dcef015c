/**
 * The benchmarks' smoke mode (`npm run bench -- --smoke`): every benchmark, with tiny files and few clients,
 * runs Repoman (the build) beside nginx, with one worker and one per core, and prints and writes its tables,
 * charts and the targets (Glance only when asked: the smoke run never installs it). Figures are not checked:
 * speed is the benchmark's business (npm run bench), never a test's.
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
      timeout: 480_000,
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
    // The workers axis: one server process, and one per core (one value on a single core).
    assert.deepEqual(results.workers, [...new Set([1, results.cores])]);
    assert.equal(
      results.steps.length,
      28 * results.workers.length,
      'seven modes, one and two clients, two servers, each workers value',
    );
    for (const workers of results.workers)
      assert.ok(
        results.steps.some((s: { workers: number }) => s.workers === workers),
        `${workers} workers`,
      );
    // The digests' own cost on this machine, and each upload against its CPU budget and the ceiling it implies.
    for (const digest of ['sha256', 'md5', 'sha512']) assert.ok(results.digests[digest] > 0, digest);
    assert.match(
      stdout,
      /^\| upload, discarded, HTTPS, SHA-256 only \| 1 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| /m,
      'the table of uploads against their CPU budget',
    );
    // The late-run check: the first upload step again at the end, on the same servers.
    assert.equal(results.lateRun.first.length, 2);
    assert.equal(results.lateRun.last.length, 2);
    assert.match(stdout, /^\| Repoman \| \d+ MB\/s \| \d+ MB\/s \| [\d.]+ \| /m);
    // Glance: the smoke run leaves it out unless asked (and never installs it), and says so.
    assert.match(stdout, /Glance skipped: the smoke run leaves it out/);
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
    // A chart per axis: clients (above), workers, the uploads' budget, and the many-client waves.
    for (const chart of ['workers-ratio', 'upload-budget', 'scale-evenness', 'scale-rss'])
      assert.match(await readFile(join(out, `${chart}.svg`), 'utf8'), /<polyline /, chart);
    // Many clients at once, in two waves (150 and 500 in a full run): every one complete, with the right SHA-256.
    assert.equal(
      stdout.match(/^\| complete, right SHA-256 \| (\d+) of \1 \| (\d+) of \2 \| \|$/gm)?.length,
      2,
    );
    // Metadata under load, on both engines, without errors.
    for (const engine of ['sqlite', 'postgres'])
      for (const request of ['whoami', 'show image', 'list images'])
        assert.match(
          stdout,
          new RegExp(
            // (the columns after the errors are the metadata benchmark's own business)
            `^\\| ${engine} \\| ${request}[^|]* \\| \\d+ \\| [\\d.]+ ms \\| [\\d.]+ ms \\| 0 \\|`,
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
    // The third-party copy between two servers, beside a download and an upload.
    for (const row of ['HTTPS download from A', 'HTTPS upload to B', 'COPY pull', 'COPY push'])
      assert.match(stdout, new RegExp(`^\\| ${row}[^|]* \\| \\d+ MB/s \\| [\\d.]+ \\|$`, 'm'), row);
    assert.match(
      stdout,
      /^\| a third-party copy of \d+ MiB between two servers ≥ 0\.8 of a plain download between them \| .* \| (yes|no) \|$/m,
    );
    // An image into a cloud (a real Keystone and Glance): the sync both ways, beside an import by hand.
    for (const row of [
      'by hand: `openstack image create`',
      "Repoman's sync, web-download",
      "Repoman's sync, upload",
    ])
      assert.match(
        stdout,
        new RegExp(
          `^\\| ${row.replace(/[()]/g, '\\$&')}[^|]* \\| [\\d.]+ s \\| \\d+ MB/s \\| [\\d.]+ \\|$`,
          'm',
        ),
        row,
      );
    // And the targets, each met or not (figures from tiny files on a busy machine mean nothing here).
    assert.match(stdout, /^\| metadata p99 < 50 ms \| worst [\d.]+ ms .*\| (yes|no) \|$/m);
    assert.match(
      stdout,
      /^\| a victim's p99 under a flood of costly certificate chains ≤ 2x without it \| .* \| (yes|no) \|$/m,
    );
    for (const target of [
      "upload to disk, every digest: CPU per GB ≤ 1.3 x \\(nginx's \\+ the digests'\\)",
      "upload to disk, SHA-256: system CPU per GB ≤ 1.5 x nginx's",
      'download, HTTP: ≥ 0.9 of nginx at every client count',
      "download, HTTPS, default suite: CPU per GB ≤ 1.5 x nginx's",
      "uploads ≥ 2 x Glance's rate [^|]*",
      "downloads ≥ 1.2 x Glance's rate [^|]*",
      "the run's last upload step within 10 % of its first [^|]*",
      '20 simultaneous downloads [^|]*',
    ])
      assert.match(
        stdout,
        new RegExp(`^\\| ${target} \\| [^|]+ \\| (yes|no|not measured) \\|$`, 'm'),
        target,
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
