/**
 * The format inspector: what a disk image is, from its own headers, without running any external tool. It
 * reads only the few ranges each format needs, checks that what the headers say fits in the file, and reports
 * what would make a hypervisor or qemu-img read other files (a qcow2 backing file or external data file, a
 * vmdk extent elsewhere): the upload is refused for those (CVE-2024-32498).
 */

export type DiskFormat = 'raw' | 'qcow2' | 'vmdk' | 'vpc' | 'vhdx' | 'vdi' | 'iso';
export type Compression = 'gzip' | 'xz' | 'zstd' | 'bzip2';

/** Every format the inspector names: what uploaders may declare and admins may allow. */
export const FORMATS = [
  'raw',
  'qcow2',
  'vmdk',
  'vpc',
  'vhdx',
  'vdi',
  'iso',
  'ova',
  'gzip',
  'xz',
  'zstd',
  'bzip2',
] as const;

/**
 * Features that are not unsafe for the host but that a repository may not want, refused unless an admin
 * allows them: `encrypted` (a qcow2 encrypted with AES or LUKS boots only where its key is given).
 */
export const FEATURES = ['encrypted'] as const;

export interface Inspection {
  /** The disk format; for a compressed file or an archive, what it wraps is unknown until unpacked. */
  format: DiskFormat | Compression | 'ova';
  /** Bytes the guest sees, where the format says. */
  virtualSize: number | null;
  /** raw: the partition table or filesystem found at its start. */
  partitionTable?: 'mbr' | 'gpt' | null;
  filesystem?: string | null;
  /** vmdk: monolithicSparse, streamOptimized, …; vpc: fixed or dynamic. */
  subformat?: string;
  /** qcow2: v2 or v3, encryption, compression type. */
  version?: number;
  encrypted?: boolean;
  /** qcow2: aes or luks, when encrypted. */
  encryption?: string;
  compressionType?: string;
  /** Why the file must not be stored (each a stable code and a reason); empty when it is safe. */
  refusals: Refusal[];
}

export interface Refusal {
  code: 'backing_file' | 'external_data_file' | 'external_extent' | 'header_invalid';
  reason: string;
}

/** Reads `length` bytes at `offset` (fewer at the end of the file). */
export type ReadAt = (offset: number, length: number) => Promise<Buffer>;

const SECTOR = 512;

class HeaderLie extends Error {}

/** Inspects a file of `size` bytes. Never throws for what the file holds: a bad header is a refusal. */
export async function inspect(size: number, readAt: ReadAt): Promise<Inspection> {
  const head = await readAt(0, 4096);
  // Magic numbers are looked for in a padded copy, so that a file of a few bytes is simply raw.
  const probe = Buffer.concat([head, Buffer.alloc(Math.max(0, 4096 - head.length))]);
  const text = (from: number, to: number) => probe.subarray(from, to).toString('latin1');
  let format: Inspection['format'] = 'raw';
  try {
    if (text(0, 4) === 'QFI\xfb') {
      format = 'qcow2';
      return await qcow2(head, size, readAt);
    }
    if (text(0, 4) === 'KDMV') {
      format = 'vmdk';
      return await vmdkSparse(head, size, readAt);
    }
    if (text(0, 21) === '# Disk DescriptorFile') return vmdkDescriptor(head);
    if (text(0, 8) === 'vhdxfile') {
      format = 'vhdx';
      return await vhdx(size, readAt);
    }
    if (text(0, 8) === 'conectix') {
      format = 'vpc';
      return vpc(head, size, 'dynamic');
    }
    if (probe.readUInt32LE(0x40) === 0xbeda107f) {
      format = 'vdi';
      return vdi(head, size);
    }
    const wrapper = compression(probe);
    if (wrapper) return { format: wrapper, virtualSize: null, refusals: [] };
    if (text(257, 262) === 'ustar') return { format: 'ova', virtualSize: null, refusals: [] };
    if (size >= 32768 + 2048) {
      const volume = await readAt(32768, 2048);
      if (volume.subarray(1, 6).toString('latin1') === 'CD001') return iso(volume, size);
    }
    if (size >= SECTOR) {
      const footer = await readAt(size - SECTOR, SECTOR);
      if (footer.subarray(0, 8).toString('latin1') === 'conectix') {
        format = 'vpc';
        return vpc(footer, size, 'fixed');
      }
    }
    return await raw(probe, size, readAt);
  } catch (error) {
    // A header that lies, or one too short to hold what its format needs: never stored.
    const cut = error instanceof RangeError;
    if (!(error instanceof HeaderLie) && !cut) throw error;
    return {
      format,
      virtualSize: null,
      refusals: [
        { code: 'header_invalid', reason: cut ? `the ${format} header is cut short` : error.message },
      ],
    };
  }
}

