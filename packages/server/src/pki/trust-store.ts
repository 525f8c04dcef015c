// Loading CAs and CRLs from directories laid out like /etc/grid-security/certificates (IGTF bundles, fetch-crl).
import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type ParsedCertificate, parseCertificate, parseCrl, pemToDers } from './certificate.ts';
import { subjectHash, subjectHashOld } from './names.ts';
import {
  type CaNamespace,
  type PolicyEntry,
  parseNamespacesFile,
  parseSigningPolicyFile,
} from './namespaces.ts';

export type TrustDirectory = {
  /** DER of each distinct CA certificate found */
  certificates: Buffer[];
  /** each CA's namespace rules, by the canonical name key of the CA (CAs without policy files are absent) */
  namespaces: Map<string, CaNamespace>;
  /** files that were skipped or broken, one sentence each */
  warnings: string[];
};

export type CrlDirectory = {
  /** DER of each distinct CRL found (signatures are checked by the verifier) */
  crls: Buffer[];
  warnings: string[];
};

// companions of `<hash>.0` that hold no certificates
const NOT_CERTIFICATES = /\.(signing_policy|namespaces|info|crl_url|r\d|crl|lsc|txt|md)$/i;
const POLICY_FILES = /^(.+)\.(signing_policy|namespaces)$/;
const CERTIFICATE_FILES = /\.(pem|crt|cer|der|\d)$/i;
const CRL_FILES = /\.(r\d|crl|pem)$/i;

/** Regular files (symlinks followed) in `dir`, sorted by name, dotfiles left out. */
async function regularFiles(dir: string): Promise<string[]> {
  const names = (await readdir(dir)).filter((name) => !name.startsWith('.')).sort();
  const out: string[] = [];
  for (const name of names) {
    try {
      if ((await stat(join(dir, name))).isFile()) out.push(name);
    } catch {
      // a dangling symlink is not a file
    }
  }
  return out;
}

/**
 * A file's `label` blocks if it is PEM, else its whole content as one DER blob; null (with a warning) if it
 * cannot be read or its PEM is broken.
 */
async function readDerFile(
  dir: string,
  name: string,
  label: string,
  warnings: string[],
): Promise<{ text: string; ders: Buffer[] } | null> {
  let content: Buffer;
  try {
    content = await readFile(join(dir, name));
  } catch (err) {
    warnings.push(`${name}: cannot be read (${(err as Error).message})`);
    return null;
  }
  const text = content.toString('latin1');
  try {
    return { text, ders: text.includes('-----BEGIN ') ? pemToDers(text, label) : [content] };
  } catch (err) {
    warnings.push(`${name}: ${(err as Error).message}`);
    return null;
  }
}

const fingerprint = (der: Buffer) => createHash('sha256').update(der).digest('hex');

/**
 * Every CA certificate in a `/etc/grid-security/certificates`-style directory: PEM (one or more CERTIFICATE blocks)
 * or DER, in `*.pem`, `*.crt`, hashed `<hash>.0`… files. Broken files become warnings, never exceptions.
 */
export async function loadTrustDirectory(dir: string): Promise<TrustDirectory> {
  const certificates: Buffer[] = [];
  const warnings: string[] = [];
  const seen = new Set<string>();
  /** the names a CA's policy files may have: its subject hashes and the base names of the files it came from */
  const basesOf = new Map<string, { cert: ParsedCertificate; bases: Set<string> }>();
  const files = await regularFiles(dir);
  for (const name of files) {
    if (NOT_CERTIFICATES.test(name)) continue;
    const expected = CERTIFICATE_FILES.test(name);
    const file = await readDerFile(dir, name, 'CERTIFICATE', warnings);
    if (!file) continue;
    const { text, ders } = file;
    if (ders.length === 0) {
      // a PEM file of CRLs or keys is not a broken CA file
      if (expected && !text.includes('-----BEGIN X509 CRL-----'))
        warnings.push(`${name}: no certificate found`);
      continue;
    }
    ders.forEach((der, i) => {
      const where = ders.length > 1 ? `${name} (certificate ${i + 1})` : name;
      let cert: ReturnType<typeof parseCertificate>;
      try {
        cert = parseCertificate(der);
      } catch (err) {
        // unknown files that are not certificates are ignored quietly; expected ones are reported
        if (expected || ders.length > 1 || text.includes('-----BEGIN ')) {
          warnings.push(`${where}: not a valid certificate (${(err as Error).message})`);
        }
        return;
      }
      if (cert.basicConstraints ? !cert.basicConstraints.ca : !cert.selfIssued) {
        warnings.push(`${where}: ${cert.subject.oneline} is not a CA certificate, skipped`);
        return;
      }
      const id = fingerprint(cert.der);
      const base = name.replace(/\.[^.]+$/, '');
      const known = basesOf.get(id);
      if (known) known.bases.add(base);
      else
        basesOf.set(id, {
          cert,
          bases: new Set([base, subjectHash(cert.subject.der), subjectHashOld(cert.subject.der)]),
        });
      if (seen.has(id)) return; // `<hash>.0` is often a link to the `.pem`
      seen.add(id);
      certificates.push(cert.der);
    });
  }
  const namespaces = await loadNamespaces(dir, files, [...basesOf.values()], warnings);
  return { certificates, namespaces, warnings };
}

