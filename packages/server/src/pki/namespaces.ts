/**
 * CA namespace rules, as grid middleware enforces them: which subject DNs a CA may vouch for.
 *
 * A trusted directory in the IGTF layout ships two files beside each CA certificate `<hash>.0`:
 * - `<hash>.namespaces` (EUGridPMA format 1.0): lines `TO Issuer "<CA DN>"|SELF PERMIT|DENY Subject "<regex>"`,
 *   `\` continues a line, `#` starts a comment. The subject is a regular expression over the OpenSSL oneline form.
 * - `<hash>.signing_policy` (Globus EACL): blocks of `access_id_CA X509 '<CA DN>'`, `pos_rights globus CA:sign`,
 *   `cond_subjects globus '"<glob>" "<glob>" …'`; `*` matches any characters and `?` one.
 *
 * The traps, each handled here:
 * - Which file belongs to which CA: the file's name ties it to a CA (the CA's subject hash, new or old form, or
 *   the base name of the CA's own file, as in `AAACertificateServices.pem`/`.namespaces`), and only the entries
 *   that name that CA (or SELF) count. A stray or hostile file cannot widen another CA's namespace.
 * - Precedence: when a CA has both files and they disagree, `.namespaces` wins and `.signing_policy` is not read
 *   for it (as in canl's EUGRIDPMA_GLOBUS mode); a CA with only a signing policy is held to that.
 * - Every certificate of a path that a CA issued is checked against that CA's rules (the end-entity certificate
 *   and each intermediate CA), not only the one at the bottom: a sub-CA must be in its parent's namespace too.
 *   Proxies are not: their names follow from the end-entity certificate's by RFC 3820's rule.
 * - Matching is case-insensitive over the whole oneline subject (both middleware implementations do so), with
 *   `Email=`/`E=` read as `emailAddress=` and `USERID=` as `UID=`.
 * - A DENY that matches refuses even when a PERMIT also matches.
 * - A file that cannot be parsed fails closed: its CA vouches for nobody until it is fixed (with a warning).
 * - Without any file for a CA: `require` (the default) lets it vouch for nobody; `enforce-if-present` accepts
 *   whatever it signs, as plain OpenSSL would.
 */
import { nameKey, parseDnString } from './names.ts';

export type NamespaceMode = 'require' | 'enforce-if-present';

export type NamespaceRule = {
  permit: boolean;
  /** anchored, case-insensitive */
  pattern: RegExp;
  /** the pattern as written, and where: `file:line` */
  text: string;
  source: string;
};

/** The rules of one CA: from its `.namespaces` file if it has one, else from its `.signing_policy`. */
export type CaNamespace = { kind: 'namespaces' | 'signing_policy'; rules: NamespaceRule[]; broken?: string };

/** One policy file's entries, each tied to the CA it names (a canonical name key; SELF resolved by the caller). */
export type PolicyEntry = { issuer: string | 'SELF'; rule: NamespaceRule };

/** Subjects and patterns alike: `Email=`/`E=` read as `emailAddress=`, `USERID=` as `UID=` (case is ignored). */
export function foldAliases(oneline: string): string {
  return oneline.replace(/(^|\/|\+)(email|e)=/gi, '$1emailAddress=').replace(/(^|\/|\+)userid=/gi, '$1UID=');
}

function issuerKey(dn: string): string {
  try {
    return nameKey(parseDnString(dn));
  } catch (err) {
    throw new Error(`the CA name '${dn}' is not a DN (${(err as Error).message})`);
  }
}

function regexFrom(source: string, where: string): RegExp {
  try {
    return new RegExp(`^(?:${foldAliases(source)})$`, 'is');
  } catch (err) {
    throw new Error(
      `${where}: the subject pattern is not a valid regular expression (${(err as Error).message})`,
    );
  }
}

function globToRegex(glob: string): string {
  let out = '';
  for (const c of glob) {
    if (c === '*') out += '.*';
    else if (c === '?') out += '.';
    else out += c.replace(/[\\^$.|+()[\]{}]/g, '\\$&');
  }
  return out;
}

