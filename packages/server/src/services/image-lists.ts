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
import { imagePath, RepomanError, rawPath } from '@repoman/core';
import { type Actor, canEndorseFor } from '../authz.ts';
import {
  type EndorsementDetail,
  earliestExpiries,
  groupOfToken,
  type ImageListRow,
  imageListOf,
  listEndorsements,
  recordIssuedList,
  recordSignature,
  subscribersOnly,
} from '../db/endorsements-dal.ts';
import { findGroupByName } from '../db/groups-dal.ts';
import { findImage } from '../db/images-dal.ts';
import type { Db } from '../db/schema.ts';
import { findUserByName, type UserRow } from '../db/users-dal.ts';
import {
  type ListEntry,
  type ListHead,
  type ListSigner,
  listDocument,
  listText,
  sameText,
} from '../lists/hepix.ts';
import type { Credential } from '../pki/issue.ts';
import { normalizeDn } from '../pki/names.ts';
import { SmimeError, signSmime, smimeSigningProblem, verifySmime } from '../pki/smime.ts';
import type { Verifier } from '../pki/verify.ts';
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
  /** Who, if a certificate came with it: members of the list's groups (and admins) read it without a token. */
  actor: Actor | null;
}

export type ListScope =
  | { kind: 'group'; group: string }
  | { kind: 'image'; ref: ImageRef }
  /** An endorser's own list in a group: what they endorse there, signed on their machine. */
  | { kind: 'endorser'; group: string; user: string };

/** A list as published: its JSON text, the S/MIME message (if signed), and what HTTP says of it. */
export interface PublishedList {
  /** Its scope (`group:ID`, `image:ID`, `endorser:GROUP:USER`). */
  key: string;
  identifier: string;
  version: number;
  issued: string;
  expires: string;
  document: string;
  signed: string | null;
  /** For subscribers (and members) only: it holds capability URLs, or its group wants it so. */
  secret: boolean;
}

/** What a scope's list is made of now. */
interface ListContent {
  /** The `image_lists` scope. */
  key: string;
  title: string;
  /** Groups whose subscriber tokens (and members) may read it. */
  groupIds: number[];
  groupNames: string[];
  rows: EndorsementDetail[];
  /** The endorser who signs it (an endorser's list), or null (the server signs it). */
  endorser: UserRow | null;
}

/** An endorser as their list names its signer: what their certificate must say (DN and CA, slash form). */
function endorserSigner(user: UserRow): ListSigner {
  const cn = /\/CN=([^/]*)$/.exec(user.dn)?.[1];
  return {
    name: user.full_name ?? cn ?? user.name,
    dn: user.dn,
    ca: user.issuer_dn ?? '',
    email: user.email ?? '',
  };
}

