/**
 * Versions and variants as the services hand them to HTTP: the API's shapes without the URLs, which only the
 * route can make (they depend on the address the client reached).
 */
import type { Variant, VariantFormat, Version } from '@repoman/core';
import type { VariantRow } from '../../db/jobs-dal.ts';
import type { VersionRow } from '../../db/versions-dal.ts';

export type VariantView = Omit<Variant, 'file_url'>;

export type VersionView = Omit<Version, 'file_url' | 'variants'> & { variants: VariantView[] };

export const variantView = (row: VariantRow): VariantView => ({
  format: row.format as VariantFormat,
  compressed: Boolean(row.compressed),
  size: row.size,
  digests: { sha256: row.sha256, md5: row.md5, sha512: row.sha512, adler32: row.adler32 },
  virtual_size: row.virtual_size,
  created: row.created,
});

export const versionView = (
  row: VersionRow,
  current: number,
  variants: readonly VariantRow[],
): VersionView => ({
  version: row.version,
  current: row.version === current,
  size: row.size,
  digests: { sha256: row.sha256, md5: row.md5, sha512: row.sha512, adler32: row.adler32 },
  disk_format: row.disk_format,
  virtual_size: row.virtual_size,
  compression: row.compression,
  partition_table: row.partition_table,
  created: row.created,
  variants: variants.map(variantView),
});
