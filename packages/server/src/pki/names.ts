// X.509 Names: parsing, OpenSSL-compatible printing (oneline and RFC 2253), DN strings, canonical keys and hashes.
import { createHash } from 'node:crypto';
import {
  children,
  decodeDer,
  decodeStringBytes,
  encodeOid,
  encodeSequence,
  encodeSet,
  encodeString,
  encodeTlv,
  expectTag,
  isAscii,
  isPrintableString,
  isStringTag,
  readOid,
  sequence,
  Tag,
} from './der.ts';

/** One attribute of an RDN. `tag` and `bytes` keep a parsed value's exact ASN.1 encoding. */
export type Ava = {
  /** OpenSSL short name (CN, O, emailAddress, …) or a dotted OID for unknown types */
  type: string;
  value: string;
  /** universal tag of the value (absent: chosen by encodeName) */
  tag?: number;
  /** content octets of the value exactly as encoded */
  bytes?: Buffer;
};

/** A relative distinguished name: usually one AVA, several for a multi-valued RDN. */
export type Rdn = Ava[];

type AttributeType = { oid: string; short: string; long: string; aliases: string[] };

// OpenSSL's short names (obj_mac.h) for DN attribute types, checked against `openssl x509 -nameopt compat`;
// "oid short [long] [aliases…]"
const ATTRIBUTE_TABLE = `
2.5.4.3 CN commonName
2.5.4.4 SN surname
2.5.4.5 serialNumber
2.5.4.6 C countryName
2.5.4.7 L localityName
2.5.4.8 ST stateOrProvinceName S
2.5.4.9 street streetAddress
2.5.4.10 O organizationName
2.5.4.11 OU organizationalUnitName
2.5.4.12 title
2.5.4.13 description
2.5.4.14 searchGuide
2.5.4.15 businessCategory
2.5.4.16 postalAddress
2.5.4.17 postalCode
2.5.4.18 postOfficeBox
2.5.4.19 physicalDeliveryOfficeName
2.5.4.20 telephoneNumber
2.5.4.21 telexNumber
2.5.4.22 teletexTerminalIdentifier
2.5.4.23 facsimileTelephoneNumber
2.5.4.24 x121Address
2.5.4.25 internationaliSDNNumber
2.5.4.26 registeredAddress
2.5.4.27 destinationIndicator
2.5.4.28 preferredDeliveryMethod
2.5.4.29 presentationAddress
2.5.4.30 supportedApplicationContext
2.5.4.31 member
2.5.4.32 owner
2.5.4.33 roleOccupant
2.5.4.34 seeAlso
2.5.4.35 userPassword
2.5.4.36 userCertificate
2.5.4.37 cACertificate
2.5.4.38 authorityRevocationList
2.5.4.39 certificateRevocationList
2.5.4.40 crossCertificatePair
2.5.4.41 name
2.5.4.42 GN givenName
2.5.4.43 initials
2.5.4.44 generationQualifier
2.5.4.45 x500UniqueIdentifier
2.5.4.46 dnQualifier
2.5.4.47 enhancedSearchGuide
2.5.4.48 protocolInformation
2.5.4.49 distinguishedName
2.5.4.50 uniqueMember
2.5.4.51 houseIdentifier
2.5.4.52 supportedAlgorithms
2.5.4.53 deltaRevocationList
2.5.4.54 dmdName
2.5.4.65 pseudonym
2.5.4.72 role
2.5.4.97 organizationIdentifier
2.5.4.98 c3 countryCode3c
2.5.4.99 n3 countryCode3n
2.5.4.100 dnsName
0.9.2342.19200300.100.1.1 UID userId
0.9.2342.19200300.100.1.2 textEncodedORAddress
0.9.2342.19200300.100.1.3 mail rfc822Mailbox
0.9.2342.19200300.100.1.4 info
0.9.2342.19200300.100.1.5 favouriteDrink
0.9.2342.19200300.100.1.6 roomNumber
0.9.2342.19200300.100.1.7 photo
0.9.2342.19200300.100.1.8 userClass
0.9.2342.19200300.100.1.9 host
0.9.2342.19200300.100.1.10 manager
0.9.2342.19200300.100.1.11 documentIdentifier
0.9.2342.19200300.100.1.12 documentTitle
0.9.2342.19200300.100.1.13 documentVersion
0.9.2342.19200300.100.1.14 documentAuthor
0.9.2342.19200300.100.1.15 documentLocation
0.9.2342.19200300.100.1.20 homeTelephoneNumber
0.9.2342.19200300.100.1.21 secretary
0.9.2342.19200300.100.1.22 otherMailbox
0.9.2342.19200300.100.1.23 lastModifiedTime
0.9.2342.19200300.100.1.24 lastModifiedBy
0.9.2342.19200300.100.1.25 DC domainComponent
0.9.2342.19200300.100.1.26 aRecord
0.9.2342.19200300.100.1.27 pilotAttributeType27
0.9.2342.19200300.100.1.28 mXRecord
0.9.2342.19200300.100.1.29 nSRecord
0.9.2342.19200300.100.1.30 sOARecord
0.9.2342.19200300.100.1.31 cNAMERecord
0.9.2342.19200300.100.1.37 associatedDomain
0.9.2342.19200300.100.1.38 associatedName
0.9.2342.19200300.100.1.39 homePostalAddress
0.9.2342.19200300.100.1.40 personalTitle
0.9.2342.19200300.100.1.41 mobileTelephoneNumber
0.9.2342.19200300.100.1.42 pagerTelephoneNumber
0.9.2342.19200300.100.1.43 friendlyCountryName
0.9.2342.19200300.100.1.44 uid uniqueIdentifier
0.9.2342.19200300.100.1.45 organizationalStatus
0.9.2342.19200300.100.1.46 janetMailbox
0.9.2342.19200300.100.1.47 mailPreferenceOption
0.9.2342.19200300.100.1.48 buildingName
0.9.2342.19200300.100.1.49 dSAQuality
0.9.2342.19200300.100.1.50 singleLevelQuality
0.9.2342.19200300.100.1.51 subtreeMinimumQuality
0.9.2342.19200300.100.1.52 subtreeMaximumQuality
0.9.2342.19200300.100.1.53 personalSignature
0.9.2342.19200300.100.1.54 dITRedirect
0.9.2342.19200300.100.1.55 audio
0.9.2342.19200300.100.1.56 documentPublisher
1.2.840.113549.1.9.1 emailAddress emailAddress E Email
1.2.840.113549.1.9.2 unstructuredName
1.2.840.113549.1.9.3 contentType
1.2.840.113549.1.9.4 messageDigest
1.2.840.113549.1.9.5 signingTime
1.2.840.113549.1.9.6 countersignature
1.2.840.113549.1.9.7 challengePassword
1.2.840.113549.1.9.8 unstructuredAddress
1.2.840.113549.1.9.9 extendedCertificateAttributes
1.2.840.113549.1.9.14 extReq
1.2.840.113549.1.9.15 SMIME-CAPS
1.2.840.113549.1.9.16 SMIME
1.2.840.113549.1.9.20 friendlyName
1.2.840.113549.1.9.21 localKeyID
1.3.6.1.4.1.311.60.2.1.1 jurisdictionL jurisdictionLocalityName
1.3.6.1.4.1.311.60.2.1.2 jurisdictionST jurisdictionStateOrProvinceName
1.3.6.1.4.1.311.60.2.1.3 jurisdictionC jurisdictionCountryName
`;

