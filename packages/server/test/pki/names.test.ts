import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decodeDer, Tag } from '../../src/pki/der.ts';
import { generateKey, issueCertificate } from '../../src/pki/issue.ts';
import {
  encodeName,
  formatOneline,
  formatRfc2253,
  identityDn,
  nameKey,
  normalizeDn,
  parseDnString,
  parseName,
  type Rdn,
  subjectHash,
  subjectHashOld,
} from '../../src/pki/names.ts';
import { openssl, put, tempDir } from './fixtures.ts';

const keys = generateKey();
const selfSigned = (subject: string | Rdn[]) =>
  issueCertificate({ subject, publicKey: keys.publicKey, signingKey: keys.privateKey });

const allAscii = Buffer.from(Array.from({ length: 127 }, (_, i) => i + 1));
const latin1High = Buffer.from(Array.from({ length: 128 }, (_, i) => i + 128));

// awkward names, as Rdn lists so the exact encoding is under control
const AWKWARD: { name: string; rdns: Rdn[]; roundTrip: boolean }[] = [
  {
    name: 'plain grid DN',
    rdns: parseDnString('/C=CA/O=Grid/OU=phys.example.org/CN=Alice Example'),
    roundTrip: true,
  },
  {
    name: 'multi-valued RDN with / + , ; " < > \\ = inside values',
    rdns: [
      [{ type: 'DC', value: 'org' }],
      [{ type: 'DC', value: 'example' }],
      [
        { type: 'CN', value: 'host/foo.example.org' },
        { type: 'UID', value: 'a+b,c;d"e<f>g\\h=i' },
      ],
    ],
    roundTrip: true,
  },
  {
    name: 'non-ASCII (René, €, an astral character)',
    rdns: [[{ type: 'O', value: 'Grid' }], [{ type: 'CN', value: 'René Ünïcødé €𝄞' }]],
    roundTrip: true,
  },
  {
    name: 'several CNs and an emailAddress',
    rdns: parseDnString('/C=CA/O=Grid/CN=Alice/CN=123456789/CN=proxy/emailAddress=alice@example.org'),
    roundTrip: true,
  },
  {
    name: "leading '#', leading and trailing spaces",
    rdns: [
      [{ type: 'CN', value: ' #lead and trail ' }],
      [
        { type: 'O', value: '#x' },
        { type: 'OU', value: ' y ' },
      ],
    ],
    roundTrip: false, // the slash form's trailing space is trimmed on input
  },
  {
    name: 'every ASCII byte, UTF8String',
    rdns: [[{ type: 'CN', value: allAscii.toString('latin1'), tag: Tag.UTF8_STRING, bytes: allAscii }]],
    roundTrip: true,
  },
  {
    name: 'bytes 0x80-0xff in a T61String',
    rdns: [[{ type: 'CN', value: latin1High.toString('latin1'), tag: Tag.T61_STRING, bytes: latin1High }]],
    roundTrip: false, // RFC 2253 shows them as UTF-8, the oneline form as raw bytes
  },
  {
    name: 'BMPString and NumericString with a trailing space',
    rdns: [
      [{ type: 'CN', value: 'René €', tag: Tag.BMP_STRING }],
      [{ type: 'serialNumber', value: '123 ', tag: Tag.NUMERIC_STRING }],
    ],
    roundTrip: false,
  },
  {
    name: 'unknown attribute type and the less common known ones',
    rdns: [
      [{ type: '1.2.3.4', value: 'custom' }],
      [
        { type: 'street', value: 'x' },
        { type: 'L', value: 'y' },
        { type: 'ST', value: 'z' },
        { type: 'title', value: 't' },
      ],
      [{ type: 'GN', value: 'Al' }],
      [{ type: 'CN', value: '' }],
    ],
    roundTrip: true,
  },
];

const dir = await tempDir();