/** A `.namespaces` file (EUGridPMA namespaces format 1.0). Throws on a syntax error, naming the line. */
export function parseNamespacesFile(text: string, fileName: string): PolicyEntry[] {
  const entries: PolicyEntry[] = [];
  let pending = '';
  let startLine = 0;
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, index) => {
    const version = /^#+\s*NAMESPACES-VERSION:\s*(\S+)/i.exec(raw.trim());
    if (version && version[1] !== '1.0') {
      throw new Error(
        `${fileName}:${index + 1}: namespaces format version ${version[1]} is not supported (1.0 is)`,
      );
    }
    const line = stripComment(raw);
    if (!pending) startLine = index + 1;
    if (/\\\s*$/.test(line) && !/\\\\\s*$/.test(line)) {
      pending += `${line.replace(/\\\s*$/, '')} `;
      return;
    }
    const entry = (pending + line).trim();
    pending = '';
    if (!entry) return;
    const where = `${fileName}:${startLine}`;
    const match =
      /^TO\s+ISSUER\s+(?:"((?:[^"\\]|\\.)*)"|(SELF))\s+(PERMIT|DENY)\s+SUBJECT\s+"((?:[^"\\]|\\.)*)"\s*$/i.exec(
        entry,
      );
    if (!match) throw new Error(`${where}: expected TO Issuer "<DN>" PERMIT|DENY Subject "<pattern>"`);
    const [, issuerText, self, verb, subject] = match;
    entries.push({
      issuer: self ? 'SELF' : issuerKey(unquote(issuerText ?? '')),
      rule: {
        permit: verb?.toUpperCase() === 'PERMIT',
        pattern: regexFrom(subject ?? '', where),
        text: subject ?? '',
        source: where,
      },
    });
  });
  if (pending.trim()) throw new Error(`${fileName}: the last line continues past the end of the file`);
  return entries;
}

function stripComment(line: string): string {
  for (let i = 0; i < line.length; i++) {
    if (line[i] === '\\') i++;
    else if (line[i] === '#') return line.slice(0, i);
  }
  return line;
}

function unquote(text: string): string {
  return text.replace(/\\(.)/g, '$1');
}

/** A `.signing_policy` file (Globus EACL subset every grid tool reads). Throws on a syntax error. */
export function parseSigningPolicyFile(text: string, fileName: string): PolicyEntry[] {
  const entries: PolicyEntry[] = [];
  let issuer: string | undefined;
  let rights = false;
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    const where = `${fileName}:${index + 1}`;
    if (!line || line.startsWith('#')) return;
    const access = /^access_id_CA\s+X509\s+'([^']*)'\s*$/i.exec(line);
    if (access) {
      issuer = issuerKey(access[1] as string);
      rights = false;
      return;
    }
    if (/^pos_rights\s+globus\s+CA:sign\s*$/i.test(line)) {
      if (!issuer) throw new Error(`${where}: pos_rights before access_id_CA`);
      rights = true;
      return;
    }
    const cond = /^cond_subjects\s+globus\s+(.*)$/i.exec(line);
    if (cond) {
      if (!issuer || !rights) throw new Error(`${where}: cond_subjects without access_id_CA and pos_rights`);
      const list = (cond[1] as string).trim().replace(/^'(.*)'$/s, '$1');
      const globs = [...list.matchAll(/"([^"]*)"/g)].map((m) => m[1] as string);
      if (globs.length === 0) throw new Error(`${where}: cond_subjects lists no "subject" patterns`);
      for (const glob of globs) {
        entries.push({
          issuer,
          rule: {
            permit: true,
            pattern: regexFrom(globToRegex(glob.trim()), where),
            text: glob,
            source: where,
          },
        });
      }
      return;
    }
    throw new Error(`${where}: expected access_id_CA, pos_rights or cond_subjects`);
  });
  return entries;
}

export type NamespaceVerdict = { ok: true } | { ok: false; reason: string };

/**
 * Whether the CA `ca` (with its namespace, or none) may vouch for `subject` (oneline form). `caName` names it in
 * the reason.
 */
export function checkNamespace(
  mode: NamespaceMode,
  namespace: CaNamespace | undefined,
  subject: string,
  caName: string,
): NamespaceVerdict {
  if (!namespace) {
    return mode === 'require'
      ? {
          ok: false,
          reason: `the CA ${caName} has no .namespaces or .signing_policy file, so it may not vouch for ${subject} (trust.namespaces = "require")`,
        }
      : { ok: true };
  }
  const file = namespace.kind === 'namespaces' ? '.namespaces' : '.signing_policy';
  if (namespace.broken) {
    return {
      ok: false,
      reason: `the ${file} file of the CA ${caName} cannot be read (${namespace.broken}), so it vouches for nobody`,
    };
  }
  const comparable = foldAliases(subject);
  const matching = namespace.rules.filter((rule) => rule.pattern.test(comparable));
  const denied = matching.find((rule) => !rule.permit);
  if (denied) {
    return {
      ok: false,
      reason: `${subject} is outside the namespace of the CA ${caName}: denied by "${denied.text}" (${denied.source})`,
    };
  }
  if (!matching.some((rule) => rule.permit)) {
    return {
      ok: false,
      reason: `${subject} is outside the namespace of the CA ${caName}: its ${file} permits only ${namespace.rules
        .filter((r) => r.permit)
        .map((r) => `"${r.text}"`)
        .join(', ')}`,
    };
  }
  return { ok: true };
}
