/**
 * OpenStack's Keystone (v3) and Glance (v2) as the cloud sync uses them: a token from an application
 * credential (the standard for automation) or a user's password, the image service's endpoint from the
 * token's catalog, and the Glance calls that make, fill, check and retire an image.
 *
 * Traps:
 * - Every request goes through the destination policy of third-party copies (tpc/destinations.ts): a cloud's
 *   URLs are an admin's input, and a catalog can name any address; loopback and private ones only if allowed.
 * - Keystone answers a token in the `X-Subject-Token` header, not the body.
 * - Glance's custom properties are top-level keys of the image, all strings; a list filters on them as query
 *   parameters (`?repoman_target=…`), and pages with `next` (a path with a marker).
 * - A changed property is a JSON patch (`application/openstack-images-v2.1-json-patch`), `add` or `replace`
 *   depending on whether the key is there already.
 * - A token lasts hours, not forever: it is renewed a few minutes before its `expires_at`.
 */
import type { IncomingMessage } from 'node:http';
import http from 'node:http';
import https from 'node:https';
import type { BlockList } from 'node:net';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { RepomanError } from '@repoman/core';
import { checkLiteralHost, guardedLookup, type PolicyWords } from '../tpc/destinations.ts';

/** The destination policy's refusals, in the cloud sync's words. */
const CLOUD_WORDS: PolicyWords = {
  reaching: 'clouds',
  setting: 'clouds.allowed_networks',
  refused: 'The cloud was refused',
};

export type CloudCredential =
  | { kind: 'application_credential'; id: string; secret: string }
  | {
      kind: 'password';
      username: string;
      password: string;
      userDomain: string;
      project: string;
      projectDomain: string;
    };

export interface CloudEndpoint {
  /** Keystone's v3 URL (`https://keystone.example.org:5000/v3`). */
  authUrl: string;
  /** The region whose image endpoint to use; null: the only one (or the first). */
  region: string | null;
  credential: CloudCredential;
}

export interface CloudPolicy {
  /** Networks a cloud may be on although they are private or loopback. */
  allowed: BlockList;
  /** The CAs a cloud's certificate may chain to (the system's and the trusted ones). */
  cas: () => string[];
  /** A cloud silent this long fails the request. */
  idleMs: number;
}

/** An image as Glance shows it: its fields and custom properties (all strings). */
export type GlanceImage = {
  id: string;
  name: string | null;
  status: string;
  visibility: string;
  disk_format: string | null;
  size: number | null;
  os_hash_algo: string | null;
  os_hash_value: string | null;
  owner: string;
  created_at: string;
  updated_at: string;
} & Record<string, unknown>;

export interface CloudSession {
  token: string;
  expires: Date;
  project: { id: string; name: string };
  glanceUrl: string;
}

/** A cloud's failure: Keystone's or Glance's own words, with what was asked. */
export class CloudError extends RepomanError {
  readonly httpStatus: number | null;
  constructor(message: string, httpStatus: number | null) {
    super('cloud_failed', message);
    this.name = 'CloudError';
    this.httpStatus = httpStatus;
  }
}

interface Answer {
  status: number;
  headers: IncomingMessage['headers'];
  text: string;
}

const MAX_ANSWER = 8 * 1024 * 1024;
/** The most images a listing reads. */
const MAX_LISTED = 20_000;

/**
 * What went wrong, in the cloud's words where it said any (Keystone and Glance nest them differently): at
 * most 300 characters, with any capability in a URL it repeats (Glance repeats a refused web-download URL)
 * cut out. Its words reach the cloud's managers and members.
 */
