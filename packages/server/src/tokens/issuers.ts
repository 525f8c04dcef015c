/**
 * The keys of trusted token issuers (WLCG's INDIGO IAM, SciTokens, any OpenID Connect provider): found
 * through the issuer's discovery document (`/.well-known/openid-configuration`, its `jwks_uri`), kept, and
 * fetched again when a token names a key not seen yet, at most once a minute per issuer, however many tokens
 * ask: a stranger's made-up `kid` must not make this server fetch without limit.
 *
 * Traps:
 * - A token's `iss` is read before its signature is checked: it only chooses among the configured issuers,
 *   whose keys then decide.
 * - Keys come as JWK; one without `kid` serves tokens without one only if it is the issuer's only key; keys
 *   meant for encryption (`use: enc`) are not taken for signatures.
 * - The issuer's documents are bounded (64 KiB) and fetched with a timeout, over HTTPS (plain HTTP only for an
 *   issuer on loopback, as tests and a local issuer have it).
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { checkClaims, checkSignature, type DecodedJwt, decodeJwt, JwtError, keyFits } from './jwt.ts';

export interface TrustedIssuer {
  /** The `iss` its tokens carry, and where its discovery document is. */
  url: string;
  audiences: string[];
}

/** How the issuers' documents are fetched (tests and the server pass the same function, with its TLS trust). */
export type FetchJson = (url: string) => Promise<unknown>;

const MIN_REFRESH_MS = 60_000;
/** Keys are fetched again after this long even when they are known: a key the issuer withdrew stops working. */
const MAX_KEY_AGE_MS = 3600_000;

/** What browser sign-in needs of an issuer's discovery document. */
export interface IssuerEndpoints {
  authorization: string;
  token: string;
  endSession: string | null;
}

interface IssuerKeys {
  keys: Map<string, KeyObject>;
  endpoints: IssuerEndpoints | null;
  /** The key of an issuer that has one key without `kid`. */
  only: KeyObject | null;
  fetched: number;
  pending: Promise<void> | null;
}

const isLoopback = (url: URL) => ['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname);

/**
 * A URL the issuer's discovery document names: https, or plain http on loopback for an issuer that is itself on
 * loopback (a local or test issuer); an issuer elsewhere cannot send this server to its own loopback.
 */
function checkedUrl(text: unknown, what: string, issuer: string): string {
  if (typeof text !== 'string') throw new JwtError(`the issuer's ${what} is missing`);
  const url = new URL(text);
  if (isLoopback(url) && !isLoopback(new URL(issuer)))
    throw new JwtError(`the issuer's ${what} ${text} is on this server's loopback`);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url)))
    throw new JwtError(`the issuer's ${what} ${text} is not https`);
  return url.href;
}

