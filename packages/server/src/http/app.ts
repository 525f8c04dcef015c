/**
 * Builds the Fastify application: schemas, authentication, routes, errors. `server.ts` starts it on HTTPS and
 * HTTP; tests build the same app.
 */
import { randomBytes } from 'node:crypto';
import { BlockList } from 'node:net';
import { rootCertificates } from 'node:tls';
import formbody from '@fastify/formbody';
import swagger from '@fastify/swagger';
import { groupSchema, imageSchema, tokenIdentitySchema, userSchema } from '@repoman/core';
import Fastify, { type FastifyInstance, type FastifyServerOptions, LogController } from 'fastify';
import type { Verifier } from '../pki/verify.ts';
import type { Services } from '../services/index.ts';
import { trackAllowedMethods } from './allowed-methods.ts';
import { registerAudit } from './audit.ts';
import { authenticate } from './auth.ts';
import { acceptBody } from './continue.ts';
import {
  badUrlHandler,
  checkJsonBody,
  clientErrorHandler,
  errorHandler,
  methodNotAllowedHandler,
  notFoundHandler,
} from './errors.ts';
import { lingerAfterResponse } from './lingering-close.ts';
import { registerMetrics } from './metrics.ts';
import { type PublicUrls, urlsFor } from './present.ts';
import { checkIntegerQuery } from './query.ts';
import { auditRoutes } from './routes/audit.ts';
import { capabilityRoutes } from './routes/capabilities.ts';
import { cloudRoutes } from './routes/clouds.ts';
import { type CopySettings, copyRoutes } from './routes/copy.ts';
import { groupRoutes } from './routes/groups.ts';
import { identityRoutes } from './routes/identities.ts';
import { imageListRoutes } from './routes/image-lists.ts';
import { imageRoutes } from './routes/images.ts';
import { jobRoutes } from './routes/jobs.ts';
import { rawRoutes } from './routes/raw.ts';
import { transferRoutes } from './routes/transfers.ts';
import { uploadRoutes } from './routes/uploads.ts';
import { userRoutes } from './routes/users.ts';
import { webdavRoutes } from './routes/webdav.ts';
import { type WebAssets, webRoutes } from './web.ts';

export interface AppOptions {
  services: Services;
  publicUrls: PublicUrls;
  logger?: FastifyServerOptions['logger'];
  /** Lets `server.ts` create the HTTPS server itself (TLS options, certificate verification on connect). */
  serverFactory?: FastifyServerOptions['serverFactory'];
  version?: string;
  /** Prometheus metrics, and the addresses that may read them. */
  metrics?: { metrics: Parameters<typeof registerMetrics>[1]; allow: BlockList };
  /** The built web interface, served at `/`; null or absent: `/` says it is not there. */
  web?: WebAssets | null;
  /** Third-party copies; absent: the system's CAs only, no private network, the defaults of config.ts. */
  copy?: CopySettings;
  /** The trusted CAs' verifier (reloaded); absent: endorsers' signed lists are refused. */
  trust?: () => Verifier;
}

