/**
 * The real `repoman` executable, built as users install it, run as a child process on the system's Node
 * (20 or newer) against a real server over HTTPS with real certificates and a grid proxy: every command and
 * alias, `--json` output, exit statuses on failures, transfers cut in the middle that resume when the
 * command is run again, and a corrupted download that is caught.
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { createHash, createPrivateKey, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { adler32 } from '../../server/test/helpers/adler32.ts';
import { clientFor } from '../../server/test/helpers/http.ts';
import { makeTestPki, type TestPki } from '../../server/test/helpers/pki.ts';
import { cuttingRelay } from '../../server/test/helpers/relay.ts';
import { startServerFor, type TestServer } from '../../server/test/helpers/server.ts';
import { GLOBAL_OPTIONS, parseCommandLine } from '../src/cli.ts';
import { commands } from '../src/commands/index.ts';
import { buildClient } from './build.ts';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '..');
const BIN = join(root, 'bin', 'repoman.js');

/** The system's Node when it has one (the Node users have), else the one running the tests. */
function systemNode(): string {
  for (const candidate of ['/usr/bin/node', '/usr/local/bin/node']) {
    const probe = spawnSync(candidate, ['-p', 'process.versions.node'], { encoding: 'utf8' });
    if (probe.status === 0 && Number(probe.stdout.split('.')[0]) >= 20) return candidate;
  }
  return process.execPath;
}
const NODE = systemNode();

interface Run {
  status: number;
  stdout: string;
  stderr: string;
}

