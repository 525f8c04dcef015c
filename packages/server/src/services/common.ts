/** What every service shares: the clock, paging, and turning storage failures into domain errors. */
import { RepomanError } from '@repoman/core';
import { isUnavailable, isUniqueViolation } from '../db/errors.ts';

export const nowIso = () => new Date().toISOString();

export interface PageRequest {
  limit: number;
  offset: number;
}

export interface PageOf<T> {
  items: T[];
  total: number;
}

/**
 * Wraps each method of a service so that no driver error escapes it: an unreachable or busy database becomes
 * `database_unavailable` (503), a unique-constraint race becomes the given conflict, anything else stays a 500.
 */
export function guardService<T extends object>(service: T, onUnique: RepomanError['code'] = 'conflict'): T {
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

export function translateStorageError(error: unknown, onUnique: RepomanError['code'] = 'conflict'): unknown {
  if (error instanceof RepomanError) return error;
  if (isUnavailable(error)) return new RepomanError('database_unavailable', undefined, undefined, error);
  if (isUniqueViolation(error)) return new RepomanError(onUnique, undefined, undefined, error);
  return error;
}

/** `""` from a form field means "clear it". */
export const emptyToNull = (value: string | null | undefined) =>
  value === undefined ? undefined : value === null || value.trim() === '' ? null : value;
