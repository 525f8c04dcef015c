/**
 * A request carrying a capability (a macaroon: services/capabilities.ts), as grid storage takes them: in
 * `Authorization: Bearer …` or in the URL's `authz` query parameter (`?authz=…`, also `?authz=Bearer%20…`),
 * which qemu, wget and a cloud's image import can send. What the request needs of it is read here: the path
 * it acts on, named in full, and the activity.
 *
 * - **The bytes' tree only.** A capability is good under `/api/images/raw/`: the bytes, their listings, and
 *   what grid tools do there. Anywhere else (the JSON API, asking for another capability) it is refused.
 * - **The short form** `/api/images/raw/{image}` names the image in the capability owner's namespace.
 * - **`?authz=` stays out of the logs**: the logger's URL (main.ts) and the audit log's path never hold it,
 *   and the parameter is taken out of the query before routes validate it.
 */
import { RepomanError } from '@repoman/core';
import type { FastifyRequest } from 'fastify';
import type { CapabilityRequestFacts, Need } from '../capabilities/caveats.ts';

export const RAW = '/api/images/raw';

/** The capability the request carries, if any (taken out of the query). */
export function capabilityOf(request: FastifyRequest): string | null {
  const query = request.query as Record<string, unknown> | undefined;
  const fromQuery = query?.authz;
  if (query && 'authz' in query) delete query.authz;
  const header = request.headers.authorization;
  if (typeof header === 'string' && /^bearer\s/i.test(header))
    return header.replace(/^bearer\s+/i, '').trim();
  const value = Array.isArray(fromQuery) ? fromQuery[0] : fromQuery;
  if (typeof value === 'string' && value !== '') return value.replace(/^bearer\s+/i, '').trim();
  return null;
}

/** The URL with its `authz` parameter's value hidden, for logs. */
export function withoutCapability(url: string): string {
  return url.replace(/([?&]authz=)[^&#]*/gi, '$1…');
}

/** The path a MOVE's Destination names, if it is one of this tree (the route checks the rest). */
export function destinationPath(request: FastifyRequest): string | null {
  const header = request.headers.destination;
  if (typeof header !== 'string') return null;
  try {
    const path = decodeURIComponent(new URL(header.trim(), 'https://localhost').pathname);
    return path.startsWith(`${RAW}/`) ? path : null;
  } catch {
    return null;
  }
}

/**
 * The path of the bytes' tree a request acts on, its image named in full (the short form's owner is `owner`):
 * `/api/images/raw/bob/rhel.img`, a namespace `/api/images/raw/bob/`, or the tree `/api/images/raw/`.
 */
export function pathOf(request: FastifyRequest, owner: string): string {
  const params = (request.params ?? {}) as { user?: string; image?: string };
  if (params.image !== undefined) return `${RAW}/${params.user ?? owner}/${params.image}`;
  return params.user !== undefined ? `${RAW}/${params.user}/` : `${RAW}/`;
}

function needOf(request: FastifyRequest): Need {
  switch (request.method) {
    case 'GET':
      return 'DOWNLOAD';
    case 'PROPFIND':
      return String(request.headers.depth ?? '').trim() === '0' ? 'metadata' : 'LIST';
    case 'PUT':
      return 'UPLOAD';
    case 'DELETE':
      return 'DELETE';
    case 'MOVE':
    case 'MKCOL':
      return 'MANAGE';
    case 'COPY':
      // a third-party copy into this image (Source:) writes it; one out of it (Destination:) reads it
      return request.headers.source !== undefined ? 'UPLOAD' : 'DOWNLOAD';
    default:
      return 'metadata'; // HEAD, OPTIONS
  }
}

/**
 * What a request carrying a capability of `owner` asks of it; refused at once where no capability is good
 * (outside the bytes' tree, or asking for a capability with one).
 */
export function capabilityFacts(request: FastifyRequest, owner: string): CapabilityRequestFacts {
  const route = request.routeOptions.url ?? '';
  const denied = (why: string) => new RepomanError('capability_denied', why);
  if (!route.startsWith(RAW))
    throw denied(
      `A capability is good only for the image bytes' URLs under ${RAW}/, not for ${route || 'this path'}`,
    );
  if (request.method === 'POST')
    throw denied('A capability cannot ask for another one: ask with your certificate');
  const paths = [pathOf(request, owner)];
  if (request.method === 'MOVE') {
    const destination = destinationPath(request);
    if (destination) paths.push(destination);
  }
  const ancestors = request.method === 'MKCOL';
  return { paths, need: needOf(request), address: request.ip, now: new Date(), ancestors };
}
