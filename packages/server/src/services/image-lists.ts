/**
 * Image lists: what a group endorses (services/endorsements.ts), published as a signed HEPiX image list
 * (lists/hepix.ts) that cloud sites subscribe to. A group has one list; each image has its own ("standalone")
 * list of its endorsed version. A list is issued anew (a new `hv:version`, a new signature) only when what it
 * holds changes or half its validity has passed, and otherwise served as it was signed.
 *
 * Traps:
 * - Several servers share the database: each may find a list stale at once. Whoever records first wins
 *   (`recordIssuedList` checks the version it read); the others serve the winner's list.
 * - A private image's `hv:uri` is a capability URL (a bearer token in the URL): a list holding one is served
 *   over HTTPS only and to a subscriber's token only, and its unsigned JSON likewise.
 * - A list must not outlive what it vouches for: it expires at its earliest endorsement's expiry, capped by
 *   the configured validity; capability URLs in it are valid exactly that long.
 * - The URLs in a list are built from the request that issued it; a request through another host name (no
 *   public URL configured) issues it anew for that name rather than serving the other's.
 */
import { createHash, randomUUID } from 'node:crypto';
import { RepomanError } from '@repoman/core';
import {
  type EndorsementDetail,
  groupOfToken,
  type ImageListRow,
  imageListOf,
  listEndorsements,
  recordIssuedList,
} from '../db/endorsements-dal.ts';
import { findGroupByName } from '../db/groups-dal.ts';
import { findImage } from '../db/images-dal.ts';
import type { Db } from '../db/schema.ts';
import { type ListEntry, type ListHead, type ListSigner, listDocument, listText } from '../lists/hepix.ts';
import type { Credential } from '../pki/issue.ts';
import { signSmime } from '../pki/smime.ts';
import type { CapabilityService } from './capabilities.ts';
import type { IdentityService } from './identity.ts';
import type { ImageRef } from './image-access.ts';

export interface ListPolicy {
  /** The longest a list is valid (its `dc:date:expires` at most this long after it is issued). */
  maxValiditySeconds: number;
  /** The server's signing certificate and key, and what the lists say of it; null: the server signs none. */
  signing: { credential: Credential; signer: ListSigner } | null;
}

/** Where a list's URLs point: the repository's public URLs, and the list's own. */
export interface ListUrls {
  /** `https://host:port`, no trailing slash. */
  https: string;
  /** The list's own URL (its `hv:uri`). */
  list: string;
}

/** Who asks for a list: over TLS or not, with a subscriber token (HTTP basic auth's user name) or not. */
export interface ListCaller {
  tls: boolean;
  token: string | null;
}

export type ListScope = { kind: 'group'; group: string } | { kind: 'image'; ref: ImageRef };

/** A list as published: its JSON text, the S/MIME message (if signed), and what HTTP says of it. */
export interface PublishedList {
  identifier: string;
  version: number;
  issued: string;
  expires: string;
  document: string;
  signed: string | null;
  /** It holds capability URLs: HTTPS and a subscriber token only. */
  secret: boolean;
}

const seg = encodeURIComponent;
const rawPath = (owner: string, name: string) => `/api/images/raw/${seg(owner)}/${seg(name)}`;
export const tokenDigest = (token: string) => createHash('sha256').update(token, 'utf8').digest('hex');

/** The signer as the list names it: the certificate's CN, subject and issuer in slash form, its email. */
export function signerOf(credential: Credential, email = ''): ListSigner {
  const { subject, issuer, subjectAltName } = credential.cert;
  const cn = subject.rdns.flat().findLast((ava) => ava.type === 'CN')?.value ?? subject.oneline;
  const inName = subject.rdns.flat().find((ava) => ava.type === 'emailAddress')?.value;
  return {
    name: cn,
    dn: subject.oneline,
    ca: issuer.oneline,
    email: email || subjectAltName?.email[0] || inName || '',
  };
}

