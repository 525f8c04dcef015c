/**
 * The names of what an image's bytes can be, shared by the server (what it inspects, accepts and converts),
 * its configuration and its clients: disk formats, compressions, the features an admin may allow, and the
 * digests an upload is checked against.
 */

/** Disk formats Repoman stores and serves. */
export type DiskFormat = 'raw' | 'qcow2' | 'vmdk' | 'vpc' | 'vhdx' | 'vdi' | 'iso';
/** Compressions an upload may arrive in (unpacked on ingest when asked). */
export type Compression = 'gzip' | 'xz' | 'zstd' | 'bzip2';

/** Every format the inspector names: what uploaders may declare and admins may allow. */
export const FORMATS = [
  'raw',
  'qcow2',
  'vmdk',
  'vpc',
  'vhdx',
  'vdi',
  'iso',
  'ova',
  'gzip',
  'xz',
  'zstd',
  'bzip2',
] as const;
export type ImageFormat = (typeof FORMATS)[number];

/**
 * Features that are not unsafe for the host but that a repository may not want, refused unless an admin
 * allows them: `encrypted` (a qcow2 encrypted with AES or LUKS boots only where its key is given).
 */
export const FEATURES = ['encrypted'] as const;

/** Digests a client may declare for an upload, which is then checked against them. */
export const DIGEST_ALGORITHMS = ['sha256', 'md5', 'sha512'] as const;
export type DigestAlgorithm = (typeof DIGEST_ALGORITHMS)[number];
/**
 * Every digest a version or variant records: SHA-256 and ADLER32 (the grid's checksum) of every upload, MD5
 * and SHA-512 as configured.
 */
export const DIGEST_NAMES = ['sha256', 'md5', 'sha512', 'adler32'] as const;
export type DigestName = (typeof DIGEST_NAMES)[number];
/** Digests of an image's bytes, as lowercase hex (ADLER32 as its 8 digits). */
export type Digests = Partial<Record<DigestName, string>> & { sha256: string };
/**
 * Digests the bytes must have, as lowercase hex: those a client declared for what it sends (Content-Digest,
 * Repr-Digest, Content-MD5), or those the source of a third-party copy gave (ADLER32 among them).
 */
export type ExpectedDigests = Partial<Record<DigestName, string>>;
