/** `repoman list-users`: list users (or a group’s members), or show one in full. */
import type { Group, User } from '@repoman/core';
import { path } from '../api.ts';
import type { CommandSpec } from '../cli.ts';
import { details, table } from '../output.ts';
import { show } from './kit.ts';
import { shortOption } from './shared.ts';

export const listUsers: CommandSpec = {
  name: 'list-users',
  alias: 'lu',
  summary: 'list users (or a group’s members), or show one in full',
  args: ['user?'],
  options: {
    ...shortOption,
    group: { type: 'string', short: 'g', help: 'only the members of GROUP', value: 'GROUP' },
  },
  server: true,
  async run(context) {
    const api = await context.api();
    if (context.args.user) {
      const user = await api.get<User>(path('users', context.args.user as string));
      return show(context, user, () => details(user));
    }
    let users = await api.all<User>('/api/users');
    if (context.options.group) {
      const members = new Set(
        (await api.get<Group>(path('groups', context.options.group as string))).users ?? [],
      );
      users = users.filter((u) => members.has(u.user_name));
    }
    if (context.json) return context.print(JSON.stringify(users, null, 2));
    if (context.options.short) return context.print(users.map((u) => u.user_name).join('\n'));
    context.print(
      table(users, [
        { title: 'User', value: (u) => u.user_name },
        { title: 'Full name', value: (u) => u.full_name ?? '' },
        { title: 'Client DN', value: (u) => u.client_dn ?? '' },
      ]),
    );
  },
};
