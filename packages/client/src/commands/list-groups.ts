/** `repoman list-groups`: list your groups (or all, or a user’s), or show one in full. */
import type { Group, Page } from '@repoman/core';
import { path } from '../api.ts';
import type { CommandSpec } from '../cli.ts';
import { details, table } from '../output.ts';
import { myName, show, str } from './kit.ts';
import { shortOption } from './shared.ts';

export const listGroups: CommandSpec = {
  name: 'list-groups',
  alias: 'lg',
  summary: 'list your groups (or all, or a user’s), or show one in full',
  args: ['group?'],
  options: {
    ...shortOption,
    all: { type: 'boolean', short: 'a', help: 'every group' },
    user: { type: 'string', short: 'u', help: 'the groups of USER', value: 'USER' },
  },
  server: true,
  async run(context) {
    const api = await context.api();
    if (context.args.group) {
      const group = await api.get<Group>(path('groups', context.args.group as string));
      return show(context, group, () => details(group));
    }
    let groups = await api.all<Group>('/api/groups');
    if (!context.options.all) {
      const user = str(context.options.user) ?? (await myName(api));
      const names = new Set(
        (await api.get<Page<Group>>(path('users', user, 'groups'))).items.map((g) => g.name),
      );
      groups = groups.filter((g) => names.has(g.name));
    }
    if (context.json) return context.print(JSON.stringify(groups, null, 2));
    if (context.options.short) return context.print(groups.map((g) => g.name).join('\n'));
    context.print(
      table(groups, [
        { title: 'Group', value: (g) => g.name },
        { title: 'Members', value: (g) => [...g.users].sort().join(', ') },
        { title: 'Permissions', value: (g) => [...g.permissions].sort().join(', ') },
      ]),
    );
  },
};
