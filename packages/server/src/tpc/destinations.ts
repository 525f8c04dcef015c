/**
 * Where a third-party copy may connect: the guard against server-side request forgery (SSRF). A COPY makes
 * this server open a connection to a URL its caller chose; left open, that reaches what only the server can
 * reach (its database, a cloud's metadata service at 169.254.169.254, an admin interface on loopback).
 *
 * - **Refused by default**: loopback, link-local, private (RFC 1918, IPv6 unique local and site-local),
 *   carrier-grade NAT, unspecified, multicast and broadcast addresses, in IPv4 and IPv6, and the IPv6 forms
 *   that reach IPv4 (NAT64, 6to4, IPv4-compatible). An IPv4-mapped IPv6 address is read as the IPv4 address
 *   it carries, however it is written (`[::ffff:127.0.0.1]` is `[::ffff:7f00:1]` once a URL is parsed). A site lists what it does reach on purpose (another repository on its own
 *   network) in `tpc.allowed_networks`.
 * - **Checked where the connection is made**, not where the URL is read: a name is resolved once, every
 *   address it resolves to is checked, and the connection goes to one of those very addresses, so a name that
 *   resolves to a public address when checked and to a private one when used (DNS rebinding) gains nothing. A
 *   name that resolves to any refused address is refused whole. An address written in the URL is checked as
 *   it is (Node does not resolve it).
 * - **Every redirect is a new destination**, checked again (remote.ts).
 */
import { lookup as dnsLookup } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { RepomanError } from '@repoman/core';

/** The networks refused unless allowed, each with what it is, for the message. */
const REFUSED: [string, number, 'ipv4' | 'ipv6', string][] = [
  ['0.0.0.0', 8, 'ipv4', 'an unspecified address'],
  ['10.0.0.0', 8, 'ipv4', 'a private address'],
  ['100.64.0.0', 10, 'ipv4', 'a carrier-grade NAT address'],
  ['127.0.0.0', 8, 'ipv4', 'a loopback address'],
  ['169.254.0.0', 16, 'ipv4', 'a link-local address'],
  ['172.16.0.0', 12, 'ipv4', 'a private address'],
  ['192.168.0.0', 16, 'ipv4', 'a private address'],
  ['224.0.0.0', 4, 'ipv4', 'a multicast address'],
  ['240.0.0.0', 4, 'ipv4', 'a reserved or broadcast address'],
  ['::', 128, 'ipv6', 'an unspecified address'],
  ['::1', 128, 'ipv6', 'a loopback address'],
  ['::', 96, 'ipv6', 'an IPv4-compatible address'],
  ['64:ff9b::', 96, 'ipv6', 'a NAT64 address'],
  ['64:ff9b:1::', 48, 'ipv6', 'a NAT64 address'],
  ['2002::', 16, 'ipv6', 'a 6to4 address'],
  ['fc00::', 7, 'ipv6', 'a private (unique local) address'],
  ['fec0::', 10, 'ipv6', 'a site-local address'],
  ['fe80::', 10, 'ipv6', 'a link-local address'],
  ['ff00::', 8, 'ipv6', 'a multicast address'],
];

const refusedNetworks = REFUSED.map(([network, prefix, type, what]) => {
  const list = new BlockList();
  list.addSubnet(network, prefix, type);
  return { list, type, what };
});

/** The 16 bytes of an IPv6 address, in any of its written forms (`::ffff:7f00:1`, `::ffff:127.0.0.1`). */
function ipv6Bytes(address: string): number[] | null {
  let text = address.toLowerCase().replace(/%.*$/, '');
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const zeros = tail === undefined ? 0 : 8 - headGroups.length - tailGroups.length;
  const groups = [...headGroups, ...Array(Math.max(zeros, 0)).fill('0'), ...tailGroups];
  if (groups.length !== 8) return null;
  return groups.flatMap((group) => {
    const value = Number.parseInt(group, 16);
    return [value >> 8, value & 255];
  });
}

/**
 * An IPv4-mapped IPv6 address (`::ffff:0:0/96`, however written) as the IPv4 address it carries: a
 * connection to it reaches that IPv4 address.
 */
function unmapped(address: string): string {
  if (isIP(address) !== 6) return address;
  const bytes = ipv6Bytes(address);
  const mapped = bytes?.slice(0, 10).every((b) => b === 0) && bytes[10] === 255 && bytes[11] === 255;
  return mapped && bytes ? bytes.slice(12).join('.') : address;
}

/** Who the policy guards, for its refusals: third-party copies by default, the cloud sync too. */
export interface PolicyWords {
  /** What does not reach such an address: `third-party copies`. */
  reaching: string;
  /** The setting that allows it all the same. */
  setting: string;
  /** How a refusal starts: `The copy was refused`. */
  refused: string;
}

export const COPY_WORDS: PolicyWords = {
  reaching: 'third-party copies',
  setting: 'tpc.allowed_networks',
  refused: 'The copy was refused',
};

/** Why the policy refuses `address`, or null if a copy may connect to it. */
export function refusalOfAddress(address: string, allowed: BlockList, words = COPY_WORDS): string | null {
  const plain = unmapped(address);
  const type = isIP(plain) === 6 ? 'ipv6' : 'ipv4';
  if (allowed.check(plain, type)) return null;
  const hit = refusedNetworks.find((n) => n.type === type && n.list.check(plain, type));
  return hit ? `${address} is ${hit.what}, which ${words.reaching} do not reach (${words.setting})` : null;
}

/** A refusal as the copy reports it. */
export const destinationRefused = (why: string, words = COPY_WORDS) =>
  new RepomanError('destination_refused', `${words.refused}: ${why}`);

/**
 * A `lookup` for `https.request` that resolves the name once and lets the connection go only to addresses the
 * policy allows (all of them must be allowed).
 */
export function guardedLookup(allowed: BlockList, words = COPY_WORDS): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error, '', 0);
      const list = addresses as { address: string; family: number }[];
      for (const entry of list) {
        const why = refusalOfAddress(entry.address, allowed, words);
        if (why) return callback(destinationRefused(`${hostname} resolves to ${why}`, words), '', 0);
      }
      if (options.all) return (callback as (e: null, a: typeof list) => void)(null, list);
      const [first] = list;
      if (!first) return callback(new Error(`${hostname} resolves to no address`), '', 0);
      callback(null, first.address, first.family);
    });
  };
}

/** The address written in a URL's host, checked (a name is checked when it is resolved). */
export function checkLiteralHost(url: URL, allowed: BlockList, words = COPY_WORDS): void {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host) === 0) return;
  const why = refusalOfAddress(host, allowed, words);
  if (why) throw destinationRefused(why, words);
}
