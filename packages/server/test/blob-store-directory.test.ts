import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDirectoryStore } from '../src/blobs/directory.ts';
import { blobStoreConformance } from './blob-store-suite.ts';

blobStoreConformance('directory', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'repoman-blobs-'));
  return {
    store: createDirectoryStore(dir),
    sibling: async () => createDirectoryStore(dir),
    dispose: () => rm(dir, { recursive: true, force: true }),
  };
});
