/** `repoman modify-image`: change an image’s metadata, rename it (-n) or offer it to another user (-N; admins give it at once). */
import type { Image, Transfer } from '@repoman/core';
import type { CommandSpec } from '../cli.ts';
import { ClientError } from '../errors.ts';
import { text } from '../output.ts';
import { str } from './kit.ts';
import { done, given, imageBody, imageFields, imagePath, imageRef, ownerOption } from './shared.ts';

export const modifyImage: CommandSpec = {
  name: 'modify-image',
  alias: 'mi',
  summary:
    'change an image’s metadata, rename it (-n) or offer it to another user (-N; admins give it at once)',
  args: ['image'],
  options: {
    ...imageFields,
    ...ownerOption,
    new_name: { type: 'string', short: 'n', help: 'rename the image', value: 'NAME' },
    new_owner: {
      type: 'string',
      short: 'N',
      help: 'offer the image to USER, who accepts it (admins: give it now)',
      value: 'USER',
    },
  },
  server: true,
  async run(context) {
    const fields = given({ ...imageBody(context.options), name: str(context.options.new_name) });
    const to = str(context.options.new_owner);
    if (Object.keys(fields).length === 0 && to === undefined)
      throw new ClientError('usage', 'Nothing to change: give at least one option');
    const api = await context.api();
    const ref = imageRef(context);
    if (to === undefined) {
      const image = await api.patch<Image>(imagePath(ref), fields);
      return done(context, image, `Modified image ${image.owner}/${image.name}`);
    }
    // Admins give an image away at once, with the other changes in one request; for anyone else the
    // server answers transfer_offer_required, and the image is offered instead (docs/api.md#transfers).
    try {
      const image = await api.patch<Image>(imagePath(ref), { ...fields, owner: to });
      return done(
        context,
        image,
        `Gave ${ref.owner ? `${ref.owner}/` : ''}${ref.name} to ${to} directly (as an admin: there is nothing for ${to} to accept); it is now ${image.owner}/${image.name}`,
      );
    } catch (error) {
      if (!(error instanceof ClientError && error.code === 'transfer_offer_required')) throw error;
    }
    let offered = ref;
    if (Object.keys(fields).length > 0) {
      const image = await api.patch<Image>(imagePath(ref), fields);
      offered = { owner: image.owner, name: image.name };
    }
    const offer = await api.post<Transfer>(imagePath(offered, 'transfer'), { to }).catch((error: unknown) => {
      throw offered === ref || !(error instanceof ClientError)
        ? error
        : new ClientError(
            error.kind,
            `Modified image ${offered.owner}/${offered.name}, but offering it to ${to} failed: ${error.message}`,
            {
              ...(error.code ? { code: error.code } : {}),
              ...(error.status ? { status: error.status } : {}),
            },
          );
    });
    done(
      context,
      offer,
      `Offered ${offer.image} to ${offer.to} until ${text(offer.expires)}; it stays yours until they accept it\n` +
        `  ${offer.to} accepts it with: repoman accept-transfer ${offer.id}   (withdraw it: repoman cancel-transfer ${offer.id})`,
    );
  },
};
