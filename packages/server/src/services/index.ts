import type { Db } from '../db/connect.ts';
import { createGroupService } from './groups.ts';
import { createIdentityService } from './identity.ts';
import { createImageService } from './images.ts';
import { createUserService } from './users.ts';

export function createServices(deps: { db: Db }) {
  return {
    identity: createIdentityService(deps),
    users: createUserService(deps),
    groups: createGroupService(deps),
    images: createImageService(deps),
  };
}

export type Services = ReturnType<typeof createServices>;