/** Fails the inspection when a header points outside the file or says something impossible. */
function expect(condition: boolean, reason: string): asserts condition {
  if (!condition) throw new HeaderLie(reason);
}

const u64be = (buffer: Buffer, offset: number) => Number(buffer.readBigUInt64BE(offset));
const u64le = (buffer: Buffer, offset: number) => Number(buffer.readBigUInt64LE(offset));

async function qcow2(head: Buffer, size: number, readAt: ReadAt): Promise<Inspection> {
  expect(head.length >= 72, 'the qcow2 header is cut short');
  const version = head.readUInt32BE(4);
  expect(version === 2 || version === 3, `qcow2 version ${version} is not one we know`);
  const backingOffset = u64be(head, 8);
  const backingSize = head.readUInt32BE(16);
  const clusterBits = head.readUInt32BE(20);
  const virtualSize = u64be(head, 24);
  const cryptMethod = head.readUInt32BE(32);
  const l1Size = head.readUInt32BE(36);
  const l1Offset = u64be(head, 40);
  const refcountOffset = u64be(head, 48);
  expect(clusterBits >= 9 && clusterBits <= 21, `a qcow2 cluster of 2^${clusterBits} bytes is impossible`);
  expect(
    l1Offset + l1Size * 8 <= size,
    `the qcow2 L1 table (at ${l1Offset}, ${l1Size} entries) lies beyond the end of the file`,
  );
  const refcountClusters = head.readUInt32BE(56);
  const cluster = 2 ** clusterBits;
  expect(
    refcountOffset + refcountClusters * cluster <= size,
    `the qcow2 refcount table (at ${refcountOffset}, ${refcountClusters} clusters) lies beyond the end of the file`,
  );
  // Tables start on a cluster after the header's, and never overlap (qemu's own checks, made before it opens).
  expect(
    refcountOffset >= cluster && refcountOffset % cluster === 0,
    `the qcow2 refcount table at ${refcountOffset} is not on a cluster after the header`,
  );
  if (l1Size > 0) {
    expect(
      l1Offset >= cluster && l1Offset % cluster === 0,
      `the qcow2 L1 table at ${l1Offset} is not on a cluster after the header`,
    );
    expect(
      l1Offset + l1Size * 8 <= refcountOffset || refcountOffset + refcountClusters * cluster <= l1Offset,
      'the qcow2 L1 table overlaps the refcount table',
    );
  }
  // Each L1 entry maps cluster/8 clusters: too few entries for the virtual size is a header that lies.
  expect(
    l1Size >= Math.ceil(virtualSize / (cluster * (cluster / 8))),
    `the qcow2 L1 table (${l1Size} entries) is too small for a virtual size of ${virtualSize}`,
  );
  const refusals: Refusal[] = [];
  let headerLength = 72;
  let incompatible = 0n;
  let compressionType = 'zlib';
  if (version === 3) {
    expect(head.length >= 104, 'the qcow2 v3 header is cut short');
    incompatible = head.readBigUInt64BE(72);
    headerLength = head.readUInt32BE(100);
    expect(
      headerLength >= 104 && headerLength <= 4096,
      `a qcow2 header of ${headerLength} bytes is impossible`,
    );
    if (headerLength > 104 && head[104] === 1) compressionType = 'zstd';
  }
  if (backingOffset !== 0) {
    expect(
      backingOffset + backingSize <= size && backingSize <= 1023,
      'the qcow2 backing file name lies beyond the file',
    );
    const name = (await readAt(backingOffset, backingSize)).toString('utf8');
    refusals.push({
      code: 'backing_file',
      reason: `the qcow2 image reads another file as its backing file: '${name}'`,
    });
  }
  // Header extensions: an external data file is named there (and flagged by incompatible bit 2).
  for (let at = headerLength; at + 8 <= head.length; ) {
    const type = head.readUInt32BE(at);
    const length = head.readUInt32BE(at + 4);
    if (type === 0) break;
    expect(at + 8 + length <= head.length, 'a qcow2 header extension runs past the header');
    if (type === 0x44415441) {
      const name = head.subarray(at + 8, at + 8 + length).toString('utf8');
      refusals.push({
        code: 'external_data_file',
        reason: `the qcow2 image keeps its data in another file: '${name}'`,
      });
    }
    at += 8 + Math.ceil(length / 8) * 8;
  }
  if (incompatible & 4n && !refusals.some((r) => r.code === 'external_data_file'))
    refusals.push({
      code: 'external_data_file',
      reason: 'the qcow2 image keeps its data in an external file',
    });
  return {
    format: 'qcow2',
    virtualSize,
    version,
    encrypted: cryptMethod !== 0,
    ...(cryptMethod !== 0
      ? { encryption: cryptMethod === 2 ? 'luks' : cryptMethod === 1 ? 'aes' : `method ${cryptMethod}` }
      : {}),
    compressionType,
    refusals,
  };
}

