/**
 * scripts/test-setup.sh, the step `npm test` runs first: it installs what is missing as root (apt-get), stops
 * before running anything where it cannot and names the command that would fix it, and when no PostgreSQL
 * answers at the test URL it runs the tests against a throwaway cluster of its own, which it stops and removes
 * afterwards, whether the tests pass, fail or are interrupted.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort } from './helpers/http.ts';

const root = resolve(import.meta.dirname, '../../..');
const SCRIPT = join(root, 'scripts/test-setup.sh');
const asRoot = process.getuid?.() === 0;

interface Run {
  status: number;
  stdout: string;
  stderr: string;
}
function setup(args: string[], env: NodeJS.ProcessEnv, script = SCRIPT, as: string[] = []): Promise<Run> {
  const [file, ...rest] = [...as, 'bash', script, ...args];
  return new Promise((done) => {
    execFile(file as string, rest, { env, timeout: 120_000 }, (error, stdout, stderr) =>
      done({ status: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}

/** A node script for the setup step to run: it prints what it was given, then does `body`. */
const nodeCommand = (body: string) => [
  process.execPath,
  '--input-type=module',
  '-e',
  `const ctl = process.env.REPOMAN_TEST_PG_CTL;
console.log(JSON.stringify({ url: process.env.REPOMAN_TEST_PG_URL, ctl }));
${body}`,
];

describe('the test setup step', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'repoman-test-setup-'));
    await chmod(dir, 0o755);
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  describe('with a tool missing', {
    skip: asRoot ? false : 'needs root (apt-get, and acting as another user)',
  }, () => {
    let bin: string;
    let copy: string;
    before(async () => {
      // A PATH holding every program of this machine but curl, and an apt-get that only notes its arguments.
      bin = join(dir, 'bin');
      await mkdir(bin);
      for (const from of ['/usr/local/bin', '/usr/bin', '/bin', '/usr/sbin', '/sbin'])
        for (const name of await readdir(from).catch(() => [] as string[]))
          if (name !== 'curl' && name !== 'apt-get' && !existsSync(join(bin, name)))
            await symlink(join(from, name), join(bin, name));
      await rm(join(bin, 'node'), { force: true });
      await symlink(process.execPath, join(bin, 'node'));
      await writeFile(join(bin, 'apt-get'), `#!/bin/sh\necho "$*" >> ${join(dir, 'apt-get.log')}\n`, {
        mode: 0o755,
      });
      // The script's own copy, where another user can read it (the clone may be in a private directory).
      copy = join(dir, 'repo');
      await mkdir(join(copy, 'scripts'), { recursive: true });
      await copyFile(SCRIPT, join(copy, 'scripts/test-setup.sh'));
      await copyFile(join(root, 'package.json'), join(copy, 'package.json'));
      await symlink(join(root, 'node_modules'), join(copy, 'node_modules'));
    });

    it('installs it with apt-get as root, says so, then runs the command', async () => {
      const ran = await setup(
        ['sh', '-c', 'echo the tests ran'],
        { ...process.env, PATH: bin },
        join(copy, 'scripts/test-setup.sh'),
      );
      assert.equal(ran.status, 0, ran.stderr);
      assert.match(ran.stderr, /^test setup: installing curl\b/m);
      assert.match(ran.stderr, /^test setup: installed curl\b/m);
      assert.deepEqual((await readFile(join(dir, 'apt-get.log'), 'utf8')).split('\n').slice(0, 2), [
        'update -qq',
        `install -y -qq ${/installed (.*)$/m.exec(ran.stderr)?.[1]}`,
      ]);
      assert.equal(ran.stdout, 'the tests ran\n');
    });

    it('stops before running anything without root, printing the one command that installs it', async () => {
      const marker = join(dir, 'ran');
      const ran = await setup(
        ['touch', marker],
        { PATH: bin, HOME: dir },
        join(copy, 'scripts/test-setup.sh'),
        ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'],
      );
      assert.equal(ran.status, 1, ran.stderr);
      assert.match(ran.stderr, /^test setup: missing the Debian packages curl\b/m);
      assert.match(ran.stderr, /^test setup: fix it with: sudo apt-get install -y curl\b/m);
      assert.equal(existsSync(marker), false, 'the command did not run');
    });
  });

  describe('when no PostgreSQL answers at the test URL', () => {
    const env = async () => ({
      ...process.env,
      REPOMAN_TEST_PG_URL: `postgres://postgres@127.0.0.1:${await freePort()}/test`,
    });

    it('runs the command against a throwaway cluster it can stop and start, then removes it', async () => {
      const ran = await setup(
        nodeCommand(`
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
const pg = createRequire(${JSON.stringify(join(root, 'package.json'))})('pg');
const ask = async () => {
  const client = new pg.Client({ connectionString: process.env.REPOMAN_TEST_PG_URL });
  await client.connect();
  try { return (await client.query('select current_database() as db')).rows[0].db; } finally { await client.end(); }
};
console.log(await ask());
execFileSync(ctl, ['stop'], { stdio: 'ignore' });
console.log(await ask().catch((error) => error.code));
execFileSync(ctl, ['start'], { stdio: 'ignore' });
console.log(await ask());`),
        await env(),
      );
      assert.equal(ran.status, 0, ran.stdout + ran.stderr);
      const [given, ...answers] = ran.stdout.trim().split('\n');
      const { url, ctl } = JSON.parse(given as string);
      assert.match(
        ran.stderr,
        /^test setup: nothing answers at postgres:\/\/\S+ \(.*\): started a throwaway PostgreSQL at (\S+)/m,
      );
      assert.match(url, /^postgres:\/\/postgres@127\.0\.0\.1:\d+\/test$/);
      assert.deepEqual(
        answers,
        ['test', 'ECONNREFUSED', 'test'],
        'the test database, stopped, started again',
      );
      assert.match(ran.stderr, /^test setup: stopped and removed the throwaway PostgreSQL$/m);
      assert.equal(existsSync(resolve(ctl, '..')), false, 'its directory is gone');
    });

    it('removes it when the command fails, with the command’s exit status', async () => {
      const ran = await setup(nodeCommand('process.exitCode = 3;'), await env());
      assert.equal(ran.status, 3);
      assert.equal(existsSync(resolve(JSON.parse(ran.stdout).ctl, '..')), false);
    });

    it('removes it when interrupted, as by Ctrl-C', async () => {
      // Ctrl-C signals the terminal's whole process group: the setup step and the command it runs.
      const child = spawn('bash', [SCRIPT, ...nodeCommand('setInterval(() => {}, 1000);')], {
        env: await env(),
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stderr.on('data', (chunk) => (stderr += chunk));
      const given = await new Promise<{ ctl: string }>((done) =>
        child.stdout.on('data', (chunk) => {
          stdout += chunk;
          if (stdout.includes('\n')) done(JSON.parse(stdout.split('\n')[0] as string));
        }),
      );
      assert.ok(existsSync(given.ctl), 'the cluster is there while the command runs');
      const status = new Promise((done) => child.on('exit', (code, signal) => done(code ?? signal)));
      process.kill(-(child.pid as number), 'SIGINT');
      assert.equal(await status, 130);
      assert.match(stderr, /^test setup: stopped and removed the throwaway PostgreSQL$/m);
      assert.equal(existsSync(resolve(given.ctl, '..')), false);
    });
  });
});
