/**
 * The cloud sync from the command line (docs/clouds.md): `list-clouds`, `add-cloud`, `remove-cloud`, `sync`
 * and `cloud-status`. `add-cloud` takes what an OpenStack RC file sets (`OS_AUTH_URL`, `OS_REGION_NAME`,
 * `OS_APPLICATION_CREDENTIAL_ID` and `_SECRET`, or `OS_USERNAME`, `OS_PASSWORD`, `OS_PROJECT_NAME` and the
 * domains), so that `source app-cred-openrc.sh; repoman add-cloud atlas cern` works; a secret is never taken
 * from the command line (it would show in `ps`): from the environment, or asked for.
 */
import type { Cloud, CloudCopy } from '@repoman/core';
import { path } from '../api.ts';
import type { CommandSpec } from '../cli.ts';
import { ClientError } from '../errors.ts';
import { table, text } from '../output.ts';
import { ownerAndName, show, str } from './kit.ts';

const list = (value: unknown) =>
  (Array.isArray(value) ? value : value === undefined ? [] : [value]).map(String);

/** `group/cloud`. */
function cloudRef(arg: string): [string, string] {
  const [group, cloud, ...rest] = arg.split('/');
  if (!group || !cloud || rest.length > 0)
    throw new ClientError('usage', `Name the cloud as group/cloud, not '${arg}'`);
  return [group, cloud];
}

const STATE_WORDS: Record<string, string> = {
  present: 'present (verified)',
  transferring: 'transferring',
  pending: 'pending',
  failed: 'FAILED',
  conflict: 'CONFLICT',
  retiring: 'retiring',
};

function statusTable(copies: CloudCopy[]): string {
  if (copies.length === 0) return 'Nothing there yet: choose images (repoman sync GROUP/CLOUD --add IMAGE)';
  return table(copies, [
    { title: 'IMAGE', value: (c) => c.image },
    { title: 'VERSION', value: (c) => String(c.version) },
    { title: 'STATE', value: (c) => STATE_WORDS[c.state] ?? c.state },
    { title: 'GLANCE ID', value: (c) => c.glance_id ?? '-' },
    { title: 'DETAIL', value: (c) => c.detail ?? '' },
  ]);
}