/** A vmdk descriptor: its type, its extents, and the size they add up to. */
function descriptor(text: string): { createType: string | null; extents: string[]; sectors: number } {
  // qemu takes the first `createType="` anywhere in the text, even inside a comment: so do we, and a second
  // one (which a reader that skips comments would take instead) makes the descriptor ambiguous.
  const types = [...text.matchAll(/createType\s*=\s*"([^"]*)"/g)];
  expect(types.length <= 1, 'the vmdk descriptor names its type more than once');
  const createType = types[0]?.[1] ?? null;
  const extents: string[] = [];
  let sectors = 0;
  for (const line of text.split(/\r?\n/)) {
    const extent = /^\s*(?:RW|RDONLY|NOACCESS)\s+(\d+)\s+(\w+)(?:\s+"([^"]*)")?/.exec(line);
    if (!extent) continue;
    sectors += Number(extent[1]);
    extents.push(extent[3] ?? extent[2] ?? '');
  }
  return { createType, extents, sectors };
}

/** Only the self-contained kinds (one file, one extent) are safe: the others read other files. */
const SELF_CONTAINED = new Set(['monolithicSparse', 'streamOptimized']);

async function vmdkSparse(head: Buffer, size: number, readAt: ReadAt): Promise<Inspection> {
  const capacity = u64le(head, 12) * SECTOR;
  const descriptorOffset = u64le(head, 28) * SECTOR;
  const descriptorSize = u64le(head, 36) * SECTOR;
  expect(
    capacity >= 0 && descriptorOffset + descriptorSize <= size,
    'the vmdk descriptor lies beyond the end of the file',
  );
  let subformat = head.readUInt32LE(8) & 0x10000 ? 'streamOptimized' : 'monolithicSparse';
  const refusals: Refusal[] = [];
  // A sparse header of capacity 0 is not a disk: qemu reads its embedded descriptor's extents instead.
  if (capacity === 0)
    refusals.push({
      code: 'external_extent',
      reason: 'a sparse vmdk of capacity 0 is read through its descriptor, which can name other files',
    });
  if (descriptorOffset !== 0) {
    expect(descriptorSize <= 1024 * 1024, 'the vmdk descriptor is impossibly large');
    const text = (await readAt(descriptorOffset, descriptorSize)).toString('latin1').replace(/\0+$/, '');
    const { createType, extents } = descriptor(text);
    subformat = createType ?? subformat;
    if (!SELF_CONTAINED.has(subformat))
      refusals.push({ code: 'external_extent', reason: `a '${subformat}' vmdk reads other files` });
    else if (extents.length !== 1)
      refusals.push({
        code: 'external_extent',
        reason: `the vmdk names ${extents.length} extents (${extents.join(', ')}); only one file is stored`,
      });
  }
  return { format: 'vmdk', virtualSize: capacity, subformat, refusals };
}

function vmdkDescriptor(head: Buffer): Inspection {
  const { createType, extents, sectors } = descriptor(head.toString('latin1'));
  return {
    format: 'vmdk',
    virtualSize: sectors * SECTOR,
    subformat: createType ?? 'descriptor',
    refusals: [
      {
        code: 'external_extent',
        reason: `a vmdk descriptor file holds no data: it reads ${extents.map((e) => `'${e}'`).join(', ') || 'other files'}`,
      },
    ],
  };
}

/** VHD (qemu's "vpc"): the footer, at the start of a dynamic disk (a copy) and at the end of every disk. */
function vpc(footer: Buffer, size: number, subformat: 'fixed' | 'dynamic'): Inspection {
  const currentSize = u64be(footer, 48);
  const cylinders = footer.readUInt16BE(56);
  const heads = footer[58] as number;
  const sectors = footer[59] as number;
  const creator = footer.subarray(28, 32).toString('latin1');
  // As qemu reads it: Virtual PC's geometry, except from tools known to write the exact size.
  const chs = cylinders * heads * sectors;
  const exact = ['win ', 'qem2', 'd2v ', 'CTXS', 'tap\0'].includes(creator) || chs === 65535 * 16 * 255;
  const virtualSize = exact ? currentSize : chs * SECTOR;
  if (subformat === 'fixed') expect(currentSize + SECTOR <= size, 'the vhd says it is larger than the file');
  return { format: 'vpc', virtualSize, subformat, refusals: [] };
}