export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger ?? false,
    ...(options.serverFactory ? { serverFactory: options.serverFactory } : {}),
    bodyLimit: 1024 * 1024,
    // Every request gets an id of its own (in the logs, the audit log and the X-Request-Id answer header);
    // one sent by the client is not taken, so ids stay unique and unforgeable.
    genReqId: () => randomBytes(8).toString('hex'),
    requestIdHeader: false,
    logController: new LogController({ requestIdLogLabel: 'request_id' }),
    return503OnClosing: true,
    frameworkErrors: badUrlHandler,
    clientErrorHandler,
    ajv: {
      customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: false },
    },
  });

  // Bodies are JSON or form fields; anything else (text/plain included, which Fastify parses by default) is a 415.
  app.removeContentTypeParser('text/plain');
  await app.register(formbody);
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Repoman',
        description: 'VM image repository: users, groups, permissions and images in per-user namespaces',
        version: options.version ?? '0.1.0',
      },
      tags: [{ name: 'users' }, { name: 'groups' }, { name: 'images' }, { name: 'uploads' }],
    },
    refResolver: { buildLocalReference: (json, _base, _fragment, i) => String(json.$id ?? `def-${i}`) },
  });

  for (const schema of [userSchema, groupSchema, imageSchema, tokenIdentitySchema]) app.addSchema(schema);
  // WebDAV's methods, as grid tools send them (routes/webdav.ts; MOVE renames, in routes/raw.ts).
  app.addHttpMethod('PROPFIND', { hasBody: true });
  app.addHttpMethod('MKCOL', { hasBody: true });
  app.addHttpMethod('MOVE');
  app.addHttpMethod('COPY');
  const methods = trackAllowedMethods(app);
  app.setErrorHandler(errorHandler);
  // A known path asked with a method it does not take is a 405 with Allow; an unknown one is a 404.
  app.setNotFoundHandler((request, reply) => {
    const allow = methods.of(request.url);
    return allow ? methodNotAllowedHandler(request, reply, allow) : notFoundHandler(request, reply);
  });
  app.decorateRequest('actor', null);
  app.decorateRequest('authRefusal', null);
  // Metrics first: a request refused by authentication is counted too.
  if (options.metrics) registerMetrics(app, options.metrics.metrics, options.metrics.allow);
  app.addHook('onRequest', async (request) => authenticate(request, options.services));
  // JSON and form bodies are read only after authentication (onRequest) has accepted the caller.
  // Routes that stream the body themselves say yes later, after their own checks (routes/raw.ts).
  app.addHook('preParsing', async (request, reply) => {
    if (!request.routeOptions.config.streamsBody && !request.is404) acceptBody(request, reply);
  });
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  registerAudit(app, options.services.audit, (error, entry) =>
    app.log.error(
      { err: error, audit: entry },
      'an audit entry could not be stored; it is logged here instead',
    ),
  );
  // A refused upload whose client sent the body anyway (no Expect: 100-continue): close the connection
  // rather than let Node read and discard gigabytes to keep it alive. That close, and Fastify's after a 413 for
  // a JSON body too large, lingers so that the client reads the answer (http/lingering-close.ts).
  app.addHook('onSend', async (request, reply) => {
    if (request.raw.complete) return;
    if (request.routeOptions.config.streamsBody && reply.statusCode >= 400)
      reply.header('connection', 'close');
    // The socket is gone already if the client closed first.
    const socket = request.raw.socket as typeof request.raw.socket | null;
    if (reply.getHeader('connection') === 'close' && socket) lingerAfterResponse(socket);
  });
  // Bodiless modify requests (curl -X POST) are an empty change, not a schema error.
  app.addHook('preValidation', async (request) => {
    if (request.body === undefined && (request.method === 'POST' || request.method === 'PATCH'))
      request.body = {};
    checkJsonBody(request);
    checkIntegerQuery(request);
  });

  const deps = {
    methods,
    copy: options.copy ?? {
      remote: { allowed: new BlockList(), maxRedirects: 5, idleMs: 60_000, cas: () => [...rootCertificates] },
      markerMs: 5000,
    },
    services: options.services,
    trust: options.trust ?? null,
    urls: (request: Parameters<typeof urlsFor>[0]) => urlsFor(request, options.publicUrls),
  };
  userRoutes(app, deps);
  identityRoutes(app, deps);
  groupRoutes(app, deps);
  imageRoutes(app, deps);
  rawRoutes(app, deps);
  webdavRoutes(app, deps);
  capabilityRoutes(app, deps);
  imageListRoutes(app, deps);
  cloudRoutes(app, deps);
  copyRoutes(app, deps);
  uploadRoutes(app, deps);
  jobRoutes(app, deps);
  transferRoutes(app, deps);
  auditRoutes(app, deps);

  webRoutes(app, options.web ?? null);

  // OPTIONS on any path the API knows: the methods it takes (and DAV: 1 on the bytes' WebDAV tree). Static
  // OPTIONS routes (tus's) answer for their own paths first.
  app.route({
    method: 'OPTIONS',
    url: '/api/*',
    config: { auth: 'none', plainHttp: true },
    schema: { hide: true },
    handler: async (request, reply) => {
      const allow = methods.of(request.url);
      if (!allow) return notFoundHandler(request, reply);
      if (request.url.startsWith('/api/images/raw'))
        reply.header('dav', '1').header('accept-ranges', 'bytes');
      return reply.code(200).header('allow', allow.join(', ')).send();
    },
  });
  app.get('/api/openapi.json', { config: { auth: 'optional' }, schema: { hide: true } }, async () =>
    app.swagger(),
  );
  app.get(
    '/api/health',
    {
      // On the plain-HTTP port too, for balancers' checks of it.
      config: { auth: 'optional', plainHttp: true },
      schema: {
        summary: 'Health: the server answers, and its database and blob store do too (503 if not)',
        tags: ['operations'],
      },
    },
    async (_request, reply) => {
      const health = await options.services.health();
      return reply.code(health.status === 'ok' ? 200 : 503).send(health);
    },
  );
  return app;
}

/**
 * The OpenAPI document, without a database or a store: routes and schemas only (no request is served).
 * `repoman-server openapi` prints it; the web interface's typed client is generated from it.
 */
export async function openApiDocument(version?: string): Promise<object> {
  const app = await buildApp({
    services: {} as Services,
    publicUrls: { https: undefined, http: undefined, httpsPort: 0, httpPort: null },
    ...(version ? { version } : {}),
  });
  await app.ready();
  const document = app.swagger();
  await app.close();
  return document;
}
