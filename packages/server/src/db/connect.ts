/**
 * Opens the metadata database named by a URL: `sqlite:PATH` (the embedded default) or `postgres://…` (for
 * several servers sharing one repository), and applies the migrations.
 */

import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import {
  Kysely,
  type KyselyConfig,
  PostgresDialect,
  type PostgresPool,
  type PostgresPoolClient,
} from 'kysely';
import type pg from 'pg';
import { migrateToLatest } from './migrations.ts';
import type { Database, Db, Engine } from './schema.ts';
import { nodeSqliteDialect, openSqlite } from './sqlite.ts';
import { redactUrl } from './url.ts';

export interface DatabaseHandle {
  db: Db;
  engine: Engine;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  url: string;
  /** PostgreSQL only: the schema to use (created if missing). Tests use a fresh one per run. */
  schema?: string;
  /** PostgreSQL only: the most connections this server opens. */
  poolSize?: number;
  /** Called when an idle PostgreSQL connection fails (the pool replaces it). */
  onPoolError?: (error: Error) => void;
  /** Called after every query with its duration (metrics). */
  onQuery?: (seconds: number, failed: boolean) => void;
}

const INT8 = 20;
const TIMESTAMPTZ = 1184;

const asNumber = (value: string) => Number(value);

/**
 * Per-pool type parsers (not pg's global ones): bigint as number (sizes stay below 2^53), timestamps as ISO
 * text. (pg asks for each column of every result: the same functions every time.)
 */
function typeParsers(types: typeof pg.types): pg.CustomTypesConfig {
  const parseTimestamp = types.getTypeParser(TIMESTAMPTZ, 'text');
  const asIsoText = (value: string) => (parseTimestamp(value) as Date).toISOString();
  return {
    getTypeParser(oid: number, format?: 'text' | 'binary') {
      if (oid === INT8) return asNumber;
      if (oid === TIMESTAMPTZ) return asIsoText;
      return types.getTypeParser(oid, format ?? 'text');
    },
  } as pg.CustomTypesConfig;
}

export function engineOf(url: string): Engine {
  if (url.startsWith('sqlite:')) return 'sqlite';
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) return 'postgres';
  throw new Error(
    `database_url must start with sqlite: or postgres:// (got ${JSON.stringify(redactUrl(url))})`,
  );
}

export function sqlitePath(url: string): string {
  return resolve(url.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, ''));
}

function queryLog(options: DatabaseOptions): Pick<KyselyConfig, 'log'> {
  const onQuery = options.onQuery;
  if (!onQuery) return {};
  return { log: (event) => onQuery(event.queryDurationMillis / 1000, event.level === 'error') };
}

/** Distinct statements kept prepared on each PostgreSQL connection; any more run unnamed (parsed every time). */
const PREPARED_STATEMENTS = 500;
/** A single `select` (Kysely's own text: no leading comment, no `;`). */
const SELECT = /^select\b[^;]*$/i;
/** `cached plan must not change result type`: a `select *` prepared before a migration added a column. */
const STALE_PLAN = '0A000';

/**
 * The pool Kysely uses, running every query that has parameters (all that Kysely builds), and every `select`
 * without any, as a named prepared statement: PostgreSQL parses it once per connection instead of at every run
 * (and plans it once, when the plan does not depend on the values), and pg skips sending its text again. The
 * name is the hash of the text, so a statement is the same on every connection. Other statements without
 * parameters (`begin`, `commit`, a migration's script of several statements, which a prepared statement cannot
 * hold) run as they did. A prepared `select *` fails once its table gains a column (a migration by a newer
 * server sharing the database): that connection then prepares it again under a new name.
 */
