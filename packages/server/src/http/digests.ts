/**
 * Digest headers: RFC 9530 `Content-Digest` / `Repr-Digest` (`sha-256=:base64:`) and the older `Content-MD5`
 * on uploads; RFC 3230 `Want-Digest` and `Digest` (`adler32=0a1b2c3d,md5=base64`) on downloads, which grid tools
 * (gfal2, davix) use for checksums.
 */

import type { DigestAlgorithm, DigestName, ExpectedDigests } from '@repoman/core';
import { RepomanError } from '@repoman/core';

const RFC9530_NAMES: Record<string, DigestAlgorithm> = {
  'sha-256': 'sha256',
  'sha-512': 'sha512',
  md5: 'md5',
};
const LENGTHS: Record<DigestAlgorithm, number> = { sha256: 32, sha512: 64, md5: 16 };

function decode(algorithm: DigestAlgorithm, base64: string, header: string): string {
  const bytes = Buffer.from(base64, 'base64');
  if (bytes.length !== LENGTHS[algorithm] || !/^[A-Za-z0-9+/]+=*$/.test(base64)) {
    throw new RepomanError('bad_request', `${header}: '${base64}' is not a base64 ${algorithm} digest`);
  }
  return bytes.toString('hex');
}

/** The digests an upload declares; algorithms we do not know are ignored, as RFC 9530 allows. */
export function expectedDigests(headers: Record<string, string | string[] | undefined>): ExpectedDigests {
  const expected: ExpectedDigests = {};
  for (const header of ['content-digest', 'repr-digest']) {
    const value = headers[header];
    if (typeof value !== 'string') continue;
    for (const member of value.split(',')) {
      const match = /^\s*([a-z0-9-]+)\s*=\s*:([^:]*):\s*$/i.exec(member);
      if (!match)
        throw new RepomanError(
          'bad_request',
          `${header}: cannot parse '${member.trim()}' (expected sha-256=:base64:)`,
        );
      const algorithm = RFC9530_NAMES[(match[1] as string).toLowerCase()];
      if (algorithm) expected[algorithm] = decode(algorithm, match[2] as string, header);
    }
  }
  const md5 = headers['content-md5'];
  if (typeof md5 === 'string') expected.md5 = decode('md5', md5.trim(), 'content-md5');
  return expected;
}

/** `sha-256=:…:` for a hex SHA-256, as `Repr-Digest` carries it. */
export const reprDigest = (sha256Hex: string) =>
  `sha-256=:${Buffer.from(sha256Hex, 'hex').toString('base64')}:`;

/**
 * RFC 3230 digest-algorithm tokens (case-insensitive) for the digests we record: RFC 5843 names SHA-256 and
 * SHA-512, and `SHA256` and `SHA512` are how gfal2's users write them (`gfal-sum URL SHA256` asks
 * `Want-Digest: SHA256`). `SHA` (SHA-1), `UNIXsum` and the like are not recorded: asked for, they are passed
 * over.
 */
const RFC3230_NAMES: Record<string, DigestName> = {
  adler32: 'adler32',
  md5: 'md5',
  'sha-256': 'sha256',
  sha256: 'sha256',
  'sha-512': 'sha512',
  sha512: 'sha512',
};
/**
 * The names `Digest` gives them, lowercase. davix (under gfal2) finds a digest by the name it asked for,
 * whatever its case: SHA-256 and SHA-512 go under both of their names, the registered one first.
 */
const DIGEST_FIELD_NAMES: Record<DigestName, string[]> = {
  adler32: ['adler32'],
  md5: ['md5'],
  sha256: ['sha-256', 'sha256'],
  sha512: ['sha-512', 'sha512'],
};
/** Of a `Want-Digest` header, no more than this much is read, */
const WANT_DIGEST_MAX_CHARS = 1024;
/** and no more members than this. */
const WANT_DIGEST_MAX_MEMBERS = 16;
/** An RFC 9110 qvalue: 0 to 1 with at most three decimals. */
const QVALUE = /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/;

