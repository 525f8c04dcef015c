/** Users: who may see, create, change and delete accounts, and what each sees of the others. */
import {
  type CreateUserBody,
  checkAccountName,
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
} from '../authz.ts';
import type { Db } from '../db/connect.ts';
import { addMember, findGroupByName, permissionsOfGroups } from '../db/groups-dal.ts';
import type { UserRow } from '../db/users-dal.ts';
import * as users from '../db/users-dal.ts';
import { normalizeDn } from '../pki/names.ts';
import { emptyToNull, guardService, nowIso, type PageOf, type PageRequest } from './common.ts';

/** A user as one actor may see them: private fields only for the user and admins. */
export interface UserView {
  name: string;
  fullName: string | null;
  groups: string[];
  private?: {
    dn: string;
    email: string | null;
    suspended: boolean;
    permissions: string[];
    created: string;
    modified: string;
  };
}

export function checkedAccountName(kind: 'user' | 'group', name: string): string {
  const problem = checkAccountName(name);
  if (problem === 'reserved')
    throw new RepomanError('invalid_name', `'${name}' is a reserved word and cannot name a ${kind}`);
  if (problem) {
    throw new RepomanError(
      'invalid_name',
      `A ${kind} name has 1-64 lowercase letters, digits, '_' or '-' (got '${name}')`,
    );
  }
  return name;
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
  if (value && !/^[^\s@]+@[^\s@]+$/.test(value))
    throw new RepomanError('invalid_field', `Invalid email address '${value}'`);
  return value;
}