describe('formats and hashes against the openssl CLI', () => {
  // all openssl runs start at once; each test awaits its own
  const reference = AWKWARD.map(async (c, i) => {
    const issued = selfSigned(c.rdns);
    const file = await put(dir, `name${i}.pem`, issued.pem);
    const out = async (...args: string[]) => {
      const r = await openssl(['x509', '-in', file, '-noout', ...args]);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.replace(/\n$/, '').split('\n');
    };
    // openssl prints in option order: subject, then the two hashes
    const [[compat, hash, hashOld], [rfc2253], [printed]] = await Promise.all([
      out('-subject', '-nameopt', 'compat', '-hash', '-subject_hash_old'),
      out('-subject', '-nameopt', 'RFC2253'),
      out('-subject'),
    ]);
    return { issued, compat, hash, hashOld, rfc2253, printed: printed as string };
  });

  for (const [i, c] of AWKWARD.entries()) {
    test(c.name, async () => {
      const { issued, compat, hash, hashOld, rfc2253, printed } = await (reference[
        i
      ] as (typeof reference)[number]);
      const parsed = parseName(issued.parsed.subject.der);
      // ours is OpenSSL's oneline form but for a literal backslash, which we escape as '\\'
      assert.equal(formatOneline(parsed).replaceAll('\\\\', '\\'), compat?.replace(/^subject=/, ''));
      assert.equal(formatRfc2253(parsed), rfc2253?.replace(/^subject=/, ''));
      assert.equal(subjectHash(issued.parsed.subject.der), hash);
      assert.equal(subjectHash(parsed), hash);
      assert.equal(subjectHashOld(issued.parsed.subject.der), hashOld);
      if (c.roundTrip) {
        // what the API relies on: both printed forms normalize to the oneline form
        assert.equal(normalizeDn(formatRfc2253(parsed)), formatOneline(parsed));
        if (formatOneline(parsed).endsWith('=')) {
          // typed in slash form, an empty last value is taken for a truncated DN
          assert.throws(() => normalizeDn(formatOneline(parsed)), /the last value is empty/);
        } else {
          assert.equal(normalizeDn(formatOneline(parsed)), formatOneline(parsed));
        }
        // what users paste: `openssl x509 -noout -subject` with its default format
        assert.equal(normalizeDn(printed), formatOneline(parsed), printed);
      }
    });
  }

  test('canonically equal names hash alike in openssl and have equal keys here', async () => {
    const variants = [
      '/C=CA/O=Grid/CN=Alice  Example',
      '/C=ca/O=GRID/CN=  alice example ',
      '/C=CA/O=Grid/CN=Alice\tExample',
    ];
    const different = [
      '/C=CA/O=Grid/CN=Alice Exampl',
      '/C=CA/O=Grid+CN=Alice Example',
      '/C=CA/O=Grid/CN=ALICE ÉXAMPLE',
    ];
    const names = [...variants, ...different];
    const hashes = await Promise.all(
      names.map(async (dn, i) => {
        const file = await put(dir, `canon${i}.pem`, selfSigned(dn).pem);
        const hash = (await openssl(['x509', '-in', file, '-noout', '-hash'])).stdout.trim();
        assert.equal(subjectHash(parseDnString(dn)), hash, dn);
        return hash;
      }),
    );
    const keys = names.map((dn) => nameKey(parseDnString(dn)));
    for (let i = 1; i < variants.length; i++) {
      assert.equal(keys[i], keys[0], variants[i]);
      assert.equal(hashes[i], hashes[0]);
    }
    for (let i = variants.length; i < keys.length; i++) {
      assert.notEqual(keys[i], keys[0], different[i - variants.length]);
      assert.notEqual(hashes[i], hashes[0]);
    }
  });
});

