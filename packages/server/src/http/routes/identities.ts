/**
 * Token identities linked to users (`/api/users/{user}/identities`, `/api/whoami/identities`), and browser
 * sign-in with an OpenID Connect issuer (`/api/auth/…`): docs/authentication.md.
 *
 * Traps:
 * - **Open redirects**: where the browser goes after signing in is a path of this server, never a URL.
 * - **Login CSRF**: the callback is taken only from the browser that started the sign-in (a cookie bound to
 *   the `state` sent to the issuer), once, within ten minutes.
 * - **Session cookie**: `Secure`, `HttpOnly`, `SameSite=Lax` (the issuer's redirect back is a top-level
 *   navigation), the database keeps only its SHA-256; changes made with it still pass the cross-site check.
 */
import { type LinkIdentityBody, linkIdentityBody, RepomanError } from '@repoman/core';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { cookieOf, requireActor, SESSION_COOKIE } from '../auth.ts';
import { userJson } from '../present.ts';
import type { RouteDeps } from './deps.ts';

const SIGN_IN_COOKIE = '__Secure-repoman_sign_in';
const userParams = { type: 'object', required: ['user'], properties: { user: { type: 'string' } } } as const;
const identityList = {
  type: 'object',
  required: ['items'],
  properties: { items: { type: 'array', items: { $ref: 'TokenIdentity#' } } },
} as const;

/** A path of this server to go to after signing in; anything else (a URL, `//host`) becomes `/`. */
export function localPath(text: unknown): string {
  if (typeof text !== 'string' || !/^\/(?![/\\])[\x21-\x7e]*$/.test(text) || text.length > 1000) return '/';
  return text;
}

function setCookie(reply: FastifyReply, name: string, value: string, path: string, maxAge: number) {
  const cookie = `${name}=${value}; Path=${path}; Max-Age=${maxAge}; HttpOnly; Secure; SameSite=Lax`;
  const existing = reply.getHeader('set-cookie');
  const list = existing === undefined ? [] : Array.isArray(existing) ? existing : [String(existing)];
  reply.header('set-cookie', [...list, cookie]);
}