function reasonOf(answer: Answer): string {
  let reason = '';
  try {
    const json = JSON.parse(answer.text);
    const message = json?.error?.message ?? json?.message ?? json?.title ?? json?.badRequest?.message;
    if (typeof message === 'string') reason = message;
  } catch {
    // Glance answers some refusals with an HTML page: its text is the reason.
  }
  if (!reason) reason = answer.text.replace(/<[^>]+>/g, ' ');
  reason = reason
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/authz=[^&\s"'<>]+/g, 'authz=…');
  return (reason.length > 300 ? `${reason.slice(0, 300)}…` : reason) || `HTTP ${answer.status}`;
}

/** A message with a secret cut out wherever it appears (a Keystone that echoes what it was sent). */
const redacted = (message: string, secret: string) =>
  secret.length >= 4 ? message.split(secret).join('***') : message;

export function createOpenStack(policy: CloudPolicy) {
  /** One request under the destination policy; the whole answer (bounded), or the response to stream. */
  function send(
    method: string,
    url: URL,
    options: {
      headers?: Record<string, string>;
      json?: unknown;
      patch?: unknown;
      body?: { length: number; stream: Readable };
    },
  ): Promise<IncomingMessage> {
    checkLiteralHost(url, policy.allowed, CLOUD_WORDS);
    const headers: Record<string, string> = {
      accept: 'application/json',
      'user-agent': 'repoman',
      ...options.headers,
    };
    let payload: Buffer | undefined;
    if (options.json !== undefined) {
      payload = Buffer.from(JSON.stringify(options.json));
      headers['content-type'] = 'application/json';
    } else if (options.patch !== undefined) {
      payload = Buffer.from(JSON.stringify(options.patch));
      headers['content-type'] = 'application/openstack-images-v2.1-json-patch';
    }
    if (payload) headers['content-length'] = String(payload.length);
    if (options.body) {
      headers['content-length'] = String(options.body.length);
      headers['content-type'] = 'application/octet-stream';
    }
    const secure = url.protocol === 'https:';
    return new Promise((resolve, reject) => {
      const request = (secure ? https : http).request(url, {
        method,
        headers,
        agent: false,
        lookup: guardedLookup(policy.allowed, CLOUD_WORDS),
        timeout: policy.idleMs,
        ...(secure ? { ca: policy.cas() } : {}),
      });
      request.on('response', resolve);
      request.on('timeout', () =>
        request.destroy(new CloudError(`${url.origin} was silent for ${policy.idleMs / 1000} s`, null)),
      );
      request.on('error', (error: Error & { code?: string }) =>
        reject(
          error instanceof RepomanError
            ? error
            : new CloudError(`${url.origin}: ${error.message}${error.code ? ` (${error.code})` : ''}`, null),
        ),
      );
      if (options.body)
        pipeline(options.body.stream, request).catch((error: Error) => request.destroy(error));
      else request.end(payload);
    });
  }

  async function call(
    method: string,
    url: URL,
    options: Parameters<typeof send>[2] & { what: string },
  ): Promise<Answer> {
    const response = await send(method, url, options);
    const chunks: Buffer[] = [];
    let length = 0;
    for await (const chunk of response) {
      length += (chunk as Buffer).length;
      if (length > MAX_ANSWER) {
        response.destroy();
        throw new CloudError(
          `${options.what}: the answer of ${url.origin} is too large`,
          response.statusCode ?? null,
        );
      }
      chunks.push(chunk as Buffer);
    }
    const answer = {
      status: response.statusCode ?? 0,
      headers: response.headers,
      text: Buffer.concat(chunks).toString('utf8'),
    };
    if (answer.status >= 300)
      throw new CloudError(
        `${options.what}: ${reasonOf(answer)} (HTTP ${answer.status} from ${url.origin})`,
        answer.status,
      );
    return answer;
  }

  const json = (answer: Answer) => (answer.text ? JSON.parse(answer.text) : {});

  /** A Keystone token for the endpoint's credential, and the image service's URL from its catalog. */
  async function login(endpoint: CloudEndpoint): Promise<CloudSession> {
    const base = endpoint.authUrl.replace(/\/+$/, '');
    const url = new URL(`${base.endsWith('/v3') ? base : `${base}/v3`}/auth/tokens`);
    const { credential } = endpoint;
    const auth =
      credential.kind === 'application_credential'
        ? {
            identity: {
              methods: ['application_credential'],
              application_credential: { id: credential.id, secret: credential.secret },
            },
          }
        : {
            identity: {
              methods: ['password'],
              password: {
                user: {
                  name: credential.username,
                  domain: { name: credential.userDomain },
                  password: credential.password,
                },
              },
            },
            scope: { project: { name: credential.project, domain: { name: credential.projectDomain } } },
          };
    const secret = credential.kind === 'application_credential' ? credential.secret : credential.password;
    const answer = await call('POST', url, { json: { auth }, what: 'Keystone refused the credential' }).catch(
      (error: unknown) => {
        if (error instanceof CloudError)
          throw new CloudError(redacted(error.message, secret), error.httpStatus);
        throw error;
      },
    );
    const token = answer.headers['x-subject-token'];
    if (typeof token !== 'string' || !token)
      throw new CloudError('Keystone answered without a token', answer.status);
    const body = json(answer).token ?? {};
    const services = (body.catalog ?? []) as {
      type: string;
      endpoints: { interface: string; region_id?: string; region?: string; url: string }[];
    }[];
    const endpoints = services
      .filter((service) => service.type === 'image')
      .flatMap((service) => service.endpoints)
      .filter(
        (e) =>
          e.interface === 'public' &&
          (endpoint.region === null || (e.region_id ?? e.region) === endpoint.region),
      );
    const glance = endpoints[0]?.url;
    if (!glance)
      throw new CloudError(
        `Keystone's catalog has no public image (Glance) endpoint${endpoint.region ? ` in region ${endpoint.region}` : ''}`,
        null,
      );
    if (!body.project?.id)
      throw new CloudError('The credential is not scoped to a project: Glance images belong to one', null);
    return {
      token,
      expires: new Date(body.expires_at ?? Date.now() + 3600_000),
      project: { id: body.project.id, name: body.project.name ?? '' },
      // The catalog may name the API's version too: the calls add it themselves.
      glanceUrl: glance.replace(/\/+$/, '').replace(/\/v2$/, ''),
    };
  }

  /** Glance as a session sees it. */
  function glance(session: CloudSession) {
    const at = (path: string) => new URL(`${session.glanceUrl}${path.startsWith('/v2') ? '' : '/v2'}${path}`);
    const headers = { 'x-auth-token': session.token };
    return {
      /** Every image whose properties match `filter` (this project's and those it sees). */
      async list(filter: Record<string, string>): Promise<GlanceImage[]> {
        const found: GlanceImage[] = [];
        let next: string | null = `/v2/images?${new URLSearchParams({ limit: '200', ...filter })}`;
        // At most MAX_LISTED images: a cloud that answers more (or a hostile one) does not fill the memory.
        for (let pages = 0; next && found.length < MAX_LISTED && pages < MAX_LISTED / 100; pages++) {
          const page = json(await call('GET', at(next), { headers, what: 'Listing images' }));
          found.push(...((page.images ?? []) as GlanceImage[]));
          next = typeof page.next === 'string' ? page.next : null;
        }
        return found;
      },
      async get(id: string): Promise<GlanceImage | null> {
        try {
          return json(
            await call('GET', at(`/images/${encodeURIComponent(id)}`), {
              headers,
              what: `Reading image ${id}`,
            }),
          );
        } catch (error) {
          if (error instanceof CloudError && error.httpStatus === 404) return null;
          throw error;
        }
      },
      async create(fields: Record<string, unknown>): Promise<GlanceImage> {
        return json(await call('POST', at('/images'), { headers, json: fields, what: 'Creating an image' }));
      },
      /** Glance fetches the bytes itself (its web-download import method). */
      async importFrom(id: string, uri: string): Promise<void> {
        await call('POST', at(`/images/${encodeURIComponent(id)}/import`), {
          headers,
          json: { method: { name: 'web-download', uri } },
          what: 'Glance refused the web-download import',
        });
      },
      /** The bytes, streamed by this server. */
      async upload(id: string, body: { length: number; stream: Readable }): Promise<void> {
        await call('PUT', at(`/images/${encodeURIComponent(id)}/file`), {
          headers,
          body,
          what: 'Uploading to Glance',
        });
      },
      async setProperties(image: GlanceImage, properties: Record<string, string>): Promise<void> {
        const patch = Object.entries(properties).map(([key, value]) => ({
          op: key in image ? 'replace' : 'add',
          path: `/${key}`,
          value,
        }));
        if (patch.length === 0) return;
        await call('PATCH', at(`/images/${encodeURIComponent(image.id)}`), {
          headers,
          patch,
          what: `Updating image ${image.id}`,
        });
      },
      /** Shares an image (visibility `shared`) with another project. */
      async addMember(id: string, project: string): Promise<void> {
        await call('POST', at(`/images/${encodeURIComponent(id)}/members`), {
          headers,
          json: { member: project },
          what: `Sharing image ${id} with ${project}`,
        });
      },
      async reactivate(id: string): Promise<void> {
        await call('POST', at(`/images/${encodeURIComponent(id)}/actions/reactivate`), {
          headers,
          what: `Reactivating image ${id}`,
        });
      },
      async deactivate(id: string): Promise<void> {
        await call('POST', at(`/images/${encodeURIComponent(id)}/actions/deactivate`), {
          headers,
          what: `Deactivating image ${id}`,
        });
      },
      async remove(id: string): Promise<void> {
        try {
          await call('DELETE', at(`/images/${encodeURIComponent(id)}`), {
            headers,
            what: `Deleting image ${id}`,
          });
        } catch (error) {
          if (!(error instanceof CloudError && error.httpStatus === 404)) throw error;
        }
      },
    };
  }

  return { login, glance };
}

export type OpenStack = ReturnType<typeof createOpenStack>;
export type Glance = ReturnType<OpenStack['glance']>;
