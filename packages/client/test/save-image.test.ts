/**
 * `repoman save-image --root` (the built executable, as root) against a real server: a tree with every kind
 * of file is saved, downloaded with get-image and checked without mounting it (e2fsck, debugfs): the same
 * tree, excluded content absent, excluded directories present with their modes, host identity scrubbed. A
 * second save after a few changes copies only those and gives the updated tree as the next version.
 *
 * Needs rsync, e2fsprogs, attr and acl (Debian's packages; .ci/run installs them) and root (device nodes and
 * owners); without root the test says so and stops.
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import {
  chmod,
  chown,
  link,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  truncate,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { clientFor } from '../../server/test/helpers/http.ts';
import { makeTestPki, type TestPki } from '../../server/test/helpers/pki.ts';
import { startServerFor, type TestServer } from '../../server/test/helpers/server.ts';
import { buildClient } from './build.ts';

const exec = promisify(execFile);
const root = resolve(import.meta.dirname, '..');
const BIN = join(root, 'bin', 'repoman.js');
const asRoot = process.getuid?.() === 0;
const grubInstalled =
  spawnSync('sh', ['-c', 'test -f /usr/lib/grub/i386-pc/boot.img && command -v grub-mkimage']).status === 0;

/** `debugfs -R "<request>" <image>`: its output (debugfs prints errors on stderr and still exits 0). */
async function debugfs(image: string, request: string): Promise<{ out: string; err: string }> {
  const { stdout, stderr } = await exec('debugfs', ['-R', request, image], { maxBuffer: 64 * 1024 * 1024 });
  return { out: stdout, err: stderr };
}

/** The inode of a path in the image: type, mode, owner, links, size, blocks, inode number, symlink target. */
async function inode(image: string, path: string) {
  const { out, err } = await debugfs(image, `stat "${path}"`);
  if (/not found/.test(err)) return null;
  const field = (re: RegExp) => re.exec(out)?.[1];
  return {
    number: Number(field(/Inode: (\d+)/)),
    type: field(/Type: (\S+(?: special)?)/),
    mode: field(/Mode:\s+(\d+)/),
    uid: Number(field(/User:\s+(\d+)/)),
    gid: Number(field(/Group:\s+(\d+)/)),
    links: Number(field(/Links: (\d+)/)),
    size: Number(field(/Size: (\d+)/)),
    blocks: Number(field(/Blockcount: (\d+)/)),
    target: field(/Fast link dest: "([^"]*)"/),
    device: field(/Device major\/minor number: (\S+ \(hex \S+\))/),
  };
}

