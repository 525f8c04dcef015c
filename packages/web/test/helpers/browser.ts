/**
 * Debian's Chromium, headless, driven by playwright-core, for browser tests of the web interface.
 *
 * The browser trusts the test CA and logs in with a real TLS client certificate, as a user's browser does:
 * - a temporary HOME holds an NSS database ($HOME/.pki/nssdb, where Chromium on Linux keeps its certificates)
 *   in which the CA is trusted for servers (certutil -t C,,) and the user's certificate and key are imported
 *   from PKCS#12 (pk12util);
 * - the enterprise policy AutoSelectCertificateForUrls, in a file of the session's own under
 *   /etc/chromium/policies/managed/, lets Chromium present that certificate without a prompt.
 * No certificate error is ignored: the server's certificate must verify against the CA in the database.
 *
 * Chromium does not merge the files of that directory: of several files setting AutoSelectCertificateForUrls,
 * the last in lexicographic order wins, in every running Chromium (it reloads the directory when it changes).
 * So that sessions running at once (in this process or others) cannot take each other's certificate selection
 * away, every file lists the same patterns, any port of the loopback hosts (127.0.0.1, localhost, [::1]), and
 * the session's origin besides when it is not a loopback one. Each browser's NSS database holds one user
 * certificate at most, so a pattern matching every port still selects only the session's own certificate.
 *
 * Where no pattern matches (an origin on another host while another session's file wins), a server asking
 * for a certificate leaves Chromium waiting on a certificate prompt no one sees, until the navigation times out.
 *
 * Needs the Debian packages chromium, libnss3-tools (certutil, pk12util) and openssl, and root (or write access
 * to /etc/chromium/policies/managed/) for the policy file.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants, rmSync } from 'node:fs';
import { access, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { type BrowserContext, chromium, type Page } from 'playwright-core';

const run = promisify(execFile);

export const CHROMIUM = '/usr/bin/chromium';
export const POLICY_DIR = '/etc/chromium/policies/managed';
/** The same in every session's policy file: any port of the loopback hosts (see above). */
const LOOPBACK_PATTERNS = ['https://127.0.0.1:*', 'https://localhost:*', 'https://[::1]:*'];

export interface BrowserOptions {
  /** The HTTPS origin the certificate is for, e.g. https://127.0.0.1:43567 (in the policy's patterns). */
  origin: string;
  /** PEM of the test CA that signed the server's certificate: trusted in the NSS database (certutil -A -t C,,). */
  caPem: string;
  /** The user's certificate chain (leaf first) and key, PEM; omitted, the browser has no certificate. */
  credential?: { cert: string; key: string };
  /** Directory for screenshots (test artefacts); created if missing. */
  artefacts: string;
  /** Default timeout of actions and navigations, in milliseconds (10 s unless given). */
  timeout?: number;
}

export interface BrowserSession {
  page: Page;
  context: BrowserContext;
  /** Console errors and uncaught page errors of every page of the session, as they happened. */
  errors: string[];
  /** Saves a full-page screenshot of `page` as `<artefacts>/<NN>-<name>.png` and returns its path. */
  screenshot(name: string): Promise<string>;
  /** Closes the browser and removes the policy file and the temporary HOME; safe to call twice. */
  close(): Promise<void>;
}

const tools: { name: string; pkg: string }[] = [
  { name: 'certutil', pkg: 'libnss3-tools' },
  { name: 'pk12util', pkg: 'libnss3-tools' },
  { name: 'openssl', pkg: 'openssl' },
];

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function onPath(name: string): Promise<boolean> {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    if (dir && (await isExecutable(join(dir, name)))) return true;
  }
  return false;
}

let checked: Promise<void> | undefined;
/** Screenshots taken so far per artefacts directory, by every session of this process: NN runs on across sessions. */
const shotCounts = new Map<string, number>();

/** Rejects, naming the Debian packages to install, when the browser or a tool is missing. */
export function checkBrowserTools(): Promise<void> {
  checked ??= (async () => {
    const missing: string[] = [];
    if (!(await isExecutable(CHROMIUM))) missing.push(`${CHROMIUM} (Debian package chromium)`);
    for (const tool of tools) {
      if (!(await onPath(tool.name))) missing.push(`${tool.name} (Debian package ${tool.pkg})`);
    }
    if (missing.length > 0) {
      const packages = [
        ...new Set(missing.map((m) => /package (\S+)\)/.exec(m)?.[1]).filter((p) => p !== undefined)),
      ];
      throw new Error(
        `browser tests need ${missing.join(', ')}: apt-get install -y ${packages.join(' ')} (npm test's setup step, scripts/test-setup.sh, installs them as root)`,
      );
    }
    // the policy file goes in POLICY_DIR, made here if missing: root's to make, on a fresh machine
    await mkdir(POLICY_DIR, { recursive: true }).catch(() => {});
    try {
      await access(POLICY_DIR, constants.W_OK);
    } catch (error) {
      throw new Error(
        `browser tests write a Chromium policy file in ${POLICY_DIR}, which this user cannot (${(error as Error).message}): run them as root (sudo npm test)`,
      );
    }
  })();
  return checked;
}

