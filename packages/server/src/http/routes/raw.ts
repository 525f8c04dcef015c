/**
 * /api/images/raw/[{user}/]{image}: the bytes. PUT uploads a new version (the raw body, as `curl -T` sends
 * it), and creates the image first if the name is free in the caller's namespace, as grid tools expect of a
 * PUT; GET and HEAD download with everything plain HTTP clients, hypervisors and grid tools use: lengths,
 * validators, single and multiple ranges, conditional requests, digests (`Repr-Digest`, and RFC 3230's
 * `Digest` for what `Want-Digest` asks), a file name. DELETE removes the image, as `DELETE /api/images/...`
 * does (gfal-rm; gfal-copy -f deletes, then writes); MOVE renames it within its namespace. Public images need
 * no certificate, also on the plain-HTTP port. The tree's WebDAV listings are in routes/webdav.ts.
 */
import type http from 'node:http';
import { pipeline } from 'node:stream/promises';
import { FORMATS, RepomanError, VARIANT_FORMATS, type VariantFormat, versionNumber } from '@repoman/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { BlobReadable, ByteRange } from '../../blobs/store.ts';
import type { ImageRef } from '../../services/images.ts';
import { refusalInstead, requireActor } from '../auth.ts';
import { multipart, parseRanges } from '../byteranges.ts';
import { abortOnClose, acceptBody, holdWhileWorking } from '../continue.ts';
import { digestHeader, expectedDigests, reprDigest, wantedDigests } from '../digests.ts';
import { RAW_FORMS, type RefParams, rawPath, refOf } from '../image-ref.ts';
import { imageJson } from '../present.ts';
import type { RouteDeps } from './deps.ts';
import { deleteImage, dryRunQuery } from './images.ts';

/** `/api/images/raw/:user/:image`: the form grid tools use. */
const FULL_FORM = RAW_FORMS[0];

interface DownloadQuery {
  version?: number;
  format?: VariantFormat;
}

function declaredLength(request: FastifyRequest): number | undefined {
  const header = request.headers['content-length'];
  if (header === undefined) return undefined;
  if (!/^\d+$/.test(header)) throw new RepomanError('bad_request', `Invalid Content-Length '${header}'`);
  return Number(header);
}

const httpDate = (iso: string) => new Date(iso).toUTCString();
/** HTTP dates have whole seconds: compare at that precision. */
const seconds = (value: string | number) => Math.floor(new Date(value).getTime() / 1000);

function contentDisposition(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}

