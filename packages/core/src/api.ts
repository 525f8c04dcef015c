/**
 * The shapes of Repoman's REST API: JSON schemas (validated by the server, published as OpenAPI) and the
 * TypeScript types that mirror them. Field names follow the original Repoman where its users relied on them.
 */
import { ACCOUNT_NAME_PATTERN, IMAGE_NAME_PATTERN } from './names.ts';
import { PERMISSIONS } from './permissions.ts';

const str = { type: 'string' } as const;
const nullableStr = { type: ['string', 'null'] } as const;
const bool = { type: 'boolean' } as const;
const timestamp = { type: 'string', format: 'date-time' } as const;
const nullableTimestamp = { type: ['string', 'null'], format: 'date-time' } as const;
const stringList = { type: 'array', items: str } as const;

/**
 * The longest text each request field takes, in characters (docs/api.md#limits): small enough that the
 * largest page of images (MAX_PAGE_SIZE) stays a few megabytes. Rows stored before these limits are kept and
 * shown as they are; a change must fit.
 */
export const TEXT_LIMITS = {
  description: 4096,
  /** os_variant, os_type, os_arch, hypervisor, full_name, and the filters of lists. */
  short: 255,
  dn: 1024,
  email: 254,
  expires: 64,
  /** One item of a name list (which may hold names separated by commas). */
  nameListItem: 4096,
  /** Items of a name list. */
  nameListItems: 1000,
} as const;

/** Request text: a string of at most `max` characters. */
const text = (max: number) => ({ type: 'string', maxLength: max }) as const;
/** Request text that may be null (to clear it). */
const nullableText = (max: number) => ({ type: ['string', 'null'], maxLength: max }) as const;
const shortText = text(TEXT_LIMITS.short);
const dnText = text(TEXT_LIMITS.dn);

/** A JSON array or repeated form fields; the server also splits each item on commas (`a,b`, as the original client sent). */
const nameList = {
  type: 'array',
  items: text(TEXT_LIMITS.nameListItem),
  maxItems: TEXT_LIMITS.nameListItems,
  description: 'A list, or names separated by commas',
} as const;

export const userName = { type: 'string', pattern: ACCOUNT_NAME_PATTERN } as const;
export const groupName = { type: 'string', pattern: ACCOUNT_NAME_PATTERN } as const;
export const imageName = { type: 'string', pattern: IMAGE_NAME_PATTERN } as const;
export const permissionName = { type: 'string', enum: PERMISSIONS } as const;

// ---- users ----

/** How a request was authenticated (whoami shows it; the audit log records it). */
export interface Credential {
  kind: 'certificate' | 'proxy' | 'capability' | 'token' | 'session';
  /** A capability's id, a token's `jti`, a session's short id; null for a certificate. */
  id: string | null;
  issuer?: string;
  subject?: string | null;
  /** A token's storage scopes, when they narrow what it may do; null: none. */
  scopes?: string | null;
}

export const credentialSchema = {
  type: 'object',
  required: ['kind', 'id'],
  properties: {
    kind: { type: 'string', enum: ['certificate', 'proxy', 'capability', 'token', 'session'] },
    id: nullableStr,
    issuer: str,
    subject: nullableStr,
    scopes: nullableStr,
  },
} as const;

/** An issuer's subject linked to a user: its tokens and browser sign-ins act as that user. */
export interface TokenIdentity {
  id: number;
  issuer: string;
  subject: string;
  created: string;
  last_used: string | null;
}

export const tokenIdentitySchema = {
  $id: 'TokenIdentity',
  type: 'object',
  required: ['id', 'issuer', 'subject', 'created', 'last_used'],
  properties: {
    id: { type: 'integer' },
    issuer: str,
    subject: str,
    created: timestamp,
    last_used: { ...timestamp, type: ['string', 'null'] },
  },
} as const;

export interface LinkIdentityBody {
  issuer: string;
  subject: string;
}

export const linkIdentityBody = {
  type: 'object',
  additionalProperties: false,
  required: ['issuer', 'subject'],
  properties: {
    issuer: { type: 'string', minLength: 1, maxLength: 2000 },
    subject: { type: 'string', minLength: 1, maxLength: 255 },
  },
} as const;

