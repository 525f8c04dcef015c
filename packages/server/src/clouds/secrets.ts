/**
 * Cloud credentials' secrets at rest: AES-256-GCM with a key from the configuration (`clouds.secret_key`),
 * each sealed value naming the key it was sealed with, so that a site can rotate keys: the new key seals, the
 * previous ones (`clouds.previous_secret_keys`) still open what they sealed, and the sync seals each secret
 * again with the new one at its cloud's next pass (services/clouds.ts, `reseal`).
 *
 * Traps:
 * - A key is 32 random bytes, given as base64 or hex; anything else is refused at start, not at first use.
 * - GCM's nonce never repeats under one key: 12 random bytes each time.
 * - The sealed value is bound to what it belongs to (the cloud's id, as additional data): a secret copied onto
 *   another cloud's row does not open.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

export interface SecretKeys {
  /** Seals, and opens what it sealed. */
  current: Buffer;
  /** Open what they sealed, until everything is sealed again with the current one. */
  previous: Buffer[];
}

/** A key's id: the first 8 hex digits of its SHA-256 (names the key without telling it). */
export const keyId = (key: Buffer) => createHash('sha256').update(key).digest('hex').slice(0, 8);

/** A key as written in the configuration: 32 bytes, base64 (standard or URL-safe) or 64 hex digits. */
export function parseKey(text: string, setting: string): Buffer {
  const trimmed = text.trim();
  const key = /^[0-9a-f]{64}$/i.test(trimmed) ? Buffer.from(trimmed, 'hex') : Buffer.from(trimmed, 'base64');
  if (key.length !== 32)
    throw new Error(`${setting} must be 32 random bytes in base64 or hex (openssl rand -base64 32)`);
  return key;
}

const b64 = (data: Buffer) => data.toString('base64url');

/** `v1.<key id>.<nonce>.<ciphertext>.<tag>`, bound to `context`. */
export function seal(plaintext: string, keys: SecretKeys, context: string): string {
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', keys.current, nonce);
  cipher.setAAD(Buffer.from(context, 'utf8'));
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return ['v1', keyId(keys.current), b64(nonce), b64(body), b64(cipher.getAuthTag())].join('.');
}

/** The secret, or an error saying which key it needs. */
export function open(sealed: string, keys: SecretKeys, context: string): string {
  const [version, id, nonce, body, tag] = sealed.split('.');
  if (version !== 'v1' || !id || nonce === undefined || body === undefined || tag === undefined)
    throw new Error('the sealed secret is not in a form this server reads');
  const key = [keys.current, ...keys.previous].find((candidate) => keyId(candidate) === id);
  if (!key)
    throw new Error(
      `the secret was sealed with key ${id}, which is neither clouds.secret_key nor one of clouds.previous_secret_keys`,
    );
  const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(nonce, 'base64url'));
  decipher.setAAD(Buffer.from(context, 'utf8'));
  decipher.setAuthTag(Buffer.from(tag, 'base64url'));
  try {
    return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString(
      'utf8',
    );
  } catch {
    throw new Error('the sealed secret does not open: altered, or not this cloud’s');
  }
}

/** Whether a sealed value was sealed with the current key (rotation seals the others again). */
export const sealedWithCurrent = (sealed: string, keys: SecretKeys) =>
  sealed.split('.')[1] === keyId(keys.current);