export function createImageListService(deps: {
  db: Db;
  identity: IdentityService;
  capabilities: CapabilityService;
  policy: ListPolicy;
}) {
  const { db, policy } = deps;

  /** What a scope's list holds now: its endorsements (one per image), newest version first per image. */
  async function entriesOf(scope: ListScope, now: string) {
    if (scope.kind === 'group') {
      const group = await findGroupByName(db, scope.group);
      if (!group) throw new RepomanError('group_not_found', `No group '${scope.group}'`);
      const { items } = await listEndorsements(db, { groupId: group.id, activeAt: now });
      return { key: `group:${group.id}`, title: group.name, groupIds: [group.id], rows: items };
    }
    const image = await findImage(db, scope.ref.owner, scope.ref.name);
    if (!image) throw notFound(scope.ref);
    const { items } = await listEndorsements(db, { imageId: image.id, activeAt: now });
    // Several groups may endorse the image: its own list offers the newest version endorsed.
    const newest = [...items].sort(
      (a, b) => b.version - a.version || a.group_name.localeCompare(b.group_name),
    );
    return {
      key: `image:${image.id}`,
      title: `${scope.ref.owner}/${scope.ref.name}`,
      groupIds: items.map((row) => row.group_id),
      rows: newest.slice(0, 1),
      publicImage: Boolean(image.unauthenticated_access),
    };
  }

  const notFound = (ref: ImageRef) =>
    new RepomanError('image_not_found', `No image '${ref.name}' in namespace '${ref.owner}'`);

  function entryOf(row: EndorsementDetail, urls: ListUrls, uri: string): ListEntry {
    return {
      identifier: row.image_uuid,
      title: row.image_name,
      description: row.description ?? '',
      uri,
      size: row.size,
      sha512: row.sha512 ?? '',
      version: row.version,
      format: (row.disk_format ?? 'raw').toUpperCase(),
      hypervisor: row.hypervisor ?? '',
      os: row.os_type ?? '',
      osName: row.os_variant ?? '',
      osVersion: '',
      arch: row.os_arch ?? '',
      comments: row.comment ?? '',
      group: row.group_name,
      imageUrl: `${urls.https}/api/images/${seg(row.owner_name)}/${seg(row.image_name)}`,
      endorser: {
        fullName: row.endorser_full_name ?? row.endorser_name,
        id: row.endorser_name,
        url: `${urls.https}/api/users/${seg(row.endorser_name)}`,
      },
    };
  }

  const pinned = (urls: ListUrls, row: EndorsementDetail) =>
    `${urls.https}${rawPath(row.owner_name, row.image_name)}?version=${row.version}`;

  /** A capability URL for a private image's pinned version, in its endorser's name, valid until `expires`. */
  async function capabilityUrl(
    urls: ListUrls,
    row: EndorsementDetail,
    expires: Date,
  ): Promise<string | null> {
    const path = rawPath(row.owner_name, row.image_name);
    const seconds = Math.max(1, Math.ceil((expires.getTime() - Date.now()) / 1000));
    try {
      const actor = await deps.identity.actorForUser(row.endorser_id);
      const issued = await deps.capabilities.issue(
        actor,
        { kind: 'image', ref: { owner: row.owner_name, name: row.image_name }, path },
        { caveats: ['activity:DOWNLOAD'], validity: `PT${seconds}S` },
        urls.https,
      );
      return `${pinned(urls, row)}&authz=${seg(issued.macaroon)}`;
    } catch (error) {
      // The endorser can no longer read it (or is suspended): the list cannot offer it until re-endorsed.
      if (error instanceof RepomanError) return null;
      throw error;
    }
  }

  return {
    /**
     * The scope's list, issued anew if what it holds changed or half its validity has passed. A private
     * image's list (or one holding capability URLs) asks `allowed` first, with the groups whose subscriber
     * tokens may read it.
     */
    async publish(scope: ListScope, urls: ListUrls, caller: ListCaller): Promise<PublishedList> {
      const now = new Date();
      const found = await entriesOf(scope, now.toISOString());
      const rows = found.rows;
      const secret = rows.some((row) => !row.unauthenticated_access);
      // Before anything is issued: a list holding capability URLs is for its subscribers only.
      if (secret) await admit(scope, found.groupIds, caller);
      const row = await imageListOf(db, found.key, randomUUID());
      // What the list is made of; its dates, version and capability URLs aside.
      const basis = {
        urls,
        signer: policy.signing?.signer ?? null,
        max: policy.maxValiditySeconds,
        title: found.title,
        entries: rows.map((r) => ({ ...entryOf(r, urls, ''), public: Boolean(r.unauthenticated_access) })),
        expires: rows.map((r) => r.expires),
      };
      const fingerprint = createHash('sha256').update(JSON.stringify(basis)).digest('hex');
      if (!stale(row, fingerprint, now)) return published(row, secret);

      const cap = new Date(now.getTime() + policy.maxValiditySeconds * 1000);
      const earliest = [cap.toISOString(), ...rows.map((r) => r.expires)].sort()[0] as string;
      // Whole seconds: the list writes its dates to the second, and must not claim more than it has.
      const expires = new Date(Math.floor(new Date(earliest).getTime() / 1000) * 1000);
      const entries: ListEntry[] = [];
      for (const r of rows) {
        const uri = r.unauthenticated_access ? pinned(urls, r) : await capabilityUrl(urls, r, expires);
        if (uri) entries.push(entryOf(r, urls, uri));
      }
      const signer = policy.signing?.signer ?? { name: '', dn: '', ca: '', email: '' };
      const head: ListHead = {
        identifier: row.id,
        title: scope.kind === 'group' ? `Images endorsed by ${found.title}` : found.title,
        description:
          scope.kind === 'group'
            ? `The image versions that ${found.title} endorses, published by Repoman at ${urls.https}`
            : `The endorsed version of ${found.title}, published by Repoman at ${urls.https}`,
        source: urls.https,
        uri: urls.list,
        ...(scope.kind === 'group' ? { vo: found.title } : {}),
        created: new Date(Math.floor(now.getTime() / 1000) * 1000),
        expires,
        version: row.version + 1,
        signer,
      };
      const document = listText(listDocument(head, entries));
      const issued: Pick<
        ImageListRow,
        'version' | 'fingerprint' | 'issued' | 'expires' | 'document' | 'signed'
      > = {
        version: head.version,
        fingerprint,
        issued: head.created.toISOString(),
        expires: expires.toISOString(),
        document,
        signed: policy.signing ? signSmime(document, policy.signing.credential) : null,
      };
      if (await recordIssuedList(db, found.key, row.version, issued))
        return published({ ...row, ...issued }, secret);
      // Another request issued it meanwhile: serve theirs.
      return published(await imageListOf(db, found.key, row.id), secret);
    },
  };

  /**
   * A list holding capability URLs: over HTTPS, to a token of a group whose endorsement it holds. An image's
   * own list refused looks like a missing image (a private image's name is not told to strangers).
   */
  async function admit(scope: ListScope, groupIds: number[], caller: ListCaller) {
    const groupId = caller.token === null ? undefined : await groupOfToken(db, tokenDigest(caller.token));
    if (caller.tls && groupId !== undefined && groupIds.includes(groupId)) return;
    if (scope.kind === 'image') throw notFound(scope.ref);
    if (!caller.tls)
      throw new RepomanError('https_required', "This list holds private images' URLs: fetch it over HTTPS");
    throw new RepomanError(
      'list_token_required',
      caller.token === null
        ? "This list holds private images' URLs: send a subscriber token as HTTP basic auth (https://TOKEN:x-oauth-basic@host/...)"
        : 'The subscriber token is not one of this group',
    );
  }
}

/** To be issued anew: never issued, made of something else, or past half its validity. */
function stale(row: ImageListRow, fingerprint: string, now: Date): boolean {
  if (!row.issued || !row.expires || !row.document || row.fingerprint !== fingerprint) return true;
  const issued = new Date(row.issued).getTime();
  const expires = new Date(row.expires).getTime();
  return now.getTime() >= issued + (expires - issued) / 2;
}

function published(row: ImageListRow, secret: boolean): PublishedList {
  return {
    identifier: row.id,
    version: row.version,
    issued: row.issued ?? '',
    expires: row.expires ?? '',
    document: row.document ?? '',
    signed: row.signed,
    secret,
  };
}

export type ImageListService = ReturnType<typeof createImageListService>;