export function rawRoutes(app: FastifyInstance, deps: RouteDeps) {
  const { services, urls } = deps;

  app.register(async (raw) => {
    // The body is the image: no parser reads it; the PUT handler streams it once it has said yes.
    raw.removeAllContentTypeParsers();
    raw.addContentTypeParser('*', (_request, _payload, done) => done(null));

    for (const form of RAW_FORMS) {
      const params = { type: 'object', properties: form.params, required: form.required } as const;

      raw.put<{ Params: RefParams; Querystring: { disk_format?: string; decompress?: boolean } }>(
        form.path,
        {
          config: { streamsBody: true },
          schema: {
            summary:
              'Upload the image bytes as the raw body (curl -T FILE URL); each upload is a new version. ?disk_format=qcow2 refuses anything else; ?decompress=true stores a gzip, xz, zstd or bzip2 upload decompressed',
            tags: ['images'],
            params,
            querystring: {
              type: 'object',
              additionalProperties: false,
              properties: {
                disk_format: { type: 'string', enum: [...FORMATS] },
                decompress: { type: 'boolean' },
              },
            },
          },
        },
        async (request, reply) => {
          const actor = requireActor(request);
          const ref = refOf(request);
          const expected = expectedDigests(request.headers);
          const admitted = await services.versions.admitUpload(actor, ref, declaredLength(request), {
            declaredFormat: request.query.disk_format,
            decompress: request.query.decompress === true,
            createIfMissing: true,
          });
          acceptBody(request, reply);
          holdWhileWorking(request, reply);
          const received = await services.versions.receive(
            admitted,
            request.raw,
            expected,
            abortOnClose(request),
          );
          const view = await services.images.get(actor, ref);
          request.audit = {
            detail: {
              version: received.version,
              size: received.size,
              sha256: received.digests.sha256,
              ...(received.createdImage ? { created: true } : {}),
            },
          };
          return reply
            .code(received.created ? 201 : 200)
            .header('repr-digest', reprDigest(received.digests.sha256))
            .send(imageJson(urls(request), view));
        },
      );

      // DELETE and MOVE take the full form only: a WebDAV client reads one segment as a namespace, and must not
      // delete the caller's image of that name when it means the namespace.
      if (form === FULL_FORM) {
        raw.delete<{ Params: RefParams; Querystring: { dry_run?: boolean } }>(
          form.path,
          {
            schema: {
              summary:
                'Delete the image, its versions and its shares, exactly as DELETE /api/images/{user}/{image} does (gfal-rm; gfal-copy -f deletes, then writes); ?dry_run=true only says whether it would',
              tags: ['images'],
              params,
              querystring: dryRunQuery,
            },
          },
          deleteImage(services),
        );

        // WebDAV's MOVE renames an image within its namespace (RFC 4918 §9.9); OpenAPI cannot describe it.
        raw.route<{ Params: RefParams }>({
          method: 'MOVE',
          url: form.path,
          schema: { hide: true },
          handler: async (request, reply) => {
            const actor = requireActor(request);
            const from = refOf(request);
            const to = destinationOf(request);
            if (to.owner !== from.owner)
              throw new RepomanError(
                'forbidden',
                `MOVE renames within a namespace; ${to.owner} is not ${from.owner}'s (to give an image away, offer it: repoman transfer-image)`,
              );
            const overwrite =
              String(request.headers.overwrite ?? 'T')
                .trim()
                .toUpperCase() !== 'F';
            // Set before the rename: a refused one is recorded with what it asked for too.
            const detail: Record<string, unknown> = { fields: ['name'], to: to.name };
            request.audit = { detail };
            const { replaced } = await services.images.rename(actor, from, to.name, { overwrite });
            if (replaced) detail.replaced = replaced;
            return reply
              .code(replaced ? 204 : 201)
              .header('location', urls(request).https + rawPath(to.owner, to.name))
              .send();
          },
        });
      }

      raw.route<{ Params: RefParams; Querystring: DownloadQuery }>({
        method: ['GET', 'HEAD'],
        url: form.path,
        exposeHeadRoute: false,
        config: { auth: 'optional', plainHttp: true },
        schema: {
          summary:
            'Download the image (public images without a certificate, also over plain HTTP); ?version=N for an older one, ?format=raw for a converted variant',
          tags: ['images'],
          params,
          querystring: {
            type: 'object',
            additionalProperties: false,
            properties: {
              version: versionNumber,
              format: { type: 'string', enum: [...VARIANT_FORMATS] },
            },
          },
        },
        handler: async (request, reply) => {
          try {
            return await download(request, reply);
          } catch (error) {
            throw refusalInstead(request, error);
          }
        },
      });
    }
  });

  /**
   * The image a MOVE's `Destination` names: a URL or a path of the bytes, in the full form. A URL of another
   * server is refused: this server moves only its own images.
   */
  function destinationOf(request: FastifyRequest): ImageRef {
    const header = request.headers.destination;
    if (typeof header !== 'string' || header.trim() === '')
      throw new RepomanError('bad_request', 'MOVE needs a Destination header (the new URL of the image)');
    const here = request.headers.host ?? 'localhost';
    let url: URL;
    try {
      url = new URL(header.trim(), `https://${here}`);
    } catch {
      throw new RepomanError('bad_request', `Destination '${header}' is not a URL`);
    }
    if (url.host !== here && url.host !== new URL(urls(request).https).host)
      throw new RepomanError('bad_request', `Destination '${header}' is on another server than this one`);
    const segments = url.pathname.replace(/^\/api\/images\/raw\//, '').split('/');
    if (
      !url.pathname.startsWith('/api/images/raw/') ||
      segments.length !== 2 ||
      segments.some((s) => s === '')
    )
      throw new RepomanError(
        'bad_request',
        `Destination '${header}' does not name an image (/api/images/raw/{user}/{image})`,
      );
    try {
      const [owner = '', name = ''] = segments.map((s) => decodeURIComponent(s));
      return { owner, name };
    } catch {
      throw new RepomanError('bad_request', `Destination '${header}' is not valid percent-encoding`);
    }
  }

  async function download(
    request: FastifyRequest<{ Params: RefParams; Querystring: DownloadQuery }>,
    reply: FastifyReply,
  ) {
    if (request.params.user === undefined && !request.actor) {
      throw new RepomanError(
        'certificate_required',
        'Name the namespace (/api/images/raw/{user}/{image}) or present a certificate',
      );
    }
    const ref = refOf(request);
    const { version, format } = request.query;
    const download = await services.versions.openDownload(request.actor, ref, { version, format });
    const { etag, size, lastModified } = download;
    reply
      .header('etag', etag)
      .header('last-modified', httpDate(lastModified))
      .header('cache-control', `${download.cacheScope}, no-cache`)
      // The Digest header answers Want-Digest: a shared cache keeps one answer per ask.
      .header('vary', 'Want-Digest');

    const ifNoneMatch = request.headers['if-none-match'];
    const ifModifiedSince = request.headers['if-modified-since'];
    const notModified =
      ifNoneMatch !== undefined
        ? ifNoneMatch.split(',').some((tag) => ['*', etag, `W/${etag}`].includes(tag.trim()))
        : ifModifiedSince !== undefined && seconds(ifModifiedSince) >= seconds(lastModified);
    if (notModified) return reply.code(304).send();

    // If-Range: the range applies only to the bytes the client already has part of. Only the strong ETag
    // identifies them; a date could match two versions uploaded within one second.
    const ifRange = request.headers['if-range'] as string | undefined;
    const rangeHeader = ifRange === undefined || ifRange === etag ? request.headers.range : undefined;
    // RFC 3230: the digests a grid tool asks for (gfal-sum, gfal-copy -K), beside Repr-Digest.
    const wanted = wantedDigests(request.headers['want-digest']);
    if (wanted.length > 0) {
      const digest = digestHeader(wanted, await download.digests(wanted));
      if (digest) reply.header('digest', digest);
    }
    let ranges: ReturnType<typeof parseRanges>;
    try {
      ranges = parseRanges(rangeHeader, size);
    } catch (error) {
      reply.header('content-range', `bytes */${size}`); // (too_many_ranges)
      throw error;
    }
    if (ranges === 'unsatisfiable') {
      reply.header('content-range', `bytes */${size}`);
      throw new RepomanError(
        'range_not_satisfiable',
        `The image has ${size} bytes; ${rangeHeader} is outside them`,
      );
    }
    // With an object store, bytes may flow from it straight to the client: the server only decided who may
    // read them. HEAD, empty images and several ranges (which object stores do not answer as multipart) are
    // answered here.
    const disposition = contentDisposition(download.fileName);
    if (request.method === 'GET' && size > 0 && (ranges === null || ranges.length === 1)) {
      const location = await download.redirect({ contentDisposition: disposition });
      if (location)
        return reply
          .code(307)
          .header('location', location)
          .header('repr-digest', reprDigest(download.sha256))
          .send();
    }
    const range = ranges?.length === 1 ? ranges[0] : undefined;
    // Open the bytes before promising anything about them: a blob pruned meanwhile is a clean 404.
    const body =
      request.method === 'HEAD' || size === 0 ? null : await download.open(ranges ? ranges[0] : undefined);
    reply
      .header('content-type', download.contentType)
      .header('accept-ranges', 'bytes')
      .header('content-disposition', disposition)
      // Users' bytes share an origin with the web interface: never taken for a page or a script.
      .header('x-content-type-options', 'nosniff')
      .header('repr-digest', reprDigest(download.sha256));
    if (ranges && ranges.length > 1) {
      const parts = multipart(ranges, size, download.contentType);
      reply
        .code(206)
        .header('content-type', parts.contentType)
        .header('content-length', String(parts.length));
      if (!body) return reply.send();
      return sendParts(request, reply, body, ranges, parts, (next) => download.open(next));
    }
    if (range) {
      reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${size}`);
      reply.header('content-length', String(range.end - range.start + 1));
    } else {
      reply.header('content-length', String(size));
    }
    if (body?.pipeTo) {
      const pipeTo = body.pipeTo;
      return sendHijacked(request, reply, async (out) => {
        await pipeTo(out);
      });
    }
    return reply.send(body ?? undefined);
  }

  /**
   * Writes the answer's bytes itself: the store writes them through reused buffers (memory stays flat at any
   * size), or the parts of several ranges go out one after the other.
   */
  async function sendHijacked(
    request: FastifyRequest,
    reply: FastifyReply,
    write: (out: http.ServerResponse) => Promise<void>,
  ) {
    reply.hijack();
    reply.raw.writeHead(reply.statusCode, reply.getHeaders() as http.OutgoingHttpHeaders);
    try {
      await write(reply.raw);
      reply.raw.end();
    } catch (error) {
      // Headers are out: cutting the connection is the only way to say it. Usually the client went away.
      request.log.info({ err: error }, 'download ended early');
      reply.raw.destroy(error as Error);
    }
    return reply;
  }

  /** A multipart/byteranges body: each part's head, then its bytes, read as the part's turn comes. */
  function sendParts(
    request: FastifyRequest,
    reply: FastifyReply,
    first: BlobReadable,
    ranges: ByteRange[],
    parts: ReturnType<typeof multipart>,
    open: (range: ByteRange) => Promise<BlobReadable>,
  ) {
    return sendHijacked(request, reply, async (out) => {
      for (const [i, range] of ranges.entries()) {
        out.write(parts.heads[i]);
        const bytes = i === 0 ? first : await open(range);
        if (bytes.pipeTo) await bytes.pipeTo(out);
        else await pipeline(bytes, out, { end: false });
      }
      out.write(parts.tail);
    });
  }
}
