import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_GROUP_PERMISSIONS, type Permission } from '@repoman/core';
import {
  type Actor,
  canChangeMembers,
  canChangePermission,
  canCreateImage,
  canDeleteImage,
  canDeleteUser,
  canModifyImage,
  canModifyUser,
  canReadImage,
  canShareImageWithGroup,
  type ImageTarget,
} from '../src/authz.ts';

const user = (
  id: number,
  permissions: Permission[] = [...(DEFAULT_GROUP_PERMISSIONS.users ?? [])],
  groups = ['users'],
) =>
  ({
    id,
    name: `u${id}`,
    isAdmin: false,
    permissions: new Set(permissions),
    groups: new Set(groups),
    limited: false,
  }) as Actor;
const admin: Actor = { ...user(99), isAdmin: true, groups: new Set(['admins']) };

const image = (over: Partial<ImageTarget> = {}): ImageTarget => ({
  ownerId: 1,
  ownerGroups: new Set(['users']),
  public: false,
  sharedWithUsers: new Set(),
  sharedWithGroups: new Set(),
  ...over,
});

describe('image visibility', () => {
  it('lets the owner, direct shares, group shares, admins and everyone for public images read', () => {
    assert.equal(canReadImage(user(1), image()), true);
    assert.equal(canReadImage(user(2), image()), false);
    assert.equal(canReadImage(user(2), image({ sharedWithUsers: new Set([2]) })), true);
    assert.equal(canReadImage(user(2, [], ['atlas']), image({ sharedWithGroups: new Set(['atlas']) })), true);
    assert.equal(canReadImage(user(2, [], ['cms']), image({ sharedWithGroups: new Set(['atlas']) })), false);
    assert.equal(canReadImage(admin, image()), true);
    assert.equal(canReadImage(null, image({ public: true })), true);
    assert.equal(canReadImage(null, image()), false);
  });
});

describe('image changes', () => {
  it('lets owners change their own images but not others', () => {
    assert.equal(canModifyImage(user(1), image()), true);
    assert.equal(
      canModifyImage(user(2), image({ sharedWithUsers: new Set([2]) })),
      false,
      'shares are read-only',
    );
    assert.equal(canDeleteImage(user(2), image()), false);
  });

  it('image_modify_group covers images of fellow members, but not through the everybody group', () => {
    const grouped = user(2, ['image_modify_group', 'image_delete_group'], ['users', 'atlas']);
    assert.equal(canModifyImage(grouped, image({ ownerGroups: new Set(['users', 'atlas']) })), true);
    assert.equal(canDeleteImage(grouped, image({ ownerGroups: new Set(['users', 'atlas']) })), true);
    assert.equal(canModifyImage(grouped, image({ ownerGroups: new Set(['users']) })), false);
  });

  it('only admins create images in another namespace', () => {
    assert.equal(canCreateImage(user(1), 1), true);
    assert.equal(canCreateImage(user(1), 2), false);
    assert.equal(canCreateImage(user(1, ['image_create', 'image_modify']), 2), false);
    assert.equal(canCreateImage(admin, 2), true);
    assert.equal(canCreateImage(user(1, []), 1), false, 'image_create is needed even at home');
  });

  it('sharing with a group needs membership of it', () => {
    assert.equal(canShareImageWithGroup(user(1, [], ['atlas']), image(), 'atlas'), true);
    assert.equal(canShareImageWithGroup(user(1, [], ['atlas']), image(), 'cms'), false);
    assert.equal(canShareImageWithGroup(user(2, [], ['atlas']), image(), 'atlas'), false, 'not the owner');
  });
});

describe('no self-escalation', () => {
  const manager = user(
    5,
    ['group_modify_membership', 'group_modify_permissions', 'image_create'],
    ['users', 'ops'],
  );

  it('membership changes only for groups granting nothing the actor lacks, never admins', () => {
    assert.equal(canChangeMembers(manager, { name: 'ops', permissions: ['image_create'] }), true);
    assert.equal(canChangeMembers(manager, { name: 'ops', permissions: ['user_delete'] }), false);
    assert.equal(canChangeMembers(manager, { name: 'admins', permissions: [] }), false);
    assert.equal(canChangeMembers(admin, { name: 'admins', permissions: [] }), true);
  });

  it('membership changes only in groups the actor is in, never of users, never of oneself', () => {
    assert.equal(
      canChangeMembers(manager, { name: 'atlas', permissions: [] }),
      false,
      'not a member of atlas',
    );
    assert.equal(canChangeMembers(manager, { name: 'users', permissions: [] }), false);
    assert.equal(canChangeMembers(manager, { name: 'ops', permissions: [] }, 5), false, 'not oneself');
    assert.equal(canChangeMembers(manager, { name: 'ops', permissions: [] }, 6), true);
  });

  it('permission grants only of permissions the actor holds, never on admins', () => {
    assert.equal(canChangePermission(manager, { name: 'ops', permissions: [] }, 'image_create'), true);
    assert.equal(canChangePermission(manager, { name: 'ops', permissions: [] }, 'user_delete'), false);
    assert.equal(canChangePermission(manager, { name: 'admins', permissions: [] }, 'image_create'), false);
  });
});

describe('user changes', () => {
  it('user_modify_self covers own full name and email only', () => {
    assert.equal(
      canModifyUser(user(1), { id: 1, isAdmin: false, permissions: new Set() }, ['full_name', 'email']),
      true,
    );
    assert.equal(
      canModifyUser(user(1), { id: 1, isAdmin: false, permissions: new Set() }, ['client_dn']),
      false,
    );
    assert.equal(
      canModifyUser(user(1), { id: 1, isAdmin: false, permissions: new Set() }, ['suspended']),
      false,
    );
    assert.equal(
      canModifyUser(user(1), { id: 2, isAdmin: false, permissions: new Set() }, ['full_name']),
      false,
    );
    assert.equal(
      canModifyUser(user(1, []), { id: 1, isAdmin: false, permissions: new Set() }, ['full_name']),
      false,
    );
  });

  it('user_modify does not reach admins', () => {
    const moderator = user(3, ['user_modify']);
    assert.equal(
      canModifyUser(moderator, { id: 4, isAdmin: false, permissions: new Set() }, ['client_dn']),
      true,
    );
    assert.equal(
      canModifyUser(moderator, { id: 99, isAdmin: true, permissions: new Set() }, ['client_dn']),
      false,
    );
  });

  it('user_modify and user_delete do not reach users holding permissions the actor lacks', () => {
    const moderator = user(3, ['user_modify', 'user_delete']);
    const boss = { id: 4, isAdmin: false, permissions: new Set<Permission>(['group_delete']) };
    const peer = { id: 5, isAdmin: false, permissions: new Set<Permission>(['user_modify']) };
    assert.equal(canModifyUser(moderator, boss, ['client_dn']), false);
    assert.equal(canDeleteUser(moderator, boss), false);
    assert.equal(canModifyUser(moderator, peer, ['client_dn']), true);
    assert.equal(canDeleteUser(moderator, peer), true);
    assert.equal(canDeleteUser(user(1), peer), false);
  });
});
