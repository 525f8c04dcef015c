/**
 * Clouds, as UVic's Glint showed them: per group, the images (rows) against the group's OpenStack clouds
 * (columns), each cell what that cloud holds of that image (docs/clouds.md). Members see the states; the group's
 * cloud managers (cloud_manage and membership, or admins) tick the images to keep in each cloud and save (each
 * change, then a sync of every cloud touched), register clouds and forget them. While a copy is on its way the
 * page asks for the states again every few seconds, and stops once everything has settled.
 */
import {
  CLOUD_TRANSFERS,
  CLOUD_VISIBILITIES,
  type Cloud,
  type CloudCopy,
  type CloudCopyState,
} from '@repoman/core';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { api, call, describe } from '../api/client';
import type { paths } from '../api/schema';
import { date } from '../lib/format';
import { imagePath } from '../lib/router';
import { isAdmin, type Session } from '../lib/session';
import { ErrorBox, Loading, useAction, useAsync } from '../lib/ui';
import { SignInHint } from './account';
import { groupPath } from './group';

/** How often the states are asked for while a copy is on its way, and while only pending ones wait. */
const POLL_MS = 3000;
const POLL_PENDING_MS = 10_000;
/** How long, after a save, the page waits for the sync it asked for before it stops asking. */
const SYNC_WAIT_MS = 60_000;

/** The element a `/clouds#GROUP` link leads to (prefixed: a group may be called "main"). */
const sectionId = (group: string) => `clouds-${group}`;

const STATES: Record<CloudCopyState, { icon: string; label: string; title: string }> = {
  present: { icon: '✓', label: 'present', title: 'in Glance, active, its SHA-512 equal to Repoman’s' },
  transferring: { icon: '↻', label: 'transferring', title: 'made in Glance, its bytes on their way' },
  pending: { icon: '…', label: 'pending', title: 'waiting (e.g. for a variant in the cloud’s format)' },
  failed: { icon: '✗', label: 'failed', title: 'the last try failed; tried again with backoff' },
  conflict: { icon: '⚠', label: 'conflict', title: 'another image in the project is in the way' },
  retiring: { icon: '↓', label: 'retiring', title: 'deactivated, deleted after the grace period' },
};

type CreateBody = paths['/api/clouds/{group}']['post']['requestBody']['content']['application/json'];

const splitImage = (image: string): [string, string] => {
  const slash = image.indexOf('/');
  return [image.slice(0, slash), image.slice(slash + 1)];
};
const byName = (a: string, b: string) => a.localeCompare(b);
const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

