// A minimal, strict DER reader and writer: just what X.509 certificates, names and CRLs need.

/** Universal tag numbers (with the constructed bit for SEQUENCE and SET). */
export const Tag = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  NUMERIC_STRING: 0x12,
  PRINTABLE_STRING: 0x13,
  T61_STRING: 0x14,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  VISIBLE_STRING: 0x1a,
  GENERAL_STRING: 0x1b,
  UNIVERSAL_STRING: 0x1c,
  BMP_STRING: 0x1e,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** One decoded TLV. `tag` is the full identifier octet (class, constructed bit and number). */
export type DerNode = {
  tag: number;
  constructed: boolean;
  /** 0 universal, 1 application, 2 context-specific, 3 private */
  tagClass: number;
  tagNumber: number;
  /** the whole encoding: header and content */
  raw: Buffer;
  /** the content octets */
  value: Buffer;
};

const MAX_DEPTH = 64;

/** Reads one element at `offset`; `end` bounds it (defaults to the buffer's end). */
export function readElement(buf: Buffer, offset = 0, end = buf.length): DerNode {
  if (offset >= end) throw new Error(`DER: expected an element at offset ${offset}, found end of data`);
  const tag = buf[offset] as number;
  // X.509 only uses low tag numbers; the 0x1f escape introduces multi-byte tags
  if ((tag & 0x1f) === 0x1f) throw new Error(`DER: multi-byte tag at offset ${offset} is not supported`);
  let pos = offset + 1;
  if (pos >= end) throw new Error(`DER: truncated length at offset ${pos}`);
  const first = buf[pos++] as number;
  let length: number;
  if (first < 0x80) {
    length = first;
  } else if (first === 0x80) {
    throw new Error(`DER: indefinite length at offset ${offset + 1} is not allowed`);
  } else {
    const count = first & 0x7f;
    if (count > 4) throw new Error(`DER: length of ${count} octets at offset ${offset + 1} is too large`);
    if (pos + count > end) throw new Error(`DER: truncated length at offset ${pos}`);
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + (buf[pos + i] as number);
    // DER 10.1: the definite form uses the minimum number of octets
    if (length < 0x80 || buf[pos] === 0) throw new Error(`DER: non-minimal length at offset ${offset + 1}`);
    pos += count;
  }
  if (pos + length > end) {
    throw new Error(
      `DER: length ${length} at offset ${offset} runs past the end of the data (${end - pos} left)`,
    );
  }
  return {
    tag,
    constructed: (tag & 0x20) !== 0,
    tagClass: tag >> 6,
    tagNumber: tag & 0x1f,
    raw: buf.subarray(offset, pos + length),
    value: buf.subarray(pos, pos + length),
  };
}

/** Decodes exactly one element that must fill the whole buffer. */
export function decodeDer(buf: Buffer): DerNode {
  const node = readElement(buf, 0);
  if (node.raw.length !== buf.length) {
    throw new Error(`DER: ${buf.length - node.raw.length} bytes of trailing data after the element`);
  }
  return node;
}

/** The child elements of a constructed node; the content must be exactly a run of elements. */
export function children(node: DerNode): DerNode[] {
  if (!node.constructed) throw new Error(`DER: ${tagName(node.tag)} is not constructed`);
  const out: DerNode[] = [];
  let pos = 0;
  while (pos < node.value.length) {
    const child = readElement(node.value, pos);
    out.push(child);
    pos += child.raw.length;
  }
  return out;
}

/** Throws unless `node` has the expected tag; `what` names the field for the message. */
export function expectTag(node: DerNode | undefined, tag: number, what: string): DerNode {
  if (!node) throw new Error(`DER: missing ${what}`);
  if (node.tag !== tag) {
    throw new Error(`DER: ${what} should be ${tagName(tag)}, found ${tagName(node.tag)}`);
  }
  return node;
}

/** Children of a SEQUENCE, checked to be one. */
export function sequence(node: DerNode | undefined, what: string): DerNode[] {
  return children(expectTag(node, Tag.SEQUENCE, what));
}

