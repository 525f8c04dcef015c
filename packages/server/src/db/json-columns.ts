/**
 * What would be a query of its own (who an image is shared with, a user's groups) as a column of the row it
 * belongs to: a JSON array of a correlated subquery's values, sorted, `[]` when it has no rows. One round trip
 * instead of several; each engine has its own JSON functions (SQLite's since 3.44 take `order by`).
 */
import { type Expression, type RawBuilder, sql } from 'kysely';
import type { Engine } from './schema.ts';

/** The aggregate of a subquery's `value`s in `order`: `[…]`, or `[]` for no rows; `distinct` drops repeats. */
export function jsonArray(
  engine: Engine,
  value: Expression<unknown>,
  order: Expression<unknown>,
  options: { distinct?: boolean } = {},
): RawBuilder<unknown> {
  const distinct = options.distinct ? sql`distinct ` : sql``;
  return engine === 'postgres'
    ? sql`coalesce(json_agg(${distinct}${value} order by ${order}), '[]'::json)`
    : sql`json_group_array(${distinct}${value} order by ${order})`;
}

/** `[a, b]` as one JSON value (an element of `jsonArray`). */
export function jsonPair(
  engine: Engine,
  a: Expression<unknown>,
  b: Expression<unknown>,
): RawBuilder<unknown> {
  return engine === 'postgres' ? sql`json_build_array(${a}, ${b})` : sql`json_array(${a}, ${b})`;
}

/** A JSON column as it arrives: text from SQLite, already parsed by pg from PostgreSQL. */
export function fromJson<T>(value: unknown): T {
  return (typeof value === 'string' ? JSON.parse(value) : value) as T;
}
