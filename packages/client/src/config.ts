/**
 * The client's configuration, as the original Repoman client had it: INI files read in order (later ones win),
 * `/etc/repoman/repoman.conf`, `$REPOMAN_CLIENT_CONFIG`, `~/.repoman/repoman.conf`; command-line flags on top.
 * Credentials and the CAs that vouch for the server are found the way grid tools find them.
 */
import { X509Certificate as X509 } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ClientError } from './errors.ts';

/** Section -> key -> value. */
export type Ini = Record<string, Record<string, string>>;

/** `key: value` or `key = value` lines under `[Section]` headers; `#` and `;` start comments. */
export function parseIni(text: string, source: string): Ini {
  const ini: Ini = {};
  let section: Record<string, string> | null = null;
  for (const [index, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header) {
      const name = (header[1] as string).trim();
      ini[name] ??= {};
      section = ini[name];
      continue;
    }
    const pair = /^([^:=]+?)\s*[:=]\s*(.*)$/.exec(line);
    if (!pair || !section)
      throw new ClientError(
        'config',
        `${source}:${index + 1}: cannot read '${line}' (expected key: value under a [section])`,
      );
    section[(pair[1] as string).toLowerCase()] = pair[2] as string;
  }
  return ini;
}

export interface Settings {
  /** Host name of the repository, and its HTTPS port. */
  repository: string | undefined;
  port: number;
  proxy: string | undefined;
  /** Which credential goes first when both a certificate (or proxy) and a bearer token are found. */
  prefer: 'certificate' | 'token';
  /** A user certificate and key, when not using a proxy. */
  certificate: string | undefined;
  key: string | undefined;
  /** CA directory or file that vouches for the server. */
  caPath: string | undefined;
  snapshotDir: string;
  lockfile: string;
  snapshot: string;
  mountpoint: string;
  systemExcludes: string;
  userExcludes: string;
  /** The configuration files read, in order. */
  files: string[];
}

export const DEFAULT_SYSTEM_EXCLUDES = '/dev/* /mnt/* /proc/* /root/.ssh /sys/* /tmp/*';

export function configFiles(env: NodeJS.ProcessEnv = process.env): string[] {
  const home = userHome(env);
  return [
    '/etc/repoman/repoman.conf',
    ...(env.REPOMAN_CLIENT_CONFIG ? [env.REPOMAN_CLIENT_CONFIG] : []),
    join(home, '.repoman', 'repoman.conf'),
  ];
}

/** The home of the user who ran the command (under sudo, the invoking user's, as the original did). */
export function userHome(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SUDO_USER && process.getuid?.() === 0) {
    const line = readFileSafe('/etc/passwd')
      ?.split('\n')
      .find((entry) => entry.split(':')[0] === env.SUDO_USER);
    const home = line?.split(':')[5];
    if (home) return home;
  }
  return env.HOME ?? homedir();
}

function readFileSafe(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

export function loadSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const files = configFiles(env).filter((file) => existsSync(file));
  const merged: Ini = {};
  for (const file of files) {
    const text = readFileSafe(file);
    if (text === undefined) throw new ClientError('config', `Cannot read ${file}`);
    for (const [section, values] of Object.entries(parseIni(text, file))) {
      merged[section.toLowerCase()] = { ...merged[section.toLowerCase()], ...values };
    }
  }
  const get = (section: string, key: string) => {
    const value = merged[section]?.[key]?.trim();
    return value === '' ? undefined : value;
  };
  const prefer = get('user', 'prefer') ?? 'certificate';
  if (prefer !== 'certificate' && prefer !== 'token')
    throw new ClientError('config', `[User] prefer is certificate or token, not '${prefer}'`);
  const port = get('repository', 'port') ?? '443';
  if (!/^\d+$/.test(port)) throw new ClientError('config', `Repository port '${port}' is not a number`);
  return {
    repository: get('repository', 'repository'),
    port: Number(port),
    proxy: get('user', 'proxy_cert'),
    prefer,
    certificate: get('user', 'user_cert'),
    key: get('user', 'user_key'),
    caPath: get('security', 'ca_dir') ?? get('repository', 'ca_dir'),
    snapshotDir: get('thisimage', 'snapshot_dir') ?? '/tmp',
    lockfile: get('thisimage', 'lockfile') ?? 'repoman-sync.lock',
    snapshot: get('thisimage', 'snapshot') ?? 'repoman-fscopy.img',
    mountpoint: get('thisimage', 'mountpoint') ?? 'repoman-fscopy',
    systemExcludes: get('thisimage', 'system_excludes') ?? DEFAULT_SYSTEM_EXCLUDES,
    userExcludes: get('thisimage', 'user_excludes') ?? '',
    files,
  };
}

