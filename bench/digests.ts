/**
 * What each digest an upload computes costs on this machine: Node's own SHA-256, MD5 and SHA-512 (OpenSSL's,
 * as the server uses them) and hash-wasm's ADLER32 (the server's, computed at every upload whatever else is
 * configured), hashing a buffer of random bytes in 1 MiB pieces on one core, as CPU seconds per GB
 * (the process's user and system time, so that time taken by other programs on a busy machine does not count).
 * The best of five rounds: the cost of the hashing itself, without what disturbed it (a virtual machine that
 * reports no steal time counts the time its host takes as CPU time, so a busy moment costs CPU seconds too).
 *
 *   node bench/digests.ts [--size-mib 256]
 */
import { createHash, randomFillSync } from 'node:crypto';
import { parseArgs } from 'node:util';
import { createAdler32 } from 'hash-wasm';

export const DIGESTS = ['sha256', 'md5', 'sha512', 'adler32'] as const;
export type Digest = (typeof DIGESTS)[number];

/** CPU seconds per GB (10^9 bytes) of each digest. */
export type DigestCosts = Record<Digest, number>;

export async function digestCosts(sizeMib = 256): Promise<DigestCosts> {
  const buffer = new Uint8Array(sizeMib * 1024 * 1024);
  for (let at = 0; at < buffer.length; at += 65536) randomFillSync(buffer, at, 65536);
  const piece = 1024 * 1024;
  const costs = {} as DigestCosts;
  const adler32 = await createAdler32();
  for (const digest of DIGESTS) {
    let best = Number.POSITIVE_INFINITY;
    for (let round = 0; round < 5; round++) {
      const before = process.cpuUsage();
      const hash = digest === 'adler32' ? adler32.init() : createHash(digest);
      for (let at = 0; at < buffer.length; at += piece) hash.update(buffer.subarray(at, at + piece));
      hash.digest();
      const used = process.cpuUsage(before);
      best = Math.min(best, (used.user + used.system) / 1e6 / (buffer.length / 1e9));
    }
    costs[digest] = best;
  }
  return costs;
}

/**
 * The digests an upload computes: SHA-256 and ADLER32 (always), or with MD5 and SHA-512 too. Results of runs
 * from before ADLER32 was computed have no cost for it, and their uploads did not pay it.
 */
export function uploadDigestCost(
  costs: Partial<DigestCosts> & Omit<DigestCosts, 'adler32'>,
  every: boolean,
): number {
  const always = costs.sha256 + (costs.adler32 ?? 0);
  return every ? always + costs.md5 + costs.sha512 : always;
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { 'size-mib': { type: 'string' } } });
  const costs = await digestCosts(Number(values['size-mib'] ?? 256));
  console.log('| digest | CPU s/GB | GB/s on one core |\n| --- | --- | --- |');
  for (const digest of DIGESTS)
    console.log(`| ${digest} | ${costs[digest].toFixed(3)} | ${(1 / costs[digest]).toFixed(2)} |`);
}
