// Certificate and CRL parsing: node:crypto's X509Certificate for sanity and signatures, our DER reader for the rest.
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import {
  bitIsSet,
  children,
  type DerNode,
  decodeDer,
  expectTag,
  readBitString,
  readBoolean,
  readInteger,
  readIntegerHex,
  readOctetString,
  readOid,
  readSmallInteger,
  readTime,
  sequence,
  Tag,
} from './der.ts';
import { formatOneline, nameKey, parseNameNode, type Rdn } from './names.ts';

export const OID = {
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  issuerAltName: '2.5.29.18',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  certificatePolicies: '2.5.29.32',
  nameConstraints: '2.5.29.30',
  crlNumber: '2.5.29.20',
  crlReason: '2.5.29.21',
  invalidityDate: '2.5.29.24',
  deltaCrlIndicator: '2.5.29.27',
  issuingDistributionPoint: '2.5.29.28',
  certificateIssuer: '2.5.29.29',
  proxyCertInfo: '1.3.6.1.5.5.7.1.14',
  proxyCertInfoDraft: '1.3.6.1.4.1.3536.1.222',
  pplInheritAll: '1.3.6.1.5.5.7.21.1',
  pplIndependent: '1.3.6.1.5.5.7.21.2',
  pplLimited: '1.3.6.1.4.1.3536.1.1.1.9',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  emailProtection: '1.3.6.1.5.5.7.3.4',
  anyExtendedKeyUsage: '2.5.29.37.0',
  netscapeCertType: '2.16.840.1.113730.1.1',
} as const;

export type Extension = { oid: string; critical: boolean; value: Buffer };

export type ParsedName = {
  rdns: Rdn[];
  /** the Name exactly as encoded in the certificate */
  der: Buffer;
  /** canonical comparison key (X509_NAME_cmp) */
  key: string;
  /** OpenSSL oneline form */
  oneline: string;
};

export const KEY_USAGE_BITS = [
  'digitalSignature',
  'nonRepudiation',
  'keyEncipherment',
  'dataEncipherment',
  'keyAgreement',
  'keyCertSign',
  'cRLSign',
  'encipherOnly',
  'decipherOnly',
] as const;
export type KeyUsageName = (typeof KEY_USAGE_BITS)[number];

export type BasicConstraints = { ca: boolean; pathLen?: number };

export type ProxyPolicyKind = 'inheritAll' | 'limited' | 'independent' | 'other';

export type ProxyCertInfo = {
  /** rfc3820: 1.3.6.1.5.5.7.1.14; draft: the GSI-3 1.3.6.1.4.1.3536.1.222 */
  kind: 'rfc3820' | 'draft';
  critical: boolean;
  /** pCPathLenConstraint: the most proxies allowed below this one */
  pathLen?: number;
  policyLanguage: string;
  policy?: Buffer;
};

export type AuthorityKeyIdentifier = { keyIdentifier?: Buffer; serial?: string };

export type SubjectAltName = {
  dns: string[];
  ip: string[];
  /** the iPAddress entries' octets (4 or 16), for name constraints */
  ipBytes: Buffer[];
  email: string[];
  uri: string[];
  other: number;
};

/** One GeneralSubtree of a nameConstraints extension (RFC 5280 4.2.1.10); `other` is a form we do not check. */
export type NameSubtree =
  | { kind: 'directoryName'; rdns: Rdn[] }
  | { kind: 'rfc822Name' | 'dNSName' | 'uniformResourceIdentifier'; value: string }
  | { kind: 'iPAddress'; address: Buffer; mask: Buffer }
  | { kind: 'other'; tag: number };

export type NameConstraints = { critical: boolean; permitted: NameSubtree[]; excluded: NameSubtree[] };

