/**
 * Edit an image: metadata, name, read-only, public, expiry; sharing with users and groups; giving it away (an
 * offer); deletion.
 */
import { useState } from 'preact/hooks';
import { api, call, type Image } from '../api/client';
import { imagePath, navigate } from '../lib/router';
import { isAdmin, type Session } from '../lib/session';
import { ErrorBox, Loading, Notice, useAction, useAsync, useConfirmFocus } from '../lib/ui';
import { rightsOn } from './image';
import { GiveAway } from './transfers';

const TEXT_FIELDS = [
  ['description', 'Description', ''],
  ['os_type', 'OS type', 'linux'],
  ['os_variant', 'OS variant', 'rhel9'],
  ['os_arch', 'Architecture', 'x86_64'],
  ['hypervisor', 'Hypervisor', 'kvm'],
] as const;

export function EditPage({ session, owner, name }: { session: Session; owner: string; name: string }) {
  const image = useAsync(
    () => call(api.GET('/api/images/{user}/{image}', { params: { path: { user: owner, image: name } } })),
    [owner, name],
  );
  if (session.kind !== 'user')
    return <ErrorBox error={new Error('Sign in with your certificate to edit images.')} />;
  if (image.loading && !image.data) return <Loading what={`${owner}/${name}`} />;
  if (!image.data) return <ErrorBox error={image.error} title="This image could not be shown." />;
  const rights = rightsOn(session, image.data);
  return (
    <section>
      <p class="crumbs">
        <a href="/">Images</a> / <a href={imagePath(owner, name)}>{name}</a>
      </p>
      <h1>
        Edit {owner}/{name}
      </h1>
      <Metadata image={image.data} session={session} onSaved={image.reload} />
      {rights.share && <Sharing image={image.data} session={session} onChange={image.reload} />}
      {rights.share && <GiveAway image={image.data} session={session} />}
      {rights.remove && <Delete image={image.data} />}
    </section>
  );
}

function Metadata({ image, session, onSaved }: { image: Image; session: Session; onSaved: () => void }) {
  const action = useAction();
  const ownerOrAdmin =
    session.kind === 'user' && (session.user.user_name === image.owner || isAdmin(session));
  const submit = async (event: Event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    const body: Record<string, unknown> = {};
    const newName = String(form.get('name')).trim();
    if (newName !== image.name) body.name = newName;
    for (const [key] of TEXT_FIELDS) {
      const value = String(form.get(key) ?? '').trim();
      if (value !== (image[key] ?? '')) body[key] = value === '' ? null : value;
    }
    const readOnly = form.get('read_only') === 'on';
    if (readOnly !== image.read_only) body.read_only = readOnly;
    if (ownerOrAdmin) {
      const open = form.get('unauthenticated_access') === 'on';
      if (open !== image.unauthenticated_access) body.unauthenticated_access = open;
    }
    const expires = String(form.get('expires') ?? '');
    if (expires !== (image.expires ?? '').slice(0, 10)) body.expires = expires === '' ? null : expires;
    await action.run(async () => {
      const changed = await call(
        api.PATCH('/api/images/{user}/{image}', {
          params: { path: { user: image.owner, image: image.name } },
          body: body as never,
        }),
      );
      if (changed.name !== image.name) navigate(`${imagePath(changed.owner, changed.name)}/edit`, true);
      onSaved();
      return 'Saved.';
    });
  };
  return (
    // Keyed by the image's state: the fields are the user's until a save (or another change) reloads them.
    <form class="card" onSubmit={submit} key={`${image.name}/${image.modified}`}>
      <h2>Metadata</h2>
      <label>
        Name
        <input
          name="name"
          defaultValue={image.name}
          required
          pattern="[A-Za-z0-9_\-][A-Za-z0-9._\-]{0,127}"
        />
        <span class="hint">Letters, digits, dot, dash and underscore; not starting with a dot.</span>
      </label>
      {TEXT_FIELDS.map(([key, label, example]) =>
        key === 'description' ? (
          <label key={key}>
            {label}
            <textarea name={key} rows={3} defaultValue={image[key] ?? ''} />
          </label>
        ) : (
          <label key={key}>
            {label}
            <input name={key} defaultValue={image[key] ?? ''} placeholder={example} />
          </label>
        ),
      )}
      <label>
        Expires at 00:00 UTC on
        <input name="expires" type="date" defaultValue={(image.expires ?? '').slice(0, 10)} />
        <span class="hint">Empty: never. An expired image is listed but its bytes are not served.</span>
      </label>
      <label class="check">
        <input name="read_only" type="checkbox" defaultChecked={image.read_only} /> Read-only (no new
        versions, no deletion)
      </label>
      <label class="check">
        <input
          name="unauthenticated_access"
          type="checkbox"
          defaultChecked={image.unauthenticated_access}
          disabled={!ownerOrAdmin}
        />{' '}
        Public: anyone may download it, without a certificate, also over plain HTTP
      </label>
      <ErrorBox error={action.error} title="The changes were not saved." />
      {action.notice && <Notice ok>{action.notice}</Notice>}
      <button type="submit" class="primary" disabled={action.busy}>
        {action.busy ? 'Saving…' : 'Save changes'}
      </button>
    </form>
  );
}

