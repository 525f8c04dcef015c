/**
 * Server configuration: built-in defaults, then a TOML file (`--config FILE` or `$REPOMAN_CONFIG`), then
 * `REPOMAN_*` environment variables. Every key, its type and its variable are listed once, in KEYS; the
 * reference is docs/configuration.md.
 */

import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ADMINS_GROUP, checkAccountName, FEATURES, FORMATS } from '@repoman/core';
import { parse as parseToml } from 'smol-toml';
import type { S3Settings } from './blobs/s3-settings.ts';
import { balancerList } from './http/balancers.ts';
import { joinBase } from './tokens/scopes.ts';

export type CrlMode = 'off' | 'if-present' | 'require';

export interface AdminSpec {
  name: string;
  dn: string;
}

/** One trusted token issuer, `[[tokens.issuers]]` (docs/authentication.md#tokens). */
export interface TokenIssuer {
  /** The `iss` of its tokens, and where its discovery document lies. */
  url: string;
  /** What the web sign-in button says. */
  name: string;
  /** The audiences taken; empty: the server's own URL. */
  audiences: string[];
  /**
   * `identity`: a token names a user (iss+sub, linked to a Repoman user); its storage scopes narrow them.
   * `capability`: its storage scopes authorize on their own, as the issuer's service user.
   */
  mode: 'identity' | 'capability';
  /** Where the tokens' storage path `/` lies in the repository. */
  basePath: string;
  /** Identity mode: an unknown iss+sub becomes a new user at first use (else an admin links it). */
  createUsers: boolean;
  /** Capability mode: the user the tokens act as, who owns what they create. */
  user: string | undefined;
  /** `wlcg.groups` paths to group names; and whether other paths map by the prefix rule. */
  groupMap: Record<string, string>;
  groupPrefix: boolean;
  /** Browser sign-in (OpenID Connect, code flow with PKCE) with this issuer: its client. */
  clientId: string | undefined;
  clientSecret: string | undefined;
}

