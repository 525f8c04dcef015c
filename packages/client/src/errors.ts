/** What goes wrong in the client, each with a kind for the exit status and a one-line message. */

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
  | 'aborted';

export class ClientError extends Error {
  readonly kind: ClientErrorKind;
  /** The server's stable error code, for `server` errors. */
  readonly code: string | undefined;
  readonly status: number | undefined;

  constructor(
    kind: ClientErrorKind,
    message: string,
    options: { code?: string; status?: number; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
    this.code = options.code;
    this.status = options.status;
  }
}

/** Exit statuses: 0 success, 1 a failure, 2 a usage error (as the original). */
export const exitStatusOf = (error: ClientError) => (error.kind === 'usage' ? 2 : 1);