export const cloudCommands: CommandSpec[] = [
  {
    name: 'list-clouds',
    alias: 'lc',
    summary: 'the clouds of your groups (or of one group), where Repoman keeps images (docs/clouds.md)',
    args: ['group?'],
    server: true,
    async run(context) {
      const api = await context.api();
      const group = str(context.args.group);
      const clouds = await api.get<Cloud[]>(group ? path('clouds', group) : '/api/clouds');
      show(
        context,
        clouds,
        clouds.length === 0
          ? 'No clouds'
          : table(clouds, [
              { title: 'CLOUD', value: (c) => `${c.group}/${c.name}` },
              { title: 'KEYSTONE', value: (c) => c.auth_url },
              { title: 'TRANSFER', value: (c) => c.transfer },
              {
                title: 'IMAGES',
                value: (c) => String(c.images.length) + (c.follow_endorsed ? ' + endorsed' : ''),
              },
              { title: 'LAST SYNC', value: (c) => text(c.last_sync) },
              { title: 'LAST ERROR', value: (c) => c.last_error ?? '' },
            ]),
      );
    },
  },
  {
    name: 'add-cloud',
    alias: 'ac',
    summary:
      'register an OpenStack cloud for a group: Keystone URL and credential from the options or an OpenStack RC file’s OS_* variables',
    args: ['cloud'],
    options: {
      'auth-url': { type: 'string', help: "Keystone's v3 URL (default $OS_AUTH_URL)", value: 'URL' },
      region: { type: 'string', help: 'the region (default $OS_REGION_NAME)', value: 'REGION' },
      'application-credential-id': {
        type: 'string',
        help: 'an application credential (default $OS_APPLICATION_CREDENTIAL_ID); its secret from $OS_APPLICATION_CREDENTIAL_SECRET, or asked for',
        value: 'ID',
      },
      username: {
        type: 'string',
        help: 'or a user (default $OS_USERNAME); the password from $OS_PASSWORD, or asked for',
        value: 'USER',
      },
      project: { type: 'string', help: "the user's project (default $OS_PROJECT_NAME)", value: 'PROJECT' },
      prefix: { type: 'string', help: 'put before image names in Glance', value: 'TEXT' },
      visibility: { type: 'string', help: 'private (default), shared or community', value: 'V' },
      transfer: {
        type: 'string',
        help: 'web-download (default: the cloud fetches from Repoman) or upload (Repoman sends)',
        value: 'HOW',
      },
      format: { type: 'string', help: 'the disk format the cloud wants (raw, qcow2, vmdk)', value: 'F' },
      'no-endorsed': {
        type: 'boolean',
        help: "do not keep the group's endorsed images there, only those chosen",
      },
    },
    server: true,
    async run(context) {
      const [group, name] = cloudRef(context.args.cloud as string);
      const env = process.env;
      const authUrl = str(context.options['auth-url']) ?? env.OS_AUTH_URL;
      if (!authUrl)
        throw new ClientError(
          'usage',
          "Say where Keystone is: --auth-url URL (or source the cloud's RC file)",
        );
      const appId = str(context.options['application-credential-id']) ?? env.OS_APPLICATION_CREDENTIAL_ID;
      const username = str(context.options.username) ?? (appId ? undefined : env.OS_USERNAME);
      let credential: Record<string, string>;
      if (appId) {
        const secret =
          env.OS_APPLICATION_CREDENTIAL_SECRET || (await context.secret('Application credential secret: '));
        credential = { application_credential_id: appId, application_credential_secret: secret };
      } else if (username) {
        const project = str(context.options.project) ?? env.OS_PROJECT_NAME;
        if (!project)
          throw new ClientError('usage', "Say the user's project: --project PROJECT (or $OS_PROJECT_NAME)");
        const password = env.OS_PASSWORD || (await context.secret(`Password of ${username}: `));
        credential = {
          username,
          password,
          project,
          user_domain: env.OS_USER_DOMAIN_NAME || 'Default',
          project_domain: env.OS_PROJECT_DOMAIN_NAME || 'Default',
        };
      } else
        throw new ClientError(
          'usage',
          'Give an application credential (--application-credential-id, or $OS_APPLICATION_CREDENTIAL_ID) or a user (--username)',
        );
      const region = str(context.options.region) ?? env.OS_REGION_NAME;
      const body = {
        name,
        auth_url: authUrl,
        ...(region ? { region } : {}),
        ...credential,
        ...(str(context.options.prefix) !== undefined ? { name_prefix: str(context.options.prefix) } : {}),
        ...(str(context.options.visibility) ? { visibility: str(context.options.visibility) } : {}),
        ...(str(context.options.transfer) ? { transfer: str(context.options.transfer) } : {}),
        ...(str(context.options.format) ? { disk_format: str(context.options.format) } : {}),
        ...(context.options['no-endorsed'] ? { follow_endorsed: false } : {}),
      };
      const made = await (await context.api()).post<Cloud>(path('clouds', group), body);
      show(
        context,
        made,
        `[OK] Registered cloud ${made.group}/${made.name}: its credential works (Keystone, Glance, creating images)`,
      );
    },
  },
  {
    name: 'remove-cloud',
    summary: 'forget a cloud (what Repoman made there stays: unchoose its images first to have them go)',
    args: ['cloud'],
    server: true,
    async run(context) {
      const [group, name] = cloudRef(context.args.cloud as string);
      await (await context.api()).delete(path('clouds', group, name));
      show(context, { removed: `${group}/${name}` }, `[OK] Forgot cloud ${group}/${name}`);
    },
  },
  {
    name: 'sync',
    summary:
      'choose images for a cloud (--add), stop (--remove), and sync it now; --wait follows it until it settles',
    args: ['cloud'],
    options: {
      add: {
        type: 'string',
        short: 'a',
        help: 'keep this image there (repeatable)',
        value: 'IMAGE',
        multiple: true,
      },
      remove: {
        type: 'string',
        short: 'd',
        help: 'no longer keep it there (repeatable)',
        value: 'IMAGE',
        multiple: true,
      },
      wait: {
        type: 'boolean',
        short: 'w',
        help: 'wait until nothing is transferring any more, then show the status',
      },
    },
    server: true,
    async run(context) {
      const [group, name] = cloudRef(context.args.cloud as string);
      const api = await context.api();
      for (const [option, method] of [
        ['add', 'PUT'],
        ['remove', 'DELETE'],
      ] as const)
        for (const image of list(context.options[option])) {
          const [owner, imageName] = await ownerAndName(api, image);
          await api.request(method, path('clouds', group, name, 'images', owner, imageName));
          if (!context.json)
            context.note(
              `${option === 'add' ? 'Keeping' : 'No longer keeping'} ${owner}/${imageName} in ${group}/${name}`,
            );
        }
      const asked = (await api.request('POST', path('clouds', group, name, 'sync'))).headers.date;
      if (!context.options.wait) return show(context, { sync: 'requested' }, `[OK] Syncing ${group}/${name}`);
      const statusPath = path('clouds', group, name, 'status');
      const deadline = Date.now() + 3600_000;
      // The server's clock, not ours (to the second): a sync that ended since it was asked for has run.
      const since = new Date(asked ?? Date.now()).getTime();
      for (;;) {
        const copies = await api.get<CloudCopy[]>(statusPath);
        const cloud = await api.get<Cloud>(path('clouds', group, name));
        const synced = cloud.last_sync !== null && new Date(cloud.last_sync).getTime() >= since;
        // Transferring, or waiting for a conversion into the cloud's format.
        const moving = copies.filter(
          (c) =>
            c.state === 'transferring' ||
            (c.state === 'pending' && /^(waiting|version \d+ was converted)/.test(c.detail ?? '')),
        );
        if ((synced && moving.length === 0) || Date.now() > deadline) {
          const bad = copies.filter((c) => c.state === 'failed' || c.state === 'conflict');
          show(context, copies, statusTable(copies));
          if (cloud.last_error)
            throw new ClientError('server', `The last sync of ${group}/${name} failed: ${cloud.last_error}`);
          if (bad.length > 0)
            throw new ClientError(
              'server',
              `${bad.length} image(s) did not get to ${group}/${name}: ${bad.map((c) => c.image).join(', ')}`,
            );
          return;
        }
        if (!context.json)
          context.note(synced ? `${moving.length} transferring…` : 'waiting for the sync to run…');
        await new Promise((resolve) => setTimeout(resolve, 2000));
      }
    },
  },
  {
    name: 'cloud-status',
    alias: 'cs',
    summary:
      'what a cloud holds of each image: present (verified), transferring, pending, failed, conflict, retiring',
    args: ['cloud'],
    server: true,
    async run(context) {
      const [group, name] = cloudRef(context.args.cloud as string);
      const api = await context.api();
      const copies = await api.get<CloudCopy[]>(path('clouds', group, name, 'status'));
      const cloud = await api.get<Cloud>(path('clouds', group, name));
      show(
        context,
        { cloud, copies },
        `${statusTable(copies)}${cloud.last_error ? `\nLast sync failed: ${cloud.last_error}` : ''}`,
      );
    },
  },
];
