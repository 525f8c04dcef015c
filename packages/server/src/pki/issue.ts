// Certificate and CRL generation with node:crypto: the development CA made at first start, and test fixtures.
import {
  createHash,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  sign,
} from 'node:crypto';
import { isIP } from 'node:net';
import {
  derToPem,
  type Extension,
  KEY_USAGE_BITS,
  type KeyUsageName,
  OID,
  type ParsedCertificate,
  parseCertificate,
  pemToDers,
  readPrivateKey,
} from './certificate.ts';
import {
  decodeDer,
  encodeBoolean,
  encodeContext,
  encodeExplicit,
  encodeInteger,
  encodeNamedBits,
  encodeNull,
  encodeOctetString,
  encodeOid,
  encodeSequence,
  encodeTime,
  encodeTlv,
  readBitString,
  sequence,
  Tag,
} from './der.ts';
import { encodeName, parseDnString, type Rdn } from './names.ts';

export type KeyKind = 'rsa' | 'ec';
export type KeyPair = { publicKey: KeyObject; privateKey: KeyObject };

/** RSA 2048 or EC P-256 key pair. */
export function generateKey(kind: KeyKind = 'ec'): KeyPair {
  return kind === 'rsa'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
}

/**
 * An RSA public key of `bits` bits and public exponent `e` whose private key nobody holds (a fixed odd modulus):
 * what a hostile chain carries to make each signature check dear, for the tests and the flood benchmark.
 */
export function rsaPublicKeyNobodyHolds(bits: number, e: bigint): KeyObject {
  const modulus = Buffer.alloc(bits / 8, 0xa5);
  modulus[0] = 0xc3;
  modulus[modulus.length - 1] = 0x01;
  const rsaKey = encodeSequence(encodeInteger(Buffer.concat([Buffer.from([0]), modulus])), encodeInteger(e));
  const spki = encodeSequence(
    encodeSequence(encodeOid('1.2.840.113549.1.1.1'), encodeNull()),
    encodeTlv(Tag.BIT_STRING, Buffer.concat([Buffer.from([0]), rsaKey])),
  );
  return createPublicKey({ key: spki, format: 'der', type: 'spki' });
}

/** A certificate with its private key and the issuing chain above it (trust anchors excluded). */
export type Credential = { cert: ParsedCertificate; key: KeyObject; chain: ParsedCertificate[] };

function makeCredential(cert: ParsedCertificate, key: KeyObject, chain: ParsedCertificate[]): Credential {
  return { cert, key, chain };
}

/**
 * A credential from PEM text: the first certificate is the credential's, the others its chain (trust anchors
 * dropped); the key is the first private key block of `keyPem`, or of `certPem` (a grid proxy file) if absent.
 */
export function loadCredential(certPem: string, keyPem?: string, passphrase?: string): Credential {
  const [first, ...rest] = pemToDers(certPem).map(parseCertificate);
  if (!first) throw new Error('no certificate found in the PEM text');
  const key = readPrivateKey(keyPem ?? certPem, passphrase);
  const certKey = first.publicKey.export({ type: 'spki', format: 'der' });
  if (!createPublicKey(key).export({ type: 'spki', format: 'der' }).equals(certKey)) {
    throw new Error(`the private key does not belong to the certificate ${first.subject.oneline}`);
  }
  return makeCredential(
    first,
    key,
    rest.filter((c) => !c.selfIssued),
  );
}

export type IssuerCredential = { cert: ParsedCertificate | string | Buffer; key: KeyObject };

export type ProxySpec = {
  type: 'rfc3820' | 'draft';
  /** a named policy or a policy language OID */
  policy: 'inheritAll' | 'limited' | 'independent' | (string & {});
  pathLen?: number;
  /** RFC 3820 3.8 requires critical; default true */
  critical?: boolean;
};

export type Digest = 'sha256' | 'sha384' | 'sha512' | 'sha1';