export interface User {
  user_name: string;
  full_name: string | null;
  url: string;
  /** Shown to the user themselves and to admins only; null for a user made from a token identity. */
  client_dn?: string | null;
  /**
   * Subject DN of the CA that issued the user's certificate: set by an admin, or at the user's first login. A
   * certificate with the same DN from another CA is not this user. Admins and the user only.
   */
  issuer_dn?: string | null;
  email?: string | null;
  suspended?: boolean;
  groups?: string[];
  permissions?: string[];
  /** Bytes the user may store, null for no limit, and bytes stored (every kept version of their images). */
  quota?: number | null;
  usage?: number;
  created?: string;
  modified?: string;
  /** whoami only: how this request was authenticated. */
  credential?: Credential;
  /**
   * whoami only: the identity this browser is signed in with at an issuer, beside the certificate that
   * authenticated it, and not linked to this user yet (the account page offers to link it).
   */
  offered_identity?: { issuer: string; subject: string; name: string | null } | null;
}

export const userSchema = {
  $id: 'User',
  type: 'object',
  required: ['user_name', 'full_name', 'url'],
  properties: {
    user_name: str,
    full_name: nullableStr,
    url: str,
    client_dn: {
      ...nullableStr,
      description:
        'Certificate subject DN in OpenSSL slash form (admins and the user only); null for a user made from a token identity',
    },
    issuer_dn: {
      ...nullableStr,
      description:
        "Subject DN of the CA that issued the user's certificate, bound at creation or first login; null until then (admins and the user only)",
    },
    email: { ...nullableStr, description: 'Admins and the user only' },
    suspended: bool,
    groups: stringList,
    permissions: stringList,
    quota: { type: ['integer', 'null'] },
    usage: { type: 'integer' },
    created: timestamp,
    modified: timestamp,
    credential: { ...credentialSchema, description: 'whoami only: how this request was authenticated' },
    offered_identity: {
      type: ['object', 'null'],
      description: 'whoami only: an issuer identity this browser signed in with, not linked to this user yet',
      required: ['issuer', 'subject', 'name'],
      properties: { issuer: str, subject: str, name: nullableStr },
    },
  },
} as const;

export interface CreateUserBody {
  user_name: string;
  client_dn?: string;
  /** The original API's name for client_dn. */
  cert_dn?: string;
  /** The CA that issued the certificate (its subject DN); absent: bound at the user's first login. */
  issuer_dn?: string | null;
  full_name?: string | null;
  email?: string | null;
  groups?: string[];
  suspended?: boolean;
}

export const createUserBody = {
  type: 'object',
  additionalProperties: false,
  required: ['user_name'],
  properties: {
    user_name: userName,
    client_dn: dnText,
    cert_dn: dnText,
    issuer_dn: nullableText(TEXT_LIMITS.dn),
    full_name: nullableText(TEXT_LIMITS.short),
    email: nullableText(TEXT_LIMITS.email),
    groups: nameList,
    suspended: bool,
  },
} as const;

export interface ModifyUserBody {
  quota?: number | null;
  user_name?: string;
  client_dn?: string;
  cert_dn?: string;
  /** Re-binds the user to another CA; null: bound again at their next login. Admins only. */
  issuer_dn?: string | null;
  full_name?: string | null;
  email?: string | null;
  suspended?: boolean;
}

export const modifyUserBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    user_name: { ...userName, description: 'Rename the user' },
    client_dn: dnText,
    cert_dn: dnText,
    issuer_dn: {
      ...nullableText(TEXT_LIMITS.dn),
      description:
        "The CA that issues the user's certificate; null: bound again at the next login (admins only)",
    },
    full_name: nullableText(TEXT_LIMITS.short),
    email: nullableText(TEXT_LIMITS.email),
    suspended: bool,
    quota: {
      type: ['integer', 'null'],
      minimum: 0,
      description: 'Bytes the user may store (all kept versions); null: no limit. Admins only',
    },
  },
} as const;

// ---- groups ----