export function CloudsPage({ session }: { session: Session }) {
  const signedIn = session.kind === 'user';
  const clouds = useAsync(
    async () => (signedIn ? ((await call(api.GET('/api/clouds'))) as unknown as Cloud[]) : []),
    [signedIn],
  );
  const [registering, setRegistering] = useState<string | null>(null);
  const [notice, setNotice] = useState('');
  const jumped = useRef(false);
  // A link to /clouds#GROUP: to that group's section once it is shown.
  useEffect(() => {
    if (jumped.current || !clouds.data || !location.hash) return;
    jumped.current = true;
    let group = location.hash.slice(1);
    try {
      group = decodeURIComponent(group);
    } catch {}
    const target = document.getElementById(sectionId(group));
    const heading = target?.querySelector('h2') ?? target;
    heading?.scrollIntoView();
    heading?.focus({ preventScroll: true });
  }, [clouds.data]);

  if (session.kind !== 'user')
    return (
      <section>
        <h1>Clouds</h1>
        <SignInHint session={session} />
      </section>
    );
  const admin = isAdmin(session);
  const mine = session.user.groups ?? [];
  const holdsManage = admin || (session.user.permissions ?? []).includes('cloud_manage');
  const manages = (group: string) => admin || (holdsManage && mine.includes(group));
  const all = clouds.data ?? [];
  // Members: every group of theirs, those with clouds first. Admins: every group with clouds.
  const withClouds = [...new Set(all.map((c) => c.group))].sort(byName);
  // ("users" is everyone: listed only once it has clouds.)
  const without = admin
    ? []
    : mine.filter((group) => group !== 'users' && !withClouds.includes(group)).sort(byName);
  const registerFor = admin ? null : mine.filter(manages);
  const canRegister = admin || (registerFor?.length ?? 0) > 0;

  return (
    <section>
      <div class="title-row">
        <h1>Clouds</h1>
        {canRegister && (
          <button
            type="button"
            aria-expanded={registering !== null}
            aria-controls="register-cloud"
            onClick={() => setRegistering(registering === null ? '' : null)}
          >
            {registering === null ? 'Register a cloud…' : 'Close the registration'}
          </button>
        )}
      </div>
      <p class="lead">
        Repoman keeps the images chosen for each of a group’s OpenStack clouds present there, at their current
        version and checked against Repoman’s SHA-512; with “follows endorsements” the group’s endorsed
        versions too. Each cell says what that cloud holds of that image.
      </p>
      <div role="status" aria-live="polite">
        {notice && <p class="notice ok">{notice}</p>}
      </div>
      {registering !== null && (
        <RegisterForm
          key={registering}
          groups={registerFor}
          preset={registering}
          onCancel={() => setRegistering(null)}
          onRegistered={(cloud) => {
            setRegistering(null);
            setNotice(
              `Registered ${cloud.name} for ${cloud.group}: its credential works, and its first sync runs now.`,
            );
            clouds.reload();
          }}
        />
      )}
      <ErrorBox error={clouds.error} title="The clouds could not be listed." />
      {clouds.loading && !clouds.data && <Loading what="clouds" />}
      {clouds.data && withClouds.length + without.length === 0 && (
        <p class="muted">
          {admin
            ? 'No group has a cloud yet.'
            : 'You are in no group: a group’s clouds are its members’ to see. Ask an administrator.'}
        </p>
      )}
      {clouds.data &&
        withClouds.map((group) => (
          <GroupClouds
            key={group}
            group={group}
            all={all}
            manager={manages(group)}
            member={mine.includes(group)}
            me={session.user.user_name}
            reloadClouds={clouds.reload}
            onForgotten={(message) => {
              setNotice(message);
              clouds.reload();
            }}
          />
        ))}
      {clouds.data && without.length > 0 && (
        <section aria-labelledby="no-clouds-heading">
          <h2 id="no-clouds-heading">{withClouds.length > 0 ? 'Your other groups' : 'Your groups'}</h2>
          <p class="muted">No clouds are registered for these groups.</p>
          <ul class="plain">
            {without.map((group) => (
              <li key={group} id={sectionId(group)} tabIndex={-1}>
                <a href={groupPath(group)}>{group}</a>
                {manages(group) && (
                  <>
                    {' · '}
                    <button type="button" class="link" onClick={() => setRegistering(group)}>
                      Register a cloud for {group}
                    </button>
                  </>
                )}
              </li>
            ))}
          </ul>
        </section>
      )}
    </section>
  );
}

/* ---------------------------------------------------------------- One group's matrix */

interface SaveResult {
  saved: number;
  synced: string[];
  failures: { what: string; error: unknown }[];
}