export type ParsedCertificate = {
  der: Buffer;
  x509: X509Certificate;
  publicKey: KeyObject;
  fingerprint256: string;
  version: number;
  /** lowercase hex, no leading zeros ("0" for zero) */
  serial: string;
  serialNumber: bigint;
  issuer: ParsedName;
  subject: ParsedName;
  /** issuer and subject names are canonically equal */
  selfIssued: boolean;
  notBefore: Date;
  notAfter: Date;
  signatureAlgorithm: string;
  signatureParameters?: Buffer;
  tbs: Buffer;
  signatureValue: Buffer;
  subjectPublicKeyInfo: Buffer;
  extensions: Extension[];
  basicConstraints?: BasicConstraints;
  keyUsage?: Set<KeyUsageName>;
  extKeyUsage?: string[];
  subjectKeyIdentifier?: Buffer;
  authorityKeyIdentifier?: AuthorityKeyIdentifier;
  subjectAltName?: SubjectAltName;
  proxyCertInfo?: ProxyCertInfo;
  nameConstraints?: NameConstraints;
};

export function parsedName(node: DerNode): ParsedName {
  const rdns = parseNameNode(node);
  return { rdns, der: Buffer.from(node.raw), key: nameKey(rdns), oneline: formatOneline(rdns) };
}

export type AlgorithmIdentifier = { oid: string; parameters?: Buffer };

export function readAlgorithm(node: DerNode | undefined, what: string): AlgorithmIdentifier {
  const [oidNode, params, extra] = sequence(node, what);
  if (!oidNode || extra) throw new Error(`${what}: malformed AlgorithmIdentifier`);
  const oid = readOid(oidNode);
  return params ? { oid, parameters: Buffer.from(params.raw) } : { oid };
}

function sameAlgorithm(a: AlgorithmIdentifier, b: AlgorithmIdentifier): boolean {
  // an absent and a NULL parameter are the same thing for RSA
  const norm = (p?: Buffer) => (p && !p.equals(Buffer.from([5, 0])) ? p.toString('hex') : '');
  return a.oid === b.oid && norm(a.parameters) === norm(b.parameters);
}

export function readExtensions(node: DerNode, what: string): Extension[] {
  const list = sequence(node, what).map((ext) => {
    const parts = sequence(ext, 'Extension');
    const oid = readOid(parts[0] as DerNode);
    let critical = false;
    let valueNode = parts[1];
    if (valueNode?.tag === Tag.BOOLEAN) {
      critical = readBoolean(valueNode);
      valueNode = parts[2];
      if (parts.length !== 3) throw new Error(`Extension ${oid} is malformed`);
    } else if (parts.length !== 2) {
      throw new Error(`Extension ${oid} is malformed`);
    }
    return { oid, critical, value: Buffer.from(readOctetString(valueNode as DerNode)) };
  });
  if (list.length === 0) throw new Error(`${what} is empty`);
  const seen = new Set<string>();
  for (const ext of list) {
    // RFC 5280 4.2: a certificate MUST NOT include more than one instance of an extension
    if (seen.has(ext.oid)) throw new Error(`duplicate extension ${ext.oid}`);
    seen.add(ext.oid);
  }
  return list;
}

function parseBasicConstraints(value: Buffer): BasicConstraints {
  const parts = sequence(decodeDer(value), 'BasicConstraints');
  let i = 0;
  let ca = false;
  if (parts[i]?.tag === Tag.BOOLEAN) ca = readBoolean(parts[i++] as DerNode);
  const out: BasicConstraints = { ca };
  if (parts[i]) {
    const pathLen = readSmallInteger(parts[i++] as DerNode);
    if (pathLen < 0) throw new Error('BasicConstraints pathLenConstraint is negative');
    out.pathLen = pathLen;
  }
  if (i !== parts.length) throw new Error('BasicConstraints is malformed');
  return out;
}

function parseKeyUsage(value: Buffer): Set<KeyUsageName> {
  const bits = readBitString(decodeDer(value));
  return new Set(KEY_USAGE_BITS.filter((_, i) => bitIsSet(bits, i)));
}

function parseExtKeyUsage(value: Buffer): string[] {
  const oids = sequence(decodeDer(value), 'ExtKeyUsage').map(readOid);
  if (oids.length === 0) throw new Error('ExtKeyUsage is empty');
  return oids;
}

