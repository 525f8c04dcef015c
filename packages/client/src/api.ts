/**
 * The Repoman API over HTTPS with the user's certificate or proxy, the server's certificate always checked
 * against the configured CAs. Errors come back as `ClientError`s with the server's code and message.
 */

import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import type { ErrorBody, Page } from '@repoman/core';
import type { Credential } from './config.ts';
import { ClientError } from './errors.ts';

export interface Connection {
  /** `https://host:port` */
  base: string;
  ca: string[];
  caSource: string;
  credential: Credential;
  passphrase?: string | undefined;
  /** A request whose server says nothing for this long fails (and a transfer then retries). */
  timeoutMs?: number;
}

/** An answer: its JSON typed by what the caller asked for (core's API types), unchecked at run time. */
export interface Response<T = unknown> {
  status: number;
  headers: IncomingHttpHeaders;
  json: T;
}

export interface RequestOptions {
  /** A JSON body. */
  json?: unknown;
  /** A raw body (uploads). */
  body?: Readable | Buffer;
  headers?: Record<string, string>;
  query?: Record<string, string | number | boolean | undefined> | undefined;
  /** Statuses that are not errors (besides 2xx). */
  accept?: number[];
}

const TLS_TRUST_ERRORS = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/**
 * The server's name as TLS checks it, plus the grid convention: a host certificate without subjectAltName
 * whose common name is `host/<fqdn>` names that host.
 */
export function checkServer(host: string, certificate: PeerCertificate): Error | undefined {
  const error = checkServerIdentity(host, certificate);
  if (!error || certificate.subjectaltname) return error;
  const names = ([] as string[]).concat(certificate.subject?.CN ?? []);
  return names.some((cn) => cn.toLowerCase() === `host/${host.toLowerCase()}`) ? undefined : error;
}

export class Api {
  readonly connection: Connection;
  readonly agent: https.Agent;

  constructor(connection: Connection) {
    this.connection = connection;
    const { credential } = connection;
    this.agent = new https.Agent({
      keepAlive: true,
      ca: connection.ca,
      checkServerIdentity: checkServer,
      ...(credential.kind === 'certificate' ? { cert: credential.cert, key: credential.key } : {}),
      ...(connection.passphrase === undefined ? {} : { passphrase: connection.passphrase }),
    });
  }

  url(path: string, query?: RequestOptions['query']): URL {
    const url = new URL(path, this.connection.base);
    for (const [key, value] of Object.entries(query ?? {}))
      if (value !== undefined) url.searchParams.set(key, String(value));
    return url;
  }

