/** The PostgreSQL the tests use: REPOMAN_TEST_PG_URL, each run in a schema of its own. */
import pg from 'pg';

export const PG_URL = process.env.REPOMAN_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Fails (never skips) with instructions when PostgreSQL is not there. */
export async function requirePostgres(): Promise<void> {
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('select 1');
  } catch (error) {
    throw new Error(
      `PostgreSQL is not reachable at ${PG_URL} (${(error as Error).message}). Run the tests with npm test, ` +
        'whose setup step (scripts/test-setup.sh) starts a throwaway PostgreSQL when none answers, start one ' +
        "(for example 'pg_ctlcluster --skip-systemctl-redirect 15 main start') or point REPOMAN_TEST_PG_URL at one.",
    );
  } finally {
    await client.end().catch(() => {});
  }
}

export async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
}
