/**
 * What a request carrying a bearer JWT asks of its storage scopes (services/tokens.ts decides): the storage
 * paths it acts on, whether it changes anything, and the image it would create.
 *
 * Where a scoped token is good (docs/authentication.md#scopes):
 * - **the bytes' tree**, `/api/images/raw/`, every method, as grid tools use it: GET/HEAD/PROPFIND read,
 *   PUT/COPY-in create or modify the image, DELETE and MOVE modify (a MOVE acts on both its paths), MKCOL of a
 *   namespace creates;
 * - **reads of images and namespaces** in the JSON API (`GET /api/images…`, `GET /api/users/{user}/images`),
  but not image lists, which hand out capability URLs that would outlive the token;
 * - `GET /api/whoami`, which reads nothing but who is calling.
 * Anything else (metadata changes, sharing, resumable uploads, users, groups) has no path a scope names, and is
 * refused: a token without storage scopes, or a certificate, does those.
 */
import type { FastifyRequest } from 'fastify';
import type { StorageRequest } from '../services/tokens.ts';
import { READ_METHODS } from './auth.ts';

const RAW = '/api/images/raw';

/** `/api/images/raw/bob/a.img` → `/bob/a.img`, for a MOVE's Destination; null if it is not one of ours. */
function destinationOf(request: FastifyRequest): string | null {
  const header = request.headers.destination;
  if (typeof header !== 'string') return null;
  try {
    const path = decodeURIComponent(new URL(header.trim(), 'https://localhost').pathname);
    return path.startsWith(`${RAW}/`) ? path.slice(RAW.length).replace(/\/+$/, '') || '/' : null;
  } catch {
    return null;
  }
}

/** The storage request of `request`, made by `actorName`; null where no scope can allow anything. */
export function storageRequestOf(request: FastifyRequest, actorName: string): StorageRequest | null {
  const route = request.routeOptions.url ?? '';
  const params = (request.params ?? {}) as { user?: string; image?: string };
  const reads = READ_METHODS.has(request.method);
  const imagePath =
    params.image !== undefined
      ? `/${params.user ?? actorName}/${params.image}`
      : params.user !== undefined
        ? `/${params.user}`
        : '/';
  if (route === '/api/whoami' && reads) return { paths: [], change: false };
  if (route.startsWith(RAW)) {
    if (request.method === 'POST') return null; // asking for a capability: with a certificate only
    const paths = [imagePath];
    const creates =
      params.image !== undefined ? { owner: params.user ?? actorName, image: params.image } : undefined;
    if (request.method === 'MOVE') {
      const destination = destinationOf(request);
      if (destination === null) return null;
      paths.push(destination);
      const [, owner = '', image = ''] = destination.split('/');
      // renaming into a new name creates it there; over an existing one modifies it
      return { paths, change: true, creates: { owner, image } };
    }
    // Reading out of this image to another server (COPY with Destination) reads it.
    const change = !reads && !(request.method === 'COPY' && request.headers.source === undefined);
    if (request.method === 'MKCOL') return { paths, change: true, collection: true };
    const makes = request.method === 'PUT' || request.method === 'COPY';
    return { paths, change, creates: makes ? creates : undefined };
  }
  if (!reads) return null;
  // An image list hands out capabilities (URLs of its private images) that outlive any token: not by scope.
  if (/\/image-list(\.json)?$/.test(route)) return null;
  if (route === '/api/images' || route.startsWith('/api/images/'))
    return { paths: [imagePath], change: false };
  if (route === '/api/users/:user/images') return { paths: [`/${params.user}`], change: false };
  return null;
}
