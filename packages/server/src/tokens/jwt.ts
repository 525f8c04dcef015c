/**
 * JSON Web Tokens as WLCG's and SciTokens' issuers sign them (RFC 7519, JWS compact form, RFC 7515): decoded
 * strictly and verified against a key of the issuer's, with the claims a bearer token must hold.
 *
 * Traps, each named where it is handled:
 * - `alg: none`, and HMAC with a public key used as the shared secret (the classic confusion): only the
 *   asymmetric algorithms of the allow-list are taken, and the key's type must be the algorithm's.
 * - A token is attacker input read before anyone is known: its size is bounded before it is decoded, and
 *   base64url and JSON are read strictly (no padding, no other alphabet, objects only).
 * - `aud` may be a string or an array; `exp` is required; `nbf` and `iat` in the future are refused beyond a
 *   small clock skew.
 * - ECDSA signatures in a JWS are the raw r||s form (IEEE P1363), not DER.
 */
import { type KeyObject, verify } from 'node:crypto';

/** The algorithms taken: asymmetric only. */
export const JWT_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
] as const;
export type JwtAlgorithm = (typeof JWT_ALGORITHMS)[number];

/** A token larger than this is refused unread (WLCG's profile keeps tokens well under it). */
export const MAX_JWT_BYTES = 8192;

export class JwtError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JwtError';
  }
}

export interface JwtHeader {
  alg: string;
  kid?: string;
  typ?: string;
}

export type JwtClaims = Record<string, unknown> & {
  iss?: string;
  sub?: string;
  aud?: string | string[];
  exp?: number;
  nbf?: number;
  iat?: number;
  scope?: string;
};

export interface DecodedJwt {
  header: JwtHeader;
  claims: JwtClaims;
  /** What the signature covers: `header.payload` as sent. */
  signingInput: string;
  signature: Buffer;
}

const BASE64URL = /^[A-Za-z0-9_-]*$/;

function part(text: string, what: string): Buffer {
  if (!BASE64URL.test(text)) throw new JwtError(`the token's ${what} is not base64url`);
  return Buffer.from(text, 'base64url');
}

