/** Certificates for the API tests: a CA, a host certificate, users, proxies of every kind, and bad credentials. */
import {
  type Credential,
  chainPem,
  createCA,
  createProxy,
  createServerCertificate,
  createUserCertificate,
  generateKey,
  issueCrl,
  keyPem,
  type ProxyType,
} from '../../src/pki/issue.ts';
import { formatRfc2253 } from '../../src/pki/names.ts';
import type { ClientCredential } from './http.ts';

export type ProxyKind = 'rfc' | 'rfc-of-rfc' | 'legacy' | 'draft' | 'limited';
export type BadKind =
  | 'expired'
  | 'not-yet-valid'
  | 'forged'
  | 'untrusted'
  | 'revoked'
  | 'non-proxy-signed-by-eec'
  | 'proxy-signed-by-ca'
  | 'truncated'
  | 'too-long'
  | 'ca-as-client'
  | 'server-only';

export interface TestPki {
  ca: { certPem: string };
  /** The CA's subject DN, as users' issuer_dn shows it. */
  caDn: string;
  host: { certPem: string; keyPem: string };
  /** The same host with an RSA key (the test host's key is ECDSA), made when first asked for. */
  hostRsa(): { certPem: string; keyPem: string };
  crlPem: string;
  dn(user: string): string;
  dnRfc2253(user: string): string;
  credential(user: string): ClientCredential;
  proxy(user: string, kind: ProxyKind): ClientCredential;
  bad(kind: BadKind): ClientCredential;
}

/** A credential as a TLS client presents it: its chain and its key, PEM. */
export const asClient = (credential: Credential): ClientCredential => ({
  cert: chainPem(credential),
  key: keyPem(credential),
});

export async function makeTestPki(): Promise<TestPki> {
  const ca = createCA('/C=CA/O=Grid/CN=Repoman Test CA');
  const host = createServerCertificate(ca, ['localhost', '127.0.0.1']);
  const users = new Map<string, Credential>();
  const userCredential = (name: string) => {
    let credential = users.get(name);
    if (!credential) {
      const display = name.charAt(0).toUpperCase() + name.slice(1);
      credential = createUserCertificate(ca, `/C=CA/O=Grid/OU=repoman.test/CN=${display} Example`);
      users.set(name, credential);
    }
    return credential;
  };
  const revoked = createUserCertificate(ca, '/C=CA/O=Grid/OU=repoman.test/CN=Rita Revoked');
  const crl = issueCrl({ issuer: ca, revoked: [{ serial: revoked.cert.serialNumber }] });
  const hour = 3_600_000;

  const proxies = new Map<string, ClientCredential>();
  return {
    ca: { certPem: chainPem(ca) },
    caDn: ca.cert.subject.oneline,
    host: { certPem: chainPem(host), keyPem: keyPem(host) },
    hostRsa() {
      const rsa = createServerCertificate(ca, ['localhost', '127.0.0.1'], { keyKind: 'rsa' });
      return { certPem: chainPem(rsa), keyPem: keyPem(rsa) };
    },
    crlPem: crl.pem,
    dn: (user) => userCredential(user).cert.subject.oneline,
    dnRfc2253: (user) => formatRfc2253(userCredential(user).cert.subject.rdns),
    credential: (user) => asClient(userCredential(user)),
    proxy(user, kind) {
      const key = `${user}/${kind}`;
      let result = proxies.get(key);
      if (!result) {
        const eec = userCredential(user);
        const types: Record<Exclude<ProxyKind, 'rfc-of-rfc'>, ProxyType> = {
          rfc: 'rfc3820',
          legacy: 'legacy',
          draft: 'draft',
          limited: 'limited',
        };
        const proxy =
          kind === 'rfc-of-rfc'
            ? createProxy(createProxy(eec, { type: 'rfc3820' }), { type: 'rfc3820' })
            : createProxy(eec, { type: types[kind] });
        result = asClient(proxy);
        proxies.set(key, result);
      }
      return result;
    },
    bad(kind) {
      const bob = userCredential('bob');
      const now = Date.now();
      switch (kind) {
        case 'expired':
          return asClient(
            createProxy(bob, { notBefore: new Date(now - 48 * hour), notAfter: new Date(now - 24 * hour) }),
          );
        case 'not-yet-valid':
          return asClient(
            createProxy(bob, { notBefore: new Date(now + 24 * hour), notAfter: new Date(now + 48 * hour) }),
          );
        case 'forged':
          return asClient(createProxy(bob, { signWith: generateKey().privateKey }));
        case 'untrusted': {
          const otherCa = createCA('/C=CA/O=Grid/CN=Repoman Test CA');
          return asClient(createUserCertificate(otherCa, bob.cert.subject.oneline));
        }
        case 'revoked':
          return asClient(revoked);
        case 'proxy-signed-by-ca':
          // a proxy's issuer must be an end-entity certificate or another proxy, never a CA
          return asClient(createProxy(ca, { type: 'rfc3820' }));
        case 'truncated':
          // a proxy presented without the certificate that signed it
          return asClient({ ...createProxy(bob, { type: 'rfc3820' }), chain: [] });
        case 'too-long': {
          // twelve proxies deep: more than trust.max_proxy_depth (10)
          let proxy = bob;
          for (let i = 0; i < 12; i++) proxy = createProxy(proxy, { type: 'rfc3820' });
          return asClient(proxy);
        }
        case 'ca-as-client':
          return asClient(ca);
        case 'server-only':
          return asClient(
            createUserCertificate(ca, '/C=CA/O=Grid/OU=repoman.test/CN=Sam Server', {
              issue: { extKeyUsage: ['serverAuth'] },
            }),
          );
        case 'non-proxy-signed-by-eec': {
          // bob's certificate signing an ordinary certificate that claims the admin's name
          const fake = createUserCertificate(bob, userCredential('admin').cert.subject.oneline);
          return asClient(fake);
        }
      }
    },
  };
}