/** The file `make-config` writes: every setting, with the defaults commented out, as the original's. */
export function configTemplate(repository?: string, port?: number): string {
  return `# Repoman client configuration (repoman make-config). Later files override earlier ones:
#   /etc/repoman/repoman.conf, $REPOMAN_CLIENT_CONFIG, ~/.repoman/repoman.conf
# Command-line flags override them all.

[Repository]
# The repository server's host name, and its HTTPS port.
${repository ? '' : '# '}repository: ${repository ?? 'repoman.example.org'}
${port ? '' : '# '}port: ${port ?? 443}

[User]
# A grid proxy (grid-proxy-init, voms-proxy-init). Default: $X509_USER_PROXY, then /tmp/x509up_u<uid>.
# proxy_cert: /tmp/x509up_u1000
# Or a user certificate and key. Default: ~/.globus/usercert.pem and ~/.globus/userkey.pem.
# user_cert: ~/.globus/usercert.pem
# user_key: ~/.globus/userkey.pem
# Or a bearer token (WLCG Bearer Token Discovery: --token, $BEARER_TOKEN, $BEARER_TOKEN_FILE,
# $XDG_RUNTIME_DIR/bt_u<uid>, /tmp/bt_u<uid>). Which goes first when both are found: certificate or token.
# prefer: certificate

[Security]
# The CAs that vouch for the server: a directory of PEM files (as /etc/grid-security/certificates) or one
# file. Default: $X509_CERT_DIR, then /etc/grid-security/certificates.
# ca_dir: /etc/grid-security/certificates

[ThisImage]
# save-image: where the snapshot is built, and what it leaves out (rsync patterns, space-separated;
# a trailing /* keeps the directory and drops its contents).
# snapshot_dir: /tmp
# lockfile: repoman-sync.lock
# snapshot: repoman-fscopy.img
# mountpoint: repoman-fscopy
# system_excludes: ${DEFAULT_SYSTEM_EXCLUDES}
# user_excludes:
`;
}

const expandHome = (path: string, env: NodeJS.ProcessEnv) =>
  path.startsWith('~/') ? join(userHome(env), path.slice(2)) : path;

/** What the client presents: a certificate (or proxy), or a bearer token. */
export type Credential = CertificateCredential | TokenCredential;

export interface TokenCredential {
  kind: 'token';
  token: string;
  /** Where it came from, for messages (`$BEARER_TOKEN`, `/tmp/bt_u1000`). */
  source: string;
  /** Its expiry and subject, read from it if it is a JWT (unverified: for messages only). */
  notAfter: Date | null;
  subject: string | null;
}

export interface CertificateCredential {
  kind: 'certificate';
  /** PEM: the certificate chain, leaf first (a proxy file holds all of it and the key). */
  cert: string;
  key: string;
  /** Where it came from, for messages. */
  source: string;
  /** Ask for the key's passphrase (an encrypted user key). */
  encrypted: boolean;
  notAfter: Date | null;
  subject: string | null;
}

/**
 * A bearer token as WLCG Bearer Token Discovery finds one: `--token`, then `$BEARER_TOKEN`, then the file
 * `$BEARER_TOKEN_FILE` names, then `$XDG_RUNTIME_DIR/bt_u<uid>`, then `/tmp/bt_u<uid>`; its whitespace
 * trimmed. Null if there is none.
 */
export function findToken(
  flags: { token?: string | undefined },
  env: NodeJS.ProcessEnv = process.env,
  tmpDir = '/tmp',
): TokenCredential | null {
  const uid = process.getuid?.() ?? '';
  const made = (token: string, source: string): TokenCredential => {
    const value = token.trim();
    if (value === '' || /\s/.test(value))
      throw new ClientError('credentials', `${source} holds no bearer token (or more than one word)`);
    return { kind: 'token', token: value, source, ...jwtFacts(value) };
  };
  if (flags.token !== undefined) return made(flags.token, '--token');
  if (env.BEARER_TOKEN) return made(env.BEARER_TOKEN, '$BEARER_TOKEN');
  if (env.BEARER_TOKEN_FILE) {
    const text = readFileSafe(env.BEARER_TOKEN_FILE);
    if (text === undefined)
      throw new ClientError(
        'credentials',
        `$BEARER_TOKEN_FILE names ${env.BEARER_TOKEN_FILE}, which cannot be read (or unset it)`,
      );
    return made(text, env.BEARER_TOKEN_FILE);
  }
  const files = [
    env.XDG_RUNTIME_DIR ? join(env.XDG_RUNTIME_DIR, `bt_u${uid}`) : null,
    join(tmpDir, `bt_u${uid}`),
  ];
  for (const file of files) {
    if (!file || !existsSync(file)) continue;
    const text = readFileSafe(file);
    if (text !== undefined) return made(text, file);
  }
  return null;
}