export interface Group {
  name: string;
  url: string;
  /** The group's signed HEPiX image list (docs/image-lists.md): what its endorsers endorse. */
  image_list_url: string;
  protected: boolean;
  permissions: string[];
  users: string[];
  created: string;
  modified: string;
}

export const groupSchema = {
  $id: 'Group',
  type: 'object',
  required: ['name', 'url', 'image_list_url', 'protected', 'permissions', 'users', 'created', 'modified'],
  properties: {
    name: str,
    url: str,
    image_list_url: { ...str, description: "The group's signed HEPiX image list" },
    protected: bool,
    permissions: stringList,
    users: stringList,
    created: timestamp,
    modified: timestamp,
  },
} as const;

export interface CreateGroupBody {
  name: string;
  users?: string[];
  permissions?: string[];
}

export const createGroupBody = {
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: { name: groupName, users: nameList, permissions: nameList },
} as const;

export interface ModifyGroupBody {
  name?: string;
}

export const modifyGroupBody = {
  type: 'object',
  additionalProperties: false,
  properties: { name: { ...groupName, description: 'Rename the group' } },
} as const;

// ---- images ----

/**
 * Digests of a version's (or variant's) bytes, lowercase hex: SHA-256 always; ADLER32 (8 digits) of every
 * upload, null for one stored before servers computed it until it is asked for or filled in by fsck; MD5 and
 * SHA-512 as the server is configured.
 */
export interface ImageDigests {
  sha256: string;
  md5: string | null;
  sha512: string | null;
  adler32: string | null;
}

const digestProperties = {
  sha256: str,
  md5: nullableStr,
  sha512: nullableStr,
  adler32: { ...nullableStr, description: 'ADLER32 as 8 hex digits (the grid’s checksum)' },
} as const;
/** The schema of `ImageDigests`, for every response that shows them. */
export const digestsSchema = { type: 'object', properties: digestProperties } as const;

export interface ImageShares {
  users: string[];
  groups: string[];
}

export interface Image {
  uuid: string;
  name: string;
  owner: string;
  url: string;
  owner_url: string;
  file_url: string;
  http_file_url: string | null;
  /** The image's own signed HEPiX image list: its endorsed version (docs/image-lists.md). */
  image_list_url: string;
  description: string | null;
  os_variant: string | null;
  os_type: string | null;
  os_arch: string | null;
  hypervisor: string | null;
  read_only: boolean;
  unauthenticated_access: boolean;
  expires: string | null;
  expired: boolean;
  raw_file_uploaded: boolean;
  /** Digests of the current version's bytes, lowercase hex; null before the first upload. */
  digests: ImageDigests | null;
  version: number;
  size: number | null;
  /** What the current version's bytes are (docs/formats.md); null before the first upload. */
  disk_format: string | null;
  virtual_size: number | null;
  compression: string | null;
  partition_table: string | null;
  created: string;
  modified: string;
  uploaded: string | null;
  /** Shown to the owner and admins only. */
  shared_with?: ImageShares;
}

export const imageSchema = {
  $id: 'Image',
  type: 'object',
  required: ['uuid', 'name', 'owner', 'url', 'file_url', 'read_only', 'unauthenticated_access', 'version'],
  properties: {
    uuid: str,
    name: str,
    owner: str,
    url: str,
    owner_url: str,
    file_url: { ...str, description: 'HTTPS URL of the image bytes' },
    http_file_url: { ...nullableStr, description: 'Plain HTTP URL, for public images only' },
    image_list_url: { ...str, description: "The image's own signed HEPiX image list" },
    description: nullableStr,
    os_variant: nullableStr,
    os_type: nullableStr,
    os_arch: nullableStr,
    hypervisor: nullableStr,
    read_only: bool,
    unauthenticated_access: bool,
    expires: nullableTimestamp,
    expired: bool,
    raw_file_uploaded: bool,
    digests: { type: ['object', 'null'], properties: digestProperties },
    version: { type: 'integer' },
    size: { type: ['integer', 'null'] },
    disk_format: { ...nullableStr, description: 'qcow2, vmdk, vpc, vhdx, vdi, iso, raw or ova' },
    virtual_size: { type: ['integer', 'null'], description: 'Bytes the guest sees' },
    compression: { ...nullableStr, description: 'gzip, xz, zstd or bzip2, when the upload is compressed' },
    partition_table: { ...nullableStr, description: 'mbr or gpt, for raw disks' },
    created: timestamp,
    modified: timestamp,
    uploaded: nullableTimestamp,
    shared_with: {
      type: 'object',
      properties: { users: stringList, groups: stringList },
    },
  },
} as const;