function parseAuthorityKeyIdentifier(value: Buffer): AuthorityKeyIdentifier {
  const out: AuthorityKeyIdentifier = {};
  for (const part of sequence(decodeDer(value), 'AuthorityKeyIdentifier')) {
    if (part.tag === 0x80) out.keyIdentifier = Buffer.from(part.value);
    else if (part.tag === 0x82) out.serial = readIntegerHex({ ...part, tag: Tag.INTEGER });
    else if (part.tag !== 0xa1) throw new Error('AuthorityKeyIdentifier is malformed');
  }
  return out;
}

function formatIp(bytes: Buffer): string {
  if (bytes.length === 4) return [...bytes].join('.');
  if (bytes.length === 16) {
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
    return groups.join(':');
  }
  return bytes.toString('hex');
}

function parseSubjectAltName(value: Buffer): SubjectAltName {
  const out: SubjectAltName = { dns: [], ip: [], ipBytes: [], email: [], uri: [], other: 0 };
  for (const name of sequence(decodeDer(value), 'GeneralNames')) {
    if (name.tag === 0x82) out.dns.push(name.value.toString('latin1'));
    else if (name.tag === 0x87) {
      out.ip.push(formatIp(name.value));
      out.ipBytes.push(Buffer.from(name.value));
    } else if (name.tag === 0x81) out.email.push(name.value.toString('latin1'));
    else if (name.tag === 0x86) out.uri.push(name.value.toString('latin1'));
    else out.other++;
  }
  return out;
}

function parseSubtrees(node: DerNode): NameSubtree[] {
  return children(node).map((subtree) => {
    const [base, ...limits] = sequence(subtree, 'GeneralSubtree');
    if (!base) throw new Error('GeneralSubtree has no base');
    // RFC 5280 4.2.1.10: minimum is 0 and maximum absent; anything else is not a subtree we understand
    if (
      limits.some((limit) => limit.tag !== 0x80 || readSmallInteger({ ...limit, tag: Tag.INTEGER }) !== 0)
    ) {
      return { kind: 'other', tag: base.tag };
    }
    switch (base.tag) {
      case 0xa4: {
        const [name, more] = children(base);
        if (!name || more) throw new Error('directoryName is malformed');
        return { kind: 'directoryName', rdns: parseNameNode(name) };
      }
      case 0x81:
        return { kind: 'rfc822Name', value: base.value.toString('latin1') };
      case 0x82:
        return { kind: 'dNSName', value: base.value.toString('latin1') };
      case 0x86:
        return { kind: 'uniformResourceIdentifier', value: base.value.toString('latin1') };
      case 0x87: {
        if (base.value.length !== 8 && base.value.length !== 32)
          throw new Error('iPAddress subtree is malformed');
        const half = base.value.length / 2;
        return {
          kind: 'iPAddress',
          address: Buffer.from(base.value.subarray(0, half)),
          mask: Buffer.from(base.value.subarray(half)),
        };
      }
      default:
        return { kind: 'other', tag: base.tag };
    }
  });
}

/** NameConstraints ::= SEQUENCE { permittedSubtrees [0] OPTIONAL, excludedSubtrees [1] OPTIONAL } */
function parseNameConstraints(ext: Extension): NameConstraints {
  const out: NameConstraints = { critical: ext.critical, permitted: [], excluded: [] };
  const parts = sequence(decodeDer(ext.value), 'NameConstraints');
  if (parts.length === 0) throw new Error('NameConstraints is empty');
  for (const part of parts) {
    if (part.tag === 0xa0 && !out.permitted.length) out.permitted = parseSubtrees(part);
    else if (part.tag === 0xa1 && !out.excluded.length) out.excluded = parseSubtrees(part);
    else throw new Error('NameConstraints is malformed');
  }
  return out;
}

/**
 * RFC 3820: SEQUENCE { pCPathLenConstraint INTEGER OPTIONAL, proxyPolicy SEQUENCE { language OID, policy OCTET STRING OPTIONAL } }.
 * GSI-3 draft: SEQUENCE { proxyPolicy, pCPathLenConstraint [1] EXPLICIT INTEGER OPTIONAL }. Both layouts are accepted for either OID.
 */
