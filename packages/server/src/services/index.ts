import type { HashingPool } from '../blobs/hashing.ts';
import type { BlobStore } from '../blobs/store.ts';
import type { Db } from '../db/connect.ts';
import { createBytesService, type UploadPolicy } from './bytes.ts';
import { type ConversionSettings, createConversionService } from './conversions.ts';
import { createGroupService } from './groups.ts';
import { createIdentityService } from './identity.ts';
import { createImageService } from './images.ts';
import { createResumableService, type ResumablePolicy } from './resumable.ts';
import { createUserService } from './users.ts';

export function createServices(deps: {
  db: Db;
  store: BlobStore;
  policy: UploadPolicy & ResumablePolicy;
  hashing: HashingPool;
  conversions: ConversionSettings;
}) {
  const bytes = createBytesService(deps);
  return {
    identity: createIdentityService(deps),
    users: createUserService(deps),
    groups: createGroupService(deps),
    images: createImageService(deps),
    bytes,
    resumable: createResumableService({ ...deps, bytes }),
    conversions: createConversionService({ ...deps, bytes, settings: deps.conversions }),
  };
}

export type Services = ReturnType<typeof createServices>;
