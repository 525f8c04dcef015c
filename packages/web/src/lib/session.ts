/** Who the browser's certificate makes us: asked once at start, and again after changes to one's account. */
import { ApiError, api, call, plainHttp, type User } from '../api/client';

export type Session =
  | { kind: 'user'; user: User }
  /** A valid certificate that no Repoman user has: its DN, to send to an administrator. */
  | { kind: 'unknown'; dn: string; message: string }
  | { kind: 'no-certificate' }
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
    if (error.status === 401 || error.status === 403) return { kind: 'refused', error };
    throw error;
  }
}

export const isAdmin = (session: Session) =>
  session.kind === 'user' && (session.user.groups ?? []).includes('admins');

export const userName = (session: Session) => (session.kind === 'user' ? session.user.user_name : null);
