/** Turns service views into the API's JSON, with absolute URLs for the server the client reached. */
import type { Group, Image, Job, Page, User, Variant, VariantFormat } from '@repoman/core';
import type { FastifyRequest } from 'fastify';
import type { VariantRow } from '../db/jobs-dal.ts';
import type { JobView } from '../services/conversions.ts';
import type { GroupView } from '../services/groups.ts';
import type { ImageView } from '../services/images.ts';
import type { UserView } from '../services/users.ts';
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
  row: VariantRow,
): Variant {
  return {
    format: row.format as VariantFormat,
    compressed: Boolean(row.compressed),
    size: row.size,
    digests: { sha256: row.sha256, md5: row.md5, sha512: row.sha512 },
    virtual_size: row.virtual_size,
    created: row.created,
    file_url: `${urls.https}${rawPath(owner, name)}?version=${version}&format=${row.format}`,
  };
}

export function jobJson(urls: Urls, view: JobView): Job {
  const { row } = view;
  return {
    id: row.id,
    url: `${urls.https}/api/jobs/${row.id}`,
    kind: 'convert',
    image: view.image,
    version: row.version,
    format: row.format as VariantFormat,
    compressed: Boolean(row.compressed),
    state: row.state as Job['state'],
    progress: row.progress,
    error: row.error_code ? { code: row.error_code, message: row.error_message ?? '' } : null,
    variant:
      view.variant && view.ref
        ? variantJson(urls, view.ref.owner, view.ref.name, row.version, view.variant)
        : null,
    requested_by: view.requestedBy,
    created: row.created,
    started: row.started,
    finished: row.finished,
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
  return { ...view, url: groupUrl(urls, view.name) };
}

export function imageJson(urls: Urls, view: ImageView): Image {
  const { row } = view;
  const isPublic = Boolean(row.unauthenticated_access);
  const json: Image = {
    uuid: row.uuid,
    name: row.name,
    owner: row.owner_name,
    url: imageUrl(urls, row.owner_name, row.name),
    owner_url: userUrl(urls, row.owner_name),
    file_url: urls.https + rawPath(row.owner_name, row.name),
    http_file_url: isPublic && urls.http ? urls.http + rawPath(row.owner_name, row.name) : null,
    description: row.description,
    os_variant: row.os_variant,
    os_type: row.os_type,
    os_arch: row.os_arch,
    hypervisor: row.hypervisor,
    read_only: Boolean(row.read_only),
    unauthenticated_access: isPublic,
    expires: row.expires,
    expired: view.expired,
    raw_file_uploaded: row.version > 0,
    digests: row.sha256 ? { sha256: row.sha256, md5: row.md5, sha512: row.sha512 } : null,
    version: row.version,
    size: row.size,
    disk_format: row.disk_format ?? null,
    virtual_size: row.virtual_size ?? null,
    compression: row.compression ?? null,
    partition_table: row.partition_table ?? null,
    created: row.created,
    modified: row.modified,
    uploaded: row.uploaded,
  };
  if (view.shares) json.shared_with = view.shares;
  return json;
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
