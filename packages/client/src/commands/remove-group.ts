/** `repoman remove-group`: delete a group (its shares go too). */
import { path } from '../api.ts';
import type { CommandSpec } from '../cli.ts';
import { confirmOrForce, done, forceOption } from './shared.ts';

export const removeGroup: CommandSpec = {
  name: 'remove-group',
  alias: 'rg',
  summary: 'delete a group (its shares go too)',
  args: ['group'],
  options: forceOption,
  server: true,
  async run(context) {
    const name = context.args.group as string;
    await confirmOrForce(context, `Delete group ${name}?`);
    await (await context.api()).delete(path('groups', name));
    done(context, { deleted: name }, `Removed group ${name}`);
  },
};