  /** Sends a request; the response is not read (for downloads). */
  async open(method: string, path: string, options: RequestOptions = {}): Promise<IncomingMessage> {
    const url = this.url(path, options.query);
    const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
    // A bearer token goes to this server only: a command may name another's URL (copy's source), and a
    // request that carries its own Authorization (a subscriber token) keeps it.
    const { credential, base } = this.connection;
    if (
      credential.kind === 'token' &&
      url.origin === new URL(base).origin &&
      headers.authorization === undefined
    )
      headers.authorization = `Bearer ${credential.token}`;
    let payload: Buffer | undefined;
    if (options.json !== undefined) {
      payload = Buffer.from(JSON.stringify(options.json));
      headers['content-type'] = 'application/json';
    } else if (Buffer.isBuffer(options.body)) payload = options.body;
    if (payload) headers['content-length'] = String(payload.length);
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      let request: ReturnType<typeof https.request>;
      try {
        request = https.request(url, { method, headers, agent: this.agent }, resolve);
      } catch (error) {
        // The credential is read here: a key that will not unlock fails at once.
        return reject(this.#connectionError(error as NodeJS.ErrnoException));
      }
      const timeoutMs = this.connection.timeoutMs ?? 120_000;
      request.setTimeout(timeoutMs, () =>
        request.destroy(
          Object.assign(new Error(`no answer for ${timeoutMs / 1000} s`), { code: 'ETIMEDOUT' }),
        ),
      );
      let bodyError: Error | null = null;
      request.on('error', (error) =>
        reject(
          bodyError
            ? new ClientError('transfer', `Reading what was to be sent failed: ${bodyError.message}`, {
                cause: bodyError,
              })
            : this.#connectionError(error),
        ),
      );
      if (options.body && !Buffer.isBuffer(options.body)) {
        options.body.on('error', (error) => {
          bodyError = error;
          request.destroy(error);
        });
        options.body.pipe(request);
      } else request.end(payload);
    });
    const ok = (response.statusCode ?? 0) < 300 || options.accept?.includes(response.statusCode ?? 0);
    if (!ok) throw await this.#serverError(response);
    return response;
  }

  async request<T = unknown>(
    method: string,
    path: string,
    options: RequestOptions = {},
  ): Promise<Response<T>> {
    const response = await this.open(method, path, options);
    const text = await readText(response);
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      throw new ClientError(
        'server',
        `The server answered ${response.statusCode} with something that is not JSON`,
      );
    }
    return { status: response.statusCode ?? 0, headers: response.headers, json: json as T };
  }

  get = <T>(path: string, query?: RequestOptions['query']) =>
    this.request<T>('GET', path, { query }).then((r) => r.json);
  post = <T>(path: string, json?: unknown) =>
    this.request<T>('POST', path, { json: json ?? {} }).then((r) => r.json);
  patch = <T>(path: string, json: unknown) => this.request<T>('PATCH', path, { json }).then((r) => r.json);
  delete = (path: string) => this.request<undefined>('DELETE', path).then((r) => r.json);

  /** Every item of a paged list, following `next`. */
  async all<T>(path: string, query: RequestOptions['query'] = {}): Promise<T[]> {
    const items: T[] = [];
    let page = await this.get<Page<T>>(path, { limit: 1000, ...query });
    items.push(...page.items);
    while (page.next) {
      const next = new URL(page.next);
      page = await this.get<Page<T>>(next.pathname + next.search);
      items.push(...page.items);
    }
    return items;
  }

  close(): void {
    this.agent.destroy();
  }

  #connectionError(error: NodeJS.ErrnoException): ClientError {
    const { base, caSource, credential } = this.connection;
    const code = error.code ?? '';
    if (TLS_TRUST_ERRORS.has(code)) {
      return new ClientError(
        'connection',
        `The server ${base} is not who it should be: its certificate is not trusted by the CAs in ${caSource} (${error.message})`,
        { cause: error },
      );
    }
    if (
      /bad decrypt|bad password|ERR_OSSL_BAD_DECRYPT|maybe wrong password/i.test(`${code} ${error.message}`)
    )
      return new ClientError(
        'credentials',
        `Cannot unlock the key of ${credential.source}: wrong passphrase?`,
        {
          cause: error,
        },
      );
    if (['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ETIMEDOUT', 'ENETUNREACH'].includes(code))
      return new ClientError('connection', `Cannot reach ${base}: ${error.message}`, { cause: error });
    if (code === 'ECONNRESET' || code === 'EPIPE' || /socket hang up/.test(error.message))
      return new ClientError('connection', `${base} closed the connection: ${error.message}`, {
        cause: error,
      });
    return new ClientError('connection', `Talking to ${base} failed: ${error.message}`, { cause: error });
  }

  async #serverError(response: IncomingMessage): Promise<ClientError> {
    const text = await readText(response).catch(() => '');
    const status = response.statusCode ?? 0;
    try {
      const { error } = JSON.parse(text) as ErrorBody;
      return new ClientError('server', error.message, {
        code: error.code,
        status,
        ...(error.details === undefined ? {} : { details: error.details }),
      });
    } catch {
      return new ClientError(
        'server',
        `The server answered ${status} ${response.statusMessage ?? ''}`.trim(),
        {
          status,
        },
      );
    }
  }
}

async function readText(response: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of response) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const seg = encodeURIComponent;

/** `/api/images/[owner/]name` (and the like) with each segment escaped. */
export const path = (...segments: (string | undefined)[]) =>
  `/api/${segments
    .filter((s): s is string => s !== undefined)
    .map((s, i) => (i === 0 ? s : seg(s)))
    .join('/')}`;
