import type { HashingPool } from '../blobs/hashing.ts';
import type { BlobStore } from '../blobs/store.ts';
import type { Db } from '../db/connect.ts';
import { createBytesService, type UploadPolicy } from './bytes.ts';
import { createGroupService } from './groups.ts';
import { createIdentityService } from './identity.ts';
import { createImageService } from './images.ts';
import { createUserService } from './users.ts';

export function createServices(deps: {
  db: Db;
  store: BlobStore;
  policy: UploadPolicy;
  hashing: HashingPool;
}) {
  return {
    identity: createIdentityService(deps),
    users: createUserService(deps),
    groups: createGroupService(deps),
    images: createImageService(deps),
    bytes: createBytesService(deps),
  };
}

export type Services = ReturnType<typeof createServices>;
