/** `repoman version`: the client’s version. */
import type { CommandSpec } from '../cli.ts';
import { show } from './kit.ts';
import { VERSION } from './shared.ts';

export const version: CommandSpec = {
  name: 'version',
  summary: 'the client’s version',
  async run(context) {
    show(context, { version: VERSION }, () => VERSION);
  },
};
