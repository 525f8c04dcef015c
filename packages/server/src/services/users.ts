/** Users: who may see, create, change and delete accounts, and what each sees of the others. */
import type { LinkIdentityBody, TokenIdentity } from '@repoman/core';
import {
  ADMINS_GROUP,
  type CreateUserBody,
  isPermission,
  type ModifyUserBody,
  type Permission,
  RepomanError,
  USERS_GROUP,
} from '@repoman/core';
import {
  type Actor,
  canChangeMembers,
  canCreateUser,
  canDeleteUser,
  canModifyUser,
  canSeeUserDetails,
  type UserField,
  type UserTarget,
} from '../authz.ts';
import { type BlobStore, deleteBlobsQuietly } from '../blobs/store.ts';
import { addMember, findGroupByName, permissionsOfGroups } from '../db/groups-dal.ts';
import type { Db } from '../db/schema.ts';
import { isTokenOnlyDn } from '../db/tokens-dal.ts';
import type { UserRow, UserWithGroups } from '../db/users-dal.ts';
import * as users from '../db/users-dal.ts';
import { blobKeysOfOwner, lockImagesOfOwner, usageOfOwners } from '../db/versions-dal.ts';
import { normalizeDn } from '../pki/names.ts';
import {
  checkedAccountName,
  emptyToNull,
  guardService,
  keepingAnActiveAdmin,
  nowIso,
  type PageOf,
  type PageRequest,
  requireUserRow,
  splitNames,
} from './common.ts';
import type { TokenService } from './tokens.ts';

/** A user as one actor may see them: private fields only for the user and admins. */
export interface UserView {
  name: string;
  fullName: string | null;
  groups: string[];
  private?: {
    /** Null for a user made from a token identity, who has no certificate yet. */
    dn: string | null;
    issuerDn: string | null;
    email: string | null;
    suspended: boolean;
    permissions: string[];
    quota: number | null;
    usage: number;
    created: string;
    modified: string;
  };
}

export function checkedDn(text: string): string {
  try {
    return normalizeDn(text);
  } catch (error) {
    throw new RepomanError('invalid_dn', (error as Error).message);
  }
}

function checkedEmail(email: string | null | undefined): string | null | undefined {
  const value = emptyToNull(email);
  if (value && !/^[^\s@]+@[^\s@]+$/.test(value)) {
    throw new RepomanError('invalid_field', `Invalid email address '${value}'`, {
      details: { field: 'email' },
    });
  }
  return value;
}

/** A unique-constraint race on users means the name or the DN was taken meanwhile. */
const userConflict = (target: string) => (/dn/.test(target) ? 'dn_in_use' : 'user_exists');

const asPermissions = (names: string[]) => new Set(names.filter(isPermission) as Permission[]);

