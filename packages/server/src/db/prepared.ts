/**
 * Queries built once and run many times. Building a query with Kysely (its nodes, then its SQL) costs more than
 * SQLite takes to run most of ours, some 50 µs against 15, and every request of a kind runs the same queries:
 * each is built and compiled once per engine (and per shape, for a query whose clauses depend on options), then
 * run with the values of the moment in its parameters. The same text also lets the SQLite dialect and the
 * PostgreSQL pool (connect.ts) find their prepared statement at once. What is kept is SQL text, the same for
 * every database of an engine, and nothing of any request.
 */
import { type Compilable, type CompiledQuery, PostgresAdapter } from 'kysely';
import type { Db, Engine } from './schema.ts';

/** Stands for a value while a query is built; the value takes its place at each run. */
class Placeholder {
  readonly key: string;
  constructor(key: string) {
    this.key = key;
  }
}

/**
 * Shapes kept built, per query: a list has thousands of possible shapes (each filter present or not, each sort
 * and order), a few of which are asked for; past this, the least recently built one is dropped.
 */
const SHAPES = 100;

/** The engine a database, or a transaction on it, runs on. */
export const engineOfDb = (db: Db): Engine =>
  db.getExecutor().adapter instanceof PostgresAdapter ? 'postgres' : 'sqlite';

interface Template<R> {
  compiled: CompiledQuery<R>;
  /** For each parameter: the key of the value that fills it, or undefined for a constant of the query. */
  slots: (string | undefined)[];
}

/**
 * A query built once per engine and shape. `build` receives placeholders for `values` (hand each to Kysely as
 * it is, `values.name`: reading one to decide what to build would see a placeholder, not the value) and the
 * `shape`: what decides which clauses the query has, whose `key` names it (the same key, the same clauses).
 * Values must be scalars: a list (`in`) would fix the number of its parameters on the first run.
 */
export function prepared<Values extends object, Row, Shape = undefined>(
  build: (db: Db, values: Values, engine: Engine, shape: Shape) => Compilable<Row>,
  key: (shape: Shape) => string = () => '',
): (db: Db, values: Values, shape?: Shape) => Promise<Row[]> {
  const templates = new Map<string, Template<Row>>();
  const placeholders = new Proxy({} as Values, { get: (_, name) => new Placeholder(String(name)) });
  return async (db, values, shape) => {
    const engine = engineOfDb(db);
    const name = `${engine} ${key(shape as Shape)}`;
    let template = templates.get(name);
    if (!template) {
      const compiled = build(db, placeholders, engine, shape as Shape).compile();
      const slots = compiled.parameters.map((p) => (p instanceof Placeholder ? p.key : undefined));
      template = { compiled, slots };
      templates.set(name, template);
      if (templates.size > SHAPES) templates.delete(templates.keys().next().value as string);
    }
    const { compiled, slots } = template;
    const parameters = compiled.parameters.map((constant, i) => {
      const slot = slots[i];
      return slot === undefined ? constant : (values as Record<string, unknown>)[slot];
    });
    return (await db.executeQuery<Row>({ ...compiled, parameters })).rows;
  };
}