export type IssueOptions = {
  subject: string | Rdn[];
  /** the subject's public key */
  publicKey: KeyObject;
  /** absent: self-signed with `signingKey` */
  issuer?: IssuerCredential;
  /** the key that signs: required when self-signed; with an issuer it replaces the issuer's key (forgery) */
  signingKey?: KeyObject;
  /** bigint/number, or a hex string; default 16 random bytes, positive */
  serial?: bigint | number | string;
  notBefore?: Date;
  notAfter?: Date;
  /** adds critical basicConstraints (absent: no basicConstraints extension) */
  ca?: boolean;
  pathLen?: number;
  keyUsage?: KeyUsageName[];
  /** 'serverAuth', 'clientAuth' or OIDs */
  extKeyUsage?: string[];
  /** DNS names and IP addresses */
  subjectAltName?: string[];
  /** default true */
  subjectKeyIdentifier?: boolean;
  /** default true */
  authorityKeyIdentifier?: boolean;
  proxy?: ProxySpec;
  /** appended as given (duplicates of the generated ones included) */
  extensions?: Extension[];
  digest?: Digest;
};

export type IssuedCertificate = { der: Buffer; pem: string; parsed: ParsedCertificate };

function toParsed(cert: ParsedCertificate | string | Buffer): ParsedCertificate {
  if (Buffer.isBuffer(cert)) return parseCertificate(cert);
  if (typeof cert === 'string') {
    const [der] = pemToDers(cert);
    if (!der) throw new Error('issuer PEM holds no certificate');
    return parseCertificate(der);
  }
  return cert;
}

function toRdns(subject: string | Rdn[]): Rdn[] {
  return typeof subject === 'string' ? parseDnString(subject) : subject;
}

function serialValue(serial: bigint | number | string | undefined): bigint {
  if (serial === undefined) {
    const bytes = randomBytes(16);
    bytes[0] = ((bytes[0] as number) & 0x7f) | 0x01; // RFC 5280 4.1.2.2: positive, at most 20 octets
    return BigInt(`0x${bytes.toString('hex')}`);
  }
  if (typeof serial === 'string') return BigInt(`0x${serial.replace(/^0x/i, '')}`);
  return BigInt(serial);
}

/** RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING. */
export function keyIdentifier(publicKey: KeyObject): Buffer {
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const [, bits] = sequence(decodeDer(spki), 'SubjectPublicKeyInfo');
  return createHash('sha1')
    .update(readBitString(bits as ReturnType<typeof decodeDer>).bytes)
    .digest();
}

const SIGNATURE_OIDS: Record<string, Record<Digest, string>> = {
  rsa: {
    sha1: '1.2.840.113549.1.1.5',
    sha256: '1.2.840.113549.1.1.11',
    sha384: '1.2.840.113549.1.1.12',
    sha512: '1.2.840.113549.1.1.13',
  },
  ec: {
    sha1: '1.2.840.10045.4.1',
    sha256: '1.2.840.10045.4.3.2',
    sha384: '1.2.840.10045.4.3.3',
    sha512: '1.2.840.10045.4.3.4',
  },
};

function signatureAlgorithm(key: KeyObject, digest: Digest): Buffer {
  const kind = key.asymmetricKeyType;
  const oids = kind ? SIGNATURE_OIDS[kind] : undefined;
  if (!oids) throw new Error(`cannot sign with a ${kind} key`);
  // RFC 4055 5: RSA algorithm identifiers carry NULL parameters; ECDSA ones carry none (RFC 5758 3.2)
  return kind === 'rsa'
    ? encodeSequence(encodeOid(oids[digest]), encodeNull())
    : encodeSequence(encodeOid(oids[digest]));
}

function signed(tbs: Buffer, algorithm: Buffer, key: KeyObject, digest: Digest): Buffer {
  const signature = sign(digest, tbs, key);
  return encodeSequence(
    tbs,
    algorithm,
    encodeTlv(Tag.BIT_STRING, Buffer.concat([Buffer.from([0]), signature])),
  );
}

