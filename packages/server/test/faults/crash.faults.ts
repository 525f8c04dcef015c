/**
 * Crashes (reliability, part 1), run by `npm run test:faults` (a minute or so, so not in `npm test`): the real server process is killed with SIGKILL
 * at random moments of uploads (by PUT and by the resumable protocol) and of deletions, renames and rollbacks.
 * After each restart every image is exactly one of its whole versions, the bytes served match the recorded
 * digest, no temporary file is left, and `repoman-server fsck --verify` finds nothing.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { type ClientCredential, freePort, request } from '../helpers/http.ts';

const run = promisify(execFile);
const MAIN = resolve(import.meta.dirname, '../../src/main.ts');
const TRIALS = Number(process.env.REPOMAN_CRASH_TRIALS ?? 24);
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('the server killed at random moments', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let child: ChildProcess | null = null;
  let base: string;
  let ca: string;
  let admin: ClientCredential;

  async function start() {
    child = spawn(process.execPath, [MAIN, 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no start:\n${output}`)), 30_000);
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        if (/serving HTTPS at/.test(output)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child?.stdout?.on('data', onData);
      child?.stderr?.on('data', onData);
      child?.once('exit', (code) => reject(new Error(`exited ${code}:\n${output}`)));
    });
    ca = await readFile(join(dir, 'data', 'ca', 'ca.pem'), 'utf8');
    const pem = await readFile(join(dir, 'data', 'admin', 'admin.pem'), 'utf8');
    admin = { cert: pem, key: pem };
  }

  async function kill() {
    const exited = new Promise((resolve) => child?.once('exit', resolve));
    child?.kill('SIGKILL');
    await exited;
    child = null;
  }

  const api = (method: string, path: string, body?: unknown) =>
    request(`${base}${path}`, method, admin, ca, body === undefined ? {} : { body });

  /** Every image is one of its whole versions; nothing temporary is left but resumable uploads; fsck agrees. */
  async function consistent(known: Map<string, Set<string>>) {
    const database = new DatabaseSync(join(dir, 'data', 'repoman.db'), { readOnly: true });
    const pending = new Set(
      (
        database.prepare('select blob_key from uploads where version is null').all() as { blob_key: string }[]
      ).map((row) => `${row.blob_key}.part`),
    );
    database.close();
    const left = await readdir(join(dir, 'data', 'blobs', 'uploads')).catch(() => [] as string[]);
    assert.deepEqual(
      left.filter((file) => !pending.has(file)),
      [],
      'no temporary file left but those of resumable uploads waiting for their client',
    );
    for (const [name, digests] of known) {
      const image = await api('GET', `/api/images/admin/${name}`);
      if (image.status === 404) continue; // deleted (or renamed away) before the kill
      assert.equal(image.status, 200, image.text);
      if (!image.json.digests) continue;
      assert.ok(digests.has(image.json.digests.sha256), `${name} is a version that was uploaded whole`);
      const bytes = await api('GET', `/api/images/raw/admin/${name}`);
      assert.equal(sha256(bytes.body), image.json.digests.sha256, `${name}'s bytes are its recorded digest`);
    }
    const report = await run(process.execPath, [MAIN, 'fsck', '--verify', '--json'], { env }).then(
      ({ stdout }) => JSON.parse(stdout),
      (error: { stdout: string }) => JSON.parse(error.stdout),
    );
    assert.deepEqual(report.problems, [], JSON.stringify(report.problems));
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'repoman-crash-'));
    const [https, http] = [await freePort(), await freePort()];
    env = {
      ...process.env,
      REPOMAN_DATA_DIR: join(dir, 'data'),
      REPOMAN_HTTPS_LISTEN: '127.0.0.1',
      REPOMAN_HTTPS_PORT: String(https),
      REPOMAN_HTTP_LISTEN: '127.0.0.1',
      REPOMAN_HTTP_PORT: String(http),
      REPOMAN_LOG_LEVEL: 'warn',
      REPOMAN_UPLOADS_KEEP_VERSIONS: '2',
      REPOMAN_WORKERS: '1', // a SIGKILL kills the whole server
    };
    base = `https://localhost:${https}`;
    await start();
  });
  after(async () => {
    if (child) await kill();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it(`keeps every image whole through ${TRIALS} kills during uploads by PUT and by tus`, async (t) => {
    const known = new Map<string, Set<string>>();
    for (const name of ['put.img', 'tus.img']) {
      assert.equal((await api('POST', '/api/images', { name })).status, 201);
      const first = randomBytes(256 * 1024);
      assert.ok([200, 201].includes((await api('PUT', `/api/images/raw/${name}`, first)).status));
      known.set(name, new Set([sha256(first)]));
    }
    let resumed = 0;
    for (let trial = 0; trial < TRIALS; trial++) {
      const name = trial % 2 === 0 ? 'put.img' : 'tus.img';
      const body = randomBytes(4 * 1024 * 1024 + Math.floor(Math.random() * 65536));
      known.get(name)?.add(sha256(body));
      let location: string | undefined;
      const upload =
        name === 'put.img'
          ? api('PUT', `/api/images/raw/${name}`, body)
          : (async () => {
              const created = await request(`${base}/api/uploads`, 'POST', admin, ca, {
                headers: {
                  'tus-resumable': '1.0.0',
                  'upload-length': String(body.length),
                  'upload-metadata': `image ${Buffer.from(name).toString('base64')}`,
                },
              });
              location = created.headers.location as string;
              return request(`${base}${location}`, 'PATCH', admin, ca, {
                body,
                headers: {
                  'tus-resumable': '1.0.0',
                  'content-type': 'application/offset+octet-stream',
                  'upload-offset': '0',
                },
              });
            })();
      upload.catch(() => {}); // the server dies under it
      await sleep(Math.random() * 120);
      await kill();
      await upload.catch(() => {});
      await start();
      await consistent(known);
      if (location) {
        // The resumable upload goes on after the crash from where the server stood, and ends whole.
        const status = await request(`${base}${location}`, 'HEAD', admin, ca, {
          headers: { 'tus-resumable': '1.0.0' },
        });
        if (status.status === 200) {
          const offset = Number(status.headers['upload-offset']);
          const rest = await request(`${base}${location}`, 'PATCH', admin, ca, {
            body: body.subarray(offset),
            headers: {
              'tus-resumable': '1.0.0',
              'content-type': 'application/offset+octet-stream',
              'upload-offset': String(offset),
            },
          });
          assert.equal(rest.status, 204, rest.text);
          const image = await api('GET', `/api/images/admin/${name}`);
          assert.equal(image.json.digests.sha256, sha256(body), 'the resumed upload is the whole body');
          resumed++;
        }
      }
    }
    assert.ok(resumed > 0, 'at least one resumable upload went on after a crash');
    t.diagnostic(
      `${TRIALS} kills; ${resumed} of ${TRIALS / 2} resumable uploads went on after the restart and ended whole`,
    );
  });

  it('keeps every image whole through kills during deletions, renames and rollbacks', async () => {
    const known = new Map<string, Set<string>>();
    for (let trial = 0; trial < 6; trial++) {
      const name = `op-${trial}.img`;
      assert.equal((await api('POST', '/api/images', { name })).status, 201);
      const digests = new Set<string>();
      for (let v = 0; v < 2; v++) {
        const body = randomBytes(512 * 1024);
        digests.add(sha256(body));
        await api('PUT', `/api/images/raw/${name}`, body);
      }
      known.set(name, digests);
      known.set(`renamed-${trial}.img`, digests);
      const operation = [
        () => api('DELETE', `/api/images/${name}`),
        () => api('PATCH', `/api/images/${name}`, { name: `renamed-${trial}.img` }),
        () => api('POST', `/api/images/${name}/rollback`, { version: 1 }),
      ][trial % 3] as () => Promise<unknown>;
      const pending = operation().catch(() => {});
      await sleep(Math.random() * 20);
      await kill();
      await pending;
      await start();
      await consistent(known);
    }
  });
});
