/** `repoman decline-transfer`: refuse an image offered to you (it stays its owner’s). */
import type { Transfer } from '@repoman/core';
import type { CommandSpec } from '../cli.ts';
import { done, transferPath } from './shared.ts';

export const declineTransfer: CommandSpec = {
  name: 'decline-transfer',
  alias: 'dt',
  summary: 'refuse an image offered to you (it stays its owner’s)',
  args: ['id'],
  server: true,
  async run(context) {
    const api = await context.api();
    const offer = await api.get<Transfer>(transferPath(context));
    await api.post(`${transferPath(context)}/decline`);
    done(context, { declined: offer }, `Declined ${offer.image} from ${offer.from}; it stays theirs`);
  },
};
