/**
 * What may be shown of a database URL: a leaf, so that the primary process (cluster.ts) prints the start-up
 * banner without loading the database drivers.
 */

/** A database URL fit for messages and logs: `sqlite:PATH`, or `postgres://user@host:port/database` without secrets. */
export function redactUrl(url: string): string {
  if (url.startsWith('sqlite:')) return url;
  try {
    const parsed = new URL(url);
    const user = parsed.username ? `${parsed.username}@` : '';
    return `${parsed.protocol}//${user}${parsed.host}${parsed.pathname}`;
  } catch {
    return '(an unparsable database URL)';
  }
}