describe('parseDnString', () => {
  const alice = [
    [{ type: 'C', value: 'CA' }],
    [{ type: 'O', value: 'Grid' }],
    [{ type: 'CN', value: 'Alice' }],
  ];

  test('slash and RFC 4514 forms give the same RDNs', () => {
    assert.deepEqual(parseDnString('/C=CA/O=Grid/CN=Alice'), alice);
    assert.deepEqual(parseDnString('CN=Alice,O=Grid,C=CA'), alice);
    assert.deepEqual(parseDnString('  CN=Alice, O=Grid , C=CA \n'), alice);
    assert.deepEqual(parseDnString('CN=Alice;O=Grid;C=CA'), alice);
    assert.deepEqual(parseDnString('commonName=Alice,organizationName=Grid,countryName=CA'), alice);
    assert.deepEqual(parseDnString('OID.2.5.4.3=Alice,2.5.4.10=Grid,c=CA'), alice);
  });

  test('escapes, quotes and hex values', () => {
    const cn = (dn: string) => parseDnString(dn).at(-1)?.[0]?.value;
    assert.equal(cn('CN=a\\,b\\+c\\=d\\\\e\\"f\\;g\\<h\\>,O=x'), 'a,b+c=d\\e"f;g<h>');
    assert.equal(cn('CN=Ren\\C3\\A9'), 'René');
    assert.equal(cn('CN="Smith, John"'), 'Smith, John');
    assert.equal(cn('CN=\\ spaced\\ '), ' spaced ');
    assert.equal(cn('CN=\\#hash'), '#hash');
    assert.equal(cn('/CN=Ren\\xC3\\xA9'), 'René');
    assert.equal(cn('/CN=a\\/b\\+c'), 'a/b+c');
    assert.equal(cn('/CN=back\\slash'), 'back\\slash');
    const hex = parseDnString('CN=#0C03616263')[0]?.[0];
    assert.equal(hex?.value, 'abc');
    assert.equal(hex?.tag, Tag.UTF8_STRING);
  });

  test('unescaped / and + inside slash-form values (OpenSSL 1.x printed them so)', () => {
    assert.deepEqual(parseDnString('/DC=org/CN=host/foo.example.org'), [
      [{ type: 'DC', value: 'org' }],
      [{ type: 'CN', value: 'host/foo.example.org' }],
    ]);
    assert.deepEqual(parseDnString('/O=Grid/CN=a+b'), [
      [{ type: 'O', value: 'Grid' }],
      [{ type: 'CN', value: 'a+b' }],
    ]);
  });

  test('multi-valued RDNs in both forms', () => {
    const expected = [
      [{ type: 'O', value: 'Grid' }],
      [
        { type: 'CN', value: 'Alice' },
        { type: 'UID', value: 'alice' },
      ],
    ];
    assert.deepEqual(parseDnString('/O=Grid/CN=Alice+UID=alice'), expected);
    // RFC 2253 output lists AVAs in reverse, like the RDNs
    assert.deepEqual(parseDnString('UID=alice+CN=Alice,O=Grid'), expected);
  });

  test('aliases map to OpenSSL short names', () => {
    assert.equal(parseDnString('E=a@b.c,CN=x')[1]?.[0]?.type, 'emailAddress');
    assert.equal(parseDnString('/emailAddress=a@b.c')[0]?.[0]?.type, 'emailAddress');
    assert.equal(parseDnString('givenName=Al')[0]?.[0]?.type, 'GN');
    assert.equal(parseDnString('domainComponent=org')[0]?.[0]?.type, 'DC');
    assert.equal(parseDnString('userid=al')[0]?.[0]?.type, 'UID');
  });

  test('junk is refused with a clear message', () => {
    const bad: [string, RegExp][] = [
      ['', /empty/],
      ['   ', /empty/],
      ['/', /empty/],
      ['Alice Example', /no '='/],
      ['/CN', /no '='/],
      ['/Foo=bar', /unknown attribute type/],
      ['Foo=bar,CN=x', /unknown attribute type 'Foo'/],
      ['CN=a,,O=b', /expected 'type='/],
      ['CN="unterminated', /unterminated/],
      ['CN=#zz', /bad hex/],
      ['CN=#0C05ab', /bad hex/],
      ['=x', /expected/],
    ];
    for (const [text, why] of bad) assert.throws(() => normalizeDn(text), why, JSON.stringify(text));
  });
});