export interface ServerConfig {
  dataDir: string;
  databaseUrl: string;
  databaseSchema: string | undefined;
  /** Where image bytes go: a directory (the default), or nowhere (`discard`, for measuring the data path). */
  blobStore: 'directory' | 's3' | 'discard';
  blobDir: string;
  /** The S3-compatible object store, for `blob_store = "s3"` (docs/configuration.md). */
  s3: S3Settings & {
    /** Authorised downloads are answered with a redirect to a presigned URL, valid this long. */
    redirectDownloads: boolean;
    redirectSeconds: number;
  };
  publicUrl: string | undefined;
  publicHttpUrl: string | undefined;
  logLevel: string;
  /**
   * Server processes sharing the ports (cluster.ts): by default one per core the process may use; 1 runs the
   * server in this process alone.
   */
  workers: number;
  https: { listen: string; port: number; cert: string | undefined; key: string | undefined };
  http: { enabled: boolean; listen: string; port: number };
  /** How long a client may take to finish its TLS handshake, send its headers, or stay silent mid-request. */
  timeouts: {
    handshakeSeconds: number;
    headersSeconds: number;
    idleSeconds: number;
    keepAliveSeconds: number;
  };
  /** Connections one client address may hold open at once, on both ports together (http/connection-cap.ts). */
  connections: { maxPerAddress: number; maxRefusedCertificatesPerMinute: number };
  trust: {
    caDir: string | undefined;
    crlDir: string | undefined;
    crlMode: CrlMode;
    /** CA namespace files (pki/namespaces.ts): required for every CA, or enforced where they exist */
    namespaces: 'require' | 'enforce-if-present';
    reloadSeconds: number;
    allowLegacyProxies: boolean;
    allowLimitedProxies: boolean;
    maxProxyDepth: number;
  };
  uploads: {
    maxImageSize: number;
    md5: boolean;
    sha512: boolean;
    keepVersions: number;
    resumableExpirySeconds: number;
    /** How long a server that stops (or dies) while receiving a resumable upload keeps it from the others. */
    leaseSeconds: number;
    /** Formats uploads may be in (docs/formats.md); every one the inspector knows by default. */
    allowedFormats: string[];
    /** Features refused by default that this repository takes (docs/formats.md). */
    allowedFeatures: string[];
    /** Unfinished resumable uploads one user may have at a time. */
    maxPendingPerUser: number;
  };
  /** Limits every user gets (docs/configuration.md). */
  users: {
    /** The quota, in bytes, of users created from now on; null: none. */
    defaultQuota: number | null;
    /** Images one namespace may hold. */
    maxImages: number;
  };
  /** Giving images away (docs/api.md#transfers). */
  transfers: {
    /** How long an offer waits for its receiver's answer. */
    offerExpirySeconds: number;
  };
  /** Capabilities (macaroons, docs/grid-tools.md): how long one is valid when asked for. */
  capabilities: {
    defaultValiditySeconds: number;
    /** The longest a capability may be valid (an image list's must last as long as the list). */
    maxValiditySeconds: number;
  };
  /** Signed image lists (docs/image-lists.md): how long one is valid, and who signs them. */
  imageLists: {
    /** The longest a list is valid; at most the capabilities' maximum (its private images' URLs last that long). */
    maxValiditySeconds: number;
    /** The server's signing certificate and key (S/MIME signing); unset: the development one, or none. */
    signingCert: string | undefined;
    signingKey: string | undefined;
    /** The `hv:email` of the lists the server signs (else the certificate's). */
    signerEmail: string;
    /** A group's list expiring sooner than this is warned about (log), hourly. */
    warnBeforeSeconds: number;
  };
  /** Syncing images into clouds (docs/clouds.md). */
  clouds: {
    /** The key cloud credentials' secrets are sealed with (base64 or hex of 32 bytes); unset: one made in data_dir. */
    secretKey: string | undefined;
    /** Keys that sealed secrets before a rotation: they still open them. */
    previousSecretKeys: string[];
    /** Loopback and private networks a cloud (Keystone, Glance) may be on all the same. */
    allowedNetworks: string[];
    /** How often each cloud is reconciled. */
    syncSeconds: number;
    /** How long a replaced or unsubscribed image stays in a cloud (deactivated) before it is deleted. */
    graceSeconds: number;
    /** Transfers into clouds one server runs at once. */
    maxTransfers: number;
  };
  /** Bearer tokens (JWTs) from trusted issuers, and browser sign-in with them (docs/authentication.md). */
  tokens: {
    /** Seconds of clock difference allowed in `exp`, `nbf` and `iat`. */
    clockSkewSeconds: number;
    /** How long a browser session lasts after its sign-in. */
    sessionSeconds: number;
    /** An issuer's keys are fetched again (for a key id not seen yet) at most this often. */
    keyRefreshSeconds: number;
    issuers: TokenIssuer[];
  };
  /** Third-party copies (docs/grid-tools.md): where they may connect, and their limits. */
  tpc: {
    /** Loopback, link-local and private networks a copy may reach all the same. */
    allowedNetworks: string[];
    maxRedirects: number;
    idleTimeoutSeconds: number;
    markerSeconds: number;
  };
  /** Conversion jobs (docs/formats.md). */
  conversions: {
    enabled: boolean;
    qemuImg: string;
    maxJobs: number;
    cpuSeconds: number;
    memoryMib: number;
    tempDir: string;
  };
  admins: AdminSpec[];
  /** Addresses (or CIDR blocks) of balancers that send the PROXY protocol; empty: none is accepted. */
  balancers: string[];
  /** Prometheus metrics at /metrics, readable from these addresses only. */
  metrics: { enabled: boolean; allow: string[] };
  /** The web interface: served at / from `dir` (the built packages/web) unless switched off. */
  web: { enabled: boolean; dir: string };
  /**
   * The listen settings left unset that default to loopback: while clients are checked against the development
   * CA (no `trust.ca_dir`), whose admin's key sits in the data directory, only this machine is answered.
   */
  loopbackDefaults: ('https.listen' | 'http.listen')[];
  /** Things worth telling the operator, such as REPOMAN_* variables that name no setting. */
  warnings: string[];
  /** Where the values came from, for the start-up banner and error messages. */
  configFile: string | undefined;
}

type Kind =
  | 'string'
  | 'path'
  | 'port'
  | 'int'
  | 'bool'
  | 'url'
  | 'crlMode'
  | 'namespaceMode'
  | 'blobStore'
  | 'logLevel'
  | 'formats'
  | 'features'
  | 'addresses'
  | 'keys'
  | 'bytesOrNone';

interface Key {
  path: string;
  kind: Kind;
  env: string;
}

