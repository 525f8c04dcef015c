/** `repoman create-group`: create a group, with members and permissions. */
import type { Group } from '@repoman/core';
import type { CommandSpec } from '../cli.ts';
import { done, list } from './shared.ts';

export const createGroup: CommandSpec = {
  name: 'create-group',
  alias: 'cg',
  summary: 'create a group, with members and permissions',
  args: ['group'],
  options: {
    permissions: {
      type: 'string',
      short: 'p',
      help: 'permissions of its members (comma list)',
      value: 'LIST',
    },
    users: { type: 'string', short: 'u', help: 'its members (comma list)', value: 'LIST' },
  },
  server: true,
  async run(context) {
    const group = await (await context.api()).post<Group>('/api/groups', {
      name: context.args.group,
      permissions: list(context.options.permissions),
      users: list(context.options.users),
    });
    done(context, group, `Created group ${group.name}`);
  },
};