const ATTRIBUTES: AttributeType[] = ATTRIBUTE_TABLE.trim()
  .split('\n')
  .map((line) => {
    const [oid, short, long, ...aliases] = line.split(' ') as [
      string,
      string,
      string | undefined,
      ...string[],
    ];
    return { oid, short, long: long ?? short, aliases };
  });

const BY_OID = new Map(ATTRIBUTES.map((a) => [a.oid, a]));
// exact spelling first (OpenSSL has both UID and uid), then case-insensitive (RFC 4514 keywords); first one wins
const BY_EXACT_NAME = new Map<string, AttributeType>();
const BY_NAME = new Map<string, AttributeType>();
for (const a of ATTRIBUTES) {
  for (const name of [a.short, a.long, ...a.aliases]) {
    if (!BY_EXACT_NAME.has(name)) BY_EXACT_NAME.set(name, a);
    if (!BY_NAME.has(name.toLowerCase())) BY_NAME.set(name.toLowerCase(), a);
  }
}

/** The dotted OID of an attribute type given as a short/long name or OID; throws if unknown. */
export function attributeOid(type: string): string {
  const oid = lookupAttributeOid(type);
  if (!oid) throw new Error(`Unknown DN attribute type '${type}'`);
  return oid;
}

function lookupAttributeOid(type: string): string | undefined {
  const bare = type.replace(/^oid\./i, '');
  if (/^[0-2](\.\d+)+$/.test(bare)) return bare;
  return (BY_EXACT_NAME.get(type) ?? BY_NAME.get(type.toLowerCase()))?.oid;
}

