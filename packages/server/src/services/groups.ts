/** Groups: membership and permissions, with the rules that stop users from promoting themselves. */
import {
  ADMINS_GROUP,
  type CreateGroupBody,
  isPermission,
  type ModifyGroupBody,
  type Permission,
  RepomanError,
} from '@repoman/core';
import {
  type Actor,
  canChangeMembers,
  canChangePermission,
  canCreateGroup,
  canDeleteGroup,
  canRenameGroup,
  type GroupTarget,
} from '../authz.ts';
import type { Db } from '../db/connect.ts';
import type { GroupRow } from '../db/groups-dal.ts';
import * as groups from '../db/groups-dal.ts';
import { findUserByName } from '../db/users-dal.ts';
import { guardService, nowIso, type PageOf, type PageRequest } from './common.ts';
import { checkedAccountName, splitNames } from './users.ts';

export interface GroupView {
  name: string;
  protected: boolean;
  permissions: string[];
  users: string[];
  created: string;
  modified: string;
}

function checkedPermission(name: string): Permission {
  if (!isPermission(name)) throw new RepomanError('permission_not_found', `No permission '${name}'`);
  return name;
}

export function createGroupService(deps: { db: Db }) {
  const { db } = deps;

  async function requireGroup(name: string): Promise<GroupRow> {
    const group = await groups.findGroupByName(db, name);
    if (!group) throw new RepomanError('group_not_found', `No group '${name}'`);
    return group;
  }

  async function target(group: GroupRow): Promise<GroupTarget> {
    const perms = await groups.permissionsOfGroups(db, [group.id]);
    return {
      name: group.name,
      permissions: (perms.get(group.id) ?? []).filter(isPermission) as Permission[],
    };
  }

  async function view(rows: GroupRow[]): Promise<GroupView[]> {
    const ids = rows.map((r) => r.id);
    const [members, perms] = await Promise.all([
      groups.membersOfGroups(db, ids),
      groups.permissionsOfGroups(db, ids),
    ]);
    return rows.map((row) => ({
      name: row.name,
      protected: Boolean(row.protected),
      permissions: perms.get(row.id) ?? [],
      users: members.get(row.id) ?? [],
      created: row.created,
      modified: row.modified,
    }));
  }

  const viewOne = async (row: GroupRow) => (await view([row]))[0] as GroupView;

  async function requireMember(name: string) {
    const user = await findUserByName(db, name);
    if (!user) throw new RepomanError('user_not_found', `No user '${name}'`);
    return user;
  }

  async function touch(group: GroupRow) {
    await groups.updateGroup(db, group.id, { modified: nowIso() });
  }

  return guardService(
    {
      async list(page: PageRequest, memberId?: number): Promise<PageOf<GroupView>> {
        const { rows, total } = await groups.listGroups(db, page, memberId);
        return { items: await view(rows), total };
      },

      async get(name: string): Promise<GroupView> {
        return viewOne(await requireGroup(name));
      },

      async create(actor: Actor, body: CreateGroupBody): Promise<GroupView> {
        if (!canCreateGroup(actor))
          throw new RepomanError('forbidden', 'Creating groups needs the group_create permission');
        const name = checkedAccountName('group', body.name);
        const permissions = [...new Set(splitNames(body.permissions).map(checkedPermission))];
        for (const p of permissions) {
          if (!canChangePermission(actor, { name, permissions: [] }, p)) {
            throw new RepomanError(
              'forbidden',
              `You may not grant the permission '${p}', which you do not hold`,
            );
          }
        }
        const memberNames = [...new Set(splitNames(body.users))];
        if (memberNames.length > 0 && !canChangeMembers(actor, { name, permissions })) {
          throw new RepomanError('forbidden', 'Adding members needs the group_modify_membership permission');
        }
        const row = await db.transaction().execute(async (trx) => {
          if (await groups.findGroupByName(trx, name))
            throw new RepomanError('group_exists', `A group '${name}' already exists`);
          const now = nowIso();
          const row = await groups.insertGroup(trx, { name, protected: false, created: now, modified: now });
          for (const p of permissions) await groups.addPermission(trx, row.id, p);
          for (const member of memberNames) {
            const user = await findUserByName(trx, member);
            if (!user) throw new RepomanError('invalid_field', `No user '${member}' (in users)`);
            await groups.addMember(trx, row.id, user.id);
          }
          return row;
        });
        return viewOne(row);
      },

      async modify(actor: Actor, name: string, body: ModifyGroupBody): Promise<GroupView> {
        const group = await requireGroup(name);
        if (body.name !== undefined && body.name !== group.name) {
          if (!canRenameGroup(actor, await target(group))) {
            throw new RepomanError('forbidden', `Renaming groups needs the group_modify permission`);
          }
          if (group.protected)
            throw new RepomanError(
              'group_protected',
              `The group '${name}' is protected and cannot be renamed`,
            );
          const newName = checkedAccountName('group', body.name);
          if (await groups.findGroupByName(db, newName)) {
            throw new RepomanError('group_exists', `A group '${newName}' already exists`);
          }
          await groups.updateGroup(db, group.id, { name: newName, modified: nowIso() });
        }
        return viewOne((await groups.findGroupByName(db, body.name ?? name)) as GroupRow);
      },

      async remove(actor: Actor, name: string): Promise<void> {
        const group = await requireGroup(name);
        if (!canDeleteGroup(actor, await target(group))) {
          throw new RepomanError('forbidden', 'Deleting groups needs the group_delete permission');
        }
        if (group.protected)
          throw new RepomanError('group_protected', `The group '${name}' is protected and cannot be deleted`);
        await groups.deleteGroup(db, group.id);
      },

      async addMember(actor: Actor, name: string, userName: string): Promise<GroupView> {
        const group = await requireGroup(name);
        if (!canChangeMembers(actor, await target(group))) {
          throw new RepomanError('forbidden', `You may not change the members of '${name}'`);
        }
        const user = await requireMember(userName);
        await groups.addMember(db, group.id, user.id);
        await touch(group);
        return viewOne(group);
      },

      async removeMember(actor: Actor, name: string, userName: string): Promise<GroupView> {
        const group = await requireGroup(name);
        if (!canChangeMembers(actor, await target(group))) {
          throw new RepomanError('forbidden', `You may not change the members of '${name}'`);
        }
        const user = await requireMember(userName);
        await db.transaction().execute(async (trx) => {
          await groups.removeMember(trx, group.id, user.id);
          if (group.name === ADMINS_GROUP) {
            const left = await groups.membersOfGroups(trx, [group.id]);
            if ((left.get(group.id) ?? []).length === 0) {
              throw new RepomanError('conflict', 'The last member of admins cannot be removed');
            }
          }
        });
        await touch(group);
        return viewOne(group);
      },

      async addPermission(actor: Actor, name: string, permission: string): Promise<GroupView> {
        const group = await requireGroup(name);
        const p = checkedPermission(permission);
        if (!canChangePermission(actor, await target(group), p)) {
          throw new RepomanError('forbidden', `You may not grant '${p}' to '${name}'`);
        }
        await groups.addPermission(db, group.id, p);
        await touch(group);
        return viewOne(group);
      },

      async removePermission(actor: Actor, name: string, permission: string): Promise<GroupView> {
        const group = await requireGroup(name);
        const p = checkedPermission(permission);
        if (!canChangePermission(actor, await target(group), p)) {
          throw new RepomanError('forbidden', `You may not revoke '${p}' from '${name}'`);
        }
        await groups.removePermission(db, group.id, p);
        await touch(group);
        return viewOne(group);
      },

      requireGroup,
    },
    'group_exists',
  );
}

export type GroupService = ReturnType<typeof createGroupService>;
