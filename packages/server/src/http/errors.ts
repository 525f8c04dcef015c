/** One error handler: coded errors keep their status and message; anything unexpected is a 500 that hides internals. */

import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { ACCOUNT_NAME_PATTERN, type ErrorBody, IMAGE_NAME_PATTERN, RepomanError } from '@repoman/core';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { closeLingering, isLingering } from './lingering-close.ts';

interface ValidationItem {
  keyword: string;
  instancePath: string;
  params: Record<string, unknown>;
  message?: string;
}

/** Name patterns explained in words instead of as a regular expression. */
const NAME_RULES: Record<string, string> = {
  [IMAGE_NAME_PATTERN]:
    "an image name has 1-128 letters, digits, '.', '_' or '-' and does not start with '.'",
  [ACCOUNT_NAME_PATTERN]: "user and group names have 1-64 lowercase letters, digits, '_' or '-'",
};

/** The offending value, for the message. */
function valueAt(request: FastifyRequest | undefined, context: string | undefined, path: string): string {
  const source =
    context === 'querystring' ? request?.query : context === 'params' ? request?.params : request?.body;
  const value = source && typeof source === 'object' ? (source as Record<string, unknown>)[path] : undefined;
  return String(value ?? '');
}

function validationError(error: FastifyError, request?: FastifyRequest): RepomanError {
  const first = (error.validation as ValidationItem[] | undefined)?.[0];
  const where = error.validationContext === 'querystring' ? 'query parameter' : 'field';
  if (!first) return new RepomanError('invalid_field', error.message);
  const path = first.instancePath.replace(/^\//, '').replaceAll('/', '.');
  if (first.keyword === 'additionalProperties') {
    const name = String(first.params.additionalProperty);
    return new RepomanError('unknown_field', `Unknown ${where} '${name}'`, { details: { field: name } });
  }
  if (first.keyword === 'required') {
    const name = String(first.params.missingProperty);
    return new RepomanError('invalid_field', `Missing required ${where} '${name}'`, {
      details: { field: name },
    });
  }
  if (!path) {
    return new RepomanError(
      'invalid_field',
      `The request ${error.validationContext ?? 'body'} ${first.message}`,
    );
  }
  const rule = first.keyword === 'pattern' ? NAME_RULES[String(first.params.pattern)] : undefined;
  if (rule) {
    const value = valueAt(request, error.validationContext, path);
    return new RepomanError('invalid_name', `Invalid ${path} '${value}': ${rule}`, {
      details: { field: path },
    });
  }
  const allowed =
    first.keyword === 'enum' ? ` (one of: ${(first.params.allowedValues as string[]).join(', ')})` : '';
  return new RepomanError('invalid_field', `Invalid ${where} '${path}': ${first.message}${allowed}`, {
    details: {
      field: path,
    },
  });
}

/** Fastify's own errors for malformed requests, mapped onto our codes. */
function frameworkError(error: FastifyError): RepomanError | null {
  switch (error.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new RepomanError('unsupported_media_type', `Unsupported Content-Type; send JSON or form fields`);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new RepomanError('bad_request', error.message);
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new RepomanError('payload_too_large', 'The request body is too large');
  }
  if (error instanceof SyntaxError || error.statusCode === 400)
    return new RepomanError('bad_request', error.message);
  return null;
}

export function toRepomanError(error: unknown, request?: FastifyRequest): RepomanError | null {
  if (error instanceof RepomanError) return error;
  const fe = error as FastifyError;
  if (fe?.validation) return validationError(fe, request);
  return frameworkError(fe);
}

export function errorHandler(error: unknown, request: FastifyRequest, reply: FastifyReply) {
  const coded = toRepomanError(error, request);
  request.errorCode = coded?.code ?? 'internal';
  if (coded) {
    if (coded.status >= 500) request.log.error({ err: coded.cause ?? coded }, coded.message);
    return reply.code(coded.status).type('application/json').send(coded.toBody());
  }
  request.log.error({ err: error }, 'unhandled error');
  const body: ErrorBody = { error: { code: 'internal', message: 'Internal server error' } };
  return reply.code(500).type('application/json').send(body);
}

export function notFoundHandler(request: FastifyRequest, reply: FastifyReply) {
  request.errorCode = 'not_found';
  const body: ErrorBody = {
    error: { code: 'not_found', message: `No route ${request.method} ${request.url.split('?')[0]}` },
  };
  return reply.code(404).type('application/json').send(body);
}

/** A method the path does not take (the path is known: http/allowed-methods.ts), said in `message` if given. */
export function methodNotAllowedHandler(
  request: FastifyRequest,
  reply: FastifyReply,
  allow: string[],
  message = `${request.url.split('?')[0]} does not take ${request.method}; it takes ${allow.join(', ')}`,
) {
  request.errorCode = 'method_not_allowed';
  const body: ErrorBody = { error: { code: 'method_not_allowed', message } };
  return reply.code(405).header('allow', allow.join(', ')).type('application/json').send(body);
}

/** Fastify's own refusals before routing (a URL that is not valid percent-encoding), as our JSON. */
export function badUrlHandler(error: FastifyError, _request: FastifyRequest, reply: FastifyReply) {
  const coded = new RepomanError('bad_request', `The URL is not valid: ${error.message}`);
  return reply.code(coded.status).type('application/json').send(coded.toBody());
}

/**
 * Requests Node's HTTP parser rejects (a garbage Content-Length, both Content-Length and Transfer-Encoding,
 * oversized headers, a request that took too long) are answered with our JSON before the connection closes,
 * lingering so that the client reads the answer (http/lingering-close.ts).
 */
export function clientErrorHandler(error: Error & { code?: string }, socket: Duplex): void {
  if (error.code === 'ECONNRESET' || socket.destroyed || isLingering(socket)) return;
  // Only for what the parser refused, and only if no response has started on this connection (a garbage
  // request pipelined behind a download must not write into the image's bytes): otherwise, just close.
  const parsing = error.code?.startsWith('HPE_') || error.code === 'ERR_HTTP_REQUEST_TIMEOUT';
  const responding = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage
    ?.headersSent;
  if (!parsing || responding) {
    socket.destroy();
    return;
  }
  const coded =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? new RepomanError('headers_too_large')
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? new RepomanError('request_timeout')
        : new RepomanError('bad_request', `Malformed HTTP request${error.code ? ` (${error.code})` : ''}`);
  const body = JSON.stringify(coded.toBody());
  if (socket.writable)
    socket.write(
      `HTTP/1.1 ${coded.status} ${STATUS_CODES[coded.status] ?? 'Error'}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  closeLingering(socket);
}

const JSON_TYPES = (value: unknown): string[] =>
  value === null
    ? ['null']
    : Array.isArray(value)
      ? ['array']
      : typeof value === 'number'
        ? Number.isInteger(value)
          ? ['integer', 'number']
          : ['number']
        : [typeof value];

/**
 * JSON bodies get no type coercion: `{"name": 42}` or `{"read_only": null}` is a mistake, not "42" or false.
 * (Form fields are all text, and query parameters too: those are coerced by the schema as before.) Text may
 * never hold NUL, which PostgreSQL cannot store or compare: refused the same way on both engines, in bodies,
 * queries and paths.
 */
export function checkJsonBody(request: FastifyRequest): void {
  const body = request.body;
  // JSON, and JSON under dCache's media type for capabilities (routes/capabilities.ts)
  const json = /^application\/(json|macaroon-request)\b/i.test(request.headers['content-type'] ?? '');
  const schema = request.routeOptions.schema?.body as TypeSchema | undefined;
  if (json && schema) checkTypes(body, schema, '');
  for (const [where, source] of [
    ['field', body],
    ['query parameter', request.query],
    ['path segment', request.params],
  ] as const) {
    if (source === null || typeof source !== 'object') continue;
    for (const [field, value] of Object.entries(source))
      if (holdsNul(value))
        throw new RepomanError('invalid_field', `The ${where} '${field}' holds a NUL character`, {
          details: { field },
        });
  }
}

interface TypeSchema {
  type?: string | string[];
  properties?: Record<string, TypeSchema>;
  items?: TypeSchema;
}

/** The JSON value's types against the schema's, all the way down. */
function checkTypes(value: unknown, schema: TypeSchema, field: string): void {
  const declared = schema.type;
  if (declared !== undefined) {
    const types = Array.isArray(declared) ? declared : [declared];
    const actual = JSON_TYPES(value);
    // A comma list in one string is documented for name lists ("a,b"): the schema makes it an array.
    const commaList = types.includes('array') && typeof value === 'string' && schema.items?.type === 'string';
    if (!commaList && !actual.some((t) => types.includes(t)))
      throw new RepomanError(
        'invalid_field',
        `Invalid field '${field || 'body'}': must be ${types.join(' or ')}, not ${actual[0]}`,
        { details: { field: field || 'body' } },
      );
  }
  if (Array.isArray(value) && schema.items) {
    for (const [i, item] of value.entries()) checkTypes(item, schema.items, `${field}[${i}]`);
  } else if (value !== null && typeof value === 'object' && schema.properties)
    for (const [key, item] of Object.entries(value)) {
      const inner = schema.properties[key];
      if (inner) checkTypes(item, inner, field ? `${field}.${key}` : key); // unknown fields: the schema's to refuse
    }
}

function holdsNul(value: unknown): boolean {
  if (typeof value === 'string') return value.includes('\u0000');
  if (Array.isArray(value)) return value.some(holdsNul);
  if (value !== null && typeof value === 'object') return Object.values(value).some(holdsNul);
  return false;
}
