/** What every service shares: the clock, paging, and turning storage failures into domain errors. */
import { ADMINS_GROUP, checkAccountName, checkImageName, RepomanError } from '@repoman/core';
import {
  isForeignKeyViolation,
  isUnavailable,
  isUniqueViolation,
  uniqueViolationTarget,
} from '../db/errors.ts';
import { activeMemberNames, findGroupByName, touchGroup } from '../db/groups-dal.ts';
import type { Db } from '../db/schema.ts';
import { findUserByName } from '../db/users-dal.ts';

export const nowIso = () => new Date().toISOString();

/**
 * The repository keeps an active admin: a change that may take one away (a suspension, a removal from admins,
 * a deletion) runs in a transaction through this, which refuses it (409) if no member of admins is left
 * active. First it updates the admins row: on PostgreSQL that lock queues such changes one behind the other,
 * and the count after the change sees what those before it committed (READ COMMITTED reads each statement
 * afresh); SQLite runs one writer at a time. Two admins suspending each other at once leave one of them.
 */
export async function keepingAnActiveAdmin<T>(trx: Db, what: string, change: () => Promise<T>): Promise<T> {
  const admins = await findGroupByName(trx, ADMINS_GROUP);
  if (!admins) return change();
  await touchGroup(trx, admins.id, nowIso());
  const before = await activeMemberNames(trx, admins.id);
  const result = await change();
  if (before.length > 0 && (await activeMemberNames(trx, admins.id)).length === 0)
    throw new RepomanError(
      'conflict',
      `${what} would leave no active admin; make another user an admin first`,
    );
  return result;
}

export interface PageRequest {
  limit: number;
  offset: number;
}

export interface PageOf<T> {
  items: T[];
  total: number;
}

/** The conflict a unique-constraint race means, chosen from the constraint it hit. */
export type UniqueConflict = (target: string) => RepomanError['code'];

/**
 * Wraps each method of a service so that no driver error escapes it: an unreachable or busy database becomes
 * `database_unavailable` (503), a unique-constraint race the matching conflict, a row deleted under a
 * concurrent write a `conflict` (409); anything else stays a 500.
 */
export function guardService<T extends object>(service: T, onUnique: UniqueConflict = () => 'conflict'): T {
  const guarded = {} as Record<string, unknown>;
  for (const [name, fn] of Object.entries(service)) {
    if (typeof fn !== 'function') {
      guarded[name] = fn;
      continue;
    }
    guarded[name] = async (...args: unknown[]) => {
      try {
        return await fn(...args);
      } catch (error) {
        throw translateStorageError(error, onUnique);
      }
    };
  }
  return guarded as T;
}

export function translateStorageError(error: unknown, onUnique: UniqueConflict = () => 'conflict'): unknown {
  if (error instanceof RepomanError) return error;
  if (isUnavailable(error)) return new RepomanError('database_unavailable', undefined, { cause: error });
  if (isUniqueViolation(error)) {
    return new RepomanError(onUnique(uniqueViolationTarget(error)), undefined, { cause: error });
  }
  if (isForeignKeyViolation(error)) {
    return new RepomanError('conflict', 'Something this request refers to was deleted meanwhile; try again', {
      cause: error,
    });
  }
  return error;
}

/** `""` from a form field means "clear it". */
export const emptyToNull = (value: string | null | undefined) =>
  value === undefined ? undefined : value === null || value.trim() === '' ? null : value;

export function checkedAccountName(kind: 'user' | 'group', name: string): string {
  const problem = checkAccountName(name);
  if (problem === 'reserved')
    throw new RepomanError('invalid_name', `'${name}' is a reserved word and cannot name a ${kind}`);
  if (problem) {
    throw new RepomanError(
      'invalid_name',
      `A ${kind} name has 1-64 lowercase letters, digits, '_' or '-' (got '${name}')`,
    );
  }
  return name;
}

export function checkedImageName(name: string): string {
  const problem = checkImageName(name);
  if (problem === 'reserved')
    throw new RepomanError('invalid_name', `'${name}' is a reserved word and cannot name an image`);
  if (problem) {
    throw new RepomanError(
      'invalid_name',
      `An image name has 1-128 letters, digits, '.', '_' or '-' and does not start with '.' (got '${name}')`,
    );
  }
  return name;
}

/** Name lists arrive as arrays, repeated form fields, or the original client's comma-separated string. */
export function splitNames(values: readonly string[] | undefined): string[] {
  return (values ?? [])
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter((v) => v.length > 0);
}

/** A user the request names: in the path (404 user_not_found) or in a body field (400 invalid_field). */
export async function requireUserRow(db: Db, name: string, field?: string) {
  const user = await findUserByName(db, name);
  if (!user) {
    throw field
      ? new RepomanError('invalid_field', `No user '${name}' (in ${field})`, { details: { field } })
      : new RepomanError('user_not_found', `No user '${name}'`);
  }
  return user;
}
