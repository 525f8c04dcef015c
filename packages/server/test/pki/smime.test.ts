// S/MIME image list signatures against the real `openssl smime`: ours verify there, openssl's verify here.
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { derToPem } from '../../src/pki/certificate.ts';
import {
  children,
  type DerNode,
  decodeDer,
  encodeContext,
  encodeExplicit,
  encodeSequence,
  sequence,
} from '../../src/pki/der.ts';
import {
  type Credential,
  createCA,
  createProxy,
  createUserCertificate,
  keyPem,
} from '../../src/pki/issue.ts';
import { parseSmime, SmimeError, signSmime, smimeSigningProblem, verifySmime } from '../../src/pki/smime.ts';
import { put, type RunResult, run, tempDir } from './fixtures.ts';

const OPENSSL = '/usr/bin/openssl';
const openssl = (args: string[]): Promise<RunResult> => run(OPENSSL, args);

// one PKI for the whole file: EC keys (fast) but for one RSA signer
const ca = createCA('/C=CA/O=Grid/CN=Test Grid CA');
const subCa = createCA('/C=CA/O=Grid/CN=Test Grid Sub CA', { issuer: ca });
const alice = createUserCertificate(ca, '/C=CA/O=Grid/OU=phys.example.org/CN=Alice Example');
const bob = createUserCertificate(subCa, '/C=CA/O=Grid/CN=Bob Example');
const rsaUser = createUserCertificate(ca, '/C=CA/O=Grid/CN=Rita RSA', { keyKind: 'rsa' });
const clientOnly = createUserCertificate(ca, '/C=CA/O=Grid/CN=Client Only', {
  issue: { extKeyUsage: ['clientAuth'] },
});
const anyEku = createUserCertificate(ca, '/C=CA/O=Grid/CN=Any Usage', {
  issue: { extKeyUsage: ['anyExtendedKeyUsage'] },
});

const LIST = `${JSON.stringify(
  {
    'hv:imagelist': {
      'dc:identifier': '6d3f2c2e-6b8c-4b55-9a54-3f0c4c1c8f11',
      'dc:title': 'Images of the Grid Café',
      'hv:images': [{ 'hv:image': { 'dc:title': 'Debian 13', 'sl:checksum:sha512': 'ab'.repeat(64) } }],
    },
  },
  null,
  2,
)}\n`;

const dir = await tempDir('repoman-smime-');
const caFile = join(dir, 'ca.pem');
const caDir = join(dir, 'certificates');
let counter = 0;

before(async () => {
  await put(dir, 'ca.pem', derToPem(ca.cert.der), 0o644);
  await mkdir(caDir);
  // -CApath looks the CA up under its OpenSSL subject hash: ask openssl itself for it
  const hash = await openssl(['x509', '-hash', '-noout', '-in', caFile]);
  assert.equal(hash.code, 0, hash.stderr);
  await put(caDir, `${hash.stdout.trim()}.0`, derToPem(ca.cert.der), 0o644);
});

/** Line ends aside: what openssl outputs or verifySmime returns is the content in CRLF form. */
const lf = (bytes: Buffer | string): string => Buffer.from(bytes).toString('utf8').replace(/\r\n/g, '\n');

async function writeMessage(message: string | Buffer): Promise<string> {
  return put(dir, `msg-${++counter}.smime`, message);
}

/** `openssl smime -verify` with the default purpose: the exit status and the content it wrote. */
async function opensslVerify(message: string | Buffer, trust: string[] = ['-CAfile', caFile]) {
  const path = await writeMessage(message);
  const out = `${path}.out`;
  const result = await openssl(['smime', '-verify', ...trust, '-in', path, '-out', out]);
  return { ...result, content: result.code === 0 ? await readFile(out) : undefined };
}

/** A message signed by `openssl smime -sign` (clear-signed, the default) with the credential's cert and key. */
async function opensslSign(signer: Credential, content: string, extra: string[] = []): Promise<Buffer> {
  const name = `signer-${++counter}`;
  const cert = await put(dir, `${name}.pem`, derToPem(signer.cert.der));
  const key = await put(dir, `${name}.key`, keyPem(signer));
  const input = await put(dir, `${name}.json`, content);
  const out = join(dir, `${name}.smime`);
  const result = await openssl([
    'smime',
    '-sign',
    '-signer',
    cert,
    '-inkey',
    key,
    '-in',
    input,
    '-out',
    out,
    ...extra,
  ]);
  assert.equal(result.code, 0, result.stderr);
  return readFile(out);
}

