/** `repoman create-user`: create a user from the DN of their certificate. */
import type { User } from '@repoman/core';
import type { CommandSpec } from '../cli.ts';
import { str } from './kit.ts';
import { done, given, list } from './shared.ts';

export const createUser: CommandSpec = {
  name: 'create-user',
  alias: 'cu',
  summary: 'create a user from the DN of their certificate',
  args: ['user', 'client_dn'],
  options: {
    email: { type: 'string', short: 'e', help: 'their email address', value: 'ADDRESS' },
    full_name: { type: 'string', short: 'f', help: 'their full name', value: 'NAME' },
    groups: { type: 'string', short: 'g', help: 'groups to put them in (comma list)', value: 'LIST' },
  },
  server: true,
  async run(context) {
    const user = await (await context.api()).post<User>('/api/users', {
      user_name: context.args.user,
      client_dn: context.args.client_dn,
      ...given({
        email: str(context.options.email),
        full_name: str(context.options.full_name),
        groups: context.options.groups === undefined ? undefined : list(context.options.groups),
      }),
    });
    done(context, user, `Created user ${user.user_name}`);
  },
};
