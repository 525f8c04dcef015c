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
import type { GroupRow } from '../db/groups-dal.ts';
import * as groups from '../db/groups-dal.ts';
import type { Db } from '../db/schema.ts';
import {
  checkedAccountName,
  guardService,
  keepingAnActiveAdmin,
  nowIso,
  type PageOf,
  type PageRequest,
  requireUserRow,
  splitNames,
} from './common.ts';

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

export function createGroupService(deps: {
  db: Db;
  /** Told once a change to a group's name, members or permissions has committed (`identity.forget`). */
  identitiesChanged: () => Promise<void>;
}) {
  const { db, identitiesChanged } = deps;

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

  /** The group as it is now (after a change), or a clean 404 if a concurrent request deleted it. */
  async function viewById(id: number): Promise<GroupView> {
    const row = await groups.findGroupById(db, id);
    if (!row) throw new RepomanError('group_not_found', 'The group was deleted meanwhile');
    return (await view([row]))[0] as GroupView;
  }

  async function changeMembers(
    actor: Actor,
    name: string,
    userName: string,
    add: boolean,
  ): Promise<GroupView> {
    const group = await requireGroup(name);
    const user = await requireUserRow(db, userName);
    if (!canChangeMembers(actor, await target(group), user.id)) {
      throw new RepomanError(
        'forbidden',
        `You may not change the members of '${name}' (admins only for admins, users and yourself; otherwise ` +
          'group_modify_membership, membership of the group, and every permission it grants)',
      );
    }
    await db.transaction().execute(async (trx) => {
      await groups.touchGroup(trx, group.id, nowIso());
      if (add) return groups.addMember(trx, group.id, user.id);
      const remove = () => groups.removeMember(trx, group.id, user.id);
      if (group.name !== ADMINS_GROUP) return remove();
      await keepingAnActiveAdmin(trx, `Removing '${userName}' from admins`, remove);
      const left = await groups.membersOfGroups(trx, [group.id]);
      if ((left.get(group.id) ?? []).length === 0) {
        throw new RepomanError('conflict', 'The last member of admins cannot be removed');
      }
    });
    await identitiesChanged();
    return viewById(group.id);
  }

  async function changePermission(actor: Actor, name: string, permission: string, grant: boolean) {
    const group = await requireGroup(name);
    const p = checkedPermission(permission);
    if (!canChangePermission(actor, await target(group), p)) {
      throw new RepomanError(
        'forbidden',
        `You may not ${grant ? 'grant' : 'revoke'} '${p}' on '${name}' (needs group_modify_permissions and '${p}' itself)`,
      );
    }
    await db.transaction().execute(async (trx) => {
      await groups.touchGroup(trx, group.id, nowIso());
      await (grant ? groups.addPermission : groups.removePermission)(trx, group.id, p);
    });
    await identitiesChanged();
    return viewById(group.id);
  }

  return guardService(
    {
      async list(page: PageRequest, memberId?: number): Promise<PageOf<GroupView>> {
        const { rows, total } = await groups.listGroups(db, page, memberId);
        return { items: await view(rows), total };
      },

      async get(name: string): Promise<GroupView> {
        return (await view([await requireGroup(name)]))[0] as GroupView;
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
              `You may not grant '${p}' (needs group_modify_permissions and '${p}' itself)`,
            );
          }
        }
        const memberNames = [...new Set(splitNames(body.users))];
        // The creator may fill a new group as if a member of it: it has no shares yet to read.
        const creator = { ...actor, groups: new Set([...actor.groups, name]) };
        if (memberNames.length > 0 && !canChangeMembers(creator, { name, permissions })) {
          throw new RepomanError(
            'forbidden',
            'Adding members needs group_modify_membership and every permission the group grants',
          );
        }
        const row = await db.transaction().execute(async (trx) => {
          if (await groups.findGroupByName(trx, name))
            throw new RepomanError('group_exists', `A group '${name}' already exists`);
          const now = nowIso();
          const row = await groups.insertGroup(trx, { name, protected: false, created: now, modified: now });
          for (const p of permissions) await groups.addPermission(trx, row.id, p);
          for (const member of memberNames)
            await groups.addMember(trx, row.id, (await requireUserRow(trx, member, 'users')).id);
          return row;
        });
        await identitiesChanged();
        return viewById(row.id);
      },

      async modify(actor: Actor, name: string, body: ModifyGroupBody): Promise<GroupView> {
        const group = await requireGroup(name);
        if (body.name !== undefined && body.name !== group.name) {
          if (!canRenameGroup(actor, await target(group))) {
            throw new RepomanError('forbidden', 'Renaming groups needs the group_modify permission');
          }
          if (group.protected)
            throw new RepomanError(
              'group_protected',
              `The group '${name}' is protected and cannot be renamed`,
            );
          const newName = checkedAccountName('group', body.name);
          if (await groups.findGroupByName(db, newName))
            throw new RepomanError('group_exists', `A group '${newName}' already exists`);
          // As if one request came after the other: a rename of a group renamed meanwhile finds no group.
          if (
            !(await groups.updateGroupIfNamed(db, group.id, group.name, {
              name: newName,
              modified: nowIso(),
            }))
          )
            throw new RepomanError('group_not_found', `No group '${name}'`);
          await identitiesChanged(); // actors hold their groups by name
        }
        return viewById(group.id);
      },

      async remove(actor: Actor, name: string): Promise<void> {
        const group = await requireGroup(name);
        if (!canDeleteGroup(actor, await target(group))) {
          throw new RepomanError('forbidden', 'Deleting groups needs the group_delete permission');
        }
        if (group.protected)
          throw new RepomanError('group_protected', `The group '${name}' is protected and cannot be deleted`);
        await groups.deleteGroup(db, group.id);
        await identitiesChanged();
      },

      addMember: (actor: Actor, name: string, userName: string) => changeMembers(actor, name, userName, true),
      removeMember: (actor: Actor, name: string, userName: string) =>
        changeMembers(actor, name, userName, false),
      addPermission: (actor: Actor, name: string, permission: string) =>
        changePermission(actor, name, permission, true),
      removePermission: (actor: Actor, name: string, permission: string) =>
        changePermission(actor, name, permission, false),

      requireGroup,
    },
    () => 'group_exists',
  );
}

export type GroupService = ReturnType<typeof createGroupService>;