export function parseProxyCertInfo(ext: Extension): ProxyCertInfo {
  const kind = ext.oid === OID.proxyCertInfo ? 'rfc3820' : 'draft';
  const parts = sequence(decodeDer(ext.value), 'ProxyCertInfo');
  let pathLenNode: DerNode | undefined;
  let policyNode: DerNode | undefined;
  if (parts[0]?.tag === Tag.INTEGER) {
    [pathLenNode, policyNode] = parts;
    if (parts.length !== 2) throw new Error('ProxyCertInfo is malformed');
  } else {
    policyNode = parts[0];
    if (parts[1]) {
      const [inner, extra] = children(expectTag(parts[1], 0xa1, 'ProxyCertInfo path length [1]'));
      if (extra) throw new Error('ProxyCertInfo path length is malformed');
      pathLenNode = inner;
    }
    if (parts.length > 2) throw new Error('ProxyCertInfo is malformed');
  }
  const [languageNode, policyValue, extra] = sequence(policyNode, 'ProxyPolicy');
  if (!languageNode || extra) throw new Error('ProxyPolicy is malformed');
  const out: ProxyCertInfo = { kind, critical: ext.critical, policyLanguage: readOid(languageNode) };
  if (policyValue) out.policy = Buffer.from(readOctetString(policyValue));
  if (pathLenNode) {
    const pathLen = readSmallInteger(pathLenNode);
    if (pathLen < 0) throw new Error('ProxyCertInfo path length is negative');
    out.pathLen = pathLen;
  }
  return out;
}

/** Policy kind of a proxy policy language OID. */
export function proxyPolicyKind(language: string): ProxyPolicyKind {
  if (language === OID.pplInheritAll) return 'inheritAll';
  if (language === OID.pplLimited) return 'limited';
  if (language === OID.pplIndependent) return 'independent';
  return 'other';
}

/** Parses a DER certificate; throws a descriptive Error if OpenSSL or the DER reader rejects it. */
export function parseCertificate(der: Buffer): ParsedCertificate {
  const bytes = Buffer.from(der);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(bytes);
  } catch (err) {
    throw new Error(`not a valid X.509 certificate: ${(err as Error).message}`);
  }
  try {
    return parseCertificateDer(bytes, x509);
  } catch (err) {
    throw new Error(`invalid certificate: ${(err as Error).message}`);
  }
}

