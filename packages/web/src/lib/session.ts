/** Who the browser's certificate (or its session at an issuer) makes us: asked once at start, and again after changes to one's account. */
import { ApiError, api, call, plainHttp, type User } from '../api/client';

export type Session =
  | { kind: 'user'; user: User }
  /** A valid certificate that no Repoman user has: its DN, to send to an administrator. */
  | { kind: 'unknown'; dn: string; message: string }
  | { kind: 'no-certificate' }
  /** Signed in at an issuer whose identity no Repoman user has linked: who, to link or send an admin. */
  | { kind: 'unlinked'; issuer: string; subject: string; message: string }
  /** Refused (invalid, suspended): the server's words. */
  | { kind: 'refused'; error: ApiError }
  /** The plain-HTTP port: public images only. */
  | { kind: 'public' };

export async function loadSession(): Promise<Session> {
  if (plainHttp) return { kind: 'public' };
  try {
    return { kind: 'user', user: await call(api.GET('/api/whoami')) };
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    if (error.code === 'unknown_certificate')
      return { kind: 'unknown', dn: String(error.details.dn ?? ''), message: error.message };
    if (error.code === 'certificate_required') return { kind: 'no-certificate' };
    if (error.code === 'unknown_token_identity')
      return {
        kind: 'unlinked',
        issuer: String(error.details.issuer ?? ''),
        subject: String(error.details.subject ?? ''),
        message: error.message,
      };
    if (error.status === 401 || error.status === 403) return { kind: 'refused', error };
    throw error;
  }
}

export const isAdmin = (session: Session) =>
  session.kind === 'user' && (session.user.groups ?? []).includes('admins');

export const userName = (session: Session) => (session.kind === 'user' ? session.user.user_name : null);