describe(`the repoman client (on Node ${spawnSync(NODE, ['-v'], { encoding: 'utf8' }).stdout.trim()})`, () => {
  let pki: TestPki;
  let server: TestServer;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  const image = randomBytes(6 * 1024 * 1024 + 17);
  const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

  function repoman(args: string[], extraEnv: NodeJS.ProcessEnv = {}, cwd = dir, node = NODE): Promise<Run> {
    return new Promise((done) => {
      execFile(
        node,
        [BIN, ...args],
        { cwd, env: { ...env, ...extraEnv }, maxBuffer: 16 * 1024 * 1024, timeout: 60_000 },
        (error, stdout, stderr) => {
          const status = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
          done({ status, stdout, stderr });
        },
      );
    });
  }

  /** Runs and asserts success; returns stdout. */
  async function ok(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<string> {
    const run = await repoman(args, extraEnv);
    assert.equal(run.status, 0, `repoman ${args.join(' ')}: ${run.stderr}`);
    return run.stdout;
  }

  /** Runs with --json and parses what it printed. */
  const json = async (args: string[], extraEnv: NodeJS.ProcessEnv = {}) =>
    JSON.parse(await ok([...args, '--json'], extraEnv));

  /** Runs, asserts failure with this exit status, and returns the one-line message. */
  async function fails(args: string[], status: number, pattern: RegExp, extraEnv: NodeJS.ProcessEnv = {}) {
    const run = await repoman(args, extraEnv);
    assert.equal(
      run.status,
      status,
      `repoman ${args.join(' ')} should exit ${status}: ${run.stdout}${run.stderr}`,
    );
    const line = run.stderr.trim().split('\n').at(-1) ?? '';
    assert.match(line, /^\[FAILED\] /);
    assert.match(line, pattern);
    return line;
  }

  before(async () => {
    buildClient();
    pki = await makeTestPki();
    server = await startServerFor(pki, 'sqlite');
    dir = await mkdtemp(join(tmpdir(), 'repoman-client-'));
    const certificates = join(dir, 'certificates');
    await mkdir(certificates);
    await writeFile(join(certificates, 'ca.pem'), pki.ca.certPem);
    const bob = pki.proxy('bob', 'rfc');
    await writeFile(join(dir, 'bob-proxy.pem'), `${bob.cert}\n${bob.key}`, { mode: 0o600 });
    const admin = pki.credential('admin');
    await writeFile(join(dir, 'admin.pem'), admin.cert);
    await writeFile(join(dir, 'admin.key'), admin.key, { mode: 0o600 });
    await writeFile(join(dir, 'image.bin'), image);
    env = {
      PATH: process.env.PATH,
      HOME: join(dir, 'home'),
      X509_CERT_DIR: certificates,
      X509_USER_PROXY: join(dir, 'bob-proxy.pem'),
    };
    await mkdir(join(dir, 'home'));
    await clientFor(server.httpsUrl, pki.ca.certPem, admin).post('/api/users', {
      user_name: 'bob',
      client_dn: pki.dn('bob'),
    });
  });
  after(async () => {
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const asAdmin = { X509_USER_PROXY: '' };
  const adminFlags = () => ['--cert', join(dir, 'admin.pem'), '--key', join(dir, 'admin.key')];

  it('answers version and help without a server, and exits 2 on usage errors', async () => {
    assert.match(await ok(['version']), /^\d+\.\d+\.\d+\n$/);
    const help = await ok(['help']);
    for (const name of [
      'create-image (ci)',
      'list-images (li)',
      'put-image (pi)',
      'get-image (gi)',
      'add-permissions-to-group (apg)',
    ])
      assert.ok(help.includes(name), name);
    assert.match(await ok(['help', 'ci']), /usage: repoman create-image image/);
    assert.match(await ok(['list-images', '--help']), /--all/);
    await fails([], 2, /too few arguments/);
    // -h is help before a command, and after one that does not take -h itself; put-image's -h is --hypervisor.
    assert.match(await ok(['-h']), /^usage: repoman \[global options\] <command>/);
    assert.match(await ok(['--help']), /^usage: repoman \[global options\] <command>/);
    assert.match(await ok(['whoami', '-h']), /^usage: repoman whoami/);
    await fails(['put-image', 'x.img', 'y.img', '-h'], 2, /'-h, --hypervisor <value>' argument missing/);
    await fails(['frobnicate'], 2, /not a repoman command/);
    await fails(['create-image'], 2, /missing image/);
    await fails(['li', '--bogus'], 2, /Unknown option/);
  });

  it('knows every command by its name and its alias, each with --help', async () => {
    for (const command of commands) {
      for (const name of [command.name, ...(command.alias ? [command.alias] : [])]) {
        const help = await ok([name, '--help']);
        assert.match(help, new RegExp(`^usage: repoman ${command.name}\\b`), name);
        assert.match(help, /--json/, `${name} documents --json`);
      }
    }
    await fails(['save-image', 'x.img', '--format', 'vmdk'], 2, /--format takes raw or qcow2/);
  });

  it('takes options before the command as global and after it as the command’s own, for every command', () => {
    const globals = ['-r', 'repo.example.org', '-p', '8443', '-P', 'proxy.pem'];
    const collide = new Set(Object.values(GLOBAL_OPTIONS).flatMap((o) => (o.short ? [o.short] : [])));
    let collisions = 0;
    for (const command of commands) {
      for (const name of [command.name, ...(command.alias ? [command.alias] : [])]) {
        const before = parseCommandLine([...globals, name], commands);
        assert.equal(before.command, command, name);
        assert.deepEqual(
          [before.options.repository, before.options.port, before.options.proxy],
          ['repo.example.org', '8443', 'proxy.pem'],
          `${name}: the options before it are global`,
        );
        for (const [option, spec] of Object.entries(command.options ?? {})) {
          if (!spec.short || !collide.has(spec.short)) continue;
          collisions++;
          const value = spec.type === 'string' ? ['VALUE'] : [];
          const after = parseCommandLine([...globals, name, `-${spec.short}`, ...value], commands);
          assert.deepEqual(
            after.options[option],
            spec.type === 'string' ? 'VALUE' : true,
            `${name} -${spec.short}`,
          );
          const global = Object.entries(GLOBAL_OPTIONS).find(
            ([, g]) => g.short === spec.short,
          )?.[0] as string;
          assert.equal(
            after.options[global],
            global === 'help' ? undefined : before.options[global],
            `${name} -${spec.short} leaves --${global} as given before the command`,
          );
        }
      }
    }
    assert.ok(collisions >= 6, 'create-group and modify-group -p, the image commands’ -h, are covered');
  });

  it('goes where the global options before the command say, without a configuration', async () => {
    const admin = pki.proxy('admin', 'rfc');
    await writeFile(join(dir, 'admin-proxy.pem'), `${admin.cert}\n${admin.key}`, { mode: 0o600 });
    const bare = { HOME: join(dir, 'bare-home'), X509_USER_PROXY: '' };
    await mkdir(bare.HOME, { recursive: true });
    const to = ['-r', 'localhost', '-p', String(server.httpsPort), '-P', join(dir, 'admin-proxy.pem')];
    const created = JSON.parse(
      await ok([...to, 'create-group', 'early', '-u', 'bob', '-p', 'image_create', '--json'], bare),
    );
    assert.deepEqual(
      [created.name, created.users, created.permissions],
      ['early', ['bob'], ['image_create']],
    );
    const modified = JSON.parse(await ok([...to, 'mg', 'early', '-p', 'image_modify', '--json'], bare));
    assert.deepEqual(modified.permissions, ['image_modify']);
    assert.match(await ok([...to, 'rg', 'early', '-f'], bare), /Removed group early/);
  });

  it('says what is missing before a configuration exists, then make-config writes one', async () => {
    await fails(['whoami'], 1, /make-config/);
    const written = await ok(['make-config', '-r', 'localhost', '-p', String(server.httpsPort)]);
    assert.match(written, /New repoman configuration file written to .*\.repoman\/repoman\.conf/);
    const conf = await readFile(join(dir, 'home/.repoman/repoman.conf'), 'utf8');
    assert.match(conf, /^repository: localhost$/m);
    assert.match(conf, new RegExp(`^port: ${server.httpsPort}$`, 'm'));
    await ok(['mc', '-r', 'localhost', '-p', String(server.httpsPort)]);
    assert.ok(existsSync(join(dir, 'home/.repoman/repoman.conf.bak')), 'the previous file is kept');
    assert.match(await ok(['make-config', '--stdout']), /\[ThisImage\]/);
    const about = await json(['about']);
    assert.equal(about.repository, 'localhost');
    assert.equal(about.port, server.httpsPort);
    assert.match(about.credentials, /bob-proxy\.pem/);
  });

  it('knows who the proxy belongs to', async () => {
    assert.equal(await ok(['whoami']), 'bob\n');
    const me = await json(['whoami']);
    assert.equal(me.user_name, 'bob');
    assert.equal(me.client_dn, pki.dn('bob'));
  });

  it('creates, lists, shows, modifies and removes images, with aliases and --json', async () => {
    const created = await json([
      'ci',
      'rhel.img',
      '-d',
      'Analysis VM',
      '--os_type',
      'linux',
      '--os_arch',
      'x86_64',
    ]);
    assert.equal(created.owner, 'bob');
    assert.equal(created.description, 'Analysis VM');
    assert.match(
      await ok(['create-image', 'other.img', '-a', 'true']),
      /\[OK\] Created image bob\/other\.img/,
    );
    const table = await ok(['li']);
    assert.match(table, /^Image\s+Owner\s+Size/m);
    assert.match(table, /^rhel\.img\s+bob\s/m);
    assert.match(table, /other\.img.*public/);
    assert.deepEqual((await ok(['list-images', '-s'])).trim().split('\n'), ['bob/other.img', 'bob/rhel.img']);
    assert.match(
      await ok(['li', '-U']),
      /bob\/other\.img\n {2}http:\/\/.*\/api\/images\/raw\/bob\/other\.img\n {2}https:/,
    );
    const full = await ok(['li', 'rhel.img']);
    assert.match(full, /^\s*description : Analysis VM$/m);
    assert.match(full, /^\s*created : \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/m); // local time
    const listed = await json(['li']);
    assert.deepEqual(listed.map((i: { name: string }) => i.name).sort(), ['other.img', 'rhel.img']);
    const modified = await json(['mi', 'other.img', '-n', 'renamed.img', '-d', 'New', '-a', 'false']);
    assert.equal(modified.name, 'renamed.img');
    assert.equal(modified.unauthenticated_access, false);
    await fails(['mi', 'renamed.img', '-a', 'maybe'], 2, /true or false/);
    await fails(['ri', 'renamed.img'], 1, /add --force/); // no terminal to ask on
    assert.match(await ok(['ri', 'renamed.img', '-f']), /\[OK\] Removed image bob\/renamed\.img/);
    await fails(['li', 'renamed.img'], 1, /No image 'renamed\.img'/);
  });

  it('uploads with put-image and downloads with get-image, checked by SHA-256, and keeps versions', async () => {
    const put = await json(['pi', join(dir, 'image.bin'), 'rhel.img']);
    assert.equal(put.version, 1);
    assert.equal(put.digests.sha256, sha256(image));
    await fails(['put-image', join(dir, 'image.bin'), 'rhel.img'], 1, /already holds version 1.*--force/);
    assert.match(await ok(['put-image', join(dir, 'image.bin'), 'rhel.img', '-f']), /version 2, sha256 /);
    assert.match(await ok(['li']), /^rhel\.img\s+bob\s+6\.0 MiB\s+raw\s+6\.0 MiB\s+2\s/m);
    // One image in full shows every digest, ADLER32 among them (what grid tools compare).
    assert.match(await ok(['li', 'rhel.img']), new RegExp(`^ *digests\\.adler32 : ${adler32(image)}$`, 'm'));
    const out = join(dir, 'copy.img');
    assert.match(await ok(['gi', 'rhel.img', out]), /saved to .*copy\.img/);
    assert.equal(sha256(await readFile(out)), sha256(image));
    await fails(['get-image', 'rhel.img', out], 1, /exists: add --force/);
    await mkdir(join(dir, 'downloads'));
    await ok(['get-image', 'bob/rhel.img', join(dir, 'downloads')]);
    assert.ok(existsSync(join(dir, 'downloads', 'rhel.img')));
    const versions = await json(['lv', 'rhel.img']);
    assert.deepEqual(
      versions.items.map((v: { version: number }) => v.version),
      [2, 1],
    );
    assert.match(await ok(['list-versions', 'rhel.img']), /^\s+2\*\s/m);
    assert.match(await ok(['rollback', 'rhel.img', '1']), /serves version 1 again/);
    assert.equal((await json(['li', 'rhel.img'])).version, 1);
    await fails(['rb', 'rhel.img', '9'], 1, /no version 9/);
    await fails(['pi', join(dir, 'missing.bin'), 'rhel.img', '-f'], 2, /Cannot read/);
    await fails(
      ['pi', join(dir, 'image.bin'), 'rhel.img', '-f', '--format', 'qcow2'],
      1,
      /declared qcow2, but its bytes are raw/,
    );
  });

  it('prints a capability URL with share-url that curl uses without a certificate, to read or to write', async () => {
    const bytes = randomBytes(100_000);
    await writeFile(join(dir, 'shared.bin'), bytes);
    await ok(['create-image', 'shared-url.img']);
    await ok(['pi', join(dir, 'shared.bin'), 'shared-url.img']);
    const url = (await ok(['share-url', 'shared-url.img', '--expires', '10m'])).trim();
    assert.match(url, /^https:\/\/.*\/api\/images\/raw\/bob\/shared-url\.img\?authz=MDA[\w-]+$/);
    const curl = (args: string[]) =>
      run('curl', ['-sS', '--fail-with-body', '--cacert', join(dir, 'certificates', 'ca.pem'), ...args], {
        encoding: 'buffer',
        maxBuffer: 16 * 1024 * 1024,
      });
    assert.equal(sha256((await curl([url])).stdout), sha256(bytes));
    await assert.rejects(curl(['-T', join(dir, 'shared.bin'), url]), /403/, 'the default URL only reads');
    const issued = await json(['su', 'bob/shared-url.img', '-e', 'PT5M', '--write']);
    const left = Date.parse(issued.expires) - Date.now();
    assert.ok(left > 4 * 60_000 && left <= 5 * 60_000 + 1000, `expires in ${left} ms`);
    await writeFile(join(dir, 'shared2.bin'), bytes.subarray(0, 1000));
    await curl(['-T', join(dir, 'shared2.bin'), issued.uri.targetWithMacaroon]);
    assert.equal((await json(['li', 'shared-url.img'])).size, 1000);
    await fails(['share-url', 'shared-url.img', '--expires', 'soon'], 2, /--expires takes 30m, 1h/);
    await fails(['share-url', 'missing.img'], 1, /No image 'missing\.img'/);
  });

  it('stores a compressed upload decompressed, converts it, and downloads a variant checked by SHA-256', async () => {
    const raw = join(dir, 'disk.raw');
    await writeFile(raw, Buffer.concat([image.subarray(0, 4 * 1024 * 1024), Buffer.alloc(2 * 1024 * 1024)])); // whole sectors
    await run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, join(dir, 'disk.qcow2')]);
    await run('gzip', ['-k', '-f', join(dir, 'disk.qcow2')]);
    await ok(['ci', 'disk']);
    const put = await json(['pi', join(dir, 'disk.qcow2.gz'), 'disk', '--decompress']);
    assert.deepEqual([put.disk_format, put.compression], ['qcow2', null]);
    assert.match(
      await ok(['convert-image', 'disk', '--format', 'vmdk']),
      /converted to vmdk: .*\n {2}repoman get-image bob\/disk --format vmdk/,
    );
    assert.match(await ok(['lv', 'disk']), /qcow2\s+vmdk/);
    // No raw variant yet: get-image converts on the server first, then downloads it.
    const out = join(dir, 'disk-copy.raw');
    assert.match(await ok(['gi', 'disk', out, '--format', 'raw']), /saved to .*disk-copy\.raw/);
    assert.equal(sha256(await readFile(out)), sha256(await readFile(raw)));
    await fails(['cv', 'disk', '--format', 'floppy'], 2, /not a format Repoman converts to/);
    await fails(['cv', 'disk'], 2, /Say which format/);
    await fails(['cv', 'disk', '--format', 'qcow2'], 1, /qcow2 already/);
  });

  it('resumes an upload cut in the middle when the same command runs again', async () => {
    await ok(['ci', 'cut.img']);
    const relay = await cuttingRelay(server.httpsPort, image.length / 2);
    try {
      const through = ['-p', String(relay.port), '--retries', '0'];
      await fails(['pi', join(dir, 'image.bin'), 'cut.img', ...through], 1, /closed|reset|hang up|ended/i);
      assert.equal((await json(['li', 'cut.img'])).version, 0, 'nothing published from a cut upload');
      const again = await repoman(['pi', join(dir, 'image.bin'), 'cut.img', ...through]);
      assert.equal(again.status, 0, again.stderr);
      const resumedAt = /Resuming the upload at ([\d.]+) MiB/.exec(again.stderr);
      assert.ok(resumedAt && Number(resumedAt[1]) > 1, again.stderr);
      assert.ok(relay.upstreamBytes < image.length * 1.3, `${relay.upstreamBytes} bytes sent in all`);
    } finally {
      await relay.close();
    }
    const shown = await json(['li', 'cut.img']);
    assert.equal(shown.digests.sha256, sha256(image));
  });

  it('goes on by itself after a cut within one run, upload and download alike', async () => {
    await ok(['ci', 'retried.img']);
    const up = await cuttingRelay(server.httpsPort, image.length / 3);
    try {
      const run = await repoman(['pi', join(dir, 'image.bin'), 'retried.img', '-p', String(up.port)]);
      assert.equal(run.status, 0, run.stderr);
      assert.match(run.stderr, /The upload was cut .*going on at/);
    } finally {
      await up.close();
    }
    const down = await cuttingRelay(server.httpsPort, image.length / 3, 'down');
    try {
      const out = join(dir, 'retried.out');
      const run = await repoman(['gi', 'retried.img', out, '-p', String(down.port)]);
      assert.equal(run.status, 0, run.stderr);
      assert.match(run.stderr, /The download was cut/);
      assert.equal(sha256(await readFile(out)), sha256(image));
    } finally {
      await down.close();
    }
  });

  it('resumes a download cut in the middle, and refuses a corrupted one', async () => {
    const relay = await cuttingRelay(server.httpsPort, image.length / 2, 'down');
    const out = join(dir, 'resumed.img');
    try {
      const through = ['-p', String(relay.port), '--retries', '0'];
      await fails(['gi', 'cut.img', out, ...through], 1, /closed|reset|aborted|hang up|ended/i);
      assert.ok((await stat(`${out}.part`)).size > 0, 'the partial file stays');
      const again = await repoman(['gi', 'cut.img', out, ...through]);
      assert.equal(again.status, 0, again.stderr);
      assert.match(again.stderr, /Resuming the download at/);
      assert.ok(relay.downstreamBytes < image.length * 1.3, `${relay.downstreamBytes} bytes received in all`);
    } finally {
      await relay.close();
    }
    assert.equal(sha256(await readFile(out)), sha256(image));

    // Flip bytes of the stored blob: the server serves them under the recorded digest; the client notices.
    const blobs = join(server.dir, 'data', 'blobs', 'blobs');
    for (const fan of await readdir(blobs)) {
      for (const name of await readdir(join(blobs, fan))) {
        const file = join(blobs, fan, name);
        const handle = await open(file, 'r+');
        await handle.write(Buffer.alloc(64, 0xee), 0, 64, 1000);
        await handle.close();
      }
    }
    const corrupt = join(dir, 'corrupt.img');
    await fails(['gi', 'cut.img', corrupt], 1, /corrupt/);
    assert.ok(!existsSync(corrupt) && !existsSync(`${corrupt}.part`), 'nothing corrupt is left behind');
  });

  it('manages users and groups as an admin, and shares images', async () => {
    const as = (args: string[]) => [...args, ...adminFlags()];
    const created = await json(
      as(['cu', 'pam', pki.dn('pam'), '-e', 'pam@example.org', '-f', 'Pam Example']),
      asAdmin,
    );
    assert.equal(created.user_name, 'pam');
    assert.match(await ok(as(['lu']), asAdmin), /^pam\s+Pam Example\s+\/C=CA/m);
    assert.equal((await json(as(['lu', 'pam']), asAdmin)).email, 'pam@example.org');
    assert.equal(
      (await json(as(['mu', 'pam', '-f', 'Pamela Example']), asAdmin)).full_name,
      'Pamela Example',
    );
    const group = await json(as(['cg', 'atlas', '-p', 'image_create', '-u', 'bob']), asAdmin);
    assert.deepEqual(group.users, ['bob']);
    assert.deepEqual(group.permissions, ['image_create']);
    assert.match(await ok(as(['aug', 'atlas', 'pam']), asAdmin), /Added user pam to group atlas/);
    assert.deepEqual((await json(as(['lg', 'atlas']), asAdmin)).users.sort(), ['bob', 'pam']);
    assert.match(
      await ok(as(['apg', 'atlas', 'image_delete,image_modify']), asAdmin),
      /Added permission image_modify/,
    );
    assert.match(await ok(as(['rpg', 'atlas', 'image_delete']), asAdmin), /Removed permission image_delete/);
    const exact = await json(
      as(['mg', 'atlas', '-p', 'image_create', '-u', 'bob,pam', '-n', 'atlas2']),
      asAdmin,
    );
    assert.equal(exact.name, 'atlas2');
    assert.deepEqual(exact.permissions, ['image_create']);
    assert.match(await ok(as(['rug', 'atlas2', 'pam']), asAdmin), /Removed user pam from group atlas2/);
    assert.match(await ok(['lg']), /^atlas2\s+bob/m); // bob's own groups
    assert.match(await ok(as(['lg', '-a', '-s']), asAdmin), /^admins$/m);

    assert.match(await ok(['siu', 'rhel.img', 'pam']), /Shared image rhel\.img with user pam/);
    assert.match(await ok(['sig', 'rhel.img', 'atlas2']), /Shared image rhel\.img with group atlas2/);
    const shared = await json(['li', 'rhel.img']);
    assert.deepEqual(shared.shared_with, { users: ['pam'], groups: ['atlas2'] });
    assert.match(await ok(['li', '-u', 'pam']), /rhel\.img/);
    assert.deepEqual((await ok(['li', '-g', 'atlas2', '-s'])).trim(), 'bob/rhel.img');
    await fails(['li', '-g', 'atlas2', '-a'], 2, /Choose one/);
    await ok(['uiu', 'rhel.img', 'pam']);
    await ok(['unshare-image-with-groups', 'rhel.img', 'atlas2']);
    assert.deepEqual((await json(['li', 'rhel.img'])).shared_with, { users: [], groups: [] });

    assert.match(await ok(as(['rg', 'atlas2', '-f']), asAdmin), /Removed group atlas2/);
    assert.match(await ok(as(['ru', 'pam', '-f']), asAdmin), /Removed user pam/);
  });

  it('gives an image away as an offer the receiver accepts, declines or its giver cancels; admins give at once', async () => {
    const as = (args: string[]) => [...args, ...adminFlags()];
    await ok(as(['cu', 'una', pki.dn('una')]), asAdmin);
    const una = pki.credential('una');
    await writeFile(join(dir, 'una.pem'), una.cert);
    await writeFile(join(dir, 'una.key'), una.key, { mode: 0o600 });
    const asUna = (args: string[]) => [
      ...args,
      '--cert',
      join(dir, 'una.pem'),
      '--key',
      join(dir, 'una.key'),
    ];
    const id = (out: string) => /repoman accept-transfer ([\w-]+)/.exec(out)?.[1] ?? assert.fail(out);

    // bob, not an admin: -N makes an offer, says so, and tells what una runs; the image stays bob's.
    await ok(['ci', 'gift.img', '-d', 'For una']);
    const offered = await ok(['mi', 'gift.img', '-N', 'una']);
    assert.match(
      offered,
      /^\[OK\] Offered bob\/gift\.img to una until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d; it stays yours/,
    );
    assert.match(offered, /\n {2}una accepts it with: repoman accept-transfer [\w-]+ /);
    const gift = id(offered);
    assert.equal((await json(['li', 'gift.img'])).owner, 'bob');
    const mine = await json(['lt', '--from']);
    assert.deepEqual(
      mine.map((t: { id: string; image: string; to: string }) => [t.id, t.image, t.to]),
      [[gift, 'bob/gift.img', 'una']],
    );
    assert.deepEqual(await json(['list-transfers', '--to']), [], 'nothing offered to bob');
    const table = await repoman(asUna(['lt']), asAdmin);
    assert.equal(table.status, 0, table.stderr);
    assert.match(table.stdout, /^ID\s+Image\s+From\s+To\s+Size\s+Expires/m);
    assert.match(table.stdout, new RegExp(`^${gift}\\s+bob/gift\\.img\\s+bob\\s+una\\s+0 B\\s`, 'm'));
    assert.match(table.stderr, /repoman accept-transfer ID \[--name NEW\]/);
    assert.equal((await json(asUna(['lt', gift]), asAdmin)).description, 'For una');

    // una has an image of that name: the accept fails (one line, exit 1, with what to do), the offer stays.
    await ok(asUna(['ci', 'gift.img']), asAdmin);
    await fails(asUna(['at', gift]), 1, /already exists in namespace 'una'.*--name NAME/, asAdmin);
    assert.match(
      await ok(asUna(['accept-transfer', gift, '-n', 'gift-from-bob.img']), asAdmin),
      /^\[OK\] Accepted bob\/gift\.img from bob: it is now una\/gift-from-bob\.img$/m,
    );
    await fails(['li', 'gift.img'], 1, /No image 'gift\.img' in namespace 'bob'/);
    await fails(asUna(['at', gift]), 1, /No transfer offer/, asAdmin); // answered already

    // Declined: the image stays bob's. Other changes go with -N (renamed first, then offered).
    await ok(['ci', 'spare.img']);
    const spare = await json(['mi', 'spare.img', '-N', 'una', '-n', 'spare2.img', '-d', 'Spare']);
    assert.deepEqual([spare.image, spare.to, spare.description], ['bob/spare2.img', 'una', 'Spare']);
    await fails(['dt', spare.id], 1, /Only una, to whom it is offered, may decline it/); // bob gave it
    assert.match(
      await ok(asUna(['decline-transfer', spare.id]), asAdmin),
      /\[OK\] Declined bob\/spare2\.img from bob; it stays theirs/,
    );
    assert.equal((await json(['li', 'spare2.img'])).owner, 'bob');

    // Cancelled by its giver: una has nothing left to answer.
    const again = id(await ok(['mi', 'spare2.img', '-N', 'una']));
    await fails(asUna(['ct', again]), 1, /Only bob, who made the offer, or an admin may cancel it/, asAdmin);
    assert.match(
      await ok(['cancel-transfer', again]),
      /\[OK\] Cancelled the offer of bob\/spare2\.img to una; it stays bob's/,
    );
    assert.deepEqual(await json(asUna(['lt']), asAdmin), []);
    await fails(['mi', 'spare2.img', '-N', 'nobody'], 1, /nobody/);
    assert.equal((await json(['li', 'spare2.img'])).owner, 'bob');

    // An admin gives directly, and says so.
    assert.match(
      await ok(as(['mi', 'bob/spare2.img', '-N', 'una']), asAdmin),
      /^\[OK\] Gave bob\/spare2\.img to una directly \(as an admin: there is nothing for una to accept\); it is now una\/spare2\.img\n$/,
    );
    assert.equal((await json(as(['li', 'una/spare2.img']), asAdmin)).owner, 'una');
    await fails(['lt', '--to', '--from'], 2, /Choose one of --to and --from/);
  });

  it('asks the server before asking a non-owner to confirm put-image and remove-image', async () => {
    const asUna = (args: string[]) => [
      ...args,
      '--cert',
      join(dir, 'una.pem'),
      '--key',
      join(dir, 'una.key'),
    ];
    await ok(['siu', 'rhel.img', 'una']); // una may read it, not change it
    try {
      // Without a terminal a question fails with "add --force": the server's refusal must come first.
      await fails(asUna(['pi', join(dir, 'image.bin'), 'bob/rhel.img']), 1, /may not/i, asAdmin);
      await fails(asUna(['ri', 'bob/rhel.img']), 1, /may not/i, asAdmin);
      // The owner is still asked, and nothing is left of the upload the server had accepted.
      await fails(['pi', join(dir, 'image.bin'), 'rhel.img'], 1, /already holds version .*--force/);
      const uploads = join(dir, 'home', '.repoman', 'uploads.json');
      if (existsSync(uploads)) assert.deepEqual(JSON.parse(await readFile(uploads, 'utf8')), {});
      await fails(['ri', 'rhel.img'], 1, /add --force/);
      assert.equal((await json(['li', 'rhel.img'])).name, 'rhel.img');
    } finally {
      await ok(['uiu', 'rhel.img', 'una']);
    }
  });

  it('exits 1 with the server’s reason on 403, 404 and 409', async () => {
    await fails(['cu', 'eve', '/CN=Eve'], 1, /not allowed|may not|permission/i);
    await fails(['li', 'nothing.img'], 1, /No image 'nothing\.img'/);
    await fails(['ci', 'rhel.img'], 1, /already exists/);
    const denied = await repoman(['cu', 'eve', '/CN=Eve', '--json']);
    assert.equal(denied.status, 1);
    assert.equal(JSON.parse(denied.stdout).error.code, 'forbidden');
  });

  it('prints a failure as a JSON document with --json, the server’s code apart from the client’s own', async () => {
    const failure = async (args: string[], status: number, extraEnv: NodeJS.ProcessEnv = {}) => {
      const run = await repoman([...args, '--json'], extraEnv);
      assert.equal(run.status, status, `repoman ${args.join(' ')}: ${run.stdout}${run.stderr}`);
      assert.match(run.stderr, /^\[FAILED\] /m);
      return JSON.parse(run.stdout).error;
    };
    const missing = await failure(['li', 'nothing.img'], 1);
    assert.deepEqual([missing.code, missing.status], ['image_not_found', 404]);
    assert.match(missing.message, /No image 'nothing\.img'/);
    const usage = await failure(['create-image'], 2);
    assert.equal(usage.code, 'usage_error');
    assert.equal(usage.status, undefined);
    assert.equal((await failure(['li', '--bogus'], 2)).code, 'usage_error');
    // An unforeseen failure on this machine (here: a home that is a file) is local, not the server's.
    const file = join(dir, 'home-is-a-file');
    await writeFile(file, '');
    const local = await failure(['make-config'], 1, { HOME: file });
    assert.equal(local.code, 'local_error');
    assert.equal(local.details.errno, 'ENOTDIR');
  });

  it('refuses an unreachable server, an untrusted one, and an expired proxy, each with a clear message', async () => {
    const closed = net.createServer();
    await new Promise<void>((done) => closed.listen(0, '127.0.0.1', done));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise((done) => closed.close(done));
    await fails(['whoami', '-p', String(port)], 1, /Cannot reach https:\/\/localhost:\d+/);

    const otherCa = await makeTestPki();
    const wrong = join(dir, 'other-ca');
    await mkdir(wrong);
    await writeFile(join(wrong, 'ca.pem'), otherCa.ca.certPem);
    await fails(['whoami'], 1, /not trusted by the CAs in .*other-ca/, { X509_CERT_DIR: wrong });

    const expired = pki.bad('expired');
    await writeFile(join(dir, 'expired.pem'), `${expired.cert}\n${expired.key}`, { mode: 0o600 });
    await fails(['whoami', '-P', join(dir, 'expired.pem')], 1, /expired on .*grid-proxy-init/);
    await fails(
      ['whoami', '--cert', join(dir, 'none.pem'), '--key', join(dir, 'none.key')],
      1,
      /The certificate .*none\.pem \(--cert\) does not exist/,
    );
    await fails(
      ['whoami', '--cert', join(dir, 'admin.pem')],
      1,
      /admin\.pem \(--cert\) holds no private key: give its key with --key FILE/,
    );
    await fails(
      ['whoami', '--cert', join(dir, 'admin.pem'), '--key', join(dir, 'none.key')],
      1,
      /The key .*none\.key \(--key\) does not exist/,
    );
    await fails(['whoami'], 1, /No credentials: no proxy/, { X509_USER_PROXY: '' });
  });

  it('takes --cert alone when the file holds the key too, and over $X509_USER_PROXY', async () => {
    const admin = pki.credential('admin');
    await writeFile(join(dir, 'admin-user.pem'), `${admin.cert}\n${admin.key}`, { mode: 0o600 });
    assert.equal(await ok(['whoami', '--cert', join(dir, 'admin-user.pem')]), 'admin\n'); // bob's proxy is in the environment
  });

  /** Runs in a pseudo-terminal (util-linux `script`), typing `typed` after a moment; returns what it showed. */
  function inTerminal(args: string[], typed?: string): Promise<Run> {
    return new Promise((done) => {
      const child = execFile(
        'script',
        ['-qec', [NODE, BIN, ...args].join(' '), '/dev/null'],
        { cwd: dir, env, timeout: 60_000 },
        (error, stdout, stderr) => done({ status: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
      );
      if (typed !== undefined) setTimeout(() => child.stdin?.write(`${typed}\n`), 1000);
    });
  }

  it('shows a progress bar on a terminal and none on a pipe', async () => {
    await ok(['ci', 'progress.img']);
    await ok(['pi', join(dir, 'image.bin'), 'progress.img']); // the blobs before were corrupted on purpose
    const piped = await repoman(['gi', 'progress.img', join(dir, 'piped.img')]);
    assert.equal(piped.status, 0, piped.stderr);
    assert.doesNotMatch(piped.stderr, /downloading/);
    const shown = await inTerminal(['gi', 'progress.img', join(dir, 'tty.img')]);
    assert.equal(shown.status, 0, shown.stdout);
    assert.match(shown.stdout, /downloading 100% 6\.0 MiB of 6\.0 MiB .*\/s .*left/);
  });

  it('asks for the passphrase of an encrypted key on a terminal', async () => {
    const locked = createPrivateKey(await readFile(join(dir, 'admin.key'), 'utf8')).export({
      type: 'pkcs8',
      format: 'pem',
      cipher: 'aes-256-cbc',
      passphrase: 'open sesame',
    });
    await writeFile(join(dir, 'locked.key'), locked, { mode: 0o600 });
    const flags = ['whoami', '--cert', join(dir, 'admin.pem'), '--key', join(dir, 'locked.key')];
    const right = await inTerminal(flags, 'open sesame');
    assert.equal(right.status, 0, right.stdout);
    assert.match(
      right.stdout,
      /Passphrase for .*locked\.key: \r?\n(\r?\n)*\(with the certificate .*locked\.key\)\r?\nadmin/,
    );
    assert.doesNotMatch(right.stdout, /open sesame/, 'the passphrase is not echoed');
    const wrong = await inTerminal(flags, 'guess');
    assert.notEqual(wrong.status, 0);
    assert.match(wrong.stdout, /Cannot unlock the key .*wrong passphrase/);
    await fails(flags, 1, /no terminal to ask for its passphrase/); // piped: no prompt, a clear refusal
  });

  it('gives up on a silent server, refuses local mistakes without retrying, and survives a broken configuration', async () => {
    const silent = net.createServer((socket) => socket.on('error', () => {})); // accepts, never answers
    await new Promise<void>((done) => silent.listen(0, '127.0.0.1', done));
    try {
      const started = Date.now();
      await fails(
        ['whoami', '-p', String((silent.address() as net.AddressInfo).port), '--timeout', '1'],
        1,
        /no answer for 1 s/,
      );
      assert.ok(Date.now() - started < 20_000);
    } finally {
      silent.close();
    }
    await fails(['gi', 'progress.img', join(dir, 'no-such-dir', 'x.img')], 2, /no directory .*no-such-dir/);
    await fails(['mc', '-p', 'abc', '--stdout'], 2, /Invalid port 'abc'/);
    await fails(['whoami'], 1, /X509_USER_PROXY names .*missing\.pem, which does not exist/, {
      X509_USER_PROXY: join(dir, 'missing.pem'),
    });
    const broken = join(dir, 'broken.conf');
    await writeFile(broken, '[Repository]\ngarbage line\n');
    await fails(['whoami'], 1, /broken\.conf:2: cannot read 'garbage line'/, {
      REPOMAN_CLIENT_CONFIG: broken,
    });
    assert.match(await ok(['version'], { REPOMAN_CLIENT_CONFIG: broken }), /^\d/);
  });

  it('gives up at once when the quota is full, instead of trying again', async () => {
    const admin = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('admin'));
    const usage = (await admin.get('/api/users/bob')).json.usage as number;
    assert.equal((await admin.patch('/api/users/bob', { quota: usage + 10 })).status, 200);
    const refused = async () =>
      ((await admin.get('/api/audit?limit=1000')).json.items as { outcome: string }[]).filter(
        (e) => e.outcome === 'quota_exceeded',
      ).length;
    const before = await refused();
    try {
      await ok(['ci', 'full.img']);
      await fails(['pi', join(dir, 'image.bin'), 'full.img', '--force'], 1, /quota/i);
      // one refusal: a full quota is not a moment's trouble that another try could cure
      assert.equal((await refused()) - before, 1);
    } finally {
      await admin.patch('/api/users/bob', { quota: null });
      await repoman(['ri', 'full.img', '--force']);
    }
  });

  it('takes end of input at a question as no', async () => {
    const answered = await inTerminal(['ri', 'progress.img'], '\u0004');
    assert.notEqual(answered.status, 0);
    assert.match(answered.stdout, /\[FAILED\] remove-image: Nothing was changed/);
    assert.equal((await json(['li', 'progress.img'])).name, 'progress.img');
  });

  it('installs from a packed tarball with no dependencies, and runs', async () => {
    const npm = (args: string[], cwd: string) =>
      new Promise<string>((done, fail) =>
        execFile(
          'npm',
          args,
          // npm test runs the tests through `npm run --silent`, which its children would inherit
          {
            cwd,
            env: { ...process.env, npm_config_cache: join(dir, 'npm-cache'), npm_config_loglevel: 'notice' },
          },
          (error, stdout, stderr) =>
            error ? fail(new Error(`npm ${args.join(' ')}: ${stderr}`)) : done(stdout),
        ),
      );
    const packs = join(dir, 'packs');
    await mkdir(packs);
    await npm(['pack', '--pack-destination', packs], root);
    const [tarball] = await readdir(packs);
    const prefix = join(dir, 'prefix');
    const installed = await npm(['install', '-g', '--prefix', prefix, join(packs, tarball as string)], dir);
    assert.match(installed, /added 1 package/); // the client alone: no dependencies
    const runInstalled = (args: string[]) =>
      new Promise<string>((done) =>
        execFile(join(prefix, 'bin', 'repoman'), args, { env, cwd: dir }, (_error, stdout) => done(stdout)),
      );
    assert.match(await runInstalled(['version']), /^\d+\.\d+\.\d+\n$/);
    assert.equal(await runInstalled(['whoami']), 'bob\n');
  });

  it('runs on the Node that runs the server too', async () => {
    const run = await repoman(['whoami'], {}, dir, process.execPath); // not spawnSync: the server is in this process
    assert.equal(run.status, 0, run.stderr);
    assert.equal(run.stdout, 'bob\n');
  });
});
