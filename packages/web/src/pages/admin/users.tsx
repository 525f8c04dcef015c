/** Admin, Users: create users from a certificate DN, change their CA binding, suspension and quota, delete them. */
import { useState } from 'preact/hooks';
import { api, call, type User } from '../../api/client';
import { bytes } from '../../lib/format';
import { navigate, withQuery } from '../../lib/router';
import { ErrorBox, Loading, Notice, Pager, useAction, useAsync, useConfirmFocus } from '../../lib/ui';
import { CreateForm, editing, GIB, gib, list, NameField, TextField, USERS_PER_PAGE } from './shared';

export function UsersTab({ me }: { me: string }) {
  const query = new URLSearchParams(location.search);
  const offset = Math.max(0, Number(query.get('offset')) || 0);
  const dn = query.get('dn') ?? '';
  const users = useAsync(
    () => call(api.GET('/api/users', { params: { query: { limit: USERS_PER_PAGE, offset } } })),
    [offset],
  );
  const [created, setCreated] = useState('');
  const [notice, setNotice] = useState('');
  const onCreated = (user: User) => {
    setCreated(`Created user ${user.user_name}.`);
    users.reload();
    // The DN came from a link: it is used now (and the form, keyed by it, starts afresh).
    if (dn) navigate(withQuery({ dn: undefined }), true);
  };
  return (
    <>
      <CreateUser key={dn} dn={dn} created={created} onCreated={onCreated} onEdit={() => setCreated('')} />
      <h2 id="users-heading">Users</h2>
      {notice && <Notice ok>{notice}</Notice>}
      <ErrorBox error={users.error} title="The users could not be listed." />
      {users.loading && !users.data && <Loading what="users" />}
      {users.data && (
        <>
          <p class="count" aria-live="polite">
            {users.data.total === 1 ? '1 user' : `${users.data.total} users`}
          </p>
          <div class="table-wrap">
            <table class="admin-users" aria-labelledby="users-heading">
              <thead>
                <tr>
                  <th scope="col">User name</th>
                  <th scope="col">Full name</th>
                  <th scope="col">Certificate DN</th>
                  <th scope="col">Groups</th>
                  <th scope="col">Suspended</th>
                  <th scope="col">Usage</th>
                  <th scope="col">Quota</th>
                  <th scope="col">Actions</th>
                </tr>
              </thead>
              <tbody>
                {users.data.items.map((user) => (
                  <UserRow
                    key={user.user_name}
                    user={user}
                    me={me}
                    onChanged={users.reload}
                    onDeleted={() => {
                      setNotice(`Deleted user ${user.user_name}, with their images.`);
                      users.reload();
                    }}
                  />
                ))}
              </tbody>
            </table>
          </div>
          <Pager
            total={users.data.total}
            limit={USERS_PER_PAGE}
            offset={offset}
            href={(o) => withQuery({ offset: o || undefined })}
          />
        </>
      )}
    </>
  );
}

function CreateUser(props: {
  dn: string;
  created: string;
  onCreated: (user: User) => void;
  onEdit: () => void;
}) {
  const [name, setName] = useState('');
  const [dn, setDn] = useState(props.dn);
  const [fullName, setFullName] = useState('');
  const [email, setEmail] = useState('');
  const [groups, setGroups] = useState('');
  const edit = editing(props.onEdit);
  const send = () =>
    call(
      api.POST('/api/users', {
        body: {
          user_name: name.trim(),
          client_dn: dn.trim(),
          ...(fullName.trim() ? { full_name: fullName.trim() } : {}),
          ...(email.trim() ? { email: email.trim() } : {}),
          ...(list(groups).length > 0 ? { groups: list(groups) } : {}),
        },
      }),
    );
  const onCreated = (user: User) => {
    setName('');
    setDn('');
    setFullName('');
    setEmail('');
    setGroups('');
    props.onCreated(user);
  };
  return (
    <CreateForm
      noun="user"
      send={send}
      onCreated={onCreated}
      created={props.created}
      intro={
        props.dn && (
          <p class="muted">
            The certificate DN below comes from the link you followed: check it before creating.
          </p>
        )
      }
    >
      <div class="two">
        <NameField label="User name" name="user_name" value={name} onInput={edit(setName)} />
        <TextField
          label="Certificate DN"
          name="client_dn"
          value={dn}
          onInput={edit(setDn)}
          hint="Slash form (/C=CA/O=Grid/CN=Alice Example) or RFC 4514 (CN=Alice Example,O=Grid,C=CA)."
          required
          placeholder="/C=CA/O=Grid/CN=Alice Example"
        />
        <TextField label="Full name" name="full_name" value={fullName} onInput={edit(setFullName)} />
        <TextField label="Email" name="email" type="email" value={email} onInput={edit(setEmail)} />
        <TextField
          label="Groups"
          name="groups"
          value={groups}
          onInput={edit(setGroups)}
          hint="Optional, separated by commas. Every user is also in “users”."
          placeholder="atlas, cms"
        />
      </div>
    </CreateForm>
  );
}

