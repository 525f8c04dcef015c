/**
 * The inspector against qemu's own probing, file by file. For fixtures of every format qemu 7.2 probes (made
 * by qemu-img where it can make them, by hand where it cannot) and files generated from them with a seeded
 * generator (header fields, magic numbers, descriptor lines, truncation), `qemu-img info --output=json` runs
 * without `-f`, as nobody, alone in an empty directory, with a timeout (a name in a header may be a FIFO).
 * Then, for every file:
 * - where qemu opens it, the inspector names the format qemu named (ISO 9660, OVA and compressed files are
 *   raw bytes to qemu), refused or not;
 * - where qemu fails, the inspector refuses it;
 * - where qemu would read a backing file, a data file or an extent other than the file, it is refused;
 * - where the inspector accepts a disk format, its virtual size is qemu's.
 *
 * REPOMAN_FORMAT_FUZZ_COUNT sets how many files are generated (300 by default), REPOMAN_FORMAT_FUZZ_SEED the
 * seed (printed with any failure, to replay it); failing files are kept in a directory the failure names.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { type Inspection, inspect } from '../src/formats/inspect.ts';
import { qemuImg } from './helpers/images.ts';

const run = promisify(execFile);
const COUNT = Number(process.env.REPOMAN_FORMAT_FUZZ_COUNT ?? 300);
const SEED = Number(process.env.REPOMAN_FORMAT_FUZZ_SEED ?? 20240703);
const NOBODY = 65534;

/** A small seeded generator (mulberry32): the same seed makes the same files. */
function generator(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (below: number) => Math.floor(next() * below);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)] as T;
  return { next, int, pick };
}
type Random = ReturnType<typeof generator>;

interface Sample {
  origin: string;
  data: Buffer;
}

interface QemuAnswer {
  ok: boolean;
  format?: string;
  virtualSize?: number;
  /** Files other than the image that qemu names as backing, data file or extent. */
  others: string[];
  message?: string;
}

/** What qemu-img info says of `file`, run as nobody in the file's own (otherwise empty) directory. */
async function qemuInfo(dir: string, name: string): Promise<QemuAnswer> {
  const asNobody =
    process.getuid?.() === 0
      ? ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'qemu-img']
      : ['qemu-img'];
  try {
    const { stdout } = await run(
      asNobody[0] as string,
      [...asNobody.slice(1), 'info', '--output=json', name],
      {
        cwd: dir,
        env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' },
        timeout: 20_000,
        killSignal: 'SIGKILL',
        maxBuffer: 4 * 1024 * 1024,
      },
    );
    const info = JSON.parse(stdout) as {
      format: string;
      'virtual-size': number;
      'backing-filename'?: string;
      'full-backing-filename'?: string;
      'format-specific'?: { data?: { 'data-file'?: string; extents?: { filename?: string }[] } };
    };
    const others = [
      info['backing-filename'],
      info['full-backing-filename'],
      info['format-specific']?.data?.['data-file'],
      ...(info['format-specific']?.data?.extents ?? []).map((e) => e.filename),
    ].filter((n): n is string => n !== undefined && n !== name && n !== join(dir, name));
    return { ok: true, format: info.format, virtualSize: info['virtual-size'], others };
  } catch (error) {
    const { stderr, killed } = error as { stderr?: string; killed?: boolean };
    return { ok: false, others: [], message: killed ? 'timed out' : (stderr ?? String(error)).trim() };
  }
}

const inspectBuffer = (data: Buffer) =>
  inspect(data.length, async (offset, length) => data.subarray(offset, offset + length));

/** The driver qemu uses for what the inspector found: ISO 9660, archives and compressed files are raw bytes. */
const qemuDriver = (format: Inspection['format']) =>
  ['iso', 'ova', 'gzip', 'xz', 'zstd', 'bzip2'].includes(format) ? 'raw' : format;

