// Client chain validation with grid proxy support (RFC 3820, GSI-3 draft and legacy GT2 proxies), done by us
// because OpenSSL in Node cannot accept proxies (X509_V_FLAG_ALLOW_PROXY_CERTS cannot be set).
import { constants, type KeyObject, verify as verifySignature } from 'node:crypto';
import {
  OID,
  type ParsedCertificate,
  type ParsedCrl,
  parseCertificate,
  parseCrl,
  proxyPolicyKind,
  signatureAlgorithmName,
  signatureScheme,
} from './certificate.ts';
import { nameConstraintViolation } from './name-constraints.ts';
import { formatRfc2253, identityDn, rdnKey } from './names.ts';
import { type CaNamespace, checkNamespace, type NamespaceMode } from './namespaces.ts';

export type CrlMode = 'off' | 'if-present' | 'require';

export type VerifierOptions = {
  /** trust anchors and intermediate CAs, like the files of X509_CERT_DIR */
  trustedCAs: (ParsedCertificate | Buffer)[];
  /** DER CRLs; each is used only once its signature verifies against its CA */
  crls?: Buffer[];
  /** default 'if-present' */
  crlMode?: CrlMode;
  /** GT2 `CN=proxy` / `CN=limited proxy` proxies; default true */
  allowLegacyProxies?: boolean;
  /** default true */
  allowLimitedProxies?: boolean;
  /** default false */
  allowIndependentProxies?: boolean;
  /** most proxies below the end-entity certificate; default 10 */
  maxProxyDepth?: number;
  /** tolerance for a notBefore in the future (a client clock ahead of ours); default 300 */
  clockSkewSeconds?: number;
  /**
   * The CAs' namespace rules (pki/namespaces.ts), by the canonical name key of the CA they bind. Absent: no
   * namespace is enforced (a bare verifier, as OpenSSL's); the server always passes them.
   */
  namespaces?: { mode: NamespaceMode; byCa: ReadonlyMap<string, CaNamespace> };
};

export type ProxyKind = 'rfc3820' | 'draft' | 'legacy';

export type VerifySuccess = {
  ok: true;
  /** end-entity subject, OpenSSL oneline form: the user's identity */
  dn: string;
  /** end-entity subject as mod_ssl's SSL_CLIENT_S_DN */
  dnRfc2253: string;
  /** end-entity issuer, oneline form */
  issuerDn: string;
  /** end-entity serial, lowercase hex */
  eecSerial: string;
  proxyType: 'none' | ProxyKind;
  /** number of proxies below the end-entity certificate */
  proxyDepth: number;
  limited: boolean;
  /** the earliest notAfter of the chain */
  notAfter: Date;
};

export type VerifyFailureCode =
  | 'no_certificate'
  | 'untrusted_issuer'
  | 'bad_signature'
  | 'expired'
  | 'not_yet_valid'
  | 'revoked'
  | 'invalid_proxy'
  | 'invalid_certificate'
  | 'crl_expired'
  | 'crl_missing'
  | 'outside_namespace'
  | 'weak_key';

export type VerifyFailure = { ok: false; code: VerifyFailureCode; reason: string };

export type VerifyResult = VerifySuccess | VerifyFailure;

export type Verifier = {
  /** Verifies a presented chain, leaf first (the rest in any order). Synchronous and bounded. */
  verifyChain(ders: Buffer[], now?: Date): VerifyResult;
  /** CRLs and CAs that were ignored, and why */
  readonly warnings: string[];
  /** Signatures checked so far by this verifier (a hostile chain must not make it check many). */
  readonly signatureChecks: number;
};

class Rejection extends Error {
  code: VerifyFailureCode;
  constructor(code: VerifyFailureCode, reason: string) {
    super(reason);
    this.code = code;
  }
}

function reject(code: VerifyFailureCode, reason: string): never {
  throw new Rejection(code, reason);
}

