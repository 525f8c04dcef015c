/** repoman get-image: download an image (resumes a partial download; checks its SHA-256). */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { CommandSpec } from '../cli.ts';
import { bytes } from '../output.ts';
import { download } from '../transfer.ts';
import { myName, str } from './kit.ts';
import {
  done,
  forceOption,
  imageRef,
  ownerOption,
  retries,
  retriesOption,
  variantFormat,
  versionOption,
} from './shared.ts';

export const getImage: CommandSpec = {
  name: 'get-image',
  alias: 'gi',
  summary: 'download an image (resumes a partial download; checks its SHA-256)',
  args: ['image', 'path?'],
  options: {
    ...forceOption,
    ...ownerOption,
    version: { type: 'string', help: 'an older, kept version', value: 'N' },
    format: {
      type: 'string',
      help: 'raw, qcow2 or vmdk: a converted variant (converted on the server first if needed)',
      value: 'FORMAT',
    },
    ...retriesOption,
  },
  server: true,
  async run(context) {
    const api = await context.api();
    const ref = imageRef(context);
    const owner = ref.owner ?? (await myName(api));
    const version = versionOption(context);
    const format = variantFormat(context);
    const target = str(context.args.path) ?? ref.name;
    const destination =
      existsSync(target) && statSync(target).isDirectory() ? join(target, ref.name) : target;
    const result = await download(api, {
      owner,
      image: ref.name,
      destination,
      version,
      format,
      force: Boolean(context.options.force),
      retries: retries(context),
      note: context.note,
    });
    done(
      context,
      result,
      `${owner}/${ref.name} saved to ${result.file} (${bytes(result.size)}, sha256 ${result.sha256})`,
    );
  },
};
