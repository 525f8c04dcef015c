/**
 * Giving an image away (docs/api.md#transfers): `POST /api/images/{user}/{image}/transfer` offers it to a user
 * (admins may give it at once with `direct`); `GET /api/transfers` lists the offers to and from the caller;
 * the receiver answers with `POST /api/transfers/{id}/accept` or `/decline`; the giver withdraws one with
 * `DELETE /api/transfers/{id}`.
 */
import {
  type AcceptTransferBody,
  acceptTransferBody,
  pageSchema,
  type Transfer,
  type TransferBody,
  type TransferListQuery,
  transferBody,
  transferListQuery,
  transferSchema,
} from '@repoman/core';
import type { FastifyInstance } from 'fastify';
import type { TransferView } from '../../services/transfers.ts';
import { requireActor } from '../auth.ts';
import { IMAGE_FORMS, type RefParams, refOf, refText } from '../image-ref.ts';
import { imageJson, imageUrl, page, type Urls } from '../present.ts';
import type { RouteDeps } from './deps.ts';

const str = { type: 'string' } as const;

export function transferJson(urls: Urls, view: TransferView): Transfer {
  const { id, image, ...rest } = view;
  return {
    id,
    url: `${urls.https}/api/transfers/${encodeURIComponent(id)}`,
    image: refText(image),
    image_url: imageUrl(urls, image.owner, image.name),
    ...rest,
  };
}

export function transferRoutes(app: FastifyInstance, deps: RouteDeps) {
  const { services, urls } = deps;
  app.addSchema(transferSchema);
  const transferResponse = { $ref: 'Transfer#' };

  for (const form of IMAGE_FORMS) {
    const params = { type: 'object', properties: form.params, required: form.required } as const;
    app.post<{ Params: RefParams; Body: TransferBody }>(
      `${form.path}/transfer`,
      {
        schema: {
          summary:
            'Offer an image to another user, who accepts or declines it (201 with the offer); admins may give it at once with direct (200 with the image)',
          tags: ['transfers'],
          params,
          body: transferBody,
          response: { 201: transferResponse, 200: { $ref: 'Image#' } },
        },
      },
      async (request, reply) => {
        const actor = requireActor(request);
        const outcome = await services.transfers.offer(actor, refOf(request), request.body);
        const u = urls(request);
        if ('moved' in outcome) {
          request.audit = { detail: { to: request.body.to, direct: true } };
          return reply.code(200).send(imageJson(u, await services.images.viewOf(actor, outcome.moved)));
        }
        const json = transferJson(u, outcome.transfer);
        request.audit = { detail: { to: json.to, transfer: json.id, expires: json.expires } };
        return reply.code(201).header('location', json.url).send(json);
      },
    );
  }

  app.get<{ Querystring: TransferListQuery }>(
    '/api/transfers',
    {
      schema: {
        summary:
          'Pending offers to give images to you and offers you made, oldest first (admins: every offer)',
        tags: ['transfers'],
        querystring: transferListQuery,
        response: { 200: pageSchema('Transfer') },
      },
    },
    async (request) => {
      const result = await services.transfers.list(requireActor(request), request.query);
      const u = urls(request);
      return page(request, u, result, request.query, (v) => transferJson(u, v));
    },
  );

  const idParams = { type: 'object', properties: { id: str }, required: ['id'] } as const;
  app.get<{ Params: { id: string } }>(
    '/api/transfers/:id',
    {
      schema: {
        summary: 'An offer, for its giver, its receiver and admins (410 once it expired)',
        tags: ['transfers'],
        params: idParams,
        response: { 200: transferResponse },
      },
    },
    async (request) =>
      transferJson(urls(request), await services.transfers.get(requireActor(request), request.params.id)),
  );

  app.post<{ Params: { id: string }; Body: AcceptTransferBody }>(
    '/api/transfers/:id/accept',
    {
      schema: {
        summary:
          'Accept an offer made to you: the image moves into your namespace (under name, if given) if your quota holds it',
        tags: ['transfers'],
        params: idParams,
        body: acceptTransferBody,
        response: { 200: { $ref: 'Image#' } },
      },
    },
    async (request) => {
      const actor = requireActor(request);
      const imageId = await services.transfers.accept(actor, request.params.id, request.body);
      const image = imageJson(urls(request), await services.images.viewOf(actor, imageId));
      request.audit = { target: refText(image), detail: { transfer: request.params.id } };
      return image;
    },
  );

  app.post<{ Params: { id: string } }>(
    '/api/transfers/:id/decline',
    {
      schema: {
        summary: 'Decline an offer made to you: it ends, and the image stays where it is',
        tags: ['transfers'],
        params: idParams,
        body: { type: 'object', additionalProperties: false, properties: {} },
      },
    },
    async (request, reply) => {
      const offer = await services.transfers.decline(requireActor(request), request.params.id);
      request.audit = { target: refText(offer.image), detail: { from: offer.from } };
      return reply.code(204).send();
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/api/transfers/:id',
    {
      schema: {
        summary: 'Cancel an offer you made (admins: any offer)',
        tags: ['transfers'],
        params: idParams,
      },
    },
    async (request, reply) => {
      const offer = await services.transfers.cancel(requireActor(request), request.params.id);
      request.audit = { target: refText(offer.image), detail: { to: offer.to } };
      return reply.code(204).send();
    },
  );
}