/** The name OpenSSL prints for an attribute OID: its short name, or the dotted OID. */
export function attributeShortName(oid: string): string {
  return BY_OID.get(oid)?.short ?? oid;
}

// ---- parsing DER ----

/** Name ::= SEQUENCE OF RelativeDistinguishedName; each RDN is a non-empty SET OF AttributeTypeAndValue. */
export function parseName(der: Buffer): Rdn[] {
  return parseNameNode(decodeDer(der));
}

export function parseNameNode(node: ReturnType<typeof decodeDer>): Rdn[] {
  return sequence(node, 'Name').map((set) => {
    const avas = children(expectTag(set, Tag.SET, 'RelativeDistinguishedName'));
    if (avas.length === 0) throw new Error('Name has an empty RDN');
    return avas.map((avaNode) => {
      const [typeNode, valueNode, extra] = sequence(avaNode, 'AttributeTypeAndValue');
      if (!typeNode || !valueNode || extra)
        throw new Error('Name: AttributeTypeAndValue needs a type and a value');
      const type = attributeShortName(readOid(typeNode));
      const bytes = Buffer.from(valueNode.value);
      const value = isStringTag(valueNode.tag)
        ? decodeStringBytes(valueNode.tag, bytes)
        : `#${valueNode.raw.toString('hex')}`;
      return { type, value, tag: valueNode.tag, bytes };
    });
  });
}

// ---- encoding ----

function defaultTag(oid: string, value: string): number {
  // as `openssl req` does: C, serialNumber and dnQualifier are PrintableString; DC and emailAddress IA5String
  if (['2.5.4.6', '2.5.4.5', '2.5.4.46'].includes(oid) && isPrintableString(value))
    return Tag.PRINTABLE_STRING;
  if (['0.9.2342.19200300.100.1.25', '1.2.840.113549.1.9.1'].includes(oid) && isAscii(value)) {
    return Tag.IA5_STRING;
  }
  return Tag.UTF8_STRING;
}

function encodeAvaValue(oid: string, ava: Ava): Buffer {
  if (ava.bytes) return encodeTlv(ava.tag ?? Tag.UTF8_STRING, ava.bytes);
  return encodeString(ava.tag ?? defaultTag(oid, ava.value), ava.value);
}

function encodeAva(ava: Ava): Buffer {
  const oid = attributeOid(ava.type);
  return encodeSequence(encodeOid(oid), encodeAvaValue(oid, ava));
}

/** DER of a Name; parsed values keep their original encoding, new ones get OpenSSL's default string types. */
export function encodeName(rdns: Rdn[]): Buffer {
  return encodeSequence(...rdns.map((rdn) => encodeSet(...rdn.map(encodeAva))));
}

// ---- OpenSSL X509_NAME_oneline ----

function avaBytes(ava: Ava): Buffer {
  if (ava.bytes) return ava.bytes;
  return decodeDer(encodeAvaValue(attributeOid(ava.type), ava)).value;
}

