/**
 * Authentication, decided in `onRequest` (before a byte of the body is read). The TLS layer has already
 * verified the client's chain once per connection (pki/tls-auth.ts); here that verdict becomes an actor.
 */
import type { TLSSocket } from 'node:tls';
import { type Credential, RepomanError } from '@repoman/core';
import type { FastifyRequest } from 'fastify';
import type { Actor } from '../authz.ts';
import { certificateAuthOf } from '../pki/tls-auth.ts';
import type { CapabilityService } from '../services/capabilities.ts';
import type { IdentityService } from '../services/identity.ts';
import type { TokenService } from '../services/tokens.ts';
import { looksLikeJwt } from '../tokens/jwt.ts';
import { capabilityFacts, capabilityOf } from './capability-auth.ts';
import { storageRequestOf } from './token-auth.ts';

/** The browser session's cookie (docs/authentication.md#browser-sign-in). */
/** `__Host-`: set only over HTTPS, for this host and path `/`: no sibling domain or plain-HTTP page plants it. */
export const SESSION_COOKIE = '__Host-repoman_session';

/** A cookie's value from the request's Cookie header. */
export function cookieOf(request: FastifyRequest, name: string): string | undefined {
  const header = request.headers.cookie;
  if (typeof header !== 'string') return undefined;
  for (const pair of header.split(';')) {
    const at = pair.indexOf('=');
    if (at > 0 && pair.slice(0, at).trim() === name) return pair.slice(at + 1).trim() || undefined;
  }
  return undefined;
}

/**
 * `user`: a known, active user is required (the default); `optional`: anonymous callers get `actor = null`;
 * `none`: nobody is looked up (the web interface's files, the same for everyone).
 */
export type AuthMode = 'user' | 'optional' | 'none';

declare module 'fastify' {
  interface FastifyRequest {
    actor: Actor | null;
    /**
     * On routes open to everyone: why a presented certificate was not taken (unknown, suspended, invalid).
     * Told to the caller when what they asked for is not public, rather than a bare 404.
     */
    authRefusal: RepomanError | null;
    /** The id of the capability the request was authorized with, or null (a certificate, or nobody). */
    capability: string | null;
    /** How the actor was authenticated; null for nobody. */
    credential: Credential | null;
    /**
     * On a route that links identities: the token identity (a bearer JWT's or the browser session's) offered
     * beside the certificate that authenticated the actor.
     */
    offeredIdentity: { issuer: string; subject: string } | null;
  }
  interface FastifyContextConfig {
    auth?: AuthMode;
    /** Served on the plain-HTTP port too (public image downloads only). */
    plainHttp?: boolean;
    /** The handler reads the body itself, after deciding from the headers (it answers Expect: 100-continue). */
    streamsBody?: boolean;
    /**
     * The actor comes from the certificate, and a token or session beside it is the identity offered to link
     * (POST /api/whoami/identities).
     */
    linksIdentity?: boolean;
  }
}

/** Methods that change nothing (WebDAV's PROPFIND reads properties). */
export const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'PROPFIND']);

export function isTls(request: FastifyRequest): boolean {
  return Boolean((request.raw.socket as TLSSocket).encrypted);
}

/**
 * Browsers send a user's certificate with any request to the server, including a form another site submits
 * (cross-site request forgery). A change is taken only from the server's own pages, or from clients that are
 * not browsers (curl, the repoman client), which send neither `Sec-Fetch-Site` nor `Origin`.
 */
export function refuseCrossSite(request: FastifyRequest): void {
  if (READ_METHODS.has(request.method)) return;
  const site = request.headers['sec-fetch-site'];
  const origin = request.headers.origin;
  const own = `${isTls(request) ? 'https' : 'http'}://${request.headers.host ?? ''}`;
  const foreign =
    site !== undefined ? site !== 'same-origin' && site !== 'none' : origin !== undefined && origin !== own;
  if (foreign)
    throw new RepomanError(
      'cross_site_request',
      `A ${request.method} from ${origin ?? `a ${site} page`} is refused: changes are taken from Repoman's own pages and from non-browser clients only`,
    );
}

type AuthServices = { identity: IdentityService; capabilities: CapabilityService; tokens: TokenService };

export async function authenticate(request: FastifyRequest, services: AuthServices): Promise<void> {
  const mode: AuthMode = request.routeOptions.config.auth ?? 'user';
  request.actor = null;
  request.authRefusal = null;
  request.capability = null;
  request.credential = null;
  request.offeredIdentity = null;
  refuseCrossSite(request);
  const token = capabilityOf(request);
  if (mode === 'none') return;
  if (request.routeOptions.config.linksIdentity) return linkingAuth(request, services, token);
  if (token !== null && looksLikeJwt(token)) {
    // A bearer JWT, when one comes, decides (with a certificate beside it too), as a capability does.
    if (!isTls(request)) throw new RepomanError('https_required', 'Bearer tokens are taken over HTTPS only');
    const granted = await services.tokens.authenticate(token, (actor) => storageRequestOf(request, actor));
    request.actor = granted.actor;
    request.credential = granted.credential;
    return;
  }
  if (token !== null) {
    // A capability, when one comes, decides (with a certificate beside it too): it is the narrower of the two.
    if (!isTls(request))
      throw new RepomanError(
        'https_required',
        'Capabilities are taken over HTTPS only: they are bearer tokens',
      );
    const granted = await services.capabilities.authenticate(token, (owner) =>
      capabilityFacts(request, owner),
    );
    request.actor = granted.actor;
    request.capability = granted.capability;
    request.credential = { kind: 'capability', id: granted.capability };
    return;
  }
  const { identity } = services;
  if (!isTls(request)) {
    if (request.routeOptions.config.plainHttp) return; // public image downloads: the only thing plain HTTP serves
    throw new RepomanError(
      'https_required',
      'Plain HTTP serves public images only; use HTTPS with your certificate',
    );
  }
  try {
    request.actor = await actorOf(request, identity);
    const verdict = certificateAuthOf(request.raw.socket as TLSSocket);
    request.credential = { kind: verdict.ok && verdict.proxyDepth > 0 ? 'proxy' : 'certificate', id: null };
  } catch (error) {
    // No certificate, or one of nobody here: a browser signed in with an issuer is its session's user.
    if (await sessionAuth(request, services, error)) return;
    // Routes open to everyone stay open to a caller whose certificate is refused or unknown.
    const refused =
      error instanceof RepomanError &&
      (error.status === 401 ||
        error.code === 'unknown_certificate' ||
        error.code === 'user_suspended' ||
        error.code === 'certificate_issuer_mismatch');
    if (mode === 'optional' && refused) {
      if (error.code !== 'certificate_required') request.authRefusal = error;
      return;
    }
    throw error;
  }
}

