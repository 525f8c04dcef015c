/**
 * The web interface (packages/web, built into its dist/): a single page application served at `/` on HTTPS
 * (the browser's certificate is the login, checked by the same hook as every API request) and on plain HTTP,
 * where it shows public images only. Its few files are read once at start-up and kept in memory, compressed
 * once with gzip and Brotli; it talks to the server through the public API only.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join, relative, sep } from 'node:path';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';
import { RepomanError } from '@repoman/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isTls } from './auth.ts';
import { notFoundHandler } from './errors.ts';

interface Asset {
  body: Buffer;
  gzip: Buffer | null;
  brotli: Buffer | null;
  type: string;
  etag: string;
  /** Vite names what it builds by content (assets/index-3f9a1c.js): such a file never changes. */
  immutable: boolean;
}

export interface WebAssets {
  files: Map<string, Asset>;
  index: Asset;
  /** Bytes of JavaScript, and of it gzip-compressed: what a browser downloads on a first visit. */
  scriptBytes: { raw: number; gzip: number };
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.webmanifest': 'application/manifest+json',
  '.txt': 'text/plain; charset=utf-8',
  '.woff2': 'font/woff2',
};
const COMPRESSIBLE = new Set(['.html', '.js', '.css', '.svg', '.json', '.webmanifest', '.txt']);
/** More than the interface will ever be; a wrong `web.dir` (a home directory, say) is refused, not read. */
const MAX_TOTAL_BYTES = 32 * 1024 * 1024;

/**
 * Pages may run only their own scripts and styles and talk only to this server: a script injected through an
 * image's description (Preact escapes text anyway) could not run, nor send anything elsewhere.
 */
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "font-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

/** Reads the built interface; null if it is not there (not built, or `web.dir` names nothing). */
export async function loadWebAssets(dir: string): Promise<WebAssets | null> {
  let paths: string[];
  try {
    paths = await filesUnder(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  let total = 0;
  let signature = dir;
  for (const path of paths) {
    const info = await stat(path);
    total += info.size;
    signature += `\n${path} ${info.size} ${info.mtimeMs}`;
  }
  if (total > MAX_TOTAL_BYTES)
    throw new Error(`web.dir ${dir} holds more than ${MAX_TOTAL_BYTES} bytes: is it the built interface?`);
  // Compressing takes a tenth of a second: done once per build, however many servers a process starts.
  let loaded = built.get(signature);
  if (!loaded) {
    loaded = compressAll(paths, dir);
    built.clear();
    built.set(signature, loaded);
    loaded.catch(() => built.delete(signature)); // a failed read is tried again by the next start
  }
  return loaded;
}

const built = new Map<string, Promise<WebAssets | null>>();

async function compressAll(paths: string[], dir: string): Promise<WebAssets | null> {
  const files = new Map<string, Asset>();
  const scriptBytes = { raw: 0, gzip: 0 };
  for (const path of paths) {
    const body = await readFile(path);
    const extension = extname(path).toLowerCase();
    const compress = COMPRESSIBLE.has(extension) && body.length > 256;
    const urlPath = `/${relative(dir, path).split(sep).join('/')}`;
    const asset: Asset = {
      body,
      gzip: compress ? gzipSync(body, { level: 9 }) : null,
      brotli: compress
        ? brotliCompressSync(body, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } })
        : null,
      type: TYPES[extension] ?? 'application/octet-stream',
      etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
      immutable: urlPath.startsWith('/assets/'),
    };
    if (extension === '.js') {
      scriptBytes.raw += body.length;
      scriptBytes.gzip += asset.gzip?.length ?? body.length;
    }
    files.set(urlPath, asset);
  }
  const index = files.get('/index.html');
  if (!index) return null;
  return { files, index, scriptBytes };
}

/** The encodings a client takes (`Accept-Encoding`), without those it refuses with `q=0`. */
function acceptedEncodings(header: string | undefined): Set<string> {
  const accepted = new Set<string>();
  for (const item of (header ?? '').split(',')) {
    const [name = '', ...params] = item.trim().toLowerCase().split(';');
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    if (name && !(q && Number(q.slice(2)) === 0)) accepted.add(name);
  }
  return accepted;
}

/** Whether `If-None-Match` names this entity tag (weakly, as RFC 9110 has it for GET), or is `*`. */
function matches(ifNoneMatch: string | undefined, etag: string): boolean {
  if (!ifNoneMatch) return false;
  return ifNoneMatch.split(',').some((tag) => {
    const t = tag.trim();
    return t === '*' || t.replace(/^W\//, '') === etag;
  });
}

function send(request: FastifyRequest, reply: FastifyReply, asset: Asset) {
  const accepted = acceptedEncodings(request.headers['accept-encoding']);
  // Each encoding is another representation, with an entity tag of its own.
  const [body, encoding] =
    asset.brotli && accepted.has('br')
      ? [asset.brotli, 'br']
      : asset.gzip && accepted.has('gzip')
        ? [asset.gzip, 'gzip']
        : [asset.body, null];
  const etag = encoding ? `${asset.etag.slice(0, -1)}-${encoding}"` : asset.etag;
  reply
    .header('content-type', asset.type)
    .header('etag', etag)
    .header('vary', 'accept-encoding')
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'same-origin')
    .header('cache-control', asset.immutable ? 'public, max-age=31536000, immutable' : 'no-cache');
  if (asset.type.startsWith('text/html'))
    reply.header('content-security-policy', CONTENT_SECURITY_POLICY).header('x-frame-options', 'DENY');
  if (matches(request.headers['if-none-match'], etag)) return reply.code(304).send();
  if (encoding) reply.header('content-encoding', encoding);
  reply.header('content-length', body.length);
  return reply.send(request.method === 'HEAD' ? null : body);
}

/**
 * `/` and every path that is not the API's: a built file, or the application's page (it routes in the
 * browser, so /images/bob/rhel.img is the page of that image). Unknown API paths stay JSON 404s.
 */
export function webRoutes(app: FastifyInstance, assets: WebAssets | null) {
  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const path = request.url.split('?')[0] ?? '/';
    if (path === '/api' || path.startsWith('/api/') || path === '/metrics') {
      if (!isTls(request))
        throw new RepomanError(
          'https_required',
          'Plain HTTP serves public images only; use HTTPS with your certificate',
        );
      return notFoundHandler(request, reply);
    }
    if (!assets) {
      request.errorCode = 'not_found';
      return reply.code(404).send({
        error: {
          code: 'not_found',
          message:
            'The web interface is switched off (web.enabled) or not built (npm run build); the API is at /api',
        },
      });
    }
    const file = assets.files.get(path);
    if (file) return send(request, reply, file);
    // A missing script or style is a 404, not the page (which a browser would try to run as a script).
    if (path.startsWith('/assets/')) return notFoundHandler(request, reply);
    return send(request, reply, assets.index);
  };
  for (const url of ['/', '/*']) {
    app.route({
      method: ['GET', 'HEAD'],
      url,
      exposeHeadRoute: false,
      // The same files for everyone: nobody is looked up (the page asks the API who the certificate is).
      config: { auth: 'none', plainHttp: true },
      schema: { hide: true },
      handler,
    });
  }
}
