/**
 * A group: its members, its signed HEPiX image list (what sites subscribe to) and the endorsements in it. Its
 * endorsers (members holding image_endorse, and admins) endorse and withdraw versions here, keep the lists for
 * subscribers only or not, and manage the list's subscribers (sites with a token of their own, for lists
 * holding private images or kept for subscribers).
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, call, type Group } from '../api/client';
import type { components, paths } from '../api/schema';
import { bytes, date } from '../lib/format';
import { imagePath } from '../lib/router';
import { isAdmin, type Session } from '../lib/session';
import { Copyable, ErrorBox, Loading, Notice, useAction, useAsync, useConfirmFocus } from '../lib/ui';
import { SignInHint } from './account';

type Endorsement = components['schemas']['Endorsement'];
type Subscriber =
  paths['/api/groups/{group}/subscribers']['post']['responses'][201]['content']['application/json'];

/** `owner/name`, as endorsements name images; `\/` so that it is valid with the `v` flag too. */
const IMAGE_PATTERN = String.raw`[^\/\s]+\/[^\/\s]+`;

export const groupPath = (name: string) => `/groups/${encodeURIComponent(name)}`;

/**
 * The groups the signed-in user may endorse for, as far as the page can tell (the server decides): their own
 * groups, if they hold image_endorse or are an admin.
 */
export function endorsableGroups(session: Session): string[] {
  if (session.kind !== 'user') return [];
  const endorses = isAdmin(session) || (session.user.permissions ?? []).includes('image_endorse');
  return endorses ? (session.user.groups ?? []) : [];
}

/** The endorsement form's link from an image's page: `/groups/GROUP?endorse=owner/name`. */
export const endorseHref = (group: string, owner: string, name: string) =>
  `${groupPath(group)}?endorse=${encodeURIComponent(owner)}/${encodeURIComponent(name)}`;

export function GroupPage(props: { session: Session; name: string; query: URLSearchParams }) {
  const { session, name } = props;
  const signedIn = session.kind === 'user';
  const group = useAsync(
    async () =>
      signedIn ? call(api.GET('/api/groups/{group}', { params: { path: { group: name } } })) : null,
    [name, signedIn],
  );
  if (session.kind !== 'user')
    return (
      <section>
        <h1>Group {name}</h1>
        <SignInHint session={session} />
        <ImageList url={`${location.origin}/api/groups/${encodeURIComponent(name)}/image-list`} />
      </section>
    );
  if (group.loading && !group.data) return <Loading what={`group ${name}`} />;
  if (!group.data)
    return (
      <section>
        <h1>Group {name}</h1>
        <ErrorBox error={group.error} title="This group could not be shown." />
      </section>
    );
  const data = group.data;
  const admin = isAdmin(session);
  const endorser =
    admin ||
    ((session.user.permissions ?? []).includes('image_endorse') &&
      data.users.includes(session.user.user_name));
  return (
    <section>
      {admin && (
        <p class="crumbs">
          <a href="/admin/groups">Admin: groups</a> / {data.name}
        </p>
      )}
      <div class="title-row">
        <div class="actions">
          <h1>Group {data.name}</h1>
          {data.protected && <span class="badge">protected</span>}
        </div>
      </div>
      <Members group={data} />
      <p>
        <a href={`/clouds#${encodeURIComponent(data.name)}`}>Clouds</a>: the images {data.name} keeps in its
        OpenStack clouds.
      </p>
      <ImageList key={data.name} url={data.image_list_url} group={data.name} endorser={endorser} />
      <Endorsements group={data.name} endorser={endorser} prefill={props.query.get('endorse') ?? ''} />
      {endorser && <Subscribers group={data.name} />}
    </section>
  );
}

function Members({ group }: { group: Group }) {
  return (
    <>
      <h2>Members</h2>
      {group.users.length === 0 ? (
        <p class="muted">No members.</p>
      ) : (
        <ul class="chips" aria-label={`Members of ${group.name}`}>
          {group.users.map((user) => (
            <li key={user}>{user}</li>
          ))}
        </ul>
      )}
      <p class="muted small">
        Permissions: {group.permissions.join(', ') || 'none'}. Members holding image_endorse endorse images
        for the group’s list.
      </p>
    </>
  );
}

/**
 * The list's links and, for the signed-in (`group` given), who may fetch the group's lists: anyone while they
 * hold public images only, or only its subscribers and members. Its endorsers change that here, at once.
 */