/**
 * `/C=CA/O=Grid/CN=Alice`: X509_NAME_oneline, i.e. `openssl x509 -subject -nameopt compat`, with one change that
 * makes the string mean one name only. The grammar of a value:
 * - bytes 0x20-0x7e stand for themselves, but for `\`, `/` and `+`, written `\\`, `\/` and `\+`;
 * - any other byte is `\xHH` (upper-case hex);
 * - `=` stands for itself (the first `=` of an attribute ends its type; `\=` is read as `=` too).
 * OpenSSL leaves a literal backslash unescaped, so a CN holding the four characters `\xC3` printed like the
 * byte 0xC3: two certificates, one user. Here it is `\\xC3`. It differs from OpenSSL's output only for names
 * holding a backslash.
 */
export function formatOneline(rdns: Rdn[]): string {
  let out = '';
  for (const rdn of rdns) {
    rdn.forEach((ava, i) => {
      // a multi-valued RDN's later AVAs are joined with '+'
      out += `${i === 0 ? '/' : '+'}${attributeShortName(attributeOid(ava.type))}=`;
      for (const byte of avaBytes(ava)) {
        if (byte < 0x20 || byte > 0x7e) out += `\\x${byte.toString(16).toUpperCase().padStart(2, '0')}`;
        else if (byte === 0x2f || byte === 0x2b || byte === 0x5c)
          out += `\\${String.fromCharCode(byte)}`; // OpenSSL 3 escapes '/' and '+'; we escape '\' too
        else out += String.fromCharCode(byte);
      }
    });
  }
  return out;
}

// ---- OpenSSL RFC 2253 printing (X509_NAME_print_ex with XN_FLAG_RFC2253) ----

const RFC2253_SPECIAL = new Set([...',+"\\<>;'].map((c) => c.charCodeAt(0)));

function hex2(byte: number): string {
  return byte.toString(16).toUpperCase().padStart(2, '0');
}

/** The characters of a value as OpenSSL's do_buf sees them (UTF-8 bytes, or code points to convert). */
function rfc2253Value(ava: Ava): string {
  const oid = attributeOid(ava.type);
  const tag = ava.tag ?? (ava.bytes ? Tag.UTF8_STRING : defaultTag(oid, ava.value));
  const bytes = avaBytes(ava);
  const dump = () => `#${encodeTlv(tag, bytes).toString('hex').toUpperCase()}`;
  // XN_FLAG_DUMP_UNKNOWN_FIELDS and ASN1_STRFLGS_DUMP_UNKNOWN: unknown attributes and non-string types as hex DER
  if (!BY_OID.has(oid)) return dump();
  let units: number[];
  let convert: boolean;
  switch (tag) {
    case Tag.UTF8_STRING:
      units = [...bytes];
      convert = false;
      break;
    case Tag.NUMERIC_STRING:
    case Tag.PRINTABLE_STRING:
    case Tag.T61_STRING:
    case Tag.IA5_STRING:
    case Tag.VISIBLE_STRING:
      units = [...bytes];
      convert = true;
      break;
    case Tag.BMP_STRING:
      if (bytes.length % 2) return dump();
      units = [];
      for (let i = 0; i < bytes.length; i += 2) units.push(bytes.readUInt16BE(i));
      convert = true;
      break;
    case Tag.UNIVERSAL_STRING:
      if (bytes.length % 4) return dump();
      units = [];
      for (let i = 0; i < bytes.length; i += 4) units.push(bytes.readUInt32BE(i));
      convert = true;
      break;
    default:
      return dump();
  }
  // code points are converted to UTF-8 first, then every byte is escaped on its own
  const out: string[] = [];
  units.forEach((unit, i) => {
    const first = i === 0;
    const last = i === units.length - 1;
    const encoded = convert ? [...Buffer.from(String.fromCodePoint(unit), 'utf8')] : [unit];
    for (const byte of encoded) out.push(escape2253(byte, first, last));
  });
  return out.join('');
}

