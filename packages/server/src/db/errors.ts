/** Recognising database driver errors, so services can turn them into domain errors. */

interface DriverError {
  code?: unknown;
  errcode?: unknown;
}

/** A UNIQUE constraint rejected the write: PostgreSQL 23505, SQLite SQLITE_CONSTRAINT_UNIQUE / PRIMARYKEY. */
export function isUniqueViolation(error: unknown): boolean {
  const e = error as DriverError;
  return e?.code === '23505' || e?.errcode === 2067 || e?.errcode === 1555;
}

/** A FOREIGN KEY constraint rejected the write (the row it names went away): PostgreSQL 23503, SQLite 787. */
export function isForeignKeyViolation(error: unknown): boolean {
  const e = error as DriverError;
  return e?.code === '23503' || e?.errcode === 787;
}

/** The column a unique violation is about, from PostgreSQL's constraint name or SQLite's message. */
export function uniqueViolationTarget(error: unknown): string {
  const e = error as { constraint?: unknown; message?: unknown };
  if (typeof e?.constraint === 'string') return e.constraint;
  return typeof e?.message === 'string' ? e.message : '';
}

const PG_UNAVAILABLE_CLASSES = ['08', '57', '53']; // connection exception, operator intervention, insufficient resources
const NET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH']);

/** The database cannot answer now (down, restarting, locked) but may later: a 503, not a 500. */
export function isUnavailable(error: unknown, depth = 0): boolean {
  const e = error as DriverError & { message?: unknown; cause?: unknown };
  if (e?.cause !== undefined && depth < 5 && isUnavailable(e.cause, depth + 1)) return true;
  if (typeof e?.code === 'string') {
    if (NET_CODES.has(e.code)) return true;
    if (e.code.length === 5 && PG_UNAVAILABLE_CLASSES.includes(e.code.slice(0, 2))) return true;
  }
  // SQLITE_BUSY and SQLITE_LOCKED, with their extended codes (BUSY_RECOVERY 261, BUSY_SNAPSHOT 517, ...).
  if (typeof e?.errcode === 'number' && [5, 6].includes(e.errcode % 256)) return true;
  const message = typeof e?.message === 'string' ? e.message : '';
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/.test(
    message,
  );
}
