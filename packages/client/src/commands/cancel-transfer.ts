/** `repoman cancel-transfer`: withdraw an offer you made (admins: any offer); the image stays where it is. */
import type { Transfer } from '@repoman/core';
import type { CommandSpec } from '../cli.ts';
import { ClientError } from '../errors.ts';
import { done, transferPath } from './shared.ts';

export const cancelTransfer: CommandSpec = {
  name: 'cancel-transfer',
  alias: 'ct',
  summary: 'withdraw an offer you made (admins: any offer); the image stays where it is',
  args: ['id'],
  server: true,
  async run(context) {
    const api = await context.api();
    // An expired offer (410) may still be withdrawn: it is then named by its id alone.
    const offer = await api.get<Transfer>(transferPath(context)).catch((error: unknown) => {
      if (error instanceof ClientError && error.code === 'transfer_expired') return null;
      throw error;
    });
    await api.delete(transferPath(context));
    done(
      context,
      { cancelled: offer ?? { id: context.args.id } },
      offer
        ? `Cancelled the offer of ${offer.image} to ${offer.to}; it stays ${offer.from}'s`
        : `Cancelled the expired offer ${context.args.id}`,
    );
  },
};
