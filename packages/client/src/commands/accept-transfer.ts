/** `repoman accept-transfer`: take an image offered to you into your namespace (optionally under another name). */
import type { Image, Transfer } from '@repoman/core';
import type { CommandSpec } from '../cli.ts';
import { ClientError } from '../errors.ts';
import { str } from './kit.ts';
import { done, given, transferPath } from './shared.ts';

export const acceptTransfer: CommandSpec = {
  name: 'accept-transfer',
  alias: 'at',
  summary: 'take an image offered to you into your namespace (optionally under another name)',
  args: ['id'],
  options: {
    name: {
      type: 'string',
      short: 'n',
      help: 'take it under this name (when you have an image of its name)',
      value: 'NAME',
    },
  },
  server: true,
  async run(context) {
    const api = await context.api();
    const offer = await api.get<Transfer>(transferPath(context));
    const name = str(context.options.name);
    const image = await api
      .post<Image>(`${transferPath(context)}/accept`, given({ name }))
      .catch((error: unknown) => {
        throw error instanceof ClientError && error.code === 'image_exists'
          ? new ClientError('server', `${error.message}: take it under another name with --name NAME`, {
              code: error.code,
              ...(error.status ? { status: error.status } : {}),
            })
          : error;
      });
    done(
      context,
      image,
      `Accepted ${offer.image} from ${offer.from}: it is now ${image.owner}/${image.name}`,
    );
  },
};
