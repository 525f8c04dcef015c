/**
 * Kysely's SQLite dialect over Node's built-in `node:sqlite` (no native addon to compile, so the server runs
 * on the Node binary the repository pins). Kysely expects better-sqlite3's statement API; this adapts it.
 *
 * Several processes write one file (the workers of cluster.ts; `repoman-server fsck`), and SQLite lets one
 * write at a time. Two traps, checked on Node 24.21 with SQLite 3.50:
 * - `node:sqlite` is synchronous, so SQLite's busy timeout waits for another process's write lock by sleeping
 *   on the event loop's thread: every request of the waiting worker stalls as long as the other's transaction
 *   lasts, and a transaction lasts as long as its process takes between its statements (seconds under load).
 * - A plain (deferred) `BEGIN` takes the write lock at its first write. If another process wrote since the
 *   transaction's first read, SQLite answers SQLITE_BUSY at once (SQLITE_BUSY_SNAPSHOT, no waiting can help).
 * So every transaction that may write begins `IMMEDIATE` (the write lock first, or SQLITE_BUSY before anything
 * was read), SQLite's own wait is off, and a statement that finds the database busy outside a transaction
 * (`BEGIN IMMEDIATE` included) is tried again a few milliseconds later, for as long as the busy timeout used to
 * wait, without holding the event loop. Inside a transaction that holds the lock, nothing waits for another.
 */

import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CompiledQuery,
  type DatabaseConnection,
  type Driver,
  type QueryResult,
  type SqliteDatabase,
  SqliteDialect,
  type SqliteDialectConfig,
  SqliteDriver,
  type SqliteStatement,
  type TransactionSettings,
} from 'kysely';

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

/** How long a statement may wait, in all, for another connection's write (what the busy timeout was). */
const BUSY_WAIT_MS = 10_000;
/** The first pause after SQLITE_BUSY, and the longest; they double in between. */
const FIRST_PAUSE_MS = 1;
const LONGEST_PAUSE_MS = 32;

/** SQLITE_BUSY, or one of its extended codes (SQLITE_BUSY_SNAPSHOT 517, SQLITE_BUSY_RECOVERY 261). */
const isBusy = (error: unknown) => ((error as { errcode?: number }).errcode ?? 0) % 256 === 5;

export function openSqlite(path: string): DatabaseSync {
  const database = new DatabaseSync(path);
  // SQLite waits for no lock on the event loop's thread: the dialect waits, asynchronously (see the top).
  // Until the dialect is in charge (the pragmas below, a first start's WAL switch), a short wait.
  database.exec('PRAGMA busy_timeout = 1000');
  // WAL lets readers proceed during a write; FULL sync makes each commit durable.
  database.exec('PRAGMA journal_mode = WAL');
  database.exec('PRAGMA synchronous = FULL');
  database.exec('PRAGMA foreign_keys = ON');
  database.exec('PRAGMA busy_timeout = 0');
  return database;
}

/**
 * Runs `statement` (synchronous, in `node:sqlite`), trying again after a pause while SQLite answers
 * SQLITE_BUSY, for up to BUSY_WAIT_MS; then that error is the answer (the services make it a 503).
 */
async function whenNotBusy<T>(statement: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + BUSY_WAIT_MS;
  for (let pause = FIRST_PAUSE_MS; ; pause = Math.min(2 * pause, LONGEST_PAUSE_MS)) {
    try {
      return await statement();
    } catch (error) {
      if (!isBusy(error) || Date.now() + pause > deadline) throw error;
    }
    await sleep(pause);
  }
}

/**
 * Kysely's SQLite driver, with transactions that begin IMMEDIATE (DEFERRED when declared read-only) and
 * statements outside transactions that wait for a busy database without blocking (see the top).
 */
class NodeSqliteDriver extends SqliteDriver {
  readonly #database: DatabaseSync;

  constructor(config: SqliteDialectConfig, database: DatabaseSync) {
    super(config);
    this.#database = database;
  }

  override async acquireConnection(): Promise<DatabaseConnection> {
    const connection = await super.acquireConnection();
    const database = this.#database;
    return {
      executeQuery: <R>(query: CompiledQuery): Promise<QueryResult<R>> =>
        // In a transaction the lock is held already (IMMEDIATE), or the transaction only reads.
        database.isTransaction
          ? connection.executeQuery<R>(query)
          : whenNotBusy(() => connection.executeQuery<R>(query)),
      streamQuery: (query, chunkSize) => connection.streamQuery(query, chunkSize),
    };
  }

  override async beginTransaction(connection: DatabaseConnection, settings?: TransactionSettings) {
    const mode = settings?.accessMode === 'read only' ? 'deferred' : 'immediate';
    await connection.executeQuery(CompiledQuery.raw(`begin ${mode}`));
  }
}

/** The dialect, with NodeSqliteDriver. */
class NodeSqliteDialect extends SqliteDialect {
  readonly #config: SqliteDialectConfig;
  readonly #database: DatabaseSync;

  constructor(config: SqliteDialectConfig, database: DatabaseSync) {
    super(config);
    this.#config = config;
    this.#database = database;
  }

  override createDriver(): Driver {
    return new NodeSqliteDriver(this.#config, this.#database);
  }
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
  return new NodeSqliteDialect({ database: adapted }, database);
}