/** Walks every element recursively (depth-first, bounded nesting); useful to validate a whole blob. */
export function walk(node: DerNode, visit: (node: DerNode, depth: number) => void, depth = 0): void {
  if (depth > MAX_DEPTH) throw new Error('DER: nesting is too deep');
  visit(node, depth);
  if (node.constructed) for (const child of children(node)) walk(child, visit, depth + 1);
}

export function tagName(tag: number): string {
  const names: Record<number, string> = {
    1: 'BOOLEAN',
    2: 'INTEGER',
    3: 'BIT STRING',
    4: 'OCTET STRING',
    5: 'NULL',
    6: 'OBJECT IDENTIFIER',
    12: 'UTF8String',
    18: 'NumericString',
    19: 'PrintableString',
    20: 'T61String',
    22: 'IA5String',
    23: 'UTCTime',
    24: 'GeneralizedTime',
    26: 'VisibleString',
    27: 'GeneralString',
    28: 'UniversalString',
    30: 'BMPString',
    48: 'SEQUENCE',
    49: 'SET',
  };
  const known = names[tag];
  if (known) return known;
  if (tag >> 6 === 2) return `[${tag & 0x1f}]${tag & 0x20 ? ' (constructed)' : ''}`;
  return `tag 0x${tag.toString(16).padStart(2, '0')}`;
}

// ---- primitive readers ----

export function readOid(node: DerNode): string {
  expectTag(node, Tag.OID, 'OBJECT IDENTIFIER');
  const bytes = node.value;
  if (bytes.length === 0) throw new Error('DER: empty OBJECT IDENTIFIER');
  if ((bytes[bytes.length - 1] as number) & 0x80) throw new Error('DER: truncated OBJECT IDENTIFIER');
  const arcs: bigint[] = [];
  let value = 0n;
  let fresh = true;
  for (const byte of bytes) {
    // X.690 8.19.2: subidentifiers use the fewest octets, so none starts with 0x80
    if (fresh && byte === 0x80) throw new Error('DER: non-minimal OBJECT IDENTIFIER arc');
    value = (value << 7n) | BigInt(byte & 0x7f);
    fresh = (byte & 0x80) === 0;
    if (fresh) {
      arcs.push(value);
      value = 0n;
    }
  }
  const first = arcs[0] as bigint;
  const head = first < 40n ? [0n, first] : first < 80n ? [1n, first - 40n] : [2n, first - 80n];
  return [...head, ...arcs.slice(1)].join('.');
}

/** INTEGER as a signed bigint (two's complement). */
export function readInteger(node: DerNode): bigint {
  expectTag(node, Tag.INTEGER, 'INTEGER');
  return integerFromBytes(node.value);
}

export function integerFromBytes(bytes: Buffer): bigint {
  if (bytes.length === 0) throw new Error('DER: empty INTEGER');
  let value = BigInt(`0x${bytes.toString('hex')}`);
  if ((bytes[0] as number) & 0x80) value -= 1n << BigInt(bytes.length * 8);
  return value;
}

/** INTEGER as lowercase hex without leading zeros ("0" for zero, "-" prefix if negative). */
export function readIntegerHex(node: DerNode): string {
  const value = readInteger(node);
  return value < 0n ? `-${(-value).toString(16)}` : value.toString(16);
}

/** A small INTEGER as a number; throws when it does not fit. */
export function readSmallInteger(node: DerNode): number {
  const value = readInteger(node);
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < -BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new Error('DER: INTEGER is too large');
  }
  return Number(value);
}

export function readBoolean(node: DerNode): boolean {
  expectTag(node, Tag.BOOLEAN, 'BOOLEAN');
  if (node.value.length !== 1) throw new Error('DER: BOOLEAN must be one octet');
  // DER 11.1: TRUE is encoded as 0xff
  if (node.value[0] !== 0 && node.value[0] !== 0xff) throw new Error('DER: BOOLEAN must be 0x00 or 0xff');
  return node.value[0] === 0xff;
}

export type BitString = { unusedBits: number; bytes: Buffer };

