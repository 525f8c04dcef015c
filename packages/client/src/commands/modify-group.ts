/** `repoman modify-group`: rename a group, or set its members or permissions to exactly these. */
import type { Group } from '@repoman/core';
import { path } from '../api.ts';
import type { CommandSpec } from '../cli.ts';
import { ClientError } from '../errors.ts';
import { done, list } from './shared.ts';

export const modifyGroup: CommandSpec = {
  name: 'modify-group',
  alias: 'mg',
  summary: 'rename a group, or set its members or permissions to exactly these',
  args: ['group'],
  options: {
    new_name: { type: 'string', short: 'n', help: 'rename the group', value: 'NAME' },
    permissions: {
      type: 'string',
      short: 'p',
      help: 'its permissions, exactly (comma list)',
      value: 'LIST',
    },
    users: { type: 'string', short: 'u', help: 'its members, exactly (comma list)', value: 'LIST' },
  },
  server: true,
  async run(context) {
    const api = await context.api();
    const { options } = context;
    if (options.new_name === undefined && options.permissions === undefined && options.users === undefined)
      throw new ClientError('usage', 'Nothing to change: give at least one option');
    let name = context.args.group as string;
    const group = await api.get<Group>(path('groups', name));
    for (const [option, field, route] of [
      ['users', 'users', 'users'],
      ['permissions', 'permissions', 'permissions'],
    ] as const) {
      if (options[option] === undefined) continue;
      const wanted = new Set(list(options[option]));
      const current = new Set(group[field] as string[]);
      for (const item of wanted) if (!current.has(item)) await api.post(path('groups', name, route, item));
      for (const item of current) if (!wanted.has(item)) await api.delete(path('groups', name, route, item));
    }
    if (options.new_name !== undefined) {
      await api.patch(path('groups', name), { name: options.new_name });
      name = options.new_name as string;
    }
    const after = await api.get<Group>(path('groups', name));
    done(context, after, `Modified group ${after.name}`);
  },
};
