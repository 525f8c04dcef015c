import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  bitIsSet,
  children,
  decodeDer,
  decodeStringBytes,
  encodeBitString,
  encodeBoolean,
  encodeContext,
  encodeExplicit,
  encodeGeneralizedTime,
  encodeInteger,
  encodeNamedBits,
  encodeNull,
  encodeOctetString,
  encodeOid,
  encodeSequence,
  encodeSet,
  encodeString,
  encodeTime,
  encodeTlv,
  encodeUtcTime,
  readBitString,
  readBoolean,
  readElement,
  readInteger,
  readIntegerHex,
  readNull,
  readOctetString,
  readOid,
  readString,
  readTime,
  sequence,
  Tag,
  walk,
} from '../../src/pki/der.ts';

const hex = (h: string) => Buffer.from(h.replace(/\s/g, ''), 'hex');

describe('DER reader: defensive', () => {
  test('a length beyond the buffer throws', () => {
    assert.throws(() => decodeDer(hex('3005 0201 01')), /runs past the end/);
    assert.throws(() => decodeDer(hex('04 84 7fffffff 00')), /runs past the end/);
    assert.throws(() => decodeDer(hex('30')), /truncated length/);
    assert.throws(() => decodeDer(hex('04 82 01')), /truncated length/);
  });

  test('indefinite lengths throw', () => {
    assert.throws(() => decodeDer(hex('3080 020101 0000')), /indefinite length/);
  });

  test('trailing garbage throws', () => {
    assert.throws(() => decodeDer(hex('020101 ff')), /1 bytes of trailing data/);
    // inside a constructed element, leftovers that are not an element also throw
    assert.throws(() => children(decodeDer(hex('3004 020101 05'))), /runs past|truncated/);
  });

  test('non-minimal lengths and huge length-of-length throw', () => {
    assert.throws(() => decodeDer(hex('04 81 01 00')), /non-minimal length/);
    assert.throws(() => decodeDer(hex('04 85 0000000001 00')), /too large/);
  });

  test('empty input and multi-byte tags throw', () => {
    assert.throws(() => decodeDer(Buffer.alloc(0)), /found end of data/);
    assert.throws(() => decodeDer(hex('1f 81 01 00')), /multi-byte tag/);
  });

  test('type mismatches name the field', () => {
    assert.throws(
      () => sequence(decodeDer(hex('020101')), 'TBSCertificate'),
      /TBSCertificate should be SEQUENCE, found INTEGER/,
    );
    assert.throws(() => readOid(decodeDer(hex('020101'))), /OBJECT IDENTIFIER/);
  });

  test('walk bounds nesting', () => {
    let deep = encodeNull();
    for (let i = 0; i < 70; i++) deep = encodeSequence(deep);
    assert.throws(() => walk(decodeDer(deep), () => {}), /too deep/);
    let count = 0;
    walk(decodeDer(encodeSequence(encodeNull(), encodeSequence(encodeBoolean(true)))), () => count++);
    assert.equal(count, 4);
  });
});

