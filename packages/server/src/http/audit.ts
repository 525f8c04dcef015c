/**
 * Records every change asked of the API in the audit log, as its answer goes out: who (user name and the
 * certificate's DN, the proxy chain resolved), from which address (the balancer's PROXY header when there is
 * one), what, to which user, group or image, and the outcome (`ok` or the error code). Refusals are recorded
 * too: an audit log that only lists what was allowed cannot show who tried what. Only refusals of someone,
 * though: a user, or a certificate a trusted CA vouches for; the anonymous ones are counted in /metrics.
 *
 * Every route that changes something has a rule here; the server refuses to start with one that has none.
 */

import type { TLSSocket } from 'node:tls';
import type { Credential } from '@repoman/core';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { certificateAuthOf } from '../pki/tls-auth.ts';
import type { AuditService } from '../services/audit.ts';
import { READ_METHODS } from './auth.ts';
import { IMAGE_FORMS, RAW_FORMS, refFrom, refText } from './image-ref.ts';
import { CAPABILITY_REQUEST_ROUTES } from './routes/capabilities.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The error code the request was answered with (set by the error handlers). */
    errorCode?: string;
    /** What a route adds to its audit entry (the version an upload became, the image a tus upload is for). */
    audit?: {
      detail?: Record<string, unknown>;
      target?: string | undefined;
      /**
       * The outcome is known after the answer has started (a third-party copy reports in its body): the entry
       * is written when the route calls `finishAudit`, not as the answer goes out.
       */
      later?: boolean;
      /** Set by the audit hook for `finishAudit`, or the outcome `finishAudit` left for the hook. */
      record?: (outcome: string, detail: Record<string, unknown>) => Promise<void>;
      outcome?: { outcome: string; detail: Record<string, unknown> };
    };
  }
}

type TargetType = 'user' | 'group' | 'image' | 'upload' | 'job' | 'capability';
type Params = Record<string, string | undefined>;
type Body = Record<string, unknown> | undefined;

interface Rule {
  action: string;
  type: TargetType;
  /** The target's name: `bob`, `team`, `bob/rhel.img`. */
  target: (params: Params, body: Body, actor: string | null) => string | null;
  /** What else the entry says, from the request. */
  detail?: (params: Params, body: Body) => Record<string, unknown> | null;
}

/** The image a route's path names (its owner: the caller's namespace in the short form). */
function image({ user, image: name }: Params, _body: Body, actor: string | null): string | null {
  return name === undefined ? null : refText(refFrom({ user, image: name }, () => actor ?? '?'));
}

const fields = (_params: Params, body: Body) =>
  body && typeof body === 'object' ? { fields: Object.keys(body).sort() } : null;
const text = (value: unknown) => (typeof value === 'string' ? value : null);

/** tus metadata: `key base64,key base64`. */
function tusImage(header: string | undefined, actor: string | null): string | null {
  const pairs = new Map(
    (header ?? '').split(',').map((pair) => {
      const [key = '', value = ''] = pair.trim().split(' ');
      return [key, Buffer.from(value, 'base64').toString('utf8')] as const;
    }),
  );
  const name = pairs.get('image') || pairs.get('filename');
  return name ? `${pairs.get('owner') || actor || '?'}/${name}` : null;
}

/** The audit log's words for a credential: its kind, and a token's issuer and id. */
function credentialDetail(credential: Credential): Record<string, unknown> {
  if (credential.kind !== 'token' && credential.kind !== 'session') return { credential: credential.kind };
  return {
    credential: credential.kind,
    token_issuer: credential.issuer,
    ...(credential.id ? { token_id: credential.id } : {}),
    ...(credential.scopes ? { token_scopes: credential.scopes } : {}),
  };
}

