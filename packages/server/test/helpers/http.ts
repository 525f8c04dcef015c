/** A small HTTPS/HTTP client for tests, presenting a client certificate (or a whole proxy chain) when given one. */
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';

export interface ClientCredential {
  /** Certificate chain PEM, leaf first (a proxy file works as is). */
  cert: string;
  key: string;
}

export interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** The body's bytes. */
  body: Buffer;
  // biome-ignore lint/suspicious/noExplicitAny: test responses are inspected field by field
  json: any;
}

export interface RequestOptions {
  body?: unknown;
  /** Send the body as form fields (what `curl -d` does) instead of JSON. */
  form?: boolean;
  headers?: Record<string, string>;
  /** The address to send from (another loopback address, as another client would be). */
  localAddress?: string;
}

export function request(
  url: string,
  method: string,
  credential: ClientCredential | null,
  ca: string,
  options: RequestOptions = {},
): Promise<Response> {
  const target = new URL(url);
  let payload: string | Buffer | undefined = Buffer.isBuffer(options.body) ? options.body : undefined;
  const headers: Record<string, string> = { ...options.headers };
  if (Buffer.isBuffer(options.body)) {
    headers['content-length'] = String(options.body.length);
  } else if (options.body !== undefined) {
    if (options.form) {
      payload = new URLSearchParams(options.body as Record<string, string>).toString();
      headers['content-type'] ??= 'application/x-www-form-urlencoded';
    } else {
      payload = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
      headers['content-type'] ??= 'application/json';
    }
    headers['content-length'] = String(Buffer.byteLength(payload));
  }
  const transport = target.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = transport.request(
      target,
      {
        method,
        headers,
        ...(options.localAddress ? { localAddress: options.localAddress } : {}),
        ...(target.protocol === 'https:'
          ? { ca, ...(credential ? { cert: credential.cert, key: credential.key } : {}), agent: false }
          : { agent: false }),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          const text = body.toString('utf8');
          let json: unknown;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body, json });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** A client bound to one server and one credential: `as(bob).get('/api/whoami')`. */
export function clientFor(baseUrl: string, ca: string, credential: ClientCredential | null) {
  const call =
    (method: string) =>
    (path: string, body?: unknown, options: Omit<RequestOptions, 'body'> = {}) =>
      request(baseUrl + path, method, credential, ca, {
        ...options,
        ...(body === undefined ? {} : { body }),
      });
  return {
    get: call('GET'),
    post: call('POST'),
    patch: call('PATCH'),
    delete: call('DELETE'),
    put: call('PUT'),
    request: (method: string, path: string, options: RequestOptions = {}) =>
      request(baseUrl + path, method, credential, ca, options),
  };
}

/** Asserts an error response: its status, its stable code, and a human message (HEAD: the status alone). */
export function expectError(
  res: { status: number; json: { error?: { code?: string; message?: string } } },
  status: number,
  code: string,
): void {
  assert.equal(res.status, status, JSON.stringify(res.json));
  assert.equal(res.json?.error?.code, code, JSON.stringify(res.json));
  assert.equal(typeof res.json?.error?.message, 'string');
}

/**
 * A raw TLS connection to a test server on loopback, as `credential`, for requests written by hand (stalled,
 * cut or half-sent ones); resolves once the handshake is done. Socket errors are the test's to provoke: ignored.
 */
export async function tlsSocket(
  port: number,
  ca: string,
  credential: ClientCredential,
): Promise<tls.TLSSocket> {
  const socket = tls.connect({ host: '127.0.0.1', port, ca, ...credential, servername: 'localhost' });
  socket.on('error', () => {});
  await new Promise((resolve) => socket.once('secureConnect', resolve));
  return socket;
}

/** A TCP port free on loopback right now (for servers a test starts as child processes). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((done) => server.close(done));
  return port;
}