/** What is wrong with the inspector's answer for qemu's; empty when they agree. */
function disagreement(size: number, found: Inspection, qemu: QemuAnswer): string[] {
  const problems: string[] = [];
  const refused = found.refusals.length > 0;
  if (!qemu.ok && !refused)
    problems.push(`qemu fails (${qemu.message}) but it is accepted as ${found.format}`);
  if (qemu.others.length > 0 && !refused)
    problems.push(`qemu would read ${qemu.others.join(', ')} but it is accepted`);
  if (qemu.ok && qemuDriver(found.format) !== qemu.format)
    problems.push(`qemu opens it as ${qemu.format}, the inspector says ${found.format}`);
  if (qemu.ok && !refused && found.virtualSize !== null && !['iso'].includes(found.format)) {
    // qemu's raw driver counts whole sectors.
    const expected = found.format === 'raw' ? Math.ceil(size / 512) * 512 : found.virtualSize;
    if (expected !== qemu.virtualSize)
      problems.push(`qemu's virtual size is ${qemu.virtualSize}, the inspector's ${found.virtualSize}`);
  }
  return problems;
}

const BIG_ENDIAN = new Set(['qcow2', 'qcow', 'vpc']);

/** A few changes of the kinds that reach a reader's decisions. */
function mutate(random: Random, sample: Sample, format: string): Sample {
  let data = Buffer.from(sample.data);
  const steps: string[] = [];
  const changes = 1 + random.int(3);
  for (let i = 0; i < changes; i++) {
    const kind = random.int(10);
    if (kind < 3 && data.length > 0) {
      // A byte in the first sector, where most headers are.
      const at = random.int(Math.min(512, data.length));
      data[at] = random.int(256);
      steps.push(`byte ${at}`);
    } else if (kind < 5 && data.length >= 128) {
      // A header field set to a value readers trip on.
      const width = random.pick([4, 8]);
      const at = random.int(Math.min(128, data.length - width) / 4) * 4;
      const value = random.pick([0n, 1n, 2n, 9n, 16n, 512n, 0x7fffffffn, 0xffffffffn, BigInt(data.length)]);
      const big = BIG_ENDIAN.has(format);
      if (width === 8) big ? data.writeBigUInt64BE(value, at) : data.writeBigUInt64LE(value, at);
      else big ? data.writeUInt32BE(Number(value), at) : data.writeUInt32LE(Number(value), at);
      steps.push(`${width * 8}-bit field at ${at} = ${value}`);
    } else if (kind < 7 && data.length > 0) {
      // A byte in a sector that holds something (tables, descriptors, headers further on).
      const sectors: number[] = [];
      for (let s = 0; s * 512 < data.length && sectors.length < 4096; s++)
        if (data.subarray(s * 512, s * 512 + 512).some((b) => b !== 0)) sectors.push(s);
      const sector = sectors.length > 0 ? random.pick(sectors) : 0;
      const at = Math.min(data.length - 1, sector * 512 + random.int(512));
      data[at] = random.pick([0, 1, 0xff, random.int(256)]);
      steps.push(`byte ${at} in a used sector`);
    } else if (kind < 8) {
      const length =
        random.next() < 0.5 ? random.int(Math.min(data.length, 4096) + 1) : random.int(data.length + 1);
      data = data.subarray(0, length);
      steps.push(`cut at ${length}`);
    } else {
      // Another format's magic at the start, or vdi's at 0x40.
      const magic = random.pick([
        'QFI\xfb\0\0\0\x01',
        'QFI\xfb\0\0\0\x02',
        'QFI\xfb\0\0\0\x03',
        'QED\0',
        'KDMV',
        'COWD',
        'vhdxfile',
        'conectix',
        'LUKS\xba\xbe\0\x01',
        'WithoutFreeSpace\x02\0\0\0',
        'vdi',
      ]);
      const grown = Buffer.alloc(Math.max(data.length, 0x44));
      data.copy(grown);
      data = grown;
      if (magic === 'vdi') data.writeUInt32LE(0xbeda107f, 0x40);
      else data.write(magic, 0, 'latin1');
      steps.push(`magic ${JSON.stringify(magic)}`);
    }
  }
  return { origin: `${sample.origin}, ${steps.join(', ')}`, data };
}