function extension(oid: string, critical: boolean, value: Buffer): Buffer {
  return encodeSequence(encodeOid(oid), critical ? encodeBoolean(true) : undefined, encodeOctetString(value));
}

const EKU_NAMES: Record<string, string> = {
  serverAuth: OID.serverAuth,
  clientAuth: OID.clientAuth,
  emailProtection: OID.emailProtection,
  anyExtendedKeyUsage: OID.anyExtendedKeyUsage,
};

const POLICY_OIDS: Record<string, string> = {
  inheritAll: OID.pplInheritAll,
  limited: OID.pplLimited,
  independent: OID.pplIndependent,
};

function generalName(name: string): Buffer {
  const family = isIP(name);
  if (family === 4) return encodeContext(7, Buffer.from(name.split('.').map(Number)), false);
  if (family === 6) {
    const [head = '', tail = ''] = name.split('::');
    const part = (s: string) => (s ? s.split(':').map((g) => Number.parseInt(g, 16)) : []);
    const headGroups = part(head);
    const tailGroups = name.includes('::') ? part(tail) : [];
    const groups = [
      ...headGroups,
      ...new Array(8 - headGroups.length - tailGroups.length).fill(0),
      ...tailGroups,
    ];
    // dotted IPv4 tails (::ffff:1.2.3.4) are not needed here
    if (groups.length !== 8 || groups.some((g) => !(g >= 0 && g <= 0xffff))) {
      throw new Error(`unsupported IPv6 address form '${name}'`);
    }
    const out = Buffer.alloc(16);
    groups.forEach((g, i) => {
      out.writeUInt16BE(g, i * 2);
    });
    return encodeContext(7, out, false);
  }
  return encodeContext(2, Buffer.from(name, 'latin1'), false);
}

/** ProxyCertInfo: RFC 3820 puts the path length first; the GSI-3 draft puts the policy first and the length in [1]. */
function proxyCertInfoValue(spec: ProxySpec): Buffer {
  const language = POLICY_OIDS[spec.policy] ?? spec.policy;
  const policy = encodeSequence(encodeOid(language));
  if (spec.type === 'draft') {
    return encodeSequence(
      policy,
      spec.pathLen === undefined ? undefined : encodeExplicit(1, encodeInteger(spec.pathLen)),
    );
  }
  return encodeSequence(spec.pathLen === undefined ? undefined : encodeInteger(spec.pathLen), policy);
}

