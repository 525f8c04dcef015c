/**
 * Endorsements and signed image lists (docs/image-lists.md): a group's endorsers endorse image versions and
 * manage the subscribers of its lists under /api/groups/{group}/; the lists themselves (the group's, and each
 * image's own) are served to anyone, certificate or not: they are signed, and show what their endorsers
 * published. One holding private images' capability URLs is served over HTTPS to a subscriber's token only.
 */
import {
  type EndorseBody,
  type Endorsement,
  type EndorsementListQuery,
  endorseBody,
  endorsementListQuery,
  endorsementSchema,
  pageSchema,
  RepomanError,
} from '@repoman/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { jsonEtag, type ListCaller, type ListScope, type PublishedList } from '../../services/image-lists.ts';
import { isTls, requireActor } from '../auth.ts';
import { endorsementJson, groupUrl, imageUrl, page, type Urls } from '../present.ts';
import type { RouteDeps } from './deps.ts';

const str = { type: 'string' } as const;
const groupParams = { type: 'object', required: ['group'], properties: { group: str } } as const;
const refParams = {
  type: 'object',
  required: ['group', 'user', 'image'],
  properties: { group: str, user: str, image: str },
} as const;
const subscriberSchema = {
  type: 'object',
  required: ['id', 'group', 'name', 'created_by', 'created'],
  properties: {
    id: str,
    group: str,
    name: str,
    created_by: { type: ['string', 'null'] },
    created: { type: 'string', format: 'date-time' },
    token: { ...str, description: 'Shown once, when the subscriber is made' },
    list_url: { ...str, description: 'The group’s list URL with the token in it, for vmcatcher_subscribe' },
  },
} as const;

/** What the signed list is served as: the S/MIME message, as `openssl smime -verify -in` reads it. */
export const SIGNED_LIST_TYPE = 'text/plain; charset=utf-8';
/** A signed list: its JSON (a few KiB an image) and the signature; far below this for any real group. */
const SIGNED_LIST_LIMIT = 4 * 1024 * 1024;

/** The subscriber token of HTTP basic auth (`https://TOKEN:x-oauth-basic@host/...`): its user name. */
function subscriberToken(request: FastifyRequest): string | null {
  const header = request.headers.authorization;
  if (!header || !/^basic /i.test(header)) return null;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const user = decoded.split(':')[0] ?? '';
  return user === '' ? null : user;
}

const callerOf = (request: FastifyRequest): ListCaller => ({
  tls: isTls(request),
  token: subscriberToken(request),
  actor: request.actor,
});

/** Answers with the list (signed or its JSON), with the validators consumers and caches use. */
function send(request: FastifyRequest, reply: FastifyReply, list: PublishedList, signed: boolean) {
  if (signed && list.signed === null)
    throw new RepomanError(
      'image_list_unsigned',
      'The server has no signing certificate (image_lists.signing_cert); its unsigned JSON is at …/image-list.json',
    );
  const etag = signed ? `"${list.identifier}-${list.version}"` : jsonEtag(list);
  // A list with capability URLs in it is a secret: no shared cache keeps it.
  reply
    .header('etag', etag)
    .header('last-modified', new Date(list.issued).toUTCString())
    .header('expires', new Date(list.expires).toUTCString())
    .header('cache-control', list.secret ? 'private, no-cache' : 'public, no-cache');
  const match = request.headers['if-none-match'];
  if (match?.split(',').some((tag) => tag.trim() === etag || tag.trim() === '*'))
    return reply.code(304).send();
  return reply
    .type(signed ? SIGNED_LIST_TYPE : 'application/json; charset=utf-8')
    .send(signed ? list.signed : list.document);
}

