/** `repoman list-images`: list your images (or all you may see, or those shared with a group or user), or show one in full. */
import type { Image } from '@repoman/core';
import { path } from '../api.ts';
import type { CommandSpec } from '../cli.ts';
import { ClientError } from '../errors.ts';
import { bytes, details, table, text } from '../output.ts';
import { myName, show, str } from './kit.ts';
import { imagePath, imageRef, ownerOption, shortOption } from './shared.ts';

function imagesTable(images: Image[]): string {
  if (images.length === 0) return 'No images.';
  const sorted = [...images].sort((a, b) =>
    `${a.owner}/${a.name}`.localeCompare(`${b.owner}/${b.name}`, undefined, { sensitivity: 'base' }),
  );
  return table(sorted, [
    { title: 'Image', value: (i) => i.name },
    { title: 'Owner', value: (i) => i.owner },
    { title: 'Size', value: (i) => bytes(i.size), right: true },
    { title: 'Format', value: (i) => [i.disk_format, i.compression].filter(Boolean).join('+') || '-' },
    { title: 'Virtual', value: (i) => bytes(i.virtual_size), right: true },
    { title: 'Version', value: (i) => String(i.version), right: true },
    { title: 'Modified', value: (i) => text(i.modified) },
    {
      title: 'Flags',
      value: (i) =>
        [i.unauthenticated_access && 'public', i.read_only && 'read-only', i.expired && 'expired']
          .filter(Boolean)
          .join(',') || '-',
    },
    { title: 'Description', value: (i) => i.description ?? '' },
  ]);
}

export const listImages: CommandSpec = {
  name: 'list-images',
  alias: 'li',
  summary: 'list your images (or all you may see, or those shared with a group or user), or show one in full',
  args: ['image?'],
  options: {
    ...ownerOption,
    all: { type: 'boolean', short: 'a', help: 'every image you may see: yours, shared with you, public' },
    group: {
      type: 'string',
      short: 'g',
      help: 'the images shared with GROUP (one of yours)',
      value: 'GROUP',
    },
    user: {
      type: 'string',
      short: 'u',
      help: 'images you share with USER, and USER’s images shared with you',
      value: 'USER',
    },
    ...shortOption,
    url: { type: 'boolean', short: 'U', help: 'the download URLs' },
  },
  server: true,
  async run(context) {
    const api = await context.api();
    const { options } = context;
    if (options.short && options.url) throw new ClientError('usage', '--short and --url do not go together');
    if (context.args.image) {
      const image = await api.get<Image>(imagePath(imageRef(context)));
      return show(context, image, () => details(image));
    }
    if ([options.all, options.user, options.group].filter(Boolean).length > 1)
      throw new ClientError('usage', 'Choose one of --all, --group and --user');
    const me = await myName(api);
    let images: Image[];
    if (options.all) images = await api.all<Image>('/api/images');
    else if (options.group) images = await api.all<Image>(path('groups', options.group as string, 'shared'));
    else if (options.user) {
      const user = options.user as string;
      const mine = await api.all<Image>('/api/images', { owner: me });
      const theirs = await api.all<Image>(path('users', me, 'shared'));
      images = [
        ...mine.filter((i) => i.shared_with?.users?.includes(user)),
        ...theirs.filter((i) => i.owner === user),
      ];
    } else images = await api.all<Image>('/api/images', { owner: str(options.owner) ?? me });
    if (context.json) return context.print(JSON.stringify(images, null, 2));
    if (options.short) return context.print(images.map((i) => `${i.owner}/${i.name}`).join('\n'));
    if (options.url)
      return context.print(
        images
          .map((i) =>
            [
              `${i.owner}/${i.name}`,
              ...(i.http_file_url ? [`  ${i.http_file_url}`] : []),
              `  ${i.file_url}`,
            ].join('\n'),
          )
          .join('\n\n'),
      );
    context.print(imagesTable(images));
  },
};