// OpenSSL's supported_nids plus the two proxyCertInfo forms; any other critical extension fails closed
const SUPPORTED_CRITICAL = new Set<string>([
  OID.basicConstraints,
  OID.keyUsage,
  OID.extKeyUsage,
  OID.subjectAltName,
  OID.certificatePolicies,
  OID.proxyCertInfo,
  OID.proxyCertInfoDraft,
  OID.nameConstraints,
]);

/** Signature checks one chain may cost: 18 same-named certificates sharing a key otherwise loop for ages. */
const SIGNATURE_BUDGET = 24;
/** Certificates above the end-entity one that a client may present (intermediate CAs). */
const MAX_PRESENTED_CAS = 5;
const MAX_PATH = 32;
/** Candidate paths (by name) tried, and certificates visited while finding them. */
const MAX_CANDIDATE_PATHS = 8;
const NAME_SEARCH_BUDGET = 256;
/** RSA moduli above this cost tens of milliseconds per signature check; OpenSSL allows up to 16384. */
export const MAX_RSA_BITS = 8192;
/** Exponents above this make each check slower still (65537 is what everyone uses). */
export const MAX_RSA_EXPONENT = 2n ** 32n;
/** The smallest RSA key of an end-entity certificate or proxy (NIST SP 800-131A: 1024 bits is disallowed). */
export const MIN_USER_RSA_BITS = 2048;
/**
 * The largest RSA key of an end-entity certificate or proxy: the most grid-proxy-init and voms-proxy-init make.
 * Ten proxies of 8192 bits would cost ten slow checks per connection to anyone holding a valid certificate.
 */
export const MAX_USER_RSA_BITS = 4096;
const EC_CURVES = new Set(['prime256v1', 'secp384r1', 'secp521r1']);

const iso = (date: Date) => date.toISOString();

function toParsed(ca: ParsedCertificate | Buffer): ParsedCertificate {
  return Buffer.isBuffer(ca) ? parseCertificate(ca) : ca;
}

function allowsClientAuth(cert: ParsedCertificate): boolean {
  const eku = cert.extKeyUsage;
  return !eku || eku.includes(OID.clientAuth) || eku.includes(OID.anyExtendedKeyUsage);
}

function verifiesCrl(crl: ParsedCrl, key: KeyObject): boolean {
  const scheme = signatureScheme(crl.signatureAlgorithm);
  if (!scheme) return false;
  try {
    const keyInput = scheme.pss
      ? { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: scheme.pss.saltLength }
      : key;
    return verifySignature(scheme.digest, crl.tbs, keyInput, crl.signatureValue);
  } catch {
    return false;
  }
}

/**
 * Keys a presented certificate may carry, checked before any signature is: RSA up to 8192 bits (CAs) or 4096 bits
 * (end-entity certificates and proxies) with an exponent up to 2^32, EC on P-256/384/521, Ed25519 and Ed448. A 16384-bit key with a 64-bit exponent (the most OpenSSL takes)
 * costs ~10 ms per check: twenty in one chain was a cheap way to burn the server's CPU.
 */
function checkKeyCost(cert: ParsedCertificate): void {
  const key = cert.publicKey;
  const type = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails ?? {};
  const name = cert.subject.oneline;
  if (type === 'rsa' || type === 'rsa-pss') {
    const bits = details.modulusLength ?? 0;
    const most = cert.basicConstraints?.ca ? MAX_RSA_BITS : MAX_USER_RSA_BITS;
    if (bits > most) {
      reject(
        'weak_key',
        `RSA key of ${bits} bits is larger than the ${most} accepted${cert.basicConstraints?.ca ? '' : ' for a user or proxy certificate'}: ${name}`,
      );
    }
    if ((details.publicExponent ?? 0n) > MAX_RSA_EXPONENT) {
      reject('weak_key', `RSA public exponent above 2^32 is not accepted: ${name}`);
    }
    return;
  }
  if (type === 'ec') {
    if (!EC_CURVES.has(details.namedCurve ?? '')) {
      reject(
        'weak_key',
        `EC curve ${details.namedCurve ?? 'unknown'} is not accepted (P-256, P-384, P-521): ${name}`,
      );
    }
    return;
  }
  if (type === 'ed25519' || type === 'ed448') return;
  reject('weak_key', `${type ?? 'unknown'} keys are not accepted: ${name}`);
}

