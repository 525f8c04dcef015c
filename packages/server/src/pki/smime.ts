/**
 * S/MIME clear-signing (multipart/signed with a detached CMS SignedData, RFC 5751 and RFC 5652) of HEPiX image
 * lists, and verification of lists that users signed with `openssl smime -sign`, as `openssl smime -verify` does.
 *
 * Checked against OpenSSL 3.0 (`openssl smime` and `openssl cms`); the traps, each handled below:
 * - Line ends: `openssl smime -sign` signs the content in canonical text form (every line end CRLF) and writes
 *   that form into the message, but writes its own MIME lines (headers, boundaries, base64) with bare LF. The line
 *   break before a boundary belongs to the boundary (RFC 2046 5.1.1), so content ending in a newline lies in the
 *   message as "…}\r\n\n------BOUNDARY". On reading, OpenSSL drops that break, turns every line end (any run of
 *   CRs before an LF) into CRLF again and digests that: a list whose line ends a mail or git converted still
 *   verifies. Only `-binary` signs the raw bytes. OpenSSL reads lines in pieces of 1023 bytes, which is harmless
 *   for a minified list on one long line (checked with 500 KB) as long as it holds no bare CR.
 * - OpenSSL takes any line that starts with "--" + boundary as a delimiter (a prefix match, trailing text
 *   ignored): the same rule is used here, so both see the same parts, and signSmime picks a boundary that the
 *   content does not contain anywhere.
 * - The signed part carries no MIME headers (the list is the whole part, as EGI AppDB's are): OpenSSL signs the
 *   part as it lies, so nothing here looks for headers in it either.
 * - The signature covers the DER of the signed attributes with the SET OF tag (0x31), not the [0] IMPLICIT tag
 *   (0xa0) they carry inside SignerInfo (RFC 5652 5.4). OpenSSL re-encodes them before checking, so a signer that
 *   wrote them in non-DER order fails there; they are refused here for the same reason.
 * - For RSA, OpenSSL writes rsaEncryption as the signatureAlgorithm (the hash is the digestAlgorithm's) and
 *   accepts sha256WithRSAEncryption as well; `openssl smime` writes a NULL parameter for SHA-256, `openssl cms`
 *   none: both are accepted.
 * - `openssl smime -verify` checks the signer for the smimesign purpose even without -purpose: an
 *   extendedKeyUsage without emailProtection fails it, and OpenSSL does not take anyExtendedKeyUsage for it
 *   (smimeSigningProblem says which certificates fail). It refuses proxy certificates outright.
 * - `openssl smime -sign -nocerts` leaves the signer's certificate out: such a message cannot be checked here.
 * The certificate chain is not checked here: callers check the signer against their trust store.
 */
import { createHash, type KeyObject, randomBytes, sign, verify } from 'node:crypto';
import {
  type AlgorithmIdentifier,
  OID,
  type ParsedCertificate,
  parseCertificate,
  parsedName,
  readAlgorithm,
} from './certificate.ts';
import {
  bitIsSet,
  children,
  type DerNode,
  decodeDer,
  encodeContext,
  encodeExplicit,
  encodeInteger,
  encodeNull,
  encodeOctetString,
  encodeOid,
  encodeSequence,
  encodeSet,
  encodeTime,
  expectTag,
  readBitString,
  readInteger,
  readOctetString,
  readOid,
  readSmallInteger,
  readTime,
  sequence,
  Tag,
} from './der.ts';
import type { Credential } from './issue.ts';

/** Every refusal of signSmime, parseSmime, verifySmime: the message says what is wrong, for a human. */
export class SmimeError extends Error {
  override name = 'SmimeError';
}

const CMS = {
  data: '1.2.840.113549.1.7.1',
  signedData: '1.2.840.113549.1.7.2',
  contentType: '1.2.840.113549.1.9.3',
  messageDigest: '1.2.840.113549.1.9.4',
  signingTime: '1.2.840.113549.1.9.5',
  rsaEncryption: '1.2.840.113549.1.1.1',
  ecPublicKey: '1.2.840.10045.2.1',
} as const;

type Hash = 'sha256' | 'sha384' | 'sha512';

const DIGESTS: Record<string, Hash> = {
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};
const DIGEST_OID: Record<Hash, string> = {
  sha256: '2.16.840.1.101.3.4.2.1',
  sha384: '2.16.840.1.101.3.4.2.2',
  sha512: '2.16.840.1.101.3.4.2.3',
};
const DIGEST_LENGTH: Record<Hash, number> = { sha256: 32, sha384: 48, sha512: 64 };

