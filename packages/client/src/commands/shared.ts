/** What the commands share: option sets, argument readers, and how they print and ask. */
import { readFileSync } from 'node:fs';
import { type Api, path } from '../api.ts';
import type { Context, OptionSpec } from '../cli.ts';
import { ClientError } from '../errors.ts';
import { str } from './kit.ts';

export const VERSION: string = JSON.parse(
  readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
).version;

export const list = (value: unknown) =>
  str(value)
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean) ?? [];

/** Drops undefined fields: only what the user gave is sent. */
export function bool(value: unknown, name: string): boolean | undefined {
  const v = str(value)?.toLowerCase();
  if (v === undefined) return undefined;
  if (['true', 'yes', '1'].includes(v)) return true;
  if (['false', 'no', '0'].includes(v)) return false;
  throw new ClientError('usage', `--${name} takes true or false, not '${value}'`);
}

export const given = (fields: Record<string, unknown>) =>
  Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined));

export const done = (context: Context, json: unknown, message: string) => {
  if (context.json) context.print(JSON.stringify(json, null, 2));
  else context.print(`[OK] ${message}`);
};

export function imageRef(context: Context, name = context.args.image as string) {
  const owner = str(context.options.owner);
  if (owner) return { owner, name };
  const slash = name.indexOf('/');
  if (slash > 0) return { owner: name.slice(0, slash), name: name.slice(slash + 1) };
  return { owner: undefined, name };
}

export const imagePath = (ref: { owner: string | undefined; name: string }, ...rest: string[]) =>
  path('images', ref.owner, ref.name, ...rest);

/** A capability for the bytes at `url` (a path of this repository, or another's URL), for `activities`. */
export async function askCapability(api: Api, url: string, activities: string, validity: string) {
  return (
    await api.request('POST', url, {
      body: Buffer.from(JSON.stringify({ caveats: [`activity:${activities}`], validity })),
      headers: { 'content-type': 'application/macaroon-request' },
    })
  ).json as { macaroon: string; id: string; expires: string; uri: { targetWithMacaroon: string } };
}

/** `/api/transfers/{id}` of the offer the command names. */
export const transferPath = (context: Context) => path('transfers', context.args.id as string);

export const imageFields = {
  unauthenticated_access: {
    type: 'string',
    short: 'a',
    help: 'public: anyone may download it',
    value: 'true|false',
  },
  description: { type: 'string', short: 'd', help: 'what the image is', value: 'TEXT' },
  hypervisor: { type: 'string', short: 'h', help: 'hypervisors it boots on (comma list)', value: 'LIST' },
  os_arch: { type: 'string', help: 'x86, x86_64, …', value: 'ARCH' },
  os_type: { type: 'string', help: 'linux, windows, …', value: 'TYPE' },
  os_variant: { type: 'string', help: 'the distribution and release', value: 'VARIANT' },
  read_only: { type: 'string', help: 'no new bytes and no deletion while set', value: 'true|false' },
  expires: { type: 'string', help: 'when it expires (2027-01-31, or "" for never)', value: 'DATE' },
} satisfies Record<string, OptionSpec>;

export const ownerOption: Record<string, OptionSpec> = {
  owner: { type: 'string', short: 'o', help: "the image's namespace, when it is not yours", value: 'USER' },
};
/** --version N, checked. */
export function versionOption(context: Context): number | undefined {
  const value = context.options.version;
  if (value === undefined) return undefined;
  const version = Number(value);
  if (!Number.isInteger(version) || version < 1)
    throw new ClientError('usage', `'${value}' is not a version number`);
  return version;
}

/** --format for a variant, checked. */
export function variantFormat(context: Context): string | undefined {
  const format = str(context.options.format);
  if (format !== undefined && !['raw', 'qcow2', 'vmdk'].includes(format))
    throw new ClientError('usage', `'${format}' is not a format Repoman converts to: raw, qcow2 or vmdk`);
  return format;
}

export const forceOption: Record<string, OptionSpec> = {
  force: { type: 'boolean', short: 'f', help: 'do not ask for confirmation' },
};
export const retriesOption: Record<string, OptionSpec> = {
  retries: { type: 'string', help: 'tries after a cut connection before giving up (default 5)', value: 'N' },
};

export function retries(context: Context): number {
  const value = str(context.options.retries) ?? '5';
  if (!/^\d+$/.test(value)) throw new ClientError('usage', `--retries takes a number, not '${value}'`);
  return Number(value);
}

export const shortOption: Record<string, OptionSpec> = {
  short: { type: 'boolean', short: 's', help: 'names only' },
};

export function imageBody(options: Context['options']) {
  return given({
    unauthenticated_access: bool(options.unauthenticated_access, 'unauthenticated_access'),
    description: str(options.description),
    hypervisor: str(options.hypervisor),
    os_arch: str(options.os_arch),
    os_type: str(options.os_type),
    os_variant: str(options.os_variant),
    read_only: bool(options.read_only, 'read_only'),
    expires: options.expires === undefined ? undefined : str(options.expires) || null,
  });
}

export async function confirmOrForce(context: Context, question: string) {
  if (context.options.force) return;
  if (!(await context.confirm(question))) throw new ClientError('aborted', 'Nothing was changed');
}

/** Applies `each` to every name in turn, stopping at the first failure (its message names the item). */
export async function forEach(names: string[], each: (name: string) => Promise<void>) {
  if (names.length === 0) throw new ClientError('usage', 'Name at least one');
  for (const name of names) await each(name);
}
