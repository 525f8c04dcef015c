/** `repoman remove-user`: delete a user, with all their images. */
import { path } from '../api.ts';
import type { CommandSpec } from '../cli.ts';
import { confirmOrForce, done, forceOption } from './shared.ts';

export const removeUser: CommandSpec = {
  name: 'remove-user',
  alias: 'ru',
  summary: 'delete a user, with all their images',
  args: ['user'],
  options: forceOption,
  server: true,
  async run(context) {
    const name = context.args.user as string;
    await confirmOrForce(context, `Delete user ${name} and all their images?`);
    await (await context.api()).delete(path('users', name));
    done(context, { deleted: name }, `Removed user ${name}`);
  },
};
