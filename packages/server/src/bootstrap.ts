/**
 * First-start set-up. With no configuration, Repoman makes everything a single machine needs under the data
 * directory: a development CA, a certificate for localhost, and a first admin with a certificate. On every
 * start it creates the default groups and the configured admins. Later starts reuse what exists.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ADMINS_GROUP, DEFAULT_GROUP_PERMISSIONS, USERS_GROUP } from '@repoman/core';
import type { AdminSpec, ServerConfig } from './config.ts';
import type { Db } from './db/connect.ts';
import * as groups from './db/groups-dal.ts';
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
  /** The development CA, when Repoman made one (it signs the development admin's certificate). */
  devCa: { cert: string; key: string } | null;
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

/** Creates (once) whatever of the development PKI the configuration does not provide. */
export async function ensureDevelopmentPki(config: ServerConfig): Promise<PkiPaths> {
  const configuredHost = config.https.cert !== undefined || config.https.key !== undefined;
  if (configuredHost && (config.https.cert === undefined || config.https.key === undefined)) {
    throw new Error('https.cert and https.key must be set together');
  }
  const needCa = !configuredHost || config.trust.caDir === undefined;
  const caDir = join(config.dataDir, 'ca');
  const devCa = needCa ? { cert: join(caDir, 'ca.pem'), key: join(caDir, 'ca.key') } : null;
  const trustDir = config.trust.caDir ?? join(config.dataDir, 'certificates');

  let ca: Credential | null = null;
  if (devCa) {
    if (existsSync(devCa.cert) && existsSync(devCa.key)) {
      ca = loadCredential(readFileSync(devCa.cert, 'utf8'), readFileSync(devCa.key, 'utf8'));
    } else {
      mkdirSync(caDir, { recursive: true, mode: 0o700 });
      const suffix = Math.random().toString(16).slice(2, 8);
      ca = createCA(`/O=Repoman Development/CN=Repoman Development CA ${suffix}`, { keyKind: 'rsa' });
      writeFileSync(devCa.cert, certPemOf(ca), { mode: 0o644 });
      writePrivate(devCa.key, keyPem(ca));
    }
    if (config.trust.caDir === undefined) {
      // The CA in OpenSSL's hashed form, with a signing policy, as grid tools expect in X509_CERT_DIR.
      mkdirSync(trustDir, { recursive: true });
      // Both hash forms: grid-proxy-init -verify looks the CA and its policy up under the old one.
      const subject = ca.cert.subject.oneline;
      for (const hash of new Set([subjectHash(ca.cert.subject.der), subjectHashOld(ca.cert.subject.der)])) {
        const hashed = join(trustDir, `${hash}.0`);
        if (existsSync(hashed)) continue;
        writeFileSync(hashed, certPemOf(ca));
        writeFileSync(
          join(trustDir, `${hash}.signing_policy`),
          `access_id_CA X509 '${subject}'\npos_rights globus CA:sign\ncond_subjects globus '"*"'\n`,
        );
      }
    }
  }

  if (configuredHost) {
    return {
      hostCert: config.https.cert as string,
      hostKey: config.https.key as string,
      caDir: trustDir,
      devCa,
    };
  }
  const hostDir = join(config.dataDir, 'host');
  const hostCert = join(hostDir, 'hostcert.pem');
  const hostKey = join(hostDir, 'hostkey.pem');
  if (!existsSync(hostCert) || !existsSync(hostKey)) {
    mkdirSync(hostDir, { recursive: true, mode: 0o700 });
    const names = [...new Set(['localhost', hostname(), '127.0.0.1', '::1'])];
    const host = createServerCertificate(ca as Credential, names);
    writeFileSync(hostCert, certPemOf(host), { mode: 0o644 });
    writePrivate(hostKey, keyPem(host));
  }
  return { hostCert, hostKey, caDir: trustDir, devCa };
}

async function ensureDefaultGroups(db: Db) {
  for (const name of [ADMINS_GROUP, USERS_GROUP]) {
    if (await groups.findGroupByName(db, name)) continue;
    const now = nowIso();
    await db.transaction().execute(async (trx) => {
      const group = await groups.insertGroup(trx, { name, protected: true, created: now, modified: now });
      for (const permission of DEFAULT_GROUP_PERMISSIONS[name] ?? [])
        await groups.addPermission(trx, group.id, permission);
    });
  }
}

/** Makes sure a configured admin exists and is in `admins` (and `users`): the configuration is authoritative. */
async function ensureAdmin(db: Db, admin: AdminSpec) {
  const dn = normalizeDn(admin.dn);
  const [adminsGroup, usersGroup] = await Promise.all([
    groups.findGroupByName(db, ADMINS_GROUP),
    groups.findGroupByName(db, USERS_GROUP),
  ]);
  await db.transaction().execute(async (trx) => {
    let user = await users.findUserByName(trx, admin.name);
    if (!user) {
      const holder = await users.findUserByDn(trx, dn);
      if (holder)
        throw new Error(`Admin ${admin.name}: the DN ${dn} already belongs to user '${holder.name}'`);
      const now = nowIso();
      user = await users.insertUser(trx, {
        name: admin.name,
        dn,
        full_name: null,
        email: null,
        suspended: false,
        created: now,
        modified: now,
      });
    } else if (user.dn !== dn) {
      throw new Error(
        `Admin ${admin.name} exists with another DN (${user.dn}); fix the configuration or the user`,
      );
    }
    for (const group of [adminsGroup, usersGroup]) if (group) await groups.addMember(trx, group.id, user.id);
  });
}

/** Default groups, configured admins, and on a zero-configuration start the development admin. */
export async function bootstrapAccounts(
  db: Db,
  config: ServerConfig,
  pki: PkiPaths,
): Promise<DevelopmentAdmin | null> {
  await ensureDefaultGroups(db);
  for (const admin of config.admins) await ensureAdmin(db, admin);
  if (config.admins.length > 0 || !pki.devCa || config.trust.caDir !== undefined) return null;

  const dir = join(config.dataDir, 'admin');
  const files = {
    pem: join(dir, 'admin.pem'),
    cert: join(dir, 'usercert.pem'),
    key: join(dir, 'userkey.pem'),
  };
  const dn = '/O=Repoman Development/CN=Repoman Administrator';
  const existing = await users.findUserByDn(db, dn);
  if (!existsSync(files.pem)) {
    const adminsGroup = await groups.findGroupByName(db, ADMINS_GROUP);
    const members = adminsGroup ? await groups.membersOfGroups(db, [adminsGroup.id]) : new Map();
    if (existing || (adminsGroup && (members.get(adminsGroup.id) ?? []).length > 0)) return null;
    const ca = loadCredential(readFileSync(pki.devCa.cert, 'utf8'), readFileSync(pki.devCa.key, 'utf8'));
    const credential = createUserCertificate(ca, dn, { keyKind: 'rsa' });
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(files.cert, certPemOf(credential), { mode: 0o644 });
    writePrivate(files.key, keyPem(credential));
    writePrivate(files.pem, credentialPem(credential));
  }
  if (!existing) await ensureAdmin(db, { name: 'admin', dn });
  const user = await users.findUserByDn(db, dn);
  if (!user) return null;
  return { name: user.name, dn, ...files, caCert: pki.devCa.cert };
}
