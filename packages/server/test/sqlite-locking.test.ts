/**
 * One SQLite file, two connections (as two worker processes have): a write transaction begins IMMEDIATE and
 * waits for the other's write lock without holding the event loop, and a transaction that reads before it
 * writes is never refused for a write made meanwhile (src/db/sqlite.ts).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import { type DatabaseHandle, openDatabase } from '../src/db/connect.ts';

describe('SQLite shared by two connections', () => {
  let dir: string;
  let first: DatabaseHandle;
  let second: DatabaseHandle;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'repoman-locking-'));
    first = await openDatabase({ url: `sqlite:${join(dir, 'r.db')}` });
    second = await openDatabase({ url: `sqlite:${join(dir, 'r.db')}` });
    await sql`create table counter (n integer not null)`.execute(first.db);
    await sql`insert into counter values (0)`.execute(first.db);
  });
  after(async () => {
    await first?.close();
    await second?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('waits for the other connection to commit, and the event loop runs meanwhile', async () => {
    await sql`update counter set n = 0`.execute(first.db);
    let held!: () => void;
    const holding = new Promise<void>((resolve) => {
      held = resolve;
    });
    // The first connection holds the write lock for half a second, between two statements.
    const slow = first.db.transaction().execute(async (trx) => {
      await sql`update counter set n = n + 1`.execute(trx);
      held();
      await sleep(500);
      await sql`update counter set n = n + 1`.execute(trx);
    });
    await holding;
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 20);
    // The second reads, then writes what it read plus one: it must see the first's whole transaction.
    await second.db.transaction().execute(async (trx) => {
      const { rows } = await sql<{ n: number }>`select n from counter`.execute(trx);
      await sql`update counter set n = ${(rows[0]?.n ?? 0) + 1}`.execute(trx);
    });
    clearInterval(ticker);
    await slow;
    // A wait inside SQLite would have held this thread, and the first connection with it, until it gave up.
    assert.ok(ticks > 0, 'timers ran while the second waited');
    const { rows } = await sql<{ n: number }>`select n from counter`.execute(first.db);
    assert.equal(rows[0]?.n, 3, 'no update was lost');
  });

  it('lets many read-then-write transactions of both connections interleave without an error', async () => {
    await sql`update counter set n = 0`.execute(first.db);
    const increment = (handle: DatabaseHandle) =>
      handle.db.transaction().execute(async (trx) => {
        const { rows } = await sql<{ n: number }>`select n from counter`.execute(trx);
        await sleep(1); // the other connection's turn to try
        await sql`update counter set n = ${(rows[0]?.n ?? 0) + 1}`.execute(trx);
      });
    await Promise.all(Array.from({ length: 40 }, (_, i) => increment(i % 2 === 0 ? first : second)));
    const { rows } = await sql<{ n: number }>`select n from counter`.execute(second.db);
    assert.equal(rows[0]?.n, 40);
  });
});
