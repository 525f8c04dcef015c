/** clouds/secrets.ts: sealed secrets open with their key, bound to their cloud, and survive a key rotation. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { keyId, open, parseKey, seal, sealedWithCurrent } from '../../src/clouds/secrets.ts';

describe('cloud secrets at rest', () => {
  const old = randomBytes(32);
  const current = randomBytes(32);

  it('opens what it sealed, and nothing else', () => {
    const keys = { current, previous: [] };
    const sealed = seal('s3cret-application-credential', keys, 'cloud-1');
    assert.match(sealed, new RegExp(`^v1\\.${keyId(current)}\\.`));
    assert.ok(!sealed.includes('s3cret'));
    assert.equal(open(sealed, keys, 'cloud-1'), 's3cret-application-credential');
    assert.notEqual(
      seal('s3cret-application-credential', keys, 'cloud-1'),
      sealed,
      'a nonce of its own each time',
    );
    // Bound to its cloud: copied onto another's row, it does not open.
    assert.throws(() => open(sealed, keys, 'cloud-2'), /does not open/);
    const parts = sealed.split('.');
    parts[3] = Buffer.from('tampered').toString('base64url');
    assert.throws(() => open(parts.join('.'), keys, 'cloud-1'), /does not open/);
    assert.throws(() => open('plain text', keys, 'cloud-1'), /not in a form/);
  });

  it('opens a secret sealed with a previous key, and says which key a secret needs', () => {
    const before = seal('pw', { current: old, previous: [] }, 'c');
    const rotated = { current, previous: [old] };
    assert.equal(open(before, rotated, 'c'), 'pw');
    assert.equal(sealedWithCurrent(before, rotated), false);
    assert.equal(sealedWithCurrent(seal('pw', rotated, 'c'), rotated), true);
    assert.throws(() => open(before, { current, previous: [] }, 'c'), new RegExp(`key ${keyId(old)}`));
  });

  it('takes keys of 32 bytes in base64 or hex only', () => {
    assert.deepEqual(parseKey(current.toString('base64'), 'k'), current);
    assert.deepEqual(parseKey(current.toString('hex'), 'k'), current);
    assert.deepEqual(parseKey(`${current.toString('base64url')}\n`, 'k'), current);
    assert.throws(() => parseKey('short', 'clouds.secret_key'), /clouds\.secret_key must be 32 random bytes/);
    assert.throws(() => parseKey(randomBytes(16).toString('base64'), 'k'), /32 random bytes/);
  });
});