/** End-entity certificates and proxies: RSA keys of at least 2048 bits. */
function checkUserKey(cert: ParsedCertificate): void {
  const key = cert.publicKey;
  if (key.asymmetricKeyType !== 'rsa' && key.asymmetricKeyType !== 'rsa-pss') return;
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < MIN_USER_RSA_BITS) {
    reject(
      'weak_key',
      `RSA key of ${bits} bits is smaller than the ${MIN_USER_RSA_BITS} required: ${cert.subject.oneline}`,
    );
  }
}

export function createVerifier(opts: VerifierOptions): Verifier {
  const crlMode = opts.crlMode ?? 'if-present';
  const allowLegacy = opts.allowLegacyProxies ?? true;
  const allowLimited = opts.allowLimitedProxies ?? true;
  const allowIndependent = opts.allowIndependentProxies ?? false;
  const maxProxyDepth = opts.maxProxyDepth ?? 10;
  const skewMs = (opts.clockSkewSeconds ?? 300) * 1000;
  const maxPresented = maxProxyDepth + 1 + MAX_PRESENTED_CAS;
  const warnings: string[] = [];
  let signatureChecks = 0;

  const trusted = new Map<string, ParsedCertificate>();
  for (const ca of opts.trustedCAs) {
    const cert = toParsed(ca);
    trusted.set(cert.fingerprint256, cert);
  }
  const trustedByName = new Map<string, ParsedCertificate[]>();
  for (const cert of trusted.values()) {
    const list = trustedByName.get(cert.subject.key) ?? [];
    list.push(cert);
    trustedByName.set(cert.subject.key, list);
  }

  // CRL signature verdicts per (CRL, CA), so each CRL is checked once per CA
  const crlVerdicts = new WeakMap<ParsedCrl, Map<string, boolean>>();
  function crlSignedBy(crl: ParsedCrl, ca: ParsedCertificate): boolean {
    let verdicts = crlVerdicts.get(crl);
    if (!verdicts) {
      verdicts = new Map();
      crlVerdicts.set(crl, verdicts);
    }
    let verdict = verdicts.get(ca.fingerprint256);
    if (verdict === undefined) {
      // RFC 5280 6.3.3 (f): the CRL issuer must be allowed to sign CRLs, and the signature must verify
      verdict = (!ca.keyUsage || ca.keyUsage.has('cRLSign')) && verifiesCrl(crl, ca.publicKey);
      verdicts.set(ca.fingerprint256, verdict);
    }
    return verdict;
  }

  const crlsByIssuer = new Map<string, ParsedCrl[]>();
  (opts.crls ?? []).forEach((der, i) => {
    let crl: ParsedCrl;
    try {
      crl = parseCrl(der);
    } catch (err) {
      warnings.push(`CRL #${i + 1} ignored: ${(err as Error).message}`);
      return;
    }
    if (crl.unsupportedCritical.length) {
      warnings.push(
        `CRL of ${crl.issuer.oneline} ignored: unsupported critical extension ${crl.unsupportedCritical[0]}`,
      );
      return;
    }
    const list = crlsByIssuer.get(crl.issuer.key) ?? [];
    list.push(crl);
    crlsByIssuer.set(crl.issuer.key, list);
    const cas = trustedByName.get(crl.issuer.key) ?? [];
    if (cas.length && !cas.some((ca) => crlSignedBy(crl, ca))) {
      warnings.push(`CRL of ${crl.issuer.oneline} ignored: its signature does not verify against that CA`);
    }
  });

  /** The newest CRL issued by `ca` whose signature verifies and that has started. */
  function currentCrl(ca: ParsedCertificate, now: Date): ParsedCrl | undefined {
    let best: ParsedCrl | undefined;
    for (const crl of crlsByIssuer.get(ca.subject.key) ?? []) {
      if (crl.thisUpdate.getTime() > now.getTime() + skewMs) continue;
      if (!crlSignedBy(crl, ca)) continue;
      if (!best || crl.thisUpdate > best.thisUpdate) best = crl;
    }
    return best;
  }

  /**
   * A path from the leaf to a trusted anchor, found by names first and then verified from the anchor down:
   * - no signature is checked unless the names chain to a trusted CA, so a self-made chain costs nothing;
   * - the first signature checked is by a trusted key, and each later one by a key that a checked signature
   *   vouched for, so a forged certificate in the middle stops the walk before its own key is ever used.
   * Both the name search and the signature checks are bounded.
   */
  function buildPath(
    leaf: ParsedCertificate,
    presented: ParsedCertificate[],
    now: Date,
  ): ParsedCertificate[] {
    const presentedByName = new Map<string, ParsedCertificate[]>();
    for (const cert of presented) {
      if (trusted.has(cert.fingerprint256)) continue; // the trusted copy is tried first anyway
      const list = presentedByName.get(cert.subject.key) ?? [];
      list.push(cert);
      presentedByName.set(cert.subject.key, list);
    }
    const at = now.getTime();
    const candidatesFor = (cert: ParsedCertificate): ParsedCertificate[] => {
      // trusted CAs first; among same-named ones, currently valid and longest-lived first (CA key rollover)
      const fromTrust = [...(trustedByName.get(cert.issuer.key) ?? [])].sort((a, b) => {
        const validA = a.notBefore.getTime() <= at && at <= a.notAfter.getTime();
        const validB = b.notBefore.getTime() <= at && at <= b.notAfter.getTime();
        return validA === validB ? b.notAfter.getTime() - a.notAfter.getTime() : validA ? -1 : 1;
      });
      return [...fromTrust, ...(presentedByName.get(cert.issuer.key) ?? [])];
    };

    // 1. Paths by name alone, leaf first, each ending in a self-issued trusted certificate.
    const paths: ParsedCertificate[][] = [];
    let visits = NAME_SEARCH_BUDGET;
    let tooLong = false;
    let deepest: { cert: ParsedCertificate; depth: number } | undefined;
    const search = (cert: ParsedCertificate, below: ParsedCertificate[]): void => {
      if (paths.length >= MAX_CANDIDATE_PATHS || visits-- <= 0) return;
      const path = [...below, cert];
      if (cert.selfIssued && trusted.has(cert.fingerprint256)) {
        paths.push(path);
        return;
      }
      if (path.length >= MAX_PATH) {
        tooLong = true;
        return;
      }
      const onPath = new Set(path.map((c) => c.fingerprint256));
      const candidates = candidatesFor(cert).filter((c) => !onPath.has(c.fingerprint256));
      if (candidates.length === 0 && (!deepest || below.length > deepest.depth)) {
        deepest = { cert, depth: below.length };
      }
      for (const candidate of candidates) search(candidate, path);
    };
    search(leaf, []);
    if (paths.length === 0) {
      if (tooLong) reject('invalid_certificate', `certificate chain of ${leaf.subject.oneline} is too long`);
      const cert = deepest?.cert ?? leaf;
      return reject(
        'untrusted_issuer',
        cert.selfIssued
          ? `unable to get issuer certificate: ${cert.subject.oneline} is self-signed and not a trusted CA`
          : `unable to get issuer certificate for ${cert.subject.oneline} (issuer ${cert.issuer.oneline} is not a trusted CA and was not presented)`,
      );
    }

    // 2. Signatures, from the anchor down, path by path; a link checked once is not checked again.
    let budget = SIGNATURE_BUDGET;
    const signatures = new Map<string, boolean>();
    const signedBy = (cert: ParsedCertificate, issuer: ParsedCertificate): boolean => {
      const key = `${cert.fingerprint256}/${issuer.fingerprint256}`;
      let ok = signatures.get(key);
      if (ok === undefined) {
        if (budget-- <= 0) {
          reject(
            'untrusted_issuer',
            `no path to a trusted CA found for ${leaf.subject.oneline} within ${SIGNATURE_BUDGET} signature checks`,
          );
        }
        // the issuer's key is checked before it is used: every non-anchor one was checked on arrival
        signatureChecks++;
        try {
          ok = cert.x509.verify(issuer.publicKey);
        } catch {
          ok = false;
        }
        signatures.set(key, ok);
      }
      return ok;
    };
    let failure: { cert: ParsedCertificate; issuer: ParsedCertificate } | undefined;
    for (const path of paths) {
      let broken: number | undefined;
      for (let i = path.length - 2; i >= 0; i--) {
        if (!signedBy(path[i] as ParsedCertificate, path[i + 1] as ParsedCertificate)) {
          broken = i;
          break;
        }
      }
      if (broken === undefined) return path;
      // report the failure nearest the leaf: the one a user can do something about
      if (!failure || broken < path.indexOf(failure.cert)) {
        failure = { cert: path[broken] as ParsedCertificate, issuer: path[broken + 1] as ParsedCertificate };
      }
    }
    const { cert } = failure as NonNullable<typeof failure>;
    return reject(
      'bad_signature',
      `certificate signature failure: ${cert.subject.oneline} is not signed by the key of ${cert.issuer.oneline}`,
    );
  }

  function checkEveryCertificate(path: ParsedCertificate[], now: Date): void {
    // top down, as OpenSSL reports: the highest broken certificate is named
    for (let i = path.length - 1; i >= 0; i--) {
      const cert = path[i] as ParsedCertificate;
      const name = cert.subject.oneline;
      for (const ext of cert.extensions) {
        if (ext.critical && !SUPPORTED_CRITICAL.has(ext.oid)) {
          reject('invalid_certificate', `unhandled critical extension ${ext.oid} in ${name}`);
        }
      }
      const scheme = signatureScheme({
        oid: cert.signatureAlgorithm,
        ...(cert.signatureParameters ? { parameters: cert.signatureParameters } : {}),
      });
      // a trust anchor's self-signature is never relied on, so only certificates below it are held to this
      if (i < path.length - 1 && (!scheme || scheme.weak)) {
        reject(
          'invalid_certificate',
          `signature algorithm ${signatureAlgorithmName(cert.signatureAlgorithm)} is too weak or unknown: ${name}`,
        );
      }
      if (cert.notBefore.getTime() > now.getTime() + skewMs) {
        reject('not_yet_valid', `certificate is not yet valid: ${name} (notBefore ${iso(cert.notBefore)})`);
      }
      if (cert.notAfter.getTime() < now.getTime()) {
        reject('expired', `certificate has expired: ${name} (notAfter ${iso(cert.notAfter)})`);
      }
    }
  }

  /** RFC 5280 6.1.4 subset: cA, keyCertSign, pathLenConstraint (self-issued intermediates not counted). */
  function checkCas(path: ParsedCertificate[], firstCa: number): void {
    const anchor = path[path.length - 1] as ParsedCertificate;
    if (anchor.basicConstraints && !anchor.basicConstraints.ca) {
      reject('invalid_certificate', `trusted certificate ${anchor.subject.oneline} is not a CA`);
    }
    for (let i = path.length - 1; i >= firstCa; i--) {
      const ca = path[i] as ParsedCertificate;
      if (ca.keyUsage && !ca.keyUsage.has('keyCertSign')) {
        reject(
          'invalid_certificate',
          `CA certificate ${ca.subject.oneline} may not sign certificates (no keyCertSign)`,
        );
      }
      const pathLen = ca.basicConstraints?.pathLen;
      if (pathLen === undefined) continue;
      let below = 0;
      for (let j = firstCa; j < i; j++) if (!(path[j] as ParsedCertificate).selfIssued) below++;
      if (below > pathLen) {
        reject(
          'invalid_certificate',
          `path length constraint exceeded: ${ca.subject.oneline} allows ${pathLen} intermediate CA(s) below it, the chain has ${below}`,
        );
      }
    }
  }

  function checkEndEntity(eec: ParsedCertificate): void {
    const name = eec.subject.oneline;
    if (eec.proxyCertInfo) {
      reject('invalid_proxy', `proxy certificate issued by a CA: ${name}`);
    }
    if (!allowsClientAuth(eec)) {
      reject(
        'invalid_certificate',
        `certificate is not valid for client authentication (extendedKeyUsage): ${name}`,
      );
    }
    if (eec.keyUsage && !eec.keyUsage.has('digitalSignature')) {
      reject('invalid_certificate', `certificate may not sign (keyUsage lacks digitalSignature): ${name}`);
    }
  }

  type ProxyVerdict = { kind: ProxyKind; limited: boolean };

  function proxyKind(cert: ParsedCertificate): ProxyKind | undefined {
    if (cert.proxyCertInfo) return cert.proxyCertInfo.kind;
    const last = cert.subject.rdns[cert.subject.rdns.length - 1];
    // GT2 legacy proxies are recognised by name alone: the last RDN is exactly CN=proxy or CN=limited proxy
    if (last?.length === 1 && last[0]?.type === 'CN' && ['proxy', 'limited proxy'].includes(last[0].value)) {
      return 'legacy';
    }
    return undefined;
  }

  /** RFC 3820 3 and 4 (and the same rules for draft and legacy proxies), for path[index] issued by path[index+1]. */
  function checkProxy(
    path: ParsedCertificate[],
    index: number,
    issuerVerdict: ProxyVerdict | undefined,
  ): ProxyVerdict {
    const proxy = path[index] as ParsedCertificate;
    const issuer = path[index + 1] as ParsedCertificate;
    const name = proxy.subject.oneline;
    const kind = proxyKind(proxy);
    if (!kind) {
      reject(
        'invalid_proxy',
        `certificate issued by an end-entity/proxy certificate is not a proxy: ${name}`,
      );
    }
    if (issuerVerdict && issuerVerdict.kind !== kind) {
      reject(
        'invalid_proxy',
        `mixed proxy types in one chain: ${name} is ${kind}, its issuer is ${issuerVerdict.kind}`,
      );
    }
    if (kind === 'legacy' && !allowLegacy)
      reject('invalid_proxy', `legacy proxies are not accepted: ${name}`);

    // RFC 3820 3.4: issuer = the issuing certificate's subject; subject = that subject plus exactly one CN RDN
    const issuerRdns = issuer.subject.rdns;
    const rdns = proxy.subject.rdns;
    const last = rdns[rdns.length - 1];
    const nameOk =
      proxy.issuer.key === issuer.subject.key &&
      rdns.length === issuerRdns.length + 1 &&
      issuerRdns.every((rdn, i) => rdnKey(rdn) === rdnKey(rdns[i] ?? [])) &&
      last?.length === 1 &&
      last[0]?.type === 'CN';
    if (!nameOk) {
      reject(
        'invalid_proxy',
        `proxy subject name violation: ${name} is not ${issuer.subject.oneline} plus one CN`,
      );
    }
    // RFC 3820 3.7/3.8: a proxy is never a CA and may not sign certificates other than through proxy rules
    if (proxy.basicConstraints?.ca) reject('invalid_proxy', `a proxy certificate must not be a CA: ${name}`);
    if (proxy.keyUsage?.has('keyCertSign'))
      reject('invalid_proxy', `a proxy certificate must not assert keyCertSign: ${name}`);
    if (proxy.keyUsage && !proxy.keyUsage.has('digitalSignature')) {
      reject('invalid_proxy', `proxy keyUsage lacks digitalSignature: ${name}`);
    }
    if (issuer.keyUsage && !issuer.keyUsage.has('digitalSignature')) {
      reject(
        'invalid_proxy',
        `${issuer.subject.oneline} may not sign a proxy (keyUsage lacks digitalSignature)`,
      );
    }
    // RFC 3820 3.5/3.6: no subjectAltName, no issuerAltName
    if (proxy.extensions.some((e) => e.oid === OID.subjectAltName || e.oid === OID.issuerAltName)) {
      reject('invalid_proxy', `a proxy certificate must not carry subjectAltName or issuerAltName: ${name}`);
    }

    let limited: boolean;
    if (kind === 'legacy') {
      limited = last?.[0]?.value === 'limited proxy';
    } else {
      const info = proxy.proxyCertInfo as NonNullable<ParsedCertificate['proxyCertInfo']>;
      // RFC 3820 3.8: proxyCertInfo MUST be critical
      if (!info.critical) reject('invalid_proxy', `proxyCertInfo must be critical: ${name}`);
      const policy = proxyPolicyKind(info.policyLanguage);
      if (policy === 'independent' && !allowIndependent) {
        reject('invalid_proxy', `independent proxies are not accepted: ${name}`);
      }
      if (policy === 'other') {
        reject('invalid_proxy', `unsupported proxy policy language ${info.policyLanguage}: ${name}`);
      }
      limited = policy === 'limited';
      // pCPathLenConstraint: the most proxies that may follow this one
      if (info.pathLen !== undefined && index > info.pathLen) {
        reject(
          'invalid_proxy',
          `proxy path length constraint exceeded: ${name} allows ${info.pathLen} proxies below it, the chain has ${index}`,
        );
      }
    }
    if (limited && !allowLimited) reject('invalid_proxy', `limited proxies are not accepted: ${name}`);
    if (issuerVerdict?.limited && !limited) {
      reject('invalid_proxy', `a limited proxy may only sign limited proxies: ${name}`);
    }
    return { kind: kind as ProxyKind, limited };
  }

  /**
   * What each CA may name: its namespace files (for the certificates it issued directly) and its name
   * constraints (for every certificate below it; self-issued intermediates excepted, RFC 5280 6.1.3 (b)).
   * Proxies are left out: their names are the end-entity certificate's plus one CN.
   */
  function checkNames(path: ParsedCertificate[], firstCa: number, eecIndex: number): void {
    const namespaces = opts.namespaces;
    for (let i = path.length - 2; i >= eecIndex; i--) {
      const cert = path[i] as ParsedCertificate;
      const issuer = path[i + 1] as ParsedCertificate;
      if (namespaces && !(cert.selfIssued && i > eecIndex)) {
        const verdict = checkNamespace(
          namespaces.mode,
          namespaces.byCa.get(issuer.subject.key),
          cert.subject.oneline,
          issuer.subject.oneline,
        );
        if (!verdict.ok) reject('outside_namespace', verdict.reason);
      }
    }
    for (let c = path.length - 1; c >= firstCa; c--) {
      const ca = path[c] as ParsedCertificate;
      if (!ca.nameConstraints) continue;
      for (let i = c - 1; i >= eecIndex; i--) {
        const cert = path[i] as ParsedCertificate;
        if (cert.selfIssued && i > eecIndex) continue;
        const why = nameConstraintViolation(cert, ca.nameConstraints, ca.subject.oneline);
        if (why) reject('outside_namespace', why);
      }
    }
  }

  function checkRevocation(path: ParsedCertificate[], eecIndex: number, now: Date): void {
    if (crlMode === 'off') return;
    // proxies have no CRLs: the end-entity certificate and the CAs below the anchor are checked against their issuers
    for (let i = path.length - 2; i >= eecIndex; i--) {
      const cert = path[i] as ParsedCertificate;
      const ca = path[i + 1] as ParsedCertificate;
      const crl = currentCrl(ca, now);
      if (!crl) {
        if (crlMode === 'require') {
          reject('crl_missing', `no valid CRL from ${ca.subject.oneline} to check ${cert.subject.oneline}`);
        }
        continue;
      }
      if (crl.nextUpdate && crl.nextUpdate.getTime() < now.getTime()) {
        reject(
          'crl_expired',
          `the CRL of ${ca.subject.oneline} has expired (nextUpdate ${iso(crl.nextUpdate)})`,
        );
      }
      const revokedAt = crl.revoked.get(cert.serial);
      if (revokedAt) {
        reject(
          'revoked',
          `certificate revoked: ${cert.subject.oneline} (serial ${cert.serial}, revoked ${iso(revokedAt)})`,
        );
      }
    }
  }

  function verifyChain(ders: Buffer[], now: Date = new Date()): VerifyResult {
    try {
      if (ders.length === 0)
        return { ok: false, code: 'no_certificate', reason: 'No client certificate was presented' };
      // counted before anything is parsed: a long chain is refused for its length alone
      if (ders.length > maxPresented) {
        reject(
          'invalid_certificate',
          `too many certificates presented (${ders.length}, at most ${maxPresented})`,
        );
      }
      const presented: ParsedCertificate[] = [];
      const seen = new Set<string>();
      for (const [i, der] of ders.entries()) {
        let cert: ParsedCertificate;
        try {
          cert = parseCertificate(der);
        } catch (err) {
          reject(
            'invalid_certificate',
            `presented certificate #${i + 1} is malformed: ${(err as Error).message}`,
          );
        }
        if (seen.has(cert.fingerprint256)) continue;
        seen.add(cert.fingerprint256);
        // before any signature is checked: a key that is costly to check with is refused for what it is
        if (!trusted.has(cert.fingerprint256)) checkKeyCost(cert);
        presented.push(cert);
      }
      const leaf = presented[0] as ParsedCertificate;
      const path = buildPath(leaf, presented.slice(1), now);
      checkEveryCertificate(path, now);

      // the CAs are the top run of cA=TRUE certificates (the anchor always counts); the next one down is the EEC
      let firstCa = path.length - 1;
      while (firstCa > 0 && (path[firstCa - 1] as ParsedCertificate).basicConstraints?.ca === true) firstCa--;
      const eecIndex = firstCa - 1;
      if (eecIndex < 0)
        reject('invalid_certificate', `the client certificate is a CA certificate: ${leaf.subject.oneline}`);
      checkCas(path, firstCa);
      const eec = path[eecIndex] as ParsedCertificate;
      checkEndEntity(eec);
      for (let i = eecIndex; i >= 0; i--) checkUserKey(path[i] as ParsedCertificate);
      checkNames(path, firstCa, eecIndex);

      if (eecIndex > maxProxyDepth) {
        reject('invalid_proxy', `too many proxies in the chain (${eecIndex}, at most ${maxProxyDepth})`);
      }
      let verdict: ProxyVerdict | undefined;
      for (let i = eecIndex - 1; i >= 0; i--) verdict = checkProxy(path, i, verdict);
      if (!allowsClientAuth(leaf)) {
        reject(
          'invalid_certificate',
          `certificate is not valid for client authentication (extendedKeyUsage): ${leaf.subject.oneline}`,
        );
      }
      checkRevocation(path, eecIndex, now);

      const notAfter = new Date(Math.min(...path.map((c) => c.notAfter.getTime())));
      return {
        ok: true,
        dn: identityDn(eec.subject.rdns),
        dnRfc2253: formatRfc2253(eec.subject.rdns),
        issuerDn: identityDn(eec.issuer.rdns),
        eecSerial: eec.serial,
        proxyType: verdict?.kind ?? 'none',
        proxyDepth: eecIndex,
        limited: verdict?.limited ?? false,
        notAfter,
      };
    } catch (err) {
      if (err instanceof Rejection) return { ok: false, code: err.code, reason: err.message };
      throw err;
    }
  }

  return {
    verifyChain,
    warnings,
    get signatureChecks() {
      return signatureChecks;
    },
  };
}
