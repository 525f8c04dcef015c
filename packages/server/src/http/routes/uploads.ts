/**
 * /api/uploads: resumable uploads over the tus 1.0.0 protocol (https://tus.io/protocols/resumable-upload),
 * with the creation, creation-with-upload, termination, checksum and expiration extensions. An upload names
 * its image in `Upload-Metadata` (`image`, and `owner` for another namespace) and, once whole, becomes the
 * image's next version exactly as a PUT to /api/images/raw/... does.
 */

import type { DigestAlgorithm, ExpectedDigests } from '@repoman/core';
import { RepomanError } from '@repoman/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ChunkChecksum, UploadState } from '../../services/versions/resumable.ts';
import { requireActor } from '../auth.ts';
import { abortOnClose, acceptBody, holdWhileWorking } from '../continue.ts';
import { imageUrl } from '../present.ts';
import type { RouteDeps } from './deps.ts';

const TUS_VERSION = '1.0.0';
const EXTENSIONS = 'creation,creation-with-upload,termination,checksum,expiration';
const OFFSET_STREAM = 'application/offset+octet-stream';
const CHECKSUM_BYTES: Record<string, number> = { sha1: 20, md5: 16, sha256: 32, sha512: 64 };
/** Upload-Checksum algorithms, as tus names them (and node:crypto does). */
const CHECKSUM_ALGORITHMS = ['sha1', 'md5', 'sha256', 'sha512'] as const;
const DIGEST_HEX: Record<DigestAlgorithm, number> = { sha256: 64, md5: 32, sha512: 128 };

/** When each request arrived (a newer request on an upload takes it over from an older one). */
const arrivals = new WeakMap<FastifyRequest['raw'], bigint>();
const orderOf = (request: FastifyRequest) => ({
  arrival: arrivals.get(request.raw) ?? process.hrtime.bigint(),
  signal: abortOnClose(request),
});

const header = (request: FastifyRequest, name: string) => {
  const value = request.headers[name];
  return typeof value === 'string' ? value : undefined;
};

function integerHeader(request: FastifyRequest, name: string): number | undefined {
  const value = header(request, name);
  if (value === undefined) return undefined;
  if (!/^\d{1,16}$/.test(value)) throw new RepomanError('bad_request', `Invalid ${name} '${value}'`);
  return Number(value);
}

/** `key base64,key base64,key`: the values decoded. */
function parseMetadata(value: string | undefined): Map<string, string> {
  const pairs = new Map<string, string>();
  if (value === undefined || value.trim() === '') return pairs;
  for (const member of value.split(',')) {
    const match = /^\s*([^\s,]+)(?:\s+([A-Za-z0-9+/]*={0,2}))?\s*$/.exec(member);
    if (!match) throw new RepomanError('bad_request', `Upload-Metadata: cannot parse '${member.trim()}'`);
    const key = match[1] as string;
    if (pairs.has(key)) throw new RepomanError('bad_request', `Upload-Metadata names '${key}' twice`);
    const value = Buffer.from(match[2] ?? '', 'base64').toString('utf8');
    if (value.includes('\u0000'))
      throw new RepomanError('invalid_field', `Upload-Metadata '${key}' holds a NUL character`, {
        details: {
          field: key,
        },
      });
    pairs.set(key, value);
  }
  return pairs;
}

/** Whole-image digests the client may declare in the metadata (`sha256`, `md5`, `sha512`, lowercase hex). */
function metadataDigests(metadata: Map<string, string>): ExpectedDigests {
  const expected: ExpectedDigests = {};
  for (const [algorithm, hexLength] of Object.entries(DIGEST_HEX) as [DigestAlgorithm, number][]) {
    const value = metadata.get(algorithm)?.trim().toLowerCase();
    if (value === undefined) continue;
    if (!new RegExp(`^[0-9a-f]{${hexLength}}$`).test(value))
      throw new RepomanError(
        'invalid_field',
        `Upload-Metadata ${algorithm} is not a hex ${algorithm} digest`,
      );
    expected[algorithm] = value;
  }
  return expected;
}