function escape2253(byte: number, first: boolean, last: boolean): string {
  if (byte > 0x7f || byte < 0x20 || byte === 0x7f) return `\\${hex2(byte)}`;
  if (RFC2253_SPECIAL.has(byte)) return `\\${String.fromCharCode(byte)}`;
  // RFC 2253 2.4: a leading '#' or space and a trailing space are escaped
  if ((first && (byte === 0x23 || byte === 0x20)) || (last && byte === 0x20)) {
    return `\\${String.fromCharCode(byte)}`;
  }
  return String.fromCharCode(byte);
}

/** `CN=Alice,O=Grid,C=CA`: `openssl x509 -nameopt RFC2253`, also mod_ssl's SSL_CLIENT_S_DN. */
export function formatRfc2253(rdns: Rdn[]): string {
  let out = '';
  // XN_FLAG_DN_REV reverses the flat list of AVAs, so multi-valued RDNs come out reversed too
  for (let r = rdns.length - 1; r >= 0; r--) {
    const rdn = rdns[r] as Rdn;
    for (let a = rdn.length - 1; a >= 0; a--) {
      const ava = rdn[a] as Ava;
      if (out) out += a === rdn.length - 1 ? ',' : '+';
      out += `${attributeShortName(attributeOid(ava.type))}=${rfc2253Value(ava)}`;
    }
  }
  return out;
}

// ---- parsing DN strings ----

const TYPE_PREFIX = /^\s*((?:oid\.)?[0-2](?:\.\d+)+|[A-Za-z][A-Za-z0-9-]*)\s*=/i;

function startsAva(segment: string): boolean {
  const match = TYPE_PREFIX.exec(segment);
  return match !== null && lookupAttributeOid(match[1] as string) !== undefined;
}

/** Splits on an unescaped separator character, keeping escapes in the pieces. */
function splitUnescaped(text: string, separator: string): string[] {
  const parts: string[] = [];
  let current = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (c === '\\' && i + 1 < text.length) {
      current += c + text[i + 1];
      i++;
    } else if (c === separator) {
      parts.push(current);
      current = '';
    } else {
      current += c;
    }
  }
  parts.push(current);
  return parts;
}

/** Joins pieces that do not start with `type=` back onto the previous one (OpenSSL 1.x left '/' and '+' unescaped). */
function mergeLoosePieces(pieces: string[], separator: string, text: string): string[] {
  const out: string[] = [];
  for (const piece of pieces) {
    if (out.length === 0 || startsAva(piece)) out.push(piece);
    else out[out.length - 1] += separator + piece;
  }
  if (!startsAva(out[0] ?? '')) {
    const head = (out[0] ?? '').trim();
    throw new Error(
      head.includes('=')
        ? `Invalid DN '${text}': unknown attribute type in '${head}'`
        : `Invalid DN '${text}': '${head}' has no '='`,
    );
  }
  return out;
}

const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/** Value bytes to an AVA: valid UTF-8 becomes text; anything else is kept as T61String (Latin-1) bytes. */
function avaFromBytes(type: string, bytes: number[]): Ava {
  const buf = Buffer.from(bytes);
  try {
    return { type, value: utf8Strict.decode(buf) };
  } catch {
    return { type, value: buf.toString('latin1'), tag: Tag.T61_STRING, bytes: buf };
  }
}

function pushChar(out: number[], c: string): void {
  out.push(...Buffer.from(c, 'utf8'));
}

function parseSlashValue(raw: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] as string;
    if (c !== '\\') {
      pushChar(out, c);
      continue;
    }
    const hex = /^x([0-9A-Fa-f]{2})/.exec(raw.slice(i + 1));
    if (hex) {
      // X509_NAME_oneline prints bytes outside 0x20-0x7e as \xHH
      out.push(Number.parseInt(hex[1] as string, 16));
      i += 3;
    } else if (raw[i + 1] === '/' || raw[i + 1] === '+' || raw[i + 1] === '\\' || raw[i + 1] === '=') {
      // ... and escapes '/' and '+' (we '\' too; '\=' is accepted); any other backslash is a literal one, as
      // OpenSSL 1.x wrote it unescaped
      pushChar(out, raw[i + 1] as string);
      i++;
    } else {
      pushChar(out, c);
    }
  }
  return out;
}

