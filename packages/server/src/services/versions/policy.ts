/** What the versions service is configured with, and what passes between its steps. */
import type { DigestName, Digests } from '@repoman/core';
import type { ImageRef } from '../image-access.ts';

export interface UploadPolicy {
  /** Largest image accepted, in bytes. */
  maxImageSize: number;
  /** Versions kept per image; older blobs are deleted. */
  keepVersions: number;
  /** Digests computed for every upload besides SHA-256 (ADLER32, and MD5 and SHA-512 as configured). */
  digests: DigestName[];
  /** Formats uploads may be in. */
  allowedFormats: ReadonlySet<string>;
  /** Features refused by default that this repository takes (core's FEATURES). */
  allowedFeatures: ReadonlySet<string>;
  /**
   * Downloads are answered with a redirect to a presigned URL valid this many seconds, where the store can
   * make one (an object store); absent: the server streams the bytes itself.
   */
  redirectSeconds?: number | undefined;
}

/** An upload decided from its headers: to which image, whose quota it counts against, what was declared. */
export interface AdmittedUpload {
  /** The image; null for one that does not exist yet, which publishing the upload makes (a PUT to a free name). */
  imageId: number | null;
  ownerId: number;
  ref: ImageRef;
  declaredLength: number | undefined;
  /** The format the uploader said the image is in, if they did. */
  declaredFormat?: string | undefined;
  /** Store a compressed upload decompressed. */
  decompress?: boolean;
  /** The resumable upload it comes from: its own reservation is not counted against the quota. */
  uploadId?: string | undefined;
}

/** What an upload became. */
export interface ReceivedVersion {
  version: number;
  size: number;
  digests: Digests;
  /** The image's first version. */
  created: boolean;
  /** Publishing the upload made the image itself (a PUT to a free name). */
  createdImage: boolean;
}