function parseCertificateDer(bytes: Buffer, x509: X509Certificate): ParsedCertificate {
  const [tbsNode, sigAlgNode, sigNode, extra] = sequence(decodeDer(bytes), 'Certificate');
  if (!tbsNode || !sigAlgNode || !sigNode || extra) throw new Error('Certificate must have three parts');
  const signatureAlgorithm = readAlgorithm(sigAlgNode, 'signatureAlgorithm');
  const signature = readBitString(sigNode);
  if (signature.unusedBits) throw new Error('signatureValue has unused bits');

  const tbs = sequence(tbsNode, 'TBSCertificate');
  let i = 0;
  let version = 1;
  if (tbs[i]?.tag === 0xa0) {
    const [versionNode, more] = children(tbs[i++] as DerNode);
    if (!versionNode || more) throw new Error('version is malformed');
    version = readSmallInteger(versionNode) + 1;
    if (version < 1 || version > 3) throw new Error(`unknown certificate version ${version}`);
  }
  const serialNode = expectTag(tbs[i++], Tag.INTEGER, 'serialNumber');
  const innerAlgorithm = readAlgorithm(tbs[i++], 'signature');
  // RFC 5280 4.1.1.2: the outer and inner signature algorithms must match
  if (!sameAlgorithm(innerAlgorithm, signatureAlgorithm)) throw new Error('signature algorithm mismatch');
  const issuer = parsedName(tbs[i++] as DerNode);
  const [notBeforeNode, notAfterNode, moreTimes] = sequence(tbs[i++], 'Validity');
  if (!notBeforeNode || !notAfterNode || moreTimes) throw new Error('Validity is malformed');
  const subject = parsedName(tbs[i++] as DerNode);
  const spkiNode = expectTag(tbs[i++], Tag.SEQUENCE, 'subjectPublicKeyInfo');
  while (tbs[i] && (tbs[i]?.tag === 0x81 || tbs[i]?.tag === 0x82)) i++; // issuer/subject unique IDs
  let extensions: Extension[] = [];
  if (tbs[i]?.tag === 0xa3) {
    if (version !== 3) throw new Error('extensions in a certificate that is not version 3');
    const [extsNode, more] = children(tbs[i++] as DerNode);
    if (!extsNode || more) throw new Error('extensions are malformed');
    extensions = readExtensions(extsNode, 'Extensions');
  }
  if (i !== tbs.length) throw new Error('TBSCertificate has unexpected fields');

  const serialNumber = readInteger(serialNode);
  const cert: ParsedCertificate = {
    der: bytes,
    x509,
    publicKey: x509.publicKey,
    fingerprint256: x509.fingerprint256,
    version,
    serial: readIntegerHex(serialNode),
    serialNumber,
    issuer,
    subject,
    selfIssued: issuer.key === subject.key,
    notBefore: readTime(notBeforeNode),
    notAfter: readTime(notAfterNode),
    signatureAlgorithm: signatureAlgorithm.oid,
    tbs: Buffer.from(tbsNode.raw),
    signatureValue: Buffer.from(signature.bytes),
    subjectPublicKeyInfo: Buffer.from(spkiNode.raw),
    extensions,
  };
  if (signatureAlgorithm.parameters) cert.signatureParameters = signatureAlgorithm.parameters;
  for (const ext of extensions) {
    try {
      switch (ext.oid) {
        case OID.basicConstraints:
          cert.basicConstraints = parseBasicConstraints(ext.value);
          break;
        case OID.keyUsage:
          cert.keyUsage = parseKeyUsage(ext.value);
          break;
        case OID.extKeyUsage:
          cert.extKeyUsage = parseExtKeyUsage(ext.value);
          break;
        case OID.subjectKeyIdentifier:
          cert.subjectKeyIdentifier = Buffer.from(readOctetString(decodeDer(ext.value)));
          break;
        case OID.authorityKeyIdentifier:
          cert.authorityKeyIdentifier = parseAuthorityKeyIdentifier(ext.value);
          break;
        case OID.subjectAltName:
          cert.subjectAltName = parseSubjectAltName(ext.value);
          break;
        case OID.nameConstraints:
          cert.nameConstraints = parseNameConstraints(ext);
          break;
        case OID.proxyCertInfo:
        case OID.proxyCertInfoDraft:
          if (cert.proxyCertInfo) throw new Error('both RFC 3820 and draft proxyCertInfo are present');
          cert.proxyCertInfo = parseProxyCertInfo(ext);
          break;
      }
    } catch (err) {
      throw new Error(`extension ${ext.oid}: ${(err as Error).message}`);
    }
  }
  return cert;
}

// ---- CRLs ----

export type ParsedCrl = {
  der: Buffer;
  tbs: Buffer;
  signatureAlgorithm: AlgorithmIdentifier;
  signatureValue: Buffer;
  issuer: ParsedName;
  thisUpdate: Date;
  nextUpdate?: Date;
  /** revoked serials (lowercase hex) with their revocation dates */
  revoked: Map<string, Date>;
  extensions: Extension[];
  /** critical CRL or entry extensions this code does not understand */
  unsupportedCritical: string[];
};

const KNOWN_CRL_EXTENSIONS = new Set<string>([OID.authorityKeyIdentifier, OID.crlNumber]);
const KNOWN_ENTRY_EXTENSIONS = new Set<string>([OID.crlReason, OID.invalidityDate]);