const seg = encodeURIComponent;
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
  async function entriesOf(scope: ListScope, now: string): Promise<ListContent> {
    if (scope.kind !== 'image') {
      const group = await findGroupByName(db, scope.group);
      if (!group) throw new RepomanError('group_not_found', `No group '${scope.group}'`);
      const { items } = await listEndorsements(db, { groupId: group.id, activeAt: now });
      if (scope.kind === 'group')
        return {
          key: `group:${group.id}`,
          title: group.name,
          groupIds: [group.id],
          groupNames: [group.name],
          rows: items,
          endorser: null,
        };
      const user = await findUserByName(db, scope.user);
      if (!user) throw new RepomanError('user_not_found', `No user '${scope.user}'`);
      return {
        key: `endorser:${group.id}:${user.id}`,
        title: group.name,
        groupIds: [group.id],
        groupNames: [group.name],
        rows: items.filter((row) => row.endorser_id === user.id),
        endorser: user,
      };
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
      groupNames: items.map((row) => row.group_name),
      rows: newest.slice(0, 1),
      endorser: null,
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
      imageUrl: `${urls.https}${imagePath(row.owner_name, row.image_name)}`,
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
      // Before anything is issued: a list holding capability URLs is for its subscribers only, and so is a
      // list of a group that wants its lists so (and an image's own list when such a group endorses it).
      const guarded = secret || (await subscribersOnly(db, found.groupIds)).size > 0;
      if (guarded) await admit(scope, found, caller, secret);
      const row = await imageListOf(db, found.key, randomUUID());
      // What the list is made of; its dates, version and capability URLs aside.
      const signer = found.endorser ? endorserSigner(found.endorser) : policy.signing?.signer;
      const basis = {
        urls,
        signer: signer ?? null,
        max: policy.maxValiditySeconds,
        title: found.title,
        entries: rows.map((r) => ({ ...entryOf(r, urls, ''), public: Boolean(r.unauthenticated_access) })),
        expires: rows.map((r) => r.expires),
      };
      const fingerprint = createHash('sha256').update(JSON.stringify(basis)).digest('hex');
      // An endorser's list is signed by them: issued anew only when what it holds changes (it cannot renew
      // itself: it expires as a whole, and they sign the next one).
      if (!stale(row, fingerprint, now, found.endorser === null)) return published(row, guarded);

      const cap = new Date(now.getTime() + policy.maxValiditySeconds * 1000);
      const earliest = [cap.toISOString(), ...rows.map((r) => r.expires)].sort()[0] as string;
      // Whole seconds: the list writes its dates to the second, and must not claim more than it has.
      const expires = new Date(Math.floor(new Date(earliest).getTime() / 1000) * 1000);
      const entries: ListEntry[] = [];
      for (const r of rows) {
        const uri = r.unauthenticated_access ? pinned(urls, r) : await capabilityUrl(urls, r, expires);
        if (uri) entries.push(entryOf(r, urls, uri));
      }
      const head: ListHead = {
        identifier: row.id,
        title:
          scope.kind === 'image'
            ? found.title
            : scope.kind === 'group'
              ? `Images endorsed by ${found.title}`
              : `Images ${scope.user} endorses for ${found.title}`,
        description: `${
          scope.kind === 'image'
            ? `The endorsed version of ${found.title}`
            : scope.kind === 'group'
              ? `The image versions that ${found.title} endorses`
              : `The image versions ${scope.user} endorses for ${found.title}`
        }, published by Repoman at ${urls.https}`,
        source: urls.https,
        uri: urls.list,
        ...(scope.kind === 'image' ? {} : { vo: found.title }),
        created: new Date(Math.floor(now.getTime() / 1000) * 1000),
        expires,
        version: row.version + 1,
        signer: signer ?? { name: '', dn: '', ca: '', email: '' },
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
        // The server signs its lists; an endorser's waits for their signature (acceptSigned).
        signed: !found.endorser && policy.signing ? signSmime(document, policy.signing.credential) : null,
      };
      if (await recordIssuedList(db, found.key, row.version, issued))
        return published({ ...row, ...issued }, guarded);
      // Another request issued it meanwhile: serve theirs.
      return published(await imageListOf(db, found.key, row.id), guarded);
    },

    /** Each group's list expiry: its earliest unexpired endorsement's (for warnings and metrics). */
    expiries: () => earliestExpiries(db, new Date().toISOString()),

    /**
     * An endorser's list, signed on their machine: published only if it is signed by that endorser (their
     * end-entity certificate, as the server knows them, from a trusted CA, allowed to sign S/MIME) and its
     * content is exactly the list the server would publish now (line ends aside), whose JSON ETag the client
     * names in `ifMatch` (another endorsement meanwhile: 412, and the client signs the new one).
     */
    async acceptSigned(
      actor: Actor,
      scope: Extract<ListScope, { kind: 'endorser' }>,
      message: string,
      ifMatch: string | undefined,
      urls: ListUrls,
      verifier: Verifier,
    ): Promise<PublishedList> {
      if (actor.name !== scope.user)
        throw new RepomanError('forbidden', `Only ${scope.user} signs their own list`);
      if (!canEndorseFor(actor, scope.group))
        throw new RepomanError(
          'forbidden',
          `You may not endorse for ${scope.group}, so you have no list to sign there`,
        );
      const current = await this.publish(scope, urls, { tls: true, token: null, actor });
      if (ifMatch === undefined || ifMatch !== jsonEtag(current))
        throw new RepomanError(
          'precondition_failed',
          `The list changed (it is version ${current.version} now): fetch it again, sign it, and send it with If-Match: ${jsonEtag(current)}`,
        );
      let verified: ReturnType<typeof verifySmime>;
      try {
        verified = verifySmime(message);
      } catch (error) {
        if (!(error instanceof SmimeError)) throw error;
        throw new RepomanError('list_signature_invalid', `The signed list does not verify: ${error.message}`);
      }
      const problem = smimeSigningProblem(verified.signer);
      if (problem) throw new RepomanError('list_signer_refused', problem);
      const others = verified.certificates.filter((c) => c !== verified.signer).map((c) => c.der);
      const chain = verifier.verifyChain([verified.signer.der, ...others]);
      if (!chain.ok)
        throw new RepomanError(
          'list_signer_refused',
          `The signing certificate is not trusted: ${chain.reason}`,
        );
      if (chain.proxyType !== 'none')
        throw new RepomanError(
          'list_signer_refused',
          'A grid proxy cannot sign an image list: sites trust end-entity DNs; sign with your certificate and key',
        );
      const user = await findUserByName(db, scope.user);
      if (
        !user ||
        normalizeDn(chain.dn) !== user.dn ||
        (user.issuer_dn !== null && chain.issuerDn !== user.issuer_dn)
      )
        throw new RepomanError(
          'list_signer_refused',
          `The list is signed by ${chain.dn} (issued by ${chain.issuerDn}), not by ${scope.user}'s certificate (${user?.dn ?? '?'})`,
        );
      if (!sameText(verified.content.toString('utf8'), current.document))
        throw new RepomanError(
          'list_content_mismatch',
          'The signed content is not the list the server publishes for you now: sign exactly what GET …/image-list.json answers',
        );
      if (!(await recordSignature(db, current.key, current.version, message)))
        throw new RepomanError(
          'precondition_failed',
          'The list changed while it was being checked: fetch it again and sign the new one',
        );
      return { ...current, signed: message };
    },
  };

  /**
   * A list holding capability URLs: over HTTPS, to a token of a group whose endorsement it holds. An image's
   * own list refused looks like a missing image (a private image's name is not told to strangers).
   */
  async function admit(scope: ListScope, found: ListContent, caller: ListCaller, secret: boolean) {
    const { actor } = caller;
    if (caller.tls && actor && (actor.isAdmin || found.groupNames.some((name) => actor.groups.has(name))))
      return;
    const groupId = caller.token === null ? undefined : await groupOfToken(db, tokenDigest(caller.token));
    if (caller.tls && groupId !== undefined && found.groupIds.includes(groupId)) return;
    if (scope.kind === 'image' && secret) throw notFound(scope.ref);
    if (!caller.tls)
      throw new RepomanError('https_required', 'This list is for its subscribers: fetch it over HTTPS');
    throw new RepomanError(
      'list_token_required',
      caller.token === null
        ? 'This list is for its subscribers: send a subscriber token as HTTP basic auth (https://TOKEN:x-oauth-basic@host/...)'
        : 'The subscriber token is not one of this group',
    );
  }
}

/** To be issued anew: never issued, made of something else, or (if it `renews`) past half its validity. */
function stale(row: ImageListRow, fingerprint: string, now: Date, renews: boolean): boolean {
  if (!row.issued || !row.expires || !row.document || row.fingerprint !== fingerprint) return true;
  if (!renews) return false;
  const issued = new Date(row.issued).getTime();
  const expires = new Date(row.expires).getTime();
  return now.getTime() >= issued + (expires - issued) / 2;
}

/** The ETag of a list's JSON: what an endorser names in If-Match when they send it signed. */
export const jsonEtag = (list: Pick<PublishedList, 'identifier' | 'version'>) =>
  `"${list.identifier}-${list.version}-json"`;

function published(row: ImageListRow, secret: boolean): PublishedList {
  return {
    key: row.scope,
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
