/**
 * Kysely's SQLite dialect over Node's built-in `node:sqlite` (no native addon to compile, so the server runs
 * on the Node binary the repository pins). Kysely expects better-sqlite3's statement API; this adapts it.
 */
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite';
import { type SqliteDatabase, SqliteDialect, type SqliteStatement } from 'kysely';

/** node:sqlite binds neither booleans nor Dates: store them as 0/1 and ISO 8601 text. */
function toSqlite(value: unknown): SQLInputValue {
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (value instanceof Date) return value.toISOString();
  if (value === undefined) return null;
  return value as SQLInputValue;
}

function bind(parameters: ReadonlyArray<unknown>): SQLInputValue[] {
  return parameters.map(toSqlite);
}

function adaptStatement(statement: StatementSync): SqliteStatement {
  return {
    reader: statement.columns().length > 0,
    all: (parameters) => statement.all(...bind(parameters)),
    run: (parameters) => statement.run(...bind(parameters)),
    iterate: (parameters) => statement.iterate(...bind(parameters)),
  };
}

export function openSqlite(path: string): DatabaseSync {
  const database = new DatabaseSync(path);
  // WAL lets readers proceed during a write; FULL sync makes each commit durable; the busy timeout waits
  // out another connection's write instead of failing with SQLITE_BUSY.
  database.exec('PRAGMA journal_mode = WAL');
  database.exec('PRAGMA synchronous = FULL');
  database.exec('PRAGMA busy_timeout = 10000');
  database.exec('PRAGMA foreign_keys = ON');
  return database;
}

/** Statements kept prepared, by their SQL (Kysely builds the same text for the same query shape). */
const STATEMENT_CACHE = 256;

export function nodeSqliteDialect(database: DatabaseSync): SqliteDialect {
  // Preparing costs more than running most of our queries: keep the recent ones, least recently used out.
  const cache = new Map<string, SqliteStatement>();
  const adapted: SqliteDatabase = {
    close: () => {
      cache.clear();
      database.close();
    },
    prepare: (sql) => {
      const cached = cache.get(sql);
      if (cached) {
        cache.delete(sql);
        cache.set(sql, cached);
        return cached;
      }
      const statement = adaptStatement(database.prepare(sql));
      cache.set(sql, statement);
      if (cache.size > STATEMENT_CACHE) cache.delete(cache.keys().next().value as string);
      return statement;
    },
  };
  return new SqliteDialect({ database: adapted });
}
