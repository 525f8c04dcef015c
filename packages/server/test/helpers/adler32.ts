/** ADLER32 (RFC 1950) written out plainly, to check the server's against: 8 lowercase hex digits. */
export function adler32(bytes: Uint8Array): string {
  const MOD = 65521;
  let a = 1;
  let b = 0;
  // 5552 bytes at most between reductions keep the sums exact (zlib's NMAX).
  for (let start = 0; start < bytes.length; start += 5552) {
    const end = Math.min(start + 5552, bytes.length);
    for (let i = start; i < end; i++) {
      a += bytes[i] as number;
      b += a;
    }
    a %= MOD;
    b %= MOD;
  }
  return (b * 65536 + a).toString(16).padStart(8, '0');
}
