/**
 * Bearer tokens (JWTs) of trusted issuers, and the identities they name: who a token acts as, what its scopes
 * allow, the identities linked to each user, and browser sessions signed in with an issuer
 * (docs/authentication.md#tokens).
 *
 * - **identity** issuers: `iss`+`sub` is linked to a Repoman user (by an admin, by the user while signed in
 *   with both, or at first use where the issuer is trusted to make users). The token acts as that user, with
 *   the groups its `wlcg.groups` map to; its storage scopes, if it has any, narrow what it may do.
 * - **capability** issuers: the token's storage scopes authorize on their own, whoever its `sub` is (FTS's
 *   client-credential tokens name no user), below the issuer's base path, as the issuer's service user: that
 *   user owns what such a token creates, and nothing lets it do more than that user may.
 *
 * Traps:
 * - Scopes narrow admins too: an admin's token with `storage.read:/bob` reads Bob's namespace and nothing else.
 * - A token with scopes is good only where a request names a storage path (images, namespaces, their bytes):
 *   the rest of the API (users, groups, capabilities) has no path a scope could name, so it is refused.
 * - An issuer that cannot be reached fails the token (401), never the server; its keys are fetched at most once
 *   a minute (tokens/issuers.ts), however many strangers send made-up key ids.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  type Credential,
  checkAccountName,
  isPermission,
  type Permission,
  RepomanError,
  USERS_GROUP,
} from '@repoman/core';
import type { Actor } from '../authz.ts';
import type { TokenIssuer } from '../config.ts';
import { addMember, findGroupByName } from '../db/groups-dal.ts';
import type { Db } from '../db/schema.ts';
import {
  attachSessions,
  countSignIns,
  deleteExpiredSessions,
  deleteSession,
  deleteTokenIdentity,
  detachSessions,
  findSession,
  findUserByTokenIdentity,
  groupsWithPermissions,
  insertSession,
  insertSignIn,
  insertTokenIdentity,
  TOKEN_ONLY_DN_PREFIX,
  takeSignIn,
  tokenIdentitiesOfUser,
} from '../db/tokens-dal.ts';
import { findUserByName, insertUser } from '../db/users-dal.ts';
import { createIssuerKeys, type FetchJson } from '../tokens/issuers.ts';
import { type JwtClaims, JwtError } from '../tokens/jwt.ts';
import {
  describeScopes,
  mappedGroups,
  type StorageScope,
  scopesAllow,
  storageScopesOf,
} from '../tokens/scopes.ts';
import { guardService } from './common.ts';
import type { IdentityService } from './identity.ts';

/** What a request asks of a token, as the HTTP layer reads it (http/token-auth.ts). */
export interface StorageRequest {
  /** The repository paths it acts on (`/`, `/bob`, `/bob/rhel.img`); empty: none (it only asks who is calling). */
  paths: string[];
  /** It changes something (else it reads). */
  change: boolean;
  /** The image a change would make if it is not there yet (storage.create allows only that). */
  creates?: { owner: string; image: string } | undefined;
  /** It makes a collection (a namespace, MKCOL), which storage.create allows. */
  collection?: boolean;
}

/** How a request was authenticated with a token or session, for the audit log and whoami. */
export type TokenCredential = Credential & { kind: 'token' | 'session'; issuer: string };

export interface TokenPolicy {
  issuers: TokenIssuer[];
  clockSkewSeconds: number;
  sessionSeconds: number;
  keyRefreshSeconds: number;
  /** The server's own URL: the audience of an issuer that names none. */
  serverUrl: () => string;
}

const SIGN_IN_SECONDS = 600;
/**
 * Sign-ins under way at once, at most, from one address and in all: anyone may start one, and each is a row
 * for ten minutes (and, at its callback, one request to the issuer).
 */
const MAX_SIGN_INS_PER_ADDRESS = 20;
const MAX_SIGN_INS = 10_000;
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const random = () => randomBytes(32).toString('base64url');

/** Documents of issuers are small: a bigger answer is refused unread (64 KiB), and each waits 10 s at most. */
export const fetchIssuerJson: FetchJson = async (url) => {
  const response = await fetch(url, {
    redirect: 'error',
    signal: AbortSignal.timeout(10_000),
    headers: { accept: 'application/json' },
  });
  if (!response.ok) throw new Error(`${url} answered ${response.status}`);
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of response.body ?? []) {
    size += chunk.length;
    if (size > 65536) throw new Error(`${url} sent more than 64 KiB`);
    chunks.push(chunk);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
};

