/** `repoman convert-image`: convert an image on the server to raw, qcow2 or vmdk (kept beside its version). */
import type { Image } from '@repoman/core';
import type { CommandSpec } from '../cli.ts';
import { ClientError } from '../errors.ts';
import { bytes } from '../output.ts';
import { convertOnServer } from '../transfer.ts';
import { done, imagePath, imageRef, ownerOption, variantFormat, versionOption } from './shared.ts';

export const convertImage: CommandSpec = {
  name: 'convert-image',
  alias: 'cv',
  summary: 'convert an image on the server to raw, qcow2 or vmdk (kept beside its version)',
  args: ['image'],
  options: {
    ...ownerOption,
    format: { type: 'string', help: 'raw, qcow2 or vmdk (stream-optimised)', value: 'FORMAT' },
    compress: { type: 'boolean', help: 'qcow2: compress its clusters' },
    version: { type: 'string', help: 'an older, kept version', value: 'N' },
  },
  server: true,
  async run(context) {
    const format = variantFormat(context);
    if (format === undefined) throw new ClientError('usage', 'Say which format: --format raw, qcow2 or vmdk');
    const api = await context.api();
    const image = await api.get<Image>(imagePath(imageRef(context)));
    const job = await convertOnServer(
      api,
      {
        owner: image.owner,
        image: image.name,
        format,
        compress: Boolean(context.options.compress),
        version: versionOption(context),
      },
      image.virtual_size ?? image.size ?? 0,
    );
    const variant = job.variant;
    if (!variant)
      throw new ClientError(
        'server',
        'The conversion finished, but its variant is gone (removed meanwhile?)',
      );
    done(
      context,
      variant,
      `${image.owner}/${image.name} converted to ${format}: ${bytes(variant.size)}, sha256 ${variant.digests.sha256}\n` +
        `  repoman get-image ${image.owner}/${image.name} --format ${format}`,
    );
  },
};
