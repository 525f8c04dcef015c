/**
 * The image URL forms, in one place: `/api/images/{user}/{image}` names the namespace, `/api/images/{image}`
 * is the caller's own; the bytes have the same two under `/api/images/raw`. Routes register the forms, the
 * audit log knows its rules by them, and `refOf` reads the image a request names.
 */
import type { FastifyRequest } from 'fastify';
import type { ImageRef } from '../services/image-access.ts';
import { requireActor } from './auth.ts';

const IMAGES = '/api/images';
const RAW = `${IMAGES}/raw`;
const str = { type: 'string' } as const;

/** Both forms of a route under `base`: the namespace named, then the caller's own (`path`, params schema). */
function formsUnder<Base extends string>(base: Base) {
  return [
    {
      path: `${base}/:user/:image` as const,
      params: { user: str, image: str },
      required: ['user', 'image'] as const,
    },
    { path: `${base}/:image` as const, params: { image: str }, required: ['image'] as const },
  ] as const;
}

/** The metadata routes' forms; a route's own path goes after (`${form.path}/versions`). */
export const IMAGE_FORMS = formsUnder(IMAGES);
/** The bytes' forms. */
export const RAW_FORMS = formsUnder(RAW);

/** The params of either form. */
export interface RefParams {
  user?: string | undefined;
  image: string;
}

/** The image named by params, in the namespace they name or else `own()`'s (asked only then). */
export const refFrom = (params: RefParams, own: () => string): ImageRef => ({
  owner: params.user ?? own(),
  name: params.image,
});

/** The image a request names; the caller's own namespace needs a caller (401 without a certificate). */
export const refOf = (request: FastifyRequest<{ Params: RefParams }>): ImageRef =>
  refFrom(request.params, () => requireActor(request).name);

/** `owner/name`, as the audit log and messages name an image. */
export const refText = (ref: ImageRef) => `${ref.owner}/${ref.name}`;

/** The paths of an image's metadata and bytes (shared with the services, which know no HTTP). */
export { imagePath, rawPath } from '@repoman/core';
