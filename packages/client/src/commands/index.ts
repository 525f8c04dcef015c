/** Every command, in the order help lists them: the original client's names, aliases and options. */

import type { CommandSpec } from '../cli.ts';
import { about } from './about.ts';
import { acceptTransfer } from './accept-transfer.ts';
import { cancelTransfer } from './cancel-transfer.ts';
import { cloudCommands } from './clouds.ts';
import { convertImage } from './convert-image.ts';
import { copy } from './copy.ts';
import { createGroup } from './create-group.ts';
import { createImage } from './create-image.ts';
import { createUser } from './create-user.ts';
import { declineTransfer } from './decline-transfer.ts';
import { getImage } from './get-image.ts';
import { groupMemberCommands } from './group-members.ts';
import { help } from './help.ts';
import { imageListCommands } from './image-lists.ts';
import { listGroups } from './list-groups.ts';
import { listImages } from './list-images.ts';
import { listTransfers } from './list-transfers.ts';
import { listUsers } from './list-users.ts';
import { listVersions } from './list-versions.ts';
import { makeConfig } from './make-config.ts';
import { modifyGroup } from './modify-group.ts';
import { modifyImage } from './modify-image.ts';
import { modifyUser } from './modify-user.ts';
import { putImage } from './put-image.ts';
import { removeGroup } from './remove-group.ts';
import { removeImage } from './remove-image.ts';
import { removeUser } from './remove-user.ts';
import { rollback } from './rollback.ts';
import { saveImage } from './save-image/index.ts';
import { shareCommands } from './share-image-with.ts';
import { shareUrl } from './share-url.ts';
import { version } from './version.ts';
import { whoami } from './whoami.ts';

export const commands: CommandSpec[] = [
  help,
  version,
  about,
  makeConfig,
  whoami,
  createImage,
  listImages,
  putImage,
  getImage,
  convertImage,
  modifyImage,
  removeImage,
  shareUrl,
  copy,
  ...shareCommands,
  listVersions,
  rollback,
  listTransfers,
  acceptTransfer,
  declineTransfer,
  cancelTransfer,
  createUser,
  listUsers,
  modifyUser,
  removeUser,
  createGroup,
  listGroups,
  modifyGroup,
  removeGroup,
  ...groupMemberCommands,
  saveImage,
  ...imageListCommands,
  ...cloudCommands,
];