function Sharing({ image, session, onChange }: { image: Image; session: Session; onChange: () => void }) {
  const action = useAction();
  const admin = isAdmin(session);
  const suggestions = useAsync(async () => {
    const [users, groups] = await Promise.all([
      call(api.GET('/api/users', { params: { query: { limit: 1000 } } })),
      call(api.GET('/api/groups', { params: { query: { limit: 1000 } } })),
    ]);
    const mine = new Set(session.kind === 'user' ? (session.user.groups ?? []) : []);
    return {
      users: users.items.map((u) => u.user_name).filter((u) => u !== image.owner),
      // One shares with groups one is in (admins with any); "users" is everyone, so it is not offered.
      groups: groups.items.map((g) => g.name).filter((g) => g !== 'users' && (admin || mine.has(g))),
    };
  }, [image.owner]);
  const path = { user: image.owner, image: image.name };
  const change = (kind: 'user' | 'group', target: string, share: boolean): Promise<boolean> =>
    action.run(async () => {
      const url =
        kind === 'user'
          ? '/api/images/{user}/{image}/share/user/{target}'
          : '/api/images/{user}/{image}/share/group/{target}';
      const params = { params: { path: { ...path, target } } };
      await call(share ? api.POST(url, params) : api.DELETE(url, params));
      onChange();
      return undefined;
    });
  const add = (kind: 'user' | 'group') => (event: Event) => {
    event.preventDefault();
    const form = event.currentTarget as HTMLFormElement;
    const target = String(new FormData(form).get('target') ?? '').trim();
    if (target) change(kind, target, true).then((done) => done && form.reset());
  };
  const shared = image.shared_with ?? { users: [], groups: [] };
  return (
    <div class="card">
      <h2>Sharing</h2>
      <p class="muted">Users and groups an image is shared with may read and download it, not change it.</p>
      <div class="two">
        {(['user', 'group'] as const).map((kind) => {
          const list = (kind === 'user' ? shared.users : shared.groups) ?? [];
          const options = (kind === 'user' ? suggestions.data?.users : suggestions.data?.groups) ?? [];
          return (
            <div key={kind}>
              <h3>{kind === 'user' ? 'Users' : 'Groups'}</h3>
              {list.length === 0 ? (
                <p class="muted">Not shared with any {kind}.</p>
              ) : (
                <ul class="chips" aria-label={`Shared with these ${kind}s`}>
                  {list.map((target) => (
                    <li key={target}>
                      {target}
                      <button
                        type="button"
                        class="small"
                        disabled={action.busy}
                        onClick={() => change(kind, target, false)}
                        aria-label={`Stop sharing with ${kind} ${target}`}
                      >
                        ×
                      </button>
                    </li>
                  ))}
                </ul>
              )}
              <form class="inline" onSubmit={add(kind)}>
                <label>
                  Share with {kind}
                  <input name="target" list={`${kind}-suggestions`} autocomplete="off" required />
                </label>
                <datalist id={`${kind}-suggestions`}>
                  {options.map((option) => (
                    <option key={option} value={option} />
                  ))}
                </datalist>
                <button type="submit" disabled={action.busy}>
                  Share
                </button>
              </form>
            </div>
          );
        })}
      </div>
      <ErrorBox error={action.error} title="Sharing did not change." />
    </div>
  );
}

function Delete({ image }: { image: Image }) {
  const [confirming, setConfirming] = useState(false);
  const action = useAction();
  const { yes, ask } = useConfirmFocus(confirming);
  const remove = () =>
    action.run(async () => {
      await call(
        api.DELETE('/api/images/{user}/{image}', {
          params: { path: { user: image.owner, image: image.name } },
        }),
      );
      navigate('/?view=mine');
      return undefined;
    });
  return (
    <div class="card danger">
      <h2>Delete</h2>
      {image.read_only ? (
        <p>This image is read-only: clear read-only above before deleting it.</p>
      ) : !confirming ? (
        <button type="button" class="danger" ref={ask} onClick={() => setConfirming(true)}>
          Delete this image…
        </button>
      ) : (
        <div role="alertdialog" aria-labelledby="confirm-delete">
          <p id="confirm-delete">
            Delete{' '}
            <strong>
              {image.owner}/{image.name}
            </strong>{' '}
            and every kept version of it, for good?
          </p>
          <button type="button" class="danger" ref={yes} onClick={remove} disabled={action.busy}>
            Yes, delete it
          </button>{' '}
          <button type="button" onClick={() => setConfirming(false)}>
            Cancel
          </button>
        </div>
      )}
      <ErrorBox error={action.error} title="The image was not deleted." />
    </div>
  );
}
