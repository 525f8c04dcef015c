/**
 * Quotas: a user's quota counts every kept version and converted variant of the images they own, and the
 * whole declared length of their unfinished, unexpired resumable uploads (reserved at creation, so uploads
 * created first and filled later cannot pass it together). A null quota is no limit.
 *
 * Whoever checks and then takes room (creating an upload, publishing a version, recording a variant, taking an
 * image from another user) does both in one transaction, after `lock`: two requests at once, on one server or
 * on several sharing the database, cannot both take the last room.
 */
import { RepomanError } from '@repoman/core';
import { lockUsers, reservedBytesOfOwner } from '../db/quota-dal.ts';
import type { Db } from '../db/schema.ts';
import { findUserById } from '../db/users-dal.ts';
import { usageOfOwners } from '../db/versions-dal.ts';
import { nowIso } from './common.ts';

export interface QuotaOptions {
  /** The transaction to read in (after `lock`), or the database. */
  q?: Db | undefined;
  /** An unfinished upload whose own reservation is not counted (it is the one being checked). */
  exceptUpload?: string | undefined;
}

export interface QuotaStanding {
  name: string;
  quota: number | null;
  /** Bytes of kept versions and variants. */
  stored: number;
  /** Bytes reserved by unfinished uploads. */
  reserved: number;
}

export function createQuotaService(deps: { db: Db }) {
  const { db } = deps;

  async function standing(userId: number, options: QuotaOptions = {}): Promise<QuotaStanding | null> {
    const q = options.q ?? db;
    const user = await findUserById(q, userId);
    if (!user) return null;
    if (user.quota === null || user.quota === undefined)
      return { name: user.name, quota: null, stored: 0, reserved: 0 };
    const [usage, reserved] = await Promise.all([
      usageOfOwners(q, [userId]),
      reservedBytesOfOwner(q, userId, nowIso(), options.exceptUpload),
    ]);
    return { name: user.name, quota: user.quota, stored: usage.get(userId) ?? 0, reserved };
  }

  /** Bytes the user may still store: what the quota leaves after stored and reserved bytes, or Infinity. */
  async function room(userId: number, options: QuotaOptions = {}): Promise<number> {
    const s = await standing(userId, options);
    if (!s || s.quota === null) return Number.POSITIVE_INFINITY;
    return Math.max(0, s.quota - s.stored - s.reserved);
  }

  /** Throws quota_exceeded unless `incoming` more bytes fit in the user's quota. */
  async function check(userId: number, incoming: number, options: QuotaOptions = {}): Promise<void> {
    const s = await standing(userId, options);
    if (!s || s.quota === null) return;
    if (s.stored + s.reserved + incoming <= s.quota) return;
    const reservedText = s.reserved > 0 ? ` and unfinished uploads reserve ${s.reserved}` : '';
    throw new RepomanError(
      'quota_exceeded',
      `${s.name} stores ${s.stored} bytes of a ${s.quota}-byte quota${reservedText}; ${incoming} more do not fit (delete images or unfinished uploads, or ask an admin)`,
      { details: { quota: s.quota, stored: s.stored, reserved: s.reserved, incoming } },
    );
  }

  return {
    standing,
    room,
    check,
    /** Locks the users' quota rows until the transaction ends (see the top of this file). */
    lock: (trx: Db, userIds: readonly number[]) => lockUsers(trx, userIds),
  };
}

export type QuotaService = ReturnType<typeof createQuotaService>;