describe('DER round trips', () => {
  test('lengths in short and long form', () => {
    for (const size of [0, 1, 127, 128, 255, 256, 65535, 65536]) {
      const node = decodeDer(encodeOctetString(Buffer.alloc(size, 7)));
      assert.equal(readOctetString(node).length, size);
    }
    assert.deepEqual(encodeOctetString(Buffer.alloc(200)).subarray(0, 3), hex('04 81 c8'));
  });

  test('OIDs', () => {
    for (const oid of [
      '2.5.4.3',
      '1.2.840.113549.1.1.11',
      '1.3.6.1.4.1.3536.1.222',
      '2.999.3',
      '0.9.2342.19200300.100.1.25',
    ]) {
      assert.equal(readOid(decodeDer(encodeOid(oid))), oid);
    }
    assert.deepEqual(encodeOid('1.2.840.113549'), hex('06 06 2a864886f70d'));
    assert.throws(() => encodeOid('1.40'), /invalid OID/);
    assert.throws(() => encodeOid('x'), /invalid OID/);
    assert.throws(() => readOid(decodeDer(hex('06 02 2a 86'))), /truncated/);
    assert.throws(() => readOid(decodeDer(hex('06 02 80 01'))), /non-minimal/);
  });

  test('INTEGER as bigint and hex, including sign handling', () => {
    for (const n of [
      0n,
      1n,
      127n,
      128n,
      255n,
      256n,
      -1n,
      -128n,
      -129n,
      2n ** 127n,
      123456789012345678901234567890n,
    ]) {
      assert.equal(readInteger(decodeDer(encodeInteger(n))), n);
    }
    assert.deepEqual(encodeInteger(128), hex('02 02 0080'));
    assert.deepEqual(encodeInteger(-128), hex('02 01 80'));
    assert.deepEqual(encodeInteger(Buffer.from([0, 0, 0x80])), hex('02 02 0080'));
    assert.equal(readIntegerHex(decodeDer(hex('02 03 00abcd'))), 'abcd');
    assert.equal(readIntegerHex(decodeDer(hex('02 01 00'))), '0');
    assert.equal(readIntegerHex(decodeDer(hex('02 01 ff'))), '-1');
  });

  test('BOOLEAN, NULL, BIT STRING and named bits', () => {
    assert.equal(readBoolean(decodeDer(encodeBoolean(true))), true);
    assert.equal(readBoolean(decodeDer(encodeBoolean(false))), false);
    assert.throws(() => readBoolean(decodeDer(hex('01 01 01'))), /0x00 or 0xff/);
    assert.equal(readNull(decodeDer(encodeNull())), null);
    // keyUsage digitalSignature(0) + keyCertSign(5): one octet, 2 unused bits
    const ku = encodeNamedBits([0, 5]);
    assert.deepEqual(ku, hex('03 02 02 84'));
    const bits = readBitString(decodeDer(ku));
    assert.deepEqual(
      [0, 1, 5, 6, 8].map((n) => bitIsSet(bits, n)),
      [true, false, true, false, false],
    );
    assert.deepEqual(encodeNamedBits([8]), hex('03 03 07 0080'));
    assert.throws(() => readBitString(decodeDer(hex('03 01 01'))), /unused-bits/);
    assert.deepEqual(readBitString(decodeDer(encodeBitString(hex('abcd')))).bytes, hex('abcd'));
  });

  test('times: UTCTime through 2049, GeneralizedTime after', () => {
    const d = new Date(Date.UTC(2026, 10, 24, 20, 48, 39));
    assert.equal(encodeTime(d)[0], Tag.UTC_TIME);
    assert.equal(readTime(decodeDer(encodeTime(d))).getTime(), d.getTime());
    const late = new Date(Date.UTC(2050, 0, 1));
    assert.equal(encodeTime(late)[0], Tag.GENERALIZED_TIME);
    assert.equal(readTime(decodeDer(encodeTime(late))).getTime(), late.getTime());
    const old = new Date(Date.UTC(1950, 0, 1));
    assert.equal(readTime(decodeDer(encodeUtcTime(old))).getTime(), old.getTime());
    assert.equal(readTime(decodeDer(encodeGeneralizedTime(d))).getTime(), d.getTime());
    assert.equal(
      readTime(
        decodeDer(encodeTlv(Tag.GENERALIZED_TIME, Buffer.from('20261124204839.5Z'))),
      ).getMilliseconds(),
      500,
    );
    assert.throws(
      () => readTime(decodeDer(encodeTlv(Tag.UTC_TIME, Buffer.from('261324204839Z')))),
      /invalid date/,
    );
    assert.throws(
      () => readTime(decodeDer(encodeTlv(Tag.UTC_TIME, Buffer.from('2611242048+0100')))),
      /malformed UTCTime/,
    );
  });

  test('string types', () => {
    for (const tag of [Tag.UTF8_STRING, Tag.BMP_STRING, Tag.UNIVERSAL_STRING]) {
      assert.equal(readString(decodeDer(encodeString(tag, 'René €'))), 'René €');
    }
    assert.equal(readString(decodeDer(encodeString(Tag.T61_STRING, 'Ren\xe9'))), 'Ren\xe9');
    assert.equal(readString(decodeDer(encodeString(Tag.PRINTABLE_STRING, 'CA'))), 'CA');
    assert.throws(() => encodeString(Tag.IA5_STRING, '€'), /does not fit/);
    assert.throws(() => decodeStringBytes(Tag.UTF8_STRING, hex('c3')), /invalid UTF-8/);
    assert.throws(() => decodeStringBytes(Tag.BMP_STRING, hex('00')), /odd length/);
    assert.throws(() => decodeStringBytes(Tag.INTEGER, hex('00')), /not a string type/);
  });

  test('SEQUENCE, SET (sorted) and context tags', () => {
    const set = encodeSet(encodeInteger(2), encodeInteger(1));
    assert.deepEqual(set, hex('31 06 020101 020102'));
    const seq = encodeSequence(
      encodeExplicit(0, encodeInteger(2)),
      encodeContext(1, hex('abcd'), false),
      undefined,
    );
    const [explicit, implicit] = sequence(decodeDer(seq), 'test');
    assert.equal(explicit?.tag, 0xa0);
    assert.equal(
      readInteger(children(explicit as ReturnType<typeof decodeDer>)[0] as ReturnType<typeof decodeDer>),
      2n,
    );
    assert.equal(implicit?.tag, 0x81);
    assert.deepEqual(implicit?.value, hex('abcd'));
    const el = readElement(Buffer.concat([hex('ffff'), seq]), 2);
    assert.deepEqual(el.raw, seq);
  });
});
