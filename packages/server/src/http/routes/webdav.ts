/**
 * WebDAV's read side (RFC 4918) over the bytes' URLs, as grid storage (dCache, XRootD, EOS) serves it and
 * gfal2, davix and rclone ask for it: the tree `/api/images/raw/` → `{user}/` → `{image}`.
 *
 * - `PROPFIND` with Depth 0 or 1 on the tree's root (the namespaces the caller sees images in, and their own),
 *   on a namespace (the images the caller may see there) and on an image: sizes, dates, ETags, the resource
 *   type, and the checksums as dCache publishes them (`Checksums`, RFC 3230 `Digest` values). Depth infinity
 *   is refused (403), as RFC 4918 allows: the tree is two levels deep and Depth 1 walks it.
 * - `OPTIONS` (answered for every API path in app.ts): `DAV: 1` here, and the methods the path takes.
 * - `MKCOL` on a namespace: 405 if it exists (RFC 4918 §9.3.1), 403 if not (namespaces are accounts).
 *
 * In the tree, one segment names a namespace and two name an image, with or without a trailing slash:
 * `/api/images/raw/bob` is Bob's namespace to PROPFIND, while GET and PUT read it as the short form of the
 * caller's own image `bob`. Grid tools name images in full (`/api/images/raw/{user}/{image}`).
 */
import { RepomanError } from '@repoman/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ImageView } from '../../services/images.ts';
import type { NamespaceEntry } from '../../services/namespaces.ts';
import { refusalInstead, requireActor } from '../auth.ts';
import { digestHeader } from '../digests.ts';
import { methodNotAllowedHandler } from '../errors.ts';
import { rawPath } from '../image-ref.ts';
import {
  DAV,
  type DavResource,
  DCACHE,
  davResource,
  escapeXml,
  multistatus,
  parsePropfind,
} from '../webdav-xml.ts';
import type { RouteDeps } from './deps.ts';

const ROOT = '/api/images/raw/';
const seg = encodeURIComponent;
const httpDate = (iso: string) => new Date(iso).toUTCString();
/** RFC 3339, as `creationdate` wants it. */
const rfc3339 = (iso: string) => new Date(iso).toISOString();

/** A PROPFIND body is a few hundred bytes; anything near this is not one. */
const PROPFIND_BODY_LIMIT = 64 * 1024;

function collection(href: string, name: string, entry?: NamespaceEntry): DavResource {
  return davResource(href, [
    [DAV, 'resourcetype', '<d:collection/>'],
    [DAV, 'displayname', escapeXml(name)],
    ...(entry?.modified
      ? [[DAV, 'getlastmodified', httpDate(entry.modified)] as [string, string, string]]
      : []),
    ...(entry?.created ? [[DAV, 'creationdate', rfc3339(entry.created)] as [string, string, string]] : []),
  ]);
}

function imageResource(image: ImageView): DavResource {
  const props: [string, string, string][] = [
    [DAV, 'resourcetype', ''],
    [DAV, 'displayname', escapeXml(image.name)],
    [DAV, 'getcontentlength', String(image.size ?? 0)],
    [DAV, 'getlastmodified', httpDate(image.uploaded ?? image.created)],
    [DAV, 'creationdate', rfc3339(image.created)],
    [DAV, 'getcontenttype', 'application/octet-stream'],
  ];
  if (image.digests) {
    props.push([DAV, 'getetag', escapeXml(`"${image.digests.sha256}"`)]);
    const checksums = digestHeader(['adler32', 'md5', 'sha256', 'sha512'], image.digests);
    if (checksums) props.push([DCACHE, 'Checksums', escapeXml(checksums)]);
  }
  return davResource(rawPath(image.owner, image.name), props);
}

type Depth = 0 | 1;