function ImageList(props: { url: string; group?: string; endorser?: boolean }) {
  const { url, group } = props;
  const access = useAsync(
    async () =>
      group === undefined
        ? null
        : call(api.GET('/api/groups/{group}/image-list/access', { params: { path: { group } } })),
    [group],
  );
  const action = useAction();
  // The setting as asked until the server answers, then as it answered (undefined: as loaded).
  const [asked, setAsked] = useState<boolean | undefined>(undefined);
  const loaded = access.data?.subscribers_only;
  const subscribersOnly = asked ?? loaded;
  const change = async (on: boolean) => {
    if (group === undefined) return;
    const before = subscribersOnly;
    setAsked(on);
    const ok = await action.run(async () => {
      const answer = await call(
        api.PUT('/api/groups/{group}/image-list/access', {
          params: { path: { group } },
          body: { subscribers_only: on },
        }),
      );
      setAsked(answer.subscribers_only);
      return answer.subscribers_only
        ? `Only subscribers and members may now fetch ${group}’s lists.`
        : `Anyone may now fetch ${group}’s lists while they hold public images only.`;
    });
    if (!ok) setAsked(before);
  };
  const links: [string, string, string][] = [
    ['Signed list', url, 'the signed list'],
    ['JSON', `${url}.json`, 'the list’s JSON'],
  ];
  return (
    <>
      <h2>Image list</h2>
      <p>
        Sites subscribe to the signed list (with vmcatcher or cloudkeeper)
        {subscribersOnly && ' with a subscriber token, sent as HTTP basic auth over HTTPS,'} and check its
        signature with <code>openssl smime -verify</code>; the JSON is the same list, unsigned.
        {subscribersOnly &&
          (props.endorser ? (
            <>
              {' '}
              Add a site’s token under <a href="#subscribers-heading">Subscribers</a>.
            </>
          ) : (
            ' The group’s endorsers give sites their tokens.'
          ))}
      </p>
      {group !== undefined && (
        <>
          <ErrorBox error={access.error} title="Who may fetch the lists could not be shown." />
          {subscribersOnly !== undefined && (
            <p>
              <strong>
                {subscribersOnly
                  ? 'Only subscribers and members may fetch the lists'
                  : 'Anyone may fetch the lists (while they hold public images only)'}
              </strong>
              {subscribersOnly
                ? ': sites with a subscriber token, members with their certificate, over HTTPS.'
                : '; a list holding private images is for subscribers and members only.'}
            </p>
          )}
          {props.endorser && loaded !== undefined && (
            <label class="check">
              <input
                type="checkbox"
                checked={subscribersOnly}
                disabled={action.busy}
                onChange={(event) => change((event.currentTarget as HTMLInputElement).checked)}
              />{' '}
              Only subscribers (and members) may fetch this group’s lists
            </label>
          )}
          <ErrorBox error={action.error} title="Who may fetch the lists was not changed." />
          {action.notice && <Notice ok>{action.notice}</Notice>}
        </>
      )}
      <dl class="details">
        {links.map(([label, href, what]) => (
          <div key={label}>
            <dt>{label}</dt>
            <dd>
              <Copyable text={href} label={`the URL of ${what}`} />
              <a class="button small" href={href}>
                Open<span class="visually-hidden"> {what}</span>
              </a>
            </dd>
          </div>
        ))}
      </dl>
    </>
  );
}

/* ---------------------------------------------------------------- Endorsements */

