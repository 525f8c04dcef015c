/**
 * Clouds: a group's OpenStack projects that Repoman keeps chosen images present in (docs/clouds.md). Its cloud
 * managers (cloud_manage and membership) register a cloud with a credential, checked at once (a Keystone
 * token, Glance reachable, an image made and deleted), choose images for it, and ask for a sync; the
 * reconciler (services/cloud-sync.ts) does the rest. A credential's secret is sealed at rest
 * (clouds/secrets.ts) and never shown.
 */
import { randomUUID } from 'node:crypto';
import {
  type Cloud,
  type CloudCopy,
  type CloudCopyState,
  type CloudTransfer,
  type CloudVisibility,
  type CreateCloudBody,
  type ModifyCloudBody,
  RepomanError,
} from '@repoman/core';
import { type Actor, canManageClouds, canReadImage, canSeeClouds, isVisibleToGroup } from '../authz.ts';
import { type CloudCredential, type CloudEndpoint, CloudError, type OpenStack } from '../clouds/openstack.ts';
import { open, type SecretKeys, seal, sealedWithCurrent } from '../clouds/secrets.ts';
import {
  type CloudWithGroup,
  chooseImage,
  chosenImages,
  copiesOf,
  deleteCloud,
  findCloud,
  insertCloud,
  listClouds,
  replaceSecret,
  unchooseImage,
  updateCloud,
} from '../db/clouds-dal.ts';
import { findGroupByName, type GroupRow } from '../db/groups-dal.ts';
import { findImage } from '../db/images-dal.ts';
import type { Db } from '../db/schema.ts';
import { checkedAccountName, guardService, nowIso } from './common.ts';
import { imageRefOf } from './endorsements.ts';
import { createImageAccess, type ImageRef } from './image-access.ts';

export type CloudView = Omit<Cloud, 'url'>;

/** The public half of a credential, as stored (JSON) and shown. */
type PublicCredential = Cloud['credential'];

function credentialOf(
  body: CreateCloudBody | ModifyCloudBody,
): { public: PublicCredential; secret: string } | null {
  if (body.application_credential_id !== undefined || body.application_credential_secret !== undefined) {
    if (!body.application_credential_id || !body.application_credential_secret)
      throw new RepomanError(
        'invalid_field',
        'An application credential needs both application_credential_id and application_credential_secret',
        { details: { field: 'application_credential_secret' } },
      );
    if (body.username !== undefined || body.password !== undefined)
      throw new RepomanError(
        'invalid_field',
        'Give an application credential or a user and password, not both',
        {
          details: { field: 'username' },
        },
      );
    return {
      public: { kind: 'application_credential', id: body.application_credential_id },
      secret: body.application_credential_secret,
    };
  }
  if (body.username !== undefined || body.password !== undefined || body.project !== undefined) {
    if (!body.username || !body.password || !body.project)
      throw new RepomanError('invalid_field', 'A user credential needs username, password and project', {
        details: { field: body.username ? (body.password ? 'project' : 'password') : 'username' },
      });
    return {
      public: {
        kind: 'password',
        username: body.username,
        user_domain: body.user_domain || 'Default',
        project: body.project,
        project_domain: body.project_domain || 'Default',
      },
      secret: body.password,
    };
  }
  return null;
}

function checkedAuthUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new RepomanError('invalid_field', `auth_url is not a URL: '${text}'`, {
      details: { field: 'auth_url' },
    });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new RepomanError('invalid_field', 'auth_url must be an http or https URL', {
      details: { field: 'auth_url' },
    });
  if (url.username || url.password)
    throw new RepomanError(
      'invalid_field',
      'auth_url must not hold a user or password: give them as fields',
      {
        details: { field: 'auth_url' },
      },
    );
  return url.href.replace(/\/+$/, '');
}

