/** `repoman list-transfers`: pending offers of images made to you and by you (-N on modify-image makes one), or one in full. */
import type { Transfer } from '@repoman/core';
import type { CommandSpec } from '../cli.ts';
import { ClientError } from '../errors.ts';
import { bytes, details, table, text } from '../output.ts';
import { myName, show } from './kit.ts';
import { transferPath } from './shared.ts';

export const listTransfers: CommandSpec = {
  name: 'list-transfers',
  alias: 'lt',
  summary: 'pending offers of images made to you and by you (-N on modify-image makes one), or one in full',
  args: ['id?'],
  options: {
    to: { type: 'boolean', help: 'only offers made to you' },
    from: { type: 'boolean', help: 'only offers you made' },
  },
  server: true,
  async run(context) {
    const api = await context.api();
    if (context.args.id) {
      const offer = await api.get<Transfer>(transferPath(context));
      return show(context, offer, () => details(offer));
    }
    const { to, from } = context.options;
    if (to && from) throw new ClientError('usage', 'Choose one of --to and --from (neither: both)');
    const offers = await api.all<Transfer>('/api/transfers', {
      direction: to ? 'to' : from ? 'from' : undefined,
    });
    if (context.json) return context.print(JSON.stringify(offers, null, 2));
    if (offers.length === 0) return context.print('No pending offers.');
    context.print(
      table(offers, [
        { title: 'ID', value: (t) => t.id },
        { title: 'Image', value: (t) => t.image },
        { title: 'From', value: (t) => t.from },
        { title: 'To', value: (t) => t.to },
        { title: 'Size', value: (t) => bytes(t.size), right: true },
        { title: 'Expires', value: (t) => text(t.expires) },
        { title: 'Description', value: (t) => t.description ?? '' },
      ]),
    );
    const me = await myName(api);
    if (offers.some((t) => t.to === me))
      context.note('Answer an offer to you: repoman accept-transfer ID [--name NEW], or decline-transfer ID');
  },
};
