/** `repoman modify-user`: change a user: name, DN, email, full name, suspension, quota. */
import type { User } from '@repoman/core';
import { path } from '../api.ts';
import type { CommandSpec } from '../cli.ts';
import { ClientError } from '../errors.ts';
import { str } from './kit.ts';
import { bool, done, given } from './shared.ts';

export const modifyUser: CommandSpec = {
  name: 'modify-user',
  alias: 'mu',
  summary: 'change a user: name, DN, email, full name, suspension, quota',
  args: ['user'],
  options: {
    client_dn: { type: 'string', short: 'c', help: 'the DN of their new certificate', value: 'DN' },
    email: { type: 'string', short: 'e', help: 'their email address', value: 'ADDRESS' },
    full_name: { type: 'string', short: 'f', help: 'their full name', value: 'NAME' },
    new_name: { type: 'string', short: 'n', help: 'rename the user', value: 'NAME' },
    suspended: { type: 'string', help: 'suspend or restore the account', value: 'true|false' },
    quota: { type: 'string', help: 'bytes they may store ("" for no limit)', value: 'BYTES' },
  },
  server: true,
  async run(context) {
    const { options } = context;
    const quota = str(options.quota);
    if (quota !== undefined && quota !== '' && !/^\d+$/.test(quota))
      throw new ClientError('usage', `--quota takes a number of bytes, not '${quota}'`);
    const body = given({
      client_dn: str(options.client_dn),
      email: str(options.email),
      full_name: str(options.full_name),
      user_name: str(options.new_name),
      suspended: bool(options.suspended, 'suspended'),
      quota: quota === undefined ? undefined : quota === '' ? null : Number(quota),
    });
    if (Object.keys(body).length === 0)
      throw new ClientError('usage', 'Nothing to change: give at least one option');
    const user = await (await context.api()).patch<User>(path('users', context.args.user as string), body);
    done(context, user, `Modified user ${user.user_name}`);
  },
};
