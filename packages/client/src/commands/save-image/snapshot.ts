/**
 * `repoman save-image`: turns a root tree (this machine's `/`, or `--root DIR`) into a disk image file.
 *
 * The tree is copied with rsync into a staging tree kept between runs (so a second save copies only what
 * changed), with the excludes; host identity is scrubbed there; then `mkfs.ext4 -d` writes the filesystem
 * straight into the image file, at the partition's offset when the image is partitioned (the MBR is written
 * here). Nothing is mounted and no loop device is needed. Without root, rsync and mkfs run under fakeroot, so
 * files keep their owners in the image. Each step has a name, which a failure reports.
 *
 * The image is as large as the tree needs plus headroom (`defaultImageSize`), not as the filesystem it sits
 * on, and the image file is sparse: what is uploaded and stored follows the data, not the virtual size.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { closeSync, constants, existsSync, openSync, readSync, statfsSync } from 'node:fs';
import {
  chmod,
  chown,
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  realpath,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { arch as hostArch } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ClientError } from '../../errors.ts';

const run = promisify(execFile);

/** Host identity that clones must not share: excluded from the copy (files) or emptied after it. */
const IDENTITY_EXCLUDES = [
  '/etc/ssh/ssh_host_*',
  '/etc/udev/rules.d/70-persistent-net.rules',
  '/etc/udev/rules.d/70-persistent-cd.rules',
  '/var/lib/cloud/instance',
  '/var/lib/cloud/instances/*',
  '/var/lib/cloud/data/*',
  '/var/lib/cloud/sem/*',
];
/** Emptied, not removed: systemd makes a new machine-id at first boot only when the file is empty. */
const IDENTITY_EMPTIED = ['/etc/machine-id', '/var/lib/dbus/machine-id'];
/** Always excluded, besides the configured system excludes: run-time state and temporary files. */
const RUNTIME_EXCLUDES = ['/run/*', '/var/tmp/*'];

export interface SnapshotOptions {
  /** The tree to save: `/` or a chroot. */
  root: string;
  /** Where the staging tree, the image file, the lock and fakeroot's state live. */
  workDir: string;
  /** Names of the lock, the image file, its mount point and the staging tree in `workDir`. */
  names: { lock: string; image: string; mount: string; staging: string };
  /** How to build the filesystem: `auto` mounts the image when root and loop devices allow, else `mkfs`. */
  method: Method;
  /** Every exclude pattern (rsync's syntax, anchored at the root with a leading slash). */
  excludes: string[];
  /**
   * The filesystem's size in bytes (partitioned images get 1 MiB more), or undefined: `defaultImageSize` of
   * the tree.
   */
  size?: number | undefined;
  partitioned: boolean;
  keepHostIdentity: boolean;
  clean: boolean;
  verbose: boolean;
  dryRun: boolean;
  note: (text: string) => void;
  /**
   * Called once the image is sized, before anything is copied (and on a dry run): rejecting stops the save
   * there, with nothing changed (save-image checks the estimate against the server's quota).
   */
  approve?: (plan: ImagePlan) => Promise<void>;
}

/** What a save will make, known before the copy starts. */
export interface ImagePlan {
  /** The disk image's size (the virtual size): the filesystem, and the 1 MiB before it when partitioned. */
  virtualSize: number;
  /** The tree's allocated bytes and its number of files and directories (`du -x`). */
  treeBytes: number;
  treeFiles: number;
}

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/**
 * The default size of the image's filesystem: the tree's bytes plus a quarter, plus 512 MiB (the journal,
 * ext4's reserve for root, and room to work in the clone), rounded up to a whole GiB so that saves of a
 * growing tree keep one size (the mount method reuses the image only while its size holds). At least 16 KiB
 * per file, as ext4 makes one inode per 16 KiB.
 */
export function defaultImageSize(treeBytes: number, treeFiles: number): number {
  const need = Math.max(treeBytes * 1.25, treeFiles * 16 * 1024) + 512 * MiB;
  return Math.ceil(need / GiB) * GiB;
}