describe('normalizeDn', () => {
  test('both forms normalize to the oneline form', () => {
    const oneline = '/C=CA/O=Grid/OU=phys.example.org/CN=Alice Example';
    assert.equal(normalizeDn(oneline), oneline);
    assert.equal(normalizeDn('CN=Alice Example,OU=phys.example.org,O=Grid,C=CA'), oneline);
    assert.equal(normalizeDn('CN=Alice Example, OU=phys.example.org, O=Grid, C=CA'), oneline);
    assert.equal(normalizeDn('/C=CA/O=Grid/CN=René'), '/C=CA/O=Grid/CN=Ren\\xC3\\xA9');
    assert.equal(normalizeDn('CN=Ren\\C3\\A9,O=Grid,C=CA'), '/C=CA/O=Grid/CN=Ren\\xC3\\xA9');
    assert.equal(normalizeDn('CN=host/x.org,DC=org'), '/DC=org/CN=host\\/x.org');
    assert.equal(normalizeDn('/DC=org/CN=host/x.org'), '/DC=org/CN=host\\/x.org');
    // openssl x509 -subject output, default and compat
    assert.equal(normalizeDn('subject=C = CA, O = Grid, OU = phys.example.org, CN = Alice Example'), oneline);
    assert.equal(normalizeDn('subject=/C=CA/O=Grid/OU=phys.example.org/CN=Alice Example'), oneline);
  });

  test('multi-valued RDNs come out in DER order, whatever order they were written in', () => {
    const cert = selfSigned('/O=Grid/UID=alice+CN=Alice');
    const fromCert = formatOneline(cert.parsed.subject.rdns);
    assert.equal(fromCert, '/O=Grid/CN=Alice+UID=alice');
    assert.equal(normalizeDn('/O=Grid/UID=alice+CN=Alice'), fromCert);
    assert.equal(normalizeDn('/O=Grid/CN=Alice+UID=alice'), fromCert);
    assert.equal(normalizeDn('CN=Alice+UID=alice,O=Grid'), fromCert);
  });

  test('a literal backslash is escaped, so a CN holding "\\xC3\\xA9" is not the CN José', () => {
    // OpenSSL prints both as /CN=Jos\xC3\xA9: two certificates, one user
    const literal = selfSigned([[{ type: 'CN', value: 'Jos\\xC3\\xA9' }]]).parsed.subject;
    const accented = selfSigned([[{ type: 'CN', value: 'José' }]]).parsed.subject;
    assert.equal(identityDn(accented.rdns), '/CN=Jos\\xC3\\xA9');
    assert.equal(identityDn(literal.rdns), '/CN=Jos\\\\xC3\\\\xA9');
    assert.notEqual(identityDn(literal.rdns), identityDn(accented.rdns));
    // each stored string reads back to its own name, and only to it
    for (const name of [literal, accented]) {
      const stored = identityDn(name.rdns);
      assert.equal(normalizeDn(stored), stored);
      assert.equal(nameKey(parseDnString(stored)), name.key);
    }
    // the grammar: '\\' a backslash, '\/' and '\+' the characters, '\=' an '=', '\xHH' a byte
    assert.deepEqual(
      parseDnString('/CN=a\\\\b\\/c\\+d\\=e=f\\x41').map((rdn) => rdn.map((ava) => ava.value)),
      [['a\\b/c+d=e=fA']],
    );
    assert.equal(normalizeDn('/CN=a\\\\b\\/c\\+d\\=e=f\\x41'), '/CN=a\\\\b\\/c\\+d=e=fA');
  });

  test('a T61String name keeps its raw bytes through the oneline form', () => {
    const rdns = [
      [{ type: 'CN', value: 'Ren\xe9', tag: Tag.T61_STRING, bytes: Buffer.from([0x52, 0x65, 0x6e, 0xe9]) }],
    ];
    const oneline = formatOneline(rdns);
    assert.equal(oneline, '/CN=Ren\\xE9');
    assert.equal(normalizeDn(oneline), oneline);
    assert.equal(nameKey(parseDnString(oneline)), nameKey(rdns));
  });
});

describe('encodeName', () => {
  test('OpenSSL default string types: PrintableString for C, IA5String for DC and email, UTF8String otherwise', () => {
    const rdns = parseName(encodeName(parseDnString('/C=CA/DC=org/emailAddress=a@b.c/CN=Alice/O=Grid')));
    assert.deepEqual(
      rdns.map((rdn) => rdn[0]?.tag),
      [Tag.PRINTABLE_STRING, Tag.IA5_STRING, Tag.IA5_STRING, Tag.UTF8_STRING, Tag.UTF8_STRING],
    );
    const odd = parseName(encodeName(parseDnString('/C=C*/DC=é')));
    assert.deepEqual(
      odd.map((rdn) => rdn[0]?.tag),
      [Tag.UTF8_STRING, Tag.UTF8_STRING],
    );
  });

  test('parsed names re-encode byte for byte', () => {
    const der = selfSigned(AWKWARD[1]?.rdns as Rdn[]).parsed.subject.der;
    assert.deepEqual(encodeName(parseName(der)), der);
  });

  test('multi-valued RDNs are DER-sorted SETs', () => {
    const der = encodeName(parseDnString('/O=Grid/UID=alice+CN=Alice'));
    const [, second] = parseName(der);
    assert.deepEqual(
      second?.map((a) => a.type),
      ['CN', 'UID'],
    );
    assert.equal(decodeDer(der).tag, Tag.SEQUENCE);
  });
});