/** `METHOD /route/template` → rule. */
const RULES = new Map<string, Rule>([
  ['POST /api/users', { action: 'user.create', type: 'user', target: (_p, b) => text(b?.user_name) }],
  [
    'PATCH /api/users/:user',
    { action: 'user.modify', type: 'user', target: (p) => p.user ?? null, detail: fields },
  ],
  [
    'POST /api/users/:user',
    { action: 'user.modify', type: 'user', target: (p) => p.user ?? null, detail: fields },
  ],
  ['DELETE /api/users/:user', { action: 'user.delete', type: 'user', target: (p) => p.user ?? null }],
  ['POST /api/groups', { action: 'group.create', type: 'group', target: (_p, b) => text(b?.name) }],
  [
    'PATCH /api/groups/:group',
    { action: 'group.modify', type: 'group', target: (p) => p.group ?? null, detail: fields },
  ],
  [
    'POST /api/groups/:group',
    { action: 'group.modify', type: 'group', target: (p) => p.group ?? null, detail: fields },
  ],
  ['DELETE /api/groups/:group', { action: 'group.delete', type: 'group', target: (p) => p.group ?? null }],
  [
    'POST /api/groups/:group/users/:user',
    {
      action: 'group.add_member',
      type: 'group',
      target: (p) => p.group ?? null,
      detail: (p) => ({ user: p.user }),
    },
  ],
  [
    'DELETE /api/groups/:group/users/:user',
    {
      action: 'group.remove_member',
      type: 'group',
      target: (p) => p.group ?? null,
      detail: (p) => ({ user: p.user }),
    },
  ],
  [
    'POST /api/groups/:group/permissions/:permission',
    {
      action: 'group.grant',
      type: 'group',
      target: (p) => p.group ?? null,
      detail: (p) => ({ permission: p.permission }),
    },
  ],
  [
    'DELETE /api/groups/:group/permissions/:permission',
    {
      action: 'group.revoke',
      type: 'group',
      target: (p) => p.group ?? null,
      detail: (p) => ({ permission: p.permission }),
    },
  ],
  [
    'POST /api/groups/:group/endorsements',
    {
      action: 'image.endorse',
      type: 'image',
      target: (_p, b) => text(b?.image),
      detail: (p, b) => ({ group: p.group, version: b?.version ?? null, expires: text(b?.expires) }),
    },
  ],
  [
    'DELETE /api/groups/:group/endorsements/:user/:image',
    {
      action: 'image.withdraw',
      type: 'image',
      target: (p) => (p.user && p.image ? `${p.user}/${p.image}` : null),
      detail: (p) => ({ group: p.group }),
    },
  ],
  [
    'PUT /api/groups/:group/endorsers/:user/image-list',
    {
      action: 'group.list_sign',
      type: 'group',
      target: (p) => p.group ?? null,
      detail: (p) => ({ endorser: p.user }),
    },
  ],
  [
    'PUT /api/groups/:group/image-list/access',
    {
      action: 'group.list_access',
      type: 'group',
      target: (p) => p.group ?? null,
      detail: (_p, b) => ({ subscribers_only: b?.subscribers_only ?? null }),
    },
  ],
  [
    'POST /api/groups/:group/subscribers',
    {
      action: 'group.subscriber_add',
      type: 'group',
      target: (p) => p.group ?? null,
      detail: (_p, b) => ({ name: text(b?.name) }),
    },
  ],
  [
    'DELETE /api/groups/:group/subscribers/:id',
    { action: 'group.subscriber_remove', type: 'group', target: (p) => p.group ?? null },
  ],
  ['POST /api/clouds/:group', { action: 'cloud.create', type: 'group', target: (p) => p.group ?? null }],
  [
    'PATCH /api/clouds/:group/:cloud',
    {
      action: 'cloud.modify',
      type: 'group',
      target: (p) => p.group ?? null,
      detail: (p) => ({ cloud: p.cloud }),
    },
  ],
  [
    'POST /api/clouds/:group/:cloud',
    {
      action: 'cloud.modify',
      type: 'group',
      target: (p) => p.group ?? null,
      detail: (p) => ({ cloud: p.cloud }),
    },
  ],
  [
    'DELETE /api/clouds/:group/:cloud',
    {
      action: 'cloud.delete',
      type: 'group',
      target: (p) => p.group ?? null,
      detail: (p) => ({ cloud: p.cloud }),
    },
  ],
  [
    'PUT /api/clouds/:group/:cloud/images/:user/:image',
    {
      action: 'cloud.choose',
      type: 'image',
      target: (p) => (p.user && p.image ? `${p.user}/${p.image}` : null),
      detail: (p) => ({ cloud: `${p.group}/${p.cloud}` }),
    },
  ],
  [
    'DELETE /api/clouds/:group/:cloud/images/:user/:image',
    {
      action: 'cloud.unchoose',
      type: 'image',
      target: (p) => (p.user && p.image ? `${p.user}/${p.image}` : null),
      detail: (p) => ({ cloud: `${p.group}/${p.cloud}` }),
    },
  ],
  [
    'POST /api/clouds/:group/:cloud/sync',
    {
      action: 'cloud.sync',
      type: 'group',
      target: (p) => p.group ?? null,
      detail: (p) => ({ cloud: p.cloud }),
    },
  ],
  [
    'POST /api/images',
    {
      action: 'image.create',
      type: 'image',
      target: (_p, b, actor) => (text(b?.name) ? `${text(b?.owner) ?? actor ?? '?'}/${text(b?.name)}` : null),
    },
  ],
  ...IMAGE_FORMS.map((form) => form.path).flatMap((form): [string, Rule][] => [
    [`PATCH ${form}`, { action: 'image.modify', type: 'image', target: image, detail: fields }],
    [`POST ${form}`, { action: 'image.modify', type: 'image', target: image, detail: fields }],
    [`DELETE ${form}`, { action: 'image.delete', type: 'image', target: image }],
    [
      `POST ${form}/rollback`,
      {
        action: 'image.rollback',
        type: 'image',
        target: image,
        detail: (_p, b) => ({ version: b?.version }),
      },
    ],
    ...(['user', 'group'] as const).flatMap((kind): [string, Rule][] => [
      [
        `POST ${form}/share/${kind}/:target`,
        { action: 'image.share', type: 'image', target: image, detail: (p) => ({ [kind]: p.target }) },
      ],
      [
        `DELETE ${form}/share/${kind}/:target`,
        { action: 'image.unshare', type: 'image', target: image, detail: (p) => ({ [kind]: p.target }) },
      ],
    ]),
    [
      `POST ${form}/conversions`,
      { action: 'image.convert', type: 'image', target: image, detail: (_p, b) => ({ format: b?.format }) },
    ],
    [
      `DELETE ${form}/variants/:format`,
      { action: 'image.delete_variant', type: 'image', target: image, detail: (p) => ({ format: p.format }) },
    ],
    [
      `POST ${form}/transfer`,
      {
        action: 'transfer.offer',
        type: 'image',
        target: image,
        detail: (_p, b) => ({ to: b?.to, ...(b?.direct === undefined ? {} : { direct: b.direct }) }),
      },
    ],
  ]),
  // A PUT that made the image says so in its detail ({created: true}).
  ...RAW_FORMS.map((form): [string, Rule] => [
    `PUT ${form.path}`,
    { action: 'image.upload', type: 'image', target: image },
  ]),
  // On the full form only (routes/raw.ts). WebDAV's MOVE is a rename: its detail names the new name, and the
  // image it replaced, if any.
  [`DELETE ${RAW_FORMS[0].path}`, { action: 'image.delete', type: 'image', target: image }],
  [`MOVE ${RAW_FORMS[0].path}`, { action: 'image.modify', type: 'image', target: image }],
  // A third-party copy: its detail says which way (pull: into this image; push: from it), the other end, and
  // the outcome's bytes, version and checksums verified; the entry waits for the outcome (routes/copy.ts).
  [`COPY ${RAW_FORMS[0].path}`, { action: 'image.copy', type: 'image', target: image }],
  // WebDAV's MKCOL on a namespace, always refused (namespaces are accounts): recorded as the attempt it is.
  ...['/api/images/raw/:user', '/api/images/raw/:user/'].map((route): [string, Rule] => [
    `MKCOL ${route}`,
    { action: 'namespace.create', type: 'user', target: (p) => p.user ?? null },
  ]),
  // A capability asked for: its target is the path it is for, its detail the id, expiry and caveats asked.
  ...CAPABILITY_REQUEST_ROUTES.map((route): [string, Rule] => [
    `POST ${route}`,
    { action: 'capability.create', type: 'capability', target: () => null },
  ]),
  // Token identities linked to users: who is linked is the detail (the route names the identity unlinked).
  [
    'POST /api/users/:user/identities',
    {
      action: 'user.link_identity',
      type: 'user',
      target: (p) => p.user ?? null,
      detail: (_p, b) => ({ issuer: text(b?.issuer), subject: text(b?.subject) }),
    },
  ],
  ['POST /api/whoami/identities', { action: 'user.link_identity', type: 'user', target: (_p, _b, a) => a }],
  [
    'DELETE /api/users/:user/identities/:id',
    {
      action: 'user.unlink_identity',
      type: 'user',
      target: (p) => p.user ?? null,
      detail: (p) => ({ identity: Number(p.id) }),
    },
  ],
  // A browser's session ended (its user, when the session or a certificate names one).
  ['POST /api/auth/sign-out', { action: 'session.sign_out', type: 'user', target: (_p, _b, a) => a }],
  [
    'DELETE /api/capabilities/:id',
    { action: 'capability.revoke', type: 'capability', target: (p) => p.id ?? null },
  ],
  ['POST /api/uploads', { action: 'upload.create', type: 'image', target: () => null }],
  // Only the request that completes an upload is recorded (the route says so): not every chunk.
  ['PATCH /api/uploads/:id', { action: 'image.upload', type: 'upload', target: (p) => p.id ?? null }],
  ['DELETE /api/uploads/:id', { action: 'upload.delete', type: 'upload', target: (p) => p.id ?? null }],
  ['DELETE /api/jobs/:id', { action: 'job.cancel', type: 'job', target: (p) => p.id ?? null }],
  // The image an offer is for is known once the offer is found: the route names it (request.audit).
  ...(
    [
      ['POST /api/transfers/:id/accept', 'transfer.accept'],
      ['POST /api/transfers/:id/decline', 'transfer.decline'],
      ['DELETE /api/transfers/:id', 'transfer.cancel'],
    ] as const
  ).map(([route, action]): [string, Rule] => [
    route,
    { action, type: 'image', target: () => null, detail: (p) => ({ transfer: p.id }) },
  ]),
]);

