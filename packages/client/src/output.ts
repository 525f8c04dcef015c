/** How results are shown: tables for lists, `key : value` for one object, local times, sizes in bytes. */

export interface Column<T> {
  title: string;
  value: (row: T) => string;
  right?: boolean;
}

export function table<T>(rows: T[], columns: Column<T>[]): string {
  const cells = rows.map((row) => columns.map((column) => column.value(row)));
  const widths = columns.map((column, i) =>
    Math.max(column.title.length, ...cells.map((r) => (r[i] as string).length)),
  );
  const line = (values: string[]) =>
    values
      .map((value, i) =>
        columns[i]?.right ? value.padStart(widths[i] as number) : value.padEnd(widths[i] as number),
      )
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.title)), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join(
    '\n',
  );
}

const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/** An API value as text: times in local time, lists joined, objects as `key=value`. */
export function text(value: unknown): string {
  if (value === null || value === undefined) return '-';
  if (typeof value === 'string') return TIME.test(value) ? localTime(value) : value;
  if (Array.isArray(value)) return value.map(text).join(', ');
  if (typeof value === 'object')
    return Object.entries(value as Record<string, unknown>)
      .map(([k, v]) => `${k}=${text(v)}`)
      .join(' ');
  return String(value);
}

export function localTime(iso: string): string {
  const date = new Date(iso);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

/** One object, one `key : value` line per field, keys right-aligned (nested objects flattened with dots). */
export function details(object: object): string {
  const entries: [string, string][] = [];
  const walk = (prefix: string, value: Record<string, unknown>) => {
    for (const [key, v] of Object.entries(value)) {
      if (v && typeof v === 'object' && !Array.isArray(v))
        walk(`${prefix}${key}.`, v as Record<string, unknown>);
      else entries.push([`${prefix}${key}`, text(v)]);
    }
  };
  walk('', object as Record<string, unknown>);
  const width = Math.max(...entries.map(([key]) => key.length));
  return entries.map(([key, value]) => `${key.padStart(width)} : ${value}`).join('\n');
}

export function bytes(size: number | null | undefined): string {
  if (size === null || size === undefined) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = size;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${size} B` : `${value.toFixed(1)} ${units[unit]}`;
}
