/** Data access for the audit log: one row per change asked for, read back by admins with filters. */
import type { Insertable, Selectable } from 'kysely';
import type { AuditLogTable, Db } from './schema.ts';

export type AuditRow = Selectable<AuditLogTable>;

export interface AuditFilter {
  actor?: string | undefined;
  /** An action (`image.delete`), or every action of a kind (`image.`). */
  action?: string | undefined;
  target_type?: string | undefined;
  target?: string | undefined;
  /** `ok`, `failed` (anything else), or one error code. */
  outcome?: string | undefined;
  address?: string | undefined;
  since?: string | undefined;
  until?: string | undefined;
}

export async function insertAudit(db: Db, row: Insertable<AuditLogTable>): Promise<void> {
  await db.insertInto('audit_log').values(row).execute();
}

/** Newest first. */
export async function listAudit(
  db: Db,
  filter: AuditFilter,
  page: { limit: number; offset: number },
): Promise<{ items: AuditRow[]; total: number }> {
  let query = db.selectFrom('audit_log');
  if (filter.actor !== undefined) query = query.where('actor_name', '=', filter.actor);
  if (filter.action !== undefined)
    // `image.` is every action from `image.` up to `image/`, the next character.
    query = filter.action.endsWith('.')
      ? query.where('action', '>=', filter.action).where('action', '<', `${filter.action.slice(0, -1)}/`)
      : query.where('action', '=', filter.action);
  if (filter.target_type !== undefined) query = query.where('target_type', '=', filter.target_type);
  if (filter.target !== undefined) query = query.where('target', '=', filter.target);
  if (filter.outcome === 'failed') query = query.where('outcome', '!=', 'ok');
  else if (filter.outcome !== undefined) query = query.where('outcome', '=', filter.outcome);
  if (filter.address !== undefined) query = query.where('address', '=', filter.address);
  if (filter.since !== undefined) query = query.where('at', '>=', filter.since);
  if (filter.until !== undefined) query = query.where('at', '<', filter.until);
  const [items, count] = await Promise.all([
    query.selectAll().orderBy('id', 'desc').limit(page.limit).offset(page.offset).execute(),
    query.select((eb) => eb.fn.countAll<number | string>().as('n')).executeTakeFirst(),
  ]);
  return { items, total: Number(count?.n ?? 0) };
}