function chunkChecksum(request: FastifyRequest): ChunkChecksum | undefined {
  const value = header(request, 'upload-checksum');
  if (value === undefined) return undefined;
  const match = /^\s*(\S+)\s+(\S+)\s*$/.exec(value);
  if (!match) throw new RepomanError('bad_request', `Upload-Checksum: expected '<algorithm> <base64>'`);
  const algorithm = (match[1] as string).toLowerCase();
  if (!(CHECKSUM_ALGORITHMS as readonly string[]).includes(algorithm))
    throw new RepomanError(
      'checksum_algorithm_unsupported',
      `Upload-Checksum: '${algorithm}' is not supported`,
    );
  const digest = Buffer.from(match[2] as string, 'base64');
  if (digest.length !== CHECKSUM_BYTES[algorithm])
    throw new RepomanError('bad_request', `Upload-Checksum: not a base64 ${algorithm} digest`);
  return { algorithm, digest };
}

const hasBody = (request: FastifyRequest) =>
  request.headers['transfer-encoding'] !== undefined || (integerHeader(request, 'content-length') ?? 0) > 0;

function requireOffsetStream(request: FastifyRequest) {
  const type = header(request, 'content-type')?.split(';')[0]?.trim().toLowerCase();
  if (type !== OFFSET_STREAM)
    throw new RepomanError(
      'unsupported_media_type',
      `Upload bytes are sent as Content-Type: ${OFFSET_STREAM}`,
    );
}

function progressHeaders(reply: FastifyReply, state: UploadState) {
  reply
    .header('upload-offset', String(state.offset))
    .header('upload-expires', new Date(state.expires).toUTCString())
    .header('cache-control', 'no-store');
  if (state.version !== null) reply.header('repoman-version', String(state.version));
}

