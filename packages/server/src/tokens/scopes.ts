/**
 * What a bearer token's scopes allow, and which Repoman groups its `wlcg.groups` name: pure functions over
 * plain data, as authz.ts is.
 *
 * Storage paths. A token names paths of the repository as WLCG's storage does: `/` is every namespace,
 * `/bob` is Bob's namespace, `/bob/rhel.img` one image (the path of `/api/images/raw/bob/rhel.img` below the
 * raw tree). An issuer's `base_path` is where its tokens' `/` lies: with `base_path = "/fts"`, a token's
 * `storage.create:/` lets it create images in the namespace `fts` and nowhere else.
 *
 * Operations. WLCG's `storage.read` reads (bytes, metadata, listings); `storage.create` uploads an image that
 * does not exist yet, and nothing that changes one that does; `storage.modify` changes and deletes, and
 * creates too. SciTokens' `read:` is `storage.read`, its `write:` is `storage.modify`. `storage.stage` (tape
 * recall) asks nothing of a disk repository and allows nothing.
 *
 * Traps:
 * - A scope's path is compared canonically: `..`, `.` and empty segments make the scope worthless, not wider.
 * - `storage.read:/bob` covers `/bob/rhel.img` but not `/bobby`: paths are compared by segment.
 * - A group claim must never make anyone an admin: `admins` is never a mapped group, whatever the rule says.
 */
import { ADMINS_GROUP, checkAccountName } from '@repoman/core';
import { isCanonicalPath, pathWithin } from '../capabilities/caveats.ts';

export type StorageOperation = 'read' | 'create' | 'modify';

export interface StorageScope {
  operation: StorageOperation;
  /** A repository path (`/`, `/bob`, `/bob/rhel.img`), the issuer's base path joined in. */
  path: string;
}

const OPERATIONS: Record<string, StorageOperation | null> = {
  'storage.read': 'read',
  'storage.create': 'create',
  'storage.modify': 'modify',
  'storage.stage': null,
  read: 'read',
  write: 'modify',
};

/** `base` and a token's path joined: `/fts` and `/a.img` make `/fts/a.img`; null if either is not canonical. */
export function joinBase(base: string, path: string): string | null {
  if (!isCanonicalPath(base) || !isCanonicalPath(path)) return null;
  const joined = `${base.replace(/\/+$/, '')}${path === '/' ? '' : path}`.replace(/\/+$/, '');
  return joined === '' ? '/' : joined;
}

/**
 * The storage scopes of a token's `scope` claim (space-separated, as RFC 8693 and WLCG's profile write it),
 * joined to the issuer's base path. Null when the token carries none (a token of identity only). A storage
 * scope whose path cannot be read is kept as one that allows nothing: it still narrows the token.
 */
export function storageScopesOf(scope: unknown, basePath: string): StorageScope[] | null {
  if (typeof scope !== 'string') return null;
  const scopes: StorageScope[] = [];
  let any = false;
  for (const item of scope.split(' ').filter(Boolean)) {
    const colon = item.indexOf(':');
    const name = colon < 0 ? item : item.slice(0, colon);
    if (!(name in OPERATIONS)) continue; // openid, profile, wlcg, offline_access, compute.*: not storage
    any = true;
    const operation = OPERATIONS[name];
    const path = joinBase(basePath, colon < 0 ? '/' : item.slice(colon + 1) || '/');
    if (operation && path) scopes.push({ operation, path });
  }
  return any ? scopes : null;
}

/** What a request on a storage path needs: to read, to create what is not there, or to change what is. */
export interface StorageNeed {
  operation: StorageOperation;
  /** Every path it acts on (a MOVE acts on two). */
  paths: readonly string[];
}

/** Whether the scopes allow the need: every path it acts on is within a scope that allows its operation. */
export function scopesAllow(scopes: readonly StorageScope[], need: StorageNeed): boolean {
  const allows = (held: StorageOperation) =>
    held === need.operation || (held === 'modify' && need.operation === 'create');
  return need.paths.every((path) => scopes.some((s) => allows(s.operation) && pathWithin(path, s.path)));
}

/** The scopes in words, for a refusal (`storage.read:/bob storage.create:/bob/new.img`). */
export function describeScopes(scopes: readonly StorageScope[]): string {
  return scopes.length === 0
    ? 'none that this server reads'
    : scopes.map((s) => `storage.${s.operation}:${s.path}`).join(' ');
}

/** How an issuer's `wlcg.groups` become Repoman groups. */
export interface GroupRule {
  /** Explicit entries: `/atlas/prod` → `atlas-prod`. They win over the prefix rule. */
  map: Readonly<Record<string, string>>;
  /** Also turn any other group path into a name (`/atlas/prod` → `atlas-prod`), if such a group exists. */
  prefix: boolean;
}

/** A group path made a group name by the prefix rule: segments joined by `-`, lower case; null if not one. */
export function groupNameOfPath(path: string): string | null {
  if (!/^\/[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/.test(path)) return null;
  const name = path.slice(1).replaceAll('/', '-').toLowerCase();
  return checkAccountName(name) === null ? name : null;
}

/** The Repoman group names a token's `wlcg.groups` claim maps to (never `admins`). */
export function mappedGroups(claim: unknown, rule: GroupRule): string[] {
  const paths = Array.isArray(claim) ? claim.filter((g): g is string => typeof g === 'string') : [];
  const names = new Set<string>();
  for (const path of paths) {
    const name = Object.hasOwn(rule.map, path) ? rule.map[path] : rule.prefix ? groupNameOfPath(path) : null;
    if (name && name !== ADMINS_GROUP) names.add(name);
  }
  return [...names];
}