export function createCloudService(deps: {
  db: Db;
  keys: SecretKeys;
  openstack: OpenStack;
  wake: () => void;
}) {
  const { db, keys, openstack } = deps;
  const access = createImageAccess(db);

  async function requireGroup(name: string): Promise<GroupRow> {
    const group = await findGroupByName(db, name);
    if (!group) throw new RepomanError('group_not_found', `No group '${name}'`);
    return group;
  }

  function mayManage(actor: Actor, group: string) {
    if (!canManageClouds(actor, group))
      throw new RepomanError(
        'forbidden',
        `You may not manage ${group}'s clouds: that takes the cloud_manage permission and membership of the group`,
      );
  }

  async function requireCloud(actor: Actor, groupName: string, name: string): Promise<CloudWithGroup> {
    const group = await requireGroup(groupName);
    const cloud = canSeeClouds(actor, group.name) ? await findCloud(db, group.id, name) : undefined;
    if (!cloud) throw new RepomanError('cloud_not_found', `${group.name} has no cloud '${name}'`);
    return cloud;
  }

  async function view(row: CloudWithGroup): Promise<CloudView> {
    const images = await chosenImages(db, row.id);
    return {
      group: row.group_name,
      name: row.name,
      auth_url: row.auth_url,
      region: row.region,
      credential: JSON.parse(row.credential) as PublicCredential,
      disk_format: row.disk_format,
      visibility: row.visibility as CloudVisibility,
      shared_projects: JSON.parse(row.shared_projects) as string[],
      name_prefix: row.name_prefix,
      transfer: row.transfer as CloudTransfer,
      follow_endorsed: Boolean(row.follow_endorsed),
      images: images.map((i) => `${i.owner_name}/${i.name}`),
      created: row.created,
      modified: row.modified,
      last_sync: row.last_sync,
      last_error: row.last_error,
    };
  }

  /**
   * Checks a credential as the sync will use it: a token, Glance reachable, and an image made and deleted
   * (the right to create images). A clear error otherwise, in Keystone's or Glance's words.
   */
  async function check(endpoint: CloudEndpoint): Promise<void> {
    try {
      const session = await openstack.login(endpoint);
      const glance = openstack.glance(session);
      await glance.list({ repoman_probe: 'none' });
      const probe = await glance.create({
        name: 'repoman-probe',
        disk_format: 'raw',
        container_format: 'bare',
        repoman_probe: 'true',
      });
      await glance.remove(probe.id);
    } catch (error) {
      if (error instanceof CloudError)
        throw new RepomanError(
          'cloud_check_failed',
          `The cloud does not work with this credential: ${error.message}`,
        );
      if (error instanceof RepomanError && error.code === 'destination_refused')
        throw new RepomanError('cloud_check_failed', `The cloud's address is refused: ${error.message}`);
      throw error;
    }
  }

  /** The endpoint a cloud's row describes, its secret opened. */
  function endpointOf(
    row: Pick<CloudWithGroup, 'id' | 'auth_url' | 'region' | 'credential' | 'credential_secret'>,
  ): CloudEndpoint {
    const credential = JSON.parse(row.credential) as PublicCredential;
    const secret = open(row.credential_secret, keys, row.id);
    const full: CloudCredential =
      credential.kind === 'application_credential'
        ? { kind: 'application_credential', id: credential.id ?? '', secret }
        : {
            kind: 'password',
            username: credential.username ?? '',
            password: secret,
            userDomain: credential.user_domain ?? 'Default',
            project: credential.project ?? '',
            projectDomain: credential.project_domain ?? 'Default',
          };
    return { authUrl: row.auth_url, region: row.region, credential: full };
  }

  /** A secret sealed with a previous key, sealed again with the current one (a key rotation, docs/clouds.md). */
  async function reseal(row: Pick<CloudWithGroup, 'id' | 'credential_secret'>): Promise<void> {
    if (sealedWithCurrent(row.credential_secret, keys)) return;
    const resealed = seal(open(row.credential_secret, keys, row.id), keys, row.id);
    await replaceSecret(db, row.id, row.credential_secret, resealed);
  }

  return {
    endpointOf,
    reseal,

    ...guardService(
      {
        async register(actor: Actor, groupName: string, body: CreateCloudBody): Promise<CloudView> {
          const group = await requireGroup(groupName);
          mayManage(actor, group.name);
          const name = checkedAccountName('group', body.name);
          const credential = credentialOf(body);
          if (!credential)
            throw new RepomanError(
              'invalid_field',
              'Give an application credential (application_credential_id and _secret) or a user (username, password, project)',
              { details: { field: 'application_credential_id' } },
            );
          const id = randomUUID();
          const now = nowIso();
          const row = {
            id,
            group_id: group.id,
            name,
            auth_url: checkedAuthUrl(body.auth_url),
            region: body.region?.trim() || null,
            credential_kind: credential.public.kind,
            credential: JSON.stringify(credential.public),
            credential_secret: seal(credential.secret, keys, id),
            disk_format: body.disk_format ?? null,
            visibility: body.visibility ?? 'private',
            shared_projects: JSON.stringify(body.shared_projects ?? []),
            name_prefix: body.name_prefix ?? '',
            transfer: body.transfer ?? 'web-download',
            follow_endorsed: body.follow_endorsed ?? true,
            created_by: actor.id,
            created: now,
            modified: now,
            lease: null,
            lease_until: null,
            next_sync: now,
            last_sync: null,
            last_error: null,
          };
          if (await findCloud(db, group.id, name))
            throw new RepomanError('cloud_exists', `${group.name} has a cloud '${name}' already`);
          await check(endpointOf(row));
          await insertCloud(db, row);
          deps.wake();
          return view({ ...row, group_name: group.name });
        },

        /** The clouds of these groups (every group's: null). */
        async all(_actor: Actor, groups: string[] | null): Promise<CloudView[]> {
          const rows = await listClouds(db, null);
          return Promise.all(
            rows.filter((row) => groups === null || groups.includes(row.group_name)).map(view),
          );
        },

        async list(actor: Actor, groupName: string): Promise<CloudView[]> {
          const group = await requireGroup(groupName);
          if (!canSeeClouds(actor, group.name)) return [];
          return Promise.all((await listClouds(db, group.id)).map(view));
        },

        async get(actor: Actor, groupName: string, name: string): Promise<CloudView> {
          return view(await requireCloud(actor, groupName, name));
        },

        /** Changes a cloud; a new credential (or URL, or region) is checked as at registration. */
        async modify(
          actor: Actor,
          groupName: string,
          name: string,
          body: ModifyCloudBody,
        ): Promise<CloudView> {
          const cloud = await requireCloud(actor, groupName, name);
          mayManage(actor, cloud.group_name);
          const credential = credentialOf(body);
          const patch: Partial<CloudWithGroup> = { modified: nowIso(), next_sync: nowIso() };
          if (body.auth_url !== undefined) {
            patch.auth_url = checkedAuthUrl(body.auth_url);
            // The stored secret goes only where it was given for: another Keystone needs it given again.
            if (patch.auth_url !== cloud.auth_url && !credential)
              throw new RepomanError(
                'invalid_field',
                'A new auth_url needs its credential given again (application_credential_id and _secret, or username, password and project)',
                { details: { field: 'auth_url' } },
              );
          }
          if (body.region !== undefined) patch.region = body.region?.trim() || null;
          if (credential) {
            patch.credential_kind = credential.public.kind;
            patch.credential = JSON.stringify(credential.public);
            patch.credential_secret = seal(credential.secret, keys, cloud.id);
          }
          if (body.disk_format !== undefined) patch.disk_format = body.disk_format;
          if (body.visibility !== undefined) patch.visibility = body.visibility;
          if (body.shared_projects !== undefined)
            patch.shared_projects = JSON.stringify(body.shared_projects);
          if (body.name_prefix !== undefined) patch.name_prefix = body.name_prefix;
          if (body.transfer !== undefined) patch.transfer = body.transfer;
          if (body.follow_endorsed !== undefined) patch.follow_endorsed = body.follow_endorsed;
          const changed = { ...cloud, ...patch };
          if (credential || body.auth_url !== undefined || body.region !== undefined)
            await check(endpointOf(changed));
          const { group_name: _, ...columns } = patch as CloudWithGroup;
          await updateCloud(db, cloud.id, columns);
          deps.wake();
          return view(changed);
        },

        /** Forgets a cloud: the images Repoman made there stay (docs/clouds.md says how to remove them first). */
        async remove(actor: Actor, groupName: string, name: string): Promise<void> {
          const cloud = await requireCloud(actor, groupName, name);
          mayManage(actor, cloud.group_name);
          await deleteCloud(db, cloud.id);
        },

        /** Chooses an image for the cloud (its current version follows it), or no longer. */
        async choose(
          actor: Actor,
          groupName: string,
          name: string,
          imageText: string,
          on: boolean,
        ): Promise<CloudView> {
          const cloud = await requireCloud(actor, groupName, name);
          mayManage(actor, cloud.group_name);
          const ref: ImageRef = imageRefOf(imageText);
          if (on) {
            const { row, target } = await access.find(actor, ref);
            if (!canReadImage(actor, target) || !isVisibleToGroup(target, cloud.group_name))
              throw new RepomanError(
                'forbidden',
                `${ref.owner}/${ref.name} is not visible to ${cloud.group_name}: make it public, share it with the group, or ask a member to own it`,
              );
            await chooseImage(db, cloud.id, row.id, actor.id, nowIso());
          } else {
            // Unchoosing needs no right to read the image: one that stopped being shared must be removable.
            const row = await findImage(db, ref.owner, ref.name);
            if (!row || !(await unchooseImage(db, cloud.id, row.id)))
              throw new RepomanError(
                'image_not_found',
                `${ref.owner}/${ref.name} is not chosen for ${cloud.name}`,
              );
          }
          await updateCloud(db, cloud.id, { next_sync: nowIso() });
          deps.wake();
          return view(cloud);
        },

        /** What the cloud holds of each image, or is doing about it. */
        async status(actor: Actor, groupName: string, name: string): Promise<CloudCopy[]> {
          const cloud = await requireCloud(actor, groupName, name);
          return (await copiesOf(db, cloud.id)).map((row) => ({
            image: row.image_name,
            version: row.version,
            state: row.state as CloudCopyState,
            glance_id: row.glance_id,
            detail: row.detail,
            attempts: row.attempts,
            updated: row.updated,
          }));
        },

        /** Asks for a sync now (a manager's "Save", or after a change elsewhere). */
        async syncNow(actor: Actor, groupName: string, name: string): Promise<void> {
          const cloud = await requireCloud(actor, groupName, name);
          mayManage(actor, cloud.group_name);
          await updateCloud(db, cloud.id, { next_sync: nowIso() });
          deps.wake();
        },
      },
      (target) => (target.includes('clouds') ? 'cloud_exists' : 'conflict'),
    ),
  };
}

export type CloudService = ReturnType<typeof createCloudService>;
