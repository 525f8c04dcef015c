/**
 * The format inspector: what a disk image is, from its own headers, without running any tool. It first names
 * the format exactly as qemu 7.2 probes a file given without `-f` (`find_image_format` in qemu's block.c: every
 * driver scores the first 2048 bytes, zero-padded, and the highest score wins, raw being the fallback), so
 * that Repoman never records raw for bytes that `qemu-img` opens as something else. It then reads only the few
 * ranges that format needs, checks that what the headers say fits in the file, and reports what would make
 * a hypervisor or qemu-img read other files (a backing file, a data file, a vmdk extent or descriptor): the
 * upload is refused for those (CVE-2024-32498), and for the formats qemu knows that Repoman does not store.
 */

import type { Compression, DiskFormat } from '@repoman/core';

/** Formats qemu probes that Repoman never stores (`qcow` is qcow version 1). */
export type UnsupportedFormat = 'qcow' | 'qed' | 'luks' | 'parallels' | 'bochs' | 'cloop';

export interface Inspection {
  /** The disk format; for a compressed file or an archive, what it wraps is unknown until unpacked. */
  format: DiskFormat | Compression | 'ova' | UnsupportedFormat;
  /** Bytes the guest sees, where the format says. */
  virtualSize: number | null;
  /** raw: the partition table or filesystem found at its start. */
  partitionTable?: 'mbr' | 'gpt' | null;
  filesystem?: string | null;
  /** vmdk: monolithicSparse, streamOptimized, …; vpc: dynamic. */
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
  code: 'backing_file' | 'external_data_file' | 'external_extent' | 'header_invalid' | 'format_unsupported';
  reason: string;
}

/** Reads `length` bytes at `offset` (fewer at the end of the file). */
export type ReadAt = (offset: number, length: number) => Promise<Buffer>;

const SECTOR = 512;

class HeaderLie extends Error {}

/** What qemu's drivers see when they probe: the first 2048 bytes, zeros past the end of the file. */
const PROBE_SIZE = 2048;

/** The drivers qemu 7.2 probes by content, and what each names. */
export type QemuFormat = 'raw' | 'qcow2' | 'vmdk' | 'vpc' | 'vhdx' | 'vdi' | UnsupportedFormat;

const latin1 = (buffer: Buffer, from: number, to: number) => buffer.subarray(from, to).toString('latin1');
/** C's strcmp against a field: the string and its terminating NUL. */
const cString = (buffer: Buffer, at: number, value: string) =>
  latin1(buffer, at, at + value.length + 1) === `${value}\0`;

/** vmdk_probe on a text descriptor: comment lines and lines of spaces may come before `version=1|2|3`. */
function vmdkDescriptorProbe(buf: Buffer): boolean {
  const end = buf.length;
  let p = 0;
  while (p < end) {
    if (buf[p] === 0x23 /* # */) {
      while (p < end && buf[p] !== 0x0a) p++;
      p++;
      continue;
    }
    if (buf[p] === 0x20) {
      while (p < end && buf[p] === 0x20) p++;
      if (p < end && buf[p] === 0x0d) p++;
      // Only lines of spaces may come before the version line (an empty line may not).
      if (p === end || buf[p] !== 0x0a) return false;
      p++;
      continue;
    }
    return ['\n', '\r\n'].some((eol) =>
      ['1', '2', '3'].some((v) => latin1(buf, p, p + 9 + eol.length) === `version=${v}${eol}`),
    );
  }
  return false;
}

const CLOOP_MAGIC = '#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n';

/**
 * The format qemu 7.2 picks for a file given without `-f`. Drivers that score 100 on the same bytes are taken in
 * qemu's own order (its last registered driver first: qed and parallels, then vdi, then the others, checked
 * against qemu-img), cloop scores 2 and raw 1. dmg is chosen by a file name ending in `.dmg` alone, never by
 * content: Repoman stores bytes, whose name is the downloader's choice, so it is not probed here.
 */
