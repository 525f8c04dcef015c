/**
 * Every error Repoman reports, with its HTTP status and a default message. The server throws `RepomanError`
 * with one of these codes; the client maps the same codes to hints and exit codes.
 */
export const ERRORS = {
  // 400: the request itself is wrong
  bad_request: { status: 400, message: 'The request is malformed' },
  unknown_field: { status: 400, message: 'The request has a field that this endpoint does not take' },
  invalid_field: { status: 400, message: 'A field has an invalid value' },
  invalid_name: { status: 400, message: 'The name is not valid' },
  invalid_dn: { status: 400, message: 'The distinguished name is not valid' },
  unsupported_media_type: { status: 415, message: 'Send JSON or form fields' },
  payload_too_large: { status: 413, message: 'The request body is too large' },
  headers_too_large: { status: 431, message: 'The request headers are too large' },
  request_timeout: { status: 408, message: 'The request took too long to arrive' },
  image_too_large: { status: 413, message: 'The image is larger than this repository accepts' },
  length_mismatch: { status: 400, message: 'The body is not as long as its Content-Length' },
  upload_incomplete: { status: 400, message: 'The upload ended before its body did' },
  digest_mismatch: { status: 400, message: 'The body does not match the digest the client sent' },
  backing_file_refused: {
    status: 400,
    message: 'The image reads another file as its backing file; upload a self-contained image',
  },
  external_data_file_refused: {
    status: 400,
    message: 'The image keeps its data in another file; upload a self-contained image',
  },
  external_extent_refused: {
    status: 400,
    message: 'The vmdk reads its data from other files; upload a self-contained (monolithic) vmdk',
  },
  invalid_image_header: { status: 400, message: 'The image header is cut short or points outside the file' },
  format_unsupported: {
    status: 400,
    message:
      'qemu reads the image as a format this repository does not store (qcow v1, QED, LUKS, Parallels, …)',
  },
  format_mismatch: { status: 400, message: 'The image is not in the format its upload declared' },
  feature_not_allowed: { status: 400, message: 'This repository does not accept images with this feature' },
  format_not_allowed: { status: 400, message: 'This repository does not accept images in this format' },
  decompression_failed: { status: 400, message: 'The compressed upload is corrupt or cut short' },
  conversion_unsupported: { status: 400, message: 'This version cannot be converted to that format' },
  conversion_not_needed: { status: 400, message: 'The version is already in that format' },
  range_not_satisfiable: { status: 416, message: 'The requested range is outside the image' },
  too_many_ranges: {
    status: 416,
    message: 'The request asks for more ranges, or more bytes in its ranges, than one answer carries',
  },
  checksum_algorithm_unsupported: {
    status: 400,
    message: 'Upload-Checksum names an algorithm this server does not support (sha1, md5, sha256, sha512)',
  },
  checksum_mismatch: { status: 460, message: 'The request body does not match its Upload-Checksum' },
  tus_version_unsupported: { status: 412, message: 'This server speaks tus 1.0.0 (Tus-Resumable: 1.0.0)' },
  list_signature_invalid: {
    status: 400,
    message: 'The signed image list is not an S/MIME message whose signature verifies',
  },
  // 401: who are you?
  certificate_required: {
    status: 401,
    message: 'A client certificate is required; use HTTPS with your certificate or proxy',
  },
  certificate_invalid: { status: 401, message: 'The client certificate was not accepted' },
  capability_invalid: {
    status: 401,
    message: 'The capability is not one this server issued, or it was altered',
  },
  capability_expired: { status: 401, message: 'The capability has expired; ask for a new one' },
  capability_revoked: { status: 401, message: 'The capability was revoked; ask for a new one' },
  token_invalid: {
    status: 401,
    message: 'The bearer token was not accepted (its form, signature, issuer or audience)',
  },
  token_expired: { status: 401, message: 'The bearer token has expired or is not valid yet; get a new one' },
  sign_in_failed: { status: 401, message: 'Signing in with the identity provider failed; try again' },
  list_token_required: {
    status: 401,
    message: 'This image list is for its subscribers: send a subscriber token as HTTP basic auth',
  },
  // 403: you may not
  unknown_certificate: { status: 403, message: 'The certificate is valid but belongs to no Repoman user' },
  user_suspended: { status: 403, message: 'This account is suspended; contact an administrator' },
  certificate_issuer_mismatch: {
    status: 403,
    message: 'The certificate names a known user but comes from another CA than theirs',
  },
  cross_site_request: {
    status: 403,
    message: 'A change sent by another site in your browser is refused; make it from Repoman’s own pages',
  },
  forbidden: { status: 403, message: 'You are not allowed to do this' },
  list_signer_refused: {
    status: 403,
    message: 'The image list is not signed by its endorser’s own certificate (no proxy) from a trusted CA',
  },
  propfind_finite_depth: {
    status: 403,
    message: 'PROPFIND with Depth: infinity is refused; ask with Depth: 0 or 1',
  },
  https_required: {
    status: 403,
    message: 'Plain HTTP serves public images only; use HTTPS with a certificate',
  },
  limited_proxy: { status: 403, message: 'A limited proxy may only download' },
  destination_refused: {
    status: 403,
    message: 'A third-party copy may not reach this address (loopback, link-local or private)',
  },
  unknown_token_identity: {
    status: 403,
    message: 'The token is valid but its identity (issuer and subject) belongs to no Repoman user',
  },
  token_denied: { status: 403, message: 'The token’s scopes do not allow this request' },
  capability_denied: {
    status: 403,
    message: 'The capability does not allow this request (its path, activities or addresses)',
  },
  transfer_offer_required: {
    status: 403,
    message:
      'Giving an image away is an offer the receiver accepts: POST …/transfer with the receiver in "to"',
  },
  // 404
  not_found: { status: 404, message: 'No such resource' },
  method_not_allowed: {
    status: 405,
    message: 'This path does not take this method; the Allow header lists those it takes',
  },
  user_not_found: { status: 404, message: 'No such user' },
  group_not_found: { status: 404, message: 'No such group' },
  image_not_found: { status: 404, message: 'No such image' },
  permission_not_found: { status: 404, message: 'No such permission' },
  image_not_uploaded: { status: 404, message: 'No bytes have been uploaded to this image yet' },
  version_not_found: { status: 404, message: 'No such version of the image' },
  upload_not_found: { status: 404, message: 'No such upload' },
  variant_not_found: { status: 404, message: 'The version has no variant in that format' },
  job_not_found: { status: 404, message: 'No such job' },
  transfer_not_found: { status: 404, message: 'No such transfer offer' },
  capability_not_found: { status: 404, message: 'No such capability' },
  identity_not_found: { status: 404, message: 'No such linked identity' },
  endorsement_not_found: { status: 404, message: 'The group does not endorse this image' },
  cloud_not_found: { status: 404, message: 'The group has no such cloud' },
  subscriber_not_found: { status: 404, message: 'No such subscriber of this group’s image lists' },
  image_list_unsigned: {
    status: 404,
    message: 'Nobody has signed this image list: the server has no signing certificate configured',
  },
  upload_expired: { status: 410, message: 'The upload expired; start a new one' },
  image_expired: { status: 410, message: 'The image has expired' },
  transfer_expired: {
    status: 410,
    message: 'The transfer offer expired; the giver may offer the image again',
  },
  cloud_check_failed: {
    status: 400,
    message: 'The cloud does not work with this credential (Keystone, Glance, or the right to create images)',
  },
  cloud_failed: {
    status: 502,
    message: 'The cloud (Keystone or Glance) failed or refused the request',
  },
  remote_failed: {
    status: 502,
    message: 'The other end of a third-party copy failed or refused it',
  },
  // 409: the state of the repository does not allow it
  image_endorsed: {
    status: 409,
    message: 'Groups endorse versions of this image for their image lists; withdraw those endorsements first',
  },
  user_exists: { status: 409, message: 'A user with this name already exists' },
  identity_linked: { status: 409, message: 'This token identity is already linked to a user' },
  dn_in_use: { status: 409, message: 'This certificate DN already belongs to another user' },
  group_exists: { status: 409, message: 'A group with this name already exists' },
  image_exists: { status: 409, message: 'An image with this name already exists in the namespace' },
  destination_exists: {
    status: 412,
    message: 'The destination exists and the request said not to overwrite it (Overwrite: F)',
  },
  group_protected: { status: 409, message: 'This group is protected and cannot be deleted or renamed' },
  image_read_only: { status: 409, message: 'The image is read-only' },
  conflict: { status: 409, message: 'The request conflicts with the current state' },
  cloud_exists: { status: 409, message: 'The group has a cloud of this name already' },
  list_content_mismatch: {
    status: 409,
    message: 'The signed content is not the image list the server publishes; sign exactly that',
  },
  precondition_failed: {
    status: 412,
    message: 'What you changed has changed since you read it (If-Match); read it again',
  },
  upload_offset_mismatch: { status: 409, message: 'Upload-Offset is not where the upload stands' },
  upload_locked: { status: 423, message: 'Another request is writing to this upload; try again shortly' },
  too_many_uploads: {
    status: 409,
    message: 'You have as many unfinished uploads as this repository allows; finish or delete one first',
  },
  too_many_sign_ins: {
    status: 429,
    message: 'Too many sign-ins are under way from here; try again in a few minutes',
  },
  too_many_images: {
    status: 409,
    message: 'The namespace holds as many images as this repository allows; delete one first',
  },
  // 5xx: our fault or a dependency's
  insufficient_storage: { status: 507, message: 'The repository is out of storage space' },
  quota_exceeded: { status: 507, message: 'The upload would exceed your storage quota' },
  conversions_unavailable: {
    status: 503,
    message: 'This server cannot convert images (qemu-img is missing)',
  },
  database_unavailable: { status: 503, message: 'The database is unavailable; try again shortly' },
  identity_provider_unavailable: {
    status: 503,
    message: 'The identity provider cannot be reached for signing in; try again later',
  },
  internal: { status: 500, message: 'Internal server error' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERRORS;

/** The JSON body of every error response. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; details?: Record<string, unknown> };
}

/** A coded error: thrown by services, turned into an HTTP response by one handler. */
export class RepomanError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  /**
   * `message` defaults to the code's own; `details` are machine-readable facts for the client (a field name, a
   * limit), `cause` the error underneath (for logs, never sent).
   */
  constructor(
    code: ErrorCode,
    message?: string,
    options: { details?: Record<string, unknown> | undefined; cause?: unknown } = {},
  ) {
    super(
      message ?? ERRORS[code].message,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = 'RepomanError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.details = options.details;
  }

  toBody(): ErrorBody {
    return {
      error: { code: this.code, message: this.message, ...(this.details ? { details: this.details } : {}) },
    };
  }
}