const imageEditable = {
  description: nullableText(TEXT_LIMITS.description),
  os_variant: nullableText(TEXT_LIMITS.short),
  os_type: nullableText(TEXT_LIMITS.short),
  os_arch: nullableText(TEXT_LIMITS.short),
  hypervisor: nullableText(TEXT_LIMITS.short),
  read_only: bool,
  unauthenticated_access: bool,
  expires: {
    ...nullableText(TEXT_LIMITS.expires),
    description: 'ISO 8601 date-time; empty or null for never',
  },
} as const;

export interface ImageEditableFields {
  description?: string | null;
  os_variant?: string | null;
  os_type?: string | null;
  os_arch?: string | null;
  hypervisor?: string | null;
  read_only?: boolean;
  unauthenticated_access?: boolean;
  expires?: string | null;
}

/** Version numbers are integers in the database (PostgreSQL's end at 2147483647): none is larger. */
export const MAX_VERSION = 2_147_483_647;
/** A version number, wherever a request names one. */
export const versionNumber = { type: 'integer', minimum: 1, maximum: MAX_VERSION } as const;

// ---- variants and conversion jobs ----

/** Formats a version can be converted to (docs/formats.md). */
export const VARIANT_FORMATS = ['raw', 'qcow2', 'vmdk'] as const;
export type VariantFormat = (typeof VARIANT_FORMATS)[number];

/** A version's bytes converted to another format, stored beside it and removed with it. */
export interface Variant {
  format: VariantFormat;
  /** qcow2 only: its clusters are compressed (smaller, slower to boot from). */
  compressed: boolean;
  size: number;
  digests: ImageDigests;
  virtual_size: number | null;
  created: string;
  file_url: string;
}

/** A kept version of an image, as GET /api/images/{user}/{image}/versions lists it. */
export interface Version {
  version: number;
  /** The version the image's URL serves now. */
  current: boolean;
  size: number;
  digests: ImageDigests;
  disk_format: string | null;
  virtual_size: number | null;
  compression: string | null;
  partition_table: string | null;
  created: string;
  file_url: string;
  variants: Variant[];
}

export const variantSchema = {
  type: 'object',
  properties: {
    format: str,
    compressed: bool,
    size: { type: 'integer' },
    digests: digestsSchema,
    virtual_size: { type: ['integer', 'null'] },
    created: timestamp,
    file_url: str,
  },
} as const;

export interface ConversionBody {
  format: VariantFormat;
  /** qcow2 only. */
  compress?: boolean;
  /** The version to convert; the current one by default. */
  version?: number;
}

export const conversionBody = {
  type: 'object',
  additionalProperties: false,
  required: ['format'],
  properties: {
    format: { type: 'string', enum: [...VARIANT_FORMATS], description: 'vmdk is stream-optimised' },
    compress: { ...bool, description: 'qcow2 only: compress its clusters' },
    version: { ...versionNumber, description: 'The current version by default' },
  },
} as const;

export type JobState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

/** A conversion running in the background; poll its URL until `state` is final. */
export interface Job {
  id: string;
  url: string;
  kind: 'convert';
  image: string;
  version: number;
  format: VariantFormat;
  compressed: boolean;
  state: JobState;
  /** 0 to 1. */
  progress: number;
  error: { code: string; message: string } | null;
  /** Once it succeeded. */
  variant: Variant | null;
  requested_by: string;
  created: string;
  started: string | null;
  finished: string | null;
}

