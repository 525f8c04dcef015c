/**
 * Macaroons against libmacaroons' own vectors (the signatures and the serialization pymacaroons and
 * libmacaroons agree on), and the caveats a capability carries, checked as pure functions.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  activitiesOf,
  durationSeconds,
  parseCaveat,
  pathWithin,
  refusalOf,
} from '../../src/capabilities/caveats.ts';
import {
  addCaveat,
  MAX_TOKEN_LENGTH,
  mintMacaroon,
  parseMacaroon,
  serializeMacaroon,
  signedWith,
} from '../../src/capabilities/macaroon.ts';

const KEY = Buffer.from('this is our super secret key; only we should know it');
const LIBMACAROONS =
  'MDAxY2xvY2F0aW9uIGh0dHA6Ly9teWJhbmsvCjAwMjZpZGVudGlmaWVyIHdlIHVzZWQgb3VyIHNlY3JldCBrZXkKMDAxNmNpZCB0ZXN0ID0gY2F2ZWF0CjAwMmZzaWduYXR1cmUgGXusegRK8zMyhluSZuJtSTvdZopmDkTYjOGpmMI9vWcK';

describe('macaroons (libmacaroons version 1)', () => {
  it('signs and serializes as libmacaroons does', () => {
    const bare = mintMacaroon(KEY, 'http://mybank/', 'we used our secret key', []);
    assert.equal(
      bare.signature.toString('hex'),
      'e3d9e02908526c4c0039ae15114115d97fdd68bf2ba379b342aaf0f617d0552f',
    );
    const one = addCaveat(bare, 'test = caveat');
    assert.equal(
      one.signature.toString('hex'),
      '197bac7a044af33332865b9266e26d493bdd668a660e44d88ce1a998c23dbd67',
    );
    assert.deepEqual(one, mintMacaroon(KEY, 'http://mybank/', 'we used our secret key', ['test = caveat']));
    assert.equal(serializeMacaroon(one), LIBMACAROONS);
  });

  it('reads libmacaroons’ tokens in either base64 alphabet, and verifies only the key that signed them', () => {
    for (const token of [
      LIBMACAROONS,
      `${LIBMACAROONS}=`,
      LIBMACAROONS.replaceAll('-', '+').replaceAll('_', '/'),
    ]) {
      const parsed = parseMacaroon(token);
      assert.ok(parsed, token);
      assert.deepEqual(parsed.caveats, ['test = caveat']);
      assert.ok(signedWith(parsed, KEY));
      assert.ok(!signedWith(parsed, Buffer.from('another key')));
      assert.ok(!signedWith({ ...parsed, caveats: [] }, KEY), 'a caveat removed');
      assert.ok(!signedWith({ ...parsed, caveats: ['test = other'] }, KEY), 'a caveat changed');
    }
  });

  it('refuses what is not a first-party macaroon', () => {
    const packet = (key: string, value: string) => {
      const body = `${key} ${value}\n`;
      return (body.length + 4).toString(16).padStart(4, '0') + body;
    };
    const sig = Buffer.alloc(32).toString('latin1');
    const tokens = [
      '',
      'not base64!',
      'A'.repeat(MAX_TOKEN_LENGTH + 1),
      Buffer.from('zzzzlocation x\n').toString('base64url'),
      Buffer.from(
        packet('identifier', 'x') + packet('location', 'y') + packet('signature', sig),
        'latin1',
      ).toString('base64url'),
      Buffer.from(
        packet('location', 'y') +
          packet('identifier', 'x') +
          packet('vid', 'third') +
          packet('signature', sig),
        'latin1',
      ).toString('base64url'),
      Buffer.from(
        packet('location', 'y') + packet('identifier', 'x') + packet('signature', 'short'),
        'latin1',
      ).toString('base64url'),
      Buffer.from(
        packet('location', 'y') +
          packet('identifier', 'x') +
          packet('signature', sig) +
          packet('cid', 'after'),
        'latin1',
      ).toString('base64url'),
      Buffer.from(`${packet('location', 'y')}0100identifier cut`, 'latin1').toString('base64url'),
    ];
    for (const token of tokens) assert.equal(parseMacaroon(token), null, JSON.stringify(token.slice(0, 60)));
  });
});

describe('capability caveats', () => {
  const facts = {
    paths: ['/api/images/raw/bob/vm.img'],
    need: 'DOWNLOAD' as const,
    address: '10.1.2.3',
    now: new Date('2026-06-01T00:00:00Z'),
  };

  it('holds when every caveat does', () => {
    assert.equal(
      refusalOf(
        [
          'activity:DOWNLOAD,LIST',
          'path:/api/images/raw/bob/',
          'before:2026-07-01T00:00:00Z',
          'ip:10.0.0.0/8,2001:db8::/32',
        ],
        facts,
      ),
      null,
    );
    assert.equal(
      refusalOf(['activity:UPLOAD'], { ...facts, need: 'metadata' }),
      null,
      'any activity reads metadata',
    );
  });

  it('refuses for each caveat that does not hold, and for any it does not know', () => {
    const refused = (caveat: string) => refusalOf([caveat], facts);
    assert.match(refused('activity:UPLOAD')?.reason ?? '', /needs DOWNLOAD/);
    assert.match(refused('path:/api/images/raw/bob/other.img')?.reason ?? '', /bound to/);
    assert.match(
      refused('path:/api/images/raw/bo')?.reason ?? '',
      /bound to/,
      'a prefix of a name is not a parent',
    );
    // Below the request's path: refused, except where ancestors are allowed (a collection's MKCOL).
    const below = 'path:/api/images/raw/bob/vm.img/x';
    assert.match(refused(below)?.reason ?? '', /bound to/);
    assert.equal(refusalOf([below], { ...facts, ancestors: true }), null);
    assert.deepEqual(refused('before:2026-06-01T00:00:00Z')?.expired, true);
    assert.match(refused('ip:192.0.2.0/24')?.reason ?? '', /not good from/);
    for (const unknown of [
      'home:/',
      'root:/',
      'activity:FLY',
      'path:/api/../etc',
      'before:soon',
      'ip:10.0.0.0/33',
      'no colon',
    ])
      assert.match(refused(unknown)?.reason ?? '', /cannot check/, unknown);
  });

  it('reads paths, activities and ISO 8601 durations as documented', () => {
    assert.ok(pathWithin('/api/images/raw/bob/vm.img', '/api/images/raw/bob/'));
    assert.ok(pathWithin('/api/images/raw/bob/vm.img', '/api/images/raw/bob'));
    assert.ok(pathWithin('/api/images/raw/bob/', '/api/images/raw/bob'));
    assert.ok(!pathWithin('/api/images/raw/bobby/vm.img', '/api/images/raw/bob'));
    assert.deepEqual(activitiesOf(['activity:DOWNLOAD,LIST,UPLOAD', 'activity:LIST,UPLOAD,DELETE']), [
      'UPLOAD',
      'LIST',
    ]);
    assert.equal(activitiesOf([]).length, 7);
    assert.equal(parseCaveat('ip:not-an-address'), null);
    const seconds: [string, number | null][] = [
      ['PT1H', 3600],
      ['PT60M', 3600],
      ['P7D', 604800],
      ['P1W', 604800],
      ['P1DT1H1M1.5S', 90061.5],
      ['pt30s', 30],
      ['P1Y', null],
      ['PT', null],
      ['P', null],
      ['PT-1H', null],
      ['1H', null],
    ];
    for (const [text, expected] of seconds) assert.equal(durationSeconds(text), expected, text);
  });
});
