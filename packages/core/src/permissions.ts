/**
 * The original Repoman's 14 permission names, granted to groups, `image_endorse` (image lists) and
 * `cloud_manage` (cloud sync).
 */
export const PERMISSIONS = [
  'user_create',
  'user_modify',
  'user_delete',
  'user_modify_self',
  'group_create',
  'group_modify',
  'group_delete',
  'group_modify_membership',
  'group_modify_permissions',
  'image_create',
  'image_modify',
  'image_delete',
  'image_modify_group',
  'image_delete_group',
  /** Endorse image versions for a group one belongs to: its signed image list (docs/image-lists.md). */
  'image_endorse',
  /** Register a group's clouds and choose what is synced into them (docs/clouds.md). */
  'cloud_manage',
] as const;

export type Permission = (typeof PERMISSIONS)[number];

export function isPermission(value: string): value is Permission {
  return (PERMISSIONS as readonly string[]).includes(value);
}

/** Groups every repository has; neither can be deleted or renamed. */
export const ADMINS_GROUP = 'admins';
export const USERS_GROUP = 'users';

export const DEFAULT_GROUP_PERMISSIONS: Record<string, readonly Permission[]> = {
  [ADMINS_GROUP]: PERMISSIONS,
  [USERS_GROUP]: ['user_modify_self', 'image_create'],
};