/** Every scalar key: its TOML path and environment variable. */
const KEYS: Key[] = [
  ['data_dir', 'path'],
  ['database_url', 'string'],
  ['database_schema', 'string'],
  ['blob_store', 'blobStore'],
  ['blob_dir', 'path'],
  ['s3.endpoint', 'url'],
  ['s3.region', 'string'],
  ['s3.bucket', 'string'],
  ['s3.prefix', 'string'],
  ['s3.path_style', 'bool'],
  ['s3.access_key_id', 'string'],
  ['s3.secret_access_key', 'string'],
  ['s3.part_size_mib', 'int'],
  ['s3.create_bucket', 'bool'],
  ['s3.max_connections', 'int'],
  ['s3.redirect_downloads', 'bool'],
  ['s3.redirect_seconds', 'int'],
  ['public_url', 'url'],
  ['public_http_url', 'url'],
  ['log_level', 'logLevel'],
  ['workers', 'int'],
  ['https.listen', 'string'],
  ['https.port', 'port'],
  ['https.cert', 'path'],
  ['https.key', 'path'],
  ['http.enabled', 'bool'],
  ['http.listen', 'string'],
  ['http.port', 'port'],
  ['trust.ca_dir', 'path'],
  ['trust.crl_dir', 'path'],
  ['trust.crl_mode', 'crlMode'],
  ['trust.namespaces', 'namespaceMode'],
  ['trust.reload_seconds', 'int'],
  ['trust.allow_legacy_proxies', 'bool'],
  ['trust.allow_limited_proxies', 'bool'],
  ['trust.max_proxy_depth', 'int'],
  ['uploads.max_image_size', 'int'],
  ['uploads.md5', 'bool'],
  ['uploads.sha512', 'bool'],
  ['uploads.keep_versions', 'int'],
  ['uploads.resumable_expiry_seconds', 'int'],
  ['uploads.lease_seconds', 'int'],
  ['uploads.allowed_formats', 'formats'],
  ['uploads.allowed_features', 'features'],
  ['uploads.max_pending_per_user', 'int'],
  ['users.default_quota', 'bytesOrNone'],
  ['users.max_images', 'int'],
  ['transfers.offer_expiry_seconds', 'int'],
  ['capabilities.default_validity_seconds', 'int'],
  ['capabilities.max_validity_seconds', 'int'],
  ['image_lists.max_validity_seconds', 'int'],
  ['image_lists.signing_cert', 'path'],
  ['image_lists.signing_key', 'path'],
  ['image_lists.signer_email', 'string'],
  ['image_lists.warn_before_seconds', 'int'],
  ['clouds.secret_key', 'string'],
  ['clouds.previous_secret_keys', 'keys'],
  ['clouds.allowed_networks', 'addresses'],
  ['clouds.sync_seconds', 'int'],
  ['clouds.grace_seconds', 'int'],
  ['clouds.max_transfers', 'int'],
  ['tokens.clock_skew_seconds', 'int'],
  ['tokens.session_seconds', 'int'],
  ['tokens.key_refresh_seconds', 'int'],
  ['tpc.allowed_networks', 'addresses'],
  ['tpc.max_redirects', 'int'],
  ['tpc.idle_timeout_seconds', 'int'],
  ['tpc.marker_seconds', 'int'],
  ['conversions.enabled', 'bool'],
  ['conversions.qemu_img', 'string'],
  ['conversions.max_jobs', 'int'],
  ['conversions.cpu_seconds', 'int'],
  ['conversions.memory_mib', 'int'],
  ['conversions.temp_dir', 'path'],
  ['balancer.addresses', 'addresses'],
  ['metrics.enabled', 'bool'],
  ['metrics.allow', 'addresses'],
  ['web.enabled', 'bool'],
  ['web.dir', 'path'],
  ['timeouts.handshake_seconds', 'int'],
  ['timeouts.headers_seconds', 'int'],
  ['timeouts.idle_seconds', 'int'],
  ['timeouts.keep_alive_seconds', 'int'],
  ['connections.max_per_address', 'int'],
  ['connections.max_refused_certificates_per_minute', 'int'],
].map(([path, kind]) => ({
  path: path as string,
  kind: kind as Kind,
  env: `REPOMAN_${(path as string).replaceAll('.', '_').toUpperCase()}`,
}));

/** Where a server trusting the development CA listens unless told otherwise. */
export const LOOPBACK = '127.0.0.1';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export class ConfigError extends Error {
  override name = 'ConfigError';
}