export function readBitString(node: DerNode): BitString {
  expectTag(node, Tag.BIT_STRING, 'BIT STRING');
  if (node.value.length === 0) throw new Error('DER: BIT STRING without the unused-bits octet');
  const unusedBits = node.value[0] as number;
  const bytes = node.value.subarray(1);
  if (unusedBits > 7 || (bytes.length === 0 && unusedBits !== 0)) {
    throw new Error(`DER: BIT STRING has an invalid unused-bits count ${unusedBits}`);
  }
  return { unusedBits, bytes };
}

/** Bit `n` of a named-bit BIT STRING (bit 0 is the most significant bit of the first octet). */
export function bitIsSet(bits: BitString, n: number): boolean {
  const byte = bits.bytes[n >> 3];
  if (byte === undefined) return false;
  return ((byte >> (7 - (n & 7))) & 1) === 1;
}

export function readOctetString(node: DerNode): Buffer {
  return expectTag(node, Tag.OCTET_STRING, 'OCTET STRING').value;
}

export function readNull(node: DerNode): null {
  expectTag(node, Tag.NULL, 'NULL');
  if (node.value.length !== 0) throw new Error('DER: NULL with content');
  return null;
}

/** UTCTime (YYMMDDHHMM[SS]Z, RFC 5280 years 1950-2049) or GeneralizedTime (YYYYMMDDHHMMSS[.f]Z). */
export function readTime(node: DerNode): Date {
  const text = node.value.toString('latin1');
  let match: RegExpExecArray | null;
  let year: number;
  if (node.tag === Tag.UTC_TIME) {
    match = /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)?Z$/.exec(text);
    if (!match) throw new Error(`DER: malformed UTCTime "${text}"`);
    const yy = Number(match[1]);
    year = yy >= 50 ? 1900 + yy : 2000 + yy; // RFC 5280 4.1.2.5.1
  } else if (node.tag === Tag.GENERALIZED_TIME) {
    match = /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(?:\.(\d+))?Z$/.exec(text);
    if (!match) throw new Error(`DER: malformed GeneralizedTime "${text}"`);
    year = Number(match[1]);
  } else {
    throw new Error(`DER: expected a time, found ${tagName(node.tag)}`);
  }
  const [month, day, hour, minute] = [2, 3, 4, 5].map((i) => Number(match[i]));
  const second = Number(match[6] ?? '0');
  const millis = match[7] ? Math.floor(Number(`0.${match[7]}`) * 1000) : 0;
  const date = new Date(Date.UTC(year, (month as number) - 1, day, hour, minute, second, millis));
  if (
    date.getUTCMonth() !== (month as number) - 1 ||
    date.getUTCDate() !== day ||
    (hour as number) > 23 ||
    (minute as number) > 59 ||
    second > 59
  ) {
    throw new Error(`DER: invalid date "${text}"`);
  }
  if (year < 100) date.setUTCFullYear(year);
  return date;
}

const STRING_TAGS = new Set<number>([
  Tag.UTF8_STRING,
  Tag.NUMERIC_STRING,
  Tag.PRINTABLE_STRING,
  Tag.T61_STRING,
  Tag.IA5_STRING,
  Tag.VISIBLE_STRING,
  Tag.GENERAL_STRING,
  Tag.UNIVERSAL_STRING,
  Tag.BMP_STRING,
]);

export function isStringTag(tag: number): boolean {
  return STRING_TAGS.has(tag);
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

/** Decodes string content: UTF-8, UTF-16BE (BMP), UCS-4 (Universal); the 8-bit types as Latin-1. */
export function decodeStringBytes(tag: number, bytes: Buffer): string {
  switch (tag) {
    case Tag.UTF8_STRING:
      try {
        return utf8Decoder.decode(bytes);
      } catch {
        throw new Error('DER: UTF8String holds invalid UTF-8');
      }
    case Tag.BMP_STRING: {
      if (bytes.length % 2) throw new Error('DER: BMPString has an odd length');
      let out = '';
      for (let i = 0; i < bytes.length; i += 2) out += String.fromCharCode(bytes.readUInt16BE(i));
      return out;
    }
    case Tag.UNIVERSAL_STRING: {
      if (bytes.length % 4) throw new Error('DER: UniversalString length is not a multiple of 4');
      let out = '';
      for (let i = 0; i < bytes.length; i += 4) {
        const code = bytes.readUInt32BE(i);
        if (code > 0x10ffff) throw new Error('DER: UniversalString character out of range');
        out += String.fromCodePoint(code);
      }
      return out;
    }
    default:
      if (!STRING_TAGS.has(tag)) throw new Error(`DER: ${tagName(tag)} is not a string type`);
      return bytes.toString('latin1');
  }
}

export function readString(node: DerNode): string {
  return decodeStringBytes(node.tag, node.value);
}

// ---- writer ----

export function encodeLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** One TLV with the given identifier octet. */
export function encodeTlv(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), encodeLength(content.length), content]);
}