/** A JWT's expiry and subject, unverified (the server verifies it): for `about` and messages. */
function jwtFacts(token: string): { notAfter: Date | null; subject: string | null } {
  try {
    const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8'));
    return {
      notAfter: typeof claims.exp === 'number' ? new Date(claims.exp * 1000) : null,
      subject: typeof claims.sub === 'string' ? `${claims.sub} (${String(claims.iss ?? '?')})` : null,
    };
  } catch {
    return { notAfter: null, subject: null };
  }
}

/**
 * The credential to present. What is written on the command line wins: `--token`; `--proxy`; `--cert` (with
 * `--key`, or its own key). Then, in the order `[User] prefer` says (a certificate first by default), a bearer
 * token found by WLCG Bearer Token Discovery (`findToken`), or a certificate: the configured proxy,
 * `$X509_USER_PROXY`, `/tmp/x509up_u<uid>`; else the configured user certificate, `~/.globus/usercert.pem`
 * and `userkey.pem`.
 */
export function findCredential(
  settings: Settings,
  flags: {
    proxy?: string | undefined;
    cert?: string | undefined;
    key?: string | undefined;
    token?: string | undefined;
  },
  env: NodeJS.ProcessEnv = process.env,
): Credential {
  if (flags.token !== undefined) return findToken(flags, env) as TokenCredential;
  if (flags.proxy || flags.cert) return findCertificate(settings, flags, env);
  if (settings.prefer === 'token') return findToken({}, env) ?? findCertificate(settings, flags, env);
  try {
    return findCertificate(settings, flags, env);
  } catch (error) {
    const token =
      error instanceof ClientError && /^No credentials/.test(error.message) ? findToken({}, env) : null;
    if (token) return token;
    throw error;
  }
}

/** A certificate or proxy, as `findCredential` looks for one. */
function findCertificate(
  settings: Settings,
  flags: { proxy?: string | undefined; cert?: string | undefined; key?: string | undefined },
  env: NodeJS.ProcessEnv,
): CertificateCredential {
  const explicitProxy = flags.proxy ?? (flags.cert ? undefined : settings.proxy);
  if (explicitProxy) return proxyCredential(expandHome(explicitProxy, env));
  if (!flags.cert) {
    if (env.X509_USER_PROXY && !existsSync(env.X509_USER_PROXY))
      throw new ClientError(
        'credentials',
        `$X509_USER_PROXY names ${env.X509_USER_PROXY}, which does not exist: make a proxy with grid-proxy-init (or unset it)`,
      );
    const candidates = [env.X509_USER_PROXY, `/tmp/x509up_u${process.getuid?.() ?? ''}`].filter(
      (path): path is string => Boolean(path),
    );
    for (const path of candidates) if (existsSync(path)) return proxyCredential(path);
  }
  return userCredential(settings, flags, env);
}

const PRIVATE_KEY =
  /-----BEGIN (?:RSA |EC |ENCRYPTED )?PRIVATE KEY-----[\s\S]+?-----END (?:RSA |EC |ENCRYPTED )?PRIVATE KEY-----/;

/**
 * A user certificate and its key: `--cert`/`--key`, else `user_cert`/`user_key`, else the grid defaults. A
 * certificate file that holds its key too (as `repoman-server issue-certificate` writes `user.pem`) needs no
 * key file; one given without a key that holds none is refused by name, not taken with an unrelated default key.
 */
