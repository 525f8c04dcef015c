/**
 * Admin: users (created from a certificate DN; the CA they are bound to, suspension, quota, deletion), groups
 * (members, permissions) and the audit log.
 */

import { PERMISSIONS } from '@repoman/core';
import { useState } from 'preact/hooks';
import { api, call, type Group, type User } from '../api/client';
import { bytes, date } from '../lib/format';
import { navigate, withQuery } from '../lib/router';
import { isAdmin, type Session, userName } from '../lib/session';
import { ErrorBox, Loading, Notice, Pager, useAction, useAsync, useConfirmFocus } from '../lib/ui';
import { groupPath } from './group';

const TABS = [
  ['users', '/admin', 'Users'],
  ['groups', '/admin/groups', 'Groups'],
  ['audit', '/admin/audit', 'Audit log'],
] as const;

/** User and group names (docs/api.md, "Names and DNs"); `\-` so that it is valid with the `v` flag too. */
const NAME_PATTERN = '[a-z0-9_\\-]{1,64}';
const NAME_HINT = 'Lower-case letters, digits, dash and underscore; at most 64.';
const GIB = 1024 ** 3;
const USERS_PER_PAGE = 100;
const AUDIT_PER_PAGE = 50;
const ADMINS = 'admins';

const list = (text: string) =>
  text
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);

const gib = (quota: number | null | undefined) =>
  quota === null || quota === undefined ? '' : String(Number((quota / GIB).toFixed(3)));

export function AdminPage({ session, tab }: { session: Session; tab: string }) {
  if (!isAdmin(session))
    return (
      <section>
        <h1>Admin</h1>
        <ErrorBox
          title="Only Repoman administrators may use these pages."
          error={
            new Error(
              session.kind === 'user'
                ? 'Your account is not in the admins group, so it cannot manage users, groups or the audit log.'
                : 'Sign in with the certificate of an administrator (a member of the admins group) to manage users, groups and the audit log.',
            )
          }
        />
      </section>
    );
  const me = userName(session) ?? '';
  return (
    <section>
      <h1>Admin</h1>
      <nav class="tabs" aria-label="Admin sections">
        {TABS.map(([key, href, label]) => (
          <a key={key} href={href} aria-current={tab === key ? 'page' : undefined}>
            {label}
          </a>
        ))}
      </nav>
      {tab === 'users' ? (
        <UsersTab me={me} />
      ) : tab === 'groups' ? (
        <GroupsTab me={me} />
      ) : tab === 'audit' ? (
        <AuditTab />
      ) : (
        <ErrorBox
          title="No such admin section."
          error={new Error('Choose Users, Groups or Audit log above.')}
        />
      )}
    </section>
  );
}

/* ---------------------------------------------------------------- Users */

