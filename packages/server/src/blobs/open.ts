/** The blob store the configuration names. */
import type { ServerConfig } from '../config.ts';
import { createDirectoryStore } from './directory.ts';
import { createDiscardingStore } from './discard.ts';
import { createS3Store } from './s3.ts';
import type { BlobStore } from './store.ts';

/**
 * Opens the configured store, checking that an object store's bucket can be reached (so that a wrong
 * endpoint, bucket or key stops the server at start-up, not at the first upload).
 */
export async function openBlobStore(
  config: Pick<ServerConfig, 'blobStore' | 'blobDir' | 's3'>,
): Promise<BlobStore> {
  if (config.blobStore === 'discard') return createDiscardingStore();
  if (config.blobStore === 'directory') return createDirectoryStore(config.blobDir);
  const { redirectDownloads: _, redirectSeconds: __, ...s3 } = config.s3;
  const store = createS3Store(s3);
  try {
    await store.check();
  } catch (error) {
    const reason = (error as Error).message || (error as Error).name;
    throw new Error(
      `Cannot reach the S3 bucket '${s3.bucket}'${s3.endpoint ? ` at ${s3.endpoint}` : ''}: ${reason}`,
      { cause: error },
    );
  }
  return store;
}