function parseSlashForm(text: string): Rdn[] {
  const rdnTexts = mergeLoosePieces(splitUnescaped(text.slice(1), '/'), '/', text);
  return rdnTexts.map((rdnText) =>
    mergeLoosePieces(splitUnescaped(rdnText, '+'), '+', text).map((avaText) => {
      const eq = avaText.indexOf('=');
      const typeName = avaText.slice(0, eq).trim();
      const type = attributeShortName(attributeOid(typeName));
      return avaFromBytes(type, parseSlashValue(avaText.slice(eq + 1)));
    }),
  );
}

/** RFC 4514/2253 string: RDNs separated by ',' (or ';'), most specific first unless not `reversed`; '+' joins AVAs. */
function parseRfc2253Form(text: string, reversed: boolean): Rdn[] {
  const rdns: Rdn[] = [];
  let rdn: Rdn = [];
  let i = 0;
  const fail = (why: string): never => {
    throw new Error(`Invalid DN '${text}': ${why}`);
  };
  const skipSpaces = () => {
    while (text[i] === ' ') i++;
  };
  while (true) {
    skipSpaces();
    const typeMatch = /^((?:oid\.)?[0-2](?:\.\d+)+|[A-Za-z][A-Za-z0-9-]*)\s*=/i.exec(text.slice(i));
    if (!typeMatch) fail(`expected 'type=' at position ${i + 1}`);
    const typeName = (typeMatch as RegExpExecArray)[1] as string;
    const oid = lookupAttributeOid(typeName) ?? fail(`unknown attribute type '${typeName}'`);
    const type = attributeShortName(oid);
    i += (typeMatch as RegExpExecArray)[0].length;
    skipSpaces();
    let ava: Ava;
    if (text[i] === '#') {
      // RFC 4514 2.4: '#' then the hex of the value's BER encoding
      const hexMatch = /^#([0-9A-Fa-f]*)/.exec(text.slice(i)) as RegExpExecArray;
      i += hexMatch[0].length;
      const hexText = hexMatch[1] as string;
      if (hexText.length === 0 || hexText.length % 2) fail(`bad hex value for ${type}`);
      let node: ReturnType<typeof decodeDer>;
      try {
        node = decodeDer(Buffer.from(hexText, 'hex'));
      } catch (err) {
        return fail(`bad hex value for ${type}: ${(err as Error).message}`);
      }
      const bytes = Buffer.from(node.value);
      ava = isStringTag(node.tag)
        ? { type, value: decodeStringBytes(node.tag, bytes), tag: node.tag, bytes }
        : { type, value: `#${node.raw.toString('hex')}`, tag: node.tag, bytes };
    } else {
      const bytes: number[] = [];
      let trailingSpaces = 0;
      if (text[i] === '"') {
        // RFC 2253 quoted value
        i++;
        while (i < text.length && text[i] !== '"') {
          if (text[i] === '\\') i = readEscape(text, i, bytes, fail);
          else {
            pushChar(bytes, text[i] as string);
            i++;
          }
        }
        if (text[i] !== '"') fail('unterminated quoted value');
        i++;
        skipSpaces();
      } else {
        while (i < text.length && !',;+'.includes(text[i] as string)) {
          const c = text[i] as string;
          if (c === '\\') {
            i = readEscape(text, i, bytes, fail);
            trailingSpaces = 0;
          } else {
            pushChar(bytes, c);
            trailingSpaces = c === ' ' ? trailingSpaces + 1 : 0;
            i++;
          }
        }
        // unescaped trailing spaces are not part of the value
        bytes.splice(bytes.length - trailingSpaces, trailingSpaces);
      }
      ava = avaFromBytes(type, bytes);
    }
    rdn.push(ava);
    if (i >= text.length) break;
    const sep = text[i];
    i++;
    if (sep === '+') continue;
    if (sep === ',' || sep === ';') {
      rdns.push(rdn);
      rdn = [];
      continue;
    }
    fail(`unexpected '${sep}' at position ${i}`);
  }
  rdns.push(rdn);
  // RFC 2253 lists RDNs (and, as OpenSSL prints them, the AVAs inside one) in reverse certificate order
  return reversed ? rdns.reverse().map((r) => r.reverse()) : rdns;
}