export const jobSchema = {
  $id: 'Job',
  type: 'object',
  required: ['id', 'url', 'kind', 'image', 'version', 'format', 'state', 'progress'],
  properties: {
    id: str,
    url: str,
    kind: str,
    image: { ...str, description: 'owner/name' },
    version: { type: 'integer' },
    format: str,
    compressed: bool,
    state: { type: 'string', enum: ['queued', 'running', 'succeeded', 'failed', 'cancelled'] },
    progress: { type: 'number', minimum: 0, maximum: 1 },
    error: { type: ['object', 'null'], properties: { code: str, message: str } },
    variant: { anyOf: [{ type: 'null' }, variantSchema] },
    requested_by: str,
    created: timestamp,
    started: nullableTimestamp,
    finished: nullableTimestamp,
  },
} as const;

export interface CreateImageBody extends ImageEditableFields {
  name: string;
  /** Create the image in this user's namespace (admins only). */
  owner?: string;
  /** The original API's name for owner. */
  user_name?: string;
}

export const createImageBody = {
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: { name: imageName, owner: userName, user_name: userName, ...imageEditable },
} as const;

export interface ModifyImageBody extends ImageEditableFields {
  name?: string;
  owner?: string;
}

export const modifyImageBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    name: { ...imageName, description: 'Rename the image' },
    owner: {
      ...userName,
      description: 'Admins: give the image to this user now (others offer it: POST …/transfer)',
    },
    ...imageEditable,
  },
} as const;

// ---- transfers: giving an image away is an offer its receiver accepts ----

/** An offer to give an image to another user; it ends when accepted, declined, cancelled or expired. */
export interface Transfer {
  id: string;
  url: string;
  /** `owner/name` of the image offered, as it is now (a rename shows). */
  image: string;
  image_url: string;
  from: string;
  to: string;
  description: string | null;
  /** Bytes the image stores (every kept version and variant): what the receiver's quota must hold. */
  size: number;
  /** Whether anyone may download it, and whom it is shared with: all of that goes with the image. */
  unauthenticated_access: boolean;
  shared_with: ImageShares;
  created: string;
  expires: string;
}

export const transferSchema = {
  $id: 'Transfer',
  type: 'object',
  required: ['id', 'url', 'image', 'image_url', 'from', 'to', 'size', 'created', 'expires'],
  properties: {
    id: str,
    url: str,
    image: { ...str, description: 'owner/name of the image offered' },
    image_url: str,
    from: { ...str, description: 'The giver (the image’s owner)' },
    to: { ...str, description: 'The receiver, who may accept or decline' },
    description: nullableStr,
    size: { type: 'integer', description: 'Bytes the image stores; they must fit the receiver’s quota' },
    unauthenticated_access: bool,
    shared_with: { type: 'object', properties: { users: stringList, groups: stringList } },
    created: timestamp,
    expires: { ...timestamp, description: 'After this the offer answers 410 transfer_expired' },
  },
} as const;

export interface TransferBody {
  to: string;
  /** Admins only: give the image now, without an offer. */
  direct?: boolean;
}

export const transferBody = {
  type: 'object',
  additionalProperties: false,
  required: ['to'],
  properties: {
    to: { ...userName, description: 'The user to offer the image to' },
    direct: { ...bool, description: 'Admins only: give it now, without asking the receiver' },
  },
} as const;

export interface AcceptTransferBody {
  /** Take the image under another name (when the receiver already has one of its name). */
  name?: string;
}

export const acceptTransferBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    name: { ...imageName, description: 'Take the image under this name instead of its own' },
  },
} as const;

// ---- capabilities ----

/**
 * What a capability may be used for, in dCache's words (its `activity:` caveat): DOWNLOAD reads bytes, UPLOAD
 * writes them (a new image included), DELETE removes an image, MANAGE renames one, LIST lists a namespace;
 * every one of them lets the holder read the metadata of what its path covers (READ_METADATA alone does only
 * that). UPDATE_METADATA is taken and grants nothing here.
 */
export const ACTIVITIES = [
  'DOWNLOAD',
  'UPLOAD',
  'DELETE',
  'MANAGE',
  'LIST',
  'READ_METADATA',
  'UPDATE_METADATA',
] as const;
export type Activity = (typeof ACTIVITIES)[number];

