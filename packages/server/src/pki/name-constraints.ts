/**
 * RFC 5280 4.2.1.10 name constraints, applied whatever the extension's criticality: a CA that limits the names
 * below it is held to it, as `openssl verify` holds it ("permitted subtree violation").
 *
 * Forms checked: directoryName (the subject DN, RDN by RDN, canonically compared as OpenSSL does), rfc822Name
 * (emailAddress attributes of the subject and e-mail subjectAltNames), dNSName, iPAddress and the host of a
 * uniformResourceIdentifier (subjectAltNames). A subtree of any other form, or with a minimum or maximum, is one
 * we cannot decide: a certificate carrying a name of a form the CA constrains that way is refused (fail closed).
 */
import type { NameConstraints, NameSubtree, ParsedCertificate } from './certificate.ts';
import { type Rdn, rdnKey } from './names.ts';

const EMAIL_ATTRIBUTE = 'emailAddress';

function withinDirectory(subject: Rdn[], base: Rdn[]): boolean {
  if (base.length > subject.length) return false;
  return base.every((rdn, i) => rdnKey(rdn) === rdnKey(subject[i] as Rdn));
}

const lower = (s: string) => s.toLowerCase();

/** RFC 5280: `host` all mailboxes on it, `.domain` any host below it, `user@host` that mailbox. */
function withinEmail(address: string, base: string): boolean {
  const at = address.lastIndexOf('@');
  if (at < 0) return false;
  const host = lower(address.slice(at + 1));
  const b = lower(base);
  if (b.includes('@'))
    return (
      address.slice(0, at) === base.slice(0, base.lastIndexOf('@')) &&
      host === lower(base.slice(base.lastIndexOf('@') + 1))
    );
  if (b.startsWith('.')) return host.endsWith(b);
  return host === b;
}

/** `example.com` is itself and every name below it; `.example.com` only the names below it. */
function withinDns(name: string, base: string): boolean {
  const n = lower(name).replace(/\.$/, '');
  const b = lower(base).replace(/\.$/, '');
  if (b === '') return true;
  if (b.startsWith('.')) return n.endsWith(b);
  return n === b || n.endsWith(`.${b}`);
}

function withinIp(address: Buffer, base: { address: Buffer; mask: Buffer }): boolean {
  if (address.length !== base.address.length) return false;
  for (let i = 0; i < address.length; i++) {
    if (
      ((address[i] as number) & (base.mask[i] as number)) !==
      ((base.address[i] as number) & (base.mask[i] as number))
    ) {
      return false;
    }
  }
  return true;
}

function uriHost(uri: string): string | undefined {
  try {
    return new URL(uri).hostname.replace(/^\[|\]$/g, '') || undefined;
  } catch {
    return undefined;
  }
}

type Names = {
  directoryName: Rdn[][];
  rfc822Name: string[];
  dNSName: string[];
  iPAddress: Buffer[];
  uniformResourceIdentifier: string[];
  other: number;
};

function namesOf(cert: ParsedCertificate): Names {
  const san = cert.subjectAltName;
  const emails = cert.subject.rdns
    .flat()
    .filter((ava) => ava.type === EMAIL_ATTRIBUTE)
    .map((ava) => ava.value);
  return {
    directoryName: cert.subject.rdns.length ? [cert.subject.rdns] : [],
    rfc822Name: [...emails, ...(san?.email ?? [])],
    dNSName: san?.dns ?? [],
    iPAddress: san?.ipBytes ?? [],
    uniformResourceIdentifier: san?.uri ?? [],
    other: san?.other ?? 0,
  };
}

function matches(kind: NameSubtree['kind'], name: Rdn[] | string | Buffer, subtree: NameSubtree): boolean {
  switch (subtree.kind) {
    case 'directoryName':
      return kind === 'directoryName' && withinDirectory(name as Rdn[], subtree.rdns);
    case 'rfc822Name':
      return kind === 'rfc822Name' && withinEmail(name as string, subtree.value);
    case 'dNSName':
      return kind === 'dNSName' && withinDns(name as string, subtree.value);
    case 'iPAddress':
      return kind === 'iPAddress' && withinIp(name as Buffer, subtree);
    case 'uniformResourceIdentifier': {
      if (kind !== 'uniformResourceIdentifier') return false;
      const host = uriHost(name as string);
      return host !== undefined && withinDns(host, subtree.value);
    }
    default:
      return false;
  }
}

const show = (kind: string, name: Rdn[] | string | Buffer, oneline: string) =>
  kind === 'directoryName' ? oneline : Buffer.isBuffer(name) ? name.toString('hex') : String(name);

/** Why `cert`'s names break `constraints` (set by the CA named `caName`), or undefined if they do not. */
export function nameConstraintViolation(
  cert: ParsedCertificate,
  constraints: NameConstraints,
  caName: string,
): string | undefined {
  const names = namesOf(cert);
  const all = [...constraints.permitted, ...constraints.excluded];
  if (all.some((s) => s.kind === 'other') && names.other > 0) {
    return `name constraints of ${caName} use a form this server cannot check, and ${cert.subject.oneline} has such names`;
  }
  const kinds = ['directoryName', 'rfc822Name', 'dNSName', 'iPAddress', 'uniformResourceIdentifier'] as const;
  for (const kind of kinds) {
    const permitted = constraints.permitted.filter((s) => s.kind === kind);
    const excluded = constraints.excluded.filter((s) => s.kind === kind);
    for (const name of names[kind] as (Rdn[] | string | Buffer)[]) {
      const shown = show(kind, name, cert.subject.oneline);
      if (permitted.length && !permitted.some((s) => matches(kind, name, s))) {
        return `permitted subtree violation: ${kind} ${shown} is outside the names ${caName} may certify`;
      }
      if (excluded.some((s) => matches(kind, name, s))) {
        return `excluded subtree violation: ${kind} ${shown} is among the names ${caName} may not certify`;
      }
    }
  }
  return undefined;
}