function convert(key: Key, raw: unknown, source: string, baseDir: string): unknown {
  const fail = (what: string): never => {
    throw new ConfigError(`${key.path} (${source}) must be ${what}; got ${JSON.stringify(raw)}`);
  };
  const text = typeof raw === 'string' ? raw.trim() : raw;
  switch (key.kind) {
    case 'string':
      return typeof text === 'string' ? text : fail('a string');
    case 'path':
      if (typeof text !== 'string' || text === '') return fail('a path');
      return isAbsolute(text) ? text : resolve(baseDir, text);
    case 'url':
      if (typeof text !== 'string' || !/^https?:\/\/[^/\s]+/.test(text)) return fail('an http(s) URL');
      return text.replace(/\/+$/, '');
    case 'port':
    case 'int': {
      const n =
        typeof text === 'number'
          ? text
          : typeof text === 'string' && /^\d+$/.test(text)
            ? Number(text)
            : Number.NaN;
      if (!Number.isInteger(n) || n < 0 || (key.kind === 'port' && n > 65535)) {
        return fail(key.kind === 'port' ? 'a port number (0-65535)' : 'a non-negative integer');
      }
      return n;
    }
    case 'bool':
      if (typeof text === 'boolean') return text;
      if (typeof text === 'string' && /^(true|yes|on|1)$/i.test(text)) return true;
      if (typeof text === 'string' && /^(false|no|off|0)$/i.test(text)) return false;
      return fail('true or false');
    case 'crlMode':
      return text === 'off' || text === 'if-present' || text === 'require'
        ? text
        : fail('off, if-present or require');
    case 'namespaceMode':
      return text === 'require' || text === 'enforce-if-present'
        ? text
        : fail('require or enforce-if-present');
    case 'blobStore':
      return text === 'directory' || text === 's3' || text === 'discard'
        ? text
        : fail('directory, s3 or discard');
    case 'logLevel':
      return typeof text === 'string' && LOG_LEVELS.includes(text) ? text : fail(LOG_LEVELS.join(', '));
    case 'formats': {
      // A TOML array, or a comma list in an environment variable.
      const names = Array.isArray(text) ? text : typeof text === 'string' ? text.split(',') : null;
      const known: readonly string[] = FORMATS;
      const list = names?.map((n) => (typeof n === 'string' ? n.trim() : n));
      if (!list || list.length === 0 || list.some((n) => typeof n !== 'string' || !known.includes(n)))
        return fail(`a list of formats among ${FORMATS.join(', ')}`);
      return list;
    }
    case 'addresses': {
      // A TOML array, or a comma list in an environment variable; each checked where it is read.
      const names = Array.isArray(text) ? text : typeof text === 'string' ? text.split(',') : null;
      const list = names?.map((n) => (typeof n === 'string' ? n.trim() : n)).filter((n) => n !== '');
      if (!list || list.some((n) => typeof n !== 'string'))
        return fail('a list of IP addresses or CIDR blocks');
      try {
        balancerList(list as string[]);
      } catch (error) {
        return fail(`a list of IP addresses or CIDR blocks (${(error as Error).message})`);
      }
      return list;
    }
    case 'keys': {
      // Secret keys: a TOML array, or a comma list in an environment variable (base64 and hex have no commas).
      const names = Array.isArray(text) ? text : typeof text === 'string' ? text.split(',') : null;
      const list = names?.map((n) => (typeof n === 'string' ? n.trim() : n)).filter((n) => n !== '');
      if (!list || list.some((n) => typeof n !== 'string')) return fail('a list of keys (base64 or hex)');
      return list;
    }
    case 'bytesOrNone': {
      if (text === 'none') return null;
      const n =
        typeof text === 'number' ? text : typeof text === 'string' && /^\d+$/.test(text) ? Number(text) : -1;
      return Number.isSafeInteger(n) && n >= 0 ? n : fail('a number of bytes, or "none"');
    }
    case 'features': {
      const names = Array.isArray(text) ? text : typeof text === 'string' ? text.split(',') : null;
      const list = names?.map((n) => (typeof n === 'string' ? n.trim() : n)).filter((n) => n !== '');
      const known: readonly string[] = FEATURES;
      if (!list || list.some((n) => typeof n !== 'string' || !known.includes(n)))
        return fail(`a list of features among ${FEATURES.join(', ')} (or empty)`);
      return list;
    }
  }
}

function lookup(table: Record<string, unknown>, path: string): unknown {
  let value: unknown = table;
  for (const part of path.split('.')) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

/** Rejects keys we do not know, so a typo is an error rather than a silently ignored setting. */
function checkUnknownKeys(table: Record<string, unknown>, file: string) {
  const known = new Set(KEYS.map((k) => k.path));
  const walk = (obj: Record<string, unknown>, prefix: string) => {
    for (const [name, value] of Object.entries(obj)) {
      const path = prefix + name;
      if (path === 'admins' || path === 'tokens.issuers') continue;
      if (value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Date)) {
        walk(value as Record<string, unknown>, `${path}.`);
      } else if (!known.has(path)) {
        throw new ConfigError(`${file}: unknown setting '${path}'`);
      }
    }
  };
  walk(table, '');
}