/** Signature algorithms a SignerInfo may name: the key type they need, and the hash they imply (if any). */
const SIGNATURE_ALGORITHMS: Record<string, { key: 'rsa' | 'ec'; hash?: Hash; name: string }> = {
  [CMS.rsaEncryption]: { key: 'rsa', name: 'rsaEncryption' },
  '1.2.840.113549.1.1.11': { key: 'rsa', hash: 'sha256', name: 'sha256WithRSAEncryption' },
  '1.2.840.113549.1.1.12': { key: 'rsa', hash: 'sha384', name: 'sha384WithRSAEncryption' },
  '1.2.840.113549.1.1.13': { key: 'rsa', hash: 'sha512', name: 'sha512WithRSAEncryption' },
  // RFC 5753 7.1.3 names ecdsa-with-SHAx; some signers put the key's algorithm there instead, as for RSA
  [CMS.ecPublicKey]: { key: 'ec', name: 'id-ecPublicKey' },
  '1.2.840.10045.4.3.2': { key: 'ec', hash: 'sha256', name: 'ecdsa-with-SHA256' },
  '1.2.840.10045.4.3.3': { key: 'ec', hash: 'sha384', name: 'ecdsa-with-SHA384' },
  '1.2.840.10045.4.3.4': { key: 'ec', hash: 'sha512', name: 'ecdsa-with-SHA512' },
};

/** The largest message accepted: image lists are JSON documents of a few MB at most. */
const MAX_MESSAGE = 64 * 1024 * 1024;
/** The largest signature part (decoded): a SignedData with a few certificates is a few KB. */
const MAX_SIGNATURE = 256 * 1024;
/** OpenSSL's default verify depth plus one, as for TLS chains. */
const MAX_CERTIFICATES = 21;
const MAX_ATTRIBUTES = 32;
const MAX_DIGEST_ALGORITHMS = 8;
/** Header fields read before the body: a whole mail's Received: lines fit. */
const MAX_HEADERS = 256;
/** RFC 2046 5.1.1: a boundary is 1 to 70 characters. */
const MAX_BOUNDARY = 70;

const PREAMBLE = 'This is an S/MIME signed message';

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

// ---- line ends ----

/**
 * OpenSSL's canonical text form (SMIME_crlf_copy): every line end, with any CRs before its LF, becomes CRLF, and
 * CRs ending the last line are dropped.
 */
export function canonicalText(content: Buffer): Buffer {
  const text = content.toString('latin1');
  const canonical = text.replace(/\r*\n/g, '\r\n').replace(/\r+$/, '');
  return canonical === text ? content : Buffer.from(canonical, 'latin1');
}

function toBuffer(data: string | Buffer, what: string): Buffer {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  if (bytes.length > MAX_MESSAGE) {
    throw new SmimeError(`${what} of ${bytes.length} bytes is larger than the ${MAX_MESSAGE} accepted`);
  }
  return bytes;
}

// ---- signing ----

function digestAlgorithm(hash: Hash): Buffer {
  // RFC 5754 2: the SHA-2 AlgorithmIdentifiers are written without parameters (readers accept NULL too)
  return encodeSequence(encodeOid(DIGEST_OID[hash]));
}

function attribute(oid: string, value: Buffer): Buffer {
  return encodeSequence(encodeOid(oid), encodeSet(value));
}

/** base64 in lines of 64 characters, as openssl writes it. */
function base64Lines(der: Buffer): string {
  return (der.toString('base64').match(/.{1,64}/g) ?? []).join('\n');
}

/**
 * The whole S/MIME message, clear-signed: `content` with its line ends made CRLF (what is signed), then a detached
 * CMS SignedData (SHA-256; the signer's certificate and its chain included). Laid out as `openssl smime -sign`
 * lays it out, so every S/MIME reader that reads OpenSSL's messages reads these.
 */