const EXTENT_NAMES = ['"missing.bin"', '"/etc/shadow"', '"/etc/hostname"', '"image"', '""', 'missing.bin'];

/** A vmdk text descriptor from pieces, well or badly formed: comments, blank lines, versions, extents. */
function descriptorText(random: Random): Sample {
  const lines: string[] = [];
  const before = random.int(4);
  for (let i = 0; i < before; i++)
    lines.push(
      random.pick(['# Disk DescriptorFile', '# a comment', '#', '   ', ' ', '', '\t', 'x=1', '  # indented']),
    );
  lines.push(
    random.pick([
      'version=1',
      'version=2',
      'version=3',
      'version=4',
      'version=1 ',
      ' version=1',
      'version = 1',
      'Version=1',
    ]),
  );
  lines.push(`CID=${random.pick(['fffffffe', '1', 'zz'])}`, 'parentCID=ffffffff');
  if (random.next() < 0.8)
    lines.push(
      `createType="${random.pick(['monolithicFlat', 'monolithicSparse', 'twoGbMaxExtentFlat', 'vmfs', 'streamOptimized', ''])}"`,
    );
  if (random.next() < 0.3) lines.push('parentFileNameHint="missing-parent.vmdk"');
  lines.push('');
  const extents = random.int(3);
  for (let i = 0; i < extents; i++)
    lines.push(
      `${random.pick(['RW', 'RDONLY', 'NOACCESS'])} ${random.pick([0, 1, 2048])} ${random.pick(['FLAT', 'SPARSE', 'ZERO', 'VMFS'])} ${random.pick(EXTENT_NAMES)}${random.pick([' 0', ''])}`,
    );
  const eol = random.next() < 0.2 ? '\r\n' : '\n';
  let text = lines.join(eol) + eol;
  if (random.next() < 0.1)
    text = `${text.slice(0, random.int(text.length))}\0${text.slice(random.int(text.length))}`;
  return { origin: `descriptor ${JSON.stringify(text)}`, data: Buffer.from(text, 'latin1') };
}

