/** `repoman remove-image`: delete an image and all its versions. */
import type { Image } from '@repoman/core';
import type { CommandSpec } from '../cli.ts';
import { confirmOrForce, done, forceOption, imagePath, imageRef, ownerOption } from './shared.ts';

export const removeImage: CommandSpec = {
  name: 'remove-image',
  alias: 'ri',
  summary: 'delete an image and all its versions',
  args: ['image'],
  options: { ...forceOption, ...ownerOption },
  server: true,
  async run(context) {
    const ref = imageRef(context);
    const api = await context.api();
    const image = await api.get<Image>(imagePath(ref));
    if (!context.options.force) {
      // The server says first whether it would delete it: a refusal comes before the question.
      await api.request('DELETE', imagePath(ref), { query: { dry_run: true } });
      await confirmOrForce(context, `Delete ${image.owner}/${image.name} and all its versions?`);
    }
    await api.delete(imagePath(ref));
    done(context, { deleted: `${image.owner}/${image.name}` }, `Removed image ${image.owner}/${image.name}`);
  },
};