export function signSmime(content: string | Buffer, signer: Credential): string {
  const bytes = toBuffer(content, 'the content');
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    // the message is returned as a string: only text survives that unchanged, and an image list is JSON
    throw new SmimeError('the content to sign is not UTF-8 text');
  }
  const canonical = canonicalText(bytes);
  if (canonical.length === 0) throw new SmimeError('the content to sign is empty');
  const cert = signer.cert;
  const keyType = signer.key.asymmetricKeyType;
  if (keyType !== 'rsa' && keyType !== 'ec') {
    throw new SmimeError(`cannot sign S/MIME with a ${keyType} key: only RSA and EC keys are supported`);
  }
  const certKeyType = cert.publicKey.asymmetricKeyType;
  if (certKeyType !== keyType) {
    throw new SmimeError(`the ${keyType} signing key does not belong to the ${certKeyType} certificate`);
  }
  const hash: Hash = 'sha256';

  // RFC 5652 5.3 and 11: contentType and messageDigest are required once content is signed through attributes
  const attributes = [
    attribute(CMS.contentType, encodeOid(CMS.data)),
    attribute(CMS.signingTime, encodeTime(new Date())),
    attribute(CMS.messageDigest, encodeOctetString(createHash(hash).update(canonical).digest())),
  ];
  // RFC 5652 5.4: the signature is over the DER SET OF (tag 0x31); SignerInfo carries it as [0] IMPLICIT
  const signedAttributes = encodeSet(...attributes);
  const signature = sign(hash, signedAttributes, signer.key);
  if (!verify(hash, signedAttributes, cert.publicKey, signature)) {
    throw new SmimeError(`the signing key does not belong to the certificate ${cert.subject.oneline}`);
  }
  // openssl writes rsaEncryption (NULL parameters) for RSA; RFC 5753 7.1.3: ecdsa-with-SHA256, no parameters
  const signatureAlgorithm =
    keyType === 'rsa'
      ? encodeSequence(encodeOid(CMS.rsaEncryption), encodeNull())
      : encodeSequence(encodeOid('1.2.840.10045.4.3.2'));

  const signerInfo = encodeSequence(
    encodeInteger(1), // RFC 5652 5.3: version 1 with issuerAndSerialNumber
    encodeSequence(cert.issuer.der, encodeInteger(cert.serialNumber)),
    digestAlgorithm(hash),
    encodeContext(0, decodeDer(signedAttributes).value),
    signatureAlgorithm,
    encodeOctetString(signature),
  );
  const certificates = [cert, ...signer.chain.filter((c) => !c.der.equals(cert.der))].map((c) => c.der);
  const signedData = encodeSequence(
    encodeInteger(1), // RFC 5652 5.1: version 1, no attribute certificates, id-data, v1 SignerInfos
    encodeSet(digestAlgorithm(hash)),
    encodeSequence(encodeOid(CMS.data)), // detached: no eContent
    // CertificateSet is a SET OF: DER order (X.690 11.6), which readers do not rely on
    encodeContext(0, Buffer.concat(certificates.sort(Buffer.compare))),
    encodeSet(signerInfo),
  );
  const contentInfo = encodeSequence(encodeOid(CMS.signedData), encodeExplicit(0, signedData));

  let boundary: string;
  do boundary = `----${randomBytes(16).toString('hex').toUpperCase()}`;
  while (text.includes(boundary));

  // the MIME lines end in LF and the content in CRLF, exactly as openssl writes them (see the header comment)
  const head = [
    'MIME-Version: 1.0',
    `Content-Type: multipart/signed; protocol="application/x-pkcs7-signature"; micalg="sha-256"; boundary="${boundary}"`,
    '',
    PREAMBLE,
    '',
    `--${boundary}`,
    '',
  ].join('\n');
  const tail = [
    '',
    `--${boundary}`,
    'Content-Type: application/x-pkcs7-signature; name="smime.p7s"',
    'Content-Transfer-Encoding: base64',
    'Content-Disposition: attachment; filename="smime.p7s"',
    '',
    base64Lines(contentInfo),
    '',
    `--${boundary}--`,
    '',
    '',
  ].join('\n');
  return `${head}${utf8.decode(canonical)}${tail}`;
}

// ---- MIME ----

type Headers = Map<string, string>;

/** Header lines from `start` to the first empty line (LF or CRLF; folded lines unfolded); returns where the body starts. */
function readHeaders(text: string, start: number, what: string): { headers: Headers; body: number } {
  const headers: Headers = new Map();
  let pos = start;
  let last: string | undefined;
  for (;;) {
    const eol = text.indexOf('\n', pos);
    if (eol < 0) throw new SmimeError(`${what}: the headers do not end with an empty line`);
    const line = text.slice(pos, eol).replace(/\r$/, '');
    const firstLine = pos === start;
    pos = eol + 1;
    if (line === '') return { headers, body: pos };
    if (/^[ \t]/.test(line)) {
      if (firstLine) {
        throw new SmimeError(`${what}: a header continuation line comes first`);
      }
      if (last) headers.set(last, `${headers.get(last)} ${line.trim()}`);
      continue;
    }
    const match = /^([!-9;-~]+):[ \t]*(.*)$/.exec(line);
    if (!match) throw new SmimeError(`${what}: "${line.slice(0, 60)}" is not a MIME header line`);
    last = (match[1] as string).toLowerCase();
    if (headers.has(last)) {
      // two Content-Types could be read either way; a mail's repeated Received: lines are harmless
      if (last.startsWith('content-') || last === 'mime-version') {
        throw new SmimeError(`${what}: the header ${match[1]} appears twice`);
      }
      last = undefined;
      continue;
    }
    headers.set(last, (match[2] as string).trim());
    if (headers.size > MAX_HEADERS) throw new SmimeError(`${what}: more than ${MAX_HEADERS} headers`);
  }
}

