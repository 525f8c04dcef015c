/** What goes wrong in the client, each with a kind for the exit status and a one-line message. */
import type { ErrorCode } from '@repoman/core';

export type ClientErrorKind =
  /** the command line is wrong (exit 2) */
  | 'usage'
  /** configuration files or CA directory */
  | 'config'
  /** no usable certificate or proxy */
  | 'credentials'
  /** the server could not be reached, or its certificate is not trusted */
  | 'connection'
  /** the server refused the request (its error code is in `code`) */
  | 'server'
  /** a transfer went wrong (digest mismatch, short file) */
  | 'transfer'
  /** the user said no */
  | 'aborted'
  /** something this machine could not do that none of the above foresaw (a file, a tool, a bug) */
  | 'local';

export class ClientError extends Error {
  readonly kind: ClientErrorKind;
  /** The server's stable error code, for `server` errors. */
  readonly code: ErrorCode | undefined;
  readonly status: number | undefined;
  /** The server's `details`, for `server` errors that have them. */
  readonly details: unknown;

  constructor(
    kind: ClientErrorKind,
    message: string,
    options: { code?: ErrorCode; status?: number; details?: unknown; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
    this.code = options.code;
    this.status = options.status;
    this.details = options.details;
  }
}

/** Any failure as a ClientError: one the client did not foresee is a local one, never the server's. */
export function asClientError(error: unknown): ClientError {
  if (error instanceof ClientError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new ClientError('local', message, { cause: error });
}

/** The codes of failures that are the client's own (the server's carry the server's code). */
const LOCAL_CODES: Record<Exclude<ClientErrorKind, 'server'>, string> = {
  usage: 'usage_error',
  config: 'configuration_error',
  credentials: 'credentials_error',
  connection: 'connection_failed',
  transfer: 'transfer_failed',
  aborted: 'aborted',
  local: 'local_error',
};

/**
 * What `--json` prints on stdout for a failure, shaped as the server's errors are:
 * `{"error": {"code", "message", "details"?, "status"?}}`. `status` is the HTTP status of a server's refusal;
 * a failure without one happened before or beside the server. A local error's `details` hold its errno code.
 */
export function errorDocument(error: ClientError): {
  error: { code: string; message: string; details?: unknown; status?: number };
} {
  const errno = (error.cause as NodeJS.ErrnoException | undefined)?.code;
  const details =
    error.details ?? (error.kind === 'local' && typeof errno === 'string' ? { errno } : undefined);
  return {
    error: {
      code: error.code ?? (error.kind === 'server' ? 'server_error' : LOCAL_CODES[error.kind]),
      message: error.message,
      ...(details === undefined ? {} : { details }),
      ...(error.status === undefined ? {} : { status: error.status }),
    },
  };
}

/** Exit statuses: 0 success, 1 a failure, 2 a usage error (as the original). */
export const exitStatusOf = (error: ClientError) => (error.kind === 'usage' ? 2 : 1);
