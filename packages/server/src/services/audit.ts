/** The audit log: every change asked for, recorded after it is answered, and read back by admins. */
import { RepomanError } from '@repoman/core';
import type { Actor } from '../authz.ts';
import { type AuditRow, insertAudit, listAudit } from '../db/audit-dal.ts';
import type { Db } from '../db/schema.ts';
import { guardService, type PageOf, type PageRequest } from './common.ts';

export interface AuditEntry {
  at: string;
  actor: { id: number; name: string } | null;
  dn: string | null;
  address: string | null;
  requestId: string;
  method: string;
  path: string;
  action: string;
  targetType: string | null;
  target: string | null;
  /** `ok`, or the error code of the answer. */
  outcome: string;
  status: number;
  detail: Record<string, unknown> | null;
}

/** An entry read back, in the API's words (docs/api.md#audit-log): the actor by the name they had then. */
export interface AuditRecord {
  id: number;
  /** ISO 8601 */
  time: string;
  actor: string | null;
  dn: string | null;
  address: string | null;
  request_id: string;
  method: string;
  path: string;
  action: string;
  target_type: string | null;
  target: string | null;
  outcome: string;
  status: number;
  detail: Record<string, unknown> | null;
}

/** What the log may be searched by (an action, or a kind of action as `image.`; `ok`, `failed` or a code). */
export type AuditFilter = Parameters<typeof listAudit>[1];

const recordOf = ({ at, actor_id: _id, actor_name, actor_dn, detail, ...row }: AuditRow): AuditRecord => ({
  ...row,
  time: new Date(at).toISOString(),
  actor: actor_name,
  dn: actor_dn,
  detail: detail ? (JSON.parse(detail) as Record<string, unknown>) : null,
});

export function createAuditService(deps: { db: Db }) {
  const { db } = deps;
  return guardService({
    async record(entry: AuditEntry): Promise<void> {
      await insertAudit(db, {
        at: entry.at,
        actor_id: entry.actor?.id ?? null,
        actor_name: entry.actor?.name ?? null,
        actor_dn: entry.dn,
        address: entry.address,
        request_id: entry.requestId,
        method: entry.method,
        path: entry.path,
        action: entry.action,
        target_type: entry.targetType,
        target: entry.target,
        outcome: entry.outcome,
        status: entry.status,
        detail: entry.detail ? JSON.stringify(entry.detail) : null,
      });
    },

    /** Entries newest first; admins only. */
    async list(actor: Actor, filter: AuditFilter, page: PageRequest): Promise<PageOf<AuditRecord>> {
      if (!actor.isAdmin) throw new RepomanError('forbidden', 'Only admins may read the audit log');
      const { items, total } = await listAudit(db, filter, page);
      return { items: items.map(recordOf), total };
    },
  });
}

export type AuditService = ReturnType<typeof createAuditService>;
