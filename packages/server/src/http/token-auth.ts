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
import { destinationPath, pathOf, RAW } from './capability-auth.ts';

/** A path of the bytes' tree as a storage path: `/api/images/raw/bob/` is `/bob`, the tree itself `/`. */
const storagePath = (path: string) => path.slice(RAW.length).replace(/\/+$/, '') || '/';

/** The storage request of `request`, made by `actorName`; null where no scope can allow anything. */
export function storageRequestOf(request: FastifyRequest, actorName: string): StorageRequest | null {
  const route = request.routeOptions.url ?? '';
  const params = (request.params ?? {}) as { user?: string; image?: string };
  const reads = READ_METHODS.has(request.method);
  const imagePath = storagePath(pathOf(request, actorName));
  if (route === '/api/whoami' && reads) return { paths: [], change: false };
  if (route.startsWith(RAW)) {
    if (request.method === 'POST') return null; // asking for a capability: with a certificate only
    const paths = [imagePath];
    const creates =
      params.image !== undefined ? { owner: params.user ?? actorName, image: params.image } : undefined;
    if (request.method === 'MOVE') {
      const destinationRaw = destinationPath(request);
      if (destinationRaw === null) return null;
      const destination = storagePath(destinationRaw);
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
