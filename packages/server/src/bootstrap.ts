/**
 * First-start set-up. With no configuration, Repoman makes everything a single machine needs under the data
 * directory: a development CA, a certificate for localhost, and a first admin with a certificate. On every
 * start it creates the default groups and the configured admins. Later starts reuse what exists.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { ADMINS_GROUP, DEFAULT_GROUP_PERMISSIONS, USERS_GROUP } from '@repoman/core';
import { parseKey, type SecretKeys } from './clouds/secrets.ts';
import type { AdminSpec, ServerConfig } from './config.ts';
import * as groups from './db/groups-dal.ts';
import type { Db } from './db/schema.ts';
import * as users from './db/users-dal.ts';
import { derToPem } from './pki/certificate.ts';
import {
  type Credential,
  createCA,
  createServerCertificate,
  createUserCertificate,
  credentialPem,
  keyPem,
  loadCredential,
} from './pki/issue.ts';
import { normalizeDn, subjectHash, subjectHashOld } from './pki/names.ts';
import { nowIso } from './services/common.ts';

export interface PkiPaths {
  hostCert: string;
  hostKey: string;
  /** The trusted-CA directory clients' certificates are checked against. */
  caDir: string;
  /** The development CA, when Repoman made one (it signs the host certificate and the development admin's). */
  devCa: { cert: string; key: string } | null;
  /** Whether clients are checked against the development CA (nothing configured): only then is a dev admin made. */
  devCaTrusted: boolean;
  /** The certificate and key the server signs image lists with (configured, or the development CA's), or null. */
  listSigner: { cert: string; key: string } | null;
}

export interface DevelopmentAdmin {
  name: string;
  dn: string;
  /** Certificate and key in one PEM file, the way grid proxies are stored (curl --cert FILE). */
  pem: string;
  cert: string;
  key: string;
  caCert: string;
}

const PRIVATE = 0o600;

const certPemOf = (credential: Credential) => derToPem(credential.cert.der);

function writePrivate(path: string, content: string) {
  writeFileSync(path, content, { mode: PRIVATE, flag: 'wx' });
}

/** Certificates are public: readable by all, whatever the server's umask (it keeps everything else private). */
function writePublic(path: string, content: string) {
  writeFileSync(path, content);
  chmodSync(path, 0o644);
}

/**
 * The key cloud credentials' secrets are sealed with: `clouds.secret_key` (and the previous ones, for a
 * rotation), or one made at the first start in the data directory (one server; several sharing a database
 * must be given the same key).
 */