/** CertificateList (RFC 5280 5.1). Signatures are checked by the verifier against the issuing CA. */
export function parseCrl(der: Buffer): ParsedCrl {
  const bytes = Buffer.from(der);
  const [tbsNode, sigAlgNode, sigNode, extra] = sequence(decodeDer(bytes), 'CertificateList');
  if (!tbsNode || !sigAlgNode || !sigNode || extra) throw new Error('CRL must have three parts');
  const signatureAlgorithm = readAlgorithm(sigAlgNode, 'CRL signatureAlgorithm');
  const signature = readBitString(sigNode);
  const tbs = sequence(tbsNode, 'TBSCertList');
  let i = 0;
  if (tbs[i]?.tag === Tag.INTEGER) {
    const version = readSmallInteger(tbs[i++] as DerNode);
    if (version !== 1) throw new Error(`unknown CRL version ${version + 1}`);
  }
  const inner = readAlgorithm(tbs[i++], 'CRL signature');
  if (!sameAlgorithm(inner, signatureAlgorithm)) throw new Error('CRL signature algorithm mismatch');
  const issuer = parsedName(tbs[i++] as DerNode);
  const thisUpdate = readTime(tbs[i++] as DerNode);
  let nextUpdate: Date | undefined;
  if (tbs[i]?.tag === Tag.UTC_TIME || tbs[i]?.tag === Tag.GENERALIZED_TIME)
    nextUpdate = readTime(tbs[i++] as DerNode);
  const revoked = new Map<string, Date>();
  const unsupportedCritical: string[] = [];
  if (tbs[i]?.tag === Tag.SEQUENCE) {
    for (const entry of sequence(tbs[i++], 'revokedCertificates')) {
      const [serialNode, dateNode, entryExts] = sequence(entry, 'revoked certificate');
      if (!serialNode || !dateNode) throw new Error('CRL entry is malformed');
      revoked.set(readIntegerHex(serialNode), readTime(dateNode));
      if (entryExts) {
        for (const ext of readExtensions(entryExts, 'crlEntryExtensions')) {
          if (ext.critical && !KNOWN_ENTRY_EXTENSIONS.has(ext.oid)) unsupportedCritical.push(ext.oid);
        }
      }
    }
  }
  let extensions: Extension[] = [];
  if (tbs[i]?.tag === 0xa0) {
    const [extsNode] = children(tbs[i++] as DerNode);
    extensions = readExtensions(extsNode as DerNode, 'crlExtensions');
    for (const ext of extensions) {
      if (ext.critical && !KNOWN_CRL_EXTENSIONS.has(ext.oid)) unsupportedCritical.push(ext.oid);
    }
  }
  if (i !== tbs.length) throw new Error('TBSCertList has unexpected fields');
  const crl: ParsedCrl = {
    der: bytes,
    tbs: Buffer.from(tbsNode.raw),
    signatureAlgorithm,
    signatureValue: Buffer.from(signature.bytes),
    issuer,
    thisUpdate,
    revoked,
    extensions,
    unsupportedCritical,
  };
  if (nextUpdate) crl.nextUpdate = nextUpdate;
  return crl;
}

// ---- signature algorithms ----

export type SignatureScheme = {
  name: string;
  /** digest for crypto.verify; null for EdDSA */
  digest: string | null;
  pss?: { saltLength: number };
  /** md2/md4/md5/sha1: not acceptable below a trust anchor */
  weak: boolean;
};

const SIGNATURE_SCHEMES: Record<string, SignatureScheme> = {
  '1.2.840.113549.1.1.2': { name: 'md2WithRSAEncryption', digest: 'md2', weak: true },
  '1.2.840.113549.1.1.3': { name: 'md4WithRSAEncryption', digest: 'md4', weak: true },
  '1.2.840.113549.1.1.4': { name: 'md5WithRSAEncryption', digest: 'md5', weak: true },
  '1.2.840.113549.1.1.5': { name: 'sha1WithRSAEncryption', digest: 'sha1', weak: true },
  '1.3.14.3.2.29': { name: 'sha1WithRSA', digest: 'sha1', weak: true },
  '1.2.840.113549.1.1.11': { name: 'sha256WithRSAEncryption', digest: 'sha256', weak: false },
  '1.2.840.113549.1.1.12': { name: 'sha384WithRSAEncryption', digest: 'sha384', weak: false },
  '1.2.840.113549.1.1.13': { name: 'sha512WithRSAEncryption', digest: 'sha512', weak: false },
  '1.2.840.113549.1.1.14': { name: 'sha224WithRSAEncryption', digest: 'sha224', weak: false },
  '1.2.840.10045.4.1': { name: 'ecdsa-with-SHA1', digest: 'sha1', weak: true },
  '1.2.840.10045.4.3.1': { name: 'ecdsa-with-SHA224', digest: 'sha224', weak: false },
  '1.2.840.10045.4.3.2': { name: 'ecdsa-with-SHA256', digest: 'sha256', weak: false },
  '1.2.840.10045.4.3.3': { name: 'ecdsa-with-SHA384', digest: 'sha384', weak: false },
  '1.2.840.10045.4.3.4': { name: 'ecdsa-with-SHA512', digest: 'sha512', weak: false },
  '1.2.840.10040.4.3': { name: 'dsa-with-SHA1', digest: 'sha1', weak: true },
  '2.16.840.1.101.3.4.3.2': { name: 'dsa-with-SHA256', digest: 'sha256', weak: false },
  '1.3.101.112': { name: 'ED25519', digest: null, weak: false },
  '1.3.101.113': { name: 'ED448', digest: null, weak: false },
};