function GroupClouds(props: {
  group: string;
  /** Every cloud listed (this group's are picked out): a new list means newer answers. */
  all: Cloud[];
  manager: boolean;
  member: boolean;
  me: string;
  reloadClouds: () => void;
  onForgotten: (message: string) => void;
}) {
  const { group, manager } = props;
  // The clouds as the answers of this page's changes left them, newer than the list until it is loaded again.
  const [updated, setUpdated] = useState<Record<string, Cloud>>({});
  useEffect(() => setUpdated({}), [props.all]);
  const clouds = props.all
    .filter((c) => c.group === group)
    .map((c) => updated[c.name] ?? c)
    .sort((a, b) => byName(a.name, b.name));
  const names = clouds.map((c) => c.name).join('\n');
  const followsAny = clouds.some((c) => c.follow_endorsed);

  const statuses = useAsync(async () => {
    const entries = await Promise.all(
      clouds.map(
        async (c) =>
          [
            c.name,
            (await call(
              api.GET('/api/clouds/{group}/{cloud}/status', { params: { path: { group, cloud: c.name } } }),
            )) as CloudCopy[],
          ] as const,
      ),
    );
    return new Map<string, CloudCopy[]>(entries);
  }, [group, names]);
  // The images a manager may choose: shared with the group, public, and their own (a member's).
  const candidates = useAsync(async () => {
    if (!manager || !names) return [];
    const [shared, open, own] = await Promise.all([
      call(api.GET('/api/groups/{group}/shared', { params: { path: { group }, query: { limit: 1000 } } })),
      call(api.GET('/api/images', { params: { query: { public: true, limit: 1000 } } })),
      props.member
        ? call(api.GET('/api/images', { params: { query: { owner: props.me, limit: 1000 } } }))
        : { items: [] },
    ]);
    return [...shared.items, ...open.items, ...own.items].map((i) => `${i.owner}/${i.name}`);
  }, [group, manager, names !== '']);
  // What the group endorses, which clouds following endorsements keep whether chosen or not.
  const endorsed = useAsync(async () => {
    if (!followsAny) return new Map<string, number>();
    const list = await call(
      api.GET('/api/groups/{group}/endorsements', { params: { path: { group }, query: { limit: 1000 } } }),
    );
    return new Map(list.items.map((e) => [e.image, e.version]));
  }, [group, followsAny]);

  // Unsaved changes: `cloud\nimage` → chosen or not (only those differing from the cloud's choice).
  const [edits, setEdits] = useState<Map<string, boolean>>(new Map());
  const [saving, setSaving] = useState(false);
  const [result, setResult] = useState<SaveResult | null>(null);
  // After a save, each cloud asked to sync and its last sync then: the page waits for a newer one.
  const awaiting = useRef<{ until: number; clouds: Map<string, string | null> }>({
    until: 0,
    clouds: new Map(),
  });

  const copies = (cloud: string, image: string) =>
    (statuses.data?.get(cloud) ?? []).filter((c) => c.image === image).sort((a, b) => b.version - a.version);
  const chosen = (cloud: Cloud, image: string) => cloud.images.includes(image);
  const key = (cloud: string, image: string) => `${cloud}\n${image}`;
  const wanted = (cloud: Cloud, image: string) => edits.get(key(cloud.name, image)) ?? chosen(cloud, image);
  const toggle = (cloud: Cloud, image: string, on: boolean) =>
    setEdits((previous) => {
      const next = new Map(previous);
      if (on === chosen(cloud, image)) next.delete(key(cloud.name, image));
      else next.set(key(cloud.name, image), on);
      return next;
    });

  // Rows: what is in (or chosen for, or endorsed for) a cloud first, then what a manager could add.
  const { rows, others } = useMemo(() => {
    const inClouds = new Set<string>();
    for (const cloud of clouds) {
      for (const image of cloud.images) inClouds.add(image);
      for (const copy of statuses.data?.get(cloud.name) ?? []) inClouds.add(copy.image);
    }
    if (followsAny) for (const image of endorsed.data?.keys() ?? []) inClouds.add(image);
    const rest = new Set((candidates.data ?? []).filter((image) => !inClouds.has(image)));
    return { rows: [...inClouds].sort(byName), others: [...rest].sort(byName) };
  }, [props.all, updated, statuses.data, candidates.data, endorsed.data]);

  // Settled, or still moving: poll while a copy is on its way, or a sync asked for has not run yet.
  const all = [...(statuses.data?.values() ?? [])].flat();
  const moving = all.some((c) => c.state === 'transferring');
  const pending = all.some((c) => c.state === 'pending');
  for (const cloud of clouds) {
    const before = awaiting.current.clouds.get(cloud.name);
    if (before !== undefined && cloud.last_sync !== before) awaiting.current.clouds.delete(cloud.name);
  }
  const waiting = awaiting.current.clouds.size > 0 && Date.now() < awaiting.current.until;
  const { reloadClouds } = props;
  useEffect(() => {
    if (statuses.loading || !(moving || pending || waiting)) return;
    const timer = setTimeout(
      () => {
        statuses.reload();
        reloadClouds();
      },
      moving || waiting ? POLL_MS : POLL_PENDING_MS,
    );
    return () => clearTimeout(timer);
  }, [statuses.data, statuses.loading, moving, pending, waiting, props.all]);

  const save = async () => {
    const changes = [...edits].map(([k, on]) => {
      const [cloud = '', image = ''] = k.split('\n');
      return { key: k, cloud, image, on };
    });
    setSaving(true);
    setResult(null);
    const failures: SaveResult['failures'] = [];
    const done: string[] = [];
    const touched = new Map<string, Cloud>();
    for (const change of changes) {
      const [user, image] = splitImage(change.image);
      const path = { group, cloud: change.cloud, user, image };
      const url = '/api/clouds/{group}/{cloud}/images/{user}/{image}' as const;
      try {
        const answer = await call(
          change.on ? api.PUT(url, { params: { path } }) : api.DELETE(url, { params: { path } }),
        );
        touched.set(change.cloud, answer as unknown as Cloud);
        done.push(change.key);
      } catch (error) {
        failures.push({
          what: `${change.on ? 'Keeping' : 'Removing'} ${change.image} ${change.on ? 'in' : 'from'} ${change.cloud}`,
          error,
        });
      }
    }
    const synced: string[] = [];
    for (const cloud of touched.keys()) {
      try {
        await call(api.POST('/api/clouds/{group}/{cloud}/sync', { params: { path: { group, cloud } } }));
        synced.push(cloud);
      } catch (error) {
        failures.push({ what: `Asking ${cloud} to sync`, error });
      }
    }
    awaiting.current = {
      until: Date.now() + SYNC_WAIT_MS,
      clouds: new Map(synced.map((name) => [name, clouds.find((c) => c.name === name)?.last_sync ?? null])),
    };
    setUpdated((previous) => ({ ...previous, ...Object.fromEntries(touched) }));
    setEdits((previous) => {
      const next = new Map(previous);
      for (const k of done) next.delete(k);
      return next;
    });
    setResult({ saved: done.length, synced, failures });
    setSaving(false);
    statuses.reload();
    reloadClouds();
  };

  // Forgetting a cloud: asked for in its column, confirmed below the table.
  const [forgetting, setForgetting] = useState<string | null>(null);
  const forgetButtons = useRef(new Map<string, HTMLButtonElement>());
  const forgetYes = useRef<HTMLButtonElement>(null);
  const forget = useAction();
  useEffect(() => {
    if (forgetting) forgetYes.current?.focus();
  }, [forgetting]);
  const cancelForget = () => {
    const name = forgetting;
    setForgetting(null);
    if (name) forgetButtons.current.get(name)?.focus();
  };
  const doForget = async (name: string) => {
    const ok = await forget.run(async () => {
      await call(api.DELETE('/api/clouds/{group}/{cloud}', { params: { path: { group, cloud: name } } }));
      return undefined;
    });
    if (ok) {
      setForgetting(null);
      props.onForgotten(
        `Forgot ${group}’s cloud ${name}. The images Repoman made there stay in it, no longer kept current.`,
      );
    }
  };

  const headingId = `${sectionId(group)}-heading`;
  const changed = edits.size;
  return (
    <section id={sectionId(group)} aria-labelledby={headingId} class="cloud-group">
      <h2 id={headingId} tabIndex={-1}>
        <a href={groupPath(group)}>{group}</a>
      </h2>
      {clouds.length > 0 && (
        <>
          <ErrorBox error={statuses.error} title="What the clouds hold could not be asked." />
          <ErrorBox error={candidates.error} title="The images you may choose could not be listed." />
          {statuses.loading && !statuses.data && <Loading what={`the state of ${group}’s clouds`} />}
          {statuses.data && (
            <div class="table-wrap">
              <table class="clouds">
                <caption class="visually-hidden">
                  Images against {group}’s clouds: what each cloud holds of each image
                  {manager ? ', and whether it is chosen' : ''}
                </caption>
                <thead>
                  <tr>
                    <th scope="col">Image</th>
                    {clouds.map((cloud) => (
                      <th scope="col" key={cloud.name} title={cloud.auth_url}>
                        {cloud.name}
                      </th>
                    ))}
                  </tr>
                  <tr class="cloud-info">
                    <th scope="row">Sync</th>
                    {clouds.map((cloud) => (
                      <td key={cloud.name}>
                        <CloudInfo
                          cloud={cloud}
                          manager={manager}
                          forgetting={forgetting === cloud.name}
                          buttonRef={(button) => {
                            if (button) forgetButtons.current.set(cloud.name, button);
                          }}
                          onForget={() =>
                            forgetting === cloud.name ? cancelForget() : setForgetting(cloud.name)
                          }
                        />
                      </td>
                    ))}
                  </tr>
                </thead>
                <tbody>
                  {rows.length + others.length === 0 && (
                    <tr>
                      <td colSpan={clouds.length + 1} class="muted">
                        No image is chosen for these clouds yet.
                      </td>
                    </tr>
                  )}
                  {[...rows, ...others].map((image, index) => (
                    <tr key={image} class={index === rows.length && index > 0 ? 'others' : undefined}>
                      <th scope="row">
                        <a href={imagePath(...splitImage(image))}>{image}</a>
                        {endorsed.data?.has(image) && (
                          <span class="badge" title={`${group} endorses version ${endorsed.data.get(image)}`}>
                            endorsed v{endorsed.data.get(image)}
                          </span>
                        )}
                      </th>
                      {clouds.map((cloud) => (
                        <td
                          key={cloud.name}
                          class={edits.has(key(cloud.name, image)) ? 'changed' : undefined}
                        >
                          <Cell
                            cloud={cloud}
                            image={image}
                            copies={copies(cloud.name, image)}
                            chosen={chosen(cloud, image)}
                            endorsed={cloud.follow_endorsed && Boolean(endorsed.data?.has(image))}
                            manager={manager}
                            wanted={wanted(cloud, image)}
                            changed={edits.has(key(cloud.name, image))}
                            onToggle={(on) => toggle(cloud, image, on)}
                          />
                        </td>
                      ))}
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
          {forgetting && (
            <div class="card danger" role="alertdialog" aria-labelledby={`${headingId}-forget`}>
              <p id={`${headingId}-forget`}>
                Forget {group}’s cloud <strong>{forgetting}</strong>? Repoman stops syncing it and drops its
                credential. <strong>The images Repoman made there stay in the cloud</strong>: to remove them,
                untick them here first and let the grace period (a day) pass.
              </p>
              <button
                ref={forgetYes}
                type="button"
                class="danger"
                disabled={forget.busy}
                onClick={() => doForget(forgetting)}
              >
                Yes, forget {forgetting}
              </button>{' '}
              <button type="button" onClick={cancelForget}>
                Cancel
              </button>
              <ErrorBox error={forget.error} title="The cloud was not forgotten." />
            </div>
          )}
          <p class="muted small">
            Listed: the images chosen for a cloud of {group} or held in one
            {followsAny ? ', and those the group endorses' : ''}
            {manager
              ? `, then those you may choose: shared with ${group}, public${props.member ? ', or yours' : ''}. Another member’s own images can be chosen too, with the client or the API.`
              : '.'}
          </p>
          {(moving || pending || waiting) && (
            <p class="muted small">
              {moving || waiting
                ? 'Copies are on their way: the states are asked for again every few seconds.'
                : 'Some copies are pending: the states are asked for again every few seconds.'}
            </p>
          )}
          {manager && (
            <div class="row save-bar">
              <button type="button" class="primary" disabled={saving || changed === 0} onClick={save}>
                {saving ? 'Saving…' : changed === 0 ? 'Save' : `Save ${plural(changed, 'change')}`}
              </button>
              <button
                type="button"
                disabled={saving || changed === 0}
                onClick={() => {
                  setEdits(new Map());
                  setResult(null);
                }}
              >
                Undo changes
              </button>
            </div>
          )}
          {manager && (
            <div role="status" aria-live="polite" class="save-result">
              {result && <SaveSummary result={result} />}
            </div>
          )}
          {result && result.failures.length > 0 && (
            <div class="error" role="alert">
              <strong>{plural(result.failures.length, 'change')} did not work:</strong>
              <ul>
                {result.failures.map(({ what, error }) => {
                  const { message, advice } = describe(error);
                  return (
                    <li key={what}>
                      {what}: {message} {advice}
                    </li>
                  );
                })}
              </ul>
            </div>
          )}
        </>
      )}
    </section>
  );
}

function SaveSummary({ result }: { result: SaveResult }) {
  if (result.saved === 0 && result.failures.length > 0) return <p>Nothing was saved.</p>;
  return (
    <p class="notice ok">
      Saved {plural(result.saved, 'change')}
      {result.synced.length > 0 ? `; asked ${result.synced.join(', ')} to sync now` : ''}.
    </p>
  );
}

/** Under a cloud's name: where it is, its last sync and its last error, and for managers "Forget". */
function CloudInfo(props: {
  cloud: Cloud;
  manager: boolean;
  forgetting: boolean;
  buttonRef: (button: HTMLButtonElement | null) => void;
  onForget: () => void;
}) {
  const { cloud } = props;
  let host = cloud.auth_url;
  try {
    host = new URL(cloud.auth_url).host;
  } catch {}
  return (
    <div class="small">
      <div class="muted">
        {host}
        {cloud.region ? ` · ${cloud.region}` : ''}
      </div>
      <div class="muted">
        {cloud.last_sync ? (
          <>
            Synced <time dateTime={cloud.last_sync}>{date(cloud.last_sync)}</time>
          </>
        ) : (
          'Not synced yet'
        )}
        {cloud.follow_endorsed ? ' · follows endorsements' : ''}
      </div>
      {cloud.last_error && (
        <div class="cloud-error">
          <strong>Last sync failed:</strong> {cloud.last_error}
        </div>
      )}
      {props.manager && (
        <button
          type="button"
          class="small"
          ref={props.buttonRef}
          aria-expanded={props.forgetting}
          aria-label={`Forget cloud ${cloud.name}`}
          onClick={props.onForget}
        >
          Forget…
        </button>
      )}
    </div>
  );
}

/** One cell: what the cloud holds of the image (each version), and a manager's "chosen" checkbox. */
function Cell(props: {
  cloud: Cloud;
  image: string;
  copies: CloudCopy[];
  chosen: boolean;
  endorsed: boolean;
  manager: boolean;
  wanted: boolean;
  changed: boolean;
  onToggle: (on: boolean) => void;
}) {
  const { copies } = props;
  return (
    <div class="cell">
      {copies.map((copy) => (
        <CopyState key={copy.version} copy={copy} />
      ))}
      {copies.length === 0 && props.chosen && <span class="muted small">chosen, waiting for a sync</span>}
      {copies.length === 0 && !props.chosen && props.endorsed && (
        <span class="muted small">endorsed, waiting for a sync</span>
      )}
      {props.manager && (
        <label class="check small">
          <input
            type="checkbox"
            aria-label={`Keep ${props.image} in ${props.cloud.name}`}
            checked={props.wanted}
            onChange={(event) => props.onToggle((event.currentTarget as HTMLInputElement).checked)}
          />{' '}
          chosen{props.changed ? ' (unsaved)' : ''}
        </label>
      )}
    </div>
  );
}

function CopyState({ copy }: { copy: CloudCopy }) {
  const state = STATES[copy.state] ?? { icon: '?', label: copy.state, title: '' };
  const title = `${state.title}${copy.glance_id ? ` (Glance id ${copy.glance_id})` : ''}`;
  const label = (
    <>
      <span class={`state ${copy.state}`} title={title}>
        <span aria-hidden="true">{state.icon} </span>
        {state.label}
      </span>{' '}
      <span class="muted small">
        v{copy.version}
        {copy.state === 'present' ? ', verified' : ''}
        {copy.state === 'failed' && copy.attempts > 0 ? `, ${plural(copy.attempts, 'try', 'tries')}` : ''}
      </span>
    </>
  );
  if (!copy.detail) return <div class="copy-state">{label}</div>;
  return (
    <details class="copy-state">
      <summary title={copy.detail}>{label}</summary>
      <p class="small">{copy.detail}</p>
    </details>
  );
}

/* ---------------------------------------------------------------- Registering a cloud */

function RegisterForm(props: {
  /** The groups the user manages clouds for; null for admins (every group). */
  groups: string[] | null;
  preset: string;
  onCancel: () => void;
  onRegistered: (cloud: Cloud) => void;
}) {
  const everyGroup = useAsync(
    async () =>
      props.groups ??
      (await call(api.GET('/api/groups', { params: { query: { limit: 1000 } } }))).items
        .map((g) => g.name)
        .sort(byName),
    [props.groups?.join('\n')],
  );
  const groups = everyGroup.data ?? [];
  const [kind, setKind] = useState<'application_credential' | 'password'>('application_credential');
  const [visibility, setVisibility] = useState<string>('private');
  const action = useAction();
  const first = useRef<HTMLSelectElement>(null);
  useEffect(() => {
    if (everyGroup.data) first.current?.focus();
  }, [everyGroup.data !== undefined]);

  const submit = async (event: Event) => {
    event.preventDefault();
    const form = event.currentTarget as HTMLFormElement;
    const data = new FormData(form);
    const text = (name: string) => String(data.get(name) ?? '').trim();
    const group = text('group');
    const body: CreateBody = {
      name: text('name'),
      auth_url: text('auth_url'),
      ...(text('region') ? { region: text('region') } : {}),
      ...(kind === 'application_credential'
        ? {
            application_credential_id: text('application_credential_id'),
            application_credential_secret: String(data.get('application_credential_secret') ?? ''),
          }
        : {
            username: text('username'),
            password: String(data.get('password') ?? ''),
            project: text('project'),
            ...(text('user_domain') ? { user_domain: text('user_domain') } : {}),
            ...(text('project_domain') ? { project_domain: text('project_domain') } : {}),
          }),
      ...(text('name_prefix') ? { name_prefix: text('name_prefix') } : {}),
      ...(text('disk_format') ? { disk_format: text('disk_format') as CreateBody['disk_format'] } : {}),
      visibility: visibility as CreateBody['visibility'],
      ...(visibility === 'shared'
        ? {
            shared_projects: text('shared_projects')
              .split(/[\s,]+/)
              .filter(Boolean),
          }
        : {}),
      transfer: text('transfer') as CreateBody['transfer'],
      follow_endorsed: data.get('follow_endorsed') === 'on',
    };
    await action.run(async () => {
      const made = await call(api.POST('/api/clouds/{group}', { params: { path: { group } }, body }));
      props.onRegistered(made as unknown as Cloud);
      return undefined;
    });
  };

  return (
    <form id="register-cloud" class="card" onSubmit={submit} aria-labelledby="register-heading">
      <h2 id="register-heading">Register a cloud</h2>
      <p class="muted">
        A cloud is an OpenStack project: Keystone’s URL, a region and a credential, best an application
        credential (<code>openstack application credential create repoman</code>). The server checks it at
        once (a token, Glance, and an image made and deleted); nothing is kept if that fails. The secret is
        sealed and never shown again.
      </p>
      <ErrorBox error={everyGroup.error} title="The groups could not be listed." />
      <div class="two">
        <label>
          Group
          <select name="group" ref={first} required>
            {groups.map((group) => (
              <option key={group} value={group} selected={group === props.preset}>
                {group}
              </option>
            ))}
          </select>
        </label>
        <div class="field">
          <label>
            Name
            <input
              name="name"
              required
              pattern="[a-z0-9_\-]{1,64}"
              aria-describedby="cloud-name-hint"
              placeholder="cern"
              autocomplete="off"
              spellcheck={false}
            />
          </label>
          <span class="hint" id="cloud-name-hint">
            Lower-case letters, digits, - and _.
          </span>
        </div>
        <label>
          Keystone URL
          <input
            name="auth_url"
            type="url"
            required
            placeholder="https://keystone.example.org:5000/v3"
            autocomplete="off"
            spellcheck={false}
          />
        </label>
        <div class="field">
          <label>
            Region
            <input
              name="region"
              placeholder="RegionOne"
              aria-describedby="cloud-region-hint"
              autocomplete="off"
            />
          </label>
          <span class="hint" id="cloud-region-hint">
            Empty: any region’s image service.
          </span>
        </div>
      </div>
      <fieldset class="choices">
        <legend>Credential</legend>
        <label class="check">
          <input
            type="radio"
            name="kind"
            value="application_credential"
            checked={kind === 'application_credential'}
            onChange={() => setKind('application_credential')}
          />{' '}
          Application credential (recommended)
        </label>
        <label class="check">
          <input
            type="radio"
            name="kind"
            value="password"
            checked={kind === 'password'}
            onChange={() => setKind('password')}
          />{' '}
          User, password and project
        </label>
        {kind === 'application_credential' ? (
          <div class="two">
            <label>
              Application credential ID
              <input name="application_credential_id" required autocomplete="off" spellcheck={false} />
            </label>
            <label>
              Application credential secret
              <input name="application_credential_secret" type="password" required autocomplete="off" />
            </label>
          </div>
        ) : (
          <div class="two">
            <label>
              User name
              <input name="username" required autocomplete="off" spellcheck={false} />
            </label>
            <label>
              Password
              <input name="password" type="password" required autocomplete="off" />
            </label>
            <label>
              Project
              <input name="project" required autocomplete="off" spellcheck={false} />
            </label>
            <label>
              User domain
              <input name="user_domain" placeholder="Default" autocomplete="off" />
            </label>
            <label>
              Project domain
              <input name="project_domain" placeholder="Default" autocomplete="off" />
            </label>
          </div>
        )}
      </fieldset>
      <div class="two">
        <div class="field">
          <label>
            Name prefix
            <input
              name="name_prefix"
              maxLength={64}
              placeholder="atlas-"
              aria-describedby="cloud-prefix-hint"
              autocomplete="off"
            />
          </label>
          <span class="hint" id="cloud-prefix-hint">
            Put before each image’s name in Glance.
          </span>
        </div>
        <label>
          Disk format there
          <select name="disk_format">
            <option value="">as stored</option>
            {['raw', 'qcow2', 'vmdk'].map((format) => (
              <option key={format}>{format}</option>
            ))}
          </select>
        </label>
        <label>
          Visibility of the images made
          <select
            name="visibility"
            onChange={(event) => setVisibility((event.currentTarget as HTMLSelectElement).value)}
          >
            {CLOUD_VISIBILITIES.map((v) => (
              <option key={v} value={v} selected={v === visibility}>
                {v}
              </option>
            ))}
          </select>
        </label>
        {visibility === 'shared' && (
          <div class="field">
            <label>
              Shared with projects
              <input
                name="shared_projects"
                aria-describedby="cloud-shared-hint"
                autocomplete="off"
                spellcheck={false}
              />
            </label>
            <span class="hint" id="cloud-shared-hint">
              Project ids, separated by spaces or commas.
            </span>
          </div>
        )}
        <label>
          Transfer
          <select name="transfer">
            {CLOUD_TRANSFERS.map((t) => (
              <option key={t} value={t}>
                {t === 'web-download' ? 'web-download (Glance fetches)' : 'upload (Repoman sends)'}
              </option>
            ))}
          </select>
        </label>
      </div>
      <label class="check">
        <input type="checkbox" name="follow_endorsed" defaultChecked /> Follow endorsements: also keep what
        the group endorses there, at the endorsed version
      </label>
      <ErrorBox error={action.error} title="The cloud was not registered." />
      <div class="actions">
        <button type="submit" class="primary" disabled={action.busy || groups.length === 0}>
          {action.busy ? 'Checking the credential…' : 'Register'}
        </button>
        <button type="button" onClick={props.onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
