/**
 * Conversions and their jobs: `POST /api/images/{user}/{image}/conversions` asks for a version in another
 * format and answers 202 with a job to poll at `/api/jobs/{id}` (or 200 with the variant, if it exists);
 * `DELETE …/variants/{format}` removes one. Variants download from the image's bytes URL with `?format=`.
 */
import {
  type ConversionBody,
  conversionBody,
  jobSchema,
  VARIANT_FORMATS,
  versionNumber,
} from '@repoman/core';
import type { FastifyInstance } from 'fastify';
import { requireActor } from '../auth.ts';
import { IMAGE_FORMS, type RefParams, refOf } from '../image-ref.ts';
import { jobJson, variantJson } from '../present.ts';
import type { RouteDeps } from './deps.ts';

const str = { type: 'string' } as const;

export function jobRoutes(app: FastifyInstance, deps: RouteDeps) {
  const { services, urls } = deps;
  app.addSchema(jobSchema);
  const jobResponse = { $ref: 'Job#' };

  for (const form of IMAGE_FORMS) {
    const params = { type: 'object', properties: form.params, required: form.required } as const;

    app.post<{ Params: RefParams; Body: ConversionBody }>(
      `${form.path}/conversions`,
      {
        schema: {
          summary:
            'Convert a version (the current one by default) to raw, qcow2 or stream-optimised vmdk: 202 with a job to poll, or 200 with the variant when it exists',
          tags: ['conversions'],
          params,
          body: conversionBody,
        },
      },
      async (request, reply) => {
        const ref = refOf(request);
        const outcome = await services.conversions.request(requireActor(request), ref, request.body);
        const u = urls(request);
        if ('variant' in outcome)
          return reply
            .code(200)
            .send({ variant: variantJson(u, ref.owner, ref.name, outcome.version, outcome.variant) });
        const job = jobJson(u, outcome.job);
        return reply.code(202).header('location', job.url).send({ job });
      },
    );

    app.delete<{ Params: RefParams & { format: string }; Querystring: { version?: number } }>(
      `${form.path}/variants/:format`,
      {
        schema: {
          summary: 'Remove a variant of a version (the current one by default); it can be converted again',
          tags: ['conversions'],
          params: {
            type: 'object',
            properties: { ...form.params, format: { type: 'string', enum: [...VARIANT_FORMATS] } },
            required: [...form.required, 'format'],
          },
          querystring: {
            type: 'object',
            additionalProperties: false,
            properties: { version: versionNumber },
          },
        },
      },
      async (request, reply) => {
        await services.conversions.removeVariant(
          requireActor(request),
          refOf(request),
          request.params.format,
          request.query.version,
        );
        return reply.code(204).send();
      },
    );
  }

  app.get(
    '/api/jobs',
    {
      schema: {
        summary: 'Your conversion jobs, newest first (finished ones are kept for a week)',
        tags: ['conversions'],
        response: {
          200: {
            type: 'object',
            properties: { items: { type: 'array', items: jobResponse }, total: { type: 'integer' } },
          },
        },
      },
    },
    async (request) => {
      const u = urls(request);
      const items = (await services.conversions.list(requireActor(request))).map((v) => jobJson(u, v));
      return { items, total: items.length };
    },
  );

  const idParams = { type: 'object', properties: { id: str }, required: ['id'] } as const;
  app.get<{ Params: { id: string } }>(
    '/api/jobs/:id',
    {
      schema: {
        summary: "A job's state and progress (0 to 1); once it succeeded, the variant it made",
        tags: ['conversions'],
        params: idParams,
        response: { 200: jobResponse },
      },
    },
    async (request) =>
      jobJson(urls(request), await services.conversions.get(requireActor(request), request.params.id)),
  );

  app.delete<{ Params: { id: string } }>(
    '/api/jobs/:id',
    {
      schema: {
        summary: 'Cancel a queued or running job (a finished one is left as it is)',
        tags: ['conversions'],
        params: idParams,
        response: { 200: jobResponse },
      },
    },
    async (request) =>
      jobJson(urls(request), await services.conversions.cancel(requireActor(request), request.params.id)),
  );
}
