/** Name rules shared by the server (validation) and the client (early, friendly errors). */

/** Image names: letters, digits, dot, underscore, dash; 1-128 characters; not starting with a dot. */
export const IMAGE_NAME_PATTERN = '^(?!\\.)[A-Za-z0-9._-]{1,128}$';
/** User and group names: lowercase letters, digits, underscore and dash; 1-64 characters. */
export const ACCOUNT_NAME_PATTERN = '^[a-z0-9_-]{1,64}$';

const imageName = new RegExp(IMAGE_NAME_PATTERN);
const accountName = new RegExp(ACCOUNT_NAME_PATTERN);

/** Words that appear as path segments in routes, so a user or image named so would make URLs ambiguous. */
export const RESERVED_NAMES: ReadonlySet<string> = new Set([
  'raw',
  'share',
  'shares',
  'versions',
  'rollback',
  'conversions',
  'variants',
  'transfer',
  'me',
  '.',
  '..',
]);

export type NameProblem = 'pattern' | 'reserved';

export function checkImageName(name: string): NameProblem | null {
  if (!imageName.test(name)) return 'pattern';
  return RESERVED_NAMES.has(name) ? 'reserved' : null;
}

export function checkAccountName(name: string): NameProblem | null {
  if (!accountName.test(name)) return 'pattern';
  return RESERVED_NAMES.has(name) ? 'reserved' : null;
}