export function uploadRoutes(app: FastifyInstance, deps: RouteDeps) {
  const { services, urls } = deps;
  const { resumable } = services;

  app.register(async (tus) => {
    // The body is image bytes, read by the handlers once they have said yes.
    tus.removeAllContentTypeParsers();
    tus.addContentTypeParser('*', (_request, _payload, done) => done(null));
    tus.addHook('onRequest', async (request, reply) => {
      arrivals.set(request.raw, process.hrtime.bigint());
      reply.header('tus-resumable', TUS_VERSION);
      if (request.method !== 'OPTIONS' && header(request, 'tus-resumable') !== TUS_VERSION) {
        reply.header('tus-version', TUS_VERSION);
        throw new RepomanError('tus_version_unsupported', 'Send Tus-Resumable: 1.0.0');
      }
    });
    tus.addHook('onSend', async (_request, reply) => {
      reply.header('tus-resumable', TUS_VERSION);
    });

    const id = { type: 'object', properties: { id: { type: 'string' } } } as const;
    const tags = ['uploads'];

    tus.options(
      '/api/uploads',
      { config: { auth: 'optional' }, schema: { summary: 'What this tus server supports', tags } },
      async (_request, reply) =>
        reply
          .code(204)
          .header('tus-version', TUS_VERSION)
          .header('tus-extension', EXTENSIONS)
          .header('tus-max-size', String(services.versions.maxImageSize))
          .header('tus-checksum-algorithm', CHECKSUM_ALGORITHMS.join(','))
          .send(),
    );

    tus.post(
      '/api/uploads',
      {
        config: { streamsBody: true },
        schema: {
          summary:
            'Start a resumable upload (Upload-Length; Upload-Metadata: image, optional owner and sha256/md5/sha512); the body may carry the first bytes',
          tags,
        },
      },
      async (request, reply) => {
        const actor = requireActor(request);
        const length = integerHeader(request, 'upload-length');
        if (length === undefined) {
          throw new RepomanError(
            'bad_request',
            header(request, 'upload-defer-length') !== undefined
              ? 'Upload-Defer-Length is not supported: send Upload-Length'
              : 'Upload-Length is required',
          );
        }
        const rawMetadata = header(request, 'upload-metadata') ?? null;
        const metadata = parseMetadata(rawMetadata ?? undefined);
        const image = metadata.get('image');
        if (!image)
          throw new RepomanError('invalid_field', 'Upload-Metadata must name the image: image <base64 name>');
        const owner = metadata.get('owner') || actor.name;
        const expected = metadataDigests(metadata);
        const withBody = hasBody(request);
        if (withBody) requireOffsetStream(request);
        const checksum = withBody ? chunkChecksum(request) : undefined;
        const declaredLength = integerHeader(request, 'content-length');
        if (declaredLength !== undefined && declaredLength > length)
          throw new RepomanError('payload_too_large', `The body is longer than Upload-Length (${length})`);

        const created = await resumable.create(actor, { owner, name: image }, length, {
          metadata: rawMetadata,
          expected,
          declaredFormat: metadata.get('disk_format'),
          decompress: ['true', '1', 'yes'].includes(metadata.get('decompress') ?? ''),
        });
        // Relative: the client resolves it against the URL it used, whatever proxy or balancer is in between.
        reply.header('location', `/api/uploads/${created.id}`);
        let state = created;
        if (withBody || length === 0) {
          try {
            state = await resumable.append(actor, created.id, {
              offset: 0,
              body: request.raw,
              declaredLength,
              checksum,
              ...orderOf(request),
              onAccepted: () => {
                acceptBody(request, reply);
                holdWhileWorking(request, reply);
              },
            });
          } catch (error) {
            // The client learns no Location from a failed creation: it would never come back for this one.
            await resumable
              .terminate(actor, created.id, { arrival: process.hrtime.bigint() })
              .catch(() => {});
            throw error;
          }
        }
        progressHeaders(reply, state);
        request.audit = { detail: { upload: created.id, length: created.length } };
        if (state.version !== null) {
          reply.header('content-location', imageUrl(urls(request), owner, image));
          request.audit.detail = { ...request.audit.detail, version: state.version };
        }
        return reply.code(201).send();
      },
    );

    tus.route<{ Params: { id: string } }>({
      method: 'HEAD',
      url: '/api/uploads/:id',
      schema: { summary: 'Where the upload stands (Upload-Offset, Upload-Length)', tags, params: id },
      handler: async (request, reply) => {
        const state = await resumable.status(requireActor(request), request.params.id, orderOf(request));
        progressHeaders(reply, state);
        reply.header('upload-length', String(state.length));
        if (state.metadata) reply.header('upload-metadata', state.metadata);
        return reply.code(200).send();
      },
    });

    tus.patch<{ Params: { id: string } }>(
      '/api/uploads/:id',
      {
        config: { streamsBody: true },
        schema: {
          summary: 'Append bytes at Upload-Offset (Content-Type: application/offset+octet-stream)',
          tags,
          params: id,
        },
      },
      async (request, reply) => {
        const actor = requireActor(request);
        requireOffsetStream(request);
        const offset = integerHeader(request, 'upload-offset');
        if (offset === undefined) throw new RepomanError('bad_request', 'Upload-Offset is required');
        const checksum = chunkChecksum(request);
        const declaredLength = integerHeader(request, 'content-length');
        // Refusals from the headers (a wrong offset, a locked upload) come before the body is accepted.
        const state = await resumable.append(actor, request.params.id, {
          offset,
          body: request.raw,
          declaredLength,
          checksum,
          ...orderOf(request),
          onAccepted: () => {
            acceptBody(request, reply);
            holdWhileWorking(request, reply);
          },
        });
        progressHeaders(reply, state);
        // The request that completes the upload is the one the audit log records, as the image's upload.
        if (state.version !== null)
          request.audit = {
            target: await services.images.nameOf(state.imageId).catch(() => undefined),
            detail: { upload: state.id, version: state.version, size: state.length },
          };
        return reply.code(204).send();
      },
    );

    tus.delete<{ Params: { id: string } }>(
      '/api/uploads/:id',
      { schema: { summary: 'Abandon the upload and delete its bytes (tus termination)', tags, params: id } },
      async (request, reply) => {
        await resumable.terminate(requireActor(request), request.params.id, orderOf(request));
        return reply.code(204).send();
      },
    );
  });
}