/**
 * About the bytes an image will be sent and stored as, before it exists: raw, its virtual size (the server
 * stores it sparse, but that is what is sent and counted); qcow2, which holds only allocated clusters, the tree
 * plus the filesystem's metadata (its inodes, 1 MiB, and about 1 MiB per GiB of virtual size: superblocks,
 * bitmaps, qcow2's tables). Measured, a 300 KB tree makes 1.8 MB at 1 GiB and 13 MB at 100 GiB; the estimate
 * errs high. The converted file's own size is checked again before it is sent.
 */
export function estimateStoredBytes(plan: ImagePlan, format: 'raw' | 'qcow2'): number {
  if (format === 'raw') return plan.virtualSize;
  return Math.ceil(plan.treeBytes * 1.05 + plan.treeFiles * 256 + MiB + plan.virtualSize / 1024);
}

export interface Snapshot {
  /** The image file. */
  file: string;
  method: string;
  size: number;
  /** What rsync did: files transferred and their bytes, and whether the copy was incremental. */
  synced: { incremental: boolean; files: number; bytes: number; vanished: boolean };
  warnings: string[];
  bootable: boolean;
}

/** A step's failure, named, with the command's own last words. */
export class StepError extends ClientError {
  constructor(step: string, message: string) {
    super('transfer', `${step} failed: ${message}`);
  }
}

const PARTITION_OFFSET = 1024 * 1024;
const isRoot = () => process.getuid?.() === 0;

/** Runs a tool for a named step; a failure is a StepError with the tool's last stderr lines. */
export function runStep(
  step: string,
  file: string,
  args: string[],
  options: { okCodes?: number[]; verbose?: (line: string) => void } = {},
): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      stdout += text;
      if (options.verbose) for (const line of text.split('\n')) if (line) options.verbose(line);
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      stderr = (stderr + text).slice(-4096);
    });
    child.on('error', (error: NodeJS.ErrnoException) =>
      reject(
        new StepError(
          step,
          error.code === 'ENOENT' ? `${file} is not installed` : `${file}: ${error.message}`,
        ),
      ),
    );
    child.on('close', (code) => {
      if (code === 0 || options.okCodes?.includes(code ?? -1)) resolve({ code: code ?? 0, stdout });
      else {
        const last = stderr.trim().split('\n').slice(-3).join('; ') || `exit status ${code}`;
        reject(new StepError(step, `${file}: ${last}`));
      }
    });
  });
}

async function installed(tool: string): Promise<boolean> {
  return run('sh', ['-c', `command -v ${tool}`]).then(
    () => true,
    () => existsSync(`/usr/sbin/${tool}`) || existsSync(`/sbin/${tool}`),
  );
}

const sbin = (tool: string) =>
  ['/usr/sbin', '/sbin'].map((dir) => join(dir, tool)).find((path) => existsSync(path)) ?? tool;

