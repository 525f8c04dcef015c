/**
 * The trusted CAs and CRLs, loaded from directories in the `/etc/grid-security/certificates` layout and
 * re-read periodically (fetch-crl refreshes CRLs in place), so new CRLs apply without a restart.
 */
import type { ServerConfig } from './config.ts';
import { derToPem, parseCertificate } from './pki/certificate.ts';
import { loadCrlDirectory, loadTrustDirectory } from './pki/trust-store.ts';
import { createVerifier, type Verifier } from './pki/verify.ts';

export interface TrustStore {
  verifier(): Verifier;
  caPems(): string[];
  warnings(): string[];
  reload(): Promise<void>;
  onReload(listener: () => void): void;
  stop(): void;
}

export async function loadTrust(
  config: ServerConfig,
  caDir: string,
  onReloadError: (error: Error) => void = () => {},
): Promise<TrustStore> {
  const crlDir = config.trust.crlDir ?? caDir;
  let verifier: Verifier;
  let pems: string[] = [];
  let warnings: string[] = [];
  const listeners: (() => void)[] = [];

  async function reload() {
    const cas = await loadTrustDirectory(caDir);
    const crls = await loadCrlDirectory(crlDir);
    if (cas.certificates.length === 0) throw new Error(`No CA certificates found in ${caDir}`);
    verifier = createVerifier({
      trustedCAs: cas.certificates,
      crls: crls.crls,
      crlMode: config.trust.crlMode,
      allowLegacyProxies: config.trust.allowLegacyProxies,
      allowLimitedProxies: config.trust.allowLimitedProxies,
      maxProxyDepth: config.trust.maxProxyDepth,
      namespaces: { mode: config.trust.namespaces, byCa: cas.namespaces },
    });
    pems = cas.certificates.map((der) => derToPem(der));
    const unbound =
      config.trust.namespaces === 'require'
        ? cas.certificates
            .map((der) => parseCertificate(der).subject)
            .filter((subject) => !cas.namespaces.has(subject.key))
            .map(
              (subject) =>
                `${subject.oneline} has no .namespaces or .signing_policy file: it vouches for nobody (trust.namespaces = "require")`,
            )
        : [];
    warnings = [...cas.warnings, ...unbound, ...crls.warnings];
    for (const listener of listeners) listener();
  }

  await reload();
  const timer =
    config.trust.reloadSeconds > 0
      ? setInterval(() => {
          // A failed reload keeps the previous trust store rather than locking everyone out.
          reload().catch(onReloadError);
        }, config.trust.reloadSeconds * 1000)
      : null;
  timer?.unref();

  return {
    verifier: () => verifier,
    caPems: () => pems,
    warnings: () => warnings,
    reload,
    onReload: (listener) => listeners.push(listener),
    stop: () => {
      if (timer) clearInterval(timer);
    },
  };
}
