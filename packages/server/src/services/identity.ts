/** Turns a verified certificate identity (the end-entity DN) into the acting user, or a clear refusal. */
import { ADMINS_GROUP, isPermission, type Permission, RepomanError } from '@repoman/core';
import type { Actor } from '../authz.ts';
import type { Db } from '../db/connect.ts';
import { findUserByDn, groupsOfUsers, permissionsOfUser } from '../db/users-dal.ts';
import { guardService } from './common.ts';

export interface CertificateIdentity {
  dn: string;
  limited: boolean;
}

export function createIdentityService(deps: { db: Db }) {
  const { db } = deps;
  return guardService({
    async actorFor(identity: CertificateIdentity): Promise<Actor> {
      const user = await findUserByDn(db, identity.dn);
      if (!user) {
        throw new RepomanError(
          'unknown_certificate',
          `No Repoman user has the certificate DN ${identity.dn}; send this DN to a Repoman administrator`,
          { dn: identity.dn },
        );
      }
      if (user.suspended) throw new RepomanError('user_suspended', `The account ${user.name} is suspended`);
      const [groups, permissions] = await Promise.all([
        groupsOfUsers(db, [user.id]),
        permissionsOfUser(db, user.id),
      ]);
      const groupNames = new Set(groups.get(user.id) ?? []);
      return {
        id: user.id,
        name: user.name,
        isAdmin: groupNames.has(ADMINS_GROUP),
        permissions: new Set(permissions.filter(isPermission) as Permission[]),
        groups: groupNames,
        limited: identity.limited,
      };
    },
  });
}

export type IdentityService = ReturnType<typeof createIdentityService>;
