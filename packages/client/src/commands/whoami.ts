/** `repoman whoami`: the user your certificate, proxy or token identifies, and which credential was used. */
import type { User } from '@repoman/core';
import type { CommandSpec } from '../cli.ts';
import { details } from '../output.ts';
import { show } from './kit.ts';

/** `image` in the caller's namespace, or `owner/image` with --owner (or written as owner/image). */
/** How a request was authenticated, in words: `a bearer token from $BEARER_TOKEN (https://iam…)`. */
function credentialWords(credential: {
  kind?: string;
  source?: string;
  issuer?: string;
  scopes?: string | null;
}): string {
  const what =
    credential.kind === 'token'
      ? `a bearer token from ${credential.source} (${credential.issuer}${credential.scopes ? `, scopes ${credential.scopes}` : ''})`
      : credential.kind === 'proxy'
        ? `the proxy ${credential.source}`
        : credential.kind === 'capability'
          ? `a capability from ${credential.source}`
          : `the certificate ${credential.source}`;
  return what;
}

export const whoami: CommandSpec = {
  name: 'whoami',
  summary: 'the user your certificate, proxy or token identifies, and which credential was used',
  server: true,
  options: { long: { type: 'boolean', short: 'l', help: 'everything about you, not just your name' } },
  async run(context) {
    const api = await context.api();
    const me = await api.get<User>('/api/whoami');
    // Which credential this client presented, and what the server took it as.
    const credential = { ...me.credential, source: api.connection.credential.source };
    const shown = { ...me, credential };
    if (!context.options.long) context.note(`(with ${credentialWords(credential)})`);
    show(context, shown, () => (context.options.long ? details(shown) : me.user_name));
  },
};
