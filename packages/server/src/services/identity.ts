/**
 * Turns a verified certificate identity (the end-entity DN and the CA that issued it) into the acting user, or a
 * clear refusal. A user is bound to their DN and to their CA's subject DN (not its key: IGTF CAs roll their keys
 * over under the same name): set by an admin, or at the first login. The same DN from another CA is someone else.
 */
import { ADMINS_GROUP, isPermission, type Permission, RepomanError } from '@repoman/core';
import type { Actor } from '../authz.ts';
import type { Db } from '../db/schema.ts';
import { findUserByTokenIdentity, touchTokenIdentity } from '../db/tokens-dal.ts';
import {
  bindIssuerIfUnbound,
  findUserByDn,
  findUserById,
  findUserByName,
  groupsOfUsers,
  permissionsOfUser,
} from '../db/users-dal.ts';
import { ACTOR_CACHE_MS } from './actor-cache.ts';
import { guardService } from './common.ts';

export interface CertificateIdentity {
  dn: string;
  /** subject DN of the CA that issued the end-entity certificate (proxies resolve to it) */
  issuerDn: string;
  limited: boolean;
}

export { ACTOR_CACHE_MS };

const ACTOR_CACHE_ENTRIES = 1000;

type Account = Omit<Actor, 'limited'>;

export function createIdentityService(deps: { db: Db; cacheMs?: number }) {
  const { db } = deps;
  const cacheMs = deps.cacheMs ?? ACTOR_CACHE_MS;
  /** By DN and issuer: the account, or why there is none, and until when that holds. */
  const cache = new Map<string, { outcome: Account | RepomanError; until: number }>();
  /** Bumped by `forget`: a lookup that began before it does not store what it read. */
  let generation = 0;

  async function accountOf(dn: string, issuerDn: string): Promise<Account> {
    let user = await findUserByDn(db, dn);
    if (user && user.issuer_dn === null) {
      // first login: the CA that vouched for this DN now is the user's CA (unless another login bound one first)
      user = (await bindIssuerIfUnbound(db, user.id, issuerDn))
        ? { ...user, issuer_dn: issuerDn }
        : await findUserByDn(db, dn);
    }
    if (user && user.issuer_dn !== issuerDn) {
      throw new RepomanError(
        'certificate_issuer_mismatch',
        `The certificate for ${dn} was issued by ${issuerDn}, but this user's certificates come from ${user.issuer_dn}; if that CA was renamed, an administrator can re-bind the user`,
        { details: { dn, issuer_dn: issuerDn } },
      );
    }
    if (!user) {
      throw new RepomanError(
        'unknown_certificate',
        `No Repoman user has the certificate DN ${dn}; send this DN to a Repoman administrator`,
        { details: { dn } },
      );
    }
    return accountOfUser(user);
  }

  async function accountOfUser(user: { id: number; name: string; suspended: unknown }): Promise<Account> {
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
    };
  }

  /** The account `key` names, from the cache while it holds, else looked up with `lookUp`. */
  async function cachedAccount(key: string, lookUp: () => Promise<Account>): Promise<Account> {
    const now = Date.now();
    let cached = cache.get(key);
    if (!cached || cached.until <= now) {
      const started = generation;
      const outcome = await lookUp().catch((error: unknown) => {
        if (error instanceof RepomanError) return error;
        throw error; // the database failed: nothing to remember
      });
      cached = { outcome, until: now + cacheMs };
      if (started === generation && cacheMs > 0) {
        if (cache.size >= ACTOR_CACHE_ENTRIES) cache.clear();
        cache.set(key, cached);
      }
    }
    if (cached.outcome instanceof RepomanError) throw cached.outcome;
    return cached.outcome;
  }

  return guardService({
    async actorFor(identity: CertificateIdentity): Promise<Actor> {
      const account = await cachedAccount(`${identity.dn}\n${identity.issuerDn}`, () =>
        accountOf(identity.dn, identity.issuerDn),
      );
      return { ...account, limited: identity.limited };
    },

    /** The user a capability carries the rights of, as they are now (suspended: refused). */
    async actorForUser(id: number): Promise<Actor> {
      const account = await cachedAccount(`#${id}`, async () => {
        const user = await findUserById(db, id);
        if (!user) throw new RepomanError('user_not_found', `No user #${id}`);
        return accountOfUser(user);
      });
      return { ...account, limited: false };
    },

    /** The user a token identity (issuer and subject) is linked to, or null; remembered as DNs are. */
    async userOfTokenIdentity(issuer: string, subject: string): Promise<number | null> {
      try {
        const account = await cachedAccount(`${issuer}\n${subject}\n#token`, async () => {
          const user = await findUserByTokenIdentity(db, issuer, subject);
          if (!user) throw new RepomanError('unknown_token_identity');
          await touchTokenIdentity(db, user.identity_id, new Date().toISOString());
          return accountOfUser(user);
        });
        return account.id;
      } catch (error) {
        if (error instanceof RepomanError && error.code === 'unknown_token_identity') return null;
        throw error;
      }
    },

    /** A user named in the configuration (an issuer's service user), as they are now. */
    async actorForUserName(name: string): Promise<Actor> {
      const account = await cachedAccount(`@${name}`, async () => {
        const user = await findUserByName(db, name);
        if (!user)
          throw new RepomanError(
            'unknown_token_identity',
            `The user ${name}, whom this issuer's tokens act as, does not exist; an administrator must create it`,
          );
        return accountOfUser(user);
      });
      return { ...account, limited: false };
    },

    /** Something may have changed who someone is: look everyone up again. */
    async forget(): Promise<void> {
      generation++;
      cache.clear();
    },
  });
}

export type IdentityService = ReturnType<typeof createIdentityService>;
