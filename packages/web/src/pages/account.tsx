/**
 * Who I am (DN, groups, permissions, quota and usage) and the images offered to me and by me, or what to do when
 * the certificate is not a user's.
 */
import { Fragment } from 'preact';
import { plainHttp } from '../api/client';
import { bytes, date } from '../lib/format';
import type { Session } from '../lib/session';
import { Copyable, ErrorBox } from '../lib/ui';
import { groupPath } from './group';
import { Identities, SignInButtons, SignOut } from './sign-in';
import { Offers } from './transfers';

export function AccountPage({ session, reload }: { session: Session; reload: () => void }) {
  if (session.kind === 'user') {
    const user = session.user;
    const quota = user.quota ?? null;
    const usage = user.usage ?? 0;
    return (
      <section>
        <h1>Account</h1>
        <dl class="details">
          <div>
            <dt>User name</dt>
            <dd>{user.user_name}</dd>
          </div>
          {user.client_dn && (
            <div>
              <dt>Certificate DN</dt>
              <dd>
                <Copyable text={user.client_dn} label="your DN" />
              </dd>
            </div>
          )}
          {user.credential?.kind === 'session' && (
            <div>
              <dt>Signed in with</dt>
              <dd>
                {user.credential.issuer} ({user.credential.subject})
              </dd>
            </div>
          )}
          {user.full_name && (
            <div>
              <dt>Full name</dt>
              <dd>{user.full_name}</dd>
            </div>
          )}
          {user.email && (
            <div>
              <dt>Email</dt>
              <dd>{user.email}</dd>
            </div>
          )}
          <div>
            <dt>Groups</dt>
            <dd>
              {(user.groups ?? []).length === 0
                ? 'none'
                : (user.groups ?? []).map((group, i) => (
                    <Fragment key={group}>
                      {i > 0 && ', '}
                      <a href={groupPath(group)}>{group}</a>
                    </Fragment>
                  ))}
            </dd>
          </div>
          <div>
            <dt>Permissions</dt>
            <dd>{(user.permissions ?? []).join(', ') || 'none'}</dd>
          </div>
          <div>
            <dt>Storage used</dt>
            <dd>
              {bytes(usage)}
              {quota !== null ? ` of ${bytes(quota)}` : ' (no quota)'}
              {quota !== null && quota > 0 && (
                <meter min={0} max={quota} value={usage} high={quota * 0.9} aria-label="Quota used" />
              )}
            </dd>
          </div>
          <div>
            <dt>Account created</dt>
            <dd>{date(user.created)}</dd>
          </div>
        </dl>
        {user.credential?.kind === 'session' && <SignOut />}
        <Identities user={user} reload={reload} />
        <Offers />
        <h2>From the command line</h2>
        <p>
          The <code>repoman</code> client uses the same certificate (or a grid proxy made from it):
        </p>
        <Copyable
          text={`repoman make-config -r ${location.hostname}${location.port ? ` -p ${location.port}` : ''}`}
          label="the configuration command"
        />
        <Copyable text="repoman whoami" label="the whoami command" />
      </section>
    );
  }
  return (
    <section>
      <h1>Account</h1>
      <SignInHint session={session} reload={reload} />
    </section>
  );
}

/** For anyone not signed in: why, and what to do. */
export function SignInHint({
  session,
  reload,
  httpsOrigin,
}: {
  session: Session;
  reload?: () => void;
  /** The server's HTTPS address, where it is known (from an image's URL). */
  httpsOrigin?: string | undefined;
}) {
  if (session.kind === 'unknown')
    return (
      <div class="card warn" data-testid="unknown-certificate">
        <h2>Your certificate is not a Repoman user’s yet</h2>
        <p>
          The certificate your browser presented is valid, but no Repoman account has it. Send its
          distinguished name (DN) to a Repoman administrator, who creates your account with it:
        </p>
        <Copyable text={session.dn} label="your certificate’s DN" />
        <p class="muted">
          Once the account exists,{' '}
          {reload ? (
            <button type="button" class="link" onClick={reload}>
              check again
            </button>
          ) : (
            'reload this page'
          )}
          . Meanwhile you can browse and download public images.
        </p>
      </div>
    );
  if (session.kind === 'public')
    return (
      <p class="notice">
        Over plain HTTP you see public images only.{' '}
        {httpsOrigin ? <a href={`${httpsOrigin}/`}>Sign in over HTTPS</a> : 'Sign in over HTTPS'} with your
        certificate for the rest.
      </p>
    );
  if (session.kind === 'refused')
    return <ErrorBox error={session.error} title="Your certificate was refused." />;
  if (session.kind === 'unlinked')
    return (
      <div class="card warn" data-testid="unlinked-identity">
        <h2>Your sign-in is not linked to a Repoman user yet</h2>
        <p>{session.message}</p>
        <p>Send these to a Repoman administrator, who links them to your account:</p>
        <Copyable text={`${session.issuer} ${session.subject}`} label="your issuer and subject" />
        <p class="muted">
          If you have a certificate too, sign in with both (choose it when the browser asks) and link this
          identity on this page yourself.
        </p>
        <SignOut />
      </div>
    );
  if (session.kind === 'no-certificate')
    return (
      <div class="card">
        <h2>Sign in</h2>
        <SignInButtons />
        <p>
          Your browser presented no certificate, so you see public images only. Sign in with an identity
          provider above, where there is one, or with your grid (X.509) certificate: import it into the
          browser as a PKCS#12 file, then restart the browser and choose it when asked.
        </p>
        {!plainHttp && (
          <Copyable
            text="openssl pkcs12 -export -in ~/.globus/usercert.pem -inkey ~/.globus/userkey.pem -out usercert.p12"
            label="the command that makes a PKCS#12 file"
          />
        )}
      </div>
    );
  return null;
}
