/**
 * Range requests (RFC 9110 §14): one range is a 206 with `Content-Range`; several are a 206 of
 * `multipart/byteranges`, as davix's vector reads and ROOT's readers ask for them, written part by part as
 * the store reads each one (nothing is buffered). Each trap named:
 *
 * - **Invalid syntax** anywhere in the header: the whole header is ignored and the image sent whole, as RFC
 *   9110 §14.2 says of a ranges-specifier it cannot parse (not a 416).
 * - **Unsatisfiable ranges** among satisfiable ones are dropped; only when none is left is it a 416.
 * - **Amplification**: 1,000 overlapping ranges of a 10 GB image would be a 10 TB answer. The ranges' count
 *   is bounded (MAX_RANGES), and so is the bytes they add up to (the image's size), which any reader that
 *   does not read a byte twice stays within; beyond either, a 416 with `too_many_ranges`.
 * - **Order**: parts go out in the order asked, as readers that map parts back to their requests expect.
 */
import { randomBytes } from 'node:crypto';
import { RepomanError } from '@repoman/core';
import type { ByteRange } from '../blobs/store.ts';

/** More ranges than this in one request are refused (davix asks for at most a few hundred at a time). */
export const MAX_RANGES = 1000;

/** The header's ranges, satisfiable ones only; null to send the whole image; 'unsatisfiable' for a 416. */
export function parseRanges(header: string | undefined, size: number): ByteRange[] | null | 'unsatisfiable' {
  if (!header) return null;
  const match = /^\s*bytes\s*=\s*(.*)$/i.exec(header);
  if (!match) return null; // another unit: ignored
  const specs = (match[1] as string).split(',').map((spec) => spec.trim());
  const ranges: ByteRange[] = [];
  for (const spec of specs) {
    if (spec === '') continue; // RFC 9110's list syntax allows empty elements
    const parts = /^(\d*)-(\d*)$/.exec(spec);
    if (!parts || (parts[1] === '' && parts[2] === '')) return null;
    if (parts[1] === '') {
      const suffix = Number(parts[2]);
      if (suffix > 0 && size > 0) ranges.push({ start: Math.max(0, size - suffix), end: size - 1 });
      continue;
    }
    const start = Number(parts[1]);
    if (parts[2] !== '' && Number(parts[2]) < start) return null; // invalid: the header is ignored
    if (start >= size) continue; // unsatisfiable: dropped
    ranges.push({ start, end: parts[2] === '' ? size - 1 : Math.min(Number(parts[2]), size - 1) });
  }
  if (specs.length > MAX_RANGES)
    throw new RepomanError(
      'too_many_ranges',
      `The request asks for ${specs.length} ranges; one answer carries at most ${MAX_RANGES}`,
      { details: { ranges: specs.length, limit: MAX_RANGES } },
    );
  if (ranges.length === 0) return 'unsatisfiable';
  const bytes = ranges.reduce((sum, range) => sum + range.end - range.start + 1, 0);
  if (ranges.length > 1 && bytes > size)
    throw new RepomanError(
      'too_many_ranges',
      `The ranges add up to ${bytes} bytes, more than the image's ${size}: ask for each byte once`,
      { details: { bytes, size } },
    );
  return ranges;
}

/** The pieces of a multipart/byteranges answer: its type, its exact length, and each part's head. */
export interface Multipart {
  contentType: string;
  length: number;
  /** What goes before each part's bytes. */
  heads: string[];
  /** What ends the body. */
  tail: string;
}

export function multipart(ranges: ByteRange[], size: number, partType: string): Multipart {
  const boundary = randomBytes(16).toString('hex');
  const heads = ranges.map(
    (range, i) =>
      `${i === 0 ? '' : '\r\n'}--${boundary}\r\nContent-Type: ${partType}\r\nContent-Range: bytes ${range.start}-${range.end}/${size}\r\n\r\n`,
  );
  const tail = `\r\n--${boundary}--\r\n`;
  const length =
    heads.reduce((sum, head) => sum + Buffer.byteLength(head), 0) +
    ranges.reduce((sum, range) => sum + range.end - range.start + 1, 0) +
    Buffer.byteLength(tail);
  return { contentType: `multipart/byteranges; boundary=${boundary}`, length, heads, tail };
}