export function identityRoutes(app: FastifyInstance, deps: RouteDeps) {
  const { services, urls } = deps;

  app.get(
    '/api/whoami',
    {
      schema: {
        summary:
          'Who you are: the user your certificate, token or browser session identifies, and how it was authenticated',
        tags: ['users'],
        response: { 200: { $ref: 'User#' } },
      },
    },
    async (request) => {
      const actor = requireActor(request);
      const json = userJson(urls(request), await services.users.get(actor, actor.name));
      if (request.credential) json.credential = request.credential;
      // A browser signed in at an issuer beside its certificate, in a sign-in it started with that certificate:
      // the identity, if it is not linked to this user yet (the Account page offers to link it).
      const secret = request.credential?.kind !== 'session' ? cookieOf(request, SESSION_COOKIE) : undefined;
      const session = secret === undefined ? null : await services.tokens.session(secret);
      if (
        session &&
        session.userId !== actor.id &&
        session.startedBy === actor.id &&
        session.credential.subject
      )
        json.offered_identity = {
          issuer: session.credential.issuer,
          subject: session.credential.subject,
          name: session.name,
        };
      return json;
    },
  );

  app.post(
    '/api/whoami/identities',
    {
      config: { linksIdentity: true },
      schema: {
        summary:
          'Link the identity this browser signed in with (a sign-in it started with your certificate) to your account',
        tags: ['users'],
        response: { 201: { $ref: 'TokenIdentity#' } },
      },
    },
    async (request, reply) => {
      const linked = await services.users.linkOffered(requireActor(request), request.offeredIdentity);
      request.audit = { detail: { issuer: linked.issuer, subject: linked.subject } };
      return reply.code(201).send(linked);
    },
  );

  app.get<{ Params: { user: string } }>(
    '/api/users/:user/identities',
    {
      schema: {
        summary: "A user's linked token identities (the user and admins)",
        tags: ['users'],
        params: userParams,
        response: { 200: identityList },
      },
    },
    async (request) => ({
      items: await services.users.identities(requireActor(request), request.params.user),
    }),
  );

  app.post<{ Params: { user: string }; Body: LinkIdentityBody }>(
    '/api/users/:user/identities',
    {
      schema: {
        summary: "Link an issuer's subject to a user (as changing their DN: user_modify, or an admin)",
        tags: ['users'],
        params: userParams,
        body: linkIdentityBody,
        response: { 201: { $ref: 'TokenIdentity#' } },
      },
    },
    async (request, reply) => {
      const linked = await services.users.linkIdentity(
        requireActor(request),
        request.params.user,
        request.body,
      );
      return reply.code(201).send(linked);
    },
  );

  app.delete<{ Params: { user: string; id: number } }>(
    '/api/users/:user/identities/:id',
    {
      schema: {
        summary: 'Unlink a token identity (the user, or who may change their DN)',
        tags: ['users'],
        params: {
          type: 'object',
          required: ['user', 'id'],
          properties: { user: { type: 'string' }, id: { type: 'integer', minimum: 1 } },
        },
      },
    },
    async (request, reply) => {
      const gone = await services.users.unlinkIdentity(
        requireActor(request),
        request.params.user,
        request.params.id,
      );
      request.audit = { detail: gone };
      return reply.code(204).send();
    },
  );

  // ---- browser sign-in ----

  app.get(
    '/api/auth/issuers',
    {
      config: { auth: 'none' },
      schema: {
        summary: 'The issuers a browser may sign in with',
        tags: ['sign-in'],
        response: {
          200: {
            type: 'object',
            required: ['items'],
            properties: {
              items: {
                type: 'array',
                items: {
                  type: 'object',
                  required: ['url', 'name', 'sign_in_url'],
                  properties: {
                    url: { type: 'string' },
                    name: { type: 'string' },
                    sign_in_url: { type: 'string' },
                  },
                },
              },
            },
          },
        },
      },
    },
    async (request) => ({
      items: (await services.tokens.signInIssuers()).map((issuer) => ({
        ...issuer,
        sign_in_url: `${urls(request).https}/api/auth/sign-in?issuer=${encodeURIComponent(issuer.url)}`,
      })),
    }),
  );

  app.get<{ Querystring: { issuer: string; return_to?: string } }>(
    '/api/auth/sign-in',
    {
      // A certificate presented meanwhile is remembered: its user may link the identity signed in with.
      config: { auth: 'optional' },
      schema: {
        summary: 'Sign in with an issuer: redirects the browser to it (authorization code flow with PKCE)',
        tags: ['sign-in'],
        querystring: {
          type: 'object',
          required: ['issuer'],
          additionalProperties: false,
          properties: {
            issuer: { type: 'string', maxLength: 2000 },
            return_to: { type: 'string', maxLength: 1000 },
          },
        },
      },
    },
    async (request, reply) => {
      if (!request.headers.host || !(request.raw.socket as { encrypted?: boolean }).encrypted)
        throw new RepomanError('https_required', 'Signing in is done over HTTPS only');
      const certificate = request.credential?.kind === 'certificate' || request.credential?.kind === 'proxy';
      const { location, binding } = await services.tokens.startSignIn(request.query.issuer, {
        returnTo: localPath(request.query.return_to),
        callbackUrl: `${urls(request).https}/api/auth/callback`,
        address: request.ip,
        startedBy: certificate && request.actor ? request.actor.id : null,
      });
      setCookie(reply, SIGN_IN_COOKIE, binding, '/api/auth', 600);
      return reply.code(302).header('location', location).header('cache-control', 'no-store').send();
    },
  );

  app.get<{ Querystring: Record<string, string> }>(
    '/api/auth/callback',
    {
      config: { auth: 'none' },
      schema: {
        summary: 'Where the issuer sends the browser back: makes the session and its cookie',
        tags: ['sign-in'],
        querystring: {
          type: 'object',
          properties: {
            state: { type: 'string', maxLength: 200 },
            code: { type: 'string', maxLength: 4000 },
            error: { type: 'string', maxLength: 200 },
            error_description: { type: 'string', maxLength: 1000 },
          },
        },
      },
    },
    async (request, reply) => {
      setCookie(reply, SIGN_IN_COOKIE, '', '/api/auth', 0);
      reply.header('cache-control', 'no-store');
      try {
        const signed = await services.tokens.finishSignIn(
          request.query,
          cookieOf(request, SIGN_IN_COOKIE),
          `${urls(request).https}/api/auth/callback`,
        );
        setCookie(reply, SESSION_COOKIE, signed.secret, '/', signed.maxAgeSeconds);
        return reply.code(303).header('location', signed.returnTo).send();
      } catch (error) {
        if (!(error instanceof RepomanError)) throw error;
        // A person is at the browser: the web interface's start page says what went wrong.
        request.errorCode = error.code;
        return reply
          .code(303)
          .header('location', `/?sign_in_error=${encodeURIComponent(error.message)}`)
          .send();
      }
    },
  );

  app.post(
    '/api/auth/sign-out',
    {
      config: { auth: 'optional' },
      schema: {
        summary: "End this browser's session (and say where to end it at the issuer too, if it offers that)",
        tags: ['sign-in'],
        response: {
          200: {
            type: 'object',
            required: ['end_session_url'],
            properties: { end_session_url: { type: ['string', 'null'] } },
          },
        },
      },
    },
    async (request, reply) => {
      const secret = cookieOf(request, SESSION_COOKIE);
      const endSession = secret === undefined ? null : await services.tokens.signOut(secret);
      setCookie(reply, SESSION_COOKIE, '', '/', 0);
      return { end_session_url: endSession };
    },
  );
}