export function qemuProbe(size: number, head: Buffer): QemuFormat {
  if (size === 0) return 'raw';
  const buf = Buffer.alloc(PROBE_SIZE);
  head.copy(buf, 0, 0, Math.min(head.length, size, PROBE_SIZE));
  const magic = latin1(buf, 0, 4);
  if (magic === 'QED\0') return 'qed';
  if (['WithoutFreeSpace', 'WithouFreSpacExt'].includes(latin1(buf, 0, 16)) && buf.readUInt32LE(16) === 2)
    return 'parallels';
  if (buf.readUInt32LE(0x40) === 0xbeda107f) return 'vdi';
  if (magic === 'QFI\xfb') {
    const version = buf.readUInt32BE(4);
    if (version === 1) return 'qcow';
    if (version >= 2) return 'qcow2';
  }
  if (latin1(buf, 0, 8) === 'vhdxfile') return 'vhdx';
  if (latin1(buf, 0, 8) === 'conectix') return 'vpc';
  if (magic === 'KDMV' || magic === 'COWD' || vmdkDescriptorProbe(buf)) return 'vmdk';
  if (latin1(buf, 0, 6) === 'LUKS\xba\xbe' && buf.readUInt16BE(6) === 1) return 'luks';
  if (
    cString(buf, 0, 'Bochs Virtual HD Image') &&
    cString(buf, 32, 'Redolog') &&
    cString(buf, 48, 'Growing') &&
    [0x00020000, 0x00010000].includes(buf.readUInt32LE(64))
  )
    return 'bochs';
  if (latin1(buf, 0, CLOOP_MAGIC.length) === CLOOP_MAGIC) return 'cloop';
  return 'raw';
}

