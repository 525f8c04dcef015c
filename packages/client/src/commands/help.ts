/** `repoman help`: show the commands, or one command’s arguments and options. */
import type { CommandSpec } from '../cli.ts';
import { ClientError } from '../errors.ts';
import { str } from './kit.ts';

export const help: CommandSpec = {
  name: 'help',
  summary: 'show the commands, or one command’s arguments and options',
  args: ['command?'],
  async run(context) {
    const { commandHelp, generalHelp } = await import('../cli.ts');
    const { commands } = await import('./index.ts');
    const wanted = str(context.args.command);
    if (!wanted) return context.print(generalHelp(commands));
    const command = commands.find((c) => c.name === wanted || c.alias === wanted);
    if (!command) throw new ClientError('usage', `'${wanted}' is not a repoman command`);
    context.print(commandHelp(command));
  },
};
