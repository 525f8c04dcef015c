/** Table types for Kysely. Timestamps are ISO 8601 UTC strings on both engines; booleans read back as 0/1 on SQLite. */
import type { Generated, Kysely } from 'kysely';

type Bool = boolean | number;

export interface UsersTable {
  id: Generated<number>;
  name: string;
  dn: string;
  /** subject DN of the CA that issued the user's certificate; null until bound (first login) */
  issuer_dn: Generated<string | null>;
  full_name: string | null;
  email: string | null;
  suspended: Bool;
  quota: Generated<number | null>;
  created: string;
  modified: string;
}

export interface GroupsTable {
  id: Generated<number>;
  name: string;
  protected: Bool;
  created: string;
  modified: string;
}

export interface GroupMembersTable {
  group_id: number;
  user_id: number;
}

export interface GroupPermissionsTable {
  group_id: number;
  permission: string;
}

export interface ImagesTable {
  id: Generated<number>;
  uuid: string;
  owner_id: number;
  name: string;
  description: string | null;
  os_variant: string | null;
  os_type: string | null;
  os_arch: string | null;
  hypervisor: string | null;
  read_only: Bool;
  unauthenticated_access: Bool;
  expires: string | null;
  /** The version served. */
  version: number;
  /** The highest version number given so far (rollbacks make `version` smaller). */
  last_version: Generated<number>;
  size: number | null;
  created: string;
  modified: string;
  uploaded: string | null;
}

export interface ImageVersionsTable {
  id: Generated<number>;
  image_id: number;
  version: number;
  blob_key: string;
  size: number;
  sha256: string;
  md5: string | null;
  sha512: string | null;
  /** Null for bytes stored before ADLER32 was computed, until it is asked for (or fsck fills it in). */
  adler32: string | null;
  disk_format: string | null;
  virtual_size: number | null;
  compression: string | null;
  partition_table: string | null;
  created: string;
}

/** A version's bytes converted to another format (docs/formats.md). */
export interface ImageVariantsTable {
  id: Generated<number>;
  version_id: number;
  format: string;
  compressed: Bool;
  blob_key: string;
  size: number;
  sha256: string;
  md5: string | null;
  sha512: string | null;
  /** Null for bytes stored before ADLER32 was computed, until it is asked for (or fsck fills it in). */
  adler32: string | null;
  virtual_size: number | null;
  created: string;
}

/** A conversion asked for; `lease` names the server running it, until `lease_until`. */
export interface JobsTable {
  id: string;
  kind: string;
  user_id: number;
  image_id: number;
  version: number;
  format: string;
  compressed: Bool;
  state: string;
  progress: number;
  error_code: string | null;
  error_message: string | null;
  attempts: number;
  lease: string | null;
  lease_until: string | null;
  created: string;
  started: string | null;
  finished: string | null;
}

export interface ImageUserSharesTable {
  image_id: number;
  user_id: number;
}

export interface ImageGroupSharesTable {
  image_id: number;
  group_id: number;
}

/** A resumable (tus) upload in progress, or finished and remembered until it expires. */
export interface UploadsTable {
  /** Opaque, in the upload's URL. */
  id: string;
  /** Who created it; only they may continue it. */
  user_id: number;
  image_id: number;
  /** The blob store upload holding the bytes received so far. */
  blob_key: string;
  length: number;
  /** Bytes received and recorded. */
  upload_offset: number;
  /** The Upload-Metadata header as the client sent it (HEAD answers with it). */
  metadata: string | null;
  /** Digests the client declared for the whole image (JSON). */
  expected: string;
  /** The format the client declared (Upload-Metadata `disk_format`): anything else is refused. */
  declared_format: string | null;
  /** Store a compressed upload decompressed (Upload-Metadata `decompress`). */
  decompress: Bool;
  /** The version it became, once finished. */
  version: number | null;
  /** Which request holds the upload, and until when (servers sharing a database do not write it twice). */
  lease: string | null;
  lease_until: string | null;
  /** When a request on another server asked the holder to let go (its client has moved on). */
  takeover: string | null;
  created: string;
  modified: string;
  expires: string;
}