/** Issues one X.509 v3 certificate signed with sha256 (ECDSA or RSA PKCS#1 v1.5). */
export function issueCertificate(opts: IssueOptions): IssuedCertificate {
  const issuerCert = opts.issuer ? toParsed(opts.issuer.cert) : undefined;
  const signingKey = opts.signingKey ?? opts.issuer?.key;
  if (!signingKey) throw new Error('issueCertificate: a self-signed certificate needs signingKey');
  const digest = opts.digest ?? 'sha256';
  const subjectDer = encodeName(toRdns(opts.subject));
  // a proxy copies its issuer's subject bytes exactly, so the issuer field is the issuer's encoded subject
  const issuerDer = issuerCert ? issuerCert.subject.der : subjectDer;
  const now = Date.now();
  const notBefore = opts.notBefore ?? new Date(now - 60_000);
  const notAfter = opts.notAfter ?? new Date(now + 365 * 86_400_000);
  const sigAlg = signatureAlgorithm(signingKey, digest);

  const exts: Buffer[] = [];
  if (opts.ca !== undefined) {
    const pathLen = opts.ca && opts.pathLen !== undefined ? encodeInteger(opts.pathLen) : undefined;
    exts.push(
      extension(
        OID.basicConstraints,
        true,
        encodeSequence(opts.ca ? encodeBoolean(true) : undefined, pathLen),
      ),
    );
  }
  if (opts.keyUsage) {
    const bits = opts.keyUsage.map((name) => KEY_USAGE_BITS.indexOf(name));
    exts.push(extension(OID.keyUsage, true, encodeNamedBits(bits)));
  }
  if (opts.extKeyUsage) {
    const oids = opts.extKeyUsage.map((name) => encodeOid(EKU_NAMES[name] ?? name));
    exts.push(extension(OID.extKeyUsage, false, encodeSequence(...oids)));
  }
  if (opts.subjectAltName?.length) {
    exts.push(extension(OID.subjectAltName, false, encodeSequence(...opts.subjectAltName.map(generalName))));
  }
  if (opts.subjectKeyIdentifier ?? true) {
    exts.push(extension(OID.subjectKeyIdentifier, false, encodeOctetString(keyIdentifier(opts.publicKey))));
  }
  if (opts.authorityKeyIdentifier ?? true) {
    const keyId = issuerCert
      ? (issuerCert.subjectKeyIdentifier ?? keyIdentifier(issuerCert.publicKey))
      : keyIdentifier(opts.publicKey);
    exts.push(extension(OID.authorityKeyIdentifier, false, encodeSequence(encodeContext(0, keyId, false))));
  }
  if (opts.proxy) {
    const oid = opts.proxy.type === 'draft' ? OID.proxyCertInfoDraft : OID.proxyCertInfo;
    exts.push(extension(oid, opts.proxy.critical ?? true, proxyCertInfoValue(opts.proxy)));
  }
  for (const ext of opts.extensions ?? []) exts.push(extension(ext.oid, ext.critical, ext.value));

  const tbs = encodeSequence(
    encodeExplicit(0, encodeInteger(2)),
    encodeInteger(serialValue(opts.serial)),
    sigAlg,
    issuerDer,
    encodeSequence(encodeTime(notBefore), encodeTime(notAfter)),
    subjectDer,
    opts.publicKey.export({ type: 'spki', format: 'der' }),
    exts.length ? encodeExplicit(3, encodeSequence(...exts)) : undefined,
  );
  const der = signed(tbs, sigAlg, signingKey, digest);
  return { der, pem: derToPem(der), parsed: parseCertificate(der) };
}

// ---- convenience for the server's first start and for tests ----

function chainAbove(issuer: Credential): ParsedCertificate[] {
  // the trust anchor is never part of a credential's chain (grid-proxy-init leaves the CA out)
  return [issuer.cert, ...issuer.chain].filter((c) => !c.selfIssued);
}

export type CaOptions = {
  keyKind?: KeyKind;
  keyPair?: KeyPair;
  /** a parent CA: makes an intermediate CA */
  issuer?: Credential;
  pathLen?: number;
  notBefore?: Date;
  notAfter?: Date;
  serial?: bigint | number | string;
  digest?: Digest;
};

/** A CA: self-signed root by default, or an intermediate when `issuer` is given. Valid 10 years. */
export function createCA(subject: string | Rdn[], opts: CaOptions = {}): Credential {
  const keys = opts.keyPair ?? generateKey(opts.keyKind);
  const now = Date.now();
  const issued = issueCertificate({
    subject,
    publicKey: keys.publicKey,
    ...(opts.issuer ? { issuer: opts.issuer } : { signingKey: keys.privateKey }),
    ca: true,
    ...(opts.pathLen === undefined ? {} : { pathLen: opts.pathLen }),
    keyUsage: ['keyCertSign', 'cRLSign'],
    notBefore: opts.notBefore ?? new Date(now - 3_600_000),
    notAfter: opts.notAfter ?? new Date(now + 10 * 365 * 86_400_000),
    ...(opts.serial === undefined ? {} : { serial: opts.serial }),
    ...(opts.digest ? { digest: opts.digest } : {}),
  });
  return makeCredential(issued.parsed, keys.privateKey, opts.issuer ? chainAbove(opts.issuer) : []);
}

export type EndEntityOptions = {
  keyKind?: KeyKind;
  keyPair?: KeyPair;
  notBefore?: Date;
  notAfter?: Date;
  serial?: bigint | number | string;
  /** extra or replaced issueCertificate options */
  issue?: Partial<IssueOptions>;
};

