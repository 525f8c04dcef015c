/**
 * The first-party caveats a capability carries, in dCache's words, and whether a request satisfies them: pure
 * functions over plain data, as authz.ts is. Every caveat must hold; a caveat this server does not know is one
 * it cannot check, so it never holds (a holder may add caveats, and must not be able to add one that widens
 * anything by being ignored).
 *
 * - `activity:A,B`: the request needs one of these (`@repoman/core`'s ACTIVITIES say what each allows).
 * - `path:/api/images/raw/bob/`: the request is on this path or below it. A namespace's path covers its
 *   images; an image's covers that image only.
 * - `before:2027-01-01T00:00:00Z`: the request arrives before this time.
 * - `ip:10.0.0.0/8,2001:db8::/32`: the request comes from one of these networks (or addresses).
 */
import { BlockList, isIP } from 'node:net';
import { ACTIVITIES, type Activity } from '@repoman/core';

/** What a request needs: an activity, or only to read the metadata of its path. */
export type Need = Activity | 'metadata';

export interface CapabilityRequestFacts {
  /** The URL path the request acts on, its image named in full (`/api/images/raw/{user}/{image}`). */
  paths: readonly string[];
  need: Need;
  address: string;
  now: Date;
  /**
   * A `path:` caveat below the request's path holds too (a collection's MKCOL, which creates nothing here:
   * gfal2 asks for a capability for `dir/gfal2_mkdir.reserved` and uses it to `MKCOL dir/`).
   */
  ancestors?: boolean;
}

type Caveat =
  | { kind: 'activity'; activities: Set<Activity> }
  | { kind: 'path'; path: string }
  | { kind: 'before'; time: Date }
  | { kind: 'ip'; networks: BlockList };

const isActivity = (value: string): value is Activity => (ACTIVITIES as readonly string[]).includes(value);

/** A path the way capabilities compare them: no `.` or `..` segments, no empty segment but a final one. */
export function isCanonicalPath(path: string): boolean {
  if (!path.startsWith('/') || path.includes('//')) return false;
  return !path.split('/').some((segment) => segment === '.' || segment === '..');
}

function networks(list: string): BlockList | null {
  const blocks = new BlockList();
  for (const item of list.split(',')) {
    const [address = '', bits, ...more] = item.trim().split('/');
    const family = isIP(address);
    if (family === 0 || more.length > 0) return null;
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (bits === undefined) {
      blocks.addAddress(address, type);
      continue;
    }
    const prefix = Number(bits);
    if (!/^\d{1,3}$/.test(bits) || prefix > (family === 4 ? 32 : 128)) return null;
    blocks.addSubnet(address, prefix, type);
  }
  return blocks;
}

/** One caveat, read; null if it is not one this server knows how to check. */
export function parseCaveat(text: string): Caveat | null {
  const colon = text.indexOf(':');
  if (colon < 1) return null;
  const [kind, value] = [text.slice(0, colon), text.slice(colon + 1)];
  switch (kind) {
    case 'activity': {
      const names = value.split(',').map((a) => a.trim());
      return names.length > 0 && names.every(isActivity)
        ? { kind, activities: new Set(names as Activity[]) }
        : null;
    }
    case 'path':
      return isCanonicalPath(value) ? { kind, path: value } : null;
    case 'before': {
      const time = new Date(value);
      return /^\d{4}-\d\d-\d\dT/.test(value) && !Number.isNaN(time.getTime()) ? { kind, time } : null;
    }
    case 'ip': {
      const list = networks(value);
      return list ? { kind, networks: list } : null;
    }
    default:
      return null;
  }
}

/** `path` is `scope` or lies below it. */
export function pathWithin(path: string, scope: string): boolean {
  if (path === scope || `${path}/` === scope) return true;
  return path.startsWith(scope.endsWith('/') ? scope : `${scope}/`);
}

/** Why the caveats refuse the request (and whether only because time ran out), or null when all hold. */
export function refusalOf(
  caveats: readonly string[],
  facts: CapabilityRequestFacts,
): { reason: string; expired: boolean } | null {
  for (const text of caveats) {
    const reason = unmet(text, facts);
    if (reason !== null) return { reason, expired: reason.startsWith(EXPIRED) };
  }
  return null;
}

const EXPIRED = 'it was good until';

/** Why one caveat does not hold for the request, or null if it does. */
function unmet(text: string, facts: CapabilityRequestFacts): string | null {
  const caveat = parseCaveat(text);
  if (!caveat) return `it carries a caveat this server cannot check: '${text}'`;
  switch (caveat.kind) {
    case 'activity':
      if (facts.need !== 'metadata' && !caveat.activities.has(facts.need))
        return `it allows ${[...caveat.activities].join(', ')}, and this request needs ${facts.need}`;
      return null;
    case 'path': {
      const outside = facts.paths.find(
        (path) => !pathWithin(path, caveat.path) && !(facts.ancestors && pathWithin(caveat.path, path)),
      );
      return outside === undefined
        ? null
        : `it is bound to ${caveat.path}, and this request is on ${outside}`;
    }
    case 'before':
      return facts.now >= caveat.time ? `${EXPIRED} ${caveat.time.toISOString()}` : null;
    case 'ip':
      return caveat.networks.check(facts.address, isIP(facts.address) === 6 ? 'ipv6' : 'ipv4')
        ? null
        : `it is not good from ${facts.address}`;
  }
}

/** The activities every `activity:` caveat allows (all of them when there is none). */
export function activitiesOf(caveats: readonly string[]): Activity[] {
  let allowed = new Set<Activity>(ACTIVITIES);
  for (const text of caveats) {
    const caveat = parseCaveat(text);
    if (caveat?.kind === 'activity') allowed = new Set([...allowed].filter((a) => caveat.activities.has(a)));
  }
  return ACTIVITIES.filter((a) => allowed.has(a));
}

const DURATION = /^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$/;

/** Seconds in an ISO 8601 duration of weeks, days, hours, minutes and seconds (`PT1H`, `P7D`); null if not one. */
export function durationSeconds(text: string): number | null {
  const match = DURATION.exec(text.trim().toUpperCase());
  if (!match || text.trim().toUpperCase().endsWith('T') || text.trim().toUpperCase() === 'P') return null;
  const [, w = '0', d = '0', h = '0', m = '0', s = '0'] = match;
  return Number(w) * 604800 + Number(d) * 86400 + Number(h) * 3600 + Number(m) * 60 + Number(s);
}
