/** The blob store the configuration names. */
import type { ServerConfig } from '../config.ts';
import { createDirectoryStore } from './directory.ts';
import { createDiscardingStore } from './discard.ts';
import type { BlobStore } from './store.ts';

export function openBlobStore(config: Pick<ServerConfig, 'blobStore' | 'blobDir'>): BlobStore {
  return config.blobStore === 'discard' ? createDiscardingStore() : createDirectoryStore(config.blobDir);
}