/**
 * A browser without a certificate (or with one of nobody here) signed in with an issuer: its session's user.
 * True if the session decided; the certificate's refusal stands otherwise. A session of an identity linked to
 * no user is refused as such, saying how to link it.
 */
async function sessionAuth(
  request: FastifyRequest,
  services: AuthServices,
  refusal: unknown,
): Promise<boolean> {
  const secret = cookieOf(request, SESSION_COOKIE);
  if (secret === undefined) return false;
  const noCertificate =
    refusal instanceof RepomanError && ['certificate_required', 'unknown_certificate'].includes(refusal.code);
  if (!noCertificate) return false;
  const session = await services.tokens.session(secret);
  if (!session) return false;
  if (session.userId === null) {
    const error = new RepomanError(
      'unknown_token_identity',
      `You signed in as ${session.name ?? session.credential.subject} at ${session.credential.issuer}, which is linked to no Repoman user: sign in with your certificate as well and link it on your account page, or ask an administrator`,
      { details: { issuer: session.credential.issuer, subject: session.credential.subject } },
    );
    if ((request.routeOptions.config.auth ?? 'user') === 'optional') {
      request.authRefusal = error;
      return true;
    }
    throw error;
  }
  try {
    request.actor = await services.identity.actorForUser(session.userId);
  } catch (error) {
    // A suspended user's session: public pages stay open, as with a suspended user's certificate.
    if ((request.routeOptions.config.auth ?? 'user') === 'optional' && error instanceof RepomanError) {
      request.authRefusal = error;
      return true;
    }
    throw error;
  }
  request.credential = session.credential;
  return true;
}

/**
 * POST /api/whoami/identities: the certificate is the actor, and the identity offered is that of the browser's
 * session, if that sign-in was started with this same certificate. A bearer token is no proof: whoever holds a
 * copy of someone's token (a service they gave it to) could link that person's identity to their own account.
 */
async function linkingAuth(request: FastifyRequest, services: AuthServices, token: string | null) {
  if (!isTls(request)) throw new RepomanError('https_required', 'Linking identities is done over HTTPS only');
  if (token !== null)
    throw new RepomanError(
      'bad_request',
      'A token is no proof of who holds it: link an identity by signing in with its issuer in a browser that presents your certificate',
    );
  request.actor = await actorOf(request, services.identity);
  request.credential = { kind: 'certificate', id: null };
  const secret = cookieOf(request, SESSION_COOKIE);
  const session = secret === undefined ? null : await services.tokens.session(secret);
  if (session?.credential.subject && session.startedBy === request.actor.id)
    request.offeredIdentity = { issuer: session.credential.issuer, subject: session.credential.subject };
}

async function actorOf(request: FastifyRequest, identity: IdentityService): Promise<Actor> {
  const verdict = certificateAuthOf(request.raw.socket as TLSSocket);
  if (!verdict.ok) {
    if (verdict.code === 'no_certificate') {
      throw new RepomanError(
        'certificate_required',
        'No client certificate was presented; use your certificate or grid proxy',
      );
    }
    throw new RepomanError('certificate_invalid', `Client certificate rejected: ${verdict.reason}`, {
      details: {
        reason: verdict.code,
      },
    });
  }
  const actor = await identity.actorFor({
    dn: verdict.dn,
    issuerDn: verdict.issuerDn,
    limited: verdict.limited,
  });
  if (actor.limited && !READ_METHODS.has(request.method)) {
    throw new RepomanError(
      'limited_proxy',
      'A limited proxy may only read; use a full proxy to change anything',
    );
  }
  return actor;
}

/** The actor of a route that requires one (the hook has already refused anonymous callers). */
export function requireActor(request: FastifyRequest): Actor {
  if (!request.actor) throw new RepomanError('certificate_required');
  return request.actor;
}

/**
 * On a route open to everyone, what to tell a caller whose certificate was refused when what they asked for is
 * not public: why it was refused (401 or 403), rather than "not found".
 */
export function refusalInstead(request: FastifyRequest, error: unknown): unknown {
  const hidden =
    error instanceof RepomanError &&
    ['image_not_found', 'not_found', 'certificate_required'].includes(error.code);
  return hidden && request.authRefusal ? request.authRefusal : error;
}
