/**
 * A real OpenID provider for the tests: `oidc-provider` (certified by the OpenID Foundation) on loopback,
 * serving discovery, JWKS, the authorization code flow (its development login pages: any login name, any
 * password) and client-credentials tokens as JWTs (resource indicators, `accessTokenFormat: 'jwt'`), with
 * WLCG's claims (`wlcg.ver`, `wlcg.groups`) added per client.
 *
 * A client-credentials token's `sub` is its client's id (RFC 9068), so each client stands for one person or
 * service: `token('alice')` is Alice's token.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT } from 'jose';
import Provider from 'oidc-provider';

export const TEST_AUDIENCE = 'https://repoman.test';

export interface TestIssuer {
  url: string;
  /** The browser client's id and secret (authorization code flow). */
  webClient: { id: string; secret: string };
  /** A JWT access token for `client` (its `sub`), with these scopes and audience. */
  token(client: string, options?: { scope?: string; audience?: string }): Promise<string>;
  /** A token signed with the issuer's current key, claims exactly as given (forged, for hostile tests). */
  sign(claims: Record<string, unknown>, header?: { alg?: string; kid?: string }): Promise<string>;
  /** The issuer's key pair now, and its kid. */
  key(): { privateKey: KeyObject; publicKey: KeyObject; kid: string };
  /** A new signing key (a new kid) replaces the old one. */
  rotateKeys(): void;
  /** Where the browser client may be sent back to (the server's /api/auth/callback). */
  setRedirectUris(uris: string[]): void;
  close(): Promise<void>;
}

export interface IssuerOptions {
  /** Client ids that get client-credentials tokens (secret: `${id}-secret`). */
  clients: string[];
  /** `wlcg.groups` of each client's tokens. */
  groups?: Record<string, string[]>;
  /** Where it listens on 127.0.0.1 (any free port unless given). */
  port?: number;
}

let keyCount = 0;
function newKey() {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { privateKey, publicKey, kid: `key-${process.pid}-${++keyCount}` };
}

export async function startIssuer(options: IssuerOptions): Promise<TestIssuer> {
  const http = createServer();
  await new Promise<void>((done, fail) => {
    http.once('error', fail);
    http.listen(options.port ?? 0, '127.0.0.1', done);
  });
  const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  const webClient = { id: 'repoman-web', secret: 'repoman-web-secret' };
  let key = newKey();
  let redirectUris = ['https://127.0.0.1/api/auth/callback'];
  let handler: (req: IncomingMessage, res: ServerResponse) => void = () => {};

  // oidc-provider's configuration is fixed at construction: a change (keys, redirect URIs) makes a new one.
  const build = () => {
    const provider = new Provider(url, {
      clients: [
        ...options.clients.map((id) => ({
          client_id: id,
          client_secret: `${id}-secret`,
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
        })),
        {
          client_id: webClient.id,
          client_secret: webClient.secret,
          grant_types: ['authorization_code'],
          response_types: ['code'],
          redirect_uris: redirectUris,
        },
      ],
      jwks: {
        keys: [{ ...key.privateKey.export({ format: 'jwk' }), kid: key.kid, use: 'sig', alg: 'RS256' }],
      },
      claims: { openid: ['sub'], profile: ['preferred_username', 'name'], email: ['email'] },
      conformIdTokenClaims: false,
      findAccount: async (_ctx: unknown, id: string) => ({
        accountId: id,
        claims: async () => ({
          sub: id,
          preferred_username: id,
          name: `${id} (test)`,
          email: `${id}@example.org`,
        }),
      }),
      features: {
        devInteractions: { enabled: true },
        clientCredentials: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: async (_ctx: unknown, _client: unknown, oneOf?: string) => oneOf,
          useGrantedResource: async () => true,
          // Any scope asked for is granted: the tests choose what each token says.
          getResourceServerInfo: async (ctx: { oidc: { params: { scope?: string } } }, resource: string) => ({
            scope: ctx.oidc.params.scope ?? '',
            accessTokenFormat: 'jwt',
            audience: resource,
            jwt: { sign: { alg: 'RS256' } },
          }),
        },
      },
      extraTokenClaims: async (_ctx: unknown, token: { clientId?: string }) => ({
        'wlcg.ver': '1.0',
        ...(token.clientId && options.groups?.[token.clientId]
          ? { 'wlcg.groups': options.groups[token.clientId] }
          : {}),
      }),
      pkce: { required: () => true },
      ttl: {
        ClientCredentials: 600,
        AccessToken: 600,
        IdToken: 600,
        AuthorizationCode: 60,
        Interaction: 600,
        Session: 600,
        Grant: 600,
      },
    });
    // A sign-in's redirects are plain HTTP on loopback: its cookies must not claim to be Secure.
    provider.proxy = false;
    handler = provider.callback();
  };
  build();
  http.on('request', (req, res) => handler(req, res));

  return {
    url,
    webClient,
    async token(client, tokenOptions = {}) {
      const body = new URLSearchParams({
        grant_type: 'client_credentials',
        resource: tokenOptions.audience ?? TEST_AUDIENCE,
        ...(tokenOptions.scope ? { scope: tokenOptions.scope } : {}),
      });
      const response = await fetch(`${url}/token`, {
        method: 'POST',
        body,
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from(`${client}:${client}-secret`).toString('base64')}`,
        },
      });
      const json = (await response.json()) as { access_token?: string; error_description?: string };
      if (!json.access_token) throw new Error(`the issuer gave no token: ${json.error_description}`);
      return json.access_token;
    },
    async sign(claims, header = {}) {
      return new SignJWT(claims)
        .setProtectedHeader({ alg: header.alg ?? 'RS256', kid: header.kid ?? key.kid })
        .sign(key.privateKey);
    },
    key: () => key,
    rotateKeys() {
      key = newKey();
      build();
    },
    setRedirectUris(uris) {
      redirectUris = uris;
      build();
    },
    async close() {
      http.closeAllConnections();
      await new Promise((done) => http.close(done));
    },
  };
}

/** The `[[tokens.issuers]]` table of a configuration trusting `issuer` (TOML). */
export function issuerToml(issuer: TestIssuer, settings: Record<string, unknown> = {}): string {
  const all: Record<string, unknown> = { url: issuer.url, audiences: [TEST_AUDIENCE], ...settings };
  const lines = ['[[tokens.issuers]]'];
  const tables: string[] = [];
  for (const [name, value] of Object.entries(all)) {
    if (value && typeof value === 'object' && !Array.isArray(value)) {
      tables.push(`[tokens.issuers.${name}]`);
      for (const [k, v] of Object.entries(value)) tables.push(`${JSON.stringify(k)} = ${JSON.stringify(v)}`);
    } else lines.push(`${name} = ${JSON.stringify(value)}`);
  }
  return `${[...lines, ...tables].join('\n')}\n`;
}