export function createUserService(deps: {
  db: Db;
  /** Deletes a removed user's blobs. */
  store: Pick<BlobStore, 'delete'>;
  /** The quota of users created from now on (users.default_quota); null or absent: none. */
  defaultQuota?: number | null | undefined;
  /** Told once a change to who someone is has committed, so that the next request sees it (`identity.forget`). */
  identitiesChanged: () => Promise<void>;
  /** The token identities linked to users (services/tokens.ts). */
  tokens: Pick<TokenService, 'identitiesOf' | 'link' | 'unlink'>;
}) {
  const { db, store, identitiesChanged } = deps;

  const requireUser = (name: string) => requireUserRow(db, name);

  async function targetOf(row: UserRow): Promise<UserTarget> {
    const [groups, permissions] = await Promise.all([
      users.groupsOfUsers(db, [row.id]),
      users.permissionsOfUser(db, row.id),
    ]);
    return {
      id: row.id,
      isAdmin: (groups.get(row.id) ?? []).includes(ADMINS_GROUP),
      permissions: asPermissions(permissions),
    };
  }

  async function view(actor: Actor, rows: UserWithGroups[]): Promise<UserView[]> {
    const detailed = new Set(rows.filter((row) => canSeeUserDetails(actor, row)).map((row) => row.id));
    const usage = await usageOfOwners(db, [...detailed]);
    return rows.map((row) => {
      const base: UserView = { name: row.name, fullName: row.full_name, groups: row.groupNames };
      if (!detailed.has(row.id)) return base;
      return {
        ...base,
        private: {
          dn: isTokenOnlyDn(row.dn) ? null : row.dn,
          issuerDn: row.issuer_dn ?? null,
          email: row.email,
          suspended: Boolean(row.suspended),
          permissions: row.permissionNames,
          quota: row.quota,
          usage: usage.get(row.id) ?? 0,
          created: row.created,
          modified: row.modified,
        },
      };
    });
  }

  async function viewById(actor: Actor, id: number): Promise<UserView> {
    const row = await users.findUserWithGroupsById(db, id);
    if (!row) throw new RepomanError('user_not_found', 'The user was deleted meanwhile');
    return (await view(actor, [row]))[0] as UserView;
  }

  /**
   * Who holds a DN is private: only admins learn the name. (Emails are not unique: a user's email is a contact
   * address they give, which identifies nobody, and a refusal would tell them whose an address is.)
   */
  async function assertDnFree(actor: Actor, q: Db, dn: string, exceptId?: number) {
    const holder = await users.findUserByDn(q, dn);
    if (holder && holder.id !== exceptId) {
      throw new RepomanError(
        'dn_in_use',
        `The DN ${dn} already belongs to ${actor.isAdmin ? `user '${holder.name}'` : 'another user'}`,
      );
    }
  }

  return guardService(
    {
      async get(actor: Actor, name: string): Promise<UserView> {
        // one query for the user, their groups and permissions (whoami asks this at every call)
        const row = await users.findUserWithGroups(db, name);
        if (!row) throw new RepomanError('user_not_found', `No user '${name}'`);
        return (await view(actor, [row]))[0] as UserView;
      },

      async list(actor: Actor, page: PageRequest): Promise<PageOf<UserView>> {
        const { rows, total } = await users.listUsers(db, page);
        return { items: await view(actor, rows), total };
      },

      async create(actor: Actor, body: CreateUserBody): Promise<UserView> {
        if (!canCreateUser(actor))
          throw new RepomanError('forbidden', 'Creating users needs the user_create permission');
        const name = checkedAccountName('user', body.user_name);
        const dnText = body.client_dn ?? body.cert_dn;
        if (!dnText) {
          throw new RepomanError('invalid_field', 'client_dn (the certificate subject DN) is required', {
            details: {
              field: 'client_dn',
            },
          });
        }
        const dn = checkedDn(dnText);
        const issuerDn = body.issuer_dn ? checkedDn(body.issuer_dn) : null;
        if (issuerDn && !actor.isAdmin) {
          throw new RepomanError('forbidden', 'Only admins may say which CA issues a user’s certificate');
        }
        const email = checkedEmail(body.email);
        const groupNames = [...new Set([USERS_GROUP, ...splitNames(body.groups)])];

        const row = await db.transaction().execute(async (trx) => {
          if (await users.findUserByName(trx, name))
            throw new RepomanError('user_exists', `A user '${name}' already exists`);
          await assertDnFree(actor, trx, dn);
          const groups = [];
          for (const groupName of groupNames) {
            const group = await findGroupByName(trx, groupName);
            if (!group)
              throw new RepomanError('invalid_field', `No group '${groupName}' (in groups)`, {
                details: {
                  field: 'groups',
                },
              });
            groups.push(group);
          }
          const perms = await permissionsOfGroups(
            trx,
            groups.map((g) => g.id),
          );
          for (const group of groups) {
            const permissions = [...asPermissions(perms.get(group.id) ?? [])];
            if (group.name !== USERS_GROUP && !canChangeMembers(actor, { name: group.name, permissions })) {
              throw new RepomanError('forbidden', `You may not add members to the group '${group.name}'`);
            }
          }
          const now = nowIso();
          const row = await users.insertUser(trx, {
            name,
            dn,
            issuer_dn: issuerDn,
            full_name: emptyToNull(body.full_name) ?? null,
            email: email ?? null,
            suspended: body.suspended ?? false,
            quota: deps.defaultQuota ?? null,
            created: now,
            modified: now,
          });
          for (const group of groups) await addMember(trx, group.id, row.id);
          return row;
        });
        await identitiesChanged(); // the DN may have been remembered as nobody's
        return viewById(actor, row.id);
      },

      async modify(actor: Actor, name: string, body: ModifyUserBody): Promise<UserView> {
        const target = await requireUser(name);
        const patch: Partial<UserRow> = {};
        // Only what changes counts: sending back unchanged fields (e.g. a GET's JSON) needs no extra right.
        if (body.user_name !== undefined && body.user_name !== target.name)
          patch.name = checkedAccountName('user', body.user_name);
        const dnText = body.client_dn ?? body.cert_dn;
        if (dnText !== undefined) {
          const dn = checkedDn(dnText);
          if (dn !== target.dn) patch.dn = dn;
        }
        if (body.issuer_dn !== undefined) {
          const issuerDn = body.issuer_dn ? checkedDn(body.issuer_dn) : null;
          if (issuerDn !== (target.issuer_dn ?? null)) patch.issuer_dn = issuerDn;
        }
        if (body.full_name !== undefined) {
          const fullName = emptyToNull(body.full_name) ?? null;
          if (fullName !== target.full_name) patch.full_name = fullName;
        }
        if (body.email !== undefined) {
          const email = checkedEmail(body.email) ?? null;
          if (email !== target.email) patch.email = email;
        }
        if (body.suspended !== undefined && body.suspended !== Boolean(target.suspended))
          patch.suspended = body.suspended;
        if (body.quota !== undefined && body.quota !== target.quota) patch.quota = body.quota;

        const fieldOf: Record<string, UserField> = {
          name: 'user_name',
          dn: 'client_dn',
          issuer_dn: 'issuer_dn',
          full_name: 'full_name',
          email: 'email',
          suspended: 'suspended',
          quota: 'quota',
        };
        // Only those who may see a user's private fields may send them back unchanged; for anyone else every
        // field sent counts, or 200-versus-403 would tell whether a guessed DN or email is right.
        const sent = (
          [
            ['user_name', body.user_name],
            ['client_dn', dnText],
            ['issuer_dn', body.issuer_dn],
            ['full_name', body.full_name],
            ['email', body.email],
            ['suspended', body.suspended],
            ['quota', body.quota],
          ] as const
        )
          .filter(([, value]) => value !== undefined)
          .map(([field]) => field as UserField);
        const fields = canSeeUserDetails(actor, target)
          ? Object.keys(patch).map((k) => fieldOf[k] as UserField)
          : sent;
        if (fields.length === 0) return viewById(actor, target.id);
        if (!canModifyUser(actor, await targetOf(target), fields)) {
          throw new RepomanError(
            'forbidden',
            actor.id === target.id
              ? 'You may change only your own full_name and email'
              : `You may not modify user '${name}' (needs user_modify, and admins or users with permissions you lack need an admin)`,
          );
        }
        if (patch.name !== undefined && (await users.findUserByName(db, patch.name))) {
          throw new RepomanError('user_exists', `A user '${patch.name}' already exists`);
        }
        if (patch.dn !== undefined) await assertDnFree(actor, db, patch.dn, target.id);
        if (patch.suspended && target.id === actor.id)
          throw new RepomanError('conflict', 'You cannot suspend yourself');
        patch.modified = nowIso();
        // As if one request came after the other: a change to a user renamed meanwhile finds no user.
        const update = (q: Db) => users.updateUserIfNamed(q, target.id, target.name, patch);
        const updated = patch.suspended
          ? await db
              .transaction()
              .execute((trx) => keepingAnActiveAdmin(trx, `Suspending '${name}'`, () => update(trx)))
          : await update(db);
        if (!updated) throw new RepomanError('user_not_found', `No user '${name}'`);
        await identitiesChanged();
        return viewById(actor, target.id);
      },

      /** The token identities linked to a user (the user and admins). */
      async identities(actor: Actor, name: string): Promise<TokenIdentity[]> {
        const target = await requireUser(name);
        if (!canSeeUserDetails(actor, target))
          throw new RepomanError('forbidden', `Only ${name} and admins may see ${name}'s identities`);
        return deps.tokens.identitiesOf(target.id);
      },

      /**
       * Links an issuer's subject to a user, as changing their DN is allowed (user_modify over users who hold no
       * more, or an admin). Not to oneself by naming it: a user proves an identity by signing in with it
       * (`linkOffered`).
       */
      async linkIdentity(actor: Actor, name: string, body: LinkIdentityBody): Promise<TokenIdentity> {
        const target = await requireUser(name);
        if (actor.id === target.id && !actor.isAdmin)
          throw new RepomanError(
            'forbidden',
            'Link your own identity by signing in with its issuer in a browser that presents your certificate, then linking it on the Account page (POST /api/whoami/identities)',
          );
        if (!canModifyUser(actor, await targetOf(target), ['client_dn']))
          throw new RepomanError('forbidden', `You may not change who '${name}' is (as their DN)`);
        const linked = await deps.tokens.link(target.id, body.issuer, body.subject);
        await identitiesChanged();
        return linked;
      },

      /** Links the identity the caller presented beside their certificate (a token, or a browser session). */
      async linkOffered(
        actor: Actor,
        offered: { issuer: string; subject: string } | null,
      ): Promise<TokenIdentity> {
        if (!offered)
          throw new RepomanError(
            'bad_request',
            'No identity to link: sign in with its issuer in this browser, starting from a page that has your certificate (the Account page)',
          );
        const linked = await deps.tokens.link(actor.id, offered.issuer, offered.subject);
        await identitiesChanged();
        return linked;
      },

      /** Unlinks one of a user's identities: the user themselves, or who may change their DN. */
      async unlinkIdentity(
        actor: Actor,
        name: string,
        id: number,
      ): Promise<{ issuer: string; subject: string }> {
        const target = await requireUser(name);
        if (actor.id !== target.id && !canModifyUser(actor, await targetOf(target), ['client_dn']))
          throw new RepomanError('forbidden', `You may not change who '${name}' is (as their DN)`);
        const gone = await deps.tokens.unlink(target.id, id);
        await identitiesChanged();
        return gone;
      },

      async remove(actor: Actor, name: string): Promise<void> {
        const target = await requireUser(name);
        if (!canDeleteUser(actor, await targetOf(target))) {
          throw new RepomanError(
            'forbidden',
            `You may not delete user '${name}' (needs user_delete, and admins or users with permissions you lack need an admin)`,
          );
        }
        if (target.id === actor.id) throw new RepomanError('conflict', 'You cannot delete your own account');
        // Images, versions, memberships and shares go with the user (ON DELETE CASCADE), then their bytes.
        const blobs = await db.transaction().execute((trx) =>
          keepingAnActiveAdmin(trx, `Deleting '${name}'`, async () => {
            await lockImagesOfOwner(trx, target.id); // uploads finishing now land before this or find no image
            const keys = await blobKeysOfOwner(trx, target.id);
            await users.deleteUser(trx, target.id);
            return keys;
          }),
        );
        await identitiesChanged();
        await deleteBlobsQuietly(store, blobs);
      },

      requireUser,
    },
    userConflict,
  );
}

export type UserService = ReturnType<typeof createUserService>;