const keyOf = (method: string, url: string | undefined) => `${method} ${url ?? ''}`;

/** The DN the request authenticated with, if it presented a valid certificate. */
function dnOf(request: FastifyRequest): string | null {
  const socket = request.raw.socket as TLSSocket | null;
  if (!socket?.encrypted) return null;
  const verdict = certificateAuthOf(socket);
  return verdict.ok ? verdict.dn : null;
}

export function registerAudit(
  app: FastifyInstance,
  audit: AuditService,
  onLost: (error: unknown, entry: object) => void,
): void {
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      if (READ_METHODS.has(method)) continue;
      if (!RULES.has(keyOf(method, route.url)))
        throw new Error(`route ${method} ${route.url} changes things but has no audit rule (http/audit.ts)`);
    }
  });

  // The address is read as the request arrives: once a client has hung up (a cut upload), its socket no
  // longer says where it was.
  const addresses = new WeakMap<object, string>();
  // So is the DN: a body refused midway (past the quota) leaves the request without its socket.
  const dns = new WeakMap<object, string | null>();
  app.addHook('onRequest', async (request) => {
    if (READ_METHODS.has(request.method)) return;
    if (request.ip) addresses.set(request, request.ip);
    dns.set(request, dnOf(request));
  });

  // Before the answer leaves (onSend runs even when the client has gone away, unlike onResponse): whoever
  // sees a change succeed can find it in the log.
  app.addHook('onSend', async (request, reply) => {
    if (READ_METHODS.has(request.method)) return;
    const rule = RULES.get(keyOf(request.method, request.routeOptions.url));
    if (!rule) return;
    // A refusal of nobody in particular (plain HTTP, no certificate, one no trusted CA vouches for) is only
    // counted, in /metrics (repoman_auth_failures_total): anyone could write thousands of entries a second.
    // the DN as the request arrived: the socket may be gone by now (a client that hung up)
    const dn = dns.has(request) ? (dns.get(request) ?? null) : dnOf(request);
    if (!request.actor && dn === null) return;
    // A tus PATCH that did not complete its upload is one chunk among many: only failures and the end count.
    if (rule.action === 'image.upload' && rule.type === 'upload' && !request.audit && reply.statusCode < 400)
      return;
    const params = (request.params ?? {}) as Params;
    const body = request.body && typeof request.body === 'object' ? (request.body as Body) : undefined;
    const actorName = request.actor?.name ?? null;
    const target =
      request.audit?.target ??
      (request.routeOptions.url === '/api/uploads' && request.method === 'POST'
        ? tusImage(request.headers['upload-metadata'] as string | undefined, actorName)
        : rule.target(params, body, actorName));
    const detail = {
      ...rule.detail?.(params, body),
      ...request.audit?.detail,
      // A change made with a capability names it (the owner is the actor).
      ...(request.capability ? { with_capability: request.capability } : {}),
      // How the actor was authenticated, and with which token (its jti) or session.
      ...(request.credential ? credentialDetail(request.credential) : {}),
    };
    const entry = {
      at: new Date().toISOString(),
      actor: request.actor ? { id: request.actor.id, name: request.actor.name } : null,
      dn,
      address: addresses.get(request) ?? request.ip ?? null,
      requestId: String(request.id),
      method: request.method,
      path: request.url.split('?')[0] ?? request.url,
      action: rule.action,
      targetType: request.audit?.target && rule.type === 'upload' ? 'image' : rule.type,
      target,
      outcome: reply.statusCode < 400 ? 'ok' : (request.errorCode ?? `http_${reply.statusCode}`),
      status: reply.statusCode,
      detail: Object.keys(detail).length > 0 ? detail : null,
    };
    if (request.audit?.later) {
      const later = request.audit;
      const record = async (outcome: string, more: Record<string, unknown>) => {
        const final = { ...entry, outcome, detail: { ...entry.detail, ...more } };
        await audit.record(final).catch((error: unknown) => onLost(error, final));
      };
      if (later.outcome) await record(later.outcome.outcome, later.outcome.detail);
      else later.record = record;
      return;
    }
    await audit.record(entry).catch((error: unknown) => onLost(error, entry));
  });
}

/**
 * The outcome of a request whose audit entry waited for it (`request.audit.later`): the entry is written now
 * (resolves once it is), or by the hook if the answer has not started yet.
 */
export async function finishAudit(
  request: FastifyRequest,
  outcome: string,
  detail: Record<string, unknown>,
): Promise<void> {
  const later = request.audit;
  if (!later?.later) return;
  if (later.record) await later.record(outcome, detail);
  else later.outcome = { outcome, detail };
}

/** Every action the audit log records (docs/api.md#audit-log). */
export const AUDITED_ACTIONS: readonly string[] = [
  ...new Set([...RULES.values()].map((rule) => rule.action)),
];