export function imageListRoutes(app: FastifyInstance, deps: RouteDeps) {
  const { services, urls } = deps;
  app.addSchema(endorsementSchema);

  const listUrls = (u: Urls, path: string) => ({ https: u.https, list: `${u.https}${path}` });

  for (const [suffix, signed] of [
    ['', true],
    ['.json', false],
  ] as const) {
    const what = signed ? 'signed (S/MIME)' : 'unsigned JSON';
    app.get<{ Params: { group: string } }>(
      `/api/groups/:group/image-list${suffix}`,
      {
        config: { auth: 'optional', plainHttp: true },
        schema: {
          summary: `The group’s HEPiX image list, ${what}: no certificate needed (a subscriber token if it holds private images)`,
          tags: ['image lists'],
          params: groupParams,
        },
      },
      async (request, reply) => {
        const u = urls(request);
        const scope: ListScope = { kind: 'group', group: request.params.group };
        const path = new URL(`${groupUrl(u, request.params.group)}/image-list`).pathname;
        const list = await services.imageLists.publish(scope, listUrls(u, path), callerOf(request));
        return send(request, reply, list, signed);
      },
    );
    app.get<{ Params: { user: string; image: string } }>(
      `/api/images/:user/:image/image-list${suffix}`,
      {
        config: { auth: 'optional', plainHttp: true },
        schema: {
          summary: `The image’s own HEPiX image list (its endorsed version), ${what}`,
          tags: ['image lists'],
          params: { type: 'object', required: ['user', 'image'], properties: { user: str, image: str } },
        },
      },
      async (request, reply) => {
        const u = urls(request);
        const ref = { owner: request.params.user, name: request.params.image };
        const path = new URL(`${imageUrl(u, ref.owner, ref.name)}/image-list`).pathname;
        const list = await services.imageLists.publish(
          { kind: 'image', ref },
          listUrls(u, path),
          callerOf(request),
        );
        return send(request, reply, list, signed);
      },
    );
  }

  const endorserParams = {
    type: 'object',
    required: ['group', 'user'],
    properties: { group: str, user: str },
  } as const;
  const endorserPath = (u: Urls, group: string, user: string) =>
    `${new URL(groupUrl(u, group)).pathname}/endorsers/${encodeURIComponent(user)}/image-list`;
  for (const [suffix, signed] of [
    ['', true],
    ['.json', false],
  ] as const) {
    app.get<{ Params: { group: string; user: string } }>(
      `/api/groups/:group/endorsers/:user/image-list${suffix}`,
      {
        config: { auth: 'optional', plainHttp: true },
        schema: {
          summary: signed
            ? 'An endorser’s own list in the group, as they signed it (404 until they sign the current one)'
            : 'An endorser’s own list in the group, unsigned: what they sign (its ETag goes in If-Match)',
          tags: ['image lists'],
          params: endorserParams,
        },
      },
      async (request, reply) => {
        const u = urls(request);
        const { group, user } = request.params;
        const list = await services.imageLists.publish(
          { kind: 'endorser', group, user },
          listUrls(u, endorserPath(u, group, user)),
          callerOf(request),
        );
        return send(request, reply, list, signed);
      },
    );
  }

  app.register(async (scope) => {
    // The body is the S/MIME message, as openssl smime -sign writes it.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser(
      ['text/plain', 'application/pkcs7-mime', 'message/rfc822', 'multipart/signed'],
      { parseAs: 'string', bodyLimit: SIGNED_LIST_LIMIT },
      (_request, body, done) => done(null, body),
    );
    scope.addContentTypeParser('*', (_request, _payload, done) =>
      done(new RepomanError('unsupported_media_type', 'Send the S/MIME message as text/plain'), undefined),
    );
    scope.put<{ Params: { group: string; user: string }; Body: string }>(
      '/api/groups/:group/endorsers/:user/image-list',
      {
        schema: {
          summary:
            'Publish your own list in the group, signed on your machine (openssl smime -sign), with If-Match: its JSON ETag',
          tags: ['image lists'],
          params: endorserParams,
        },
      },
      async (request, reply) => {
        const { group, user } = request.params;
        if (!deps.trust) throw new RepomanError('forbidden', 'This server takes no signed image lists');
        const u = urls(request);
        const path = endorserPath(u, group, user);
        const list = await services.imageLists.acceptSigned(
          requireActor(request),
          { kind: 'endorser', group, user },
          typeof request.body === 'string' ? request.body : '',
          request.headers['if-match'],
          listUrls(u, path),
          deps.trust(),
        );
        request.audit = { detail: { group, version: list.version } };
        return reply.header('etag', `"${list.identifier}-${list.version}"`).send({
          group,
          endorser: user,
          version: list.version,
          expires: list.expires,
          url: `${u.https}${path}`,
        });
      },
    );
  });

  app.get<{
    Params: { group: string };
    Querystring: EndorsementListQuery & { limit: number; offset: number };
  }>(
    '/api/groups/:group/endorsements',
    {
      schema: {
        summary:
          'The group’s endorsements (all: expired ones too); non-members see those of images they can read',
        tags: ['image lists'],
        params: groupParams,
        querystring: endorsementListQuery,
        response: { 200: pageSchema('Endorsement') },
      },
    },
    async (request) => {
      const result = await services.endorsements.list(
        requireActor(request),
        request.params.group,
        request.query,
      );
      const u = urls(request);
      return page(request, u, result, request.query, (view): Endorsement => endorsementJson(u, view));
    },
  );

  app.post<{ Params: { group: string }; Body: EndorseBody }>(
    '/api/groups/:group/endorsements',
    {
      schema: {
        summary:
          'Endorse a version of an image for the group (image_endorse and membership), replacing its endorsement',
        tags: ['image lists'],
        params: groupParams,
        body: endorseBody,
        response: { 201: { $ref: 'Endorsement#' } },
      },
    },
    async (request, reply) => {
      const view = await services.endorsements.endorse(
        requireActor(request),
        request.params.group,
        request.body,
      );
      const json = endorsementJson(urls(request), view);
      request.audit = { detail: { group: view.group, version: view.version, expires: view.expires } };
      return reply.code(201).header('location', json.url).send(json);
    },
  );

  app.get<{ Params: { group: string; user: string; image: string } }>(
    '/api/groups/:group/endorsements/:user/:image',
    {
      schema: {
        summary: 'The group’s endorsement of an image',
        tags: ['image lists'],
        params: refParams,
        response: { 200: { $ref: 'Endorsement#' } },
      },
    },
    async (request) => {
      const { group, user, image } = request.params;
      const view = await services.endorsements.get(requireActor(request), group, {
        owner: user,
        name: image,
      });
      return endorsementJson(urls(request), view);
    },
  );

  app.delete<{ Params: { group: string; user: string; image: string } }>(
    '/api/groups/:group/endorsements/:user/:image',
    {
      schema: {
        summary: 'Withdraw the group’s endorsement of an image (image_endorse and membership)',
        tags: ['image lists'],
        params: refParams,
      },
    },
    async (request, reply) => {
      const { group, user, image } = request.params;
      await services.endorsements.withdraw(requireActor(request), group, { owner: user, name: image });
      return reply.code(204).send();
    },
  );

  const accessSchema = {
    type: 'object',
    required: ['group', 'subscribers_only'],
    properties: { group: str, subscribers_only: { type: 'boolean' } },
  } as const;
  app.get<{ Params: { group: string } }>(
    '/api/groups/:group/image-list/access',
    {
      schema: {
        summary:
          'Whether the group’s lists are for its subscribers only (they are anyway when they hold private images)',
        tags: ['image lists'],
        params: groupParams,
        response: { 200: accessSchema },
      },
    },
    async (request) => services.endorsements.listAccess(requireActor(request), request.params.group),
  );
  app.put<{ Params: { group: string }; Body: { subscribers_only: boolean } }>(
    '/api/groups/:group/image-list/access',
    {
      schema: {
        summary: 'Make the group’s lists for its subscribers (and members) only, or not (its endorsers)',
        tags: ['image lists'],
        params: groupParams,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['subscribers_only'],
          properties: { subscribers_only: { type: 'boolean' } },
        },
        response: { 200: accessSchema },
      },
    },
    async (request) => {
      const access = await services.endorsements.setListAccess(
        requireActor(request),
        request.params.group,
        request.body.subscribers_only,
      );
      request.audit = { detail: { subscribers_only: access.subscribers_only } };
      return access;
    },
  );

  app.get<{ Params: { group: string } }>(
    '/api/groups/:group/subscribers',
    {
      schema: {
        summary: 'Subscribers of the group’s image lists (its endorsers and admins), never their tokens',
        tags: ['image lists'],
        params: groupParams,
        response: { 200: { type: 'array', items: subscriberSchema } },
      },
    },
    async (request) => services.endorsements.subscribers(requireActor(request), request.params.group),
  );

  app.post<{ Params: { group: string }; Body: { name: string } }>(
    '/api/groups/:group/subscribers',
    {
      schema: {
        summary: 'Add a subscriber (a site): its token, shown once, reads lists holding private images',
        tags: ['image lists'],
        params: groupParams,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['name'],
          properties: { name: { type: 'string', minLength: 1, maxLength: 200 } },
        },
        response: { 201: subscriberSchema },
      },
    },
    async (request, reply) => {
      const made = await services.endorsements.addSubscriber(
        requireActor(request),
        request.params.group,
        request.body.name,
      );
      const list = new URL(`${groupUrl(urls(request), made.group)}/image-list`);
      list.username = made.token;
      list.password = 'x-oauth-basic';
      request.audit = { detail: { subscriber: made.id, name: made.name } };
      return reply.code(201).send({ ...made, list_url: list.href });
    },
  );

  app.delete<{ Params: { group: string; id: string } }>(
    '/api/groups/:group/subscribers/:id',
    {
      schema: {
        summary: 'Revoke a subscriber’s token',
        tags: ['image lists'],
        params: { type: 'object', required: ['group', 'id'], properties: { group: str, id: str } },
      },
    },
    async (request, reply) => {
      await services.endorsements.removeSubscriber(
        requireActor(request),
        request.params.group,
        request.params.id,
      );
      request.audit = { detail: { subscriber: request.params.id } };
      return reply.code(204).send();
    },
  );
}