/** A Content-Type value: `type/subtype` lowercased, and its parameters (names lowercased, quotes removed). */
function parseContentType(value: string, what: string): { type: string; params: Map<string, string> } {
  const match = /^\s*([!#-'*+.0-9A-Z^-~-]+\/[!#-'*+.0-9A-Z^-~-]+)\s*/i.exec(value);
  if (!match) throw new SmimeError(`${what}: Content-Type "${value.slice(0, 80)}" is malformed`);
  const params = new Map<string, string>();
  let rest = value.slice(match[0].length);
  while (rest.length) {
    const param = /^;\s*([!#-'*+.0-9A-Z^-~-]+)\s*=\s*("((?:[^"\\]|\\.)*)"|[!#-'*+.0-9A-Z^-~-]+)\s*/i.exec(
      rest,
    );
    if (!param) {
      if (/^;\s*$/.test(rest)) break;
      throw new SmimeError(`${what}: Content-Type parameters "${rest.slice(0, 80)}" are malformed`);
    }
    const name = (param[1] as string).toLowerCase();
    const quoted = param[3];
    params.set(name, quoted === undefined ? (param[2] as string) : quoted.replace(/\\(.)/g, '$1'));
    rest = rest.slice(param[0].length);
  }
  return { type: (match[1] as string).toLowerCase(), params };
}

const SIGNATURE_TYPES = new Set(['application/pkcs7-signature', 'application/x-pkcs7-signature']);

/** The next line (from `from`) that starts with `--boundary`, OpenSSL's rule: where it starts, ends, and whether it closes. */
function nextDelimiter(
  text: string,
  from: number,
  delimiter: string,
): { start: number; next: number; close: boolean } | undefined {
  let pos = from;
  for (;;) {
    const at = text.indexOf(delimiter, pos);
    if (at < 0) return undefined;
    if (at === 0 || text[at - 1] === '\n') {
      const eol = text.indexOf('\n', at);
      const close = text.startsWith('--', at + delimiter.length);
      return { start: at, next: eol < 0 ? text.length : eol + 1, close };
    }
    pos = at + 1;
  }
}

/**
 * Splits a clear-signed S/MIME message (multipart/signed, protocol application/(x-)pkcs7-signature): the signed
 * content exactly as it lies in the message (the line break before the next boundary belongs to the boundary) and
 * the signature part's DER. Headers may end in LF or CRLF, the boundary may be quoted or not, a preamble is skipped.
 */
export function parseSmime(message: string | Buffer): { content: Buffer; signature: Buffer } {
  const bytes = toBuffer(message, 'the message');
  // latin1 maps each byte to one character, so offsets in the text are offsets in the bytes
  const text = bytes.toString('latin1');
  const { headers, body } = readHeaders(text, 0, 'the S/MIME message');
  const contentType = headers.get('content-type');
  if (contentType === undefined)
    throw new SmimeError('the message has no Content-Type header: it is not S/MIME');
  const { type, params } = parseContentType(contentType, 'the S/MIME message');
  if (type === 'application/pkcs7-mime' || type === 'application/x-pkcs7-mime') {
    throw new SmimeError(
      `the message is ${type} (opaque-signed or encrypted): only clear-signed multipart/signed messages are accepted (openssl smime -sign without -nodetach)`,
    );
  }
  if (type !== 'multipart/signed') {
    throw new SmimeError(`the message is ${type}, not a clear-signed multipart/signed S/MIME message`);
  }
  const protocol = params.get('protocol')?.toLowerCase();
  if (!protocol || !SIGNATURE_TYPES.has(protocol)) {
    throw new SmimeError(
      `multipart/signed with protocol "${params.get('protocol') ?? ''}": only application/pkcs7-signature (S/MIME) is accepted`,
    );
  }
  const boundary = params.get('boundary');
  if (!boundary) throw new SmimeError('multipart/signed without a boundary parameter');
  if (boundary.length > MAX_BOUNDARY || /[^ -~]|\s$/.test(boundary)) {
    throw new SmimeError('the multipart boundary is malformed (RFC 2046: 1 to 70 printable characters)');
  }
  const delimiter = `--${boundary}`;
  const first = nextDelimiter(text, body, delimiter);
  if (!first || first.close) throw new SmimeError('the message has no part: its boundary is not found');
  const second = nextDelimiter(text, first.next, delimiter);
  if (!second || second.close)
    throw new SmimeError('the message has the signed content but no signature part');
  // RFC 2046 5.1.1: the CRLF (here also a bare LF) before a boundary delimiter belongs to the delimiter
  let contentEnd = second.start;
  if (contentEnd > first.next && text[contentEnd - 1] === '\n') contentEnd--;
  if (contentEnd > first.next && text[contentEnd - 1] === '\r') contentEnd--;
  const content = bytes.subarray(first.next, Math.max(first.next, contentEnd));
  if (content.length === 0) throw new SmimeError('the signed content is empty');

  const third = nextDelimiter(text, second.next, delimiter);
  if (!third) throw new SmimeError('the message ends without its closing boundary');
  if (!third.close) throw new SmimeError('multipart/signed has more than two parts');
  const part = readHeaders(text.slice(0, third.start), second.next, 'the signature part');
  const partType = part.headers.get('content-type');
  const signatureType =
    partType === undefined ? undefined : parseContentType(partType, 'the signature part').type;
  if (!signatureType || !SIGNATURE_TYPES.has(signatureType)) {
    throw new SmimeError(`the second part is ${signatureType ?? 'untyped'}, not application/pkcs7-signature`);
  }
  const encoding = part.headers.get('content-transfer-encoding')?.toLowerCase();
  if (encoding !== 'base64') {
    throw new SmimeError(
      `the signature part is not base64 encoded (Content-Transfer-Encoding: ${encoding ?? 'none'})`,
    );
  }
  const base64 = text.slice(part.body, third.start).replace(/[ \t\r\n]+/g, '');
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(base64)) {
    throw new SmimeError('the signature part is not valid base64');
  }
  if (base64.length === 0) throw new SmimeError('the signature part is empty');
  if ((base64.length / 4) * 3 > MAX_SIGNATURE + 3) {
    throw new SmimeError(`the signature part is larger than the ${MAX_SIGNATURE} bytes accepted`);
  }
  return { content, signature: Buffer.from(base64, 'base64') };
}

// ---- CMS ----

type SignerIdentifier =
  | { kind: 'issuerAndSerialNumber'; issuerKey: string; issuer: string; serial: bigint }
  | { kind: 'subjectKeyIdentifier'; keyId: Buffer };

type SignerInfo = {
  sid: SignerIdentifier;
  hash: Hash;
  /** the signed attributes as the signature covers them: re-tagged SET OF */
  signedAttributes: Buffer;
  contentType: string;
  messageDigest: Buffer;
  signingTime?: Date;
  signatureAlgorithm: AlgorithmIdentifier;
  signature: Buffer;
};

type SignedData = { certificates: ParsedCertificate[]; signer: SignerInfo };

function digestOf(algorithm: AlgorithmIdentifier, what: string): Hash {
  const hash = DIGESTS[algorithm.oid];
  if (!hash)
    throw new SmimeError(`${what} ${algorithm.oid} is not accepted: SHA-256, SHA-384 or SHA-512 only`);
  // RFC 5754 2: absent parameters, or NULL as older writers (openssl smime) put
  if (algorithm.parameters && !algorithm.parameters.equals(encodeNull())) {
    throw new SmimeError(`${what} ${hash} has unexpected parameters`);
  }
  return hash;
}

/** The one value of a single-valued attribute (RFC 5652 11.1 to 11.3). */
function singleValue(values: DerNode[], name: string): DerNode {
  const [value, extra] = values;
  if (!value || extra) throw new SmimeError(`the ${name} attribute must have exactly one value`);
  return value;
}

function parseSignedAttributes(
  node: DerNode,
): Pick<SignerInfo, 'contentType' | 'messageDigest' | 'signingTime'> {
  const attributes = children(node);
  if (attributes.length === 0) throw new SmimeError('the signed attributes are empty');
  if (attributes.length > MAX_ATTRIBUTES) throw new SmimeError('too many signed attributes');
  // X.690 11.6: DER orders a SET OF by encoding; OpenSSL re-encodes before checking, so any other order fails there
  for (let i = 1; i < attributes.length; i++) {
    if (Buffer.compare((attributes[i - 1] as DerNode).raw, (attributes[i] as DerNode).raw) > 0) {
      throw new SmimeError('the signed attributes are not in DER order');
    }
  }
  const seen = new Set<string>();
  let contentType: string | undefined;
  let messageDigest: Buffer | undefined;
  let signingTime: Date | undefined;
  for (const attr of attributes) {
    const [typeNode, valuesNode, extra] = sequence(attr, 'Attribute');
    if (!typeNode || !valuesNode || extra) throw new SmimeError('a signed attribute is malformed');
    const type = readOid(typeNode);
    if (seen.has(type)) throw new SmimeError(`the signed attribute ${type} appears twice`);
    seen.add(type);
    const values = children(expectTag(valuesNode, Tag.SET, 'attrValues'));
    if (values.length === 0) throw new SmimeError(`the signed attribute ${type} has no value`);
    if (type === CMS.contentType) contentType = readOid(singleValue(values, 'contentType'));
    else if (type === CMS.messageDigest)
      messageDigest = readOctetString(singleValue(values, 'messageDigest'));
    else if (type === CMS.signingTime) signingTime = readTime(singleValue(values, 'signingTime'));
  }
  // RFC 5652 5.3: with signed attributes, content-type and message-digest are both required
  if (contentType === undefined) throw new SmimeError('the signed attributes have no contentType');
  if (messageDigest === undefined) throw new SmimeError('the signed attributes have no messageDigest');
  return { contentType, messageDigest, ...(signingTime ? { signingTime } : {}) };
}

function parseSignerInfo(node: DerNode): SignerInfo {
  const parts = sequence(node, 'SignerInfo');
  const version = readSmallInteger(expectTag(parts[0], Tag.INTEGER, 'SignerInfo version'));
  const sidNode = parts[1];
  let sid: SignerIdentifier;
  // RFC 5652 5.3: version 1 with issuerAndSerialNumber, 3 with subjectKeyIdentifier
  if (version === 1 && sidNode?.tag === Tag.SEQUENCE) {
    const [issuerNode, serialNode, extra] = sequence(sidNode, 'IssuerAndSerialNumber');
    if (!issuerNode || !serialNode || extra) throw new SmimeError('IssuerAndSerialNumber is malformed');
    const issuer = parsedName(issuerNode);
    sid = {
      kind: 'issuerAndSerialNumber',
      issuerKey: issuer.key,
      issuer: issuer.oneline,
      serial: readInteger(serialNode),
    };
  } else if (version === 3 && sidNode?.tag === 0x80) {
    if (sidNode.value.length === 0) throw new SmimeError('the signer subjectKeyIdentifier is empty');
    sid = { kind: 'subjectKeyIdentifier', keyId: Buffer.from(sidNode.value) };
  } else {
    throw new SmimeError(`SignerInfo version ${version} with this signer identifier is not accepted`);
  }
  const hash = digestOf(readAlgorithm(parts[2], 'digestAlgorithm'), 'the digest algorithm');
  const attributesNode = parts[3];
  if (attributesNode?.tag !== 0xa0) {
    throw new SmimeError(
      'the SignerInfo has no signed attributes: a signature straight over the content is not accepted',
    );
  }
  const attributes = parseSignedAttributes(attributesNode);
  const signatureAlgorithm = readAlgorithm(parts[4], 'signatureAlgorithm');
  const signature = Buffer.from(readOctetString(expectTag(parts[5], Tag.OCTET_STRING, 'signature')));
  // unsignedAttrs [1] (a countersignature, a timestamp) are allowed and not used
  if (parts.length > 7 || (parts[6] && parts[6].tag !== 0xa1))
    throw new SmimeError('the SignerInfo is malformed');
  // RFC 5652 5.4: the signature covers the attributes' DER with the EXPLICIT SET OF tag
  const signedAttributes = Buffer.from(attributesNode.raw);
  signedAttributes[0] = Tag.SET;
  return { sid, hash, signedAttributes, ...attributes, signatureAlgorithm, signature };
}

function parseSignedData(der: Buffer): SignedData {
  const [typeNode, contentNode, extra] = sequence(decodeDer(der), 'ContentInfo');
  if (!typeNode || !contentNode || extra) throw new SmimeError('the signature is not a CMS ContentInfo');
  const type = readOid(typeNode);
  if (type !== CMS.signedData) throw new SmimeError(`the signature is CMS ${type}, not SignedData`);
  const [signedDataNode, more] = children(expectTag(contentNode, 0xa0, 'ContentInfo content [0]'));
  if (!signedDataNode || more) throw new SmimeError('the ContentInfo content is malformed');
  const parts = sequence(signedDataNode, 'SignedData');
  let i = 0;
  const version = readSmallInteger(expectTag(parts[i++], Tag.INTEGER, 'SignedData version'));
  // RFC 5652 5.1: 1 (issuerAndSerialNumber) or 3 (subjectKeyIdentifier); 4 and 5 mean attribute or other certificates
  if (version !== 1 && version !== 3) throw new SmimeError(`SignedData version ${version} is not accepted`);
  const digestNodes = children(expectTag(parts[i++], Tag.SET, 'digestAlgorithms'));
  if (digestNodes.length > MAX_DIGEST_ALGORITHMS) throw new SmimeError('too many digest algorithms');
  const [eContentTypeNode, eContent, moreEncap] = sequence(parts[i++], 'EncapsulatedContentInfo');
  if (!eContentTypeNode || moreEncap) throw new SmimeError('the EncapsulatedContentInfo is malformed');
  if (readOid(eContentTypeNode) !== CMS.data) throw new SmimeError('the signed content type is not id-data');
  if (eContent) {
    throw new SmimeError(
      'the signature holds the content itself: a clear-signed message needs a detached signature',
    );
  }
  const certificates: ParsedCertificate[] = [];
  if (parts[i]?.tag === 0xa0) {
    const certNodes = children(parts[i++] as DerNode);
    if (certNodes.length > MAX_CERTIFICATES) {
      throw new SmimeError(
        `the signature carries ${certNodes.length} certificates, more than ${MAX_CERTIFICATES}`,
      );
    }
    for (const certNode of certNodes) {
      // CertificateChoices: only a plain Certificate; the tagged forms are attribute and other certificates
      if (certNode.tag !== Tag.SEQUENCE)
        throw new SmimeError('the signature carries a certificate that is not X.509');
      try {
        certificates.push(parseCertificate(certNode.raw));
      } catch (err) {
        throw new SmimeError(`the signature carries a bad certificate: ${(err as Error).message}`);
      }
    }
  }
  if (parts[i]?.tag === 0xa1) i++; // crls: revocation is the caller's business, with its own CRLs
  const signerNodes = children(expectTag(parts[i++], Tag.SET, 'signerInfos'));
  if (i !== parts.length) throw new SmimeError('the SignedData has unexpected fields');
  if (signerNodes.length !== 1) {
    throw new SmimeError(`the signature has ${signerNodes.length} signers: exactly one is accepted`);
  }
  const signer = parseSignerInfo(signerNodes[0] as DerNode);
  const listed = digestNodes.map((node) => readAlgorithm(node, 'digestAlgorithm').oid);
  if (!listed.includes(DIGEST_OID[signer.hash])) {
    throw new SmimeError(
      `the signer's digest ${signer.hash} is not among the SignedData's digest algorithms`,
    );
  }
  return { certificates, signer };
}

function findSigner(sid: SignerIdentifier, certificates: ParsedCertificate[]): ParsedCertificate {
  const matches =
    sid.kind === 'issuerAndSerialNumber'
      ? certificates.filter((c) => c.issuer.key === sid.issuerKey && c.serialNumber === sid.serial)
      : certificates.filter((c) => c.subjectKeyIdentifier?.equals(sid.keyId));
  const unique = matches.filter((c, index) => matches.findIndex((m) => m.der.equals(c.der)) === index);
  const who =
    sid.kind === 'issuerAndSerialNumber'
      ? `serial ${sid.serial.toString(16)} of ${sid.issuer}`
      : `subjectKeyIdentifier ${sid.keyId.toString('hex')}`;
  if (unique.length === 0) {
    throw new SmimeError(
      `the signer's certificate (${who}) is not in the message: sign without -nocerts, with -signer your certificate`,
    );
  }
  if (unique.length > 1)
    throw new SmimeError(`several certificates in the message match the signer (${who})`);
  return unique[0] as ParsedCertificate;
}

function checkSignature(info: SignerInfo, cert: ParsedCertificate): void {
  const algorithm = SIGNATURE_ALGORITHMS[info.signatureAlgorithm.oid];
  if (!algorithm) {
    throw new SmimeError(
      `signature algorithm ${info.signatureAlgorithm.oid} is not accepted: RSA PKCS#1 v1.5 or ECDSA only`,
    );
  }
  const params = info.signatureAlgorithm.parameters;
  // RFC 4055 5: NULL (or absent) for the RSA ones; RFC 5758 3.2: absent for ECDSA
  if (params && !(algorithm.key === 'rsa' && params.equals(encodeNull()))) {
    throw new SmimeError(`signature algorithm ${algorithm.name} has unexpected parameters`);
  }
  if (algorithm.hash && algorithm.hash !== info.hash) {
    throw new SmimeError(
      `signature algorithm ${algorithm.name} does not match the digest algorithm ${info.hash}`,
    );
  }
  const key: KeyObject = cert.publicKey;
  if (key.asymmetricKeyType !== algorithm.key) {
    throw new SmimeError(
      `signature algorithm ${algorithm.name} needs an ${algorithm.key.toUpperCase()} key; the signer's is ${key.asymmetricKeyType}`,
    );
  }
  let ok: boolean;
  try {
    // PKCS#1 v1.5 padding is node's default for RSA keys; ECDSA signatures are DER (RFC 5753 7.2)
    ok = verify(info.hash, info.signedAttributes, key, info.signature);
  } catch {
    ok = false;
  }
  if (!ok) throw new SmimeError(`the signature does not verify with the key of ${cert.subject.oneline}`);
}

/**
 * Verifies a clear-signed S/MIME message as `openssl smime -verify -noverify` would: one signer, SHA-2, signed
 * attributes whose messageDigest matches the content in canonical text form (CRLF), or its raw bytes (-binary).
 * Returns the bytes the digest covers (so CRLF line ends for the usual text signature), the signer's certificate
 * and every certificate the message carries. The chain is NOT checked: the caller checks `signer` and
 * `certificates` against its trust store.
 */
export function verifySmime(message: string | Buffer): {
  content: Buffer;
  signer: ParsedCertificate;
  certificates: ParsedCertificate[];
  signingTime?: Date;
} {
  const { content, signature } = parseSmime(message);
  let signedData: SignedData;
  try {
    signedData = parseSignedData(signature);
  } catch (err) {
    if (err instanceof SmimeError) throw err;
    const message = (err as Error).message;
    // openssl writes DER; some mail clients write BER with indefinite lengths, which a strict reader refuses
    const hint = /indefinite/.test(message) ? ' (BER, not DER: sign with openssl smime)' : '';
    throw new SmimeError(`the signature is not a valid CMS SignedData: ${message}${hint}`);
  }
  const info = signedData.signer;
  if (info.contentType !== CMS.data) throw new SmimeError('the signed contentType attribute is not id-data');
  if (info.messageDigest.length !== DIGEST_LENGTH[info.hash]) {
    throw new SmimeError(
      `the messageDigest is ${info.messageDigest.length} bytes, not a ${info.hash} digest`,
    );
  }
  const signer = findSigner(info.sid, signedData.certificates);
  const canonical = canonicalText(content);
  let signed: Buffer | undefined;
  if (createHash(info.hash).update(canonical).digest().equals(info.messageDigest)) signed = canonical;
  else if (createHash(info.hash).update(content).digest().equals(info.messageDigest)) signed = content;
  if (!signed) throw new SmimeError('the content does not match the signed digest: the message was altered');
  checkSignature(info, signer);
  return {
    content: Buffer.from(signed),
    signer,
    certificates: signedData.certificates,
    ...(info.signingTime ? { signingTime: info.signingTime } : {}),
  };
}

// ---- signer certificates ----

/** Netscape cert type bits (OpenSSL's NS_SSL_CLIENT and NS_SMIME). */
const NS_SSL_CLIENT = 0;
const NS_SMIME = 2;

function isProxy(cert: ParsedCertificate): boolean {
  if (cert.proxyCertInfo) return true; // RFC 3820 or the GSI-3 draft OID
  // GT2 legacy proxies are known by name alone: the last RDN is exactly CN=proxy or CN=limited proxy
  const last = cert.subject.rdns[cert.subject.rdns.length - 1];
  return last?.length === 1 && last[0]?.type === 'CN' && ['proxy', 'limited proxy'].includes(last[0].value);
}

/**
 * Why `openssl smime -verify` (its default smimesign purpose, OpenSSL's check_purpose_smime_sign) would refuse
 * `cert` as the signer, or undefined if it would not. The chain and the dates are not looked at.
 */
export function smimeSigningProblem(cert: ParsedCertificate): string | undefined {
  const name = cert.subject.oneline;
  if (isProxy(cert)) {
    return `${name} is a grid proxy certificate: list consumers trust end-entity DNs, so a proxy cannot sign an image list (sign with your user certificate and key)`;
  }
  // OpenSSL's xku_reject(x, XKU_SMIME): anyExtendedKeyUsage does not count for it
  if (cert.extKeyUsage && !cert.extKeyUsage.includes(OID.emailProtection)) {
    return `${name} cannot sign S/MIME: its extendedKeyUsage lacks emailProtection`;
  }
  if (cert.keyUsage && !cert.keyUsage.has('digitalSignature') && !cert.keyUsage.has('nonRepudiation')) {
    return `${name} cannot sign S/MIME: its keyUsage has neither digitalSignature nor nonRepudiation`;
  }
  const nsCertType = cert.extensions.find((ext) => ext.oid === OID.netscapeCertType);
  if (nsCertType) {
    let bits: ReturnType<typeof readBitString>;
    try {
      bits = readBitString(decodeDer(nsCertType.value));
    } catch {
      return `${name} has a malformed Netscape certificate type`;
    }
    // OpenSSL also takes SSL client for S/MIME here, a workaround for old certificates
    if (!bitIsSet(bits, NS_SMIME) && !bitIsSet(bits, NS_SSL_CLIENT)) {
      return `${name} cannot sign S/MIME: its Netscape certificate type allows neither S/MIME nor SSL client`;
    }
  }
  return undefined;
}
