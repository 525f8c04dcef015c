/** `GET /api/audit`: the audit log, newest first, for admins, with filters. */
import { pageQuery } from '@repoman/core';
import type { FastifyInstance } from 'fastify';
import type { AuditFilter } from '../../services/audit.ts';
import { requireActor } from '../auth.ts';
import { page } from '../present.ts';
import type { RouteDeps } from './deps.ts';

const str = { type: 'string', minLength: 1, maxLength: 256 } as const;
const time = { type: 'string', format: 'date-time' } as const;
const nullable = (type: string) => ({ type: [type, 'null'] }) as const;

const entrySchema = {
  type: 'object',
  required: ['id', 'time', 'actor', 'dn', 'address', 'action', 'target_type', 'target', 'outcome', 'status'],
  properties: {
    id: { type: 'integer' },
    time: { type: 'string' },
    actor: nullable('string'),
    dn: nullable('string'),
    address: nullable('string'),
    request_id: { type: 'string' },
    method: { type: 'string' },
    path: { type: 'string' },
    action: { type: 'string' },
    target_type: nullable('string'),
    target: nullable('string'),
    outcome: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: ['object', 'null'], additionalProperties: true },
  },
} as const;

export function auditRoutes(app: FastifyInstance, { services, urls }: RouteDeps) {
  app.get<{ Querystring: AuditFilter & { limit: number; offset: number } }>(
    '/api/audit',
    {
      schema: {
        summary: 'The audit log: every change asked for, allowed or not, newest first (admins)',
        tags: ['operations'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            ...pageQuery,
            actor: { ...str, description: 'Only requests by this user' },
            action: { ...str, description: "An action (image.delete), or every action of a kind ('image.')" },
            target_type: { type: 'string', enum: ['user', 'group', 'image', 'upload', 'job'] },
            target: {
              ...str,
              description: 'A user or group name, an image as owner/name, an upload or job id',
            },
            outcome: { ...str, description: "'ok', 'failed', or an error code" },
            address: str,
            since: { ...time, description: 'From this time on (ISO 8601)' },
            until: { ...time, description: 'Before this time (ISO 8601)' },
          },
        },
        response: {
          200: {
            type: 'object',
            required: ['items', 'total', 'limit', 'offset', 'next'],
            properties: {
              items: { type: 'array', items: entrySchema },
              total: { type: 'integer' },
              limit: { type: 'integer' },
              offset: { type: 'integer' },
              next: nullable('string'),
            },
          },
        },
      },
    },
    async (request) => {
      const { limit, offset, ...filter } = request.query;
      const since = filter.since && new Date(filter.since).toISOString();
      const until = filter.until && new Date(filter.until).toISOString();
      const result = await services.audit.list(
        requireActor(request),
        { ...filter, since, until },
        { limit, offset },
      );
      return page(request, urls(request), result, { limit, offset }, (entry) => entry);
    },
  );
}