function preparingPool(pool: pg.Pool): PostgresPool {
  const names = new Map<string, string>();
  const nameOf = (text: string): string | undefined => {
    let name = names.get(text);
    if (name === undefined && names.size < PREPARED_STATEMENTS) {
      name = `k${createHash('sha1').update(text).digest('base64url')}`;
      names.set(text, name);
    }
    return name;
  };
  const wrapped = new WeakMap<pg.PoolClient, PostgresPoolClient>();
  const wrap = (client: pg.PoolClient): PostgresPoolClient => {
    /** Bumped when a plan went stale: this connection's statements get new names. */
    let generation = 0;
    const query = async (text: string, values: unknown[]) => {
      const name = nameOf(text);
      if (name === undefined) return client.query(text, values);
      try {
        return await client.query({ name: `${name}_${generation}`, text, values });
      } catch (error) {
        if ((error as { code?: string }).code !== STALE_PLAN) throw error;
        generation++;
        return client.query({ name: `${name}_${generation}`, text, values });
      }
    };
    return {
      query: ((textOrCursor: string | object, values?: readonly unknown[]) =>
        typeof textOrCursor === 'string' && values && (values.length > 0 || SELECT.test(textOrCursor))
          ? query(textOrCursor, [...values])
          : client.query(
              textOrCursor as string,
              values as unknown[],
            )) as unknown as PostgresPoolClient['query'],
      release: (destroy?: boolean) => client.release(destroy),
    };
  };
  return {
    connect: async () => {
      const client = await pool.connect();
      let found = wrapped.get(client);
      if (!found) {
        found = wrap(client);
        wrapped.set(client, found);
      }
      return found;
    },
    end: () => pool.end(),
  };
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export async function openDatabase(options: DatabaseOptions): Promise<DatabaseHandle> {
  const engine = engineOf(options.url);
  let db: Db;
  if (engine === 'sqlite') {
    const path = sqlitePath(options.url);
    mkdirSync(dirname(path), { recursive: true });
    db = new Kysely<Database>({ dialect: nodeSqliteDialect(openSqlite(path)), ...queryLog(options) });
  } else {
    const schema = options.schema;
    if (schema !== undefined && !SCHEMA_NAME.test(schema))
      throw new Error(`Invalid PostgreSQL schema name ${schema}`);
    // Loaded only for PostgreSQL: a server on SQLite holds no driver it does not use.
    const { default: driver } = await import('pg');
    const pool = new driver.Pool({
      connectionString: options.url,
      max: options.poolSize ?? 10,
      types: typeParsers(driver.types),
      connectionTimeoutMillis: 5000,
      ...(schema ? { options: `-c search_path=${schema}` } : {}),
    });
    // A client losing its server (a restart) must not crash the process, idle in the pool or checked out
    // between two queries: the pool then drops it and opens a new one, and its query fails as unavailable.
    pool.on('error', (error) => options.onPoolError?.(error));
    pool.on('connect', (client) => client.on('error', (error) => options.onPoolError?.(error)));
    if (schema) {
      const client = await pool.connect();
      try {
        await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`).catch((error: { code?: string }) => {
          // Another server creating it at the same moment: it exists, which is what we wanted.
          if (error.code !== '23505' && error.code !== '42P06') throw error;
        });
      } finally {
        client.release();
      }
    }
    db = new Kysely<Database>({
      dialect: new PostgresDialect({ pool: preparingPool(pool) }),
      ...queryLog(options),
    });
  }
  try {
    // Servers starting at the same moment on a fresh schema race on its catalog (a schema or table another
    // one is creating right now is briefly missing or duplicate): such a start tries again.
    for (let attempt = 1; ; attempt++) {
      try {
        await migrateToLatest(db, engine);
        break;
      } catch (error) {
        const code = ((error as Error).cause as { code?: string } | undefined)?.code;
        if (attempt >= 5 || !['3F000', '42P07', '42P06', '23505'].includes(code ?? '')) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100 * attempt + Math.random() * 100));
      }
    }
  } catch (error) {
    await db.destroy();
    throw error;
  }
  return { db, engine, close: () => db.destroy() };
}
