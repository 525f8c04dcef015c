/**
 * The typed API client: openapi-fetch over the types generated from the server's OpenAPI document
 * (scripts/api.ts). Every call goes through `call`, which turns the API's JSON errors into an `ApiError`
 * with its stable code, the server's message and what the user can do about it.
 */
import type { ErrorCode } from '@repoman/core';
import createClient from 'openapi-fetch';
import type { components, paths } from './schema';

export type Image = components['schemas']['Image'];
export type User = components['schemas']['User'];
export type Group = components['schemas']['Group'];
export type Transfer = components['schemas']['Transfer'];

/** Served on the plain-HTTP port: public images only, no certificate. */
export const plainHttp = location.protocol === 'http:';

export const api = createClient<paths>({ baseUrl: location.origin });

export type ApiErrorCode = ErrorCode | 'network' | 'http_error';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    /** The server's stable code, or the page's own: `network` (no answer), `http_error` (an answer not ours). */
    readonly code: ApiErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
  }
  /** What the person in front of the browser can do about it. */
  get advice(): string {
    return (
      ADVICE[this.code] ??
      (this.status >= 500
        ? 'Try again in a moment; if it persists, tell an administrator (quote the request id).'
        : '')
    );
  }
}

/** What the person can do, by the server's codes (core's ErrorCode: a code that does not exist is a type error). */
const ADVICE: Partial<Record<ApiErrorCode, string>> = {
  network: 'Check your network connection, then try again.',
  certificate_required:
    'Your browser sent no certificate. Import your certificate (a PKCS#12 file) into the browser and reload.',
  certificate_invalid:
    'Your certificate was refused: renew it, or use another one, then restart the browser.',
  unknown_certificate: 'Send the DN shown on the Account page to a Repoman administrator.',
  unknown_token_identity:
    'Send the issuer and subject shown on the Account page to a Repoman administrator, or sign in with your certificate as well and link them there.',
  sign_in_failed: 'Sign in again; if it fails again, tell an administrator what the message says.',
  token_expired: 'Sign in again.',
  user_suspended: 'Your account is suspended: ask a Repoman administrator.',
  forbidden: 'Ask the owner of the image, or an administrator, if you need this.',
  limited_proxy: 'A limited proxy may only read: use a full proxy or your certificate.',
  image_read_only: 'Clear “read-only” on the image’s Edit page first.',
  quota_exceeded: 'Delete images or old versions you no longer need, or ask an administrator for more quota.',
  insufficient_storage: 'The server is out of space: tell an administrator.',
  image_exists: 'Choose another name.',
  transfer_expired: 'Ask its owner to offer the image again.',
  transfer_not_found: 'The offer was answered, withdrawn or ended meanwhile: reload the page.',
  user_exists: 'Choose another user name.',
  group_exists: 'Choose another group name.',
  image_expired: 'Change or clear its expiry date on the Edit page to serve it again.',
  database_unavailable: 'The server’s database is unavailable: try again in a minute.',
  https_required: 'Open this page over HTTPS, with your certificate.',
  cloud_check_failed:
    'Check the Keystone URL, the region and the credential (not expired, with a role that may create images): nothing was kept.',
  cloud_exists: 'Choose another name, or forget the other cloud first.',
};

interface Result<T> {
  data?: T;
  error?: unknown;
  response: Response;
}

/** The answer's data, or an `ApiError`. */
export async function call<T>(request: Promise<Result<T>>): Promise<T> {
  let result: Result<T>;
  try {
    result = await request;
  } catch (error) {
    throw new ApiError(0, 'network', `The server could not be reached (${(error as Error).message}).`);
  }
  const { response } = result;
  if (response.ok) return result.data as T;
  const body = (result.error ?? {}) as {
    error?: { code?: ErrorCode; message?: string; details?: Record<string, unknown> };
  };
  const requestId = response.headers.get('x-request-id');
  throw new ApiError(
    response.status,
    body.error?.code ?? 'http_error',
    (body.error?.message ?? `The server answered ${response.status} ${response.statusText}`) +
      (requestId && response.status >= 500 ? ` (request ${requestId})` : ''),
    body.error?.details ?? {},
  );
}

/** A user-facing sentence for any failure. */
export function describe(error: unknown): { message: string; advice: string } {
  if (error instanceof ApiError) return { message: error.message, advice: error.advice };
  return { message: error instanceof Error ? error.message : String(error), advice: '' };
}