function keyUsageFor(keys: KeyPair): KeyUsageName[] {
  return keys.publicKey.asymmetricKeyType === 'rsa'
    ? ['digitalSignature', 'keyEncipherment']
    : ['digitalSignature'];
}

/** A TLS server certificate for the given host names and IP addresses (CN = the first). */
export function createServerCertificate(
  ca: Credential,
  hostnames: string[],
  opts: EndEntityOptions = {},
): Credential {
  if (hostnames.length === 0) throw new Error('createServerCertificate needs at least one host name');
  const keys = opts.keyPair ?? generateKey(opts.keyKind);
  const now = Date.now();
  const issued = issueCertificate({
    subject: [[{ type: 'CN', value: hostnames[0] as string }]],
    publicKey: keys.publicKey,
    issuer: ca,
    ca: false,
    keyUsage: keyUsageFor(keys),
    extKeyUsage: ['serverAuth'],
    subjectAltName: hostnames,
    notBefore: opts.notBefore ?? new Date(now - 3_600_000),
    notAfter: opts.notAfter ?? new Date(now + 825 * 86_400_000),
    ...(opts.serial === undefined ? {} : { serial: opts.serial }),
    ...opts.issue,
  });
  return makeCredential(issued.parsed, keys.privateKey, chainAbove(ca));
}

/**
 * A user (end-entity) certificate for client authentication and for signing S/MIME messages (image lists),
 * valid a year by default: `openssl smime -verify` refuses a signer whose extendedKeyUsage lacks emailProtection.
 */
export function createUserCertificate(
  ca: Credential,
  dn: string | Rdn[],
  opts: EndEntityOptions = {},
): Credential {
  const keys = opts.keyPair ?? generateKey(opts.keyKind);
  const now = Date.now();
  const issued = issueCertificate({
    subject: dn,
    publicKey: keys.publicKey,
    issuer: ca,
    ca: false,
    keyUsage: keyUsageFor(keys),
    extKeyUsage: ['clientAuth', 'emailProtection'],
    notBefore: opts.notBefore ?? new Date(now - 3_600_000),
    notAfter: opts.notAfter ?? new Date(now + 365 * 86_400_000),
    ...(opts.serial === undefined ? {} : { serial: opts.serial }),
    ...opts.issue,
  });
  return makeCredential(issued.parsed, keys.privateKey, chainAbove(ca));
}

export type ProxyType = 'rfc3820' | 'limited' | 'independent' | 'draft' | 'legacy' | 'limited-legacy';

export type ProxyOptions = {
  type?: ProxyType;
  pathLen?: number;
  notBefore?: Date;
  notAfter?: Date;
  /** sign with this key instead of the issuer's (a forgery that claims the issuer's name) */
  signWith?: KeyObject;
  keyKind?: KeyKind;
  keyPair?: KeyPair;
  serial?: bigint | number;
  /** extra or replaced issueCertificate options, applied last */
  issue?: Partial<IssueOptions>;
};

/**
 * A proxy certificate as grid-proxy-init makes it: subject = issuer subject + one CN (the decimal serial, or
 * `proxy` / `limited proxy` for legacy GT2 proxies), KeyUsage and EKU copied from the issuer, no SKI/AKI and no
 * basicConstraints, valid from 5 minutes ago for 12 hours.
 */