/** The message with its signature part replaced by `der`. */
function withSignature(message: string, der: Buffer): string {
  const lines = (b: Buffer) => (b.toString('base64').match(/.{1,64}/g) ?? []).join('\n');
  const old = lines(parseSmime(message).signature);
  assert.ok(message.includes(old));
  return message.replace(old, lines(der));
}

function assertRefused(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof SmimeError, `expected an SmimeError, got ${String(err)}`);
    assert.match(err.message, pattern);
    return true;
  });
}

describe('signSmime: openssl smime -verify accepts our messages', () => {
  for (const [kind, signer] of [
    ['EC', alice],
    ['RSA', rsaUser],
    ['EC under an intermediate CA', bob],
  ] as const) {
    test(`${kind} signer, -CAfile and -CApath`, async () => {
      const message = signSmime(LIST, signer);
      assert.match(message, /^MIME-Version: 1\.0\n/);
      assert.match(
        message,
        /Content-Type: multipart\/signed; protocol="application\/x-pkcs7-signature"; micalg="sha-256"; boundary="----[0-9A-F]{32}"/,
      );
      for (const trust of [
        ['-CAfile', caFile],
        ['-CApath', caDir],
      ]) {
        const result = await opensslVerify(message, trust);
        assert.equal(result.code, 0, result.stderr);
        assert.match(result.stderr, /Verification successful/);
        assert.equal(lf(result.content as Buffer), LIST);
      }
      const verified = verifySmime(message);
      assert.equal(lf(verified.content), LIST);
      assert.equal(verified.content.toString('utf8'), LIST.replace(/\n/g, '\r\n'));
      assert.equal(verified.signer.subject.oneline, signer.cert.subject.oneline);
      assert.deepEqual(
        verified.certificates.map((c) => c.subject.oneline).sort(),
        [signer.cert, ...signer.chain].map((c) => c.subject.oneline).sort(),
      );
      assert.ok(verified.signingTime && Math.abs(verified.signingTime.getTime() - Date.now()) < 60_000);
    });
  }

  test('content without a final newline, with CRLF line ends already, and as a Buffer', async () => {
    for (const content of ['{"a": 1}', '{"a": 1,\r\n "b": 2}\r\n', Buffer.from('{"é": true}\n')]) {
      const message = signSmime(content, alice);
      const result = await opensslVerify(message);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(lf(result.content as Buffer), lf(content));
      assert.equal(lf(verifySmime(message).content), lf(content));
    }
  });

  test('a minified list: one line of 500 KB (openssl reads lines in pieces of 1023 bytes)', async () => {
    const images = Array.from({ length: 3000 }, (_, i) => ({
      id: i,
      title: `image ${i} é`,
      sum: 'ab'.repeat(64),
    }));
    const list = JSON.stringify({ images });
    const result = await opensslVerify(signSmime(list, alice));
    assert.equal(result.code, 0, result.stderr);
    assert.equal((result.content as Buffer).toString('utf8'), list);
    assert.equal(verifySmime(await opensslSign(alice, list)).content.toString('utf8'), list);
  });

  test('content that is empty or not UTF-8 text is refused', () => {
    assertRefused(() => signSmime(Buffer.from([0x7b, 0xff, 0x7d]), alice), /not UTF-8/);
    assertRefused(() => signSmime('', alice), /empty/);
  });
});