/** An offer to give an image to another user, until its receiver accepts or declines it, or it expires. */
export interface ImageTransfersTable {
  /** Opaque, in the offer's URL. */
  id: string;
  /** One pending offer per image: a new one replaces it. */
  image_id: number;
  /** The owner who made the offer; it lapses if the image changes hands another way. */
  from_id: number;
  to_id: number;
  created: string;
  expires: string;
}

export interface AuditLogTable {
  id: Generated<number>;
  at: string;
  actor_id: number | null;
  actor_name: string | null;
  actor_dn: string | null;
  address: string | null;
  request_id: string;
  method: string;
  path: string;
  /** `image.modify`, `user.create`, ... (docs/api.md#audit-log). */
  action: string;
  target_type: string | null;
  target: string | null;
  /** `ok`, or the error code the request was answered with. */
  outcome: string;
  status: number;
  /** JSON: what else is worth knowing (fields changed, version uploaded). */
  detail: string | null;
}

/** The server's secret that capabilities are signed with; one row, replaced when an operator rotates it. */
export interface CapabilityKeysTable {
  generation: number;
  /** 32 random bytes, hex. */
  secret: string;
  created: string;
}

/** A capability issued (macaroons, capabilities/): the macaroon names it, and it holds until revoked or expired. */
export interface CapabilitiesTable {
  /** Opaque, the macaroon's identifier. */
  id: string;
  /** Whose rights it carries: gone with the user. */
  user_id: number;
  /** The key generation it was signed with: gone (unusable) once the secret is rotated. */
  key_generation: number;
  /** The URL path it was issued for. */
  path: string;
  /** Comma-separated ACTIVITIES. */
  activities: string;
  created: string;
  expires: string;
  revoked: string | null;
  revoked_reason: string | null;
}

/** A group's endorsement of one version of an image, for its image lists (one per image and group). */
export interface EndorsementsTable {
  /** Opaque, a UUID. */
  id: string;
  group_id: number;
  image_id: number;
  /** The version endorsed: kept (never pruned) while endorsed. */
  version: number;
  endorser_id: number;
  comment: string | null;
  created: string;
  expires: string;
}

/**
 * An image list as last published. `scope` names it (`group:ID`, `image:ID`); `id` is its stable
 * `dc:identifier`; `fingerprint` is a digest of what it was made from, so that it is signed again only when
 * that changes or its expiry nears.
 */
export interface ImageListsTable {
  id: string;
  scope: string;
  /** `hv:version`, raised each time the list is issued anew. */
  version: number;
  fingerprint: string | null;
  issued: string | null;
  expires: string | null;
  /** The JSON text published (and signed). */
  document: string | null;
  /** The S/MIME message served; null if the server signs no lists. */
  signed: string | null;
}

/** A subscriber of a group's image lists: a token (kept as its SHA-256) it sends as HTTP basic auth. */
export interface ListSubscribersTable {
  /** Opaque, a UUID. */
  id: string;
  group_id: number;
  /** Who it is for, as the group's managers name it (a site). */
  name: string;
  token_sha256: string;
  created_by: number | null;
  created: string;
}

/** A group's cloud (an OpenStack project) and its reconciler's lease and last run. */
export interface CloudsTable {
  /** Opaque, a UUID; Glance images of this cloud carry it as `repoman_cloud`. */
  id: string;
  group_id: number;
  name: string;
  auth_url: string;
  region: string | null;
  /** `application_credential` or `password`. */
  credential_kind: string;
  /** JSON: the credential's public half (application credential id; user, project and domains). */
  credential: string;
  /** The secret half, encrypted with `clouds.secret_key` (clouds/secrets.ts). */
  credential_secret: string;
  disk_format: string | null;
  visibility: string;
  /** JSON array of project ids or names. */
  shared_projects: string;
  name_prefix: string;
  transfer: string;
  follow_endorsed: Bool;
  created_by: number | null;
  created: string;
  modified: string;
  /** Which server reconciles it, until when. */
  lease: string | null;
  lease_until: string | null;
  next_sync: string | null;
  last_sync: string | null;
  last_error: string | null;
}