function readEscape(text: string, i: number, out: number[], fail: (why: string) => never): number {
  const next = text.slice(i + 1, i + 3);
  if (/^[0-9A-Fa-f]{2}$/.test(next)) {
    out.push(Number.parseInt(next, 16));
    return i + 3;
  }
  const c = text[i + 1];
  if (c === undefined) fail("dangling '\\' at the end");
  pushChar(out, c as string);
  return i + 2;
}

/**
 * Parses a DN written as `/C=CA/O=Grid/CN=Alice` (OpenSSL oneline, with `\/`, `\+` and `\xHH` escapes), as
 * `CN=Alice,O=Grid,C=CA` (RFC 4514/2253, most specific first), or as `openssl x509 -subject` prints it by default
 * (`C = CA, O = Grid, CN = Alice`: spaces around '=', certificate order). A leading `subject=` is ignored.
 * Returns RDNs in certificate order (most general first).
 */
export function parseDnString(text: string): Rdn[] {
  const trimmed = text
    .replace(/^\s+/, '')
    .replace(/(?<!\\)\s+$/, '')
    .replace(/^(?:subject|issuer)\s*=\s*(?=\/|[A-Za-z0-9.]+\s*=)/i, '');
  if (trimmed === '' || trimmed === '/') throw new Error('Invalid DN: it is empty');
  if (trimmed.startsWith('/')) return parseSlashForm(trimmed);
  if (!trimmed.includes('=')) throw new Error(`Invalid DN '${text}': no '=' found`);
  if (!TYPE_PREFIX.test(trimmed)) {
    throw new Error(`Invalid DN '${text}': expected '/C=…/CN=…' or 'CN=…,O=…,C=…'`);
  }
  // XN_FLAG_ONELINE (openssl's default print) puts spaces around '=' and keeps certificate order
  const printedInOrder = /^[A-Za-z0-9.-]+ = /.test(trimmed);
  return parseRfc2253Form(trimmed, !printedInOrder);
}

/** Sorts the AVAs of multi-valued RDNs into DER SET OF order, as the certificate encodes them. */
function sortMultiValued(rdns: Rdn[]): Rdn[] {
  return rdns.map((rdn) =>
    rdn.length < 2
      ? rdn
      : rdn
          .map((ava) => ({ ava, der: encodeAva(ava) }))
          .sort((a, b) => Buffer.compare(a.der, b.der))
          .map((x) => x.ava),
  );
}

/**
 * The string a parsed name is stored and compared as: the oneline form, multi-valued RDNs in DER order. Two
 * names give the same string exactly when their RDN sequences hold the same attribute types and value bytes.
 */
export function identityDn(rdns: Rdn[]): string {
  return formatOneline(sortMultiValued(rdns));
}

/** The slash (oneline) form of a DN given in either form: how Repoman stores and compares user DNs. */
export function normalizeDn(text: string): string {
  const rdns = parseDnString(text);
  if (rdns.length === 0) throw new Error('Invalid DN: it is empty');
  checkTypedDn(text.trim(), rdns);
  return identityDn(rdns);
}

/**
 * Typing mistakes that parse but could never match a certificate: an empty last value, a trailing '/', a bare
 * attribute type swallowed into the value before it, or the slash form without its leading '/'.
 */
function checkTypedDn(input: string, rdns: Rdn[]): void {
  const text = input.replace(/^(?:subject|issuer)\s*=\s*/i, '');
  const fail = (why: string): never => {
    throw new Error(`Invalid DN '${input}': ${why}`);
  };
  if (!text.startsWith('/')) {
    if (/^[A-Za-z][A-Za-z0-9-]*=[^,;+]*\/[A-Za-z][A-Za-z0-9-]*=/.test(text)) {
      fail("it looks like the slash form without its leading '/'");
    }
    return;
  }
  if (text.endsWith('=')) fail('the last value is empty');
  for (const ava of rdns.flat()) {
    if (ava.value.endsWith('/')) fail("it ends with '/'");
    const tail = /\/([A-Za-z][A-Za-z0-9-]*)$/.exec(ava.value)?.[1];
    if (tail && lookupAttributeOid(tail)) fail(`'${tail}' has no '='`);
  }
}