function parseAdmins(raw: unknown, source: string): AdminSpec[] {
  if (raw === undefined) return [];
  if (typeof raw === 'string') {
    // REPOMAN_ADMINS="alice=/C=CA/O=Grid/CN=Alice;bob=/C=CA/O=Grid/CN=Bob"
    return raw
      .split(/[;\n]/)
      .map((s) => s.trim())
      .filter(Boolean)
      .map((entry) => {
        const at = entry.indexOf('=');
        if (at < 1) throw new ConfigError(`${source}: admin entries are name=DN, got '${entry}'`);
        return { name: entry.slice(0, at).trim(), dn: entry.slice(at + 1).trim() };
      });
  }
  if (!Array.isArray(raw))
    throw new ConfigError(`${source}: [[admins]] must be a list of tables with name and dn`);
  return raw.map((entry, i) => {
    const { name, dn } = (entry ?? {}) as Record<string, unknown>;
    if (typeof name !== 'string' || typeof dn !== 'string') {
      throw new ConfigError(`${source}: admins[${i}] needs a name and a dn`);
    }
    return { name, dn };
  });
}

const ISSUER_KEYS = new Set([
  'url',
  'name',
  'audiences',
  'mode',
  'base_path',
  'create_users',
  'user',
  'groups',
  'group_prefix',
  'client_id',
  'client_secret',
]);

/** `[[tokens.issuers]]`: each checked whole, so that a mistake stops the server rather than widening trust. */
function parseIssuers(raw: unknown, source: string): TokenIssuer[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) throw new ConfigError(`${source}: [[tokens.issuers]] must be a list of tables`);
  const seen = new Set<string>();
  return raw.map((entry, i) => {
    const where = `${source}: tokens.issuers[${i}]`;
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry))
      throw new ConfigError(`${where} must be a table`);
    const table = entry as Record<string, unknown>;
    for (const key of Object.keys(table))
      if (!ISSUER_KEYS.has(key)) throw new ConfigError(`${where}: unknown setting '${key}'`);
    const text = (key: string) => {
      const value = table[key];
      if (value !== undefined && typeof value !== 'string')
        throw new ConfigError(`${where}.${key} must be a string`);
      return value === '' ? undefined : (value as string | undefined);
    };
    const url = text('url');
    let parsed: URL;
    try {
      parsed = new URL(url ?? '');
    } catch {
      throw new ConfigError(
        `${where}.url must be the issuer's URL (its tokens' iss); got ${JSON.stringify(url)}`,
      );
    }
    const loopback = ['127.0.0.1', '[::1]', 'localhost'].includes(parsed.hostname);
    if (parsed.protocol !== 'https:' && !(parsed.protocol === 'http:' && loopback))
      throw new ConfigError(`${where}.url must be https (plain http only on this machine's loopback)`);
    if (seen.has(url as string)) throw new ConfigError(`${where}: ${url} is configured twice`);
    seen.add(url as string);
    const mode = text('mode') ?? 'identity';
    if (mode !== 'identity' && mode !== 'capability')
      throw new ConfigError(`${where}.mode must be identity or capability; got ${JSON.stringify(mode)}`);
    const audiences = table.audiences ?? [];
    if (!Array.isArray(audiences) || audiences.some((a) => typeof a !== 'string' || a === ''))
      throw new ConfigError(`${where}.audiences must be a list of strings`);
    const user = text('user');
    if (mode === 'capability' && user === undefined)
      throw new ConfigError(
        `${where}: an issuer in capability mode needs user, the Repoman user its tokens act as`,
      );
    if (user !== undefined && checkAccountName(user) !== null)
      throw new ConfigError(`${where}.user must be a user name; got ${JSON.stringify(user)}`);
    const basePath = text('base_path') ?? (mode === 'capability' ? `/${user}` : '/');
    if (joinBase(basePath, '/') === null)
      throw new ConfigError(
        `${where}.base_path must be a path such as / or /atlas; got ${JSON.stringify(basePath)}`,
      );
    const groups = table.groups ?? {};
    if (typeof groups !== 'object' || groups === null || Array.isArray(groups))
      throw new ConfigError(`${where}.groups must be a table of group paths to group names`);
    const groupMap: Record<string, string> = {};
    for (const [path, name] of Object.entries(groups)) {
      if (typeof name !== 'string' || checkAccountName(name) !== null || name === ADMINS_GROUP)
        throw new ConfigError(
          `${where}.groups: ${path} must map to a group name (not ${ADMINS_GROUP}); got ${JSON.stringify(name)}`,
        );
      groupMap[path] = name;
    }
    const flag = (key: string) => {
      const value = table[key] ?? false;
      if (typeof value !== 'boolean') throw new ConfigError(`${where}.${key} must be true or false`);
      return value;
    };
    const clientId = text('client_id');
    return {
      url: url as string,
      name: text('name') ?? parsed.host,
      audiences: audiences as string[],
      mode,
      basePath: joinBase(basePath, '/') as string,
      createUsers: flag('create_users'),
      user,
      groupMap,
      groupPrefix: flag('group_prefix'),
      clientId,
      clientSecret: text('client_secret'),
    };
  });
}

