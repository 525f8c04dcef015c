/**
 * /api/clouds: a group's clouds (OpenStack projects) that Repoman keeps images present in (docs/clouds.md).
 * Members see them; cloud managers (cloud_manage and membership) register, change and remove them, choose the
 * images that go there, and ask for a sync.
 */
import {
  type Cloud,
  type CloudCopy,
  type CreateCloudBody,
  createCloudBody,
  type ModifyCloudBody,
  modifyCloudBody,
} from '@repoman/core';
import type { FastifyInstance } from 'fastify';
import type { CloudView } from '../../services/clouds.ts';
import { requireActor } from '../auth.ts';
import type { Urls } from '../present.ts';
import type { RouteDeps } from './deps.ts';

const str = { type: 'string' } as const;
const groupParams = { type: 'object', required: ['group'], properties: { group: str } } as const;
const cloudParams = {
  type: 'object',
  required: ['group', 'cloud'],
  properties: { group: str, cloud: str },
} as const;
const imageParams = {
  type: 'object',
  required: ['group', 'cloud', 'user', 'image'],
  properties: { group: str, cloud: str, user: str, image: str },
} as const;
const cloudSchema = {
  type: 'object',
  additionalProperties: true,
  required: ['url', 'group', 'name', 'auth_url', 'credential', 'transfer', 'images'],
  properties: { url: str, group: str, name: str, auth_url: str },
} as const;
const copySchema = {
  type: 'object',
  required: ['image', 'version', 'state', 'glance_id', 'detail', 'attempts', 'updated'],
  properties: {
    image: str,
    version: { type: 'integer' },
    state: str,
    glance_id: { type: ['string', 'null'] },
    detail: { type: ['string', 'null'] },
    attempts: { type: 'integer' },
    updated: str,
  },
} as const;

const seg = encodeURIComponent;
const cloudJson = (urls: Urls, view: CloudView): Cloud => ({
  url: `${urls.https}/api/clouds/${seg(view.group)}/${seg(view.name)}`,
  ...view,
});

export function cloudRoutes(app: FastifyInstance, deps: RouteDeps) {
  const { services, urls } = deps;

  app.get(
    '/api/clouds',
    {
      schema: {
        summary: 'The clouds of every group you belong to (admins: all)',
        tags: ['clouds'],
        response: { 200: { type: 'array', items: cloudSchema } },
      },
    },
    async (request) => {
      const actor = requireActor(request);
      const groups = actor.isAdmin ? null : [...actor.groups];
      const u = urls(request);
      return (await services.clouds.all(actor, groups)).map((view) => cloudJson(u, view));
    },
  );

  app.get<{ Params: { group: string } }>(
    '/api/clouds/:group',
    {
      schema: {
        summary: 'A group’s clouds (its members and admins)',
        tags: ['clouds'],
        params: groupParams,
        response: { 200: { type: 'array', items: cloudSchema } },
      },
    },
    async (request) => {
      const u = urls(request);
      return (await services.clouds.list(requireActor(request), request.params.group)).map((v) =>
        cloudJson(u, v),
      );
    },
  );

  app.post<{ Params: { group: string }; Body: CreateCloudBody }>(
    '/api/clouds/:group',
    {
      schema: {
        summary:
          'Register a cloud for the group (cloud_manage and membership); its credential is checked at once',
        tags: ['clouds'],
        params: groupParams,
        body: createCloudBody,
        response: { 201: cloudSchema },
      },
    },
    async (request, reply) => {
      const view = await services.clouds.register(requireActor(request), request.params.group, request.body);
      const json = cloudJson(urls(request), view);
      request.audit = {
        detail: { cloud: view.name, auth_url: view.auth_url, credential: view.credential.kind },
      };
      return reply.code(201).header('location', json.url).send(json);
    },
  );

  app.get<{ Params: { group: string; cloud: string } }>(
    '/api/clouds/:group/:cloud',
    {
      schema: {
        summary: 'A cloud (never its secret)',
        tags: ['clouds'],
        params: cloudParams,
        response: { 200: cloudSchema },
      },
    },
    async (request) =>
      cloudJson(
        urls(request),
        await services.clouds.get(requireActor(request), request.params.group, request.params.cloud),
      ),
  );

  for (const method of ['patch', 'post'] as const)
    app[method]<{ Params: { group: string; cloud: string }; Body: ModifyCloudBody }>(
      '/api/clouds/:group/:cloud',
      {
        schema: {
          summary: 'Change a cloud (cloud_manage); a new credential or URL is checked at once',
          tags: ['clouds'],
          params: cloudParams,
          body: modifyCloudBody,
          response: { 200: cloudSchema },
        },
      },
      async (request) => {
        const { group, cloud } = request.params;
        const view = await services.clouds.modify(requireActor(request), group, cloud, request.body);
        request.audit = { detail: { fields: Object.keys(request.body ?? {}).sort() } };
        return cloudJson(urls(request), view);
      },
    );

  app.delete<{ Params: { group: string; cloud: string } }>(
    '/api/clouds/:group/:cloud',
    {
      schema: {
        summary: 'Forget a cloud (cloud_manage): the images made there stay',
        tags: ['clouds'],
        params: cloudParams,
      },
    },
    async (request, reply) => {
      await services.clouds.remove(requireActor(request), request.params.group, request.params.cloud);
      return reply.code(204).send();
    },
  );

  for (const [method, on] of [
    ['put', true],
    ['delete', false],
  ] as const)
    app[method]<{ Params: { group: string; cloud: string; user: string; image: string } }>(
      '/api/clouds/:group/:cloud/images/:user/:image',
      {
        schema: {
          summary: on
            ? 'Choose an image for the cloud: its current version goes there (cloud_manage)'
            : 'No longer choose it: its copy there is retired (cloud_manage)',
          tags: ['clouds'],
          params: imageParams,
          response: { 200: cloudSchema },
        },
      },
      async (request) => {
        const { group, cloud, user, image } = request.params;
        const view = await services.clouds.choose(
          requireActor(request),
          group,
          cloud,
          `${user}/${image}`,
          on,
        );
        return cloudJson(urls(request), view);
      },
    );

  app.get<{ Params: { group: string; cloud: string } }>(
    '/api/clouds/:group/:cloud/status',
    {
      schema: {
        summary:
          'What the cloud holds of each image: present (verified), transferring, pending, failed, conflict, retiring',
        tags: ['clouds'],
        params: cloudParams,
        response: { 200: { type: 'array', items: copySchema } },
      },
    },
    async (request): Promise<CloudCopy[]> =>
      services.clouds.status(requireActor(request), request.params.group, request.params.cloud),
  );

  app.post<{ Params: { group: string; cloud: string } }>(
    '/api/clouds/:group/:cloud/sync',
    {
      schema: {
        summary: 'Sync the cloud now (cloud_manage); 202, its status tells how it went',
        tags: ['clouds'],
        params: cloudParams,
      },
    },
    async (request, reply) => {
      await services.clouds.syncNow(requireActor(request), request.params.group, request.params.cloud);
      return reply.code(202).send({ sync: 'requested' });
    },
  );
}