// ---- canonical form (X509_NAME_cmp, X509_NAME_hash) ----

// ASN1_MASK_CANON: the string types OpenSSL converts to UTF-8 and folds before comparing
const CANON_TAGS = new Set<number>([
  Tag.UTF8_STRING,
  Tag.BMP_STRING,
  Tag.UNIVERSAL_STRING,
  Tag.PRINTABLE_STRING,
  Tag.T61_STRING,
  Tag.IA5_STRING,
  Tag.VISIBLE_STRING,
]);

function isSpace(byte: number): boolean {
  return byte === 0x20 || (byte >= 0x09 && byte <= 0x0d);
}

function canonicalValue(ava: Ava): Buffer {
  const oid = attributeOid(ava.type);
  const tag = ava.tag ?? (ava.bytes ? Tag.UTF8_STRING : defaultTag(oid, ava.value));
  if (!CANON_TAGS.has(tag)) return encodeAvaValue(oid, ava);
  const utf8 = Buffer.from(
    ava.bytes ? decodeStringBytes(tag, ava.bytes) : ava.value, // decodeStringBytes rejects invalid UTF-8
    'utf8',
  );
  // asn1_string_canon: trim, collapse internal whitespace to one space, lowercase ASCII
  let start = 0;
  let end = utf8.length;
  while (start < end && isSpace(utf8[start] as number)) start++;
  while (end > start && isSpace(utf8[end - 1] as number)) end--;
  const out: number[] = [];
  for (let i = start; i < end; i++) {
    const byte = utf8[i] as number;
    if (isSpace(byte)) {
      out.push(0x20);
      while (i + 1 < end && isSpace(utf8[i + 1] as number)) i++;
    } else if (byte >= 0x41 && byte <= 0x5a) {
      out.push(byte + 0x20);
    } else {
      out.push(byte);
    }
  }
  return encodeTlv(Tag.UTF8_STRING, Buffer.from(out));
}

function canonicalRdn(rdn: Rdn): Buffer {
  return encodeSet(
    ...rdn.map((ava) => encodeSequence(encodeOid(attributeOid(ava.type)), canonicalValue(ava))),
  );
}

/** The bytes OpenSSL compares names by (x509_name_canon): each RDN re-encoded with folded UTF8String values. */
export function canonicalEncoding(rdns: Rdn[]): Buffer {
  return Buffer.concat(rdns.map(canonicalRdn));
}

/** Canonical comparison key of a name: equal keys mean X509_NAME_cmp() == 0. */
export function nameKey(rdns: Rdn[]): string {
  return canonicalEncoding(rdns).toString('hex');
}

/** Canonical comparison key of one RDN (for the proxy name rule: issuer RDNs plus one). */
export function rdnKey(rdn: Rdn): string {
  return canonicalRdn(rdn).toString('hex');
}

function toRdns(name: Buffer | Rdn[]): Rdn[] {
  return Buffer.isBuffer(name) ? parseName(name) : name;
}

function hashWord(digest: Buffer): string {
  return digest.readUInt32LE(0).toString(16).padStart(8, '0');
}

/** X509_NAME_hash (`openssl x509 -hash`): the `<hash>.0` file name of a CA in a certificates directory. */
export function subjectHash(name: Buffer | Rdn[]): string {
  return hashWord(
    createHash('sha1')
      .update(canonicalEncoding(toRdns(name)))
      .digest(),
  );
}

/** X509_NAME_hash_old (`openssl x509 -subject_hash_old`): MD5 of the Name's DER, used by older grid tools. */
export function subjectHashOld(name: Buffer | Rdn[]): string {
  const der = Buffer.isBuffer(name) ? name : encodeName(name);
  return hashWord(createHash('md5').update(der).digest());
}