/** Inspects a file of `size` bytes. Never throws for what the file holds: a bad header is a refusal. */
export async function inspect(size: number, readAt: ReadAt): Promise<Inspection> {
  const head = await readAt(0, 4096);
  // Magic numbers are looked for in a padded copy, so that a file of a few bytes is simply raw.
  const probe = Buffer.concat([head, Buffer.alloc(Math.max(0, 4096 - head.length))]);
  const text = (from: number, to: number) => probe.subarray(from, to).toString('latin1');
  const format: Inspection['format'] = qemuProbe(size, head);
  try {
    switch (format) {
      case 'qcow2':
        return await qcow2(head, size, readAt);
      case 'vmdk':
        if (text(0, 4) === 'KDMV') return await vmdkSparse(head, size, readAt);
        if (text(0, 4) === 'COWD') return unsupported('vmdk', 'a VMware 3 (COWD) sparse vmdk');
        return vmdkDescriptor(head);
      case 'vhdx':
        return await vhdx(size, readAt);
      case 'vpc':
        return await vpc(head, size, readAt);
      case 'vdi':
        return vdi(head, size);
      case 'qcow':
        return await qcowV1(head, size, readAt);
      case 'qed':
        return await qed(head, size, readAt);
      case 'luks':
        return unsupported(format, 'a LUKS-encrypted volume');
      case 'parallels':
        return unsupported(format, 'a Parallels disk');
      case 'bochs':
        return unsupported(format, 'a Bochs disk');
      case 'cloop':
        return unsupported(format, 'a cloop compressed disk');
      case 'raw':
        break;
    }
    // Formats that qemu reads as raw bytes: what they wrap is Repoman's to say.
    const wrapper = compression(probe);
    if (wrapper) return { format: wrapper, virtualSize: null, refusals: [] };
    if (text(257, 262) === 'ustar') return { format: 'ova', virtualSize: null, refusals: [] };
    if (size >= 32768 + 2048) {
      const volume = await readAt(32768, 2048);
      if (volume.subarray(1, 6).toString('latin1') === 'CD001') return iso(volume, size);
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

function unsupported(format: Inspection['format'], what: string): Inspection {
  return {
    format,
    virtualSize: null,
    refusals: [
      {
        code: 'format_unsupported',
        reason: `qemu reads this file as ${what} (${format}), a format Repoman does not store`,
      },
    ],
  };
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
  // What else qemu checks when it opens a qcow2 (qcow2_do_open), as it checks it.
  expect(refcountClusters > 0, 'the qcow2 image has no refcount table');
  expect(
    refcountClusters * cluster <= 8 * 1024 * 1024,
    `the qcow2 refcount table (${refcountClusters} clusters) is too large`,
  );
  expect(l1Size <= 4 * 1024 * 1024, `the qcow2 L1 table (${l1Size} entries) is too large`);
  expect(l1Offset % cluster === 0, `the qcow2 L1 table at ${l1Offset} is not on a cluster`);
  expect(cryptMethod <= 2, `qcow2 encryption method ${cryptMethod} is not one qemu knows`);
  expect(
    backingOffset <= cluster,
    `the qcow2 backing file name at ${backingOffset} is outside the header's cluster`,
  );
  const snapshots = head.readUInt32BE(60);
  const snapshotsOffset = u64be(head, 64);
  expect(snapshots <= 65536, `a qcow2 with ${snapshots} snapshots is impossible`);
  expect(
    snapshotsOffset % cluster === 0,
    `the qcow2 snapshot table at ${snapshotsOffset} is not on a cluster`,
  );
  if (snapshots > 0) await qcow2Snapshots(snapshots, snapshotsOffset, cluster, size, readAt);
  const refusals: Refusal[] = [];
  let headerLength = 72;
  let incompatible = 0n;
  let compressionType = 'zlib';
  if (version === 3) {
    expect(head.length >= 104, 'the qcow2 v3 header is cut short');
    incompatible = head.readBigUInt64BE(72);
    headerLength = head.readUInt32BE(100);
    expect(
      headerLength >= 104 && headerLength <= 4096 && headerLength <= cluster,
      `a qcow2 header of ${headerLength} bytes is impossible`,
    );
    expect(head.readUInt32BE(96) <= 6, 'the qcow2 refcount width is too large');
    // Incompatible features qemu 7.2 knows: dirty, corrupt, external data file, compression type, extended L2.
    expect(
      incompatible < 32n,
      `the qcow2 image has incompatible features qemu does not know (${incompatible})`,
    );
    expect(!(incompatible & 2n), 'the qcow2 image is marked corrupt');
    expect(!(incompatible & 16n) || clusterBits >= 14, 'qcow2 extended L2 entries need clusters of 16 KiB');
    const type = headerLength > 104 ? (head[104] as number) : 0;
    expect(type <= 1, `qcow2 compression type ${type} is not one qemu knows`);
    expect(
      (type === 1) === Boolean(incompatible & 8n),
      'the qcow2 compression type and its feature bit disagree',
    );
    if (type === 1) compressionType = 'zstd';
  }
  if (backingOffset !== 0) {
    expect(
      backingOffset + backingSize <= size && backingSize <= Math.min(1023, cluster - backingOffset),
      'the qcow2 backing file name lies beyond the file',
    );
    const name = (await readAt(backingOffset, backingSize)).toString('utf8');
    refusals.push({
      code: 'backing_file',
      reason: `the qcow2 image reads another file as its backing file: '${name}'`,
    });
  }
  // Header extensions: an external data file is named there (and flagged by incompatible bit 2).
  let luksHeader: { offset: number; length: number } | undefined;
  const extensionsEnd = Math.min(head.length, backingOffset !== 0 ? backingOffset : cluster);
  for (let at = headerLength; at + 8 <= extensionsEnd; ) {
    const type = head.readUInt32BE(at);
    const length = head.readUInt32BE(at + 4);
    // qemu checks the length before it looks at the type, the end marker's too.
    expect(at + 8 + length <= extensionsEnd, 'a qcow2 header extension runs past the header');
    if (type === 0) break;
    // The backing format's name is kept in a 16-byte field, the LUKS header's place in 16 bytes.
    expect(type !== 0xe2792aca || length < 16, 'the qcow2 backing format name is too long');
    expect(type !== 0x0537be77 || length === 16, 'the qcow2 encryption header extension is malformed');
    if (type === 0x0537be77) luksHeader = { offset: u64be(head, at + 8), length: u64be(head, at + 16) };
    if (type === 0x44415441) {
      const name = head.subarray(at + 8, at + 8 + length).toString('utf8');
      refusals.push({
        code: 'external_data_file',
        reason: `the qcow2 image keeps its data in another file: '${name}'`,
      });
    }
    at += 8 + Math.ceil(length / 8) * 8;
  }
  // A LUKS-encrypted qcow2 opens its LUKS header (qemu 7.2 crashes on one in a version 2 image).
  if (cryptMethod === 2) {
    expect(version === 3, 'a LUKS-encrypted qcow2 must be version 3');
    expect(
      luksHeader !== undefined &&
        luksHeader.offset % cluster === 0 &&
        luksHeader.offset + luksHeader.length <= size,
      'the qcow2 LUKS header is missing or lies beyond the end of the file',
    );
    const luks = await readAt(luksHeader.offset, 8);
    expect(
      luks.length === 8 && latin1(luks, 0, 6) === 'LUKS\xba\xbe' && luks.readUInt16BE(6) === 1,
      'the qcow2 LUKS header is not one',
    );
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

/** A qcow2's internal snapshots, read as qemu reads them when it opens the image (qcow2_read_snapshots). */
async function qcow2Snapshots(count: number, offset: number, cluster: number, size: number, readAt: ReadAt) {
  expect(
    offset >= cluster && offset + count * 40 <= size,
    'the qcow2 snapshot table lies beyond the end of the file',
  );
  let at = offset;
  for (let i = 0; i < count; i++) {
    const entry = await readAt(at, 40);
    expect(entry.length === 40, 'the qcow2 snapshot table lies beyond the end of the file');
    const l1Offset = u64be(entry, 0);
    const l1Size = entry.readUInt32BE(8);
    const extra = entry.readUInt32BE(36);
    expect(extra <= 1024, 'a qcow2 snapshot has too much extra data');
    expect(
      l1Offset % cluster === 0 && l1Size <= 4 * 1024 * 1024 && l1Offset + l1Size * 8 <= size,
      'a qcow2 snapshot L1 table lies beyond the end of the file',
    );
    at += 40 + extra + entry.readUInt16BE(12) + entry.readUInt16BE(14);
    at = Math.ceil(at / 8) * 8;
    expect(
      at <= size && at - offset <= 64 * 1024 * 1024,
      'the qcow2 snapshot table lies beyond the end of the file',
    );
  }
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
  if (capacity === 0 && descriptorOffset !== 0)
    return {
      format: 'vmdk',
      virtualSize: 0,
      subformat,
      refusals: [
        {
          code: 'external_extent',
          reason: 'a sparse vmdk of capacity 0 is read through its descriptor, which can name other files',
        },
      ],
    };
  const virtualSize = await vmdkSparseTables(head, size, readAt);
  // qemu reads a parent (a backing file) and the CIDs from the text at 0x200, whatever the header says.
  const text = (await readAt(SECTOR, 20 * SECTOR)).toString('latin1').split('\0')[0] ?? '';
  const parent = /parentFileNameHint..([^"]*)/.exec(text);
  if (parent)
    refusals.push({
      code: 'backing_file',
      reason: `the vmdk image reads another file as its parent: '${parent[1]}'`,
    });
  for (const name of ['CID', 'parentCID']) {
    const at = text.indexOf(name);
    expect(
      at >= 0 && /^\s*[0-9a-fA-F]/.test(text.slice(at + name.length + 1)),
      `the vmdk descriptor has no ${name}`,
    );
  }
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
  return { format: 'vmdk', virtualSize, subformat, refusals };
}

/** The grain directories of a sparse vmdk, checked as qemu checks them when it opens one (vmdk_open_vmdk4). */
async function vmdkSparseTables(first: Buffer, size: number, readAt: ReadAt): Promise<number> {
  let head = first;
  // A stream-optimised vmdk keeps its real header in a footer, between two markers, before the end.
  if (head.readBigUInt64LE(56) === 0xffffffffffffffffn) {
    const footer = await readAt(size - 1536, 1536);
    expect(
      size >= 1536 &&
        footer.length === 1536 &&
        footer.readUInt32LE(8) === 0 &&
        footer.readUInt32LE(12) === 3 &&
        latin1(footer, 512, 516) === 'KDMV' &&
        footer.readBigUInt64LE(1024) === 0n &&
        footer.readUInt32LE(1032) === 0 &&
        footer.readUInt32LE(1036) === 0,
      'the stream-optimised vmdk footer is invalid',
    );
    head = footer.subarray(512);
  }
  const version = head.readUInt32LE(4);
  const flags = head.readUInt32LE(8);
  const capacity = u64le(head, 12);
  const granularity = u64le(head, 20);
  const gtes = head.readUInt32LE(44);
  expect(version <= 3, `vmdk version ${version} is not one qemu reads`);
  expect(gtes <= 512, 'the vmdk grain table size is too large');
  expect(gtes * granularity > 0 && granularity <= 0x200000, 'the vmdk grain size is invalid');
  const l1Size = Math.ceil(capacity / (gtes * granularity));
  expect(l1Size <= 32 * 1024 * 1024, 'the vmdk grain directory is too large');
  expect(u64le(head, 64) <= Math.ceil(size / SECTOR), 'the vmdk grains lie beyond the end of the file');
  const directories = [u64le(head, 56), ...(flags & 2 ? [u64le(head, 48)] : [])];
  for (const sector of directories)
    expect(sector * SECTOR + l1Size * 4 <= size, 'the vmdk grain directory lies beyond the end of the file');
  return capacity * SECTOR;
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

/** qcow version 1: refused, and first for the backing file it may name (at the same place as in qcow2). */
async function qcowV1(head: Buffer, size: number, readAt: ReadAt): Promise<Inspection> {
  const backingOffset = u64be(head, 8);
  if (backingOffset === 0) return unsupported('qcow', 'a qcow version 1 image');
  return backingRefusal('qcow', 'qcow', backingOffset, head.readUInt32BE(16), size, readAt);
}

/** QED: refused, and first for the backing file it names when its features say so (bit 0). */
async function qed(head: Buffer, size: number, readAt: ReadAt): Promise<Inspection> {
  const features = head.readBigUInt64LE(16);
  if (!(features & 1n)) return unsupported('qed', 'a QED image');
  return backingRefusal('qed', 'QED', head.readUInt32LE(56), head.readUInt32LE(60), size, readAt);
}

async function backingRefusal(
  format: Inspection['format'],
  what: string,
  offset: number,
  length: number,
  size: number,
  readAt: ReadAt,
): Promise<Inspection> {
  const fits = offset + length <= size && length <= 1023;
  const name = fits ? (await readAt(offset, length)).toString('utf8') : null;
  return {
    format,
    virtualSize: null,
    refusals: [
      {
        code: 'backing_file',
        reason: `the ${what} image reads another file as its backing file${name === null ? '' : `: '${name}'`}`,
      },
    ],
  };
}

/**
 * VHD (qemu's "vpc"), as qemu probes it: `conectix` at the start, a dynamic disk's copy of its footer. (A fixed
 * VHD has its footer only at the end: qemu probes it as raw, and so does Repoman.)
 */
async function vpc(footer: Buffer, size: number, readAt: ReadAt): Promise<Inspection> {
  expect(footer.length >= SECTOR, 'the vhd footer is cut short');
  // The footer's checksum: the ones' complement of the sum of its bytes, the checksum field counted as zeros.
  let sum = 0;
  for (let i = 0; i < SECTOR; i++) if (i < 64 || i >= 68) sum += footer[i] as number;
  expect(~sum >>> 0 === footer.readUInt32BE(64), 'the vhd footer checksum is wrong');
  const type = footer.readUInt32BE(60);
  // A footer at the start is a dynamic disk's copy; a differencing disk (4) would read its parent.
  expect(type === 3, `a vhd of type ${type} with its footer at the start is not a dynamic disk`);
  const currentSize = u64be(footer, 48);
  const cylinders = footer.readUInt16BE(56);
  const heads = footer[58] as number;
  const sectors = footer[59] as number;
  const creator = footer.subarray(28, 32).toString('latin1');
  // As qemu reads it: Virtual PC's geometry, except from tools known to write the exact size.
  const chs = cylinders * heads * sectors;
  const exact = ['win ', 'qem2', 'd2v ', 'CTXS', 'tap\0'].includes(creator) || chs === 65535 * 16 * 255;
  const virtualSectors = exact ? Math.floor(currentSize / SECTOR) : chs;
  expect(virtualSectors <= 0xff000000, 'the vhd is larger than 2040 GiB');
  // The dynamic disk header, then its block allocation table, whose blocks must lie in the file.
  const header = await readAt(u64be(footer, 16), 1024);
  expect(
    header.length === 1024 && latin1(header, 0, 8) === 'cxsparse',
    'the vhd dynamic disk header is missing',
  );
  const blockSize = header.readUInt32BE(32);
  const entries = header.readUInt32BE(28);
  expect(
    blockSize >= SECTOR && (blockSize & (blockSize - 1)) === 0,
    `a vhd block of ${blockSize} bytes is impossible`,
  );
  expect(
    entries <= (0xff000000 * SECTOR) / blockSize && entries * blockSize >= virtualSectors * SECTOR,
    'the vhd block table does not match its size',
  );
  expect(entries <= 16 * 1024 * 1024, 'the vhd block table is too large');
  const tableOffset = u64be(header, 16);
  const table = await readAt(tableOffset, entries * 4);
  expect(table.length === entries * 4, 'the vhd block table lies beyond the end of the file');
  const bitmapSize = Math.ceil(blockSize / (8 * SECTOR) / SECTOR) * SECTOR;
  let end = Math.ceil((tableOffset + entries * 4) / SECTOR) * SECTOR;
  for (let i = 0; i < entries; i++) {
    const block = table.readUInt32BE(i * 4);
    if (block !== 0xffffffff) end = Math.max(end, block * SECTOR + bitmapSize + blockSize);
  }
  expect(end <= size, 'the vhd blocks lie beyond the end of the file');
  return { format: 'vpc', virtualSize: virtualSectors * SECTOR, subformat: 'dynamic', refusals: [] };
}

const guid = (buffer: Buffer, at: number) => {
  const hex = buffer.subarray(at, at + 16).toString('hex');
  const le = (s: string) => s.match(/../g)?.reverse().join('') ?? '';
  return `${le(hex.slice(0, 8))}-${le(hex.slice(8, 12))}-${le(hex.slice(12, 16))}-${hex.slice(16, 20)}-${hex.slice(20)}`.toUpperCase();
};
const METADATA_REGION = '8B7CA206-4790-4B9A-B8FE-575F050F886E';
const VIRTUAL_DISK_SIZE = '2FA54224-CD1B-4876-B211-5DBED83BF4B8';
const BAT_REGION = '2DC27766-F623-4200-9D64-115E9BFD4A08';
const FILE_PARAMETERS = 'CAA16737-FA36-4D43-B3B6-33F0AA44E76B';
const LOGICAL_SECTOR_SIZE = '8141BF1D-A96F-4709-BA47-F233A8FAAB5F';

/** CRC-32C (Castagnoli), which VHDX puts in its headers and region tables. */
const CRC32C = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  return c >>> 0;
});
/** Whether a VHDX structure's checksum (at offset 4, counted as zeros) is right. */
function vhdxChecksumHolds(block: Buffer): boolean {
  let crc = 0xffffffff;
  for (let i = 0; i < block.length; i++) {
    const byte = i >= 4 && i < 8 ? 0 : (block[i] as number);
    crc = (CRC32C[(crc ^ byte) & 0xff] as number) ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0 === block.readUInt32LE(4);
}

async function vhdx(size: number, readAt: ReadAt): Promise<Inspection> {
  // Two headers: qemu takes the valid one with the higher sequence number, and needs one.
  const headers = [];
  for (const at of [64 * 1024, 128 * 1024]) {
    const header = await readAt(at, 4096);
    if (header.length === 4096 && latin1(header, 0, 4) === 'head' && vhdxChecksumHolds(header))
      headers.push(header);
  }
  expect(headers.length > 0, 'the vhdx has no valid header');
  const [first, second] = headers;
  const sequence = (h: Buffer) => h.readBigUInt64LE(8);
  const current = second && sequence(second) > sequence(first as Buffer) ? second : (first as Buffer);
  expect(
    !second || sequence(second) !== sequence(first as Buffer),
    'the vhdx headers have the same sequence number',
  );
  expect(current.readUInt16LE(66) === 1, 'the vhdx header version is not 1');
  // A log to replay: qemu will not open such an image read-only.
  expect(
    current.subarray(48, 64).every((b) => b === 0),
    'the vhdx has a log to replay',
  );
  const regions = await readAt(192 * 1024, 64 * 1024);
  expect(
    regions.length === 64 * 1024 &&
      regions.subarray(0, 4).toString('latin1') === 'regi' &&
      vhdxChecksumHolds(regions),
    'the vhdx region table is missing or its checksum is wrong',
  );
  const count = regions.readUInt32LE(8);
  expect(count <= 2047, 'the vhdx region table is impossible');
  for (let i = 0; i < count; i++) {
    const entry = 16 + i * 32;
    const known = [METADATA_REGION, BAT_REGION].includes(guid(regions, entry));
    expect(known || !(regions.readUInt32LE(entry + 28) & 1), 'the vhdx requires a region qemu does not know');
    expect(
      u64le(regions, entry + 16) % (1024 * 1024) === 0 &&
        regions.readUInt32LE(entry + 24) % (1024 * 1024) === 0,
      'a vhdx region is not on a megabyte',
    );
  }
  const region = (id: string) => {
    for (let i = 0; i < count; i++) {
      const entry = 16 + i * 32;
      if (guid(regions, entry) !== id) continue;
      const offset = u64le(regions, entry + 16);
      const length = regions.readUInt32LE(entry + 24);
      expect(offset + length <= size, 'a vhdx region lies beyond the end of the file');
      return { offset, length };
    }
    throw new HeaderLie('a vhdx region is missing');
  };
  const metadata = region(METADATA_REGION);
  expect(metadata.length <= 1024 * 1024, 'the vhdx metadata region is too large');
  const table = await readAt(metadata.offset, Math.min(metadata.length, 64 * 1024));
  expect(table.subarray(0, 8).toString('latin1') === 'metadata', 'the vhdx metadata table is missing');
  const items = new Map<string, Buffer>();
  for (let j = 0; j < table.readUInt16LE(10); j++) {
    const item = 32 + j * 32;
    const at = table.readUInt32LE(item + 16);
    const length = table.readUInt32LE(item + 20);
    expect(at + length <= metadata.length && length <= 1024, 'a vhdx metadata item lies beyond its region');
    items.set(guid(table, item), await readAt(metadata.offset + at, length));
  }
  const item = (id: string, what: string, length: number) => {
    const value = items.get(id);
    expect(value !== undefined && value.length >= length, `the vhdx has no ${what}`);
    return value;
  };
  const virtualSize = u64le(item(VIRTUAL_DISK_SIZE, 'virtual disk size', 8), 0);
  const parameters = item(FILE_PARAMETERS, 'file parameters', 8);
  const blockSize = parameters.readUInt32LE(0);
  expect(!(parameters.readUInt32LE(4) & 2), 'a differencing vhdx reads its parent');
  const sectorSize = item(LOGICAL_SECTOR_SIZE, 'logical sector size', 4).readUInt32LE(0);
  expect(
    blockSize >= 1024 * 1024 && blockSize <= 256 * 1024 * 1024 && (blockSize & (blockSize - 1)) === 0,
    `a vhdx block of ${blockSize} bytes is impossible`,
  );
  expect(sectorSize === 512 || sectorSize === 4096, `a vhdx sector of ${sectorSize} bytes is impossible`);
  // Blocks that hold data must lie in the file (qemu's check for a truncated image).
  const chunkRatio = (2 ** 23 * sectorSize) / blockSize;
  const bat = region(BAT_REGION);
  expect(bat.length <= 32 * 1024 * 1024, 'the vhdx block table is too large');
  const entries = await readAt(bat.offset, bat.length);
  for (let i = 0; i * 8 + 8 <= entries.length; i++) {
    if (i % (chunkRatio + 1) === chunkRatio) continue; // a sector bitmap's entry
    const entry = entries.readBigUInt64LE(i * 8);
    const state = Number(entry & 7n);
    const offset = Number(entry >> 20n) * 1024 * 1024;
    if (state >= 6) expect(offset + blockSize <= size, `the vhdx block ${i} lies beyond the end of the file`);
  }
  return { format: 'vhdx', virtualSize, refusals: [] };
}

function vdi(head: Buffer, size: number): Inspection {
  expect(head.length >= 0x1c8, 'the vdi header is cut short');
  const version = head.readUInt32LE(0x44);
  expect(version === 0x00010001, `vdi version ${version.toString(16)} is not one we know`);
  // qemu's checks in vdi_open, in its order.
  const blocksOffset = head.readUInt32LE(0x154);
  const dataOffset = head.readUInt32LE(0x158);
  expect(blocksOffset % SECTOR === 0 && dataOffset % SECTOR === 0, 'the vdi tables are not on sectors');
  expect(head.readUInt32LE(0x168) === SECTOR, 'the vdi sector size is not 512');
  const blockSize = head.readUInt32LE(0x178);
  expect(blockSize === 1024 * 1024, 'the vdi block size is not 1 MiB');
  const blocks = head.readUInt32LE(0x180);
  const diskSize = Math.ceil(u64le(head, 0x170) / SECTOR) * SECTOR;
  expect(diskSize <= blocks * blockSize, 'the vdi block map is too small for its disk size');
  // A link or parent UUID makes a differencing image, which reads another file.
  expect(
    head.subarray(0x1a8, 0x1c8).every((b) => b === 0),
    'a vdi with a parent reads another file',
  );
  expect(blocks <= 0x3fffffff, 'the vdi has too many blocks');
  expect(
    blocksOffset + blocks * 4 <= size && dataOffset <= size,
    'the vdi tables lie beyond the end of the file',
  );
  return { format: 'vdi', virtualSize: diskSize, refusals: [] };
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