/**
 * The digests a `Want-Digest` header (RFC 3230) asks for, most wanted first (by q-value, then in the header's
 * order). Algorithms we do not record, those refused with `q=0`, and members that do not parse (a bad q-value)
 * are left out; nothing in the header makes this throw. Only its first 1 KiB and 16 members are read.
 */
export function wantedDigests(header: string | string[] | undefined): DigestName[] {
  if (header === undefined) return [];
  const text = (Array.isArray(header) ? header.join(',') : header).slice(0, WANT_DIGEST_MAX_CHARS);
  const wanted: { name: DigestName; q: number }[] = [];
  const seen = new Set<DigestName>();
  for (const member of text.split(',').slice(0, WANT_DIGEST_MAX_MEMBERS)) {
    const [token = '', ...parameters] = member.split(';');
    const name = RFC3230_NAMES[token.trim().toLowerCase()];
    if (!name || seen.has(name)) continue;
    seen.add(name); // the first mention counts
    let q = 1;
    for (const parameter of parameters) {
      const [key = '', value = ''] = parameter.split('=', 2).map((part) => part.trim());
      if (key.toLowerCase() !== 'q') continue;
      q = QVALUE.test(value) ? Number(value) : Number.NaN;
    }
    if (q > 0) wanted.push({ name, q });
  }
  return wanted.sort((a, b) => b.q - a.q).map((w) => w.name); // a stable sort: ties keep the header's order
}

/** Hex to what `Digest` carries: ADLER32 as its 8 hex digits, the others in base64 (RFC 3230, RFC 5843). */
function digestValue(name: DigestName, hex: string): string {
  return name === 'adler32' ? hex.toLowerCase() : Buffer.from(hex, 'hex').toString('base64');
}

/**
 * The `Digest` header (RFC 3230) for the `wanted` digests that `digests` holds (lowercase hex, null where not
 * recorded), in the order wanted: `adler32=0a1b2c3d,md5=base64,sha-256=base64,sha256=base64`. Members are
 * joined by a bare comma, as davix splits them; null when none is held.
 */
export function digestHeader(
  wanted: readonly DigestName[],
  digests: Partial<Record<DigestName, string | null>>,
): string | null {
  const members = [...new Set(wanted)].flatMap((name) => {
    const hex = digests[name];
    if (!hex) return [];
    const value = digestValue(name, hex);
    return DIGEST_FIELD_NAMES[name].map((field) => `${field}=${value}`);
  });
  return members.length > 0 ? members.join(',') : null;
}

const DIGEST_HEX_LENGTHS: Record<DigestName, number> = { adler32: 8, md5: 32, sha256: 64, sha512: 128 };

/**
 * The digests another server gave for the bytes it sends or holds (the other end of a third-party copy):
 * RFC 9530 `Repr-Digest` / `Content-Digest`, and RFC 3230 `Digest` (ADLER32 in hex, the others in base64).
 * Members that do not parse, or algorithms we do not compute, are passed over: a digest we cannot read is
 * one we cannot check, not an error of the copy.
 */
export function digestsGiven(headers: Record<string, string | string[] | undefined>): ExpectedDigests {
  let given: ExpectedDigests = {};
  try {
    given = expectedDigests({
      'repr-digest': headers['repr-digest'],
      'content-digest': headers['content-digest'],
    });
  } catch {
    given = {};
  }
  const digest = headers.digest;
  for (const member of (typeof digest === 'string' ? digest : '').split(',')) {
    const at = member.indexOf('=');
    const name = RFC3230_NAMES[member.slice(0, at).trim().toLowerCase()];
    if (at < 0 || !name || given[name]) continue;
    const value = member.slice(at + 1).trim();
    const hex = name === 'adler32' ? value.toLowerCase() : Buffer.from(value, 'base64').toString('hex');
    if (hex.length === DIGEST_HEX_LENGTHS[name] && /^[0-9a-f]+$/.test(hex)) given[name] = hex;
  }
  return given;
}
