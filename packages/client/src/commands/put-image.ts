/** `repoman put-image`: upload a file as the image’s next version (resumable: rerun the same command to go on). */
import type { Image } from '@repoman/core';
import type { CommandSpec } from '../cli.ts';
import { userHome } from '../config.ts';
import { bytes } from '../output.ts';
import { upload } from '../transfer.ts';
import { str } from './kit.ts';
import {
  confirmOrForce,
  done,
  forceOption,
  imagePath,
  imageRef,
  ownerOption,
  retries,
  retriesOption,
} from './shared.ts';

export const putImage: CommandSpec = {
  name: 'put-image',
  alias: 'pi',
  summary: 'upload a file as the image’s next version (resumable: rerun the same command to go on)',
  args: ['file', 'image'],
  options: {
    ...forceOption,
    ...ownerOption,
    hypervisor: {
      type: 'string',
      short: 'h',
      help: 'accepted for compatibility; images are not per hypervisor',
      value: 'HV',
    },
    format: {
      type: 'string',
      help: 'refuse the upload unless the file is in this format (qcow2, raw, vmdk, …)',
      value: 'FORMAT',
    },
    decompress: {
      type: 'boolean',
      help: 'store a gzip, xz, zstd or bzip2 file decompressed (checked on the server)',
    },
    ...retriesOption,
  },
  server: true,
  async run(context) {
    const api = await context.api();
    const ref = imageRef(context);
    const image = await api.get<Image>(imagePath(ref));
    const question = `${image.owner}/${image.name} already holds version ${image.version} (${bytes(image.size)}). Upload a new version?`;
    const file = context.args.file as string;
    const result = await upload(api, {
      file,
      owner: image.owner,
      image: image.name,
      home: userHome(),
      retries: retries(context),
      format: str(context.options.format),
      decompress: Boolean(context.options.decompress),
      // Asked once the server has accepted the upload: a refusal comes before the question.
      beforeSending:
        image.raw_file_uploaded && !context.options.force
          ? () => confirmOrForce(context, question)
          : undefined,
      note: context.note,
    });
    done(
      context,
      result,
      `${file} uploaded to ${result.owner}/${result.name}: version ${result.version}, sha256 ${result.digests?.sha256}`,
    );
  },
};