/** `/etc/os-release` of the tree: os_type and os_variant (`debian12`, `rocky9.4`, …). */
export async function osOf(root: string): Promise<{ os_type?: string; os_variant?: string }> {
  for (const path of ['etc/os-release', 'usr/lib/os-release']) {
    const text = await readFile(join(root, path), 'utf8').catch(() => null);
    if (text === null) continue;
    const fields = Object.fromEntries(
      text
        .split('\n')
        .map((line) => /^([A-Z_]+)=("?)(.*)\2$/.exec(line.trim()))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => [m[1], m[3]]),
    ) as Record<string, string>;
    const id = fields.ID?.toLowerCase();
    return {
      os_type: 'linux',
      ...(id ? { os_variant: `${id}${fields.VERSION_ID ?? ''}` } : {}),
    };
  }
  return {};
}

const ELF_MACHINES: Record<number, string> = {
  3: 'x86',
  62: 'x86_64',
  40: 'arm',
  183: 'aarch64',
  243: 'riscv64',
  21: 'ppc64',
  22: 's390x',
};

/** The tree's architecture, from the ELF header of its shell; the running machine's if it has none. */
export function archOf(root: string): string {
  for (const path of ['bin/sh', 'usr/bin/sh', 'bin/busybox', 'usr/bin/env']) {
    try {
      const fd = openSync(join(root, path), constants.O_RDONLY);
      try {
        const header = Buffer.alloc(20);
        readSync(fd, header, 0, 20, 0);
        if (header.toString('latin1', 0, 4) !== '\x7fELF') continue;
        const machine = header.readUInt16LE(18);
        const name = ELF_MACHINES[machine];
        if (name) return name;
      } finally {
        closeSync(fd);
      }
    } catch {}
  }
  const names: Record<string, string> = { x64: 'x86_64', arm64: 'aarch64', ia32: 'x86' };
  return names[hostArch()] ?? hostArch();
}

/** The hypervisor this machine runs on (kvm, xen, vmware, …), or undefined on bare metal or if unknown. */
export async function hypervisorOf(): Promise<string | undefined> {
  const xen = await readFile('/sys/hypervisor/type', 'utf8').catch(() => '');
  if (xen.trim()) return xen.trim();
  const detected = await run('systemd-detect-virt', ['--vm']).then(
    ({ stdout }) => stdout.trim(),
    () => '',
  );
  if (detected && detected !== 'none') return detected === 'qemu' ? 'kvm' : detected;
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  if (/QEMU|KVM/.test(cpuinfo)) return 'kvm';
  return undefined;
}

/** The root filesystem's label and UUID when saving `/` (the image's filesystem takes them over). */
async function rootIdentity(root: string): Promise<{ label?: string; uuid?: string }> {
  if (root !== '/') return {};
  const { stdout } = await run('findmnt', ['-no', 'UUID,LABEL', '/']).catch(() => ({ stdout: '' }));
  const [uuid, label] = stdout.trim().split(/\s+/);
  return { ...(uuid ? { uuid } : {}), ...(label ? { label } : {}) };
}

/** Swap files of the running machine (never copied). */
async function swapFiles(root: string): Promise<string[]> {
  if (root !== '/') return [];
  const text = await readFile('/proc/swaps', 'utf8').catch(() => '');
  return text
    .split('\n')
    .slice(1)
    .map((line) => line.split(/\s+/))
    .filter((fields) => fields[1] === 'file' && fields[0])
    .map((fields) => fields[0] as string);
}

/** Whether `/` of this machine sits on a partition (sda1, nvme0n1p2, vda1), as the original decided. */
export async function rootIsPartitioned(): Promise<boolean> {
  const { stdout } = await run('findmnt', ['-no', 'SOURCE', '/']).catch(() => ({ stdout: '' }));
  const source = stdout.trim();
  return /^\/dev\/(?!mapper\/)\S*\d$/.test(source) && !/^\/dev\/(loop|nbd|md)\d+$/.test(source);
}

/** A classic MBR with one bootable Linux partition from 1 MiB to the end (LBA only: no CHS geometry). */
function mbr(diskBytes: number): Buffer {
  const sector = Buffer.alloc(512);
  randomBytes(4).copy(sector, 440); // disk signature
  const entry = 446;
  const start = PARTITION_OFFSET / 512;
  const sectors = Math.floor(diskBytes / 512) - start;
  sector[entry] = 0x80; // bootable
  sector.writeUIntBE(0xfeffff, entry + 1, 3); // CHS: beyond geometry
  sector[entry + 4] = 0x83; // Linux
  sector.writeUIntBE(0xfeffff, entry + 5, 3);
  sector.writeUInt32LE(start, entry + 8);
  sector.writeUInt32LE(sectors, entry + 12);
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

/** Takes the save lock (one save at a time), or fails at once if another holds it. */
async function lock(path: string): Promise<() => Promise<void>> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(path, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      return () => rm(path, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const holder = Number((await readFile(path, 'utf8').catch(() => '')).trim());
      const alive =
        holder > 0 &&
        (() => {
          try {
            process.kill(holder, 0);
            return true;
          } catch (e) {
            return (e as NodeJS.ErrnoException).code === 'EPERM';
          }
        })();
      if (alive)
        throw new StepError('lock', `another save-image (process ${holder}) is running; ${path} is its lock`);
      await rm(path, { force: true }); // left by a save that died
    }
  }
  throw new StepError('lock', `cannot take ${path}`);
}

/** Makes the excluded directories named by plain paths exist in the copy, empty, as in the source. */
async function recreateExcludedDirs(root: string, staging: string, excludes: string[]) {
  for (const pattern of excludes) {
    if (!pattern.startsWith('/') || /[*?[]/.test(pattern)) continue;
    const source = await lstat(join(root, pattern)).catch(() => null);
    if (!source?.isDirectory()) continue;
    const target = join(staging, pattern);
    await mkdir(target, { recursive: true });
    await chmod(target, source.mode & 0o7777);
    if (isRoot()) await chown(target, source.uid, source.gid);
  }
}

/** Empties the identity files that exist in the copy as regular files (a symlink stays a symlink). */
async function emptyIdentityFiles(staging: string) {
  for (const path of IDENTITY_EMPTIED) {
    const target = join(staging, path);
    const info = await lstat(target).catch(() => null);
    if (info?.isFile()) {
      const handle = await open(target, 'r+');
      await handle.truncate(0);
      await handle.close();
    }
  }
}

/** fstab entries of the copy that will not resolve in the image: other filesystems by UUID, label or device. */
async function fstabWarnings(staging: string, identity: { uuid?: string; label?: string }) {
  const text = await readFile(join(staging, 'etc/fstab'), 'utf8').catch(() => '');
  const warnings: string[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/);
    const [spec, mountpoint, type, options = ''] = fields;
    if (!spec || spec.startsWith('#') || !mountpoint) continue;
    // Virtual filesystems need no device; swap does, and is checked like the rest.
    if (['proc', 'sysfs', 'tmpfs', 'devpts', 'none', 'devtmpfs'].includes(type ?? '')) continue;
    const resolves =
      (spec.startsWith('UUID=') && spec.slice(5) === identity.uuid) ||
      (spec.startsWith('LABEL=') && spec.slice(6) === identity.label) ||
      !/^(UUID=|LABEL=|PARTUUID=|PARTLABEL=|\/dev\/)/.test(spec);
    if (resolves) continue;
    const optional = /(^|,)(noauto|nofail)(,|$)/.test(options);
    warnings.push(
      `/etc/fstab mounts ${spec} on ${mountpoint}, which is not in the image${optional ? ' (marked noauto or nofail)' : ': the clone may not boot until it is removed or made nofail'}`,
    );
  }
  return warnings;
}

/** rsync's --stats: files transferred and their total size. */
function syncedOf(stdout: string) {
  const number = (label: string) =>
    Number((new RegExp(`^${label}: ([\\d,.]+)`, 'm').exec(stdout)?.[1] ?? '0').replace(/[,.](?=\d{3})/g, ''));
  return {
    files: number('Number of regular files transferred'),
    bytes: number('Total transferred file size'),
  };
}

/** How the filesystem is built: a loop-mounted image that rsync fills, or a staging tree and `mkfs.ext4 -d`. */
export type Method = 'auto' | 'mount' | 'mkfs';

const METHODS = {
  mount: 'loop-mounted image file, filled by rsync (incremental: the previous image is reused)',
  mkfs: 'rsync into a staging tree, then mkfs.ext4 -d into the image file (no mount, no loop device)',
};

/** The copy: archive, hard links, one filesystem, numeric owners, sparse files; ACLs and xattrs as root. */
function rsyncArgs(root: string, target: string, excludes: string[], verbose: boolean): string[] {
  return [
    'rsync',
    `-aHx${isRoot() ? 'AX' : ''}`,
    '--numeric-ids',
    '--sparse',
    '--delete',
    '--delete-excluded',
    '--stats',
    '--filter=P /lost+found', // the target filesystem's own
    ...(verbose ? ['--itemize-changes'] : []),
    ...excludes.map((pattern) => `--exclude=${pattern}`),
    root.endsWith('/') ? root : `${root}/`,
    `${target}/`,
  ];
}

export async function snapshot(options: SnapshotOptions): Promise<Snapshot> {
  const { root, workDir, note } = options;
  const rootInfo = await stat(root).catch(() => null);
  if (!rootInfo?.isDirectory()) throw new StepError('preflight', `${root} is not a directory`);
  for (const tool of ['rsync', 'mkfs.ext4'])
    if (!(await installed(tool)))
      throw new StepError('preflight', `${tool} is not installed (Debian: apt-get install rsync e2fsprogs)`);
  const asRoot = isRoot();
  if (options.method === 'mount' && !asRoot)
    throw new StepError('preflight', 'mounting the image (--method mount) needs root');
  if (!asRoot && !(await installed('fakeroot')))
    throw new StepError(
      'preflight',
      'without root, save-image needs fakeroot to keep files’ owners (apt-get install fakeroot), or run it as root',
    );

  // Size: what the tree needs, or --resize; the copy must fit in it, and in the work directory.
  const usage = (args: string[]) =>
    run('du', ['-sx', ...args, root]).then(
      ({ stdout }) => Number(stdout.split(/\s/)[0] ?? 0) || 0,
      () => 0,
    );
  const [treeBytes, treeFiles] = await Promise.all([usage(['--block-size=1']), usage(['--inodes'])]);
  const size =
    Math.ceil((options.size ?? defaultImageSize(treeBytes, treeFiles)) / PARTITION_OFFSET) * PARTITION_OFFSET;
  if (treeBytes > size * 0.95)
    throw new StepError(
      'preflight',
      `${root} holds ${treeBytes} bytes, more than the image size of ${size} bytes can take (--resize)`,
    );
  await mkdir(workDir, { recursive: true, mode: 0o700 });
  const room = statfsSync(workDir);
  if (room.bavail * room.bsize < treeBytes * 1.05)
    throw new StepError(
      'preflight',
      `${workDir} has ${room.bavail * room.bsize} bytes free; the copy needs about ${treeBytes}`,
    );

  const file = join(workDir, options.names.image);
  const excludes = [
    ...options.excludes,
    ...RUNTIME_EXCLUDES,
    ...(await swapFiles(root)),
    ...(options.keepHostIdentity ? [] : IDENTITY_EXCLUDES),
  ];
  // The work directory itself, when it lies inside the tree being saved.
  const within = (await realpath(root)).replace(/\/$/, '');
  const work = await realpath(workDir);
  if (work === (within || '/'))
    throw new StepError(
      'preflight',
      `the work directory ${workDir} is the tree being saved: set snapshot_dir`,
    );
  if (work.startsWith(`${within}/`)) excludes.push(work.slice(within.length));
  const identity = await rootIdentity(root);
  let method: 'mount' | 'mkfs' =
    options.method === 'mkfs' || !asRoot || !existsSync('/dev/loop-control') ? 'mkfs' : 'mount';
  const virtualSize = size + (options.partitioned ? PARTITION_OFFSET : 0);
  const layout = `${virtualSize} bytes, ${options.partitioned ? 'partitioned (MBR, one partition from 1 MiB)' : 'a bare filesystem'}`;
  note(`image: ${layout}`);
  if (options.verbose || options.dryRun) note(`excludes: ${excludes.join(' ')}`);
  await options.approve?.({ virtualSize, treeBytes, treeFiles });
  if (options.dryRun) {
    note(`method: ${METHODS[method]}`);
    return {
      file,
      method: METHODS[method],
      size,
      synced: { incremental: false, files: 0, bytes: 0, vanished: false },
      warnings: [],
      bootable: false,
    };
  }

  const unlock = await lock(join(workDir, options.names.lock));
  try {
    // The filesystem's UUID: the source root's, else the one the last save chose (so clones' references hold).
    const uuidFile = `${file}.uuid`;
    if (options.clean) await rm(uuidFile, { force: true });
    const uuid = identity.uuid ?? ((await readFile(uuidFile, 'utf8').catch(() => '')).trim() || randomUUID());
    await writeFile(uuidFile, `${uuid}\n`);
    const context = { ...options, excludes, size, file, identity: { ...identity, uuid }, treeBytes };
    let built: Awaited<ReturnType<typeof viaMkfs>> | null = null;
    if (method === 'mount') {
      note(`method: ${METHODS.mount}`);
      built = await viaMount(context).catch((error: unknown) => {
        if (options.method === 'mount' || !(error instanceof LoopUnavailable)) throw error;
        note(`loop devices are not usable here (${error.message}): building without mounting`);
        return null;
      });
    }
    if (!built) {
      method = 'mkfs';
      note(`method: ${METHODS.mkfs}${asRoot ? '' : ', under fakeroot'}`);
      built = await viaMkfs(context);
    }
    const { synced, warnings, boot } = built;
    if (synced.vanished)
      warnings.unshift('some files vanished while they were being copied (rsync exit 24); the rest is saved');
    const bootable = boot?.bootable === true;
    if (bootable) {
      note('installing GRUB (boot sector and core image)…');
      await embedGrub(file, workDir);
    } else if (boot)
      warnings.push(
        `${boot.why}: the image has its partition table but no boot loader, so it is not bootable by itself (a cloud can boot it with a kernel of its own)`,
      );
    return {
      file,
      method: METHODS[method],
      size: size + (options.partitioned ? PARTITION_OFFSET : 0),
      synced,
      warnings,
      bootable,
    };
  } catch (error) {
    if (error instanceof ClientError) throw error;
    throw new StepError('snapshot', (error as Error).message);
  } finally {
    await unlock();
  }
}

interface BuildContext extends SnapshotOptions {
  size: number;
  file: string;
  /** The filesystem's label and UUID (the source root's when saving `/`, else kept from the last save). */
  identity: { uuid: string; label?: string };
  treeBytes: number;
}

/** rsync, then the excluded directories recreated, identity emptied, fstab checked, GRUB's files, in `target`. */
async function copyInto(
  context: BuildContext,
  target: string,
  incremental: boolean,
  wrap: (args: string[]) => string[] = (args) => args,
) {
  const { note, root } = context;
  note(`${incremental ? 'syncing' : 'copying'} ${root} (${context.treeBytes} bytes)…`);
  const [file, ...args] = wrap(rsyncArgs(root, target, context.excludes, context.verbose)) as [
    string,
    ...string[],
  ];
  const copied = await runStep('copy (rsync)', file, args, {
    okCodes: [24],
    ...(context.verbose ? { verbose: (line: string) => /^[<>ch.*]/.test(line) && note(line) } : {}),
  });
  const synced = { incremental, vanished: copied.code === 24, ...syncedOf(copied.stdout) };
  note(`${incremental ? 'synced' : 'copied'}: ${synced.files} files, ${synced.bytes} bytes`);
  await recreateExcludedDirs(root, target, context.excludes);
  if (!context.keepHostIdentity) await emptyIdentityFiles(target);
  const warnings = await fstabWarnings(target, context.identity);
  const boot = context.partitioned ? await grubFiles(target, context.identity.uuid) : null;
  return { synced, warnings, boot };
}

/** A new sparse image file, with its MBR when partitioned. */
async function freshImageFile(file: string, size: number, partitioned: boolean) {
  await rm(file, { force: true });
  const disk = size + (partitioned ? PARTITION_OFFSET : 0);
  const handle = await open(file, 'w', 0o600);
  try {
    await handle.truncate(disk);
    if (partitioned) await handle.write(mbr(disk), 0, 512, 0);
  } finally {
    await handle.close();
  }
}

const mkfsIdentity = (identity: BuildContext['identity']) => [
  '-L',
  (identity.label ?? 'rootfs').slice(0, 16),
  '-U',
  identity.uuid,
];

/** Without mounting: rsync into a staging tree kept between runs, then mkfs.ext4 -d writes the image. */
async function viaMkfs(context: BuildContext) {
  const { workDir, names, size, file } = context;
  const staging = join(workDir, names.staging);
  const fakeState = join(workDir, `${names.staging}.fakeroot`);
  const incremental = existsSync(staging) && !context.clean;
  if (!incremental) {
    await rm(staging, { recursive: true, force: true });
    await rm(fakeState, { force: true });
  }
  await mkdir(staging, { recursive: true, mode: 0o755 });
  // Without root, fakeroot keeps the owners and device nodes rsync could not make, for mkfs to read back.
  const underFakeroot = (args: string[]) =>
    isRoot()
      ? args
      : ['fakeroot', ...(existsSync(fakeState) ? ['-i', fakeState] : []), '-s', fakeState, '--', ...args];
  const copied = await copyInto(context, staging, incremental, underFakeroot);
  await rm(`${file}.layout`, { force: true }); // the image is new: the mount method must not reuse it
  await freshImageFile(file, size, context.partitioned);
  context.note('writing the filesystem (mkfs.ext4 -d)…');
  const [mkfs, ...args] = underFakeroot([
    sbin('mkfs.ext4'),
    '-F',
    '-q',
    '-d',
    staging,
    ...mkfsIdentity(context.identity),
    ...(context.partitioned ? ['-E', `offset=${PARTITION_OFFSET}`] : []),
    file,
    `${size / 1024}k`,
  ]) as [string, ...string[]];
  await runStep('filesystem (mkfs.ext4 -d)', mkfs, args);
  return copied;
}

class LoopUnavailable extends Error {}

/**
 * As root with loop devices, as the original: the image file (kept between runs, and reused when its size and
 * layout are unchanged, so rsync copies only what changed) is attached to a loop device (its partition alone,
 * at its offset, when partitioned), mounted, and filled.
 */
async function viaMount(context: BuildContext) {
  const { workDir, names, size, file, partitioned } = context;
  const mountpoint = join(workDir, names.mount);
  const layoutFile = `${file}.layout`;
  const layout = JSON.stringify({ size, partitioned, ...context.identity });
  const disk = size + (partitioned ? PARTITION_OFFSET : 0);
  const previous = await readFile(layoutFile, 'utf8').catch(() => '');
  const current = await stat(file).catch(() => null);
  const incremental = !context.clean && previous === layout && current?.size === disk;
  if (!incremental) {
    await rm(layoutFile, { force: true });
    await freshImageFile(file, size, partitioned);
  }
  const attached = await runStep('loop device (losetup)', 'losetup', [
    '--find',
    '--show',
    ...(partitioned ? ['--offset', String(PARTITION_OFFSET), '--sizelimit', String(size)] : []),
    file,
  ]).catch((error: Error) => {
    throw new LoopUnavailable(error.message);
  });
  const loop = attached.stdout.trim();
  try {
    if (!incremental) {
      context.note('making the filesystem (mkfs.ext4)…');
      await runStep('filesystem (mkfs.ext4)', sbin('mkfs.ext4'), [
        '-F',
        '-q',
        ...mkfsIdentity(context.identity),
        loop,
      ]);
    }
    await mkdir(mountpoint, { recursive: true, mode: 0o700 });
    await runStep('mount', 'mount', ['-t', 'ext4', loop, mountpoint]).catch((error: Error) => {
      throw incremental ? error : new LoopUnavailable(error.message);
    });
    try {
      const copied = await copyInto(context, mountpoint, incremental);
      // Blocks of files deleted since the last save become holes again (the loop device passes the discards
      // on to the image file), so they are neither converted nor sent. Best effort: not every kernel can.
      if (incremental)
        await runStep('trim (fstrim)', 'fstrim', [mountpoint]).catch((error: Error) =>
          context.note(`note: ${error.message}; blocks freed since the last save stay in the image`),
        );
      return copied;
    } finally {
      await runStep('unmount', 'umount', [mountpoint]);
      await writeFile(layoutFile, layout);
    }
  } finally {
    await runStep('loop device (losetup -d)', 'losetup', ['-d', loop]).catch(() => {});
  }
}

/** Where GRUB's own files go in the image: beside, not over, a GRUB the tree may have of its own. */
const GRUB_DIR = 'boot/repoman-grub';
const GRUB_MODULES = '/usr/lib/grub/i386-pc';

/**
 * GRUB (BIOS) for a partitioned image, in two halves. This one puts its modules and a grub.cfg in the tree:
 * the grub.cfg finds the filesystem by UUID and hands over to the tree's own /boot/grub/grub.cfg when it has
 * one (a saved machine's, which names the root filesystem by the UUID the image kept), else boots the newest
 * kernel in /boot. Needs `grub-mkimage` and the i386-pc modules (Debian's grub-pc-bin) and a kernel.
 */
async function grubFiles(target: string, uuid: string): Promise<{ bootable: boolean; why?: string }> {
  if (!existsSync(join(GRUB_MODULES, 'boot.img')) || !(await installed('grub-mkimage')))
    return { bootable: false, why: 'GRUB for BIOS is not installed here (Debian: grub-pc-bin)' };
  const kernels = (await readdir(join(target, 'boot')).catch(() => [] as string[]))
    .filter((name) => /^vmlinuz-/.test(name))
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const kernel = kernels.at(-1);
  if (!kernel) return { bootable: false, why: 'there is no kernel (vmlinuz-*) in /boot' };
  const dir = join(target, GRUB_DIR);
  await rm(dir, { recursive: true, force: true });
  await mkdir(join(dir, 'i386-pc'), { recursive: true, mode: 0o755 });
  await run('cp', ['-r', '--no-preserve=ownership', `${GRUB_MODULES}/.`, join(dir, 'i386-pc')]);
  const version = kernel.slice('vmlinuz-'.length);
  const initrd = existsSync(join(target, 'boot', `initrd.img-${version}`))
    ? `  initrd /boot/initrd.img-${version}\n`
    : '';
  await writeFile(
    join(dir, 'grub.cfg'),
    [
      '# Written by repoman save-image: the tree’s own GRUB configuration if it has one, else its newest kernel.',
      'insmod part_msdos',
      'insmod ext2',
      `search --no-floppy --fs-uuid --set=root ${uuid}`,
      'if [ -f /boot/grub/grub.cfg ]; then',
      '  configfile /boot/grub/grub.cfg',
      'fi',
      'set timeout=2',
      `menuentry "Linux ${version}" {`,
      `  linux /boot/${kernel} root=UUID=${uuid} ro console=tty0 console=ttyS0`,
      `${initrd}}`,
      '',
    ].join('\n'),
  );
  return { bootable: true };
}

/**
 * The other half: GRUB's boot sector in the MBR (its code only: the disk signature and partition table stay)
 * and its core image in the gap before the partition, whose prefix is the directory `grubFiles` filled.
 */
async function embedGrub(file: string, workDir: string) {
  const core = join(workDir, 'repoman-grub-core.img');
  await runStep('boot loader (grub-mkimage)', 'grub-mkimage', [
    '-O',
    'i386-pc',
    '-o',
    core,
    '-p',
    `(hd0,msdos1)/${GRUB_DIR}`,
    'biosdisk',
    'part_msdos',
    'ext2',
  ]);
  try {
    const image = await readFile(core);
    if (image.length > PARTITION_OFFSET - 512)
      throw new StepError('boot loader', 'GRUB’s core image does not fit before the partition');
    const boot = await readFile(join(GRUB_MODULES, 'boot.img'));
    boot[0x66] = 0x90; // a hard disk: the drive check's jump becomes no-ops, as grub-install does
    boot[0x67] = 0x90;
    const handle = await open(file, 'r+');
    try {
      await handle.write(boot, 0, 440, 0);
      await handle.write(image, 0, image.length, 512);
    } finally {
      await handle.close();
    }
  } finally {
    await rm(core, { force: true });
  }
}