export function createTokenService(deps: {
  db: Db;
  identity: IdentityService;
  policy: TokenPolicy;
  defaultQuota?: number | null | undefined;
  fetchJson?: FetchJson | undefined;
  now?: () => Date;
}) {
  const { db, identity, policy } = deps;
  const now = deps.now ?? (() => new Date());
  const issuers = policy.issuers;
  const keys = createIssuerKeys({
    issuers: issuers.map((i) => ({
      url: i.url,
      get audiences() {
        return i.audiences.length > 0 ? i.audiences : [policy.serverUrl()];
      },
    })),
    fetchJson: deps.fetchJson ?? fetchIssuerJson,
    minRefreshMs: policy.keyRefreshSeconds * 1000,
  });
  const issuerOf = (url: string) => issuers.find((i) => i.url === url);

  /** Verifies a token (or an ID token, with its own audience); RepomanError with a clear code if it fails. */
  async function verified(token: string, audiences?: readonly string[]) {
    try {
      const { issuer, claims } = await keys.verify(token, {
        clockSkewSeconds: policy.clockSkewSeconds,
        ...(audiences ? { audiences } : {}),
      });
      return { issuer: issuerOf(issuer.url) as TokenIssuer, claims };
    } catch (error) {
      if (!(error instanceof JwtError))
        throw new RepomanError(
          'token_invalid',
          "The token's issuer could not be asked for its keys; try again later",
        );
      const expired = /expired|not valid before|issued in the future/.test(error.message);
      throw new RepomanError(expired ? 'token_expired' : 'token_invalid', `The token: ${error.message}`);
    }
  }

  /** A user for an identity the issuer is trusted to make users for: named after preferred_username if free. */
  async function createUserFor(issuer: TokenIssuer, subject: string, claims: JwtClaims): Promise<number> {
    const wanted =
      typeof claims.preferred_username === 'string' ? claims.preferred_username.toLowerCase() : '';
    const fallback = `u-${sha256(`${issuer.url}\n${subject}`).slice(0, 12)}`;
    // A configured service user's name is never taken from a token, even before an admin creates that user.
    const reserved = new Set(issuers.map((i) => i.user).filter((u): u is string => u !== undefined));
    const candidates =
      checkAccountName(wanted) === null && !reserved.has(wanted)
        ? [wanted, `${wanted}-${fallback.slice(2, 8)}`]
        : [];
    candidates.push(fallback);
    const made = db.transaction().execute(async (trx) => {
      const linked = await findUserByTokenIdentity(trx, issuer.url, subject);
      if (linked) return linked.id;
      let name: string | undefined;
      for (const candidate of candidates)
        if (!(await findUserByName(trx, candidate))) {
          name = candidate;
          break;
        }
      if (!name) throw new RepomanError('user_exists', `No free user name for ${subject} of ${issuer.url}`);
      const at = now().toISOString();
      const row = await insertUser(trx, {
        name,
        dn: `${TOKEN_ONLY_DN_PREFIX}${random()}`,
        full_name: typeof claims.name === 'string' ? claims.name.slice(0, 200) : null,
        email: typeof claims.email === 'string' ? claims.email.slice(0, 200) : null,
        suspended: false,
        quota: deps.defaultQuota ?? null,
        created: at,
        modified: at,
      });
      const users = await findGroupByName(trx, USERS_GROUP);
      if (users) await addMember(trx, users.id, row.id);
      await insertTokenIdentity(trx, { user_id: row.id, issuer: issuer.url, subject, created: at });
      return row.id;
    });
    // Two first uses at once: one makes the user, the other finds the link it made.
    return made.catch(async (error: unknown) => {
      const linked = await findUserByTokenIdentity(db, issuer.url, subject);
      if (linked) return linked.id;
      throw error;
    });
  }

  /** The user an identity token names (made at first use where allowed), as they are now. */
  async function userOf(issuer: TokenIssuer, claims: JwtClaims): Promise<Actor> {
    const subject = claims.sub;
    if (typeof subject !== 'string' || subject === '')
      throw new RepomanError('token_invalid', 'The token names no subject (sub)');
    let userId = await identity.userOfTokenIdentity(issuer.url, subject);
    if (userId === null && issuer.createUsers) {
      userId = await createUserFor(issuer, subject, claims);
      await identity.forget();
    }
    if (userId === null)
      throw new RepomanError(
        'unknown_token_identity',
        `No Repoman user is linked to ${subject} of ${issuer.url}; send these to a Repoman administrator, or link them on your account page while signed in with your certificate`,
        { details: { issuer: issuer.url, subject } },
      );
    return identity.actorForUser(userId);
  }

  /** The actor with the groups a token's `wlcg.groups` map to, and what those groups grant. */
  async function withGroups(actor: Actor, issuer: TokenIssuer, claims: JwtClaims): Promise<Actor> {
    const names = mappedGroups(claims['wlcg.groups'], { map: issuer.groupMap, prefix: issuer.groupPrefix });
    const extra = names.filter((n) => !actor.groups.has(n));
    if (extra.length === 0) return actor;
    const found = await groupsWithPermissions(db, extra);
    if (found.size === 0) return actor;
    const permissions = new Set<Permission>(actor.permissions);
    for (const granted of found.values()) for (const p of granted) if (isPermission(p)) permissions.add(p);
    return { ...actor, groups: new Set([...actor.groups, ...found.keys()]), permissions };
  }

  /** Whether the scopes allow the request (create: only an image not there yet). */
  async function allowed(scopes: StorageScope[], request: StorageRequest): Promise<boolean> {
    const paths = request.paths;
    if (!request.change) return scopesAllow(scopes, { operation: 'read', paths });
    if (scopesAllow(scopes, { operation: 'modify', paths })) return true;
    if (request.collection) return scopesAllow(scopes, { operation: 'create', paths });
    if (!request.creates || !scopesAllow(scopes, { operation: 'create', paths })) return false;
    const exists = await db
      .selectFrom('images')
      .innerJoin('users', 'users.id', 'images.owner_id')
      .select('images.id')
      .where('users.name', '=', request.creates.owner)
      .where('images.name', '=', request.creates.image)
      .executeTakeFirst();
    return exists === undefined;
  }

  return guardService({
    /** Issuers browsers may sign in with (they have a client). */
    async signInIssuers(): Promise<{ url: string; name: string }[]> {
      return issuers.filter((i) => i.clientId !== undefined).map((i) => ({ url: i.url, name: i.name }));
    },

    /**
     * The actor and credential of a bearer JWT, for a request that asks `request(actorName)` of it; a clear
     * refusal otherwise.
     */
    async authenticate(
      token: string,
      request: (actorName: string) => StorageRequest | null,
    ): Promise<{ actor: Actor; credential: TokenCredential }> {
      const { issuer, claims } = await verified(token);
      const scopes = storageScopesOf(claims.scope, issuer.basePath);
      let actor: Actor;
      if (issuer.mode === 'capability') {
        if (scopes === null)
          throw new RepomanError(
            'token_denied',
            `A token of ${issuer.url} authorizes by its storage scopes, and this one has none`,
          );
        actor = await identity.actorForUserName(issuer.user as string);
      } else {
        actor = await withGroups(await userOf(issuer, claims), issuer, claims);
      }
      const credential: TokenCredential = {
        kind: 'token',
        id: typeof claims.jti === 'string' ? claims.jti.slice(0, 200) : null,
        issuer: issuer.url,
        subject: typeof claims.sub === 'string' ? claims.sub : null,
        scopes: scopes === null ? null : describeScopes(scopes),
      };
      if (scopes !== null) {
        const asked = request(actor.name);
        if (asked === null)
          throw new RepomanError(
            'token_denied',
            `A token with storage scopes (${describeScopes(scopes)}) is good only for the image bytes' URLs (/api/images/raw/…), reads of images, and whoami; for this, use a certificate or a token without storage scopes`,
          );
        if (!(await allowed(scopes, asked)))
          throw new RepomanError(
            'token_denied',
            `The token's scopes (${describeScopes(scopes)}) do not allow ${asked.change ? 'changing' : 'reading'} ${asked.paths.join(' and ')}`,
            { details: { scopes: describeScopes(scopes) } },
          );
      }
      return { actor, credential };
    },

    // ---- linked identities ----

    async identitiesOf(userId: number) {
      return (await tokenIdentitiesOfUser(db, userId)).map((row) => ({
        id: row.id,
        issuer: row.issuer,
        subject: row.subject,
        created: row.created,
        last_used: row.last_used,
      }));
    },

    /** Links an identity of a configured issuer to a user (the caller has been authorized). */
    async link(userId: number, issuerUrl: string, subject: string) {
      if (!issuerOf(issuerUrl))
        throw new RepomanError('invalid_field', `${issuerUrl} is not a trusted issuer of this server`, {
          details: { field: 'issuer' },
        });
      if (subject === '' || subject.length > 255)
        throw new RepomanError('invalid_field', 'subject must be 1 to 255 characters', {
          details: { field: 'subject' },
        });
      const at = now().toISOString();
      const row = await db.transaction().execute(async (trx) => {
        const taken = await findUserByTokenIdentity(trx, issuerUrl, subject);
        if (taken)
          throw new RepomanError('identity_linked', `${subject} of ${issuerUrl} is linked to ${taken.name}`);
        const made = await insertTokenIdentity(trx, {
          user_id: userId,
          issuer: issuerUrl,
          subject,
          created: at,
        });
        await attachSessions(trx, issuerUrl, subject, userId);
        return made;
      });
      await identity.forget();
      return { id: row.id, issuer: row.issuer, subject: row.subject, created: row.created, last_used: null };
    },

    async unlink(userId: number, id: number): Promise<{ issuer: string; subject: string }> {
      const rows = await tokenIdentitiesOfUser(db, userId);
      const row = rows.find((r) => r.id === id);
      if (!row || !(await deleteTokenIdentity(db, userId, id)))
        throw new RepomanError('identity_not_found', `The user has no linked identity ${id}`);
      await detachSessions(db, row.issuer, row.subject);
      await identity.forget();
      return { issuer: row.issuer, subject: row.subject };
    },

    // ---- browser sign-in (OpenID Connect, authorization code with PKCE) ----

    /** Starts a sign-in: where to send the browser, and the secret its cookie keeps (binds the callback). */
    async startSignIn(
      issuerUrl: string,
      from: { returnTo: string; callbackUrl: string; address: string; startedBy: number | null },
    ): Promise<{ location: string; binding: string }> {
      const issuer = issuerOf(issuerUrl);
      if (!issuer?.clientId) throw new RepomanError('not_found', `No sign-in with ${issuerUrl} here`);
      const endpoints = await keys.endpoints(issuer.url);
      if (!endpoints)
        throw new RepomanError(
          'identity_provider_unavailable',
          `${issuer.name} cannot be reached for signing in; try again later`,
        );
      const at = now().toISOString();
      await deleteExpiredSessions(db, at);
      const pending = await countSignIns(db, from.address);
      if (pending.here >= MAX_SIGN_INS_PER_ADDRESS || pending.all >= MAX_SIGN_INS)
        throw new RepomanError(
          'too_many_sign_ins',
          'Too many sign-ins are under way from here; finish one, or try again in a few minutes',
        );
      const [binding, verifier, nonce] = [random(), random(), random()];
      const state = sha256(`state\n${binding}`);
      await insertSignIn(db, {
        state,
        issuer: issuer.url,
        verifier,
        nonce,
        return_to: from.returnTo,
        started_by: from.startedBy,
        address: from.address,
        expires: new Date(now().getTime() + SIGN_IN_SECONDS * 1000).toISOString(),
      });
      const url = new URL(endpoints.authorization);
      url.search = new URLSearchParams({
        response_type: 'code',
        client_id: issuer.clientId,
        redirect_uri: from.callbackUrl,
        scope: 'openid profile email',
        state,
        nonce,
        code_challenge: createHash('sha256').update(verifier).digest('base64url'),
        code_challenge_method: 'S256',
      }).toString();
      return { location: url.href, binding };
    },

    /**
     * Finishes a sign-in: the state must be the one this browser's cookie was given, the code is exchanged with
     * the PKCE verifier, the ID token verified (issuer's key, audience our client, the nonce we sent). Makes a
     * session; returns its cookie secret, where to go, and who signed in.
     */
    async finishSignIn(
      query: { state?: string; code?: string; error?: string; error_description?: string },
      binding: string | undefined,
      callbackUrl: string,
    ) {
      const failed = (why: string) => new RepomanError('sign_in_failed', `Signing in failed: ${why}`);
      // Only the browser that started the sign-in is answered in any detail (the provider's words included).
      if (!query.state || !binding || sha256(`state\n${binding}`) !== query.state)
        throw failed('this browser did not start this sign-in (or its cookie is gone); start again');
      const started = await takeSignIn(db, query.state, now().toISOString());
      if (!started) throw failed('the sign-in expired or was already used; start again');
      if (query.error)
        throw failed(
          `the identity provider said ${query.error}${query.error_description ? ` (${query.error_description.slice(0, 200)})` : ''}`,
        );
      if (!query.code) throw failed('the answer has no code');
      const issuer = issuerOf(started.issuer);
      const endpoints = issuer ? await keys.endpoints(issuer.url) : null;
      if (!issuer?.clientId || !endpoints)
        throw failed(`${started.issuer} is no longer configured or reachable`);
      const body = new URLSearchParams({
        grant_type: 'authorization_code',
        code: query.code,
        redirect_uri: callbackUrl,
        code_verifier: started.verifier,
        client_id: issuer.clientId,
      });
      const headers: Record<string, string> = {
        'content-type': 'application/x-www-form-urlencoded',
        accept: 'application/json',
      };
      if (issuer.clientSecret !== undefined)
        headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(issuer.clientId)}:${encodeURIComponent(issuer.clientSecret)}`).toString('base64')}`;
      let answer: { id_token?: unknown; error?: unknown };
      try {
        const response = await fetch(endpoints.token, {
          method: 'POST',
          body,
          headers,
          redirect: 'error',
          signal: AbortSignal.timeout(10_000),
        });
        answer = (await response.json()) as typeof answer;
        if (!response.ok) throw new Error(`${response.status} ${String(answer.error ?? '')}`);
      } catch (error) {
        throw failed(`the code could not be exchanged at ${endpoints.token} (${(error as Error).message})`);
      }
      if (typeof answer.id_token !== 'string') throw failed('the identity provider sent no ID token');
      const { claims } = await verified(answer.id_token, [issuer.clientId]);
      if (claims.nonce !== started.nonce) throw failed('the ID token is not the one this sign-in asked for');
      const subject = String(claims.sub ?? '');
      if (subject === '') throw failed('the ID token names no subject');
      let userId = await identity.userOfTokenIdentity(issuer.url, subject);
      if (userId === null && issuer.createUsers && issuer.mode === 'identity')
        userId = await createUserFor(issuer, subject, claims);
      const secret = random();
      const name =
        [claims.preferred_username, claims.name, claims.email].find(
          (v): v is string => typeof v === 'string',
        ) ?? subject;
      const at = now();
      await deleteExpiredSessions(db, at.toISOString());
      await insertSession(db, {
        id: sha256(secret),
        user_id: issuer.mode === 'identity' ? userId : null,
        issuer: issuer.url,
        subject,
        name: name.slice(0, 200),
        started_by: started.started_by,
        created: at.toISOString(),
        expires: new Date(at.getTime() + policy.sessionSeconds * 1000).toISOString(),
      });
      return { secret, returnTo: started.return_to, maxAgeSeconds: policy.sessionSeconds };
    },

    /** The session a cookie's secret names, if unexpired: its user (if linked) and identity. */
    async session(secret: string) {
      const row = await findSession(db, sha256(secret), now().toISOString());
      if (!row) return null;
      const credential: TokenCredential = {
        kind: 'session',
        id: row.id.slice(0, 12),
        issuer: row.issuer,
        subject: row.subject,
        scopes: null,
      };
      return { userId: row.user_id, name: row.name, startedBy: row.started_by, credential };
    },

    async signOut(secret: string): Promise<string | null> {
      const row = await findSession(db, sha256(secret), now().toISOString());
      await deleteSession(db, sha256(secret));
      if (!row) return null;
      return (await keys.endpoints(row.issuer).catch(() => null))?.endSession ?? null;
    },
  });
}

export type TokenService = ReturnType<typeof createTokenService>;