function object(bytes: Buffer, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new JwtError(`the token's ${what} is not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new JwtError(`the token's ${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

/** Whether a bearer token looks like a JWT (three base64url parts, the first a JSON object): not a macaroon. */
export const looksLikeJwt = (token: string) =>
  /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/.test(token);

/** The token's parts, read strictly; nothing is trusted yet. */
export function decodeJwt(token: string): DecodedJwt {
  if (Buffer.byteLength(token) > MAX_JWT_BYTES)
    throw new JwtError(`the token is larger than ${MAX_JWT_BYTES} bytes`);
  const parts = token.split('.');
  if (parts.length !== 3) throw new JwtError('the token is not a signed JWT (three parts)');
  const [h = '', p = '', s = ''] = parts;
  const [headerBytes, payloadBytes, signature] = [
    part(h, 'header'),
    part(p, 'payload'),
    part(s, 'signature'),
  ];
  const header = object(headerBytes, 'header');
  if (typeof header.alg !== 'string') throw new JwtError('the token names no algorithm');
  // Refused before any key is looked for: `none`, HMAC, anything not on the list.
  if (!(JWT_ALGORITHMS as readonly string[]).includes(header.alg))
    throw new JwtError(
      `the token's algorithm ${header.alg} is not taken (only ${JWT_ALGORITHMS.join(', ')})`,
    );
  if (header.kid !== undefined && typeof header.kid !== 'string')
    throw new JwtError("the token's kid is not a string");
  if (header.crit !== undefined)
    throw new JwtError('the token has critical header parameters this server does not know');
  return {
    header: header as unknown as JwtHeader,
    claims: object(payloadBytes, 'payload') as JwtClaims,
    signingInput: `${h}.${p}`,
    signature,
  };
}

/** The key type and curve an algorithm needs, and how Node verifies it. */
function schemeOf(alg: string): { type: string; curve?: string; digest: string | null; options: object } {
  switch (alg) {
    case 'RS256':
    case 'RS384':
    case 'RS512':
      return { type: 'rsa', digest: `sha${alg.slice(2)}`, options: {} };
    case 'PS256':
    case 'PS384':
    case 'PS512':
      return {
        type: 'rsa',
        digest: `sha${alg.slice(2)}`,
        options: { padding: 6 /* RSA_PKCS1_PSS_PADDING */, saltLength: Number(alg.slice(2)) / 8 },
      };
    case 'ES256':
      return { type: 'ec', curve: 'prime256v1', digest: 'sha256', options: { dsaEncoding: 'ieee-p1363' } };
    case 'ES384':
      return { type: 'ec', curve: 'secp384r1', digest: 'sha384', options: { dsaEncoding: 'ieee-p1363' } };
    case 'ES512':
      return { type: 'ec', curve: 'secp521r1', digest: 'sha512', options: { dsaEncoding: 'ieee-p1363' } };
    case 'EdDSA':
      return { type: 'ed25519', digest: null, options: {} };
    default:
      // `none`, HS256 (a public key taken for a shared secret), and anything else.
      throw new JwtError(`the token's algorithm ${alg} is not taken (only ${JWT_ALGORITHMS.join(', ')})`);
  }
}

/** Whether `key` can verify `alg`: the right type (and curve), and an RSA key of 2048 bits at least. */
export function keyFits(alg: string, key: KeyObject): boolean {
  let scheme: ReturnType<typeof schemeOf>;
  try {
    scheme = schemeOf(alg);
  } catch {
    return false;
  }
  const type = key.asymmetricKeyType;
  if (key.type !== 'public') return false;
  if (scheme.type === 'rsa')
    return (type === 'rsa' || type === 'rsa-pss') && (key.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048;
  if (type !== scheme.type) return false;
  return scheme.curve === undefined || key.asymmetricKeyDetails?.namedCurve === scheme.curve;
}

/** Checks the signature of a decoded token with `key`; throws JwtError if it does not verify. */
export function checkSignature(token: DecodedJwt, key: KeyObject): void {
  const scheme = schemeOf(token.header.alg);
  if (!keyFits(token.header.alg, key))
    throw new JwtError(
      `the issuer's key ${token.header.kid ?? ''} is not a key for ${token.header.alg}`.replace('  ', ' '),
    );
  const ok = verify(
    scheme.digest,
    Buffer.from(token.signingInput),
    { key, ...scheme.options },
    token.signature,
  );
  if (!ok) throw new JwtError('the token was not signed by its issuer, or was altered');
}

export interface ClaimRules {
  issuer: string;
  /** The audiences taken; the token's `aud` must name one of them. */
  audiences: readonly string[];
  /** Seconds of clock difference allowed either way. */
  clockSkewSeconds: number;
  now?: Date;
}

/** Checks the registered claims; throws JwtError with what is wrong. */
export function checkClaims(claims: JwtClaims, rules: ClaimRules): void {
  const now = Math.floor((rules.now ?? new Date()).getTime() / 1000);
  const skew = rules.clockSkewSeconds;
  if (claims.iss !== rules.issuer)
    throw new JwtError(`the token's issuer ${String(claims.iss)} is not ${rules.issuer}`);
  const aud = typeof claims.aud === 'string' ? [claims.aud] : Array.isArray(claims.aud) ? claims.aud : null;
  if (!aud?.some((a) => typeof a === 'string' && rules.audiences.includes(a)))
    throw new JwtError(`the token is not for this server (aud ${JSON.stringify(claims.aud ?? null)})`);
  const time = (name: 'exp' | 'nbf' | 'iat') => {
    const value = claims[name];
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isFinite(value))
      throw new JwtError(`the token's ${name} is not a number`);
    return value;
  };
  const exp = time('exp');
  if (exp === undefined) throw new JwtError('the token has no expiry (exp)');
  if (exp <= now - skew) throw new JwtError(`the token expired at ${new Date(exp * 1000).toISOString()}`);
  const nbf = time('nbf');
  if (nbf !== undefined && nbf > now + skew)
    throw new JwtError(`the token is not valid before ${new Date(nbf * 1000).toISOString()}`);
  const iat = time('iat');
  if (iat !== undefined && iat > now + skew) throw new JwtError('the token was issued in the future (iat)');
}
