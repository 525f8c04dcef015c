/**
 * RFC 3230 on downloads, as grid tools speak it: `Want-Digest` read with its q-values and whatever junk a
 * client sends, and `Digest` written the way davix and gfal2 read it back (bare commas, lowercase names,
 * ADLER32 in hex, the others in base64).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { DIGEST_NAMES } from '@repoman/core';
import fc from 'fast-check';
import { digestHeader, wantedDigests } from '../src/http/digests.ts';
import { adler32 } from './helpers/adler32.ts';

describe('Want-Digest', () => {
  it('names the digests we record, most wanted first, whatever the case and spacing', () => {
    assert.deepEqual(wantedDigests('adler32'), ['adler32']);
    assert.deepEqual(wantedDigests('ADLER32'), ['adler32']);
    assert.deepEqual(wantedDigests('MD5, SHA-256 ,sha-512'), ['md5', 'sha256', 'sha512']);
    // gfal-sum's users write SHA256 (and it asks as they wrote).
    assert.deepEqual(wantedDigests('SHA256'), ['sha256']);
    assert.deepEqual(wantedDigests('sha512, sha-512'), ['sha512']);
    assert.deepEqual(wantedDigests('md5;q=0.3, adler32;q=1, sha-256;q=0.5'), ['adler32', 'sha256', 'md5']);
    assert.deepEqual(wantedDigests('adler32;q=1, md5;q=0.5'), ['adler32', 'md5']);
    // Ties keep the header's order; a weight may be spelt Q with spaces around it.
    assert.deepEqual(wantedDigests('sha-512;q=0.5, md5 ; Q = 0.5, adler32;q=0.9'), [
      'adler32',
      'sha512',
      'md5',
    ]);
    assert.deepEqual(wantedDigests(['md5', 'adler32;q=0.1']), ['md5', 'adler32']);
  });

  it('leaves out what is refused (q=0), not recorded (SHA-1, UNIXsum), repeated or malformed', () => {
    assert.deepEqual(wantedDigests('adler32;q=0, md5'), ['md5']);
    assert.deepEqual(wantedDigests('adler32;q=0.000'), []);
    assert.deepEqual(wantedDigests('SHA, UNIXsum, UNIXcksum, CRC32c, SHA1, id-sha-256, sha-1'), []);
    assert.deepEqual(wantedDigests('md5;q=0.2, md5;q=1, adler32;q=0.1'), ['md5', 'adler32']);
    assert.deepEqual(wantedDigests('adler32;q=2, md5;q=high, sha-256;q=-1, sha-512;q=0.5x'), []);
    assert.deepEqual(wantedDigests('adler32;q=1.000, md5;q=0.001'), ['adler32', 'md5']);
    assert.deepEqual(wantedDigests('adler32;charset=x, md5=, ;q=1, ,,,'), ['adler32']);
    assert.deepEqual(wantedDigests(undefined), []);
    assert.deepEqual(wantedDigests(''), []);
  });

  it('reads only the first 16 members and the first KiB', () => {
    assert.deepEqual(wantedDigests(`${'sha,'.repeat(15)}md5, adler32`), ['md5']);
    assert.deepEqual(wantedDigests(`${' '.repeat(1022)}md5, adler32`), []);
    assert.deepEqual(wantedDigests(`${' '.repeat(1000)}md5, adler32`), ['md5', 'adler32']);
  });

  it('never throws, and names each digest at most once', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 2000 }),
          fc
            .array(
              fc.tuple(
                fc.constantFrom('adler32', 'MD5', 'sha-256', 'SHA-512', 'sha', 'x', ''),
                fc.option(fc.oneof(fc.string({ maxLength: 6 }), fc.double().map(String))),
              ),
              { maxLength: 30 },
            )
            .map((members) => members.map(([name, q]) => (q === null ? name : `${name};q=${q}`)).join(',')),
        ),
        (header) => {
          const wanted = wantedDigests(header);
          assert.equal(new Set(wanted).size, wanted.length);
          for (const name of wanted) assert.ok((DIGEST_NAMES as readonly string[]).includes(name), name);
        },
      ),
    );
  });
});

describe('Digest', () => {
  const bytes = Buffer.from('Wikipedia');
  const hex = (algorithm: string) => createHash(algorithm).update(bytes).digest('hex');
  const base64 = (algorithm: string) => createHash(algorithm).update(bytes).digest('base64');
  const digests = {
    sha256: hex('sha256'),
    md5: hex('md5'),
    sha512: hex('sha512'),
    adler32: adler32(bytes),
  };

  it('gives ADLER32 in hex and the others in base64, in the order wanted, joined by bare commas', () => {
    assert.equal(digests.adler32, '11e60398');
    // SHA-256 and SHA-512 under their registered names and as gfal2's users write them
    const sha256 = `sha-256=${base64('sha256')},sha256=${base64('sha256')}`;
    const sha512 = `sha-512=${base64('sha512')},sha512=${base64('sha512')}`;
    assert.equal(
      digestHeader(['adler32', 'md5', 'sha256', 'sha512'], digests),
      `adler32=11e60398,md5=${base64('md5')},${sha256},${sha512}`,
    );
    assert.equal(digestHeader(['sha256', 'adler32'], digests), `${sha256},adler32=11e60398`);
    assert.equal(digestHeader(['adler32', 'adler32'], digests), 'adler32=11e60398');
  });

  it('keeps ADLER32 to 8 digits with its leading zeros', () => {
    assert.equal(digestHeader(['adler32'], { adler32: adler32(Buffer.alloc(3)) }), 'adler32=00030001');
    assert.equal(digestHeader(['adler32'], { adler32: adler32(Buffer.alloc(0)) }), 'adler32=00000001');
  });

  it('leaves out what is not recorded, and is null when nothing wanted is', () => {
    const old = { ...digests, md5: null, adler32: null };
    assert.equal(
      digestHeader(['adler32', 'md5', 'sha512'], old),
      `sha-512=${base64('sha512')},sha512=${base64('sha512')}`,
    );
    assert.equal(digestHeader(['adler32', 'md5'], old), null);
    assert.equal(digestHeader([], digests), null);
  });

  it('is what davix reads back by the name it asked for: split on commas, matched without case, decoded', () => {
    const header = digestHeader(['adler32', 'md5', 'sha256', 'sha512'], digests) as string;
    const read = (name: string) => {
      const member = header.split(',').find((m) => m.toLowerCase().startsWith(`${name.toLowerCase()}=`));
      return member?.slice(name.length + 1);
    };
    assert.equal(read('ADLER32'), digests.adler32);
    assert.equal(Buffer.from(read('MD5') as string, 'base64').toString('hex'), digests.md5);
    for (const name of ['SHA-256', 'SHA256'])
      assert.equal(Buffer.from(read(name) as string, 'base64').toString('hex'), digests.sha256, name);
    for (const name of ['SHA-512', 'SHA512'])
      assert.equal(Buffer.from(read(name) as string, 'base64').toString('hex'), digests.sha512, name);
  });
});

describe('the tests’ own ADLER32', () => {
  it('agrees with zlib’s on long and on uneven input', () => {
    // zlib.adler32 of these, computed once with Python's zlib
    const pattern = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * i + 7 * i) % 251));
    assert.equal(adler32(pattern), '279f3d8d');
    assert.equal(adler32(Buffer.alloc(70_000, 0xff)), '2a286e81');
  });
});