/**
 * The namespace rules of each CA, from the `.namespaces` and `.signing_policy` files named after it (its subject
 * hash, new or old, or its own file's base name). Only the entries that name the CA itself (or SELF) count.
 */
async function loadNamespaces(
  dir: string,
  files: string[],
  cas: { cert: ParsedCertificate; bases: Set<string> }[],
  warnings: string[],
): Promise<Map<string, CaNamespace>> {
  type Parsed = {
    name: string;
    kind: 'namespaces' | 'signing_policy';
    entries?: PolicyEntry[];
    error?: string;
  };
  const parsed: Parsed[] = [];
  for (const name of files) {
    const match = POLICY_FILES.exec(name);
    if (!match) continue;
    const kind = match[2] as Parsed['kind'];
    try {
      const text = await readFile(join(dir, name), 'utf8');
      parsed.push({
        name,
        kind,
        entries: kind === 'namespaces' ? parseNamespacesFile(text, name) : parseSigningPolicyFile(text, name),
      });
    } catch (err) {
      warnings.push(`${name}: ${(err as Error).message}; its CA vouches for nobody until it is fixed`);
      parsed.push({ name, kind, error: (err as Error).message });
    }
  }
  const byCa = new Map<string, CaNamespace>();
  const used = new Set<string>();
  for (const { cert, bases } of cas) {
    const key = cert.subject.key;
    for (const kind of ['namespaces', 'signing_policy'] as const) {
      const mine = parsed.filter((p) => p.kind === kind && bases.has(p.name.replace(POLICY_FILES, '$1')));
      if (mine.length === 0) continue;
      for (const p of mine) used.add(p.name);
      const broken = mine.find((p) => p.error);
      const rules = mine
        .flatMap((p) => p.entries ?? [])
        .filter((e) => e.issuer === 'SELF' || e.issuer === key)
        .map((e) => e.rule);
      const existing = byCa.get(key);
      // .namespaces wins over .signing_policy; same-named CAs (a key rollover) share their rules
      if (existing && existing.kind === 'namespaces' && kind === 'signing_policy') continue;
      const merged: CaNamespace = {
        kind,
        rules: existing?.kind === kind ? [...existing.rules, ...rules] : rules,
      };
      const brokenWhy = broken?.error ?? (existing?.kind === kind ? existing.broken : undefined);
      if (brokenWhy) merged.broken = brokenWhy;
      if (!brokenWhy && rules.length === 0 && !(existing?.kind === kind && existing.rules.length)) {
        warnings.push(
          `${mine.map((p) => p.name).join(', ')}: no rule names ${cert.subject.oneline}; it vouches for nobody`,
        );
      }
      byCa.set(key, merged);
    }
  }
  for (const p of parsed) {
    if (!used.has(p.name))
      warnings.push(`${p.name}: belongs to no CA certificate in this directory, ignored`);
  }
  return byCa;
}

/** Every CRL in a directory: `<hash>.r0`…`.r9`, `*.crl`, `*.pem` holding X509 CRL blocks; PEM or DER. */
export async function loadCrlDirectory(dir: string): Promise<CrlDirectory> {
  const crls: Buffer[] = [];
  const warnings: string[] = [];
  const seen = new Set<string>();
  for (const name of await regularFiles(dir)) {
    if (!CRL_FILES.test(name)) continue;
    const isPemName = /\.pem$/i.test(name);
    const file = await readDerFile(dir, name, 'X509 CRL', warnings);
    if (!file) continue;
    const { text, ders } = file;
    // CA certificates in `*.pem` share the directory with CRLs: only report .r0/.crl files without a CRL
    if (ders.length === 0) {
      if (!isPemName) warnings.push(`${name}: no CRL found`);
      continue;
    }
    ders.forEach((der, i) => {
      try {
        parseCrl(der);
      } catch (err) {
        if (!isPemName || text.includes('-----BEGIN X509 CRL-----')) {
          warnings.push(
            `${ders.length > 1 ? `${name} (CRL ${i + 1})` : name}: not a valid CRL (${(err as Error).message})`,
          );
        }
        return;
      }
      const id = fingerprint(der);
      if (seen.has(id)) return;
      seen.add(id);
      crls.push(Buffer.from(der));
    });
  }
  return { crls, warnings };
}