export function createIssuerKeys(deps: {
  issuers: readonly TrustedIssuer[];
  fetchJson: FetchJson;
  now?: () => number;
  /** Keys are fetched again at most this often per issuer (a minute by default). */
  minRefreshMs?: number;
}) {
  const minRefreshMs = deps.minRefreshMs ?? MIN_REFRESH_MS;
  const now = deps.now ?? Date.now;
  const byIssuer = new Map<string, IssuerKeys>();

  async function refresh(issuer: TrustedIssuer, state: IssuerKeys) {
    const discovery = (await deps.fetchJson(
      `${issuer.url.replace(/\/+$/, '')}/.well-known/openid-configuration`,
    )) as Record<string, unknown>;
    if (discovery.issuer !== issuer.url)
      throw new JwtError(
        `the discovery document of ${issuer.url} names another issuer, ${String(discovery.issuer)}`,
      );
    const jwks = (await deps.fetchJson(checkedUrl(discovery.jwks_uri, 'jwks_uri', issuer.url))) as {
      keys?: unknown;
    };
    const optional = (name: string) => {
      try {
        return checkedUrl(discovery[name], name, issuer.url);
      } catch {
        return null;
      }
    };
    const [authorization, token] = [optional('authorization_endpoint'), optional('token_endpoint')];
    state.endpoints =
      authorization && token ? { authorization, token, endSession: optional('end_session_endpoint') } : null;
    const keys = new Map<string, KeyObject>();
    const kidless: KeyObject[] = [];
    for (const jwk of Array.isArray(jwks.keys) ? jwks.keys : []) {
      if (typeof jwk !== 'object' || jwk === null) continue;
      const entry = jwk as Record<string, unknown>;
      if (entry.use !== undefined && entry.use !== 'sig') continue;
      let key: KeyObject;
      try {
        key = createPublicKey({ key: entry as import('node:crypto').JsonWebKey, format: 'jwk' });
      } catch {
        continue; // a key this server cannot read verifies nothing
      }
      if (typeof entry.kid === 'string') keys.set(entry.kid, key);
      else kidless.push(key);
    }
    state.keys = keys;
    state.only = kidless.length === 1 && keys.size === 0 ? (kidless[0] as KeyObject) : null;
  }

  function stateOf(issuer: TrustedIssuer): IssuerKeys {
    let state = byIssuer.get(issuer.url);
    if (!state) {
      state = { keys: new Map(), endpoints: null, only: null, fetched: 0, pending: null };
      byIssuer.set(issuer.url, state);
    }
    return state;
  }

  /** Fetches the issuer's documents again, unless that was done under a minute ago (or is under way). */
  async function refreshBounded(issuer: TrustedIssuer, state: IssuerKeys): Promise<void> {
    if (!state.pending && now() - state.fetched >= minRefreshMs) {
      state.fetched = now();
      state.pending = refresh(issuer, state).finally(() => {
        state.pending = null;
      });
    }
    if (state.pending) await state.pending;
  }

  /** The issuer's key for `kid`, fetching the keys again if it is not known and a minute has passed. */
  async function keyOf(issuer: TrustedIssuer, kid: string | undefined): Promise<KeyObject | null> {
    const state = stateOf(issuer);
    const known = () => (kid === undefined ? state.only : (state.keys.get(kid) ?? null));
    if (known() && now() - state.fetched < MAX_KEY_AGE_MS) return known();
    // Unknown, or known for an hour: fetched again (at the bounded rate). If the issuer cannot be reached, the
    // keys it last gave stay in use.
    await refreshBounded(issuer, state).catch((error: unknown) => {
      if (!known()) throw error;
    });
    return known();
  }

  return {
    /**
     * The token verified: by a configured issuer's key, with its registered claims holding. The issuer it
     * came from and its claims; JwtError otherwise.
     */
    async verify(
      token: string,
      options: { clockSkewSeconds: number; now?: Date; audiences?: readonly string[] },
    ) {
      const decoded: DecodedJwt = decodeJwt(token);
      const issuer = deps.issuers.find((i) => i.url === decoded.claims.iss);
      if (!issuer) throw new JwtError(`the token's issuer ${String(decoded.claims.iss)} is not trusted here`);
      const key = await keyOf(issuer, decoded.header.kid);
      if (!key || !keyFits(decoded.header.alg, key))
        throw new JwtError(
          `${issuer.url} has no key ${decoded.header.kid ?? '(unnamed)'} for ${decoded.header.alg} (or it was fetched under a minute ago)`,
        );
      checkSignature(decoded, key);
      checkClaims(decoded.claims, {
        issuer: issuer.url,
        audiences: options.audiences ?? issuer.audiences,
        clockSkewSeconds: options.clockSkewSeconds,
        ...(options.now ? { now: options.now } : {}),
      });
      return { issuer, claims: decoded.claims };
    },

    /** The issuer's sign-in endpoints, from its discovery document (fetched as the keys are); null if none. */
    async endpoints(url: string): Promise<IssuerEndpoints | null> {
      const issuer = deps.issuers.find((i) => i.url === url);
      if (!issuer) return null;
      const state = stateOf(issuer);
      if (!state.endpoints) await refreshBounded(issuer, state).catch(() => {});
      return state.endpoints;
    },
  };
}

export type IssuerKeyStore = ReturnType<typeof createIssuerKeys>;