export function encodeSequence(...items: (Buffer | undefined)[]): Buffer {
  return encodeTlv(Tag.SEQUENCE, Buffer.concat(items.filter((item) => item !== undefined)));
}

/** SET OF in DER order: elements sorted by their encodings (X.690 11.6). */
export function encodeSet(...items: Buffer[]): Buffer {
  return encodeTlv(Tag.SET, Buffer.concat([...items].sort(Buffer.compare)));
}

/** Context-specific tag [n]: constructed for EXPLICIT wrapping, primitive for IMPLICIT primitives. */
export function encodeContext(n: number, content: Buffer, constructed = true): Buffer {
  if (n > 30) throw new Error('DER: context tag number too large');
  return encodeTlv(0x80 | (constructed ? 0x20 : 0) | n, content);
}

/** [n] EXPLICIT around one element. */
export function encodeExplicit(n: number, element: Buffer): Buffer {
  return encodeContext(n, element, true);
}

export function encodeOid(oid: string): Buffer {
  if (!/^[0-2](\.\d+)+$/.test(oid)) throw new Error(`DER: invalid OID "${oid}"`);
  const arcs = oid.split('.').map(BigInt);
  const [a, b] = arcs as [bigint, bigint];
  if (a < 2n && b >= 40n) throw new Error(`DER: invalid OID "${oid}"`);
  const out: number[] = [];
  for (const arc of [a * 40n + b, ...arcs.slice(2)]) {
    const chunk: number[] = [Number(arc & 0x7fn)];
    for (let n = arc >> 7n; n > 0n; n >>= 7n) chunk.unshift(Number(n & 0x7fn) | 0x80);
    out.push(...chunk);
  }
  return encodeTlv(Tag.OID, Buffer.from(out));
}

