/**
 * The other end of a third-party copy: requests this server makes to a URL its caller chose, under the
 * destination policy (destinations.ts).
 *
 * - **Trust**: the server checks the other end's certificate against the system's CAs and the CAs it trusts
 *   for its own users (`trust.ca_dir`): two repositories, each with its own CA, list each other's there.
 * - **Headers**: what the caller sent as `TransferHeader<Name>: value` goes to the other end as `<Name>:
 *   value` (a capability in `TransferHeaderAuthorization`, as FTS and gfal2 send it), except the headers that
 *   frame or route a request (`Host`, `Content-Length`, `Transfer-Encoding`, `Connection`...), which are ours.
 * - **Redirects**: followed up to `tpc.max_redirects`, each one checked as a new destination; a `PUT` is sent
 *   with `Expect: 100-continue`, so that a redirect (dCache sends one to its pools) comes before its body.
 * - **Timeouts**: a connection or a transfer that is silent for `tpc.idle_timeout_seconds` is cut.
 */
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import http from 'node:http';
import https from 'node:https';
import type { BlockList } from 'node:net';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { RepomanError } from '@repoman/core';
import { checkLiteralHost, guardedLookup } from './destinations.ts';

export interface RemotePolicy {
  /** Networks a copy may reach although they are private or loopback (tpc.allowed_networks). */
  allowed: BlockList;
  maxRedirects: number;
  idleMs: number;
  /** The CAs the other end's certificate may chain to, read when a copy starts (a trust reload shows). */
  cas: () => string[];
}

/** Headers a caller may not set on the other end through TransferHeader*: they frame or route the request. */
const OURS = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'upgrade',
  'expect',
  'proxy-authorization',
  'proxy-connection',
]);

/** The `TransferHeader*` headers of a COPY, as the other end gets them. */
export function transferHeaders(
  headers: Record<string, string | string[] | undefined>,
): Record<string, string> {
  const passed: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith('transferheader') || value === undefined) continue;
    const target = name.slice('transferheader'.length);
    if (target === '' || OURS.has(target)) continue;
    passed[target] = Array.isArray(value) ? value.join(', ') : value;
  }
  return passed;
}

/** A URL the copy may use: http or https, no user name or password in it. */
export function remoteUrl(text: string, header: string): URL {
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    throw new RepomanError('bad_request', `${header} '${text}' is not a URL`);
  }
  if (url.protocol === 'davs:') url.protocol = 'https:';
  if (url.protocol === 'dav:') url.protocol = 'http:';
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new RepomanError('bad_request', `${header} must be an http or https URL, not ${url.protocol}`);
  if (url.username || url.password)
    throw new RepomanError('bad_request', `${header} may not carry a user name or password`);
  return url;
}

/** The URL as logs and messages show it: without its query, which may hold a capability. */
export const shownUrl = (url: URL) => `${url.origin}${url.pathname}`;

/** Failures of the other end, reported as such. */
export const remoteFailure = (message: string) => new RepomanError('remote_failed', message);

export interface RemoteRequest {
  method: 'GET' | 'HEAD' | 'PUT';
  url: URL;
  headers: Record<string, string>;
  /** A PUT's body and its length; opened once the other end has said to go on (100 Continue). */
  body?: { length: number; open: () => Promise<Readable> };
  signal?: AbortSignal | undefined;
}

/** Headers that carry a credential: not sent on to another origin a redirect names (curl does the same). */
const CREDENTIALS = ['authorization', 'cookie'];

/** Sends the request, following redirects; resolves with the final response (any status). */
export async function remoteRequest(request: RemoteRequest, policy: RemotePolicy): Promise<IncomingMessage> {
  let url = request.url;
  let headers = request.headers;
  for (let hop = 0; ; hop++) {
    const { response, bodySent } = await once({ ...request, url, headers }, policy);
    const location = response.headers.location;
    if (![301, 302, 303, 307, 308].includes(response.statusCode ?? 0) || !location) return response;
    response.destroy();
    const from = shownUrl(request.url);
    if (hop >= policy.maxRedirects)
      throw remoteFailure(`${from} redirected more than ${policy.maxRedirects} times`);
    if (bodySent) throw remoteFailure(`${from} redirected the upload after its body was sent`);
    let next: URL;
    try {
      next = new URL(location, url);
    } catch {
      throw remoteFailure(`${from} redirected to something that is not a URL`);
    }
    if (next.protocol !== 'https:' && next.protocol !== 'http:')
      throw remoteFailure(`${from} redirected to a ${next.protocol} URL`);
    if (url.protocol === 'https:' && next.protocol === 'http:')
      throw remoteFailure(
        `${from} redirected from https to plain http, which would send its credentials in clear`,
      );
    if (next.origin !== url.origin)
      headers = Object.fromEntries(Object.entries(headers).filter(([name]) => !CREDENTIALS.includes(name)));
    url = next;
  }
}

function once(
  request: RemoteRequest,
  policy: RemotePolicy,
): Promise<{ response: IncomingMessage; bodySent: boolean }> {
  checkLiteralHost(request.url, policy.allowed);
  const secure = request.url.protocol === 'https:';
  const headers: OutgoingHttpHeaders = { ...request.headers, 'user-agent': 'repoman-tpc' };
  if (request.body) {
    headers['content-length'] = String(request.body.length);
    headers.expect = '100-continue';
  }
  return new Promise((resolve, reject) => {
    const options = {
      method: request.method,
      headers,
      // A connection of its own, closed with the answer: a request whose body was never sent keeps none.
      agent: false,
      lookup: guardedLookup(policy.allowed),
      timeout: policy.idleMs,
      ...(request.signal ? { signal: request.signal } : {}),
      ...(secure ? { ca: policy.cas() } : {}),
    };
    let bodySent = false;
    const sent = (secure ? https : http).request(request.url, options, (response) =>
      resolve({ response, bodySent }),
    );
    sent.on('timeout', () =>
      sent.destroy(remoteFailure(`${shownUrl(request.url)} was silent for ${policy.idleMs / 1000} s`)),
    );
    sent.on('error', (error: Error & { code?: string }) =>
      reject(
        error instanceof RepomanError
          ? error
          : remoteFailure(
              `${shownUrl(request.url)}: ${error.message}${error.code ? ` (${error.code})` : ''}`,
            ),
      ),
    );
    const body = request.body;
    if (!body) return void sent.end();
    // The body goes once the other end says to go on; one that never answers Expect gets it after a second,
    // as curl does. An answer before either (a refusal, a redirect) means it is never sent.
    let answered = false;
    const start = () => {
      if (answered || bodySent || sent.destroyed) return;
      bodySent = true;
      clearTimeout(fallback);
      body.open().then(
        (stream) => pipeline(stream, sent).catch((error: Error) => sent.destroy(error)),
        (error: Error) => sent.destroy(error),
      );
    };
    const fallback = setTimeout(start, 1000);
    sent.on('continue', start);
    sent.on('response', () => {
      answered = true;
      clearTimeout(fallback);
    });
  });
}
