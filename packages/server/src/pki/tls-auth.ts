/**
 * Client-certificate authentication at the socket level for node:https, verified by pki/verify.ts because
 * OpenSSL in Node cannot accept proxy chains (no way to set X509_V_FLAG_ALLOW_PROXY_CERTS).
 *
 * Re-checked on Node v24.21.0 (OpenSSL 3.5.8), with `rejectUnauthorized: false`; all four Node 20 traps remain:
 * - getPeerX509Certificate() returns the chain as presented, but is destructive: a second call, or a later
 *   getPeerCertificate(true), sees only the leaf. So the chain is read exactly once, first, in 'secureConnection'.
 * - getPeerCertificate(true) drops the EEC of legacy (CN=proxy) and draft proxies (leaf only), and links a
 *   forged proxy to the real EEC by name; it is never used here.
 * - A resumed session (tickets on) shows only the leaf on the second connection: tickets are disabled.
 * - An untouched forged chain leaves a stale OpenSSL error: the server emits clientError ERR_SSL_INVALID_PADDING
 *   and the connection dies (curl's next request on it hung); reading the peer certificate in 'secureConnection'
 *   clears the error, so every request can get a proper 401.
 * - New on Node 24.21: when OpenSSL's own verification of the chain succeeds (an end-entity certificate whose
 *   CAs are all in the `ca` list, no proxy), both getPeerX509Certificate() and getPeerCertificate(true) return the
 *   leaf alone, without the intermediate CAs the client sent (curl and Node clients alike). Intermediate CAs must
 *   therefore be in the trusted directory, as IGTF distributions ship them (the namespace rules require their
 *   files there anyway); a chain OpenSSL refuses, every proxy chain included, arrives whole.
 * Node's own verdict (socket.authorized: false / UNSPECIFIED for every proxy) is ignored.
 */
import { constants } from 'node:crypto';
import type { Socket } from 'node:net';
import type { TLSSocket, Server as TlsServer } from 'node:tls';
import type { Verifier, VerifyResult } from './verify.ts';

const AUTH = Symbol('repoman.certificateAuth');
type AuthSocket = TLSSocket & { [AUTH]?: VerifyResult };

/** OpenSSL's default verify depth plus one: more is not a real chain. */
const MAX_CHAIN = 21;

export type ClientAuthTlsOptions = {
  requestCert: true;
  rejectUnauthorized: false;
  minVersion: 'TLSv1.2';
  ciphers: string;
  secureOptions: number;
  ca: string[];
};

/**
 * TLS 1.3's suites (all AEAD with forward secrecy), then for TLS 1.2 only ECDHE with AES-GCM or
 * ChaCha20-Poly1305, for ECDSA and RSA host keys: no static RSA key exchange, no CBC.
 */
export const CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/** https options to merge into the server's: ask for a certificate, never let OpenSSL refuse it, keep the chain. */
export function tlsServerOptionsForClientAuth(trustedCaPems: string[]): ClientAuthTlsOptions {
  return {
    requestCert: true,
    // required: OpenSSL in Node rejects every proxy; the chain is verified in 'secureConnection' instead
    rejectUnauthorized: false,
    minVersion: 'TLSv1.2',
    ciphers: CIPHERS,
    // resumed sessions lose the chain; renegotiation could swap the certificate after it was verified
    secureOptions: constants.SSL_OP_NO_TICKET | constants.SSL_OP_NO_RENEGOTIATION,
    // only fills the CertificateRequest's list of acceptable CAs
    ca: trustedCaPems,
  };
}

/** The presented chain, leaf first, read once (the API is destructive), bounded and de-duplicated. */
export function peerChainDer(socket: TLSSocket): Buffer[] {
  const ders: Buffer[] = [];
  const seen = new Set<string>();
  let cert = socket.getPeerX509Certificate();
  for (let i = 0; cert && i < MAX_CHAIN; i++, cert = cert.issuerCertificate) {
    if (seen.has(cert.fingerprint256)) continue;
    seen.add(cert.fingerprint256);
    ders.push(cert.raw);
  }
  return ders;
}

const noCertificate = (): VerifyResult => ({
  ok: false,
  code: 'no_certificate',
  reason: 'No client certificate was presented',
});

/**
 * Verifies each connection's client chain as soon as the handshake ends (before any request on it), and keeps
 * the verdict on the socket for certificateAuthOf(). `getVerifier` is asked per connection, so reloads apply.
 */
export function attachCertificateAuth(
  server: TlsServer,
  getVerifier: () => Verifier,
  /** A presented chain was refused (not called when no certificate was presented). */
  onRefused?: (socket: TLSSocket, result: VerifyResult) => void,
): void {
  server.prependListener('secureConnection', (socket: TLSSocket) => {
    let result: VerifyResult;
    try {
      const ders = peerChainDer(socket);
      result = ders.length ? getVerifier().verifyChain(ders) : noCertificate();
    } catch (err) {
      // fail closed: a verifier bug must not let the connection through
      result = {
        ok: false,
        code: 'invalid_certificate',
        reason: `The client certificate chain could not be checked: ${(err as Error).message}`,
      };
    }
    (socket as AuthSocket)[AUTH] = result;
    if (!result.ok && result.code !== 'no_certificate') onRefused?.(socket, result);
  });
}

/** The verdict for a connection; an authenticated chain that has since expired (keep-alive) fails as `expired`. */
export function certificateAuthOf(socket: TLSSocket | Socket, now: Date = new Date()): VerifyResult {
  const result = (socket as AuthSocket)[AUTH];
  if (!result) return noCertificate();
  if (result.ok && result.notAfter.getTime() < now.getTime()) {
    return {
      ok: false,
      code: 'expired',
      reason: `certificate has expired: the chain of ${result.dn} ended at ${result.notAfter.toISOString()}, during this connection`,
    };
  }
  return result;
}
