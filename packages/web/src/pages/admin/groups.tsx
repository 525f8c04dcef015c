/** Admin, Groups: create groups, change their members and permissions, rename and delete them. */
import { PERMISSIONS } from '@repoman/core';
import { useState } from 'preact/hooks';
import { api, call, type Group } from '../../api/client';
import { ErrorBox, Loading, Notice, useAction, useAsync, useConfirmFocus } from '../../lib/ui';
import { groupPath } from '../group';
import { ADMINS, CreateForm, editing, list, NAME_PATTERN, NameField, TextField } from './shared';

export function GroupsTab({ me }: { me: string }) {
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
  const edit = editing(props.onEdit);
  const send = () =>
    call(
      api.POST('/api/groups', {
        body: {
          name: name.trim(),
          ...(list(members).length > 0 ? { users: list(members) } : {}),
          ...(granted.length > 0 ? { permissions: granted } : {}),
        },
      }),
    );
  const onCreated = (group: Group) => {
    setName('');
    setMembers('');
    setGranted([]);
    props.onCreated(group);
  };
  return (
    <CreateForm noun="group" send={send} onCreated={onCreated} created={props.created}>
      <div class="two">
        <NameField label="Group name" name="name" value={name} onInput={edit(setName)} />
        <TextField
          label="Members"
          name="users"
          value={members}
          onInput={edit(setMembers)}
          hint="Optional: user names separated by commas."
          placeholder="bob, pam"
        />
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
    </CreateForm>
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