/** A capability as its owner sees it (never the macaroon itself: it is shown once, when issued). */
export interface Capability {
  id: string;
  /** Who issued it, and whose rights it carries. */
  user: string;
  /** The URL path it is bound to: an image's bytes, a namespace, or the whole tree. */
  path: string;
  activities: Activity[];
  created: string;
  expires: string;
  /** When it was revoked, or null. */
  revoked: string | null;
  /** `revoked` (by its owner or an admin) or `secret_rotated`, or null. */
  revoked_reason: string | null;
}

export const capabilitySchema = {
  $id: 'Capability',
  type: 'object',
  required: ['id', 'user', 'path', 'activities', 'created', 'expires', 'revoked', 'revoked_reason'],
  properties: {
    id: str,
    user: { ...str, description: 'Whose rights it carries: it never grants more than they have' },
    path: { ...str, description: 'The URL path it is bound to' },
    activities: { type: 'array', items: { type: 'string', enum: ACTIVITIES } },
    created: timestamp,
    expires: timestamp,
    revoked: { ...nullableStr, format: 'date-time' },
    revoked_reason: nullableStr,
  },
} as const;

/** What `POST` with `Content-Type: application/macaroon-request` answers (dCache's answer, and more). */
export interface IssuedCapability {
  /** The bearer token: `Authorization: Bearer …` or `?authz=…`. */
  macaroon: string;
  id: string;
  expires: string;
  /** dCache's shape: the URL asked about, and with the macaroon in its query. */
  uri: { target: string; targetWithMacaroon: string };
}

export const issuedCapabilitySchema = {
  type: 'object',
  required: ['macaroon', 'id', 'expires', 'uri'],
  properties: {
    macaroon: str,
    id: str,
    expires: timestamp,
    uri: {
      type: 'object',
      required: ['target', 'targetWithMacaroon'],
      properties: { target: str, targetWithMacaroon: str },
    },
  },
} as const;

export interface CapabilityRequest {
  /** `activity:DOWNLOAD,LIST`, `path:/api/images/raw/bob/`, `before:2027-01-01T00:00:00Z`, `ip:10.0.0.0/8`. */
  caveats?: string[];
  /** An ISO 8601 duration (`PT1H`, `P7D`); the server's default if absent, its maximum at most. */
  validity?: string;
}

export const capabilityRequestBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    caveats: {
      type: 'array',
      maxItems: 16,
      items: { type: 'string', maxLength: 1024 },
      description: 'activity:, path:, before: and ip: caveats, as dCache takes them',
    },
    validity: { type: 'string', maxLength: 64, description: 'An ISO 8601 duration, such as PT1H or P7D' },
  },
} as const;

export interface CapabilityListQuery {
  limit?: number;
  offset?: number;
  /** Admins: one user's capabilities (everyone's by default). */
  user?: string;
  /** Revoked and expired ones too. */
  all?: boolean;
}

// ---- endorsements and image lists ----

/** A group's endorsement of one version of an image: what its image list offers sites (docs/image-lists.md). */
export interface Endorsement {
  url: string;
  group: string;
  /** `owner/name`. */
  image: string;
  image_url: string;
  /** The version endorsed: a new upload changes nothing until an endorser endorses it. */
  version: number;
  /** That version's bytes, at a URL that never changes them. */
  version_url: string;
  size: number;
  sha512: string;
  /** Who endorsed it (the latest endorser of this image in this group). */
  endorser: string;
  comment: string | null;
  created: string;
  /** After this the lists leave it out. */
  expires: string;
  expired: boolean;
}

export const endorsementSchema = {
  $id: 'Endorsement',
  type: 'object',
  required: [
    'url',
    'group',
    'image',
    'image_url',
    'version',
    'version_url',
    'size',
    'sha512',
    'endorser',
    'comment',
    'created',
    'expires',
    'expired',
  ],
  properties: {
    url: str,
    group: str,
    image: { ...str, description: 'owner/name' },
    image_url: str,
    version: { type: 'integer' },
    version_url: { ...str, description: 'The endorsed version’s bytes, pinned' },
    size: { type: 'integer' },
    sha512: str,
    endorser: str,
    comment: nullableStr,
    created: timestamp,
    expires: timestamp,
    expired: bool,
  },
} as const;