const HASH_OIDS: Record<string, string> = {
  '1.3.14.3.2.26': 'sha1',
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
  '2.16.840.1.101.3.4.2.4': 'sha224',
};

/** How to check a signature made with `algorithm`; undefined for algorithms this code does not know. */
export function signatureScheme(algorithm: AlgorithmIdentifier): SignatureScheme | undefined {
  if (algorithm.oid !== '1.2.840.113549.1.1.10') return SIGNATURE_SCHEMES[algorithm.oid];
  // RSASSA-PSS (RFC 4055 3.1): hash [0], mask generation [1], salt length [2]; the defaults are SHA-1 and 20
  let digest = 'sha1';
  let saltLength = 20;
  if (algorithm.parameters) {
    for (const part of sequence(decodeDer(algorithm.parameters), 'RSASSA-PSS-params')) {
      const [inner] = children(part);
      if (part.tag === 0xa0) {
        const hash = HASH_OIDS[readAlgorithm(inner, 'hashAlgorithm').oid];
        if (!hash) return undefined;
        digest = hash;
      } else if (part.tag === 0xa2) {
        saltLength = readSmallInteger(inner as DerNode);
      }
    }
  }
  return { name: `RSASSA-PSS with ${digest}`, digest, pss: { saltLength }, weak: digest === 'sha1' };
}

export function signatureAlgorithmName(oid: string): string {
  return SIGNATURE_SCHEMES[oid]?.name ?? (oid === '1.2.840.113549.1.1.10' ? 'RSASSA-PSS' : oid);
}

// ---- PEM ----

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/g;

/** Every PEM block with the given label, decoded (default: all CERTIFICATE blocks). */
export function pemToDers(text: string, label = 'CERTIFICATE'): Buffer[] {
  const out: Buffer[] = [];
  for (const match of text.matchAll(PEM_BLOCK)) {
    if (match[1] !== label) continue;
    const body = (match[2] as string).replace(/^[A-Za-z-]+:.*$/gm, '').replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body)) throw new Error(`PEM ${label} block is not valid base64`);
    out.push(Buffer.from(body, 'base64'));
  }
  return out;
}

export function derToPem(der: Buffer, label = 'CERTIFICATE'): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

const KEY_LABELS = ['PRIVATE KEY', 'RSA PRIVATE KEY', 'EC PRIVATE KEY', 'ENCRYPTED PRIVATE KEY'];

/** The first private key block of a combined PEM (a grid proxy file holds cert, key, chain), as PEM text. */
export function firstPrivateKeyPem(text: string): string | undefined {
  for (const match of text.matchAll(PEM_BLOCK)) {
    if (KEY_LABELS.includes(match[1] as string)) return `${match[0]}\n`;
  }
  return undefined;
}

/** The first private key of a combined PEM as a KeyObject; throws if there is none or it cannot be decrypted. */
export function readPrivateKey(text: string, passphrase?: string): KeyObject {
  const pem = firstPrivateKeyPem(text);
  if (!pem) throw new Error('no private key block found in the PEM text');
  return passphrase === undefined ? createPrivateKey(pem) : createPrivateKey({ key: pem, passphrase });
}

/** Parses every CERTIFICATE block of a PEM text. */
export function parsePemCertificates(text: string): ParsedCertificate[] {
  return pemToDers(text).map(parseCertificate);
}