export function createUserService(deps: { db: Db }) {
  const { db } = deps;

  async function requireUser(name: string): Promise<UserRow> {
    const user = await users.findUserByName(db, name);
    if (!user) throw new RepomanError('user_not_found', `No user '${name}'`);
    return user;
  }

  async function isAdminUser(userId: number): Promise<boolean> {
    const groups = await users.groupsOfUsers(db, [userId]);
    return (groups.get(userId) ?? []).includes('admins');
  }

  async function view(actor: Actor, rows: UserRow[]): Promise<UserView[]> {
    const groups = await users.groupsOfUsers(
      db,
      rows.map((r) => r.id),
    );
    return Promise.all(
      rows.map(async (row) => {
        const base: UserView = { name: row.name, fullName: row.full_name, groups: groups.get(row.id) ?? [] };
        if (!canSeeUserDetails(actor, row)) return base;
        return {
          ...base,
          private: {
            dn: row.dn,
            email: row.email,
            suspended: Boolean(row.suspended),
            permissions: await users.permissionsOfUser(db, row.id),
            created: row.created,
            modified: row.modified,
          },
        };
      }),
    );
  }

  async function viewOne(actor: Actor, row: UserRow): Promise<UserView> {
    const [one] = await view(actor, [row]);
    return one as UserView;
  }

  async function assertDnFree(q: Db, dn: string, exceptId?: number) {
    const holder = await users.findUserByDn(q, dn);
    if (holder && holder.id !== exceptId)
      throw new RepomanError('dn_in_use', `The DN ${dn} already belongs to user '${holder.name}'`);
  }

  async function assertEmailFree(q: Db, email: string | null | undefined, exceptId?: number) {
    if (!email) return;
    const holder = await users.findUserByEmail(q, email);
    if (holder && holder.id !== exceptId)
      throw new RepomanError('email_in_use', `The email ${email} is already in use`);
  }

  return guardService(
    {
      async get(actor: Actor, name: string): Promise<UserView> {
        return viewOne(actor, await requireUser(name));
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
        if (!dnText)
          throw new RepomanError('invalid_field', 'client_dn (the certificate subject DN) is required');
        const dn = checkedDn(dnText);
        const email = checkedEmail(body.email);
        const groupNames = [...new Set([USERS_GROUP, ...splitNames(body.groups)])];

        return db
          .transaction()
          .execute(async (trx) => {
            if (await users.findUserByName(trx, name))
              throw new RepomanError('user_exists', `A user '${name}' already exists`);
            await assertDnFree(trx, dn);
            await assertEmailFree(trx, email);
            const groups = [];
            for (const groupName of groupNames) {
              const group = await findGroupByName(trx, groupName);
              if (!group) throw new RepomanError('invalid_field', `No group '${groupName}' (in groups)`);
              groups.push(group);
            }
            const perms = await permissionsOfGroups(
              trx,
              groups.map((g) => g.id),
            );
            for (const group of groups) {
              const permissions = (perms.get(group.id) ?? []).filter(isPermission) as Permission[];
              if (group.name !== USERS_GROUP && !canChangeMembers(actor, { name: group.name, permissions })) {
                throw new RepomanError('forbidden', `You may not add members to the group '${group.name}'`);
              }
            }
            const now = nowIso();
            const row = await users.insertUser(trx, {
              name,
              dn,
              full_name: emptyToNull(body.full_name) ?? null,
              email: email ?? null,
              suspended: body.suspended ?? false,
              created: now,
              modified: now,
            });
            for (const group of groups) await addMember(trx, group.id, row.id);
            return row;
          })
          .then((row) => viewOne(actor, row));
      },

      async modify(actor: Actor, name: string, body: ModifyUserBody): Promise<UserView> {
        const target = await requireUser(name);
        const dnText = body.client_dn ?? body.cert_dn;
        const fields = (
          [
            ['user_name', body.user_name],
            ['client_dn', dnText],
            ['full_name', body.full_name],
            ['email', body.email],
            ['suspended', body.suspended],
          ] as const
        )
          .filter(([, v]) => v !== undefined)
          .map(([f]) => f as UserField);
        if (!canModifyUser(actor, { id: target.id, isAdmin: await isAdminUser(target.id) }, fields)) {
          const own = actor.id === target.id;
          throw new RepomanError(
            'forbidden',
            own
              ? 'You may change only your own full_name and email'
              : `You may not modify user '${name}' (needs user_modify; admins only for admins)`,
          );
        }
        const patch: Partial<UserRow> = {};
        if (body.user_name !== undefined && body.user_name !== target.name) {
          patch.name = checkedAccountName('user', body.user_name);
          if (await users.findUserByName(db, patch.name)) {
            throw new RepomanError('user_exists', `A user '${patch.name}' already exists`);
          }
        }
        if (dnText !== undefined) {
          patch.dn = checkedDn(dnText);
          await assertDnFree(db, patch.dn, target.id);
        }
        if (body.full_name !== undefined) patch.full_name = emptyToNull(body.full_name) ?? null;
        if (body.email !== undefined) {
          patch.email = checkedEmail(body.email) ?? null;
          await assertEmailFree(db, patch.email, target.id);
        }
        if (body.suspended !== undefined) {
          if (body.suspended && target.id === actor.id)
            throw new RepomanError('conflict', 'You cannot suspend yourself');
          patch.suspended = body.suspended;
        }
        if (Object.keys(patch).length > 0) {
          patch.modified = nowIso();
          await users.updateUser(db, target.id, patch);
        }
        return viewOne(actor, (await users.findUserById(db, target.id)) as UserRow);
      },

      async remove(actor: Actor, name: string): Promise<void> {
        const target = await requireUser(name);
        if (!canDeleteUser(actor, { id: target.id, isAdmin: await isAdminUser(target.id) })) {
          throw new RepomanError(
            'forbidden',
            `You may not delete user '${name}' (needs user_delete; admins only for admins)`,
          );
        }
        if (target.id === actor.id) throw new RepomanError('conflict', 'You cannot delete your own account');
        // Images, memberships and shares go with the user (ON DELETE CASCADE).
        await users.deleteUser(db, target.id);
      },

      requireUser,
    },
    'user_exists',
  );
}

export type UserService = ReturnType<typeof createUserService>;

/** Group lists arrive as arrays, repeated form fields, or the original client's comma-separated string. */
export function splitNames(values: readonly string[] | undefined): string[] {
  return (values ?? [])
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter((v) => v.length > 0);
}