/** Variables that look like ours but set nothing (a typo such as REPOMAN_HTTPS_PROT). */
const OTHER_VARIABLES = new Set([
  'REPOMAN_CONFIG',
  'REPOMAN_ADMINS',
  'REPOMAN_TEST_PG_URL',
  'REPOMAN_CLIENT_CONFIG',
  'REPOMAN_WORKER_SLOT', // set by the primary process for each of its workers (cluster.ts)
]);

function unknownVariables(env: NodeJS.ProcessEnv): string[] {
  const known = new Set(KEYS.map((k) => k.env));
  return Object.keys(env)
    .filter((name) => name.startsWith('REPOMAN_') && !known.has(name) && !OTHER_VARIABLES.has(name))
    .sort()
    .map((name) => `the environment variable ${name} names no setting (see docs/configuration.md)`);
}

/** `sqlite:PATH` with a relative path means relative to where it was written, like every other path. */
function sqliteRelativeTo(url: string, base: string): string {
  if (!url.startsWith('sqlite:')) return url;
  const path = url.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
  return `sqlite:${resolve(base, path)}`;
}

export interface LoadOptions {
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export function loadConfig(options: LoadOptions = {}): ServerConfig {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const file = options.file ?? env.REPOMAN_CONFIG;
  let table: Record<string, unknown> = {};
  let fileDir = cwd;
  if (file) {
    const path = resolve(cwd, file);
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (error) {
      throw new ConfigError(`Cannot read the configuration file ${path}: ${(error as Error).message}`);
    }
    try {
      table = parseToml(text) as Record<string, unknown>;
    } catch (error) {
      throw new ConfigError(`${path}: ${(error as Error).message}`);
    }
    checkUnknownKeys(table, path);
    fileDir = dirname(path);
  }

  const values = new Map<string, unknown>();
  for (const key of KEYS) {
    const fromEnv = env[key.env];
    if (fromEnv !== undefined && fromEnv !== '') values.set(key.path, convert(key, fromEnv, key.env, cwd));
    else {
      const fromFile = lookup(table, key.path);
      if (fromFile !== undefined) values.set(key.path, convert(key, fromFile, file ?? 'config', fileDir));
    }
  }
  const get = <T>(path: string, fallback: T): T => (values.has(path) ? (values.get(path) as T) : fallback);

  const dataDir = get('data_dir', resolve(cwd, 'repoman-data'));
  const blobStore = get<ServerConfig['blobStore']>('blob_store', 'directory');
  const bucket = get('s3.bucket', '');
  if (blobStore === 's3' && !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket))
    throw new ConfigError(
      bucket === ''
        ? 'blob_store = "s3" needs s3.bucket (or REPOMAN_S3_BUCKET)'
        : `s3.bucket must be an S3 bucket name (3 to 63 lowercase letters, digits, dots and dashes); got ${JSON.stringify(bucket)}`,
    );
  const prefix = get('s3.prefix', '').replace(/^\/+/, '');
  const partSizeMib = get('s3.part_size_mib', 8);
  if (partSizeMib < 5 || partSizeMib > 512)
    throw new ConfigError(
      `s3.part_size_mib must be between 5 and 512 (S3's parts are 5 MiB at least); got ${partSizeMib}`,
    );
  const loopbackDefaults = values.has('trust.ca_dir')
    ? []
    : (['https.listen', 'http.listen'] as const).filter((key) => !values.has(key));
  const listenDefault = (key: 'https.listen' | 'http.listen') =>
    loopbackDefaults.includes(key) ? LOOPBACK : '0.0.0.0';
  const admins = env.REPOMAN_ADMINS
    ? parseAdmins(env.REPOMAN_ADMINS, 'REPOMAN_ADMINS')
    : parseAdmins(table.admins, file ?? 'config');

