/** `repoman rollback`: serve an older, kept version of an image again. */
import type { Image } from '@repoman/core';
import type { CommandSpec } from '../cli.ts';
import { ClientError } from '../errors.ts';
import { done, imagePath, imageRef, ownerOption } from './shared.ts';

export const rollback: CommandSpec = {
  name: 'rollback',
  alias: 'rb',
  summary: 'serve an older, kept version of an image again',
  args: ['image', 'version'],
  options: ownerOption,
  server: true,
  async run(context) {
    const version = Number(context.args.version);
    if (!Number.isInteger(version) || version < 1)
      throw new ClientError('usage', `'${context.args.version}' is not a version number`);
    const ref = imageRef(context);
    const api = await context.api();
    await api.post(imagePath(ref, 'rollback'), { version });
    const image = await api.get<Image>(imagePath(ref));
    done(context, image, `Image ${image.owner}/${image.name} serves version ${version} again`);
  },
};