describe('verifySmime: messages openssl smime -sign makes', () => {
  for (const [name, signer, extra] of [
    ['EC, SHA-256', alice, []],
    ['EC, -md sha512', alice, ['-md', 'sha512']],
    ['RSA, SHA-256', rsaUser, []],
    ['RSA, -md sha512', rsaUser, ['-md', 'sha512']],
    ['EC, -crlfeol', alice, ['-crlfeol']],
  ] as const) {
    test(name, async () => {
      const message = await opensslSign(signer, LIST, [...extra]);
      const verified = verifySmime(message);
      assert.equal(verified.content.toString('utf8'), LIST.replace(/\n/g, '\r\n'));
      assert.equal(verified.signer.subject.oneline, signer.cert.subject.oneline);
      assert.equal(verified.signer.fingerprint256, signer.cert.fingerprint256);
      assert.ok(verified.signingTime instanceof Date);
      // the same message as a string, and with every line end turned into CRLF (a mail client did it)
      assert.equal(lf(verifySmime(message.toString('utf8')).content), LIST);
      const crlf = Buffer.from(message.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1');
      assert.equal(lf(verifySmime(crlf).content), LIST);
      // and into bare LF (dos2unix, git): the digest is over the canonical CRLF form, for openssl as here
      const bare = Buffer.from(message.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');
      assert.equal(lf(verifySmime(bare).content), LIST);
      assert.equal((await opensslVerify(bare)).code, 0);
    });
  }

  test('-binary signs the raw bytes: they are what is returned', async () => {
    const message = await opensslSign(alice, LIST, ['-binary']);
    assert.equal(verifySmime(message).content.toString('utf8'), LIST);
  });

  test('an intermediate CA given with -certfile is returned among the certificates', async () => {
    const chain = await put(dir, 'chain.pem', derToPem(subCa.cert.der));
    const message = await opensslSign(bob, LIST, ['-certfile', chain]);
    const verified = verifySmime(message);
    assert.equal(verified.signer.subject.oneline, bob.cert.subject.oneline);
    assert.deepEqual(verified.certificates.map((c) => c.subject.oneline).sort(), [
      bob.cert.subject.oneline,
      subCa.cert.subject.oneline,
    ]);
  });

  test('-nocerts: the signer cannot be found', async () => {
    const message = await opensslSign(alice, LIST, ['-nocerts']);
    assertRefused(() => verifySmime(message), /not in the message.*-nocerts/);
  });
});

describe('verifySmime: tampering is refused', () => {
  test('one byte of the content', async () => {
    for (const message of [signSmime(LIST, alice), (await opensslSign(alice, LIST)).toString('utf8')]) {
      const tampered = message.replace('Debian 13', 'Debian 12');
      assert.notEqual(tampered, message);
      assertRefused(() => verifySmime(tampered), /does not match the signed digest/);
      const result = await opensslVerify(tampered);
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /digest failure|Verification failure/);
    }
  });

  test('one byte of the signature', async () => {
    for (const signer of [alice, rsaUser]) {
      const message = signSmime(LIST, signer);
      const der = Buffer.from(parseSmime(message).signature);
      // the SignerInfo's signature OCTET STRING ends the SignedData: its last byte is the signature's
      der[der.length - 1] = (der[der.length - 1] as number) ^ 0x01;
      const tampered = withSignature(message, der);
      assertRefused(() => verifySmime(tampered), /signature does not verify/);
      assert.notEqual((await opensslVerify(tampered)).code, 0);
    }
  });

  test('another certificate swapped in', () => {
    const message = signSmime(LIST, alice);
    const [typeNode, wrapped] = sequence(decodeDer(parseSmime(message).signature), 'ContentInfo');
    const parts = sequence(children(wrapped as DerNode)[0], 'SignedData');
    const rebuild = (certs: Buffer) =>
      encodeSequence(
        (typeNode as DerNode).raw,
        encodeExplicit(
          0,
          encodeSequence(...parts.map((p) => (p.tag === 0xa0 ? encodeContext(0, certs) : p.raw))),
        ),
      );
    // same issuer and serial number, another key: found as the signer, and its key does not verify
    const twin = createUserCertificate(ca, alice.cert.subject.rdns, { serial: alice.cert.serial });
    assertRefused(
      () => verifySmime(withSignature(message, rebuild(twin.cert.der))),
      /signature does not verify/,
    );
    // another certificate altogether: the signer is missing
    assertRefused(() => verifySmime(withSignature(message, rebuild(bob.cert.der))), /not in the message/);
  });

  test('a signature part that is not a DER CMS SignedData', () => {
    const message = signSmime(LIST, alice);
    assertRefused(() => verifySmime(withSignature(message, Buffer.from([0x30, 0x80, 0, 0]))), /indefinite/);
    assertRefused(() => verifySmime(withSignature(message, Buffer.from('not DER'))), /not a valid CMS/);
  });
});

describe('smimeSigningProblem: openssl smime -verify purpose check', () => {
  test('a user certificate from createUserCertificate can sign', () => {
    assert.equal(smimeSigningProblem(alice.cert), undefined);
    assert.equal(smimeSigningProblem(rsaUser.cert), undefined);
  });

  test('extendedKeyUsage without emailProtection, anyExtendedKeyUsage included: openssl agrees', async () => {
    for (const cred of [clientOnly, anyEku]) {
      assert.match(smimeSigningProblem(cred.cert) ?? '', /extendedKeyUsage lacks emailProtection/);
      // signSmime does not refuse: openssl, the consumer, does
      const result = await opensslVerify(signSmime(LIST, cred));
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /unsuitable certificate purpose/);
    }
  });

  test('keyUsage without digitalSignature or nonRepudiation', () => {
    const encipherOnly = createUserCertificate(ca, '/C=CA/O=Grid/CN=Encipherment', {
      issue: { keyUsage: ['keyAgreement'] },
    });
    assert.match(smimeSigningProblem(encipherOnly.cert) ?? '', /keyUsage/);
  });

  test('grid proxies are refused: consumers trust end-entity DNs', async () => {
    for (const type of ['rfc3820', 'draft', 'legacy'] as const) {
      const proxy = createProxy(alice, { type });
      assert.match(smimeSigningProblem(proxy.cert) ?? '', /grid proxy.*end-entity DNs/);
    }
    const result = await opensslVerify(signSmime(LIST, createProxy(alice)));
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /proxy certificates not allowed/);
  });
});

