/** /api/users: accounts, their groups, images and what is shared with them. */
import {
  type CreateUserBody,
  createUserBody,
  type ImageListQuery,
  imageListQuery,
  type ModifyUserBody,
  modifyUserBody,
  pageQuery,
  pageSchema,
} from '@repoman/core';
import type { FastifyInstance } from 'fastify';
import { requireActor } from '../auth.ts';
import { groupJson, imageJson, page, userJson } from '../present.ts';
import type { RouteDeps } from './deps.ts';

const userParams = { type: 'object', required: ['user'], properties: { user: { type: 'string' } } } as const;
const pageOnly = { type: 'object', additionalProperties: false, properties: pageQuery } as const;
type PageQ = { limit: number; offset: number };

export function userRoutes(app: FastifyInstance, deps: RouteDeps) {
  const { services, urls } = deps;

  app.get<{ Querystring: PageQ }>(
    '/api/users',
    {
      schema: {
        summary: 'List users (DNs and emails are shown to admins only)',
        tags: ['users'],
        querystring: pageOnly,
        response: { 200: pageSchema('User') },
      },
    },
    async (request) => {
      const result = await services.users.list(requireActor(request), request.query);
      const u = urls(request);
      return page(request, u, result, request.query, (v) => userJson(u, v));
    },
  );

  app.post<{ Body: CreateUserBody }>(
    '/api/users',
    {
      schema: {
        summary: 'Create a user from a certificate DN (user_create)',
        tags: ['users'],
        body: createUserBody,
        response: { 201: { $ref: 'User#' } },
      },
    },
    async (request, reply) => {
      const view = await services.users.create(requireActor(request), request.body);
      const json = userJson(urls(request), view);
      return reply.code(201).header('location', json.url).send(json);
    },
  );

  app.get<{ Params: { user: string } }>(
    '/api/users/:user',
    {
      schema: {
        summary: 'Show a user',
        tags: ['users'],
        params: userParams,
        response: { 200: { $ref: 'User#' } },
      },
    },
    async (request) =>
      userJson(urls(request), await services.users.get(requireActor(request), request.params.user)),
  );

  const modify = {
    schema: {
      summary:
        'Modify a user: full_name and email (yourself, user_modify_self); user_name, client_dn, suspended (user_modify)',
      tags: ['users'],
      params: userParams,
      body: modifyUserBody,
      response: { 200: { $ref: 'User#' } },
    },
  };
  for (const method of ['post', 'patch'] as const) {
    app[method]<{ Params: { user: string }; Body: ModifyUserBody }>(
      '/api/users/:user',
      modify,
      async (request) =>
        userJson(
          urls(request),
          await services.users.modify(requireActor(request), request.params.user, request.body),
        ),
    );
  }

  app.delete<{ Params: { user: string } }>(
    '/api/users/:user',
    {
      schema: {
        summary: 'Delete a user and their images (user_delete)',
        tags: ['users'],
        params: userParams,
      },
    },
    async (request, reply) => {
      await services.users.remove(requireActor(request), request.params.user);
      return reply.code(204).send();
    },
  );

  app.get<{ Params: { user: string }; Querystring: ImageListQuery }>(
    '/api/users/:user/images',
    {
      schema: {
        summary: "The user's images that you may see",
        tags: ['users', 'images'],
        params: userParams,
        querystring: imageListQuery,
        response: { 200: pageSchema('Image') },
      },
    },
    async (request) => {
      const actor = requireActor(request);
      await services.users.requireUser(request.params.user);
      const result = await services.images.list(actor, { ...request.query, owner: request.params.user });
      const u = urls(request);
      return page(request, u, result, request.query, (v) => imageJson(u, v));
    },
  );

  app.get<{ Params: { user: string }; Querystring: PageQ }>(
    '/api/users/:user/groups',
    {
      schema: {
        summary: "The user's groups",
        tags: ['users', 'groups'],
        params: userParams,
        querystring: pageOnly,
        response: { 200: pageSchema('Group') },
      },
    },
    async (request) => {
      requireActor(request);
      const user = await services.users.requireUser(request.params.user);
      const result = await services.groups.list(request.query, user.id);
      const u = urls(request);
      return page(request, u, result, request.query, (v) => groupJson(u, v));
    },
  );

  app.get<{ Params: { user: string }; Querystring: PageQ }>(
    '/api/users/:user/shared',
    {
      schema: {
        summary: 'Images shared with the user, directly or through a group (the user and admins)',
        tags: ['users', 'images'],
        params: userParams,
        querystring: pageOnly,
        response: { 200: pageSchema('Image') },
      },
    },
    async (request) => {
      const result = await services.images.sharedWith(
        requireActor(request),
        request.params.user,
        request.query,
      );
      const u = urls(request);
      return page(request, u, result, request.query, (v) => imageJson(u, v));
    },
  );
}
