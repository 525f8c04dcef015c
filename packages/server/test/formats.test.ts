/**
 * The format inspector against the real qemu-img: images of every format made from the same data agree with
 * `qemu-img info` on format and virtual size; hostile files (a backing file, an external data file, a vmdk
 * reading /etc/shadow, truncated and lying headers) are refused; random and mutated headers never make it
 * throw.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { type Inspection, inspect } from '../src/formats/inspect.ts';

const run = promisify(execFile);

async function inspectFile(file: string): Promise<Inspection> {
  const { size } = await stat(file);
  const handle = await open(file, 'r');
  try {
    return await inspect(size, async (offset, length) => {
      const buffer = Buffer.alloc(Math.max(0, Math.min(length, size - offset)));
      await handle.read(buffer, 0, buffer.length, offset);
      return buffer;
    });
  } finally {
    await handle.close();
  }
}

const inspectBuffer = (data: Buffer) =>
  inspect(data.length, async (offset, length) => data.subarray(offset, offset + length));

describe('the format inspector', () => {
  let dir: string;
  const qemu = (...args: string[]) => run('qemu-img', args, { cwd: dir });
  const info = async (file: string, format: string) =>
    JSON.parse((await qemu('info', '-f', format, '--output=json', file)).stdout) as {
      'virtual-size': number;
    };

  before(async () => {
    await run('qemu-img', ['--version']).catch(() => {
      throw new Error('qemu-img is missing: apt-get install qemu-utils (.ci/run does)');
    });
    dir = await mkdtemp(join(tmpdir(), 'repoman-formats-'));
    // The same data in every format: 3 MiB of random bytes, then a hole.
    const data = Buffer.concat([randomBytes(3 * 1024 * 1024), Buffer.alloc(5 * 1024 * 1024)]);
    await writeFile(join(dir, 'disk.raw'), data);
    // Every format made here, so that each test finds the files it reads whatever ran before it.
    for (const [file, options] of formats) await qemu('convert', '-f', 'raw', ...options, 'disk.raw', file);
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const formats: [string, string[], string, string?][] = [
    ['disk.qcow2', ['-O', 'qcow2'], 'qcow2'],
    ['disk-v2.qcow2', ['-O', 'qcow2', '-o', 'compat=0.10'], 'qcow2'],
    ['disk-zstd.qcow2', ['-O', 'qcow2', '-o', 'compression_type=zstd', '-c'], 'qcow2'],
    ['disk.vmdk', ['-O', 'vmdk'], 'vmdk', 'monolithicSparse'],
    ['disk-stream.vmdk', ['-O', 'vmdk', '-o', 'subformat=streamOptimized'], 'vmdk', 'streamOptimized'],
    ['disk.vhd', ['-O', 'vpc'], 'vpc', 'dynamic'],
    // A fixed VHD has its footer only at the end: qemu probes it as raw, and so does the inspector.
    ['disk-fixed.vhd', ['-O', 'vpc', '-o', 'subformat=fixed'], 'raw'],
    ['disk.vhdx', ['-O', 'vhdx'], 'vhdx'],
    ['disk.vdi', ['-O', 'vdi'], 'vdi'],
  ];

  for (const [file, , format, subformat] of formats) {
    it(`reads ${file} as qemu-img does: ${format}, same virtual size`, async () => {
      const found = await inspectFile(join(dir, file));
      assert.equal(found.format, format);
      assert.equal(found.virtualSize, (await info(file, format))['virtual-size']);
      assert.deepEqual(found.refusals, []);
      if (subformat) assert.equal(found.subformat, subformat);
      if (file === 'disk-zstd.qcow2') assert.equal(found.compressionType, 'zstd');
      if (file === 'disk-v2.qcow2') assert.equal(found.version, 2);
    });
  }

  it('reads raw disks (bare, MBR, GPT, ext), ISO 9660, and sees compressed files and OVA archives', async () => {
    const bare = await inspectFile(join(dir, 'disk.raw'));
    assert.equal(bare.format, 'raw');
    assert.equal(bare.virtualSize, 8 * 1024 * 1024);
    const mbr = Buffer.alloc(1024 * 1024);
    mbr[446 + 4] = 0x83; // a Linux partition
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    assert.equal((await inspectBuffer(mbr)).partitionTable, 'mbr');
    const gpt = Buffer.from(mbr);
    gpt.write('EFI PART', 512, 'latin1');
    assert.equal((await inspectBuffer(gpt)).partitionTable, 'gpt');
    const ext = Buffer.alloc(64 * 1024);
    ext.writeUInt16LE(0xef53, 1080);
    assert.equal((await inspectBuffer(ext)).filesystem, 'ext');
    // The wrappers, made by their own tools; an OVA is a tar of an OVF and its disks.
    for (const [tool, suffix, format] of [
      ['gzip', 'gz', 'gzip'],
      ['xz', 'xz', 'xz'],
      ['bzip2', 'bz2', 'bzip2'],
      ['zstd', 'zst', 'zstd'],
    ] as const) {
      await run(tool, ['-k', '-f', '-q', join(dir, 'disk.raw')]);
      assert.equal((await inspectFile(join(dir, `disk.raw.${suffix}`))).format, format, tool);
    }
    await run('tar', ['-cf', 'disk.ova', 'disk.vmdk'], { cwd: dir });
    assert.equal((await inspectFile(join(dir, 'disk.ova'))).format, 'ova');
    // An ISO 9660 primary volume descriptor: 'CD001' at 32769, the size in 2048-byte blocks.
    const iso = Buffer.alloc(40 * 2048);
    iso[32768] = 1;
    iso.write('CD001', 32769, 'latin1');
    iso.writeUInt32LE(40, 32768 + 80);
    iso.writeUInt16LE(2048, 32768 + 128);
    const found = await inspectBuffer(iso);
    assert.equal(found.format, 'iso');
    assert.equal(found.virtualSize, 40 * 2048);
  });

  it('refuses a qcow2 with a backing file, or with an external data file, naming it', async () => {
    await qemu('create', '-f', 'qcow2', '-b', '/etc/passwd', '-F', 'raw', 'backed.qcow2');
    const backed = await inspectFile(join(dir, 'backed.qcow2'));
    assert.deepEqual(
      backed.refusals.map((r) => r.code),
      ['backing_file'],
    );
    assert.match(backed.refusals[0]?.reason ?? '', /\/etc\/passwd/);
    await qemu('create', '-f', 'qcow2', '-o', `data_file=${join(dir, 'data.bin')}`, 'external.qcow2', '64M');
    const external = await inspectFile(join(dir, 'external.qcow2'));
    assert.deepEqual(
      external.refusals.map((r) => r.code),
      ['external_data_file'],
    );
  });

  it('refuses a vmdk descriptor that reads /etc/shadow, and a sparse vmdk naming other extents', async () => {
    await writeFile(
      join(dir, 'shadow.vmdk'),
      '# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "/etc/shadow" 0\n',
    );
    const shadow = await inspectFile(join(dir, 'shadow.vmdk'));
    assert.equal(shadow.refusals[0]?.code, 'external_extent');
    assert.match(shadow.refusals[0]?.reason ?? '', /\/etc\/shadow/);
    // qemu-img's own split format: a sparse file whose descriptor names other files.
    await qemu('create', '-f', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', 'split.vmdk', '64M');
    assert.equal((await inspectFile(join(dir, 'split.vmdk'))).refusals[0]?.code, 'external_extent');
  });

  it("refuses the review's hostile files: a descriptor behind another comment, a QED with a backing file", async () => {
    // qemu's vmdk probe skips any comment lines before `version=`: the first line need not be the usual one.
    await writeFile(
      join(dir, 'comment.img'),
      '# a comment\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\nRW 2048 FLAT "/etc/shadow" 0\n',
    );
    const comment = await inspectFile(join(dir, 'comment.img'));
    assert.equal(comment.format, 'vmdk');
    assert.equal(comment.refusals[0]?.code, 'external_extent');
    assert.match(comment.refusals[0]?.reason ?? '', /\/etc\/shadow/);
    await qemu('create', '-q', '-f', 'qed', '-b', '/etc/passwd', '-F', 'raw', 'evil.qed');
    const qed = await inspectFile(join(dir, 'evil.qed'));
    assert.equal(qed.format, 'qed');
    assert.equal(qed.refusals[0]?.code, 'backing_file');
    assert.match(qed.refusals[0]?.reason ?? '', /\/etc\/passwd/);
    // The same for qcow version 1; without a backing file, both are formats Repoman does not store.
    await qemu('create', '-q', '-f', 'qcow', '-b', '/etc/passwd', '-F', 'raw', 'evil.qcow');
    assert.equal((await inspectFile(join(dir, 'evil.qcow'))).refusals[0]?.code, 'backing_file');
    await qemu('create', '-q', '-f', 'qed', 'plain.qed', '1M');
    assert.equal((await inspectFile(join(dir, 'plain.qed'))).refusals[0]?.code, 'format_unsupported');
  });

  it('names the format as qemu does where two probes match: qed and parallels, then vdi, then the rest', async () => {
    const text = Buffer.from('# comment\nversion=1\n'.padEnd(0x60, '#'), 'latin1');
    text.write('\n', 0x5f, 'latin1');
    const vmdkAndVdi = Buffer.from(text);
    vmdkAndVdi.writeUInt32LE(0xbeda107f, 0x40);
    // The vdi signature sits in the comment line: both probes score, and qemu takes vdi.
    assert.equal((await inspectBuffer(vmdkAndVdi)).format, 'vdi');
    assert.equal((await inspectBuffer(text)).format, 'vmdk');
    const qedAndVdi = Buffer.alloc(4096);
    qedAndVdi.write('QED\0', 0, 'latin1');
    qedAndVdi.writeUInt32LE(0xbeda107f, 0x40);
    assert.equal((await inspectBuffer(qedAndVdi)).format, 'qed');
    // A qcow magic of version 0 is no format at all: raw, as qemu has it.
    assert.equal((await inspectBuffer(Buffer.from('QFI\xfb\0\0\0\0', 'latin1'))).format, 'raw');
  });

  it('refuses truncated headers and headers that point past the end of the file', async () => {
    const qcow2 = await readFile(join(dir, 'disk.qcow2'));
    const cut = await inspectBuffer(qcow2.subarray(0, 40));
    assert.equal(cut.refusals[0]?.code, 'header_invalid');
    const lying = Buffer.from(qcow2);
    lying.writeBigUInt64BE(0x7f00000000n, 40); // the L1 table far beyond the end
    const lie = await inspectBuffer(lying);
    assert.equal(lie.refusals[0]?.code, 'header_invalid');
    assert.match(lie.refusals[0]?.reason ?? '', /beyond the end/);
    // Tables that overlap, or sit in the header, or a virtual size the L1 table cannot map: qemu-img finds
    // them broken too.
    const refcountAt = qcow2.readBigUInt64BE(48);
    for (const [offset, value, words] of [
      [40, refcountAt, /overlaps the refcount table/],
      [40, 0n, /not on a cluster after the header/],
      [24, 2n ** 50n, /too small for a virtual size/],
    ] as const) {
      const bad = Buffer.from(qcow2);
      bad.writeBigUInt64BE(value, offset);
      const refused = await inspectBuffer(bad);
      assert.equal(refused.refusals[0]?.code, 'header_invalid');
      assert.match(refused.refusals[0]?.reason ?? '', words);
      await writeFile(join(dir, 'bad.qcow2'), bad);
      const check = await qemu('check', '-f', 'qcow2', 'bad.qcow2').then(
        () => '',
        (error: { stderr: string }) => error.stderr,
      );
      assert.match(check, /error|invalid|overlap|too/i, 'qemu-img check finds it broken too');
    }
    const vmdk = Buffer.from(await readFile(join(dir, 'disk.vmdk')));
    vmdk.writeBigUInt64LE(0xffffffn, 28); // the descriptor far beyond the end
    assert.equal((await inspectBuffer(vmdk)).refusals[0]?.code, 'header_invalid');
  });

  it('never throws on random or mutated headers: a refusal or an answer, every time', async () => {
    const seeds = await Promise.all(
      ['disk.qcow2', 'disk-v2.qcow2', 'disk.vmdk', 'disk.vhd', 'disk.vhdx', 'disk.vdi'].map(async (f) =>
        (await readFile(join(dir, f))).subarray(0, 512 * 1024),
      ),
    );
    for (let trial = 0; trial < 3000; trial++) {
      let sample: Buffer;
      if (trial % 3 === 0) sample = randomBytes(Math.floor(Math.random() * 4096));
      else {
        sample = Buffer.from(seeds[trial % seeds.length] as Buffer);
        for (let flips = 1 + Math.floor(Math.random() * 8); flips > 0; flips--) {
          const at =
            Math.random() < 0.7 ? Math.floor(Math.random() * 512) : Math.floor(Math.random() * sample.length);
          sample[at] = Math.floor(Math.random() * 256);
        }
        if (trial % 5 === 0) sample = sample.subarray(0, Math.floor(Math.random() * sample.length));
      }
      const result = await inspectBuffer(sample);
      assert.ok(typeof result.format === 'string' && Array.isArray(result.refusals), `trial ${trial}`);
    }
  });
});