describe('parseSmime', () => {
  test('returns the content exactly, without the line break before the boundary', async () => {
    const message = await opensslSign(alice, '{"a": 1}\n');
    const { content, signature } = parseSmime(message);
    assert.equal(content.toString('latin1'), '{"a": 1}\r\n');
    assert.equal(signature[0], 0x30);
  });

  test('unquoted boundary, folded Content-Type, mail headers, CRLF headers, a preamble of several lines', () => {
    const message = signSmime(LIST, alice);
    const boundary = /boundary="([^"]+)"/.exec(message)?.[1] as string;
    const variant = `Received: from a\nReceived: from b\n${message}`
      .replace(`boundary="${boundary}"`, `boundary=${boundary}`)
      .replace('; micalg', ';\n\tmicalg')
      .replace('This is an S/MIME signed message', 'This is an S/MIME signed message\n--not the boundary\n')
      .replace(/\r?\n/g, '\r\n');
    assert.equal(lf(verifySmime(variant).content), LIST);
  });

  test('refuses garbage, a missing boundary, an opaque-signed message, another protocol', async () => {
    const message = signSmime(LIST, alice);
    const boundary = /boundary="([^"]+)"/.exec(message)?.[1] as string;
    assertRefused(() => parseSmime('garbage'), /headers do not end/);
    assertRefused(() => parseSmime(Buffer.from([0, 1, 2, 0xff, 10, 10])), /not a MIME header line/);
    assertRefused(() => parseSmime('Subject: hi\n\nhello\n'), /no Content-Type/);
    assertRefused(() => parseSmime(message.replace(`; boundary="${boundary}"`, '')), /without a boundary/);
    assertRefused(
      () => parseSmime(message.replace(`boundary="${boundary}"`, 'boundary="other"')),
      /boundary is not found/,
    );
    assertRefused(
      () => parseSmime(message.replace('pkcs7-signature"', 'pgp-signature"')),
      /only application\/pkcs7-signature/,
    );
    assertRefused(
      () => parseSmime(message.slice(0, message.lastIndexOf(`--${boundary}--`))),
      /closing boundary/,
    );
    const opaque = await opensslSign(alice, LIST, ['-nodetach']);
    assert.match(opaque.toString('latin1'), /application\/x-pkcs7-mime/);
    assertRefused(() => parseSmime(opaque), /opaque-signed/);
    assertRefused(() => verifySmime(opaque), /opaque-signed/);
  });
});