export interface EndorseBody {
  /** `owner/name`. */
  image: string;
  /** The version to endorse; the image's current one by default. */
  version?: number;
  /** ISO 8601 date or date-time (UTC): after it, sites stop trusting the endorsement. */
  expires: string;
  comment?: string | null;
}

export const endorseBody = {
  type: 'object',
  additionalProperties: false,
  required: ['image', 'expires'],
  properties: {
    image: { type: 'string', maxLength: 256, description: 'owner/name' },
    version: versionNumber,
    expires: { type: 'string', maxLength: 64, description: 'ISO 8601 date or date-time, in the future' },
    comment: nullableText(TEXT_LIMITS.description),
  },
} as const;

/** What publishing an endorser's own signed list answers. */
export interface PublishedList {
  group: string;
  endorser: string;
  version: number;
  expires: string;
  url: string;
}

export interface EndorsementListQuery {
  limit?: number;
  offset?: number;
  /** Expired endorsements too (kept until withdrawn). */
  all?: boolean;
}

// ---- clouds ----

export const CLOUD_TRANSFERS = ['web-download', 'upload'] as const;
export type CloudTransfer = (typeof CLOUD_TRANSFERS)[number];
export const CLOUD_VISIBILITIES = ['private', 'shared', 'community'] as const;
export type CloudVisibility = (typeof CLOUD_VISIBILITIES)[number];

/** A group's cloud: an OpenStack project that Repoman keeps chosen images present in (docs/clouds.md). */
export interface Cloud {
  url: string;
  group: string;
  name: string;
  auth_url: string;
  region: string | null;
  /** `application_credential` (its id shown), or `password` (the user and project shown); never a secret. */
  credential: {
    kind: 'application_credential' | 'password';
    id?: string;
    username?: string;
    user_domain?: string;
    project?: string;
    project_domain?: string;
  };
  /** The format images get there (converted if need be); null: as stored. */
  disk_format: string | null;
  visibility: CloudVisibility;
  /** Projects a `shared` image is shared with. */
  shared_projects: string[];
  name_prefix: string;
  transfer: CloudTransfer;
  /** Sync what the group endorses (its image list), besides the images chosen. */
  follow_endorsed: boolean;
  /** The images chosen, `owner/name`, following their current version. */
  images: string[];
  created: string;
  modified: string;
  last_sync: string | null;
  last_error: string | null;
}

const cloudFields = {
  auth_url: { type: 'string', maxLength: 2048, description: 'Keystone’s v3 URL' },
  region: nullableText(TEXT_LIMITS.short),
  application_credential_id: { type: 'string', maxLength: 256 },
  application_credential_secret: { type: 'string', maxLength: 1024 },
  username: { type: 'string', maxLength: 256 },
  password: { type: 'string', maxLength: 1024 },
  user_domain: { type: 'string', maxLength: 256 },
  project: { type: 'string', maxLength: 256 },
  project_domain: { type: 'string', maxLength: 256 },
  disk_format: { type: ['string', 'null'], enum: ['raw', 'qcow2', 'vmdk', null] },
  visibility: { type: 'string', enum: CLOUD_VISIBILITIES },
  shared_projects: { type: 'array', maxItems: 100, items: { type: 'string', maxLength: 256 } },
  name_prefix: { type: 'string', maxLength: 64 },
  transfer: { type: 'string', enum: CLOUD_TRANSFERS },
  follow_endorsed: bool,
} as const;

/**
 * A cloud to register: Keystone's URL and an application credential (`application_credential_id` and
 * `_secret`), or a user's `username`, `password` and `project` (domains `Default` unless said).
 */