/** An image chosen for a cloud (its current version follows it there). */
export interface CloudImagesTable {
  cloud_id: string;
  image_id: number;
  /** Who chose it: the sync sends it only while they may still read it. */
  chosen_by: number | null;
  added: string;
}

/** What a cloud holds (or is being given) of one version of an image. */
export interface CloudCopiesTable {
  cloud_id: string;
  image_uuid: string;
  /** `owner/name` when last seen, for people. */
  image_name: string;
  version: number;
  glance_id: string | null;
  state: string;
  detail: string | null;
  attempts: number;
  next_attempt: string | null;
  /** An old or unsubscribed copy: deleted from the cloud after this. */
  retire_after: string | null;
  updated: string;
}

/** Whether a group's lists are for its subscribers only (they are anyway when they hold private images). */
export interface ImageListAccessTable {
  group_id: number;
  subscribers_only: Bool;
}

/** A token issuer's subject, linked to a user (beside or instead of a DN). */
export interface TokenIdentitiesTable {
  id: Generated<number>;
  user_id: number;
  /** The tokens' `iss` and `sub`. */
  issuer: string;
  subject: string;
  created: string;
  last_used: string | null;
}

/** A browser session, signed in with an issuer; the cookie holds a secret whose SHA-256 is the id. */
export interface SessionsTable {
  id: string;
  /** The user the identity is linked to; null while it is linked to none (the account page offers the link). */
  user_id: number | null;
  issuer: string;
  subject: string;
  /** The name the issuer gave (preferred_username, name or email), to show. */
  name: string | null;
  /**
   * The user whose certificate the browser presented when it started this sign-in: only they may link the
   * identity to their account (proof that the same person holds both).
   */
  started_by: number | null;
  created: string;
  expires: string;
}

/** A sign-in under way: what the callback needs (PKCE verifier, nonce), for ten minutes. */
export interface SignInsTable {
  /** Random, sent to the issuer and back; its SHA-256 is kept in the browser's cookie too. */
  state: string;
  issuer: string;
  verifier: string;
  nonce: string;
  /** Where the browser goes once signed in (a path of this server). */
  return_to: string;
  /** The certificate's user who started it, if any (see SessionsTable.started_by). */
  started_by: number | null;
  /** Who asked (the client's address): how many sign-ins one address has under way is bounded. */
  address: string;
  expires: string;
}

export interface Database {
  users: UsersTable;
  groups: GroupsTable;
  group_members: GroupMembersTable;
  group_permissions: GroupPermissionsTable;
  images: ImagesTable;
  image_versions: ImageVersionsTable;
  image_user_shares: ImageUserSharesTable;
  image_group_shares: ImageGroupSharesTable;
  uploads: UploadsTable;
  image_variants: ImageVariantsTable;
  jobs: JobsTable;
  audit_log: AuditLogTable;
  image_transfers: ImageTransfersTable;
  capability_keys: CapabilityKeysTable;
  capabilities: CapabilitiesTable;
  endorsements: EndorsementsTable;
  image_lists: ImageListsTable;
  list_subscribers: ListSubscribersTable;
  image_list_access: ImageListAccessTable;
  clouds: CloudsTable;
  cloud_images: CloudImagesTable;
  cloud_copies: CloudCopiesTable;
  token_identities: TokenIdentitiesTable;
  sessions: SessionsTable;
  sign_ins: SignInsTable;
}

/** The query layer over this schema, or a transaction on it: every data-access function takes one. */
export type Db = Kysely<Database>;

/** The SQL engines the schema runs on; migrations choose column types by it. */
export type Engine = 'sqlite' | 'postgres';
