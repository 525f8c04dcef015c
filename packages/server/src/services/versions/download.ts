/**
 * Downloads: who may read which version of an image, in which format, and everything a cache or a resuming
 * client needs to know about those bytes, as a descriptor. The route turns the descriptor into HTTP; it never
 * sees a row or a blob key.
 */
import { type DigestName, RepomanError } from '@repoman/core';
import { type Actor, canReadImage } from '../../authz.ts';
import type { HashingPool } from '../../blobs/hashing.ts';
import { BlobNotFoundError, type BlobReadable, type BlobStore, type ByteRange } from '../../blobs/store.ts';
import { isEndorsedVersion } from '../../db/endorsements-dal.ts';
import { findVariant } from '../../db/jobs-dal.ts';
import type { Db } from '../../db/schema.ts';
import { findVersion, type VersionRow } from '../../db/versions-dal.ts';
import type { createImageAccess, ImageRef } from '../image-access.ts';
import type { UploadPolicy } from './policy.ts';
import { createStoredDigests, type DigestTarget, type KnownDigests } from './stored-digests.ts';

export interface DownloadOptions {
  /** A kept older version (callers without a certificate get the current one only). */
  version?: number | undefined;
  /** A converted variant of the version (`raw`, `qcow2`, `vmdk`); the version's own format serves it. */
  format?: string | undefined;
}

/** The bytes a download serves, described before any is read. */
export interface Download {
  /** The image's name: the file name a browser saves. */
  fileName: string;
  size: number;
  sha256: string;
  /** The strong validator: the SHA-256 of exactly these bytes, quoted. */
  etag: string;
  /** When these bytes became what the URL serves (an upload, or a rollback), as an ISO date. */
  lastModified: string;
  /** The registered media type of what the bytes are, where one exists; otherwise plain bytes. */
  contentType: string;
  /** `public`: a public image's current version, which shared caches may keep; otherwise `private`. */
  cacheScope: 'public' | 'private';
  /** The bytes, or one range of them; a version pruned since the download was opened is a clean 404. */
  open(range?: ByteRange): Promise<BlobReadable>;
  /**
   * Where the client may fetch the bytes straight from the store, or null when the server serves them itself
   * (redirects off, or a store that cannot make such URLs).
   */
  redirect(headers: { contentDisposition: string }): Promise<string | null>;
  /**
   * The `wanted` digests of these bytes, lowercase hex (ADLER32 as 8 digits). One that is not recorded (ADLER32
   * of bytes stored before it was computed; MD5 or SHA-512 while configured off) is computed by reading the
   * bytes once, and recorded: this may take as long as reading the whole image, and longer while the process
   * reads another (one at a time). Left out if the bytes no longer match their SHA-256.
   */
  digests(wanted: readonly DigestName[]): Promise<KnownDigests>;
}

/** What a download serves: a version, or one of its variants. */
type Served = DigestTarget & Pick<VersionRow, 'size' | 'created' | 'compression' | 'version'>;

function contentType(served: Served): string {
  if (served.compression === 'gzip') return 'application/gzip';
  if (served.compression === 'zstd') return 'application/zstd';
  return 'application/octet-stream';
}

export function createDownloads(deps: {
  db: Db;
  store: Pick<BlobStore, 'read' | 'downloadUrl'>;
  policy: Pick<UploadPolicy, 'redirectSeconds' | 'digests'>;
  access: ReturnType<typeof createImageAccess>;
  hashing: HashingPool;
}) {
  const { db, store, policy, access, hashing } = deps;
  const storedDigests = createStoredDigests({ db, store, hashing, computes: policy.digests });

  /** The image and the version to serve: the current one, or `version` if asked for and still kept. */
  async function openVersion(actor: Actor | null, ref: ImageRef, version?: number) {
    const { row, view, target } = await access.find(actor, ref);
    // Holders of image_modify or image_delete see images their permission reaches, but reading the bytes
    // is for those the image is shared with (and its owner, admins, everyone if it is public).
    if (!canReadImage(actor, target))
      throw new RepomanError(
        'forbidden',
        `${ref.owner}/${ref.name} is not shared with you: you may see it and change it, not download it`,
      );
    if (view.expired)
      throw new RepomanError('image_expired', `${ref.owner}/${ref.name} expired on ${row.expires}`);
    if (row.version === 0)
      throw new RepomanError(
        'image_not_uploaded',
        `No bytes have been uploaded to ${ref.owner}/${ref.name} yet`,
      );
    const wanted = version ?? row.version;
    const found = await findVersion(db, row.id, wanted);
    if (!found)
      throw new RepomanError(
        'version_not_found',
        `${ref.owner}/${ref.name} has no version ${wanted} (any more)`,
      );
    return { image: row, version: found };
  }

  /** A variant is served like a version of its own; asking for the format the version is in serves it. */
  async function servedOf(version: VersionRow, format: string | undefined, ref: ImageRef): Promise<Served> {
    if (
      format === undefined ||
      format === version.disk_format ||
      (format === 'raw' && version.disk_format === 'iso') // an ISO is read as raw
    )
      return { ...version, table: 'image_versions' };
    const variant = await findVariant(db, version.id, format);
    if (!variant)
      throw new RepomanError(
        'variant_not_found',
        `Version ${version.version} of ${ref.owner}/${ref.name} has no ${format} variant; convert it first (repoman convert-image)`,
      );
    return { ...variant, table: 'image_variants', version: version.version, compression: null };
  }

  return async function openDownload(
    actor: Actor | null,
    ref: ImageRef,
    options: DownloadOptions = {},
  ): Promise<Download> {
    // Without a certificate only the current version is served: an older one is not even looked up, so
    // nobody learns which versions are kept.
    const anonymous = actor === null;
    let opened = await openVersion(actor, ref, anonymous ? undefined : options.version);
    const { image } = opened;
    if (anonymous && options.version !== undefined && options.version !== image.version) {
      // Older versions may predate the image's publication, or have been replaced for a reason; one a group
      // endorses is published by its image list, at this pinned URL.
      if (!(await isEndorsedVersion(db, image.id, options.version)))
        throw new RepomanError(
          'certificate_required',
          'Older versions need a certificate; the current one is public',
        );
      opened = await openVersion(actor, ref, options.version);
    }
    const served = await servedOf(opened.version, options.format, ref);
    const type = contentType(served);
    return {
      fileName: image.name,
      size: served.size,
      sha256: served.sha256,
      etag: `"${served.sha256}"`,
      // When these bytes became what this URL serves (an upload, or a rollback), not when they were uploaded.
      lastModified:
        options.version === undefined && served.table === 'image_versions' && image.uploaded
          ? image.uploaded
          : served.created,
      contentType: type,
      cacheScope: image.unauthenticated_access && options.version === undefined ? 'public' : 'private',
      async open(range) {
        try {
          return await store.read(served.blob_key, range);
        } catch (error) {
          // Pruned or removed by fsck since the download was opened.
          if (error instanceof BlobNotFoundError)
            throw new RepomanError('version_not_found', `Version ${served.version} is no longer kept`);
          throw error;
        }
      },
      async redirect({ contentDisposition }) {
        if (!policy.redirectSeconds || !store.downloadUrl) return null;
        return store.downloadUrl(served.blob_key, {
          expiresSeconds: policy.redirectSeconds,
          contentDisposition,
          contentType: type,
        });
      },
      digests: (wanted) => storedDigests(served, wanted),
    };
  };
}