export function createProxy(issuer: Credential, opts: ProxyOptions = {}): Credential {
  const type = opts.type ?? 'rfc3820';
  const keys = opts.keyPair ?? generateKey(opts.keyKind);
  // Globus uses a short random serial; RFC 3820 3.1 only needs it unique per issuer
  const serial = BigInt(opts.serial ?? (randomBytes(4).readUInt32BE(0) >>> 1) | 1);
  const cn = type === 'legacy' ? 'proxy' : type === 'limited-legacy' ? 'limited proxy' : serial.toString(10);
  let proxy: ProxySpec | undefined;
  if (type === 'rfc3820' || type === 'limited' || type === 'independent' || type === 'draft') {
    proxy = {
      type: type === 'draft' ? 'draft' : 'rfc3820',
      policy: type === 'limited' ? 'limited' : type === 'independent' ? 'independent' : 'inheritAll',
      ...(opts.pathLen === undefined ? {} : { pathLen: opts.pathLen }),
    };
  }
  const now = Date.now();
  const issued = issueCertificate({
    // RFC 3820 3.4: subject = issuer subject + one CN
    subject: [...issuer.cert.subject.rdns, [{ type: 'CN', value: cn }]],
    publicKey: keys.publicKey,
    issuer,
    ...(opts.signWith ? { signingKey: opts.signWith } : {}),
    serial,
    notBefore: opts.notBefore ?? new Date(now - 5 * 60_000),
    notAfter: opts.notAfter ?? new Date(now + 12 * 3_600_000),
    ...(issuer.cert.keyUsage ? { keyUsage: [...issuer.cert.keyUsage] } : {}),
    ...(issuer.cert.extKeyUsage ? { extKeyUsage: issuer.cert.extKeyUsage } : {}),
    subjectKeyIdentifier: false,
    authorityKeyIdentifier: false,
    ...(proxy ? { proxy } : {}),
    ...opts.issue,
  });
  return makeCredential(issued.parsed, keys.privateKey, chainAbove(issuer));
}

/** The certificate then its issuing chain, as PEM (what a TLS client sends as `cert`). */
export function chainPem(cred: Credential): string {
  return [cred.cert, ...cred.chain].map((c) => derToPem(c.der)).join('');
}

/** The private key as unencrypted PKCS#8 PEM. */
export function keyPem(cred: Credential): string {
  return cred.key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

/** Grid proxy file layout: certificate, private key (PKCS#8), then the issuing chain without the CA. */
export function credentialPem(cred: Credential): string {
  return [derToPem(cred.cert.der), keyPem(cred), ...cred.chain.map((c) => derToPem(c.der))].join('');
}

// ---- CRLs ----

export type CrlOptions = {
  issuer: IssuerCredential;
  revoked?: { serial: bigint | number | string; date?: Date }[];
  thisUpdate?: Date;
  nextUpdate?: Date;
  crlNumber?: bigint | number;
  /** sign with another key (a CRL that must not verify) */
  signWith?: KeyObject;
  digest?: Digest;
};

/** An X.509 v2 CRL (RFC 5280 5.1) with authorityKeyIdentifier and cRLNumber. */
export function issueCrl(opts: CrlOptions): { der: Buffer; pem: string } {
  const issuerCert = toParsed(opts.issuer.cert);
  const key = opts.signWith ?? opts.issuer.key;
  const digest = opts.digest ?? 'sha256';
  const sigAlg = signatureAlgorithm(key, digest);
  const thisUpdate = opts.thisUpdate ?? new Date(Date.now() - 60_000);
  const nextUpdate = opts.nextUpdate ?? new Date(thisUpdate.getTime() + 7 * 86_400_000);
  const revoked = (opts.revoked ?? []).map((entry) =>
    encodeSequence(encodeInteger(serialValue(entry.serial)), encodeTime(entry.date ?? thisUpdate)),
  );
  const keyId = issuerCert.subjectKeyIdentifier ?? keyIdentifier(issuerCert.publicKey);
  const tbs = encodeSequence(
    encodeInteger(1),
    sigAlg,
    issuerCert.subject.der,
    encodeTime(thisUpdate),
    encodeTime(nextUpdate),
    revoked.length ? encodeSequence(...revoked) : undefined,
    encodeExplicit(
      0,
      encodeSequence(
        extension(OID.authorityKeyIdentifier, false, encodeSequence(encodeContext(0, keyId, false))),
        extension(OID.crlNumber, false, encodeInteger(opts.crlNumber ?? 1)),
      ),
    ),
  );
  const der = signed(tbs, sigAlg, key, digest);
  return { der, pem: derToPem(der, 'X509 CRL') };
}
