/**
 * Macaroons in libmacaroons' version 1 format, the one dCache and XRootD issue (tokens starting `MDAx`), with
 * first-party caveats only. A macaroon is a location, an identifier, caveats, and a chained HMAC-SHA256:
 * `sig0 = HMAC(K, identifier)`, `sig(i) = HMAC(sig(i-1), caveat(i))`, where K is derived from the root key as
 * libmacaroons derives it. Anyone holding a macaroon can add a caveat (and compute the new signature) but never
 * remove one: that is how a holder narrows what it grants before passing it on.
 *
 * The serialized form is a sequence of packets, each `HHHH` (the packet's length in hex, these four digits
 * and the newline included) then `key value\n`, all base64-encoded (URL-safe here, without padding; either
 * alphabet is read).
 *
 * Traps, each handled here:
 * - **Third-party caveats** (`vid`, `cl` packets) need a discharge macaroon this server never asks for: a
 *   macaroon holding one does not parse, so it can never pass as if the caveat were not there.
 * - **A signature compared as text** leaks how much of it matched through timing: compared with
 *   `timingSafeEqual`.
 * - **Anything after the signature** would not be covered by it: refused, as are unknown packet keys, a packet
 *   length past the end, and tokens longer than MAX_TOKEN_LENGTH (parsed before any database lookup).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export interface Macaroon {
  location: string;
  identifier: string;
  caveats: string[];
  /** 32 bytes. */
  signature: Buffer;
}

/** Far more than any macaroon this server issues, plus what holders add; a bearer token is a header. */
export const MAX_TOKEN_LENGTH = 8192;

const hmac = (key: Buffer, data: string | Buffer) => createHmac('sha256', key).update(data).digest();

/** libmacaroons' key derivation: the root key is never used as the HMAC key itself. */
const derivedKey = (rootKey: Buffer) => hmac(Buffer.from('macaroons-key-generator'), rootKey);

function signatureOf(rootKey: Buffer, identifier: string, caveats: readonly string[]): Buffer {
  let signature = hmac(derivedKey(rootKey), identifier);
  for (const caveat of caveats) signature = hmac(signature, caveat);
  return signature;
}

function packet(key: string, value: string | Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(`${key} `), Buffer.from(value), Buffer.from('\n')]);
  const length = body.length + 4;
  if (length > 0xffff) throw new Error(`A macaroon packet of ${length} bytes is too long`);
  return Buffer.concat([Buffer.from(length.toString(16).padStart(4, '0')), body]);
}

/** A new macaroon signed with `rootKey`. */
export function mintMacaroon(
  rootKey: Buffer,
  location: string,
  identifier: string,
  caveats: readonly string[],
): Macaroon {
  return {
    location,
    identifier,
    caveats: [...caveats],
    signature: signatureOf(rootKey, identifier, caveats),
  };
}

/** The macaroon with one more caveat: what a holder may do without the key. */
export function addCaveat(macaroon: Macaroon, caveat: string): Macaroon {
  return {
    ...macaroon,
    caveats: [...macaroon.caveats, caveat],
    signature: hmac(macaroon.signature, caveat),
  };
}

export function serializeMacaroon(macaroon: Macaroon): string {
  return Buffer.concat([
    packet('location', macaroon.location),
    packet('identifier', macaroon.identifier),
    ...macaroon.caveats.map((caveat) => packet('cid', caveat)),
    packet('signature', macaroon.signature),
  ]).toString('base64url');
}

/** The macaroon a token holds, or null if it is not a well-formed first-party V1 macaroon. */
export function parseMacaroon(token: string): Macaroon | null {
  if (token.length === 0 || token.length > MAX_TOKEN_LENGTH || !/^[A-Za-z0-9+/_-]+=*$/.test(token))
    return null;
  const bytes = Buffer.from(token.replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, ''), 'base64url');
  const fields: [string, Buffer][] = [];
  for (let at = 0; at < bytes.length; ) {
    const header = bytes.subarray(at, at + 4).toString('latin1');
    if (!/^[0-9a-f]{4}$/.test(header)) return null;
    const length = Number.parseInt(header, 16);
    if (length < 6 || at + length > bytes.length || bytes[at + length - 1] !== 0x0a) return null;
    const body = bytes.subarray(at + 4, at + length - 1);
    const space = body.indexOf(0x20);
    if (space < 1) return null;
    fields.push([body.subarray(0, space).toString('latin1'), body.subarray(space + 1)]);
    at += length;
  }
  const [location, identifier, ...rest] = fields;
  const signature = rest.pop();
  if (location?.[0] !== 'location' || identifier?.[0] !== 'identifier' || signature?.[0] !== 'signature')
    return null;
  if (signature[1].length !== 32 || rest.some(([key]) => key !== 'cid')) return null;
  const text = (value: Buffer) => {
    const decoded = value.toString('utf8');
    return Buffer.from(decoded, 'utf8').equals(value) ? decoded : null;
  };
  const caveats = rest.map(([, value]) => text(value));
  const [where, id] = [text(location[1]), text(identifier[1])];
  if (where === null || id === null || caveats.some((c) => c === null)) return null;
  return { location: where, identifier: id, caveats: caveats as string[], signature: signature[1] };
}

/** Whether `rootKey` signed the macaroon with exactly these identifier and caveats, in this order. */
export function signedWith(macaroon: Macaroon, rootKey: Buffer): boolean {
  const expected = signatureOf(rootKey, macaroon.identifier, macaroon.caveats);
  return expected.length === macaroon.signature.length && timingSafeEqual(expected, macaroon.signature);
}
