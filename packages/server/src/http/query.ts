/**
 * Numbers in query strings are decimal digits and nothing else, and no larger than their schema's `maximum`.
 * The schema's coercion alone takes whatever JavaScript reads as a number (`1e21`, `0x10`, ` 5`, `1.0`), and
 * lets a string of 400 nines through as Infinity; a number the database cannot bind (SQLite refuses `1e21` as
 * an OFFSET) was a 500.
 */
import { RepomanError } from '@repoman/core';
import type { FastifyRequest } from 'fastify';

const DECIMAL = /^[0-9]+$/;

interface QuerySchema {
  properties?: Record<string, { type?: string | string[]; maximum?: number }>;
}

/** Refuses (400 invalid_field) a query parameter declared an integer that is not decimal digits, or too large. */
export function checkIntegerQuery(request: FastifyRequest): void {
  const properties = (request.routeOptions.schema?.querystring as QuerySchema | undefined)?.properties;
  const query = request.query;
  if (!properties || query === null || typeof query !== 'object') return;
  for (const [name, value] of Object.entries(query as Record<string, unknown>)) {
    const declared = properties[name];
    if (declared?.type !== 'integer') continue;
    const maximum = declared.maximum ?? Number.MAX_SAFE_INTEGER;
    for (const text of Array.isArray(value) ? value : [value]) {
      const refuse = (rule: string) =>
        new RepomanError('invalid_field', `Invalid query parameter '${name}': ${rule}`, {
          details: { field: name },
        });
      if (typeof text !== 'string' || !DECIMAL.test(text))
        throw refuse('must be a whole number written in decimal digits');
      if (Number(text) > maximum) throw refuse(`must be <= ${maximum}`);
    }
  }
}
