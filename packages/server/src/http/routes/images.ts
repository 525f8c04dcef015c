/**
 * /api/images: image slots and their metadata in per-user namespaces (paper figure 2): `/api/images/{image}`
 * is the caller's own namespace, `/api/images/{user}/{image}` names one explicitly.
 */
import {
  type CreateImageBody,
  createImageBody,
  digestsSchema,
  type ImageListQuery,
  imageListQuery,
  type ModifyImageBody,
  modifyImageBody,
  pageSchema,
  variantSchema,
  versionNumber,
} from '@repoman/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { refusalInstead, requireActor } from '../auth.ts';
import { IMAGE_FORMS, type RefParams, rawPath, refOf } from '../image-ref.ts';
import { imageJson, page, variantJson } from '../present.ts';
import type { RouteDeps } from './deps.ts';

const imageResponse = { 200: { $ref: 'Image#' } };
const str = { type: 'string' } as const;

/** `?dry_run=true` on a DELETE of an image: make every check a deletion makes, and stop there. */
export const dryRunQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { dry_run: { type: 'boolean' } },
} as const;

/** DELETE of an image, by its metadata's URL or its bytes' (routes/raw.ts): the same rules, the same audit. */
export const deleteImage =
  (services: RouteDeps['services']) =>
  async (
    request: FastifyRequest<{ Params: RefParams; Querystring: { dry_run?: boolean } }>,
    reply: FastifyReply,
  ) => {
    const dryRun = request.query.dry_run === true;
    // A question asked before a confirmation (the client's remove-image): audited as the question it is.
    if (dryRun) request.audit = { ...request.audit, detail: { dry_run: true } };
    await services.images.remove(requireActor(request), refOf(request), { dryRun });
    return reply.code(204).send();
  };

export function imageRoutes(app: FastifyInstance, deps: RouteDeps) {
  const { services, urls } = deps;

  app.get<{ Querystring: ImageListQuery }>(
    '/api/images',
    {
      // Without a certificate (and on plain HTTP), the public images: what the web interface lists there.
      config: { auth: 'optional', plainHttp: true },
      schema: {
        summary:
          'List the images you may see: yours, shared with you, public (admins: all; without a certificate: public)',
        tags: ['images'],
        querystring: imageListQuery,
        response: { 200: pageSchema('Image') },
      },
    },
    async (request) => {
      const result = await services.images.list(request.actor, request.query);
      const u = urls(request);
      return page(request, u, result, request.query, (v) => imageJson(u, v));
    },
  );

  app.post<{ Body: CreateImageBody }>(
    '/api/images',
    {
      schema: {
        summary: 'Create an image slot; upload its bytes to the Location URL (image_create)',
        tags: ['images'],
        body: createImageBody,
        response: { 201: { $ref: 'Image#' } },
      },
    },
    async (request, reply) => {
      const view = await services.images.create(requireActor(request), request.body);
      const u = urls(request);
      return reply
        .code(201)
        .header('location', u.https + rawPath(view.owner, view.name))
        .send(imageJson(u, view));
    },
  );

  for (const form of IMAGE_FORMS) {
    const params = { type: 'object', properties: form.params, required: form.required } as const;
    const shareParams = {
      type: 'object',
      properties: { ...form.params, target: str },
      required: [...form.required, 'target'],
    } as const;

    app.get<{ Params: RefParams }>(
      form.path,
      {
        // A public image is shown to anyone, also over plain HTTP (its page in the web interface).
        config: { auth: 'optional', plainHttp: true },
        schema: {
          summary: 'Show an image (a public one without a certificate, also over plain HTTP)',
          tags: ['images'],
          params,
          response: imageResponse,
        },
      },
      async (request) => {
        try {
          return imageJson(urls(request), await services.images.get(request.actor, refOf(request)));
        } catch (error) {
          throw refusalInstead(request, error);
        }
      },
    );

    for (const method of ['post', 'patch'] as const) {
      app[method]<{ Params: RefParams; Body: ModifyImageBody }>(
        form.path,
        {
          schema: {
            summary: 'Modify an image: metadata, rename (name), give away (owner)',
            tags: ['images'],
            params,
            body: modifyImageBody,
            response: imageResponse,
          },
        },
        async (request) =>
          imageJson(
            urls(request),
            await services.images.modify(requireActor(request), refOf(request), request.body),
          ),
      );
    }

    app.delete<{ Params: RefParams; Querystring: { dry_run?: boolean } }>(
      form.path,
      {
        schema: {
          summary:
            'Delete an image (not while read_only); with ?dry_run=true, only say whether it would be deleted',
          tags: ['images'],
          params,
          querystring: dryRunQuery,
        },
      },
      deleteImage(services),
    );

    app.get<{ Params: RefParams }>(
      `${form.path}/versions`,
      {
        schema: {
          summary: 'The kept versions of an image, newest first',
          tags: ['images'],
          params,
          response: {
            200: {
              type: 'object',
              properties: {
                items: {
                  type: 'array',
                  items: {
                    type: 'object',
                    properties: {
                      version: { type: 'integer' },
                      current: { type: 'boolean' },
                      size: { type: 'integer' },
                      digests: digestsSchema,
                      disk_format: { type: ['string', 'null'] },
                      virtual_size: { type: ['integer', 'null'] },
                      compression: { type: ['string', 'null'] },
                      partition_table: { type: ['string', 'null'] },
                      created: str,
                      file_url: str,
                      variants: { type: 'array', items: variantSchema },
                    },
                  },
                },
                total: { type: 'integer' },
              },
            },
          },
        },
      },
      async (request) => {
        const { ref, versions } = await services.versions.list(requireActor(request), refOf(request));
        const u = urls(request);
        const file = u.https + rawPath(ref.owner, ref.name);
        const items = versions.map((version) => ({
          ...version,
          file_url: `${file}?version=${version.version}`,
          variants: version.variants.map((variant) =>
            variantJson(u, ref.owner, ref.name, version.version, variant),
          ),
        }));
        return { items, total: items.length };
      },
    );

    app.post<{ Params: RefParams; Body: { version: number } }>(
      `${form.path}/rollback`,
      {
        schema: {
          summary: 'Serve a kept older version again (the next upload still gets a new number)',
          tags: ['images'],
          params,
          body: {
            type: 'object',
            additionalProperties: false,
            required: ['version'],
            properties: { version: versionNumber },
          },
          response: imageResponse,
        },
      },
      async (request) => {
        const actor = requireActor(request);
        await services.versions.rollback(actor, refOf(request), request.body.version);
        return imageJson(urls(request), await services.images.get(actor, refOf(request)));
      },
    );

    for (const kind of ['user', 'group'] as const) {
      for (const [method, on] of [
        ['post', true],
        ['delete', false],
      ] as const) {
        app[method]<{ Params: RefParams & { target: string } }>(
          `${form.path}/share/${kind}/:target`,
          {
            schema: {
              summary: `${on ? 'Share' : 'Stop sharing'} an image read-only with a ${kind}`,
              tags: ['images'],
              params: shareParams,
              response: imageResponse,
            },
          },
          async (request) =>
            imageJson(
              urls(request),
              await services.images.share(
                requireActor(request),
                refOf(request),
                kind,
                request.params.target,
                on,
              ),
            ),
        );
      }
    }
  }
}