/** Depth 0 or 1; infinity (also when absent, RFC 4918 §9.1) is refused on collections. */
function depthOf(request: FastifyRequest): Depth | 'infinity' {
  const header = String(request.headers.depth ?? 'infinity')
    .trim()
    .toLowerCase();
  if (header === '0') return 0;
  if (header === '1') return 1;
  if (header === 'infinity') return 'infinity';
  throw new RepomanError('bad_request', `Depth must be 0, 1 or infinity, not '${header}'`);
}

function finite(depth: Depth | 'infinity'): Depth {
  if (depth === 'infinity')
    throw new RepomanError(
      'propfind_finite_depth',
      'PROPFIND with Depth: infinity (the default) is refused here; ask with Depth: 0 or 1',
    );
  return depth;
}

export function webdavRoutes(app: FastifyInstance, deps: RouteDeps) {
  const { services, methods } = deps;

  app.register(async (dav) => {
    // A PROPFIND body is XML, whatever Content-Type it comes with (often none).
    dav.removeAllContentTypeParsers();
    dav.addContentTypeParser('*', { parseAs: 'string', bodyLimit: PROPFIND_BODY_LIMIT }, (_r, body, done) =>
      done(null, body),
    );

    async function answer(
      request: FastifyRequest,
      reply: FastifyReply,
      resources: () => Promise<DavResource[]>,
    ) {
      const asked = parsePropfind(typeof request.body === 'string' ? request.body : '');
      try {
        const found = await resources();
        return reply.code(207).type('application/xml; charset=utf-8').send(multistatus(found, asked));
      } catch (error) {
        throw refusalInstead(request, error);
      }
    }

    /** PROPFIND on these paths answers with `resources` (open to anonymous callers, as GET is). */
    function propfindAt<Params>(
      urls: string[],
      resources: (request: FastifyRequest<{ Params: Params }>) => Promise<DavResource[]>,
    ) {
      for (const url of urls)
        dav.route<{ Params: Params }>({
          method: 'PROPFIND',
          url,
          config: { auth: 'optional', plainHttp: true },
          schema: { hide: true },
          handler: (request, reply) => answer(request, reply, () => resources(request)),
        });
    }

    propfindAt(['/api/images/raw', ROOT], async (request) => {
      const depth = finite(depthOf(request));
      const root = collection(ROOT, 'raw');
      if (depth === 0) return [root];
      const namespaces = await services.namespaces.list(request.actor);
      return [root, ...namespaces.map((n) => collection(`${ROOT}${seg(n.name)}/`, n.name, n))];
    });

    propfindAt<{ user: string }>(['/api/images/raw/:user', '/api/images/raw/:user/'], async (request) => {
      const depth = finite(depthOf(request));
      const listing = await services.namespaces.show(request.actor, request.params.user);
      const self = collection(`${ROOT}${seg(listing.name)}/`, listing.name, listing);
      return depth === 0 ? [self] : [self, ...listing.images.map(imageResource)];
    });

    propfindAt<{ user: string; image: string }>(
      ['/api/images/raw/:user/:image', '/api/images/raw/:user/:image/'],
      async (request) => {
        depthOf(request); // checked, and of no consequence for an image
        const { user: owner, image: name } = request.params;
        return [imageResource(await services.images.get(request.actor, { owner, name }))];
      },
    );

    for (const url of ['/api/images/raw/:user', '/api/images/raw/:user/']) {
      dav.route<{ Params: { user: string } }>({
        method: 'MKCOL',
        url,
        schema: { hide: true },
        handler: async (request, reply) => {
          const actor = requireActor(request);
          const exists = await services.users.get(actor, request.params.user).then(
            () => true,
            (error: unknown) => {
              if (error instanceof RepomanError && error.code === 'user_not_found') return false;
              throw error;
            },
          );
          if (!exists)
            throw new RepomanError(
              'forbidden',
              `No namespace '${request.params.user}': namespaces are user accounts, which admins create`,
            );
          return methodNotAllowedHandler(
            request,
            reply,
            methods.of(request.url) ?? [],
            `The namespace '${request.params.user}' exists already (MKCOL makes only what does not exist)`,
          );
        },
      });
    }
  });
}
