/** Turns service views into the API's JSON, with absolute URLs for the server the client reached. */

import type { Endorsement, Group, Image, Job, Page, User, Variant } from '@repoman/core';
import type { FastifyRequest } from 'fastify';
import type { JobView } from '../services/conversions.ts';
import type { EndorsementView } from '../services/endorsements.ts';
import type { GroupView } from '../services/groups.ts';
import type { ImageView } from '../services/images.ts';
import type { UserView } from '../services/users.ts';
import type { VariantView } from '../services/versions/index.ts';
import { imagePath, rawPath } from './image-ref.ts';

export interface PublicUrls {
  /** Configured public base URLs; otherwise derived from the request's Host and the listening ports. */
  https?: string | undefined;
  http?: string | undefined;
  httpsPort: number;
  httpPort: number | null;
}

export interface Urls {
  https: string;
  http: string | null;
}

const withPort = (scheme: string, host: string, port: number, standard: number) =>
  `${scheme}://${host}${port === standard ? '' : `:${port}`}`;

export function urlsFor(request: FastifyRequest, config: PublicUrls): Urls {
  const host = request.hostname.replace(/:\d+$/, '') || 'localhost';
  const https = config.https ?? withPort('https', host, config.httpsPort, 443);
  const http = config.http ?? (config.httpPort === null ? null : withPort('http', host, config.httpPort, 80));
  return { https: https.replace(/\/+$/, ''), http: http?.replace(/\/+$/, '') ?? null };
}

const seg = encodeURIComponent;

export const userUrl = (urls: Urls, name: string) => `${urls.https}/api/users/${seg(name)}`;
export const groupUrl = (urls: Urls, name: string) => `${urls.https}/api/groups/${seg(name)}`;
export const imageUrl = (urls: Urls, owner: string, name: string) => urls.https + imagePath(owner, name);

/** A variant of a version: its URL names the version, so it stays right after newer uploads. */
export function variantJson(
  urls: Urls,
  owner: string,
  name: string,
  version: number,
  view: VariantView,
): Variant {
  return {
    ...view,
    file_url: `${urls.https}${rawPath(owner, name)}?version=${version}&format=${view.format}`,
  };
}

export function jobJson(urls: Urls, view: JobView): Job {
  const { ref, variant, ...job } = view;
  return {
    ...job,
    url: `${urls.https}/api/jobs/${job.id}`,
    variant: variant && ref ? variantJson(urls, ref.owner, ref.name, job.version, variant) : null,
  };
}

export function userJson(urls: Urls, view: UserView): User {
  const json: User = {
    user_name: view.name,
    full_name: view.fullName,
    url: userUrl(urls, view.name),
    groups: view.groups,
  };
  if (view.private) {
    json.client_dn = view.private.dn;
    json.issuer_dn = view.private.issuerDn;
    json.email = view.private.email;
    json.suspended = view.private.suspended;
    json.permissions = view.private.permissions;
    json.quota = view.private.quota;
    json.usage = view.private.usage;
    json.created = view.private.created;
    json.modified = view.private.modified;
  }
  return json;
}

export function groupJson(urls: Urls, view: GroupView): Group {
  const url = groupUrl(urls, view.name);
  return { ...view, url, image_list_url: `${url}/image-list` };
}

export function imageJson(urls: Urls, view: ImageView): Image {
  const { uuid, name, owner, ...rest } = view;
  const file = rawPath(owner, name);
  return {
    uuid,
    name,
    owner,
    url: imageUrl(urls, owner, name),
    owner_url: userUrl(urls, owner),
    file_url: urls.https + file,
    http_file_url: view.unauthenticated_access && urls.http ? urls.http + file : null,
    image_list_url: `${imageUrl(urls, owner, name)}/image-list`,
    ...rest,
  };
}

/** An endorsement, with its own URL, its image's and the endorsed version's pinned bytes URL. */
export function endorsementJson(urls: Urls, view: EndorsementView): Endorsement {
  const { group, owner, name, ...rest } = view;
  return {
    url: `${groupUrl(urls, group)}/endorsements/${seg(owner)}/${seg(name)}`,
    group,
    image: `${owner}/${name}`,
    image_url: imageUrl(urls, owner, name),
    version_url: `${urls.https}${rawPath(owner, name)}?version=${view.version}`,
    ...rest,
  };
}

/** A page of items with the URL of the next one, keeping the request's other query parameters. */
export function page<T, J>(
  request: FastifyRequest,
  urls: Urls,
  result: { items: T[]; total: number },
  query: { limit: number; offset: number },
  toJson: (item: T) => J,
): Page<J> {
  const end = query.offset + result.items.length;
  let next: string | null = null;
  if (end < result.total && result.items.length > 0) {
    const url = new URL(request.url, urls.https);
    url.searchParams.set('offset', String(end));
    url.searchParams.set('limit', String(query.limit));
    next = `${urls.https}${url.pathname}${url.search}`;
  }
  return {
    items: result.items.map(toJson),
    total: result.total,
    limit: query.limit,
    offset: query.offset,
    next,
  };
}