function UserRow(props: { user: User; me: string; onChanged: () => void; onDeleted: () => void }) {
  const { user, me } = props;
  const name = user.user_name;
  const self = name === me;
  const action = useAction();
  const [confirming, setConfirming] = useState(false);
  // Deleted: hidden at once, before the list is loaded again.
  const [gone, setGone] = useState(false);
  const { yes, ask } = useConfirmFocus(confirming);

  const patch = (
    body: { suspended?: boolean; quota?: number | null; issuer_dn?: string | null },
    done: string,
  ) =>
    action.run(async () => {
      await call(api.PATCH('/api/users/{user}', { params: { path: { user: name } }, body }));
      props.onChanged();
      return done;
    });
  const setQuota = (text: string) => {
    const value = text.trim() === '' ? null : Number(text);
    if (value !== null && (!Number.isFinite(value) || value < 0)) {
      action.setError(new Error('Enter a number of GiB (such as 50 or 0.5), or nothing for no quota.'));
      return;
    }
    const quota = value === null ? null : Math.round(value * GIB);
    patch(
      { quota },
      quota === null ? `${name} has no quota now.` : `${name}’s quota is now ${bytes(quota)}.`,
    );
  };
  const remove = async () => {
    const ok = await action.run(async () => {
      await call(api.DELETE('/api/users/{user}', { params: { path: { user: name } } }));
      return undefined;
    });
    if (ok) {
      setGone(true);
      props.onDeleted();
    }
  };

  if (gone) return null;
  return (
    <>
      <tr>
        <th scope="row">
          {name}
          {self && <span class="muted small"> (you)</span>}
        </th>
        <td>{user.full_name ?? '—'}</td>
        <td class="dn">
          {user.client_dn ?? '—'}
          {user.client_dn !== undefined && (
            <div class="small muted">
              from {user.issuer_dn ?? 'the CA of their next login'}
              {user.issuer_dn && !self && (
                <>
                  {' '}
                  <button
                    type="button"
                    class="small"
                    disabled={action.busy}
                    aria-label={`Unbind the CA of ${name}`}
                    title="For a CA that changed its name: the CA of the next login is bound"
                    onClick={() =>
                      patch({ issuer_dn: null }, `${name} is bound to the CA of their next login.`)
                    }
                  >
                    Unbind CA
                  </button>
                </>
              )}
            </div>
          )}
        </td>
        <td>{(user.groups ?? []).join(', ') || '—'}</td>
        <td>{user.suspended ? <span class="badge expired">suspended</span> : 'no'}</td>
        <td class="number">{bytes(user.usage)}</td>
        <td>
          <div class="small">
            {user.quota === null || user.quota === undefined ? 'none' : bytes(user.quota)}
          </div>
          <QuotaForm
            key={String(user.quota)}
            user={name}
            quota={user.quota}
            busy={action.busy}
            onSet={setQuota}
          />
        </td>
        <td class="user-actions">
          {self ? (
            <span class="muted small">Not on yourself</span>
          ) : (
            <>
              <button
                type="button"
                class="small"
                disabled={action.busy}
                aria-label={`${user.suspended ? 'Reactivate' : 'Suspend'} ${name}`}
                onClick={() =>
                  patch(
                    { suspended: !user.suspended },
                    user.suspended ? `${name} is active again.` : `${name} is suspended.`,
                  )
                }
              >
                {user.suspended ? 'Reactivate' : 'Suspend'}
              </button>{' '}
              <button
                type="button"
                class="small"
                disabled={action.busy}
                aria-label={`Delete ${name}`}
                aria-expanded={confirming}
                ref={ask}
                onClick={() => setConfirming(!confirming)}
              >
                Delete…
              </button>
            </>
          )}
        </td>
      </tr>
      {(confirming || action.error || action.notice) && (
        <tr class="detail">
          <td colSpan={8}>
            {confirming && (
              <div role="alertdialog" aria-labelledby={`confirm-delete-${name}`}>
                <p id={`confirm-delete-${name}`}>
                  Delete user <strong>{name}</strong>, with all their images, group memberships and shares,
                  for good?
                </p>
                <button ref={yes} type="button" class="danger" disabled={action.busy} onClick={remove}>
                  Yes, delete {name}
                </button>{' '}
                <button type="button" onClick={() => setConfirming(false)}>
                  Cancel
                </button>
              </div>
            )}
            <ErrorBox error={action.error} title={`${name} was not changed.`} />
            {action.notice && <Notice ok>{action.notice}</Notice>}
          </td>
        </tr>
      )}
    </>
  );
}

function QuotaForm(props: {
  user: string;
  quota: number | null | undefined;
  busy: boolean;
  onSet: (text: string) => void;
}) {
  const [value, setValue] = useState(gib(props.quota));
  return (
    <form
      class="inline quota"
      onSubmit={(event) => {
        event.preventDefault();
        props.onSet(value);
      }}
    >
      <label>
        <span>
          Quota in GiB<span class="visually-hidden"> for {props.user}</span>
        </span>
        <input
          type="number"
          min={0}
          step="any"
          inputMode="decimal"
          placeholder="none"
          value={value}
          onInput={(event) => setValue((event.currentTarget as HTMLInputElement).value)}
        />
      </label>
      <button type="submit" class="small" disabled={props.busy} aria-label={`Set quota for ${props.user}`}>
        Set
      </button>
    </form>
  );
}

/* ---------------------------------------------------------------- Groups */