  return {
    dataDir,
    databaseUrl: sqliteRelativeTo(
      get('database_url', `sqlite:${resolve(dataDir, 'repoman.db')}`),
      env.REPOMAN_DATABASE_URL ? cwd : fileDir,
    ),
    databaseSchema: get<string | undefined>('database_schema', undefined),
    blobStore,
    blobDir: get('blob_dir', resolve(dataDir, 'blobs')),
    s3: {
      endpoint: get<string | undefined>(
        's3.endpoint',
        env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined,
      ),
      region: get('s3.region', env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1'),
      bucket,
      prefix: prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`,
      pathStyle: get('s3.path_style', false),
      accessKeyId: get<string | undefined>('s3.access_key_id', undefined),
      secretAccessKey: get<string | undefined>('s3.secret_access_key', undefined),
      partSize: partSizeMib * 1024 * 1024,
      createBucket: get('s3.create_bucket', false),
      maxSockets: Math.max(1, get('s3.max_connections', 512)),
      redirectDownloads: get('s3.redirect_downloads', false),
      redirectSeconds: Math.max(1, get('s3.redirect_seconds', 300)),
    },
    publicUrl: get<string | undefined>('public_url', undefined),
    publicHttpUrl: get<string | undefined>('public_http_url', undefined),
    logLevel: get('log_level', 'info'),
    workers: Math.max(1, get('workers', availableParallelism())),
    https: {
      listen: get('https.listen', listenDefault('https.listen')),
      port: get('https.port', 8443),
      cert: get<string | undefined>('https.cert', undefined),
      key: get<string | undefined>('https.key', undefined),
    },
    http: {
      enabled: get('http.enabled', true),
      listen: get('http.listen', listenDefault('http.listen')),
      port: get('http.port', 8080),
    },
    timeouts: {
      handshakeSeconds: Math.max(1, get('timeouts.handshake_seconds', 30)),
      headersSeconds: Math.max(1, get('timeouts.headers_seconds', 30)),
      idleSeconds: Math.max(1, get('timeouts.idle_seconds', 120)),
      keepAliveSeconds: Math.max(1, get('timeouts.keep_alive_seconds', 65)),
    },
    connections: {
      maxPerAddress: Math.max(1, get('connections.max_per_address', 256)),
      maxRefusedCertificatesPerMinute: Math.max(
        0,
        get('connections.max_refused_certificates_per_minute', 30),
      ),
    },
    trust: {
      caDir: get<string | undefined>('trust.ca_dir', undefined),
      crlDir: get<string | undefined>('trust.crl_dir', undefined),
      crlMode: get('trust.crl_mode', 'if-present'),
      namespaces: get('trust.namespaces', 'require'),
      reloadSeconds: get('trust.reload_seconds', 3600),
      allowLegacyProxies: get('trust.allow_legacy_proxies', true),
      allowLimitedProxies: get('trust.allow_limited_proxies', true),
      maxProxyDepth: get('trust.max_proxy_depth', 10),
    },
    uploads: {
      maxImageSize: get('uploads.max_image_size', 1024 ** 4),
      md5: get('uploads.md5', true),
      sha512: get('uploads.sha512', true),
      keepVersions: Math.max(1, get('uploads.keep_versions', 3)),
      resumableExpirySeconds: Math.max(1, get('uploads.resumable_expiry_seconds', 24 * 3600)),
      leaseSeconds: Math.max(10, get('uploads.lease_seconds', 30)),
      allowedFormats: get('uploads.allowed_formats', [...FORMATS]),
      allowedFeatures: get<string[]>('uploads.allowed_features', []),
      maxPendingPerUser: Math.max(1, get('uploads.max_pending_per_user', 10)),
    },
    users: {
      defaultQuota: get<number | null>('users.default_quota', 50 * 1024 ** 3),
      maxImages: Math.max(1, get('users.max_images', 1000)),
    },
    transfers: {
      offerExpirySeconds: Math.max(60, get('transfers.offer_expiry_seconds', 3 * 24 * 3600)),
    },
    tpc: {
      allowedNetworks: get<string[]>('tpc.allowed_networks', []),
      maxRedirects: Math.max(0, get('tpc.max_redirects', 5)),
      idleTimeoutSeconds: Math.max(1, get('tpc.idle_timeout_seconds', 60)),
      markerSeconds: Math.max(1, get('tpc.marker_seconds', 5)),
    },
    tokens: {
      clockSkewSeconds: Math.min(600, get('tokens.clock_skew_seconds', 60)),
      sessionSeconds: Math.max(60, get('tokens.session_seconds', 12 * 3600)),
      keyRefreshSeconds: Math.max(1, get('tokens.key_refresh_seconds', 60)),
      issuers: parseIssuers(lookup(table, 'tokens.issuers'), file ?? 'config'),
    },
    capabilities: (() => {
      const maxValiditySeconds = Math.max(1, get('capabilities.max_validity_seconds', 30 * 24 * 3600));
      const asked = Math.max(1, get('capabilities.default_validity_seconds', 3600));
      return { defaultValiditySeconds: Math.min(asked, maxValiditySeconds), maxValiditySeconds };
    })(),
    clouds: {
      secretKey: get<string | undefined>('clouds.secret_key', undefined),
      previousSecretKeys: get<string[]>('clouds.previous_secret_keys', []),
      allowedNetworks: get<string[]>('clouds.allowed_networks', []),
      syncSeconds: Math.max(5, get('clouds.sync_seconds', 300)),
      graceSeconds: Math.max(0, get('clouds.grace_seconds', 86400)),
      maxTransfers: Math.max(1, get('clouds.max_transfers', 2)),
    },
    imageLists: (() => {
      const capabilityMax = Math.max(1, get('capabilities.max_validity_seconds', 30 * 24 * 3600));
      // By default 28 days, or the capabilities' maximum if that is shorter; longer, only if set so.
      const maxValiditySeconds = Math.max(
        3600,
        get('image_lists.max_validity_seconds', Math.min(28 * 24 * 3600, capabilityMax)),
      );
      if (maxValiditySeconds > capabilityMax)
        throw new ConfigError(
          `image_lists.max_validity_seconds (${maxValiditySeconds}) is longer than capabilities.max_validity_seconds (${capabilityMax}): the URLs of private images in a list would expire before the list`,
        );
      const signingCert = get<string | undefined>('image_lists.signing_cert', undefined);
      const signingKey = get<string | undefined>('image_lists.signing_key', undefined);
      if ((signingCert === undefined) !== (signingKey === undefined))
        throw new ConfigError('image_lists.signing_cert and image_lists.signing_key must be set together');
      return {
        maxValiditySeconds,
        signingCert,
        signingKey,
        signerEmail: get('image_lists.signer_email', ''),
        warnBeforeSeconds: Math.max(0, get('image_lists.warn_before_seconds', 7 * 24 * 3600)),
      };
    })(),
    conversions: {
      enabled: get('conversions.enabled', true),
      qemuImg: get('conversions.qemu_img', 'qemu-img'),
      maxJobs: Math.max(1, get('conversions.max_jobs', 1)),
      cpuSeconds: Math.max(1, get('conversions.cpu_seconds', 3600)),
      memoryMib: Math.max(64, get('conversions.memory_mib', 1024)),
      tempDir: get('conversions.temp_dir', resolve(dataDir, 'conversions')),
    },
    admins,
    balancers: get<string[]>('balancer.addresses', []),
    metrics: {
      enabled: get('metrics.enabled', true),
      allow: get<string[]>('metrics.allow', ['127.0.0.1', '::1']),
    },
    web: {
      enabled: get('web.enabled', true),
      dir: get('web.dir', fileURLToPath(new URL('../../web/dist', import.meta.url))),
    },
    loopbackDefaults,
    warnings: [
      ...unknownVariables(env),
      ...(blobStore === 'discard'
        ? [
            'blob_store = "discard": uploads are received and thrown away, and nothing can be downloaded (for benchmarks only)',
          ]
        : []),
    ],
    configFile: file ? resolve(cwd, file) : undefined,
  };
}

const urlHost = (host: string) =>
  host === '0.0.0.0' || host === '::' ? 'localhost' : host.includes(':') ? `[${host}]` : host;

/** The server's base URLs: the configured ones, or where it listens. */
export function serverUrls(config: ServerConfig, httpsPort: number, httpPort: number | null) {
  return {
    httpsUrl: config.publicUrl ?? `https://${urlHost(config.https.listen)}:${httpsPort}`,
    httpUrl:
      httpPort === null
        ? null
        : (config.publicHttpUrl ?? `http://${urlHost(config.http.listen)}:${httpPort}`),
  };
}
