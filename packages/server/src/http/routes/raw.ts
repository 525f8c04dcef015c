/**
 * /api/images/raw/[{user}/]{image}: the bytes. PUT uploads a new version (the raw body, as `curl -T` sends
 * it); GET and HEAD download with everything plain HTTP clients and hypervisors use: lengths, validators,
 * single ranges, conditional requests, a digest, a file name. Public images need no certificate, also on the
 * plain-HTTP port.
 */
import type http from 'node:http';
import { FORMATS, RepomanError, VARIANT_FORMATS, type VariantFormat, versionNumber } from '@repoman/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ByteRange } from '../../blobs/store.ts';
import { refusalInstead, requireActor } from '../auth.ts';
import { abortOnClose, acceptBody, holdWhileWorking } from '../continue.ts';
import { expectedDigests, reprDigest } from '../digests.ts';
import { RAW_FORMS, type RefParams, refOf } from '../image-ref.ts';
import { imageJson } from '../present.ts';
import type { RouteDeps } from './deps.ts';

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

/** One `bytes=a-b`, `a-` or `-n` range; null for none, for one we ignore (several), or 'unsatisfiable'. */
export function parseRange(header: string | undefined, size: number): ByteRange | null | 'unsatisfiable' {
  if (!header) return null;
  const match = /^bytes\s*=\s*(\d*)-(\d*)$/i.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return null; // several ranges or junk: send it all (RFC 9110)
  if (match[1] === '') {
    const suffix = Number(match[2]);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(match[1]);
  if (match[2] !== '' && Number(match[2]) < start) return null; // an invalid range is ignored (RFC 9110 14.1.1)
  const end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  if (start >= size) return 'unsatisfiable';
  return { start, end };
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
            detail: { version: received.version, size: received.size, sha256: received.digests.sha256 },
          };
          return reply
            .code(received.created ? 201 : 200)
            .header('repr-digest', reprDigest(received.digests.sha256))
            .send(imageJson(urls(request), view));
        },
      );

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
      .header('cache-control', `${download.cacheScope}, no-cache`);

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
    // With an object store, bytes may flow from it straight to the client: the server only decided who may
    // read them. HEAD, and empty images, are answered here.
    const disposition = contentDisposition(download.fileName);
    if (request.method === 'GET' && size > 0) {
      const location = await download.redirect({ contentDisposition: disposition });
      if (location)
        return reply
          .code(307)
          .header('location', location)
          .header('repr-digest', reprDigest(download.sha256))
          .send();
    }
    const range = parseRange(rangeHeader, size);
    if (range === 'unsatisfiable') {
      reply.header('content-range', `bytes */${size}`);
      throw new RepomanError(
        'range_not_satisfiable',
        `The image has ${size} bytes; ${rangeHeader} is outside them`,
      );
    }
    // Open the bytes before promising anything about them: a blob pruned meanwhile is a clean 404.
    const body = request.method === 'HEAD' || size === 0 ? null : await download.open(range ?? undefined);
    reply
      .header('content-type', download.contentType)
      .header('accept-ranges', 'bytes')
      .header('content-disposition', disposition)
      // Users' bytes share an origin with the web interface: never taken for a page or a script.
      .header('x-content-type-options', 'nosniff')
      .header('repr-digest', reprDigest(download.sha256));
    if (range) {
      reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${size}`);
      reply.header('content-length', String(range.end - range.start + 1));
    } else {
      reply.header('content-length', String(size));
    }
    if (body?.pipeTo) {
      // The store writes the bytes itself through reused buffers (memory stays flat at any size).
      reply.hijack();
      reply.raw.writeHead(reply.statusCode, reply.getHeaders() as http.OutgoingHttpHeaders);
      try {
        await body.pipeTo(reply.raw);
        reply.raw.end();
      } catch (error) {
        // Headers are out: cutting the connection is the only way to say it. Usually the client went away.
        request.log.info({ err: error }, 'download ended early');
        reply.raw.destroy(error as Error);
      }
      return reply;
    }
    return reply.send(body ?? undefined);
  }
}
