/** /api/groups: groups, their members and their permissions. */
import {
  type CreateGroupBody,
  createGroupBody,
  type ModifyGroupBody,
  modifyGroupBody,
  pageQuery,
  pageSchema,
} from '@repoman/core';
import type { FastifyInstance } from 'fastify';
import { requireActor } from '../auth.ts';
import { groupJson, imageJson, page } from '../present.ts';
import type { RouteDeps } from './deps.ts';

const groupParams = {
  type: 'object',
  required: ['group'],
  properties: { group: { type: 'string' } },
} as const;
const memberParams = {
  type: 'object',
  required: ['group', 'user'],
  properties: { group: { type: 'string' }, user: { type: 'string' } },
} as const;
const permissionParams = {
  type: 'object',
  required: ['group', 'permission'],
  properties: { group: { type: 'string' }, permission: { type: 'string' } },
} as const;
const groupResponse = { 200: { $ref: 'Group#' } };

export function groupRoutes(app: FastifyInstance, deps: RouteDeps) {
  const { services, urls } = deps;

  app.get<{ Querystring: { limit: number; offset: number } }>(
    '/api/groups',
    {
      schema: {
        summary: 'List groups',
        tags: ['groups'],
        querystring: { type: 'object', additionalProperties: false, properties: pageQuery },
        response: { 200: pageSchema('Group') },
      },
    },
    async (request) => {
      requireActor(request);
      const result = await services.groups.list(request.query);
      const u = urls(request);
      return page(request, u, result, request.query, (v) => groupJson(u, v));
    },
  );

  app.post<{ Body: CreateGroupBody }>(
    '/api/groups',
    {
      schema: {
        summary: 'Create a group, optionally with members and permissions (group_create)',
        tags: ['groups'],
        body: createGroupBody,
        response: { 201: { $ref: 'Group#' } },
      },
    },
    async (request, reply) => {
      const json = groupJson(
        urls(request),
        await services.groups.create(requireActor(request), request.body),
      );
      return reply.code(201).header('location', json.url).send(json);
    },
  );

  app.get<{ Params: { group: string } }>(
    '/api/groups/:group',
    { schema: { summary: 'Show a group', tags: ['groups'], params: groupParams, response: groupResponse } },
    async (request) => {
      requireActor(request);
      return groupJson(urls(request), await services.groups.get(request.params.group));
    },
  );

  const modify = {
    schema: {
      summary: 'Rename a group (group_modify; not admins or users)',
      tags: ['groups'],
      params: groupParams,
      body: modifyGroupBody,
      response: groupResponse,
    },
  };
  for (const method of ['post', 'patch'] as const) {
    app[method]<{ Params: { group: string }; Body: ModifyGroupBody }>(
      '/api/groups/:group',
      modify,
      async (request) =>
        groupJson(
          urls(request),
          await services.groups.modify(requireActor(request), request.params.group, request.body),
        ),
    );
  }

  app.delete<{ Params: { group: string } }>(
    '/api/groups/:group',
    {
      schema: {
        summary: 'Delete a group (group_delete; not admins or users)',
        tags: ['groups'],
        params: groupParams,
      },
    },
    async (request, reply) => {
      await services.groups.remove(requireActor(request), request.params.group);
      return reply.code(204).send();
    },
  );

  app.get<{ Params: { group: string }; Querystring: { limit: number; offset: number } }>(
    '/api/groups/:group/shared',
    {
      schema: {
        summary: 'Images shared with the group (its members and admins)',
        tags: ['groups', 'images'],
        params: groupParams,
        querystring: { type: 'object', additionalProperties: false, properties: pageQuery },
        response: { 200: pageSchema('Image') },
      },
    },
    async (request) => {
      const result = await services.images.sharedWithGroup(
        requireActor(request),
        request.params.group,
        request.query,
      );
      const u = urls(request);
      return page(request, u, result, request.query, (v) => imageJson(u, v));
    },
  );

  app.get<{ Params: { group: string } }>(
    '/api/groups/:group/users',
    {
      schema: {
        summary: 'Members of a group',
        tags: ['groups'],
        params: groupParams,
        response: { 200: { type: 'array', items: { type: 'string' } } },
      },
    },
    async (request) => {
      requireActor(request);
      return (await services.groups.get(request.params.group)).users;
    },
  );

  app.get<{ Params: { group: string } }>(
    '/api/groups/:group/permissions',
    {
      schema: {
        summary: 'Permissions of a group',
        tags: ['groups'],
        params: groupParams,
        response: { 200: { type: 'array', items: { type: 'string' } } },
      },
    },
    async (request) => {
      requireActor(request);
      return (await services.groups.get(request.params.group)).permissions;
    },
  );

  for (const [method, verb] of [
    ['post', 'Add'],
    ['delete', 'Remove'],
  ] as const) {
    app[method]<{ Params: { group: string; user: string } }>(
      '/api/groups/:group/users/:user',
      {
        schema: {
          summary: `${verb} a member (group_modify_membership; only for groups granting nothing you lack)`,
          tags: ['groups'],
          params: memberParams,
          response: groupResponse,
        },
      },
      async (request) => {
        const { group, user } = request.params;
        const actor = requireActor(request);
        const view =
          method === 'post'
            ? await services.groups.addMember(actor, group, user)
            : await services.groups.removeMember(actor, group, user);
        return groupJson(urls(request), view);
      },
    );
    app[method]<{ Params: { group: string; permission: string } }>(
      '/api/groups/:group/permissions/:permission',
      {
        schema: {
          summary: `${verb} a permission (group_modify_permissions; only permissions you hold)`,
          tags: ['groups'],
          params: permissionParams,
          response: groupResponse,
        },
      },
      async (request) => {
        const { group, permission } = request.params;
        const actor = requireActor(request);
        const view =
          method === 'post'
            ? await services.groups.addPermission(actor, group, permission)
            : await services.groups.removePermission(actor, group, permission);
        return groupJson(urls(request), view);
      },
    );
  }
}
