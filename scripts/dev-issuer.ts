/**
 * A development OpenID provider on this machine, to try tokens and browser sign-in with a local server:
 * `npm run dev-issuer [-- SUBJECT…]`. It is the tests' provider (oidc-provider, certified by the OpenID
 * Foundation): any login name and any password sign in; each SUBJECT (alice by default) is a client whose
 * client-credentials tokens carry that subject. It prints the configuration to add and how to get a token.
 * For trying things out only: it keeps nothing, and anyone on this machine can get any token from it.
 */
import { startIssuer } from '../packages/server/test/helpers/oidc.ts';

const port = Number(process.env.ISSUER_PORT ?? 9400);
const server = process.env.REPOMAN_URL ?? 'https://localhost:8443';
const subjects = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['alice'];
const issuer = await startIssuer({ clients: subjects, port }).catch((error: unknown) => {
  console.error(`Cannot listen on 127.0.0.1:${port} (${(error as Error).message}); set ISSUER_PORT`);
  process.exit(1);
});
issuer.setRedirectUris([
  `${server}/api/auth/callback`,
  `${server.replace('localhost', '127.0.0.1')}/api/auth/callback`,
]);
const subject = subjects[0] as string;
console.log(`A development OpenID provider is at ${issuer.url} (any login name, any password). Ctrl-C stops it.

1. Add to the server's configuration file (npm start -- --config repoman.toml), then restart it:

[[tokens.issuers]]
url = "${issuer.url}"
name = "Development issuer"
audiences = ["${server}"]
client_id = "${issuer.webClient.id}"
client_secret = "${issuer.webClient.secret}"

2. Link the subject ${subject} to a user (here the admin of the development CA, whose certificate is admin.pem):

curl --cert repoman-data/admin/admin.pem --cacert repoman-data/ca/ca.pem -H 'content-type: application/json' \\
  -d '{"issuer": "${issuer.url}", "subject": "${subject}"}' ${server}/api/users/admin/identities

3. Get a token for ${subject} and use it:

export BEARER_TOKEN=$(curl -s -u ${subject}:${subject}-secret -d grant_type=client_credentials \\
  -d resource=${server} -d 'scope=storage.read:/ storage.modify:/' ${issuer.url}/token | node -p 'JSON.parse(require("fs").readFileSync(0)).access_token')
curl --cacert repoman-data/ca/ca.pem -H "Authorization: Bearer $BEARER_TOKEN" ${server}/api/whoami
repoman whoami

4. In a browser without a certificate, open ${server}/account and choose "Sign in with Development issuer".
`);