async function tool(command: string, args: string[]): Promise<void> {
  try {
    await run(command, args, { timeout: 30_000 });
  } catch (error) {
    const e = error as Error & { stderr?: string; stdout?: string };
    throw new Error(`${command} ${args.join(' ')} failed: ${(e.stderr || e.stdout || e.message).trim()}`);
  }
}

/** Creates the NSS database in `home`, trusts the CA and imports the credential, if any. */
async function makeNssDatabase(home: string, caPem: string, credential?: BrowserOptions['credential']) {
  const pki = join(home, '.pki');
  const db = `sql:${join(pki, 'nssdb')}`;
  await mkdir(join(pki, 'nssdb'), { recursive: true, mode: 0o700 });
  await tool('certutil', ['-N', '-d', db, '--empty-password']);
  const caFile = join(pki, 'ca.pem');
  await writeFile(caFile, caPem);
  await tool('certutil', ['-A', '-d', db, '-n', 'repoman-test-ca', '-t', 'C,,', '-i', caFile]);
  if (credential) {
    const certFile = join(pki, 'user.pem');
    const keyFile = join(pki, 'user.key');
    const p12 = join(pki, 'user.p12');
    await writeFile(certFile, credential.cert);
    await writeFile(keyFile, credential.key, { mode: 0o600 });
    // every certificate of the chain goes in; a throwaway password rather than an empty one, which OpenSSL and
    // NSS have not always encoded alike (both work with Debian 12's, but nothing depends on it)
    const password = randomBytes(12).toString('hex');
    await tool('openssl', [
      'pkcs12',
      '-export',
      '-in',
      certFile,
      '-inkey',
      keyFile,
      '-name',
      'repoman-test-user',
      '-out',
      p12,
      '-passout',
      `pass:${password}`,
    ]);
    await tool('pk12util', ['-i', p12, '-d', db, '-W', password, '-K', '']);
  }
}

export async function openBrowser(options: BrowserOptions): Promise<BrowserSession> {
  await checkBrowserTools();
  const origin = new URL(options.origin);
  if (origin.protocol !== 'https:') throw new Error(`openBrowser: ${options.origin} is not an https origin`);
  const patterns = [...LOOPBACK_PATTERNS];
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(origin.hostname)) patterns.push(origin.origin);

  const home = await mkdtemp(join(tmpdir(), 'repoman-browser-'));
  const policyFile = join(POLICY_DIR, `repoman-test-${process.pid}-${randomBytes(6).toString('hex')}.json`);
  // written whole next to the directory, then renamed into it: a running Chromium never reads half a file
  const partial = join(POLICY_DIR, '..', `.repoman-test-${process.pid}-${randomBytes(6).toString('hex')}`);
  // if the test process ends without close(), still leave nothing behind
  const onExit = () => {
    rmSync(partial, { force: true });
    rmSync(policyFile, { force: true });
    rmSync(home, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  const cleanUp = async () => {
    process.removeListener('exit', onExit);
    await rm(partial, { force: true });
    await rm(policyFile, { force: true });
    await rm(home, { recursive: true, force: true, maxRetries: 3 });
  };

  let context: BrowserContext;
  try {
    await makeNssDatabase(home, options.caPem, options.credential);
    // the policy's value is a list of JSON strings, one per pattern; an empty filter matches any certificate
    const policy = {
      AutoSelectCertificateForUrls: patterns.map((pattern) => JSON.stringify({ pattern, filter: {} })),
    };
    await mkdir(POLICY_DIR, { recursive: true });
    await writeFile(partial, JSON.stringify(policy));
    await rename(partial, policyFile);
    await mkdir(options.artefacts, { recursive: true });

    context = await chromium.launchPersistentContext(join(home, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      env: {
        ...process.env,
        HOME: home,
        XDG_CONFIG_HOME: join(home, '.config'),
        XDG_CACHE_HOME: join(home, '.cache'),
      },
      // playwright already passes --no-sandbox, --no-first-run, --disable-background-networking,
      // --disable-component-update, --disable-sync and --headless
      args: ['--disable-gpu', '--disable-quic'],
      viewport: { width: 1280, height: 800 },
      timeout: 30_000,
    });
  } catch (error) {
    await cleanUp();
    throw error;
  }

  const timeout = options.timeout ?? 10_000;
  context.setDefaultTimeout(timeout);
  context.setDefaultNavigationTimeout(timeout);

  const errors: string[] = [];
  const watch = (page: Page) => {
    page.on('console', (message) => {
      if (message.type() === 'error') errors.push(`console: ${message.text()} (${page.url()})`);
    });
    page.on('pageerror', (error) => errors.push(`page error: ${error.message} (${page.url()})`));
  };
  context.pages().forEach(watch);
  context.on('page', watch);
  const page = context.pages()[0] ?? (await context.newPage());

  const artefacts = resolve(options.artefacts);
  let closed: Promise<void> | undefined;
  return {
    page,
    context,
    errors,
    async screenshot(name) {
      const count = (shotCounts.get(artefacts) ?? 0) + 1;
      shotCounts.set(artefacts, count);
      const safe = name.replace(/[^A-Za-z0-9._-]+/g, '-');
      const path = join(artefacts, `${String(count).padStart(2, '0')}-${safe}.png`);
      await page.screenshot({ path, fullPage: true });
      return path;
    },
    close() {
      closed ??= (async () => {
        try {
          await context.close();
        } finally {
          await cleanUp();
        }
      })();
      return closed;
    },
  };
}