function UsersTab({ me }: { me: string }) {
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
  const action = useAction();
  const edit = (set: (value: string) => void) => (event: Event) => {
    set((event.currentTarget as HTMLInputElement).value);
    props.onEdit();
  };
  const submit = async (event: Event) => {
    event.preventDefault();
    let user: User | undefined;
    const ok = await action.run(async () => {
      user = await call(
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
      return undefined;
    });
    if (ok && user) {
      setName('');
      setDn('');
      setFullName('');
      setEmail('');
      setGroups('');
      props.onCreated(user);
    }
  };
  return (
    <form class="card" onSubmit={submit} aria-labelledby="create-user-heading">
      <h2 id="create-user-heading">Create a user</h2>
      {props.dn && (
        <p class="muted">
          The certificate DN below comes from the link you followed: check it before creating.
        </p>
      )}
      <div class="two">
        <div class="field">
          <label>
            User name
            <input
              name="user_name"
              aria-describedby="user-name-hint"
              value={name}
              onInput={edit(setName)}
              required
              pattern={NAME_PATTERN}
              maxLength={64}
              autocomplete="off"
              spellcheck={false}
            />
          </label>
          <span class="hint" id="user-name-hint">
            {NAME_HINT}
          </span>
        </div>
        <div class="field">
          <label>
            Certificate DN
            <input
              name="client_dn"
              aria-describedby="client-dn-hint"
              value={dn}
              onInput={edit(setDn)}
              required
              placeholder="/C=CA/O=Grid/CN=Alice Example"
              autocomplete="off"
              spellcheck={false}
            />
          </label>
          <span class="hint" id="client-dn-hint">
            Slash form (/C=CA/O=Grid/CN=Alice Example) or RFC 4514 (CN=Alice Example,O=Grid,C=CA).
          </span>
        </div>
        <label>
          Full name
          <input name="full_name" value={fullName} onInput={edit(setFullName)} autocomplete="off" />
        </label>
        <label>
          Email
          <input name="email" type="email" value={email} onInput={edit(setEmail)} autocomplete="off" />
        </label>
        <div class="field">
          <label>
            Groups
            <input
              name="groups"
              aria-describedby="groups-hint"
              value={groups}
              onInput={edit(setGroups)}
              placeholder="atlas, cms"
              autocomplete="off"
              spellcheck={false}
            />
          </label>
          <span class="hint" id="groups-hint">
            Optional, separated by commas. Every user is also in “users”.
          </span>
        </div>
      </div>
      <ErrorBox error={action.error} title="The user was not created." />
      {props.created && <Notice ok>{props.created}</Notice>}
      <button type="submit" class="primary" disabled={action.busy}>
        {action.busy ? 'Creating…' : 'Create user'}
      </button>
    </form>
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

function GroupsTab({ me }: { me: string }) {
  const groups = useAsync(() => call(api.GET('/api/groups', { params: { query: { limit: 1000 } } })), []);
  const users = useAsync(() => call(api.GET('/api/users', { params: { query: { limit: 1000 } } })), []);
  // Answers of member and permission changes: newer than the list until it is loaded again.
  const [updated, setUpdated] = useState<Record<string, Group>>({});
  const [notice, setNotice] = useState('');
  const [created, setCreated] = useState('');
  const userNames = (users.data?.items ?? []).map((user) => user.user_name);
  const gone = (message: string) => {
    setNotice(message);
    groups.reload();
  };
  return (
    <>
      <CreateGroup
        userNames={userNames}
        created={created}
        onEdit={() => setCreated('')}
        onCreated={(group) => {
          setCreated(`Created group ${group.name}.`);
          groups.reload();
        }}
      />
      <h2 id="groups-heading">Groups</h2>
      {notice && <Notice ok>{notice}</Notice>}
      <ErrorBox error={groups.error} title="The groups could not be listed." />
      {groups.loading && !groups.data && <Loading what="groups" />}
      {groups.data && (
        <>
          <p class="count" aria-live="polite">
            {groups.data.total === 1 ? '1 group' : `${groups.data.total} groups`}
          </p>
          {groups.data.items.map((listed) => {
            const newer = updated[listed.name];
            const group = newer && newer.modified >= listed.modified ? newer : listed;
            return (
              <GroupCard
                key={group.name}
                group={group}
                me={me}
                userNames={userNames}
                onUpdated={(changed) => setUpdated((all) => ({ ...all, [changed.name]: changed }))}
                onRenamed={(to) => gone(`Renamed group ${group.name} to ${to}.`)}
                onDeleted={() => gone(`Deleted group ${group.name}.`)}
              />
            );
          })}
        </>
      )}
    </>
  );
}

function CreateGroup(props: {
  userNames: string[];
  created: string;
  onEdit: () => void;
  onCreated: (group: Group) => void;
}) {
  const [name, setName] = useState('');
  const [members, setMembers] = useState('');
  const [granted, setGranted] = useState<string[]>([]);
  const action = useAction();
  const submit = async (event: Event) => {
    event.preventDefault();
    let group: Group | undefined;
    const ok = await action.run(async () => {
      group = await call(
        api.POST('/api/groups', {
          body: {
            name: name.trim(),
            ...(list(members).length > 0 ? { users: list(members) } : {}),
            ...(granted.length > 0 ? { permissions: granted } : {}),
          },
        }),
      );
      return undefined;
    });
    if (ok && group) {
      setName('');
      setMembers('');
      setGranted([]);
      props.onCreated(group);
    }
  };
  return (
    <form class="card" onSubmit={submit} aria-labelledby="create-group-heading">
      <h2 id="create-group-heading">Create a group</h2>
      <div class="two">
        <div class="field">
          <label>
            Group name
            <input
              name="name"
              aria-describedby="group-name-hint"
              value={name}
              onInput={(event) => {
                setName((event.currentTarget as HTMLInputElement).value);
                props.onEdit();
              }}
              required
              pattern={NAME_PATTERN}
              maxLength={64}
              autocomplete="off"
              spellcheck={false}
            />
          </label>
          <span class="hint" id="group-name-hint">
            {NAME_HINT}
          </span>
        </div>
        <div class="field">
          <label>
            Members
            <input
              name="users"
              aria-describedby="members-hint"
              value={members}
              onInput={(event) => {
                setMembers((event.currentTarget as HTMLInputElement).value);
                props.onEdit();
              }}
              placeholder="bob, pam"
              autocomplete="off"
              spellcheck={false}
            />
          </label>
          <span class="hint" id="members-hint">
            Optional: user names separated by commas.
          </span>
        </div>
      </div>
      <fieldset class="permissions">
        <legend>Permissions</legend>
        {PERMISSIONS.map((permission) => (
          <label key={permission} class="check">
            <input
              type="checkbox"
              name="permissions"
              value={permission}
              checked={granted.includes(permission)}
              onChange={(event) => {
                const on = (event.currentTarget as HTMLInputElement).checked;
                setGranted((all) =>
                  on ? [...all, permission] : all.filter((other) => other !== permission),
                );
                props.onEdit();
              }}
            />
            {permission}
          </label>
        ))}
      </fieldset>
      <ErrorBox error={action.error} title="The group was not created." />
      {props.created && <Notice ok>{props.created}</Notice>}
      <button type="submit" class="primary" disabled={action.busy}>
        {action.busy ? 'Creating…' : 'Create group'}
      </button>
    </form>
  );
}

function GroupCard(props: {
  group: Group;
  me: string;
  userNames: string[];
  onUpdated: (group: Group) => void;
  onRenamed: (to: string) => void;
  onDeleted: () => void;
}) {
  const { group, me } = props;
  const name = group.name;
  const id = `group-${name}`;
  const action = useAction();
  const [member, setMember] = useState('');
  const [newName, setNewName] = useState('');
  const [confirming, setConfirming] = useState(false);
  // Permissions being granted or revoked right now: shown as asked until the server answers.
  const [pending, setPending] = useState<Record<string, boolean>>({});
  // Renamed or deleted: hidden at once, before the list is loaded again.
  const [gone, setGone] = useState(false);
  const { yes, ask } = useConfirmFocus(confirming);
  const fixedPermissions = name === ADMINS;

  const membership = (user: string, add: boolean) =>
    action.run(async () => {
      const params = { params: { path: { group: name, user } } };
      const changed = await call(
        add
          ? api.POST('/api/groups/{group}/users/{user}', params)
          : api.DELETE('/api/groups/{group}/users/{user}', params),
      );
      props.onUpdated(changed);
      return add ? `Added ${user} to ${name}.` : `Removed ${user} from ${name}.`;
    });
  const addMember = async (event: Event) => {
    event.preventDefault();
    const user = member.trim();
    if (user && (await membership(user, true))) setMember('');
  };
  const permission = async (which: string, grant: boolean) => {
    setPending((all) => ({ ...all, [which]: grant }));
    await action.run(async () => {
      const params = { params: { path: { group: name, permission: which } } };
      const changed = await call(
        grant
          ? api.POST('/api/groups/{group}/permissions/{permission}', params)
          : api.DELETE('/api/groups/{group}/permissions/{permission}', params),
      );
      props.onUpdated(changed);
      return grant ? `Granted ${which} to ${name}.` : `Revoked ${which} from ${name}.`;
    });
    setPending(({ [which]: _, ...rest }) => rest);
  };
  const rename = async (event: Event) => {
    event.preventDefault();
    const to = newName.trim();
    if (!to || to === name) return;
    const ok = await action.run(async () => {
      await call(api.PATCH('/api/groups/{group}', { params: { path: { group: name } }, body: { name: to } }));
      return undefined;
    });
    if (ok) {
      setGone(true);
      props.onRenamed(to);
    }
  };
  const remove = async () => {
    const ok = await action.run(async () => {
      await call(api.DELETE('/api/groups/{group}', { params: { path: { group: name } } }));
      return undefined;
    });
    if (ok) {
      setGone(true);
      props.onDeleted();
    }
  };
  const candidates = props.userNames.filter((user) => !group.users.includes(user));

  if (gone) return null;
  return (
    <section class="card group" aria-labelledby={id}>
      <div class="title-row">
        <h3 id={id}>
          <a href={groupPath(name)}>{name}</a>
        </h3>
        {group.protected && <span class="badge">protected</span>}
      </div>
      <div class="two">
        <div>
          <h4>Members</h4>
          {group.users.length === 0 ? (
            <p class="muted">No members.</p>
          ) : (
            <ul class="chips" aria-label={`Members of ${name}`}>
              {group.users.map((user) => (
                <li key={user}>
                  {user}
                  {!(name === ADMINS && user === me) && (
                    <button
                      type="button"
                      class="small"
                      disabled={action.busy}
                      aria-label={`Remove ${user} from ${name}`}
                      onClick={() => membership(user, false)}
                    >
                      ×
                    </button>
                  )}
                </li>
              ))}
            </ul>
          )}
          <form class="inline" onSubmit={addMember}>
            <label>
              <span>
                Add a member<span class="visually-hidden"> to {name}</span>
              </span>
              <input
                value={member}
                onInput={(event) => setMember((event.currentTarget as HTMLInputElement).value)}
                list={`${id}-candidates`}
                required
                autocomplete="off"
                spellcheck={false}
              />
            </label>
            <datalist id={`${id}-candidates`}>
              {candidates.map((user) => (
                <option key={user} value={user} />
              ))}
            </datalist>
            <button type="submit" disabled={action.busy} aria-label={`Add to ${name}`}>
              Add
            </button>
          </form>
        </div>
        <fieldset class="permissions" disabled={fixedPermissions}>
          <legend>Permissions</legend>
          {fixedPermissions && <p class="hint">Admins have every permission; that cannot change.</p>}
          {PERMISSIONS.map((which) => {
            const checked = pending[which] ?? group.permissions.includes(which);
            return (
              <label key={which} class="check">
                <input
                  type="checkbox"
                  checked={fixedPermissions || checked}
                  disabled={fixedPermissions || which in pending}
                  onChange={(event) => permission(which, (event.currentTarget as HTMLInputElement).checked)}
                />
                <span>
                  {which}
                  <span class="visually-hidden"> for {name}</span>
                </span>
              </label>
            );
          })}
        </fieldset>
      </div>
      <ErrorBox error={action.error} title={`${name} was not changed.`} />
      {action.notice && <Notice ok>{action.notice}</Notice>}
      {group.protected ? (
        <p class="muted small">
          The groups admins and users always exist: they cannot be renamed or deleted.
        </p>
      ) : (
        <div class="row">
          <form class="inline" onSubmit={rename}>
            <label>
              <span>
                New name<span class="visually-hidden"> for {name}</span>
              </span>
              <input
                value={newName}
                onInput={(event) => setNewName((event.currentTarget as HTMLInputElement).value)}
                required
                pattern={NAME_PATTERN}
                maxLength={64}
                autocomplete="off"
                spellcheck={false}
              />
            </label>
            <button type="submit" disabled={action.busy} aria-label={`Rename ${name}`}>
              Rename
            </button>
          </form>
          <button
            type="button"
            disabled={action.busy}
            aria-label={`Delete ${name}`}
            aria-expanded={confirming}
            ref={ask}
            onClick={() => setConfirming(!confirming)}
          >
            Delete…
          </button>
        </div>
      )}
      {confirming && !group.protected && (
        <div role="alertdialog" aria-labelledby={`${id}-confirm`}>
          <p id={`${id}-confirm`}>
            Delete group <strong>{name}</strong> for good? Images shared with it stop being shared with its
            members.
          </p>
          <button ref={yes} type="button" class="danger" disabled={action.busy} onClick={remove}>
            Yes, delete {name}
          </button>{' '}
          <button type="button" onClick={() => setConfirming(false)}>
            Cancel
          </button>
        </div>
      )}
    </section>
  );
}

/* ---------------------------------------------------------------- Audit log */

const AUDIT_FILTERS = ['actor', 'action', 'target', 'outcome'] as const;
type AuditFilter = (typeof AUDIT_FILTERS)[number];

const ACTIONS = [
  'user.',
  'group.',
  'image.',
  'upload.',
  'job.',
  'user.create',
  'user.modify',
  'user.delete',
  'group.create',
  'group.modify',
  'group.delete',
  'group.add_member',
  'group.remove_member',
  'group.grant',
  'group.revoke',
  'image.create',
  'image.modify',
  'image.delete',
  'image.upload',
  'image.rollback',
  'image.share',
  'image.unshare',
  'image.convert',
  'image.delete_variant',
  'upload.create',
  'upload.delete',
  'job.cancel',
];
const OUTCOMES = ['ok', 'failed', 'forbidden', 'limited_proxy', 'quota_exceeded', 'image_read_only'];

function detailText(detail: Record<string, unknown> | null | undefined): string {
  if (!detail) return '';
  return Object.entries(detail)
    .map(([key, value]) => `${key}: ${Array.isArray(value) ? value.join(', ') : String(value)}`)
    .join('; ');
}

function AuditTab() {
  const search = location.search;
  const query = new URLSearchParams(search);
  const offset = Math.max(0, Number(query.get('offset')) || 0);
  const filters: Partial<Record<AuditFilter, string>> = {};
  for (const key of AUDIT_FILTERS) {
    const value = query.get(key);
    if (value) filters[key] = value;
  }
  const audit = useAsync(
    () => call(api.GET('/api/audit', { params: { query: { ...filters, limit: AUDIT_PER_PAGE, offset } } })),
    [search],
  );
  const filtered = Object.keys(filters).length > 0;
  return (
    <>
      <h2 id="audit-heading">Audit log</h2>
      <p class="muted">Every request that changed something, or tried to, newest first.</p>
      <AuditFilters key={search} filters={filters} filtered={filtered} />
      <ErrorBox error={audit.error} title="The audit log could not be read." />
      {audit.loading && !audit.data && <Loading what="the audit log" />}
      {audit.data && (
        <>
          <p class="count" aria-live="polite">
            {audit.data.total === 0
              ? filtered
                ? 'No entries match.'
                : 'No entries yet.'
              : audit.data.total === 1
                ? '1 entry'
                : `${audit.data.total} entries`}
          </p>
          {audit.data.items.length > 0 && (
            <div class="table-wrap">
              <table class="audit">
                <caption class="visually-hidden">Audit log, newest first</caption>
                <thead>
                  <tr>
                    <th scope="col">Time</th>
                    <th scope="col">Actor</th>
                    <th scope="col">Address</th>
                    <th scope="col">Action</th>
                    <th scope="col">Target</th>
                    <th scope="col">Outcome</th>
                    <th scope="col">Status</th>
                  </tr>
                </thead>
                <tbody>
                  {audit.data.items.map((entry) => {
                    const detail = detailText(entry.detail);
                    return (
                      <tr key={entry.id}>
                        <td>
                          <time
                            dateTime={entry.time}
                            title={
                              entry.request_id ? `${entry.time}, request ${entry.request_id}` : entry.time
                            }
                          >
                            {date(entry.time)}
                          </time>
                        </td>
                        <td>
                          {entry.actor ? (
                            <a
                              href={withQuery({ actor: entry.actor, offset: undefined })}
                              title={entry.dn ?? undefined}
                            >
                              {entry.actor}
                            </a>
                          ) : entry.dn ? (
                            <span class="muted" title={entry.dn}>
                              unknown certificate
                            </span>
                          ) : (
                            '—'
                          )}
                        </td>
                        <td>{entry.address ?? '—'}</td>
                        <td title={entry.method && entry.path ? `${entry.method} ${entry.path}` : undefined}>
                          <code>{entry.action}</code>
                          {detail && <div class="muted small">{detail}</div>}
                        </td>
                        <td class="target">
                          {entry.target ?? '—'}
                          {entry.target_type && <div class="muted small">{entry.target_type}</div>}
                        </td>
                        <td>
                          <span class={`badge ${entry.outcome === 'ok' ? 'public' : 'expired'}`}>
                            {entry.outcome}
                          </span>
                        </td>
                        <td class="number">{entry.status}</td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
          )}
          <Pager
            total={audit.data.total}
            limit={AUDIT_PER_PAGE}
            offset={offset}
            href={(o) => withQuery({ offset: o || undefined })}
          />
        </>
      )}
    </>
  );
}

function AuditFilters(props: { filters: Partial<Record<AuditFilter, string>>; filtered: boolean }) {
  const [values, setValues] = useState<Record<AuditFilter, string>>({
    actor: props.filters.actor ?? '',
    action: props.filters.action ?? '',
    target: props.filters.target ?? '',
    outcome: props.filters.outcome ?? '',
  });
  const submit = (event: Event) => {
    event.preventDefault();
    const changes: Record<string, string | undefined> = { offset: undefined };
    for (const key of AUDIT_FILTERS) changes[key] = values[key].trim() || undefined;
    navigate(withQuery(changes));
  };
  const field = (key: AuditFilter, label: string, extra: Record<string, string> = {}) => (
    <label>
      {label}
      <input
        name={key}
        value={values[key]}
        onInput={(event) => {
          const value = (event.currentTarget as HTMLInputElement).value;
          setValues((all) => ({ ...all, [key]: value }));
        }}
        autocomplete="off"
        spellcheck={false}
        {...extra}
      />
    </label>
  );
  return (
    <search>
      <form class="search" onSubmit={submit} aria-label="Filter the audit log">
        <div class="row">
          {field('actor', 'Actor', { placeholder: 'user name' })}
          {field('action', 'Action', { placeholder: 'image. or image.delete', list: 'audit-actions' })}
          {field('target', 'Target', { placeholder: 'bob, team, bob/rhel.img' })}
          {field('outcome', 'Outcome', { placeholder: 'ok, failed or a code', list: 'audit-outcomes' })}
          <button type="submit">Filter</button>
          {props.filtered && (
            <a class="button" href="/admin/audit">
              Clear filters
            </a>
          )}
        </div>
        <datalist id="audit-actions">
          {ACTIONS.map((action) => (
            <option key={action} value={action} />
          ))}
        </datalist>
        <datalist id="audit-outcomes">
          {OUTCOMES.map((outcome) => (
            <option key={outcome} value={outcome} />
          ))}
        </datalist>
      </form>
    </search>
  );
}
