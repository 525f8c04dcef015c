/** What the commands share: reading options, printing a result, naming an image. */
import type { User } from '@repoman/core';
import type { Api } from '../api.ts';
import type { Context } from '../cli.ts';

/** An option's value if it is a string (given once), else undefined. */
export const str = (value: unknown) => (typeof value === 'string' ? value : undefined);

/** One result: the JSON with --json, else the words for people (made only then). */
export const show = (context: Context, json: unknown, human: string | (() => string)) =>
  context.print(context.json ? JSON.stringify(json, null, 2) : typeof human === 'string' ? human : human());

/** `[owner/]name` as owner and name, the caller's own namespace (asked of the server) when no owner is given. */
export async function ownerAndName(api: Api, arg: string): Promise<[string, string]> {
  const slash = arg.indexOf('/');
  if (slash > 0) return [arg.slice(0, slash), arg.slice(slash + 1)];
  return [await myName(api), arg];
}

/** The caller's user name, as the server knows them. */
export const myName = async (api: Api) => (await api.get<User>('/api/whoami')).user_name;