export function cloudKeysOf(config: ServerConfig, create: boolean): SecretKeys {
  const previous = config.clouds.previousSecretKeys.map((key, i) =>
    parseKey(key, `clouds.previous_secret_keys[${i}]`),
  );
  if (config.clouds.secretKey !== undefined)
    return { current: parseKey(config.clouds.secretKey, 'clouds.secret_key'), previous };
  const file = join(config.dataDir, 'secrets', 'clouds.key');
  if (!existsSync(file)) {
    if (!create) throw new Error(`${file} is missing: the primary makes it (or set clouds.secret_key)`);
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    try {
      writePrivate(file, `${randomBytes(32).toString('base64')}\n`);
    } catch (error) {
      // Another server starting at the same moment made it first.
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
  return { current: parseKey(readFileSync(file, 'utf8'), file), previous };
}

/** What the development CA may certify: every DN it issues starts with this. */
export const DEV_NAMESPACE = '/O=Repoman Development';

/**
 * Where the host certificate, the trusted CAs and the development CA are: the configured ones, or those
 * ensureDevelopmentPki makes under the data directory. Workers (cluster.ts) read what their primary made.
 */
export function pkiPathsOf(config: ServerConfig): PkiPaths {
  const configuredHost = config.https.cert !== undefined || config.https.key !== undefined;
  if (configuredHost && (config.https.cert === undefined || config.https.key === undefined)) {
    throw new Error('https.cert and https.key must be set together');
  }
  if (configuredHost && config.trust.caDir === undefined) {
    // Never fall back to trusting a development CA on a host with a real certificate.
    throw new Error('https.cert is set but trust.ca_dir is not: set trust.ca_dir to the CAs of your users');
  }
  const devCaTrusted = config.trust.caDir === undefined;
  const caDir = join(config.dataDir, 'ca');
  const devCa = configuredHost ? null : { cert: join(caDir, 'ca.pem'), key: join(caDir, 'ca.key') };
  const trustDir = config.trust.caDir ?? join(config.dataDir, 'certificates');
  const hostDir = join(config.dataDir, 'host');
  const { signingCert, signingKey } = config.imageLists;
  const listSigner =
    signingCert !== undefined && signingKey !== undefined
      ? { cert: signingCert, key: signingKey }
      : devCa
        ? { cert: join(hostDir, 'listsigner.pem'), key: join(hostDir, 'listsigner.key') }
        : null;
  return {
    hostCert: config.https.cert ?? join(hostDir, 'hostcert.pem'),
    hostKey: config.https.key ?? join(hostDir, 'hostkey.pem'),
    caDir: trustDir,
    devCa,
    devCaTrusted,
    listSigner,
  };
}

/** Creates (once) whatever of the development PKI the configuration does not provide. */
export async function ensureDevelopmentPki(config: ServerConfig): Promise<PkiPaths> {
  const paths = pkiPathsOf(config);
  const { devCa, devCaTrusted, caDir: trustDir } = paths;
  const caDir = join(config.dataDir, 'ca');

  let ca: Credential | null = null;
  if (devCa) {
    if (existsSync(devCa.cert) && existsSync(devCa.key)) {
      ca = loadCredential(readFileSync(devCa.cert, 'utf8'), readFileSync(devCa.key, 'utf8'));
    } else {
      mkdirSync(caDir, { recursive: true, mode: 0o700 });
      const suffix = Math.random().toString(16).slice(2, 8);
      ca = createCA(`/O=Repoman Development/CN=Repoman Development CA ${suffix}`, { keyKind: 'rsa' });
      writePublic(devCa.cert, certPemOf(ca));
      writePrivate(devCa.key, keyPem(ca));
    }
    if (devCaTrusted) {
      // The CA in OpenSSL's hashed form, with a signing policy, as grid tools expect in X509_CERT_DIR.
      mkdirSync(trustDir, { recursive: true });
      chmodSync(trustDir, 0o755); // usable as X509_CERT_DIR by grid tools
      // Both hash forms: grid-proxy-init -verify looks the CA and its policy up under the old one. The
      // namespace files say the development CA vouches for /O=Repoman Development/... only (trust.namespaces);
      // a data directory made before they existed gets them at its next start.
      const subject = ca.cert.subject.oneline;
      for (const hash of new Set([subjectHash(ca.cert.subject.der), subjectHashOld(ca.cert.subject.der)])) {
        const hashed = join(trustDir, `${hash}.0`);
        if (!existsSync(hashed)) writePublic(hashed, certPemOf(ca));
        const policy = join(trustDir, `${hash}.signing_policy`);
        if (!existsSync(policy)) {
          writePublic(
            policy,
            `access_id_CA X509 '${subject}'\npos_rights globus CA:sign\ncond_subjects globus '"${DEV_NAMESPACE}/*"'\n`,
          );
        }
        const namespaces = join(trustDir, `${hash}.namespaces`);
        if (!existsSync(namespaces)) {
          writePublic(
            namespaces,
            `# NAMESPACES-VERSION: 1.0\nTO Issuer "${subject}" \\\n  PERMIT Subject "${DEV_NAMESPACE}/.*"\n`,
          );
        }
      }
    }
  }

  if (!devCa) return paths; // the host certificate is configured
  const { hostCert, hostKey } = paths;
  if (!existsSync(hostCert) || !existsSync(hostKey)) {
    mkdirSync(dirname(hostCert), { recursive: true, mode: 0o700 });
    const names = [...new Set(['localhost', hostname(), '127.0.0.1', '::1'])];
    const host = createServerCertificate(ca as Credential, names);
    writePublic(hostCert, certPemOf(host));
    writePrivate(hostKey, keyPem(host));
  }
  // The development CA also certifies the server as a signer of image lists (S/MIME signing: emailProtection).
  const signer = paths.listSigner;
  if (
    signer &&
    config.imageLists.signingCert === undefined &&
    (!existsSync(signer.cert) || !existsSync(signer.key))
  ) {
    mkdirSync(dirname(signer.cert), { recursive: true, mode: 0o700 });
    const made = createUserCertificate(
      ca as Credential,
      `${DEV_NAMESPACE}/CN=Repoman Image Lists ${hostname()}`,
      {
        keyKind: 'rsa',
        notAfter: new Date(Date.now() + 825 * 86_400_000),
        issue: { extKeyUsage: ['emailProtection'] },
      },
    );
    writePublic(signer.cert, certPemOf(made));
    writePrivate(signer.key, keyPem(made));
  }
  return paths;
}

async function ensureDefaultGroups(db: Db) {
  for (const name of [ADMINS_GROUP, USERS_GROUP]) {
    const now = nowIso();
    await db.transaction().execute(async (trx) => {
      const group = await groups.insertGroupIfMissing(trx, {
        name,
        protected: true,
        created: now,
        modified: now,
      });
      if (!group) return; // it exists already (made by an earlier start, or another server now)
      for (const permission of DEFAULT_GROUP_PERMISSIONS[name] ?? [])
        await groups.addPermission(trx, group.id, permission);
    });
  }
}

/**
 * Makes sure a configured admin exists and is in `admins` (and `users`): the configuration is authoritative.
 * The user is found by DN first, so renaming an admin through the API does not stop the next start.
 */
async function ensureAdmin(db: Db, admin: AdminSpec) {
  const dn = normalizeDn(admin.dn);
  const [adminsGroup, usersGroup] = await Promise.all([
    groups.findGroupByName(db, ADMINS_GROUP),
    groups.findGroupByName(db, USERS_GROUP),
  ]);
  await db.transaction().execute(async (trx) => {
    let user = await users.findUserByDn(trx, dn);
    if (!user) {
      const namesake = await users.findUserByName(trx, admin.name);
      if (namesake && namesake.dn !== dn) {
        throw new Error(
          `Admin ${admin.name}: a user of that name exists with another DN (${namesake.dn}); fix the configuration or the user`,
        );
      }
      // Another server starting at the same moment may have made it between the two reads.
      if (namesake) user = namesake;
      else {
        const now = nowIso();
        // Several servers may start at once: whoever inserts second finds the first one's row.
        await users.insertUserIfMissing(trx, {
          name: admin.name,
          dn,
          full_name: null,
          email: null,
          suspended: false,
          created: now,
          modified: now,
        });
        user = await users.findUserByDn(trx, dn);
        if (!user) throw new Error(`Admin ${admin.name}: the name is taken by a user with another DN`);
      }
    }
    for (const group of [adminsGroup, usersGroup]) if (group) await groups.addMember(trx, group.id, user.id);
  });
}

const DEV_ADMIN_DN = '/O=Repoman Development/CN=Repoman Administrator';

/**
 * Default groups, configured admins, and on a zero-configuration start the development admin: made (or its
 * existing credential reused) whenever `admins` is empty, so an admin who deletes it keeps it deleted.
 */
export async function bootstrapAccounts(
  db: Db,
  config: ServerConfig,
  pki: PkiPaths,
): Promise<DevelopmentAdmin | null> {
  await ensureDefaultGroups(db);
  for (const admin of config.admins) await ensureAdmin(db, admin);
  if (config.admins.length > 0 || !pki.devCa || !pki.devCaTrusted) return null;

  const dir = join(config.dataDir, 'admin');
  const files = {
    pem: join(dir, 'admin.pem'),
    cert: join(dir, 'usercert.pem'),
    key: join(dir, 'userkey.pem'),
  };
  const adminsGroup = await groups.findGroupByName(db, ADMINS_GROUP);
  const members = adminsGroup ? await groups.membersOfGroups(db, [adminsGroup.id]) : new Map();
  if ((members.get(adminsGroup?.id) ?? []).length === 0) {
    if (!existsSync(files.pem)) {
      const ca = loadCredential(readFileSync(pki.devCa.cert, 'utf8'), readFileSync(pki.devCa.key, 'utf8'));
      const credential = createUserCertificate(ca, DEV_ADMIN_DN, { keyKind: 'rsa' });
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      writePublic(files.cert, certPemOf(credential));
      writePrivate(files.key, keyPem(credential));
      writePrivate(files.pem, credentialPem(credential));
    }
    await ensureAdmin(db, {
      name: (await users.findUserByName(db, 'admin')) ? 'dev-admin' : 'admin',
      dn: DEV_ADMIN_DN,
    });
  }
  const user = await users.findUserByDn(db, DEV_ADMIN_DN);
  if (!user || !existsSync(files.pem)) return null;
  return { name: user.name, dn: DEV_ADMIN_DN, ...files, caCert: pki.devCa.cert };
}
