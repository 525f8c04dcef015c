/** Digest headers: RFC 9530 `Content-Digest` / `Repr-Digest` (`sha-256=:base64:`) and the older `Content-MD5`. */

import type { DigestAlgorithm, ExpectedDigests } from '@repoman/core';
import { RepomanError } from '@repoman/core';

const RFC9530_NAMES: Record<string, DigestAlgorithm> = {
  'sha-256': 'sha256',
  'sha-512': 'sha512',
  md5: 'md5',
};
const LENGTHS: Record<DigestAlgorithm, number> = { sha256: 32, sha512: 64, md5: 16 };

function decode(algorithm: DigestAlgorithm, base64: string, header: string): string {
  const bytes = Buffer.from(base64, 'base64');
  if (bytes.length !== LENGTHS[algorithm] || !/^[A-Za-z0-9+/]+=*$/.test(base64)) {
    throw new RepomanError('bad_request', `${header}: '${base64}' is not a base64 ${algorithm} digest`);
  }
  return bytes.toString('hex');
}

/** The digests an upload declares; algorithms we do not know are ignored, as RFC 9530 allows. */
export function expectedDigests(headers: Record<string, string | string[] | undefined>): ExpectedDigests {
  const expected: ExpectedDigests = {};
  for (const header of ['content-digest', 'repr-digest']) {
    const value = headers[header];
    if (typeof value !== 'string') continue;
    for (const member of value.split(',')) {
      const match = /^\s*([a-z0-9-]+)\s*=\s*:([^:]*):\s*$/i.exec(member);
      if (!match)
        throw new RepomanError(
          'bad_request',
          `${header}: cannot parse '${member.trim()}' (expected sha-256=:base64:)`,
        );
      const algorithm = RFC9530_NAMES[(match[1] as string).toLowerCase()];
      if (algorithm) expected[algorithm] = decode(algorithm, match[2] as string, header);
    }
  }
  const md5 = headers['content-md5'];
  if (typeof md5 === 'string') expected.md5 = decode('md5', md5.trim(), 'content-md5');
  return expected;
}

/** `sha-256=:…:` for a hex SHA-256, as `Repr-Digest` carries it. */
export const reprDigest = (sha256Hex: string) =>
  `sha-256=:${Buffer.from(sha256Hex, 'hex').toString('base64')}:`;
