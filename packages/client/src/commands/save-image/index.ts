/** `repoman save-image`: snapshot this machine (or --root DIR) into a disk image and upload it as the image’s next version. */

import { createReadStream, createWriteStream, statSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type { Image, User } from '@repoman/core';
import { path } from '../../api.ts';
import type { CommandSpec, Context } from '../../cli.ts';
import { userHome } from '../../config.ts';
import { ClientError } from '../../errors.ts';
import { bytes } from '../../output.ts';
import { upload } from '../../transfer.ts';
import { str } from '../kit.ts';
import {
  confirmOrForce,
  given,
  imageBody,
  imageFields,
  imagePath,
  imageRef,
  ownerOption,
  retries,
  retriesOption,
} from '../shared.ts';
import {
  archOf,
  estimateStoredBytes,
  hypervisorOf,
  type ImagePlan,
  type Method,
  osOf,
  rootIsPartitioned,
  runStep,
  StepError,
  snapshot,
} from './snapshot.ts';

/** The quota of an image's owner (the caller's, or `owner`'s where the caller may see it): null if none. */
async function quotaRoom(
  api: Awaited<ReturnType<Context['api']>>,
  owner: string | undefined,
): Promise<{ user: string; quota: number; usage: number; room: number } | null> {
  const user = await api.get<User>(owner ? path('users', owner) : '/api/whoami').catch(() => null);
  if (typeof user?.quota !== 'number' || typeof user.usage !== 'number') return null;
  return {
    user: user.user_name,
    quota: user.quota,
    usage: user.usage,
    room: Math.max(0, user.quota - user.usage),
  };
}

/**
 * save-image refuses before the copy (on its estimate) and before the upload (on the file's size) when the
 * owner's quota cannot take the image; --force tries anyway (the server refuses before any byte if it is so).
 * The server publishes no free space: only the quota is checked here.
 */
function refuseOverQuota(
  context: Context,
  room: { user: string; quota: number; usage: number; room: number } | null,
  bytesOut: number,
  how: 'about' | 'exactly',
) {
  if (!room || bytesOut <= room.room || context.options.force) return;
  throw new StepError(
    'preflight',
    `the image takes ${how} ${bytes(bytesOut)}, and ${room.user}'s quota leaves ${bytes(room.room)} (${room.usage} of ${room.quota} bytes used): delete images, ask an admin, or --force to try anyway`,
  );
}

export const saveImage: CommandSpec = {
  name: 'save-image',
  alias: 'si',
  summary:
    'snapshot this machine (or --root DIR) into a disk image and upload it as the image’s next version',
  args: ['image'],
  options: {
    unauthenticated_access: imageFields.unauthenticated_access,
    description: imageFields.description,
    hypervisor: imageFields.hypervisor,
    os_arch: imageFields.os_arch,
    os_type: imageFields.os_type,
    os_variant: imageFields.os_variant,
    ...ownerOption,
    force: {
      type: 'boolean',
      short: 'f',
      help: 'do not ask for confirmation, and save even if the estimate passes the quota',
    },
    root: { type: 'string', help: 'save this directory tree instead of / (a chroot)', value: 'DIR' },
    exclude: {
      type: 'string',
      multiple: true,
      help: 'leave out what matches (rsync pattern, from the root: /srv/cache/*); repeatable',
      value: 'PATTERN',
    },
    resize: {
      type: 'string',
      help: 'the image’s size (default: the tree’s size plus a quarter and 512 MiB, in whole GiB)',
      value: 'MIB',
    },
    format: {
      type: 'string',
      help: 'qcow2 (default: only the data is sent) or raw (the whole virtual size is sent)',
      value: 'FORMAT',
    },
    partitioned: { type: 'boolean', help: 'an MBR disk with one partition (default when / is on one)' },
    'filesystem-only': { type: 'boolean', help: 'a bare filesystem, no partition table' },
    'keep-host-identity': {
      type: 'boolean',
      help: 'keep SSH host keys, machine-id and the like (clones would share them)',
    },
    method: {
      type: 'string',
      help: 'mount (loop-mount the image, as root), mkfs (mkfs.ext4 -d, no mount) or auto (default)',
      value: 'METHOD',
    },
    clean: { type: 'boolean', help: 'start from an empty copy rather than update the last one' },
    gzip: { type: 'boolean', short: 'z', help: 'upload it gzip-compressed' },
    verbose: { type: 'boolean', short: 'v', help: 'show every file rsync copies' },
    'dry-run': { type: 'boolean', short: 'n', help: 'say what would be done, and do nothing' },
    ...retriesOption,
  },
  server: true,
  async run(context) {
    const started = performance.now();
    const { options } = context;
    const ref = imageRef(context);
    if (!/^[a-zA-Z0-9_\-.]+$/.test(ref.name))
      throw new ClientError('usage', `'${ref.name}' is not an image name: letters, digits, _ - and . only`);
    if (options.gzip && !ref.name.endsWith('.gz')) {
      ref.name = `${ref.name}.gz`;
      context.note(`note: saving as ${ref.name} (gzip-compressed)`);
    }
    const format = str(options.format) ?? 'qcow2';
    if (format !== 'raw' && format !== 'qcow2')
      throw new ClientError('usage', `--format takes raw or qcow2, not '${format}'`);
    if (options.partitioned && options['filesystem-only'])
      throw new ClientError('usage', '--partitioned and --filesystem-only do not go together');
    const resize = str(options.resize);
    if (resize !== undefined && !/^[1-9]\d*$/.test(resize))
      throw new ClientError('usage', `--resize takes a size in MiB, not '${resize}'`);
    const method = str(options.method) ?? 'auto';
    if (!['auto', 'mount', 'mkfs'].includes(method))
      throw new ClientError('usage', `--method takes auto, mount or mkfs, not '${method}'`);
    const root = str(options.root) ?? '/';
    if (root === '/' && process.getuid?.() !== 0)
      throw new ClientError(
        'usage',
        'saving / needs root (files only root may read would be missing): use sudo, or --root DIR for a tree you can read',
      );

    // Metadata: what the tree says, overridden by what the user says.
    const detected = {
      ...(await osOf(root)),
      os_arch: archOf(root),
      ...(root === '/' ? given({ hypervisor: await hypervisorOf() }) : {}),
    };
    const fields = { ...detected, ...imageBody(options) };
    const partitioned = options.partitioned
      ? true
      : options['filesystem-only']
        ? false
        : root === '/' && (await rootIsPartitioned());
    const { settings } = context;
    const excludes = [
      ...`${settings.systemExcludes} ${settings.userExcludes}`.split(/\s+/).filter(Boolean),
      ...((options.exclude as string[] | undefined) ?? []),
    ];

    const api = await context.api();
    const existing = await api.get<Image>(imagePath(ref)).catch((error: unknown) => {
      if (error instanceof ClientError && error.status === 404) return null;
      throw error;
    });
    if (existing?.raw_file_uploaded && !options.force && !options['dry-run'])
      await confirmOrForce(
        context,
        `${existing.owner}/${existing.name} already holds version ${existing.version}. Save over it (as a new version)?`,
      );
    if (format === 'qcow2')
      await runStep('preflight', 'qemu-img', ['--version']).catch(() => {
        throw new StepError(
          'preflight',
          'qemu-img is needed for a qcow2 image (Debian: apt-get install qemu-utils), or save with --format raw',
        );
      });

    // Before anything is copied: the sizes, and whether the owner's quota can take them.
    const room = await quotaRoom(api, existing?.owner ?? ref.owner);
    let estimatedBytes: number | undefined;
    const approve = async (plan: ImagePlan) => {
      const bytesOut = estimateStoredBytes(plan, options.gzip ? 'qcow2' : format);
      estimatedBytes = bytesOut;
      context.note(
        `image: ${bytes(plan.virtualSize)} virtual, ${format}${options.gzip ? ', gzip-compressed' : ''}; about ${bytes(bytesOut)} to send and store (the tree: ${bytes(plan.treeBytes)}, ${plan.treeFiles} files)`,
      );
      if (!options['dry-run']) refuseOverQuota(context, room, bytesOut, 'about');
    };

    const shot = await snapshot({
      root,
      workDir: settings.snapshotDir,
      names: {
        lock: settings.lockfile,
        image: settings.snapshot,
        mount: settings.mountpoint,
        staging: `${settings.mountpoint}-tree`,
      },
      method: method as Method,
      excludes,
      size: resize === undefined ? undefined : Number(resize) * 1024 * 1024,
      partitioned,
      keepHostIdentity: Boolean(options['keep-host-identity']),
      clean: Boolean(options.clean),
      verbose: Boolean(options.verbose),
      dryRun: Boolean(options['dry-run']),
      note: context.note,
      approve,
    });
    const target = `${existing?.owner ?? ref.owner ?? '(you)'}/${ref.name}`;
    if (options['dry-run']) {
      const plan = {
        image: target,
        exists: existing !== null,
        method: shot.method,
        size: shot.size,
        estimated_bytes: estimatedBytes,
        ...(room ? { quota_room: room.room } : {}),
        format,
        partitioned,
        metadata: fields,
      };
      return context.print(
        context.json
          ? JSON.stringify(plan, null, 2)
          : `[DRY RUN] would save ${root} to ${target} (${existing ? 'a new version' : 'a new image'}): ${shot.size} bytes virtual, about ${estimatedBytes} to send, ${format}, ${partitioned ? 'partitioned' : 'filesystem only'}\n  metadata: ${JSON.stringify(fields)}`,
      );
    }
    for (const warning of shot.warnings) context.note(`warning: ${warning}`);

    // The file to upload: the raw image, or qcow2 made from it, gzip-compressed if asked.
    let file = shot.file;
    if (format === 'qcow2') {
      const qcow2 = `${shot.file}.qcow2`;
      await runStep('convert (qemu-img)', 'qemu-img', [
        'convert',
        '-f',
        'raw',
        '-O',
        'qcow2',
        shot.file,
        qcow2,
      ]);
      file = qcow2;
    }
    if (options.gzip) {
      context.note('compressing (gzip)…');
      await pipeline(createReadStream(file), createGzip(), createWriteStream(`${file}.gz`, { mode: 0o600 }));
      file = `${file}.gz`;
    }
    const sending = statSync(file).size;
    context.note(`sending ${bytes(sending)} (${sending} bytes)`);
    refuseOverQuota(context, room, sending, 'exactly');

    // The slot: created if new (and removed again if the upload fails), updated once the bytes are in.
    let created = false;
    let image = existing;
    if (!image) {
      image = await api.post<Image>('/api/images', {
        name: ref.name,
        ...(ref.owner ? { owner: ref.owner } : {}),
        ...fields,
      });
      created = true;
    }
    let result: Image;
    try {
      result = await upload(api, {
        file,
        owner: image.owner,
        image: image.name,
        home: userHome(),
        retries: retries(context),
        ...(options.gzip ? {} : { format }),
        note: context.note,
      });
    } catch (error) {
      if (created)
        await api.request('DELETE', imagePath({ owner: image.owner, name: image.name })).catch(() => {});
      throw error instanceof ClientError && error.kind !== 'usage'
        ? new ClientError(error.kind, `upload failed: ${error.message}`, {
            ...(error.code ? { code: error.code } : {}),
            ...(error.status ? { status: error.status } : {}),
          })
        : error;
    }
    if (!created && Object.keys(fields).length > 0)
      result = await api.post<Image>(imagePath({ owner: image.owner, name: image.name }), fields);
    const seconds = (performance.now() - started) / 1000;
    const synced = `${shot.synced.incremental ? 'synced' : 'copied'} ${shot.synced.files} files (${bytes(shot.synced.bytes)})`;
    if (context.json)
      return context.print(JSON.stringify({ image: result, snapshot: { ...shot, seconds } }, null, 2));
    context.print(
      `[OK] saved ${root} as ${result.owner}/${result.name} version ${result.version} in ${seconds.toFixed(1)} s: ${synced}; ${bytes(shot.size)} image${shot.bootable ? '' : ' (not bootable by itself)'}, ${bytes(sending)} sent as ${options.gzip ? 'gzip' : format}, sha256 ${result.digests?.sha256}`,
    );
  },
};