export interface CreateCloudBody {
  name: string;
  auth_url: string;
  region?: string | null;
  application_credential_id?: string;
  application_credential_secret?: string;
  username?: string;
  password?: string;
  user_domain?: string;
  project?: string;
  project_domain?: string;
  disk_format?: string | null;
  visibility?: CloudVisibility;
  shared_projects?: string[];
  name_prefix?: string;
  transfer?: CloudTransfer;
  follow_endorsed?: boolean;
}

export const createCloudBody = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'auth_url'],
  properties: { name: { type: 'string', pattern: ACCOUNT_NAME_PATTERN }, ...cloudFields },
} as const;

export type ModifyCloudBody = Partial<Omit<CreateCloudBody, 'name'>>;

export const modifyCloudBody = {
  type: 'object',
  additionalProperties: false,
  properties: cloudFields,
} as const;

export const CLOUD_COPY_STATES = [
  'pending',
  'transferring',
  'present',
  'failed',
  'conflict',
  'retiring',
] as const;
export type CloudCopyState = (typeof CLOUD_COPY_STATES)[number];

/** What a cloud holds of one image, or is doing about it. */
export interface CloudCopy {
  /** `owner/name`. */
  image: string;
  version: number;
  state: CloudCopyState;
  /** Glance's id of the copy, once made. */
  glance_id: string | null;
  /** Why it failed, or the conflict (Glance's or Keystone's words). */
  detail: string | null;
  attempts: number;
  updated: string;
}

// ---- lists ----

export interface Page<T> {
  items: T[];
  total: number;
  limit: number;
  offset: number;
  /** URL of the next page, or null on the last one. */
  next: string | null;
}

export function pageSchema(item: string) {
  return {
    type: 'object',
    required: ['items', 'total', 'limit', 'offset', 'next'],
    properties: {
      items: { type: 'array', items: { $ref: `${item}#` } },
      total: { type: 'integer' },
      limit: { type: 'integer' },
      offset: { type: 'integer' },
      next: nullableStr,
    },
  } as const;
}

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

/** The largest offset a list takes (docs/api.md#lists); a larger one is refused before the database sees it. */
export const MAX_PAGE_OFFSET = 1_000_000_000;

export const pageQuery = {
  limit: { type: 'integer', minimum: 1, maximum: MAX_PAGE_SIZE, default: DEFAULT_PAGE_SIZE },
  offset: { type: 'integer', minimum: 0, maximum: MAX_PAGE_OFFSET, default: 0 },
} as const;

export interface ImageListQuery {
  limit: number;
  offset: number;
  owner?: string;
  shared?: boolean;
  public?: boolean;
  name_prefix?: string;
  os_variant?: string;
  os_type?: string;
  os_arch?: string;
  hypervisor?: string;
  disk_format?: string;
  sort?: 'name' | 'owner' | 'created' | 'modified';
  order?: 'asc' | 'desc';
}

export const imageListQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ...pageQuery,
    owner: { ...userName, description: 'Only images in this namespace' },
    shared: { ...bool, description: 'true: only images shared with me (directly or through a group)' },
    public: { ...bool, description: 'true: only images with unauthenticated_access' },
    name_prefix: shortText,
    os_variant: shortText,
    os_type: shortText,
    os_arch: shortText,
    hypervisor: shortText,
    disk_format: shortText,
    sort: { type: 'string', enum: ['name', 'owner', 'created', 'modified'], default: 'name' },
    order: { type: 'string', enum: ['asc', 'desc'], default: 'asc' },
  },
} as const;

export interface TransferListQuery {
  limit: number;
  offset: number;
  /** `to`: offers made to me; `from`: offers I made; both by default. */
  direction?: 'to' | 'from';
}

export const transferListQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ...pageQuery,
    direction: {
      type: 'string',
      enum: ['to', 'from'],
      description: 'to: offers made to me; from: offers I made (both by default; admins: every offer)',
    },
  },
} as const;

export const endorsementListQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ...pageQuery,
    all: { ...bool, description: 'Expired endorsements too (by default only those in the lists)' },
  },
} as const;

export const capabilityListQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ...pageQuery,
    user: { ...userName, description: 'Admins: this user’s capabilities only' },
    all: { ...bool, description: 'Revoked and expired ones too (by default only those still usable)' },
  },
} as const;
