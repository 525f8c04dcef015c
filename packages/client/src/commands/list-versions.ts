/** `repoman list-versions`: the kept versions of an image, newest first. */
import type { Page, Version } from '@repoman/core';
import type { CommandSpec } from '../cli.ts';
import { bytes, table, text } from '../output.ts';
import { show } from './kit.ts';
import { imagePath, imageRef, ownerOption } from './shared.ts';

export const listVersions: CommandSpec = {
  name: 'list-versions',
  alias: 'lv',
  summary: 'the kept versions of an image, newest first',
  args: ['image'],
  options: ownerOption,
  server: true,
  async run(context) {
    const versions = await (await context.api()).get<Page<Version>>(imagePath(imageRef(context), 'versions'));
    show(context, versions, () =>
      table(versions.items, [
        { title: 'Version', value: (v) => `${v.version}${v.current ? '*' : ''}`, right: true },
        { title: 'Size', value: (v) => bytes(v.size), right: true },
        { title: 'Format', value: (v) => text(v.disk_format ?? v.compression) },
        {
          title: 'Variants',
          value: (v) =>
            (v.variants ?? []).map((x) => `${x.format}${x.compressed ? ' (compressed)' : ''}`).join(', ') ||
            '-',
        },
        { title: 'Uploaded', value: (v) => text(v.created) },
        { title: 'SHA-256', value: (v) => v.digests.sha256 },
      ]),
    );
  },
};