function Endorsements(props: { group: string; endorser: boolean; prefill: string }) {
  const { group, endorser } = props;
  const [all, setAll] = useState(false);
  const [notice, setNotice] = useState('');
  const list = useAsync(
    () =>
      call(
        api.GET('/api/groups/{group}/endorsements', {
          params: { path: { group }, query: { all, limit: 1000 } },
        }),
      ),
    [group, all],
  );
  const total = list.data?.total ?? 0;
  const columns = endorser ? 7 : 6;
  return (
    <>
      <h2 id="endorsements-heading">Endorsements</h2>
      <p class="muted">
        Each endorsement puts one version of an image in the list until it expires: a new upload changes
        nothing until an endorser endorses it.
      </p>
      <label class="check">
        <input
          type="checkbox"
          checked={all}
          onChange={(event) => setAll((event.currentTarget as HTMLInputElement).checked)}
        />{' '}
        Show expired too
      </label>
      {notice && <Notice ok>{notice}</Notice>}
      <ErrorBox error={list.error} title="The endorsements could not be listed." />
      {list.loading && !list.data && <Loading what="endorsements" />}
      {list.data && (
        <>
          <p class="count" aria-live="polite">
            {total === 0
              ? all
                ? 'No endorsements.'
                : 'No endorsements in the list.'
              : total === 1
                ? '1 endorsement'
                : `${total} endorsements`}
          </p>
          {list.data.items.length > 0 && (
            <div class="table-wrap">
              <table aria-labelledby="endorsements-heading">
                <thead>
                  <tr>
                    <th scope="col">Image</th>
                    <th scope="col">Version</th>
                    <th scope="col">Size</th>
                    <th scope="col">Endorser</th>
                    <th scope="col">Expires</th>
                    <th scope="col">Comment</th>
                    {endorser && (
                      <th scope="col">
                        <span class="visually-hidden">Actions</span>
                      </th>
                    )}
                  </tr>
                </thead>
                <tbody>
                  {list.data.items.map((endorsement) => (
                    <EndorsementRow
                      key={endorsement.image}
                      endorsement={endorsement}
                      endorser={endorser}
                      columns={columns}
                      onWithdrawn={() => {
                        setNotice(`Withdrew ${group}’s endorsement of ${endorsement.image}.`);
                        list.reload();
                      }}
                    />
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </>
      )}
      {endorser && (
        <EndorseForm
          key={props.prefill}
          group={group}
          prefill={props.prefill}
          onEndorsed={() => {
            setNotice('');
            list.reload();
          }}
        />
      )}
    </>
  );
}

function EndorsementRow(props: {
  endorsement: Endorsement;
  endorser: boolean;
  columns: number;
  onWithdrawn: () => void;
}) {
  const { endorsement: e } = props;
  const [owner, name] = [e.image.slice(0, e.image.indexOf('/')), e.image.slice(e.image.indexOf('/') + 1)];
  const action = useAction();
  const [confirming, setConfirming] = useState(false);
  const { yes, ask } = useConfirmFocus(confirming);
  const id = `endorsement-${e.image.replace(/[^A-Za-z0-9_-]/g, '-')}`;
  const withdraw = async () => {
    const ok = await action.run(async () => {
      await call(
        api.DELETE('/api/groups/{group}/endorsements/{user}/{image}', {
          params: { path: { group: e.group, user: owner, image: name } },
        }),
      );
      return undefined;
    });
    if (ok) {
      setConfirming(false);
      props.onWithdrawn();
    }
  };
  return (
    <>
      <tr>
        <th scope="row">
          <a href={imagePath(owner, name)}>{e.image}</a>
        </th>
        <td class="number">{e.version}</td>
        <td class="number">{bytes(e.size)}</td>
        <td title={`Endorsed ${date(e.created)}`}>{e.endorser}</td>
        <td>
          <time dateTime={e.expires}>{date(e.expires)}</time>{' '}
          {e.expired && <span class="badge expired">expired</span>}
        </td>
        <td>{e.comment ?? '—'}</td>
        {props.endorser && (
          <td class="actions">
            <button
              type="button"
              class="small"
              disabled={action.busy}
              aria-expanded={confirming}
              aria-label={`Withdraw the endorsement of ${e.image}`}
              ref={ask}
              onClick={() => setConfirming(!confirming)}
            >
              Withdraw…
            </button>
          </td>
        )}
      </tr>
      {(confirming || action.error) && (
        <tr class="detail">
          <td colSpan={props.columns}>
            {confirming && (
              <div role="alertdialog" aria-labelledby={`${id}-confirm`}>
                <p id={`${id}-confirm`}>
                  Withdraw {e.group}’s endorsement of <strong>{e.image}</strong> (version {e.version})? The
                  list drops it, and sites stop offering it at their next update; the image itself stays.
                </p>
                <button ref={yes} type="button" class="danger" disabled={action.busy} onClick={withdraw}>
                  Yes, withdraw it
                </button>{' '}
                <button type="button" onClick={() => setConfirming(false)}>
                  Cancel
                </button>
              </div>
            )}
            <ErrorBox error={action.error} title="The endorsement was not withdrawn." />
          </td>
        </tr>
      )}
    </>
  );
}

/** The first day an endorsement can expire on (at 00:00 UTC, it must be in the future): tomorrow. */
const tomorrow = () => new Date(Date.now() + 24 * 3600 * 1000).toISOString().slice(0, 10);

function EndorseForm(props: { group: string; prefill: string; onEndorsed: () => void }) {
  const [image, setImage] = useState(props.prefill);
  const [version, setVersion] = useState('');
  const [expires, setExpires] = useState('');
  const [comment, setComment] = useState('');
  const action = useAction();
  const expiresField = useRef<HTMLInputElement>(null);
  // Come from an image's page to endorse it: what is left to fill in is the date.
  useEffect(() => {
    if (props.prefill) expiresField.current?.focus();
  }, [props.prefill]);
  const input = (set: (value: string) => void) => (event: Event) =>
    set((event.currentTarget as HTMLInputElement).value);
  const submit = async (event: Event) => {
    event.preventDefault();
    await action.run(async () => {
      const made = await call(
        api.POST('/api/groups/{group}/endorsements', {
          params: { path: { group: props.group } },
          body: {
            image: image.trim(),
            ...(version.trim() ? { version: Number(version) } : {}),
            expires,
            ...(comment.trim() ? { comment: comment.trim() } : {}),
          },
        }),
      );
      setImage('');
      setVersion('');
      setExpires('');
      setComment('');
      props.onEndorsed();
      return `Endorsed ${made.image} version ${made.version} for ${made.group} until ${date(made.expires)}.`;
    });
  };
  return (
    <form class="card" onSubmit={submit} aria-labelledby="endorse-heading">
      <h2 id="endorse-heading">Endorse a version</h2>
      <p class="muted">
        The group’s list offers the version you endorse until the date you choose; endorsing an image again
        replaces its endorsement. The image must be public, shared with {props.group}, or owned by a member.
      </p>
      <div class="two">
        <div class="field">
          <label>
            Image
            <input
              name="image"
              aria-describedby="endorse-image-hint"
              value={image}
              onInput={input(setImage)}
              required
              pattern={IMAGE_PATTERN}
              placeholder="bob/rhel9-worker.qcow2"
              autocomplete="off"
              spellcheck={false}
            />
          </label>
          <span class="hint" id="endorse-image-hint">
            As owner/name.
          </span>
        </div>
        <div class="field">
          <label>
            Version
            <input
              name="version"
              type="number"
              aria-describedby="endorse-version-hint"
              value={version}
              onInput={input(setVersion)}
              min={1}
              step={1}
              inputMode="numeric"
              placeholder="current"
            />
          </label>
          <span class="hint" id="endorse-version-hint">
            Empty: the image’s current version.
          </span>
        </div>
        <div class="field">
          <label>
            Expires at 00:00 UTC on
            <input
              ref={expiresField}
              name="expires"
              type="date"
              aria-describedby="endorse-expires-hint"
              value={expires}
              onInput={input(setExpires)}
              required
              min={tomorrow()}
            />
          </label>
          <span class="hint" id="endorse-expires-hint">
            After it sites stop trusting the endorsement: endorse again before then to keep it.
          </span>
        </div>
        <label>
          Comment
          <input name="comment" value={comment} onInput={input(setComment)} autocomplete="off" />
        </label>
      </div>
      <ErrorBox error={action.error} title="Nothing was endorsed." />
      {action.notice && <Notice ok>{action.notice}</Notice>}
      <button type="submit" class="primary" disabled={action.busy}>
        {action.busy ? 'Endorsing…' : 'Endorse'}
      </button>
    </form>
  );
}

/* ---------------------------------------------------------------- Subscribers */

function Subscribers({ group }: { group: string }) {
  const subscribers = useAsync(
    () => call(api.GET('/api/groups/{group}/subscribers', { params: { path: { group } } })),
    [group],
  );
  const [site, setSite] = useState('');
  const [made, setMade] = useState<Subscriber | null>(null);
  const [notice, setNotice] = useState('');
  const action = useAction();
  const add = async (event: Event) => {
    event.preventDefault();
    const name = site.trim();
    if (!name) return;
    setNotice('');
    setMade(null);
    await action.run(async () => {
      const answer = await call(
        api.POST('/api/groups/{group}/subscribers', { params: { path: { group } }, body: { name } }),
      );
      setMade(answer);
      setSite('');
      subscribers.reload();
      return undefined;
    });
  };
  const items = subscribers.data ?? [];
  return (
    <>
      <h2 id="subscribers-heading">Subscribers</h2>
      <p class="muted">
        A site reading a list that holds private images needs a token of its own, and so does one reading any
        of the group’s lists while they are for subscribers only. Revoking a token refuses that site’s next
        fetch.
      </p>
      {notice && <Notice ok>{notice}</Notice>}
      <ErrorBox error={subscribers.error} title="The subscribers could not be listed." />
      {subscribers.loading && !subscribers.data && <Loading what="subscribers" />}
      {subscribers.data &&
        (items.length === 0 ? (
          <p class="muted">No subscribers yet.</p>
        ) : (
          <div class="table-wrap">
            <table aria-labelledby="subscribers-heading">
              <thead>
                <tr>
                  <th scope="col">Site</th>
                  <th scope="col">Added by</th>
                  <th scope="col">Added</th>
                  <th scope="col">
                    <span class="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {items.map((subscriber) => (
                  <SubscriberRow
                    key={subscriber.id}
                    group={group}
                    subscriber={subscriber}
                    onRevoked={() => {
                      if (made?.id === subscriber.id) setMade(null);
                      setNotice(`Revoked the token of ${subscriber.name}.`);
                      subscribers.reload();
                    }}
                  />
                ))}
              </tbody>
            </table>
          </div>
        ))}
      <form class="inline" onSubmit={add}>
        <label>
          Add a subscriber (site name)
          <input
            name="subscriber"
            value={site}
            onInput={(event) => setSite((event.currentTarget as HTMLInputElement).value)}
            required
            maxLength={200}
            placeholder="cern-cloud"
            autocomplete="off"
          />
        </label>
        <button type="submit" disabled={action.busy}>
          {action.busy ? 'Adding…' : 'Add subscriber'}
        </button>
      </form>
      <ErrorBox error={action.error} title="The subscriber was not added." />
      {made && (
        <div class="success" role="status">
          <p>
            <strong>Added {made.name}.</strong> Its token is shown only now: the server keeps only a digest of
            it. Give the site the token, or the list URL with the token in it.
          </p>
          <dl class="details">
            <div>
              <dt>Token</dt>
              <dd>
                <Copyable text={made.token ?? ''} label={`the token of ${made.name}`} />
              </dd>
            </div>
            <div>
              <dt>List URL</dt>
              <dd>
                <Copyable text={made.list_url ?? ''} label={`the list URL of ${made.name}`} />
              </dd>
            </div>
          </dl>
        </div>
      )}
    </>
  );
}

function SubscriberRow(props: { group: string; subscriber: Subscriber; onRevoked: () => void }) {
  const { subscriber: s } = props;
  const action = useAction();
  const [confirming, setConfirming] = useState(false);
  const { yes, ask } = useConfirmFocus(confirming);
  const id = `subscriber-${s.id}`;
  const revoke = async () => {
    const ok = await action.run(async () => {
      await call(
        api.DELETE('/api/groups/{group}/subscribers/{id}', {
          params: { path: { group: props.group, id: s.id } },
        }),
      );
      return undefined;
    });
    if (ok) {
      setConfirming(false);
      props.onRevoked();
    }
  };
  return (
    <>
      <tr>
        <th scope="row">{s.name}</th>
        <td>{s.created_by ?? '—'}</td>
        <td>{date(s.created)}</td>
        <td class="actions">
          <button
            type="button"
            class="small"
            disabled={action.busy}
            aria-expanded={confirming}
            aria-label={`Revoke the token of ${s.name}`}
            ref={ask}
            onClick={() => setConfirming(!confirming)}
          >
            Revoke…
          </button>
        </td>
      </tr>
      {(confirming || action.error) && (
        <tr class="detail">
          <td colSpan={4}>
            {confirming && (
              <div role="alertdialog" aria-labelledby={`${id}-confirm`}>
                <p id={`${id}-confirm`}>
                  Revoke the token of <strong>{s.name}</strong>? The site can no longer read the group’s lists
                  that hold private images.
                </p>
                <button ref={yes} type="button" class="danger" disabled={action.busy} onClick={revoke}>
                  Yes, revoke it
                </button>{' '}
                <button type="button" onClick={() => setConfirming(false)}>
                  Cancel
                </button>
              </div>
            )}
            <ErrorBox error={action.error} title="The token was not revoked." />
          </td>
        </tr>
      )}
    </>
  );
}
