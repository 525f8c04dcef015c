/** `repoman create-image`: create an image slot (upload its bytes with put-image). */
import type { Image } from '@repoman/core';
import type { CommandSpec } from '../cli.ts';
import { done, imageBody, imageFields, imageRef, ownerOption } from './shared.ts';

export const createImage: CommandSpec = {
  name: 'create-image',
  alias: 'ci',
  summary: 'create an image slot (upload its bytes with put-image)',
  args: ['image'],
  options: { ...imageFields, ...ownerOption },
  server: true,
  async run(context) {
    const ref = imageRef(context);
    const created = await (await context.api()).post<Image>('/api/images', {
      name: ref.name,
      ...(ref.owner ? { owner: ref.owner } : {}),
      ...imageBody(context.options),
    });
    done(context, created, `Created image ${created.owner}/${created.name}`);
  },
};
