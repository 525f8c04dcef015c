/**
 * Signing in without a certificate: a button per issuer the server trusts for browsers (OpenID Connect), the
 * reason a sign-in failed, and, on the Account page, the identities linked to the account.
 */
import { useState } from 'preact/hooks';
import { api, call, type User } from '../api/client';
import { date } from '../lib/format';
import { ErrorBox, Notice, useAction, useAsync } from '../lib/ui';

/**
 * "Sign in with …" for each issuer, and why the last sign-in failed (the server's words, from the URL). Back
 * to `returnTo` once signed in (by default where the browser is, or the start page from the Account page).
 */
export function SignInButtons({ returnTo, label = 'Sign in with' }: { returnTo?: string; label?: string }) {
  const issuers = useAsync(async () => (await call(api.GET('/api/auth/issuers'))).items, []);
  const failed = new URLSearchParams(location.search).get('sign_in_error');
  const current = `${location.pathname}${location.search.replace(/[?&]sign_in_error=[^&]*/, '')}`;
  const here = returnTo ?? (current === '/account' ? '/' : current);
  return (
    <>
      {failed && <Notice>{failed}</Notice>}
      {(issuers.data ?? []).length > 0 && (
        <p class="actions" data-testid="sign-in">
          {(issuers.data ?? []).map((issuer) => (
            <a
              key={issuer.url}
              class="button"
              href={`${issuer.sign_in_url}&return_to=${encodeURIComponent(here)}`}
            >
              {label} {issuer.name}
            </a>
          ))}
        </p>
      )}
    </>
  );
}

/** The browser's session (if it signed in with an issuer) ends here. */
export function SignOut() {
  const action = useAction();
  return (
    <p>
      <button
        type="button"
        disabled={action.busy}
        onClick={() =>
          action.run(async () => {
            // Signed out here; the issuer's own session (single sign-on) is the person's to end there.
            await call(api.POST('/api/auth/sign-out'));
            location.assign('/account');
            return undefined;
          })
        }
      >
        Sign out
      </button>
      <ErrorBox error={action.error} />
    </p>
  );
}

/** The token identities linked to the account, and the one this browser signed in with, to link. */
export function Identities({ user, reload }: { user: User; reload: () => void }) {
  const [version, setVersion] = useState(0);
  const list = useAsync(
    async () =>
      (await call(api.GET('/api/users/{user}/identities', { params: { path: { user: user.user_name } } })))
        .items,
    [user.user_name, version],
  );
  const action = useAction();
  const offered = user.offered_identity;
  return (
    <>
      <h2>Linked identities</h2>
      <p class="muted">
        Tokens and browser sign-ins of these identities act as you, beside your certificate. To link one, sign
        in with its issuer here, in this browser, with your certificate: then link it below.
      </p>
      <ErrorBox error={list.error} />
      {list.data && list.data.length === 0 && <p>None.</p>}
      {list.data && list.data.length > 0 && (
        <table data-testid="identities">
          <thead>
            <tr>
              <th scope="col">Issuer</th>
              <th scope="col">Subject</th>
              <th scope="col">Last used</th>
              <th scope="col">
                <span class="visually-hidden">Unlink</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {list.data.map((identity) => (
              <tr key={identity.id}>
                <td>{identity.issuer}</td>
                <td>{identity.subject}</td>
                <td>{identity.last_used ? date(identity.last_used) : 'never'}</td>
                <td>
                  <button
                    type="button"
                    disabled={action.busy}
                    onClick={() =>
                      action.run(async () => {
                        await call(
                          api.DELETE('/api/users/{user}/identities/{id}', {
                            params: { path: { user: user.user_name, id: identity.id } },
                          }),
                        );
                        setVersion(version + 1);
                        return `Unlinked ${identity.subject}.`;
                      })
                    }
                  >
                    Unlink
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {!offered && (user.credential?.kind === 'certificate' || user.credential?.kind === 'proxy') && (
        <SignInButtons returnTo="/account" label="Link an identity: sign in with" />
      )}
      {offered && (
        <div class="card" data-testid="offered-identity">
          <p>
            This browser is also signed in as <strong>{offered.name ?? offered.subject}</strong> at{' '}
            {offered.issuer}, which is not linked to your account.
          </p>
          <button
            type="button"
            disabled={action.busy}
            onClick={() =>
              action.run(async () => {
                await call(api.POST('/api/whoami/identities'));
                setVersion(version + 1);
                reload();
                return 'Linked: signing in there now signs you in here too.';
              })
            }
          >
            Link it to {user.user_name}
          </button>
        </div>
      )}
      {action.notice && <Notice ok>{action.notice}</Notice>}
      <ErrorBox error={action.error} />
    </>
  );
}