describe('format probing: the inspector against qemu-img, file by file', () => {
  let dir: string;
  const fixtures: Sample[] = [];
  const fixtureFormat = new Map<Sample, string>();

  before(async () => {
    await run('qemu-img', ['--version']).catch(() => {
      throw new Error('qemu-img is missing: apt-get install qemu-utils (.ci/run does)');
    });
    dir = await mkdtemp(join(tmpdir(), 'repoman-probe-'));
    await chmod(dir, 0o755);
    const made = join(dir, 'made');
    await mkdir(made);
    // (LUKS creation may fail on a busy machine: qemuImg tries that again)
    const qemu = (...args: string[]) => qemuImg(args, { cwd: made });
    // The data every format holds: a pattern at the start and in the middle of 1 MiB.
    const disk = Buffer.alloc(1024 * 1024);
    disk.fill('REPOMAN DATA ', 0, 4096);
    disk.fill('MIDDLE ', 512 * 1024, 516 * 1024);
    await writeFile(join(made, 'disk.raw'), disk);
    const secret = ['--object', 'secret,id=sec0,data=repoman'];
    const making: [string, string, string[]][] = [
      ['raw', 'disk.raw', []],
      ['qcow2', 'v3.qcow2', ['convert', '-f', 'raw', '-O', 'qcow2', 'disk.raw', 'v3.qcow2']],
      [
        'qcow2',
        'v2.qcow2',
        ['convert', '-f', 'raw', '-O', 'qcow2', '-o', 'compat=0.10', 'disk.raw', 'v2.qcow2'],
      ],
      [
        'qcow2',
        'zstd.qcow2',
        [
          'convert',
          '-f',
          'raw',
          '-O',
          'qcow2',
          '-c',
          '-o',
          'compression_type=zstd',
          'disk.raw',
          'zstd.qcow2',
        ],
      ],
      [
        'qcow2',
        'backed.qcow2',
        ['create', '-f', 'qcow2', '-u', '-b', 'missing.raw', '-F', 'raw', 'backed.qcow2', '1M'],
      ],
      ['qcow2', 'passwd.qcow2', ['create', '-f', 'qcow2', '-b', '/etc/passwd', '-F', 'raw', 'passwd.qcow2']],
      [
        'qcow2',
        'data-file.qcow2',
        ['create', '-f', 'qcow2', '-o', 'data_file=data.bin', 'data-file.qcow2', '1M'],
      ],
      [
        'qcow2',
        'luks.qcow2',
        [
          'create',
          ...secret,
          '-f',
          'qcow2',
          '-o',
          'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=200',
          'luks.qcow2',
          '1M',
        ],
      ],
      ['vmdk', 'sparse.vmdk', ['convert', '-f', 'raw', '-O', 'vmdk', 'disk.raw', 'sparse.vmdk']],
      [
        'vmdk',
        'stream.vmdk',
        ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', 'disk.raw', 'stream.vmdk'],
      ],
      [
        'vmdk',
        'split.vmdk',
        ['create', '-f', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', 'split.vmdk', '1M'],
      ],
      ['vmdk', 'flat.vmdk', ['create', '-f', 'vmdk', '-o', 'subformat=monolithicFlat', 'flat.vmdk', '1M']],
      ['vpc', 'dynamic.vhd', ['convert', '-f', 'raw', '-O', 'vpc', 'disk.raw', 'dynamic.vhd']],
      [
        'raw',
        'fixed.vhd',
        ['convert', '-f', 'raw', '-O', 'vpc', '-o', 'subformat=fixed', 'disk.raw', 'fixed.vhd'],
      ],
      [
        'vhdx',
        'disk.vhdx',
        ['convert', '-f', 'raw', '-O', 'vhdx', '-o', 'log_size=1M,block_size=1M', 'disk.raw', 'disk.vhdx'],
      ],
      ['vdi', 'disk.vdi', ['convert', '-f', 'raw', '-O', 'vdi', 'disk.raw', 'disk.vdi']],
      ['qed', 'disk.qed', ['convert', '-f', 'raw', '-O', 'qed', 'disk.raw', 'disk.qed']],
      ['qed', 'evil.qed', ['create', '-f', 'qed', '-b', '/etc/passwd', '-F', 'raw', 'evil.qed']],
      ['qcow', 'disk.qcow', ['convert', '-f', 'raw', '-O', 'qcow', 'disk.raw', 'disk.qcow']],
      ['qcow', 'backed.qcow', ['create', '-f', 'qcow', '-b', '/etc/passwd', '-F', 'raw', 'backed.qcow']],
      [
        'parallels',
        'disk.parallels',
        ['convert', '-f', 'raw', '-O', 'parallels', 'disk.raw', 'disk.parallels'],
      ],
      [
        'luks',
        'disk.luks',
        ['create', ...secret, '-f', 'luks', '-o', 'key-secret=sec0,iter-time=200', 'disk.luks', '1M'],
      ],
    ];
    for (const [format, file, args] of making) {
      if (args.length > 0) await qemu(...args);
      const sample = { origin: `qemu-img's ${file}`, data: await readFile(join(made, file)) };
      fixtures.push(sample);
      fixtureFormat.set(sample, format);
    }
    const byHand: [string, string, Buffer][] = [
      // The review's two: a descriptor behind another comment, and the QED above (evil.qed).
      [
        'vmdk',
        'a descriptor behind another comment',
        Buffer.from(
          '# a comment\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\nRW 2048 FLAT "/etc/shadow" 0\n',
        ),
      ],
      ['bochs', 'a bochs header', bochs()],
      ['cloop', 'a cloop header', cloop()],
      ['raw', 'an ISO 9660 volume', isoVolume()],
      ['raw', 'a gzip file', gzipSync(disk)],
      ['raw', 'an empty file', Buffer.alloc(0)],
      ['raw', 'three bytes', Buffer.from('QFI')],
      ['qcow2', 'a qcow2 magic alone', Buffer.from('QFI\xfb\0\0\0\x03', 'latin1')],
    ];
    for (const [format, origin, data] of byHand) {
      const sample = { origin, data };
      fixtures.push(sample);
      fixtureFormat.set(sample, format);
    }
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it(`agrees with qemu-img on every fixture and ${COUNT} generated files (seed ${SEED})`, async () => {
    const random = generator(SEED);
    const samples: Sample[] = [...fixtures];
    for (let i = 0; i < COUNT; i++) {
      if (i % 4 === 0) samples.push(descriptorText(random));
      else {
        const base = random.pick(fixtures);
        samples.push(mutate(random, base, fixtureFormat.get(base) ?? 'raw'));
      }
    }
    const failures: string[] = [];
    const kept = join(dir, 'kept');
    let nextSample = 0;
    // Two at a time, each alone in its own empty directory, so that a name in one never finds another.
    const worker = async (slot: number) => {
      const probeDir = join(dir, `probe-${slot}`);
      await mkdir(probeDir, { mode: 0o755 });
      await chmod(probeDir, 0o755);
      for (let index = nextSample++; index < samples.length; index = nextSample++) {
        const sample = samples[index] as Sample;
        const file = join(probeDir, 'image');
        await writeFile(file, sample.data, { mode: 0o644 });
        const [found, qemu] = await Promise.all([inspectBuffer(sample.data), qemuInfo(probeDir, 'image')]);
        await rm(file, { force: true });
        const problems = disagreement(sample.data.length, found, qemu);
        if (problems.length > 0) {
          await mkdir(kept, { recursive: true });
          await writeFile(join(kept, `sample-${index}`), sample.data);
          failures.push(`#${index} (${sample.origin}): ${problems.join('; ')}`);
        }
      }
    };
    await Promise.all([worker(0), worker(1)]);
    if (failures.length > 0) {
      dir = ''; // keep the files for whoever reads this
      assert.fail(
        `${failures.length} of ${samples.length} files disagree (REPOMAN_FORMAT_FUZZ_SEED=${SEED} REPOMAN_FORMAT_FUZZ_COUNT=${COUNT}; files in ${kept}):\n${failures.slice(0, 40).join('\n')}`,
      );
    }
  });

  it('names every fixture as qemu does, and refuses those that read other files or are not stored', async () => {
    for (const sample of fixtures) {
      const found = await inspectBuffer(sample.data);
      const expected = fixtureFormat.get(sample);
      assert.equal(qemuDriver(found.format), expected, sample.origin);
    }
  });
});

/** A Bochs growing redolog header: qemu probes it by three strings and a version. */
function bochs(): Buffer {
  const header = Buffer.alloc(512 + 4 * 16 + 16 * 512);
  header.write('Bochs Virtual HD Image', 0, 'latin1');
  header.write('Redolog', 32, 'latin1');
  header.write('Growing', 48, 'latin1');
  header.writeUInt32LE(0x00020000, 64);
  header.writeUInt32LE(512, 68); // header size
  header.writeUInt32LE(16, 72); // catalog entries
  header.writeUInt32LE(1, 76); // bitmap size
  header.writeUInt32LE(512 * 8, 80); // extent size
  header.writeBigUInt64LE(16n * 512n * 8n, 88); // disk size
  return header;
}

/** A cloop v2.0 header: the shell line qemu probes, then the block size and count. */
function cloop(): Buffer {
  const data = Buffer.alloc(4096);
  data.write(
    '#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n',
    0,
    'latin1',
  );
  data.writeUInt32BE(512, 128);
  data.writeUInt32BE(1, 132);
  data.writeBigUInt64BE(144n, 136);
  data.writeBigUInt64BE(160n, 144);
  return data;
}

function isoVolume(): Buffer {
  const iso = Buffer.alloc(40 * 2048);
  iso[32768] = 1;
  iso.write('CD001', 32769, 'latin1');
  iso.writeUInt32LE(40, 32768 + 80);
  iso.writeUInt16LE(2048, 32768 + 128);
  return iso;
}
