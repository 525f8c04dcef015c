/** add-users-to-group, remove-users-from-group, add-permissions-to-group, remove-permissions-from-group. */
import { path } from '../api.ts';
import type { CommandSpec } from '../cli.ts';
import { forEach, list } from './shared.ts';

export const groupMemberCommands: CommandSpec[] = (
  [
    ['add-users-to-group', 'aug', 'users', 'POST', 'add users to a group', 'Added user %s to group %g'],
    [
      'remove-users-from-group',
      'rug',
      'users',
      'DELETE',
      'remove users from a group',
      'Removed user %s from group %g',
    ],
    [
      'add-permissions-to-group',
      'apg',
      'permissions',
      'POST',
      'grant permissions (comma list) to a group',
      'Added permission %s to group %g',
    ],
    [
      'remove-permissions-from-group',
      'rpg',
      'permissions',
      'DELETE',
      'revoke permissions (comma list) from a group',
      'Removed permission %s from group %g',
    ],
  ] as const
).map(
  ([name, alias, route, method, summary, message]): CommandSpec => ({
    name,
    alias,
    summary,
    args: ['group', route === 'users' ? 'users...' : 'permissions'],
    server: true,
    async run(context) {
      const api = await context.api();
      const group = context.args.group as string;
      const items =
        route === 'users' ? (context.args.users as string[]).flatMap(list) : list(context.args.permissions);
      await forEach(items, async (item) => {
        await api.request(method, path('groups', group, route, item));
        if (!context.json) context.print(`[OK] ${message.replace('%s', item).replace('%g', group)}`);
      });
      if (context.json) context.print(JSON.stringify(await api.get(path('groups', group)), null, 2));
    },
  }),
);
