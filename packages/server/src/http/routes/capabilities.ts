/**
 * Capabilities (docs/api.md#capabilities): `POST` on an image's, a namespace's or the tree's bytes URL with
 * `Content-Type: application/macaroon-request` asks for one, as dCache and XRootD take it (and gfal-token asks);
 * `GET /api/capabilities` lists the caller's, `DELETE /api/capabilities/{id}` revokes one.
 */
import {
  type Capability,
  type CapabilityListQuery,
  type CapabilityRequest,
  capabilityListQuery,
  capabilityRequestBody,
  capabilitySchema,
  type IssuedCapability,
  issuedCapabilitySchema,
  pageSchema,
  RepomanError,
} from '@repoman/core';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { CapabilityTarget } from '../../services/capabilities.ts';
import { requireActor } from '../auth.ts';
import { page } from '../present.ts';
import type { RouteDeps } from './deps.ts';

export const MACAROON_REQUEST = 'application/macaroon-request';
const RAW = '/api/images/raw';
const str = { type: 'string' } as const;
const seg = encodeURIComponent;

/** The URL forms a capability may be asked for at (the first of each in the OpenAPI document), and what each names. */
const TARGETS: [string[], (params: Record<string, string>) => CapabilityTarget][] = [
  [
    [`${RAW}/:user/:image`, `${RAW}/:user/:image/`],
    ({ user = '', image = '' }) => ({
      kind: 'image',
      ref: { owner: user, name: image },
      path: `${RAW}/${user}/${image}`,
    }),
  ],
  [
    [`${RAW}/:user`, `${RAW}/:user/`],
    ({ user = '' }) => ({ kind: 'namespace', owner: user, path: `${RAW}/${user}/` }),
  ],
  [[RAW, `${RAW}/`], () => ({ kind: 'tree', path: `${RAW}/` })],
];

const wrongType = () =>
  new RepomanError(
    'unsupported_media_type',
    `Ask for a capability with Content-Type: ${MACAROON_REQUEST} and a JSON body`,
  );

/** Every route a capability is asked for at (the audit log's rules are made from them). */
export const CAPABILITY_REQUEST_ROUTES = TARGETS.flatMap(([urls]) => urls);

export function capabilityRoutes(app: FastifyInstance, deps: RouteDeps) {
  const { services, urls } = deps;
  app.addSchema(capabilitySchema);

  app.register(async (scope) => {
    // The body is JSON under dCache's media type; nothing else is taken here.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser(
      MACAROON_REQUEST,
      { parseAs: 'string', bodyLimit: 64 * 1024 },
      (_r, body, done) => {
        try {
          done(null, body === '' ? {} : JSON.parse(String(body)));
        } catch {
          done(new RepomanError('bad_request', 'The macaroon request is not valid JSON'), undefined);
        }
      },
    );
    scope.addContentTypeParser('*', (_request, _payload, done) => done(wrongType(), undefined));
    for (const [forms, targetOf] of TARGETS)
      for (const [index, url] of forms.entries())
        scope.post<{ Params: Record<string, string>; Body: CapabilityRequest }>(
          url,
          {
            schema: {
              hide: index > 0,
              summary:
                'Ask for a capability (a macaroon) for this URL: a bearer token for clients without a certificate',
              tags: ['capabilities'],
              consumes: [MACAROON_REQUEST],
              body: capabilityRequestBody,
              response: { 200: issuedCapabilitySchema },
            },
          },
          async (request: FastifyRequest<{ Params: Record<string, string>; Body: CapabilityRequest }>) => {
            // (a request without a body reaches no parser)
            if (request.headers['content-type']?.split(';')[0]?.trim().toLowerCase() !== MACAROON_REQUEST)
              throw wrongType();
            const actor = requireActor(request);
            const target = targetOf(request.params);
            const base = urls(request).https;
            const issued = await services.capabilities.issue(actor, target, request.body ?? {}, base);
            request.audit = {
              target: target.path,
              detail: {
                capability: issued.id,
                expires: issued.expires,
                caveats: request.body?.caveats ?? [],
              },
            };
            const href = `${base}${target.path.split('/').map(seg).join('/')}`;
            const answer: IssuedCapability = {
              ...issued,
              uri: {
                target: href,
                targetWithMacaroon: `${href}?authz=${encodeURIComponent(issued.macaroon)}`,
              },
            };
            return answer;
          },
        );
  });

  app.get<{ Querystring: CapabilityListQuery & { limit: number; offset: number } }>(
    '/api/capabilities',
    {
      schema: {
        summary:
          'Your capabilities still usable, newest first (all: revoked and expired too; admins: anyone’s)',
        tags: ['capabilities'],
        querystring: capabilityListQuery,
        response: { 200: pageSchema('Capability') },
      },
    },
    async (request) => {
      const result = await services.capabilities.list(requireActor(request), request.query);
      return page(request, urls(request), result, request.query, (c: Capability) => c);
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/api/capabilities/:id',
    {
      schema: {
        summary: 'Revoke one of your capabilities (admins: anyone’s); it is refused from the next request on',
        tags: ['capabilities'],
        params: { type: 'object', properties: { id: str }, required: ['id'] },
        response: { 200: { $ref: 'Capability#' } },
      },
    },
    async (request) => {
      const revoked = await services.capabilities.revoke(requireActor(request), request.params.id);
      request.audit = { detail: { user: revoked.user, path: revoked.path } };
      return revoked;
    },
  );
}