/** INTEGER from a bigint/number (two's complement, minimal) or from unsigned big-endian bytes. */
export function encodeInteger(value: bigint | number | Buffer): Buffer {
  if (Buffer.isBuffer(value)) {
    let start = 0;
    while (start < value.length - 1 && value[start] === 0) start++;
    let bytes = value.subarray(start);
    if (bytes.length === 0) bytes = Buffer.from([0]);
    if ((bytes[0] as number) & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
    return encodeTlv(Tag.INTEGER, bytes);
  }
  let n = BigInt(value);
  const bytes: number[] = [];
  if (n >= 0n) {
    do {
      bytes.unshift(Number(n & 0xffn));
      n >>= 8n;
    } while (n > 0n);
    if ((bytes[0] as number) & 0x80) bytes.unshift(0);
  } else {
    do {
      bytes.unshift(Number(n & 0xffn));
      n >>= 8n;
    } while (n < -1n);
    if (!((bytes[0] as number) & 0x80)) bytes.unshift(0xff);
  }
  return encodeTlv(Tag.INTEGER, Buffer.from(bytes));
}

export function encodeBoolean(value: boolean): Buffer {
  return encodeTlv(Tag.BOOLEAN, Buffer.from([value ? 0xff : 0]));
}

export function encodeNull(): Buffer {
  return Buffer.from([Tag.NULL, 0]);
}

export function encodeOctetString(bytes: Buffer): Buffer {
  return encodeTlv(Tag.OCTET_STRING, bytes);
}

export function encodeBitString(bytes: Buffer, unusedBits = 0): Buffer {
  if (unusedBits < 0 || unusedBits > 7 || (bytes.length === 0 && unusedBits)) {
    throw new Error('DER: invalid unused-bits count');
  }
  return encodeTlv(Tag.BIT_STRING, Buffer.concat([Buffer.from([unusedBits]), bytes]));
}

/** A named-bit BIT STRING (bit 0 first) with trailing zero bits removed, as DER requires. */
export function encodeNamedBits(bits: number[]): Buffer {
  if (bits.length === 0) return encodeBitString(Buffer.alloc(0));
  const highest = Math.max(...bits);
  const bytes = Buffer.alloc((highest >> 3) + 1);
  for (const bit of bits) bytes[bit >> 3] = (bytes[bit >> 3] as number) | (0x80 >> (bit & 7));
  return encodeBitString(bytes, 7 - (highest & 7));
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

export function encodeUtcTime(date: Date): Buffer {
  const year = date.getUTCFullYear();
  if (year < 1950 || year > 2049) throw new Error(`DER: year ${year} cannot be a UTCTime`);
  const text = `${pad(year % 100)}${pad(date.getUTCMonth() + 1)}${pad(date.getUTCDate())}${pad(date.getUTCHours())}${pad(date.getUTCMinutes())}${pad(date.getUTCSeconds())}Z`;
  return encodeTlv(Tag.UTC_TIME, Buffer.from(text, 'latin1'));
}

export function encodeGeneralizedTime(date: Date): Buffer {
  const text = `${pad(date.getUTCFullYear(), 4)}${pad(date.getUTCMonth() + 1)}${pad(date.getUTCDate())}${pad(date.getUTCHours())}${pad(date.getUTCMinutes())}${pad(date.getUTCSeconds())}Z`;
  return encodeTlv(Tag.GENERALIZED_TIME, Buffer.from(text, 'latin1'));
}

/** RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050. */
export function encodeTime(date: Date): Buffer {
  if (Number.isNaN(date.getTime())) throw new Error('DER: invalid date');
  const year = date.getUTCFullYear();
  return year >= 1950 && year <= 2049 ? encodeUtcTime(date) : encodeGeneralizedTime(date);
}

/** A string of the given universal type; the value is converted to that type's encoding. */
export function encodeString(tag: number, value: string): Buffer {
  switch (tag) {
    case Tag.UTF8_STRING:
      return encodeTlv(tag, Buffer.from(value, 'utf8'));
    case Tag.BMP_STRING: {
      const out = Buffer.alloc(value.length * 2);
      for (let i = 0; i < value.length; i++) out.writeUInt16BE(value.charCodeAt(i), i * 2);
      return encodeTlv(tag, out);
    }
    case Tag.UNIVERSAL_STRING: {
      const points = [...value].map((c) => c.codePointAt(0) as number);
      const out = Buffer.alloc(points.length * 4);
      points.forEach((p, i) => {
        out.writeUInt32BE(p, i * 4);
      });
      return encodeTlv(tag, out);
    }
    default:
      if (!STRING_TAGS.has(tag)) throw new Error(`DER: ${tagName(tag)} is not a string type`);
      if (!fitsBelow(value, 0x100)) throw new Error(`DER: "${value}" does not fit ${tagName(tag)}`);
      return encodeTlv(tag, Buffer.from(value, 'latin1'));
  }
}

export function encodeUtf8String(value: string): Buffer {
  return encodeString(Tag.UTF8_STRING, value);
}

export function encodePrintableString(value: string): Buffer {
  if (!isPrintableString(value)) throw new Error(`DER: "${value}" is not a PrintableString`);
  return encodeString(Tag.PRINTABLE_STRING, value);
}

export function encodeIa5String(value: string): Buffer {
  if (!isAscii(value)) throw new Error(`DER: "${value}" is not an IA5String`);
  return encodeString(Tag.IA5_STRING, value);
}

/** Every UTF-16 code unit is below `limit`. */
function fitsBelow(value: string, limit: number): boolean {
  for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) >= limit) return false;
  return true;
}

/** IA5String (ASCII) characters only. */
export function isAscii(value: string): boolean {
  return fitsBelow(value, 0x80);
}

/** X.680 41.4: PrintableString characters. */
export function isPrintableString(value: string): boolean {
  return /^[A-Za-z0-9 '()+,\-./:=?]*$/.test(value);
}