function userCredential(
  settings: Settings,
  flags: { cert?: string | undefined; key?: string | undefined },
  env: NodeJS.ProcessEnv,
): CertificateCredential {
  const certFrom = flags.cert ? '--cert' : settings.certificate ? 'user_cert' : undefined;
  const cert = expandHome(flags.cert ?? settings.certificate ?? '~/.globus/usercert.pem', env);
  const keyFrom = flags.key ? '--key' : !flags.cert && settings.key ? 'user_key' : undefined;
  const keyGiven = flags.key ?? (flags.cert ? undefined : settings.key);
  if (!existsSync(cert)) {
    if (certFrom)
      throw new ClientError('credentials', `The certificate ${cert} (${certFrom}) does not exist`);
    throw new ClientError(
      'credentials',
      `No credentials: no proxy (--proxy, proxy_cert in the configuration, $X509_USER_PROXY or /tmp/x509up_u${process.getuid?.() ?? '<uid>'}), no user certificate (--cert, user_cert, or ${cert}) and no bearer token (--token, $BEARER_TOKEN, $BEARER_TOKEN_FILE, /tmp/bt_u${process.getuid?.() ?? '<uid>'}). Make a proxy with grid-proxy-init.`,
    );
  }
  const certPem = readFileSafe(cert);
  if (certPem === undefined)
    throw new ClientError(
      'credentials',
      `Cannot read the certificate ${cert}${certFrom ? ` (${certFrom})` : ''}`,
    );
  if (keyGiven === undefined) {
    const inside = PRIVATE_KEY.exec(certPem)?.[0];
    if (inside) return describe(certPem, inside, cert);
  }
  const key = expandHome(keyGiven ?? '~/.globus/userkey.pem', env);
  if (keyGiven === undefined && certFrom === '--cert')
    throw new ClientError(
      'credentials',
      `${cert} (--cert) holds no private key: give its key with --key FILE`,
    );
  const keyPem = readFileSafe(key);
  if (keyPem === undefined)
    throw new ClientError(
      'credentials',
      existsSync(key)
        ? `Cannot read the key ${key}${keyFrom ? ` (${keyFrom})` : ''}`
        : keyFrom
          ? `The key ${key} (${keyFrom}) does not exist`
          : `${cert} holds no private key, and there is no ${key}: give the key with --key FILE (or user_key)`,
    );
  return describe(certPem, keyPem, `${cert} and ${key}`);
}

function proxyCredential(path: string): CertificateCredential {
  const pem = readFileSafe(path);
  if (pem === undefined) {
    throw new ClientError(
      'credentials',
      `Cannot read the proxy ${path}: make one with grid-proxy-init (or give --proxy FILE)`,
    );
  }
  const key = /-----BEGIN (?:RSA |EC )?PRIVATE KEY-----[\s\S]+?-----END (?:RSA |EC )?PRIVATE KEY-----/.exec(
    pem,
  )?.[0];
  if (!key) throw new ClientError('credentials', `${path} holds no private key: is it a proxy file?`);
  const credential = describe(pem, key, `the proxy ${path}`);
  if (credential.notAfter && credential.notAfter.getTime() < Date.now()) {
    throw new ClientError(
      'credentials',
      `The proxy ${path} expired on ${credential.notAfter.toLocaleString()}: make a new one with grid-proxy-init`,
    );
  }
  return credential;
}

function describe(certPem: string, keyPem: string, source: string): CertificateCredential {
  const certs = certPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (certs.length === 0) throw new ClientError('credentials', `${source}: no certificate found`);
  let notAfter: Date | null = null;
  let subject: string | null = null;
  try {
    const leaf = new X509(certs[0] as string);
    notAfter = new Date(leaf.validTo);
    subject = leaf.subject.split('\n').join('/');
  } catch {
    // an unusual certificate Node cannot parse: the server will say what it thinks of it
  }
  return {
    kind: 'certificate',
    cert: certs.join('\n'),
    key: keyPem,
    source,
    encrypted: /ENCRYPTED/.test(keyPem),
    notAfter,
    subject: subject ? `/${subject}` : null,
  };
}

/** The CA certificates that vouch for the server: `--ca`, `$X509_CERT_DIR`, the configuration, the grid default. */
export function findCaCertificates(
  settings: Settings,
  flag: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): { pems: string[]; source: string } {
  const candidates = [flag, env.X509_CERT_DIR, settings.caPath, '/etc/grid-security/certificates'].filter(
    (path): path is string => Boolean(path),
  );
  for (const raw of candidates) {
    const path = expandHome(raw, env);
    if (!existsSync(path)) {
      if (raw === flag || raw === settings.caPath)
        throw new ClientError('config', `The CA directory or file ${path} does not exist`);
      continue;
    }
    const files = statSync(path).isDirectory()
      ? readdirSync(path)
          .filter((name) => /\.(\d+|pem|crt)$/.test(name))
          .map((name) => join(path, name))
      : [path];
    const pems = files.flatMap(
      (file) =>
        readFileSafe(file)?.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [],
    );
    if (pems.length === 0) throw new ClientError('config', `No CA certificates in ${path}`);
    return { pems, source: path };
  }
  throw new ClientError(
    'config',
    'No CA certificates to check the server with: set ca_dir in the configuration, $X509_CERT_DIR, or --ca',
  );
}