const guid = (buffer: Buffer, at: number) => {
  const hex = buffer.subarray(at, at + 16).toString('hex');
  const le = (s: string) => s.match(/../g)?.reverse().join('') ?? '';
  return `${le(hex.slice(0, 8))}-${le(hex.slice(8, 12))}-${le(hex.slice(12, 16))}-${hex.slice(16, 20)}-${hex.slice(20)}`.toUpperCase();
};
const METADATA_REGION = '8B7CA206-4790-4B9A-B8FE-575F050F886E';
const VIRTUAL_DISK_SIZE = '2FA54224-CD1B-4876-B211-5DBED83BF4B8';

async function vhdx(size: number, readAt: ReadAt): Promise<Inspection> {
  const regions = await readAt(192 * 1024, 64 * 1024);
  expect(regions.subarray(0, 4).toString('latin1') === 'regi', 'the vhdx region table is missing');
  const count = regions.readUInt32LE(8);
  expect(count <= 2047, 'the vhdx region table is impossible');
  for (let i = 0; i < count; i++) {
    const entry = 16 + i * 32;
    if (guid(regions, entry) !== METADATA_REGION) continue;
    const offset = u64le(regions, entry + 16);
    const length = regions.readUInt32LE(entry + 24);
    expect(
      offset + length <= size && length <= 1024 * 1024,
      'the vhdx metadata region lies beyond the end of the file',
    );
    const table = await readAt(offset, Math.min(length, 64 * 1024));
    expect(table.subarray(0, 8).toString('latin1') === 'metadata', 'the vhdx metadata table is missing');
    const entries = table.readUInt16LE(10);
    for (let j = 0; j < entries; j++) {
      const item = 32 + j * 32;
      if (guid(table, item) !== VIRTUAL_DISK_SIZE) continue;
      const at = table.readUInt32LE(item + 16);
      expect(at + 8 <= length, 'the vhdx disk size lies beyond its metadata');
      const value = await readAt(offset + at, 8);
      return { format: 'vhdx', virtualSize: u64le(value, 0), refusals: [] };
    }
  }
  throw new HeaderLie('the vhdx has no virtual disk size');
}

function vdi(head: Buffer, size: number): Inspection {
  expect(head.length >= 0x180, 'the vdi header is cut short');
  const version = head.readUInt32LE(0x44);
  expect(version === 0x00010001, `vdi version ${version.toString(16)} is not one we know`);
  const blocksOffset = head.readUInt32LE(0x154);
  const dataOffset = head.readUInt32LE(0x158);
  expect(blocksOffset <= size && dataOffset <= size, 'the vdi tables lie beyond the end of the file');
  return { format: 'vdi', virtualSize: u64le(head, 0x170), refusals: [] };
}

function iso(volume: Buffer, size: number): Inspection {
  const blocks = volume.readUInt32LE(80);
  const blockSize = volume.readUInt16LE(128);
  return { format: 'iso', virtualSize: Math.min(blocks * blockSize, size) || size, refusals: [] };
}

function compression(head: Buffer): Compression | null {
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
  if (head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  if (
    head.subarray(0, 3).toString('latin1') === 'BZh' &&
    head[3] !== undefined &&
    head[3] >= 0x31 &&
    head[3] <= 0x39
  )
    return 'bzip2';
  return null;
}

async function raw(head: Buffer, size: number, readAt: ReadAt): Promise<Inspection> {
  let partitionTable: 'mbr' | 'gpt' | null = null;
  if (size >= 1024) {
    const gpt = await readAt(512, 8);
    if (gpt.toString('latin1') === 'EFI PART') partitionTable = 'gpt';
  }
  if (!partitionTable && head.length >= 512 && head[510] === 0x55 && head[511] === 0xaa) {
    // A boot sector of a bare FAT/NTFS filesystem has the same signature: an MBR has a partition entry.
    const entries = [0, 1, 2, 3].map((i) => head.subarray(446 + i * 16, 462 + i * 16));
    if (entries.some((e) => e[4] !== 0 && (e[0] === 0 || e[0] === 0x80))) partitionTable = 'mbr';
  }
  let filesystem: string | null = null;
  if (!partitionTable) {
    if (head.length >= 1082 && head.readUInt16LE(1080) === 0xef53) filesystem = 'ext';
    else if (head.subarray(0, 4).toString('latin1') === 'XFSB') filesystem = 'xfs';
    else if (head.subarray(3, 11).toString('latin1') === 'NTFS    ') filesystem = 'ntfs';
    else if (size >= 65600 + 8 && (await readAt(65600, 8)).toString('latin1') === '_BHRfS_M')
      filesystem = 'btrfs';
  }
  return { format: 'raw', virtualSize: size, partitionTable, filesystem, refusals: [] };
}