describe('repoman save-image', { skip: asRoot ? false : 'needs root (device nodes, owners)' }, () => {
  let pki: TestPki;
  let server: TestServer;
  let dir: string;
  let tree: string;
  let env: NodeJS.ProcessEnv;

  function repoman(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
    return new Promise((done) => {
      execFile(
        process.execPath,
        [BIN, ...args],
        { cwd: dir, env, maxBuffer: 16 * 1024 * 1024, timeout: 120_000 },
        (error, stdout, stderr) =>
          done({ status: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
      );
    });
  }
  async function ok(args: string[]) {
    const run = await repoman(args);
    assert.equal(run.status, 0, `repoman ${args.join(' ')}: ${run.stdout}${run.stderr}`);
    return run;
  }

  before(async () => {
    for (const tool of ['rsync', 'debugfs', 'e2fsck', 'setfattr', 'setfacl', 'mkfifo', 'mknod'])
      assert.equal(
        spawnSync('sh', ['-c', `command -v ${tool} || test -x /usr/sbin/${tool} || test -x /sbin/${tool}`])
          .status,
        0,
        `${tool} is needed: apt-get install rsync e2fsprogs attr acl`,
      );
    buildClient();
    pki = await makeTestPki();
    server = await startServerFor(pki, 'sqlite');
    dir = await mkdtemp(join(tmpdir(), 'repoman-save-'));
    await mkdir(join(dir, 'home/.repoman'), { recursive: true });
    await mkdir(join(dir, 'certificates'));
    await writeFile(join(dir, 'certificates/ca.pem'), pki.ca.certPem);
    const admin = pki.credential('admin');
    await writeFile(join(dir, 'admin.pem'), `${admin.cert}\n${admin.key}`, { mode: 0o600 });
    await writeFile(
      join(dir, 'home/.repoman/repoman.conf'),
      `[Repository]\nrepository: localhost\nport: ${server.httpsPort}\n[ThisImage]\nsnapshot_dir: ${join(dir, 'work')}\n`,
    );
    env = {
      PATH: process.env.PATH,
      HOME: join(dir, 'home'),
      X509_CERT_DIR: join(dir, 'certificates'),
      X509_USER_PROXY: join(dir, 'admin.pem'),
    };
    await clientFor(server.httpsUrl, pki.ca.certPem, admin).get('/api/whoami');

    // The tree: every kind of file, several owners, xattrs and ACLs, and things that must not be copied.
    tree = join(dir, 'tree');
    const at = (path: string) => join(tree, path);
    await mkdir(join(tree, 'boot'), { recursive: true });
    await writeFile(join(tree, 'boot/vmlinuz-6.1.0-test'), 'not really a kernel\n');
    await mkdir(join(tree, 'opt'), { recursive: true });
    await writeFile(join(tree, 'opt/blob.bin'), Buffer.alloc(3 * 1024 * 1024, 7)); // more than --resize 1 holds
    for (const d of [
      'etc/ssh',
      'usr/bin',
      'srv/cache',
      'srv/data',
      'tmp',
      'var/tmp',
      'run',
      'dev',
      'proc',
      'home/ann',
    ])
      await mkdir(at(d), { recursive: true });
    await writeFile(at('etc/os-release'), 'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12"\n');
    await writeFile(at('etc/machine-id'), '0123456789abcdef0123456789abcdef\n');
    await writeFile(at('etc/ssh/ssh_host_ed25519_key'), 'PRIVATE\n', { mode: 0o600 });
    await writeFile(at('etc/ssh/ssh_host_ed25519_key.pub'), 'PUBLIC\n');
    await writeFile(at('etc/ssh/sshd_config'), 'PermitRootLogin no\n');
    await writeFile(
      at('etc/fstab'),
      'LABEL=rootfs / ext4 defaults 0 1\nUUID=0b5e6c0e-1111-2222-3333-444455556666 /home ext4 defaults 0 2\nproc /proc proc defaults 0 0\n',
    );
    await writeFile(at('srv/data/hello.txt'), 'hello\n');
    await writeFile(at('srv/data/empty'), '');
    await writeFile(at('srv/data/random.bin'), createHash('sha512').update('x').digest());
    const sparse = await open(at('srv/data/sparse.img'), 'w');
    await sparse.write('middle', 4 * 1024 * 1024);
    await sparse.close();
    await truncate(at('srv/data/sparse.img'), 8 * 1024 * 1024);
    await link(at('srv/data/hello.txt'), at('srv/data/hello-link.txt'));
    await symlink('hello.txt', at('srv/data/relative-link'));
    await symlink('/etc/os-release', at('srv/data/absolute-link'));
    await exec('mkfifo', [at('srv/data/fifo')]);
    await exec('mknod', ['-m', '0666', at('dev/null'), 'c', '1', '3']); // /dev/* is excluded
    await exec('mknod', ['-m', '0666', at('srv/data/null'), 'c', '1', '3']);
    await exec('mknod', ['-m', '0660', at('srv/data/disk'), 'b', '7', '0']);
    await writeFile(at('usr/bin/tool'), '#!/bin/sh\n', { mode: 0o755 });
    await chmod(at('usr/bin/tool'), 0o4755);
    await chmod(at('tmp'), 0o1777);
    await chmod(at('var/tmp'), 0o1777);
    await writeFile(at('home/ann/notes'), 'ann’s\n');
    await chown(at('home/ann'), 1000, 1000);
    await chown(at('home/ann/notes'), 1000, 1000);
    await writeFile(at('srv/data/odd-owner'), 'x');
    await chown(at('srv/data/odd-owner'), 1234, 5678);
    await exec('setfattr', ['-n', 'user.repoman', '-v', 'kept', at('srv/data/hello.txt')]);
    await exec('setfacl', ['-m', 'u:1000:r', at('srv/data/random.bin')]);
    await writeFile(at('tmp/junk'), 'temporary');
    await writeFile(at('var/tmp/junk'), 'temporary');
    await writeFile(at('run/pid'), '1');
    await writeFile(at('srv/cache/big'), 'cache');
  });
  after(async () => {
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  // Both ways of building the filesystem, each saved twice: a first copy, then an incremental one.
  for (const method of ['mkfs', 'mount'] as const) {
    const name = `tree-${method}.img`;
    const save = (layout: string) =>
      ok([
        'save-image',
        name,
        '--method',
        method,
        '--root',
        tree,
        '--resize',
        '64',
        '--format',
        'raw',
        '--exclude',
        '/srv/cache/*',
        layout,
        '-f',
      ]);
    // mkfs rebuilds the filesystem each time, in either layout; mount reuses the image, so keeps its layout.
    const layouts: [string, string] =
      method === 'mkfs' ? ['--filesystem-only', '--partitioned'] : ['--partitioned', '--partitioned'];
    /** The filesystem of a downloaded image: the image itself, or its one partition from 1 MiB. */
    const filesystemOf = async (disk: string, partitioned: boolean) => {
      if (!partitioned) return disk;
      await exec('dd', [`if=${disk}`, `of=${disk}.fs`, 'bs=1M', 'skip=1', 'status=none']);
      return `${disk}.fs`;
    };
    /** A partitioned image with a kernel gets GRUB where GRUB for BIOS is installed, and says why not elsewhere. */
    const checkBoot = async (disk: string, filesystem: string, run: { stdout: string; stderr: string }) => {
      if (!grubInstalled) {
        assert.match(run.stderr, /GRUB for BIOS is not installed here.*not bootable by itself/);
        return;
      }
      const sector = Buffer.alloc(1024);
      const handle = await open(disk, 'r');
      await handle.read(sector, 0, 1024, 0);
      await handle.close();
      assert.match(sector.subarray(0, 440).toString('latin1'), /GRUB/, 'GRUB boot code in the MBR');
      assert.equal(sector.readUInt16LE(510), 0xaa55, 'the partition table kept');
      assert.equal(sector[446 + 4], 0x83, 'the partition kept');
      assert.ok(
        sector.subarray(512).some((b) => b !== 0),
        'GRUB core image after the MBR',
      );
      const config = (await debugfs(filesystem, 'cat /boot/repoman-grub/grub.cfg')).out;
      const uuid = /Filesystem UUID:\s+(\S+)/.exec((await exec('dumpe2fs', ['-h', filesystem])).stdout)?.[1];
      assert.match(config, new RegExp(`search --no-floppy --fs-uuid --set=root ${uuid}`));
      assert.match(config, new RegExp(`linux /boot/vmlinuz-6\\.1\\.0-test root=UUID=${uuid} ro`));
      assert.ok(
        await inode(filesystem, '/boot/repoman-grub/i386-pc/normal.mod'),
        'GRUB modules in the image',
      );
      assert.doesNotMatch(run.stdout, /not bootable/);
    };
    const loopCheck = {
      skip:
        method === 'mount' && !existsSync('/dev/loop-control')
          ? 'loop devices are not available here: the mount method is not tested'
          : false,
    };
    it(
      `${method}: saves a tree, and the downloaded image holds the same tree, without what is excluded or identifying`,
      loopCheck,
      async () => {
        const run = await save(layouts[0]);
        assert.match(
          run.stderr,
          method === 'mkfs'
            ? /method: rsync into a staging tree, then mkfs\.ext4 -d/
            : /method: loop-mounted image file, filled by rsync/,
        );
        assert.match(
          run.stderr,
          /warning: \/etc\/fstab mounts UUID=0b5e6c0e-1111-2222-3333-444455556666 on \/home, which is not in the image/,
        );
        assert.match(
          run.stdout,
          /^\[OK\] saved .* as admin\/tree-[a-z]+\.img version 1 in [\d.]+ s: copied \d+ files/m,
        );
        const shown = JSON.parse((await ok(['list-images', name, '--json'])).stdout);
        assert.equal(shown.os_variant, 'debian12');
        assert.equal(shown.os_type, 'linux');
        assert.equal(shown.disk_format, 'raw');
        const partitioned = layouts[0] === '--partitioned';
        assert.equal(shown.partition_table, partitioned ? 'mbr' : null);
        assert.equal(shown.size, (partitioned ? 65 : 64) * 1024 * 1024);

        const disk = join(dir, `${method}-v1.img`);
        await ok(['get-image', name, disk]);
        const image = await filesystemOf(disk, partitioned);
        await exec('e2fsck', ['-fn', image]); // exits non-zero on any problem
        if (partitioned) await checkBoot(disk, image, run);

        // Every regular file and directory, by content, mode and owner (debugfs rdump keeps both as root).
        const out = join(dir, `${method}-rdump`);
        await mkdir(out);
        await debugfs(image, `rdump / ${out}`);
        const { stdout: source } = await exec('sh', [
          '-c',
          `cd ${tree} && find . \\( -type f -o -type d \\) -printf '%p %m %U %G %s\\n' | sort`,
        ]);
        const { stdout: copy } = await exec('sh', [
          '-c',
          `cd ${out} && find . \\( -type f -o -type d \\) -printf '%p %m %U %G %s\\n' | sort`,
        ]);
        // debugfs rdump leaves out setuid and sticky bits: those are compared by inode below.
        const perms = (line: string) => line.replace(/^(\S+) \d*(\d{3}) /, '$1 $2 ');
        const expected = source
          .split('\n')
          .filter(
            (line) =>
              !/^\.\/(tmp\/junk|var\/tmp\/junk|run\/pid|srv\/cache\/big|etc\/ssh\/ssh_host_|lost\+found)/.test(
                line,
              ),
          )
          .map((line) => (line.startsWith('./etc/machine-id ') ? line.replace(/ \d+$/, ' 0') : line))
          // debugfs writes special files as nothing: compare those by inode below.
          .filter((line) => !/^\.\/(srv\/data\/(fifo|disk|null)|dev\/null) /.test(line))
          .map(perms);
        // GRUB's own files, where the mount method installed it.
        const got = copy
          .split('\n')
          .filter((line) => !/^\.\/(lost\+found|boot\/repoman-grub)/.test(line))
          .map(perms);
        assert.deepEqual(got, expected);
        assert.equal(await readFile(join(out, 'srv/data/hello.txt'), 'utf8'), 'hello\n');

        // What rdump cannot show: links, special files, bits, sparseness, xattrs and ACLs.
        const hello = await inode(image, '/srv/data/hello.txt');
        const hardLink = await inode(image, '/srv/data/hello-link.txt');
        assert.equal(hello?.number, hardLink?.number, 'hard links stay one inode');
        assert.equal(hello?.links, 2);
        assert.equal((await inode(image, '/srv/data/relative-link'))?.target, 'hello.txt');
        assert.equal((await inode(image, '/srv/data/absolute-link'))?.target, '/etc/os-release');
        assert.equal((await inode(image, '/srv/data/fifo'))?.type, 'FIFO');
        const nul = await inode(image, '/srv/data/null');
        assert.equal(nul?.type, 'character special');
        assert.match(nul?.device ?? '', /^0?1:0?3 /);
        assert.equal((await inode(image, '/srv/data/disk'))?.type, 'block special');
        assert.equal((await inode(image, '/usr/bin/tool'))?.mode, '04755');
        assert.equal((await inode(image, '/tmp'))?.mode, '01777');
        assert.equal((await inode(image, '/var/tmp'))?.mode, '01777');
        const sparse = await inode(image, '/srv/data/sparse.img');
        assert.equal(sparse?.size, 8 * 1024 * 1024);
        assert.ok((sparse?.blocks ?? 0) < 64, `sparse.img stays sparse (${sparse?.blocks} blocks)`);
        assert.match((await debugfs(image, 'ea_get /srv/data/hello.txt user.repoman')).out, /kept/);
        assert.match((await debugfs(image, 'ea_list /srv/data/random.bin')).out, /system\.posix_acl_access/);

        // Excluded: the contents, not the directories; identity: keys gone, machine-id empty but there.
        for (const gone of [
          '/tmp/junk',
          '/var/tmp/junk',
          '/run/pid',
          '/srv/cache/big',
          '/etc/ssh/ssh_host_ed25519_key',
          '/etc/ssh/ssh_host_ed25519_key.pub',
          '/dev/null',
        ])
          assert.equal(await inode(image, gone), null, `${gone} is not in the image`);
        for (const kept of ['/srv/cache', '/run', '/dev', '/etc/ssh/sshd_config'])
          assert.ok(await inode(image, kept), kept);
        assert.equal((await inode(image, '/etc/machine-id'))?.size, 0);
      },
    );

    it(
      `${method}: saves again incrementally: only the changes are copied, and the next version holds them`,
      loopCheck,
      async () => {
        await writeFile(join(tree, 'srv/data/hello.txt'), 'hello again\n');
        await writeFile(join(tree, 'srv/data/new.txt'), 'new\n');
        await unlink(join(tree, 'srv/data/empty'));
        const run = await save(layouts[1]);
        const synced = /synced (\d+) files/.exec(run.stdout);
        assert.ok(synced, run.stdout);
        assert.ok(
          Number(synced[1]) >= 2 && Number(synced[1]) <= 4,
          `only the changed files were copied: ${run.stdout}`,
        );

        const shown = JSON.parse((await ok(['list-images', name, '--json'])).stdout);
        assert.equal(shown.version, 2);
        assert.equal(shown.partition_table, 'mbr');

        const disk = join(dir, `${method}-v2.img`);
        await ok(['get-image', name, disk]);
        // The filesystem starts at 1 MiB, in the one partition.
        const filesystem = await filesystemOf(disk, true);
        await exec('e2fsck', ['-fn', filesystem]);
        await checkBoot(disk, filesystem, run);
        assert.equal((await debugfs(filesystem, 'cat /srv/data/hello.txt')).out, 'hello again\n');
        assert.equal((await debugfs(filesystem, 'cat /srv/data/new.txt')).out, 'new\n');
        assert.equal(await inode(filesystem, '/srv/data/empty'), null);
        assert.equal((await inode(filesystem, '/srv/data/hello-link.txt'))?.links, 2);
        // As it was, for the other method's first save.
        await writeFile(join(tree, 'srv/data/hello.txt'), 'hello\n');
        await writeFile(join(tree, 'srv/data/empty'), '');
        await unlink(join(tree, 'srv/data/new.txt'));
      },
    );
  }

  it('refuses bad options with a one-line message and changes nothing', async () => {
    for (const [args, pattern] of [
      [['--format', 'vmdk'], /--format takes raw or qcow2/],
      [['--partitioned', '--filesystem-only'], /do not go together/],
      [['--resize', 'big'], /--resize takes a size in MiB/],
      [['--root', join(dir, 'nowhere')], /preflight failed: .*nowhere is not a directory/],
      [['--resize', '1'], /preflight failed: .*more than the image size/],
    ] as const) {
      const run = await repoman(['save-image', 'other.img', '--root', tree, ...args, '-f']);
      assert.notEqual(run.status, 0, args.join(' '));
      assert.match(run.stderr.trim().split('\n').at(-1) ?? '', pattern);
    }
    const images = JSON.parse((await ok(['list-images', '--json'])).stdout);
    assert.deepEqual(
      images.map((i: { name: string }) => i.name).sort(),
      ['tree-mkfs.img', 'tree-mount.img'],
      'no slot was left behind',
    );
  });

  /** The files under the server's blob directory, with their size and the bytes they take on disk. */
  async function storedBlobs() {
    const blobs = join(server.dir, 'data', 'blobs');
    const entries = await readdir(blobs, { recursive: true, withFileTypes: true });
    return Promise.all(
      entries
        .filter((entry) => entry.isFile())
        .map(async (entry) => {
          const info = await stat(join(entry.parentPath, entry.name));
          return { size: info.size, allocated: info.blocks * 512 };
        }),
    );
  }

  it('saves a small tree from a large filesystem as about the tree’s size, sent and stored, in a qcow2 that holds the tree', {
    skip: existsSync('/dev/loop-control')
      ? false
      : 'loop devices are not available here: the large filesystem cannot be mounted',
  }, async () => {
    // A 100 GB ext4 (sparse), loop-mounted, holding a tree of about 300 KB.
    const large = join(dir, 'large.ext4');
    const mountpoint = join(dir, 'large');
    await writeFile(large, '');
    await truncate(large, 100 * 1000 ** 3);
    await exec('mkfs.ext4', ['-F', '-q', large], { env: { PATH: `${process.env.PATH}:/usr/sbin:/sbin` } });
    await mkdir(mountpoint);
    await exec('mount', ['-o', 'loop', large, mountpoint]);
    try {
      const small = join(mountpoint, 'small');
      const files: Record<string, Buffer> = {
        'etc/os-release': Buffer.from('ID=debian\nVERSION_ID="12"\n'),
        'etc/hostname': Buffer.from('small\n'),
        'srv/data/a.bin': createHash('sha512').update('a').digest(),
        'srv/data/big.bin': Buffer.concat(
          Array.from({ length: 4096 }, (_, i) => createHash('sha512').update(String(i)).digest()),
        ), // 256 KiB that do not compress
      };
      for (const [path, content] of Object.entries(files)) {
        await mkdir(join(small, path, '..'), { recursive: true });
        await writeFile(join(small, path), content);
      }
      const treeBytes = Number((await exec('du', ['-sx', '--block-size=1', small])).stdout.split(/\s/)[0]);

      const run = await ok(['save-image', 'small.img', '--root', small]);
      // Before the copy: the virtual size and an estimate of what is sent; the file's own size before sending.
      const planned = /image: 1\.0 GiB virtual, qcow2; about ([\d.]+) (KiB|MiB) to send and store/.exec(
        run.stderr,
      );
      assert.ok(planned, run.stderr);
      assert.ok(
        run.stderr.indexOf(planned[0]) < run.stderr.search(/copying /),
        'the estimate comes before the copy',
      );
      const sent = Number(/sending [^(]+\((\d+) bytes\)/.exec(run.stderr)?.[1]);
      const estimated = Number(planned[1]) * (planned[2] === 'MiB' ? 1024 * 1024 : 1024);
      assert.ok(sent <= estimated, `sent ${sent}, estimated ${estimated}`);

      // Sent and stored: the tree and the filesystem's metadata, a few MiB, not 100 GB (nor 1 GiB).
      const shown = JSON.parse((await ok(['list-images', 'small.img', '--json'])).stdout);
      assert.equal(shown.disk_format, 'qcow2');
      assert.equal(shown.size, sent);
      assert.ok(sent > treeBytes && sent < treeBytes + 4 * 1024 * 1024, `${sent} bytes for ${treeBytes}`);
      const blob = (await storedBlobs()).find((b) => b.size === sent);
      assert.ok(blob, 'the image’s blob');
      assert.ok(blob.allocated < treeBytes + 4 * 1024 * 1024, `${blob.allocated} bytes of the server’s disk`);

      // The download, as raw, is a whole filesystem of the default size holding the tree.
      const qcow2 = join(dir, 'small.qcow2');
      await ok(['get-image', 'small.img', qcow2]);
      const info = JSON.parse((await exec('qemu-img', ['info', '--output=json', qcow2])).stdout);
      assert.equal(info.format, 'qcow2');
      assert.equal(info['virtual-size'], 1024 ** 3);
      const raw = join(dir, 'small.raw');
      await exec('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', qcow2, raw]);
      await exec('e2fsck', ['-fn', raw]);
      for (const [path, content] of Object.entries(files)) {
        const { stdout } = await exec('debugfs', ['-R', `cat /${path}`, raw], {
          encoding: 'buffer',
          maxBuffer: 1024 * 1024,
        });
        assert.ok(stdout.equals(content), `/${path} in the image`);
      }
      await rm(raw, { force: true });
    } finally {
      await exec('umount', [mountpoint]);
      await rm(large, { force: true });
    }
  });

  it('refuses before copying anything when the quota cannot take the estimate; --force tries, and the server refuses', async () => {
    const admin = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('admin'));
    const usage = (await admin.get('/api/whoami')).json.usage as number;
    assert.equal((await admin.patch('/api/users/admin', { quota: usage + 100 * 1024 })).status, 200);
    try {
      const refused = await repoman(['save-image', 'quota.img', '--root', tree]);
      assert.notEqual(refused.status, 0);
      assert.match(
        refused.stderr.trim().split('\n').at(-1) ?? '',
        /preflight failed: the image takes about [\d.]+ MiB, and admin's quota leaves 100\.0 KiB .*--force to try anyway/,
      );
      assert.doesNotMatch(refused.stderr, /copying|syncing/, 'nothing was copied');

      // (--retries 0 is not needed since a full quota is no longer tried again; it keeps the run short anyway.)
      const forced = await repoman(['save-image', 'quota.img', '--root', tree, '--force', '--retries', '0']);
      assert.notEqual(forced.status, 0);
      assert.match(forced.stderr, /quota/);
      const images = JSON.parse((await ok(['list-images', '--json'])).stdout);
      assert.ok(!images.some((i: { name: string }) => i.name === 'quota.img'), 'no slot was left behind');
    } finally {
      await admin.patch('/api/users/admin', { quota: null });
    }
  });
});

describe('repoman save-image without root', {
  skip: asRoot ? false : 'needs root to act as another user',
}, () => {
  let dir: string;
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('builds the image under fakeroot, with mkfs.ext4 -d: the user’s files become root’s, links and modes stay', async () => {
    dir = await mkdtemp(join(tmpdir(), 'repoman-save-nonroot-'));
    const tree = join(dir, 'tree');
    for (const d of ['etc', 'srv', 'tmp']) await mkdir(join(tree, d), { recursive: true });
    await writeFile(join(tree, 'srv/a'), 'hi\n');
    await link(join(tree, 'srv/a'), join(tree, 'srv/b'));
    await writeFile(join(tree, 'tmp/junk'), 'temporary');
    await chmod(join(tree, 'tmp'), 0o1777);
    await mkdir(join(dir, 'work'));
    // The other user may not enter the clone (under /root, in a mktemp -d folder): it gets the client's
    // sources and this Node in a directory of its own.
    await exec('cp', ['-r', join(root, 'src'), join(dir, 'client')]);
    await writeFile(join(dir, 'package.json'), '{ "type": "module" }\n');
    await exec('cp', [process.execPath, join(dir, 'node')]);
    const script = join(dir, 'save.mjs');
    await writeFile(
      script,
      `import { snapshot } from './client/commands/save-image/snapshot.ts';
const shot = await snapshot({ root: ${JSON.stringify(tree)}, workDir: ${JSON.stringify(join(dir, 'work'))},
  names: { lock: 'lock', image: 'image.img', mount: 'mnt', staging: 'mnt-tree' }, method: 'auto',
  excludes: ['/tmp/*'], size: 16 * 1024 * 1024, partitioned: false, keepHostIdentity: false, clean: false,
  verbose: false, dryRun: false, note: (text) => console.error(text) });
console.log(JSON.stringify(shot));
`,
    );
    await exec('chown', ['-R', '65534:65534', dir]);
    await chmod(dir, 0o755);
    const { stdout, stderr } = await exec('setpriv', [
      '--reuid=65534',
      '--regid=65534',
      '--clear-groups',
      join(dir, 'node'),
      script,
    ]);
    assert.match(stderr, /method: rsync into a staging tree, then mkfs\.ext4 -d .*, under fakeroot/);
    const shot = JSON.parse(stdout);
    const image = join(dir, 'work/image.img');
    assert.equal(shot.file, image);
    await exec('e2fsck', ['-fn', image]);
    const a = await inode(image, '/srv/a');
    assert.equal(a?.uid, 0, 'a file of the user saving is root’s in the image');
    assert.equal(a?.links, 2);
    assert.equal(a?.number, (await inode(image, '/srv/b'))?.number);
    assert.equal((await inode(image, '/tmp'))?.mode, '01777');
    assert.equal(await inode(image, '/tmp/junk'), null);
  });
});
