/**
 * Giving images away (docs/api.md#transfers): on an image's Edit page its owner offers it to another user (an
 * admin may give it at once); on the Account page the receiver accepts or declines what is offered to them, and
 * the giver withdraws what they offered. Until an offer is accepted the image stays its owner's.
 */
import { useState } from 'preact/hooks';
import { api, call, type Image, type Transfer } from '../api/client';
import { bytes, date } from '../lib/format';
import { imagePath, navigate } from '../lib/router';
import { isAdmin, type Session } from '../lib/session';
import { ErrorBox, Notice, useAction, useAsync, useConfirmFocus } from '../lib/ui';

/** The pending offers the signed-in user is a party to (admins: every offer), `to` or `from` them. */
const offers = (direction?: 'to' | 'from') =>
  call(
    api.GET('/api/transfers', { params: { query: { limit: 1000, ...(direction ? { direction } : {}) } } }),
  );

/** The Edit page's card: the image's pending offer (withdraw it), or a new one (admins: or give it now). */
export function GiveAway({ image, session }: { image: Image; session: Session }) {
  const admin = isAdmin(session);
  const action = useAction();
  const [receiver, setReceiver] = useState('');
  const [direct, setDirect] = useState(false);
  const [confirming, setConfirming] = useState(false);
  const { yes, ask } = useConfirmFocus(confirming);
  const label = `${image.owner}/${image.name}`;
  const pending = useAsync(
    async () => (await offers()).items.find((offer) => offer.image === label) ?? null,
    [label],
  );
  const users = useAsync(
    async () =>
      (await call(api.GET('/api/users', { params: { query: { limit: 1000 } } }))).items
        .map((u) => u.user_name)
        .filter((u) => u !== image.owner),
    [image.owner],
  );
  const path = { user: image.owner, image: image.name };

  const give = () =>
    action.run(async () => {
      const to = receiver.trim();
      const answer = (await call(
        api.POST('/api/images/{user}/{image}/transfer', {
          params: { path },
          body: { to, ...(direct ? { direct: true } : {}) },
        }),
      )) as Transfer | Image;
      setConfirming(false);
      if (direct) {
        const moved = answer as Image;
        navigate(imagePath(moved.owner, moved.name));
        return undefined;
      }
      const offer = answer as Transfer;
      setReceiver('');
      pending.reload();
      return `Offered to ${offer.to} until ${date(offer.expires)}. It stays ${image.owner}’s until ${offer.to} accepts it on their Account page (or with repoman accept-transfer ${offer.id}).`;
    });
  const withdraw = (offer: Transfer) =>
    action.run(async () => {
      await call(api.DELETE('/api/transfers/{id}', { params: { path: { id: offer.id } } }));
      pending.reload();
      return `The offer to ${offer.to} is withdrawn.`;
    });
  const confirmFirst = (event: Event) => {
    event.preventDefault();
    if (receiver.trim()) setConfirming(true);
  };

  const offer = pending.data;
  return (
    <div class="card">
      <h2>Give away</h2>
      <p class="muted">
        The user you give the image to accepts or declines it; until then it stays {image.owner}’s, in{' '}
        {image.owner}’s quota. Its versions, shares and public setting go with it.
      </p>
      <ErrorBox error={pending.error} title="The pending offer could not be shown." />
      {offer && (
        <div class="pending-offer">
          <p>
            Offered to <strong>{offer.to}</strong> until {date(offer.expires)}.{' '}
            <button type="button" class="small" disabled={action.busy} onClick={() => withdraw(offer)}>
              Withdraw the offer
            </button>
          </p>
        </div>
      )}
      {!confirming ? (
        <form class="inline" onSubmit={confirmFirst}>
          <label>
            {offer ? 'Offer it to someone else instead' : 'Give to user'}
            <input
              name="to"
              list="give-suggestions"
              autocomplete="off"
              required
              value={receiver}
              onInput={(e) => setReceiver((e.currentTarget as HTMLInputElement).value)}
            />
          </label>
          <datalist id="give-suggestions">
            {(users.data ?? []).map((u) => (
              <option key={u} value={u} />
            ))}
          </datalist>
          {admin && (
            <label class="check">
              <input
                type="checkbox"
                checked={direct}
                onChange={(e) => setDirect((e.currentTarget as HTMLInputElement).checked)}
              />{' '}
              Give it now, without asking (admins)
            </label>
          )}
          <button type="submit" ref={ask} disabled={action.busy}>
            {direct ? 'Give now…' : 'Offer…'}
          </button>
        </form>
      ) : (
        <div role="alertdialog" aria-labelledby="confirm-give">
          <p id="confirm-give">
            {direct ? (
              <>
                Give <strong>{label}</strong> to <strong>{receiver.trim()}</strong> now? It moves into their
                namespace at once, if their quota holds it.
              </>
            ) : (
              <>
                Offer <strong>{label}</strong> to <strong>{receiver.trim()}</strong>? It becomes theirs when
                they accept{offer ? `; the offer to ${offer.to} is replaced` : ''}.
              </>
            )}
          </p>
          <button type="button" class="primary" ref={yes} onClick={give} disabled={action.busy}>
            {direct ? `Yes, give it to ${receiver.trim()}` : `Yes, offer it to ${receiver.trim()}`}
          </button>{' '}
          <button type="button" onClick={() => setConfirming(false)}>
            Cancel
          </button>
        </div>
      )}
      <ErrorBox error={action.error} title="The image was not given away." />
      {action.notice && <Notice ok>{action.notice}</Notice>}
    </div>
  );
}

/** The Account page's section: offers made to me (accept, decline) and by me (withdraw). */
export function Offers() {
  const toMe = useAsync(() => offers('to'), []);
  const fromMe = useAsync(() => offers('from'), []);
  return (
    <>
      <h2>Images offered to you</h2>
      <ErrorBox error={toMe.error} title="The offers could not be shown." />
      {toMe.data &&
        (toMe.data.items.length === 0 ? (
          <p class="muted">Nobody is offering you an image.</p>
        ) : (
          <OfferTable offers={toMe.data.items} side="to" onChange={toMe.reload} />
        ))}
      <h2>Images you offered</h2>
      <ErrorBox error={fromMe.error} title="Your offers could not be shown." />
      {fromMe.data &&
        (fromMe.data.items.length === 0 ? (
          <p class="muted">
            You are offering no image. Offer one from its Edit page (Give away), or with{' '}
            <code>repoman modify-image IMAGE -N USER</code>.
          </p>
        ) : (
          <OfferTable offers={fromMe.data.items} side="from" onChange={fromMe.reload} />
        ))}
    </>
  );
}

function OfferTable(props: { offers: Transfer[]; side: 'to' | 'from'; onChange: () => void }) {
  return (
    <div class="table-wrap">
      <table>
        <caption class="visually-hidden">
          {props.side === 'to' ? 'Images offered to you' : 'Images you offered'}
        </caption>
        <thead>
          <tr>
            <th scope="col">Image</th>
            <th scope="col">{props.side === 'to' ? 'From' : 'To'}</th>
            <th scope="col">Size</th>
            <th scope="col">Description</th>
            <th scope="col">Offered</th>
            <th scope="col">Expires</th>
            <th scope="col">
              <span class="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {props.offers.map((offer) => (
            <OfferRow key={offer.id} offer={offer} side={props.side} onChange={props.onChange} />
          ))}
        </tbody>
      </table>
    </div>
  );
}

type Answer = 'accept' | 'decline' | 'cancel';

function OfferRow({ offer, side, onChange }: { offer: Transfer; side: 'to' | 'from'; onChange: () => void }) {
  const action = useAction();
  const [asking, setAsking] = useState<Answer | null>(null);
  // The button that asked last, where focus returns when its question goes.
  const [asked, setAsked] = useState<Answer>('accept');
  const toggle = (what: Answer) => {
    setAsked(what);
    setAsking(asking === what ? null : what);
  };
  const [name, setName] = useState(offer.image.slice(offer.image.indexOf('/') + 1));
  const [moved, setMoved] = useState<Image | null>(null);
  const { yes, ask } = useConfirmFocus(asking !== null);
  const id = `offer-${offer.id}`;
  const path = { params: { path: { id: offer.id } } };

  const answer = (what: Answer) =>
    action.run(async () => {
      if (what === 'accept') {
        const original = offer.image.slice(offer.image.indexOf('/') + 1);
        const image = await call(
          api.POST('/api/transfers/{id}/accept', {
            ...path,
            body: name.trim() && name.trim() !== original ? { name: name.trim() } : {},
          }),
        );
        setMoved(image);
        setAsking(null);
        return undefined;
      }
      await call(
        what === 'decline'
          ? api.POST('/api/transfers/{id}/decline', { ...path, body: {} })
          : api.DELETE('/api/transfers/{id}', path),
      );
      setAsking(null);
      onChange();
      return undefined;
    });

  if (moved)
    return (
      <tr>
        <td colSpan={7}>
          <Notice ok>
            Accepted: the image is now{' '}
            <a href={imagePath(moved.owner, moved.name)}>{`${moved.owner}/${moved.name}`}</a>.
          </Notice>
        </td>
      </tr>
    );
  const who = side === 'to' ? offer.from : offer.to;
  return (
    <>
      <tr>
        <th scope="row">{offer.image}</th>
        <td>{who}</td>
        <td class="number">{bytes(offer.size)}</td>
        <td>{offer.description ?? '—'}</td>
        <td>{date(offer.created)}</td>
        <td>{date(offer.expires)}</td>
        <td class="actions">
          {side === 'to' ? (
            <>
              <button
                type="button"
                class="small primary"
                disabled={action.busy}
                aria-expanded={asking === 'accept'}
                aria-label={`Accept ${offer.image}`}
                ref={asked === 'accept' ? ask : undefined}
                onClick={() => toggle('accept')}
              >
                Accept…
              </button>{' '}
              <button
                type="button"
                class="small"
                disabled={action.busy}
                aria-expanded={asking === 'decline'}
                aria-label={`Decline ${offer.image}`}
                ref={asked === 'decline' ? ask : undefined}
                onClick={() => toggle('decline')}
              >
                Decline…
              </button>
            </>
          ) : (
            <button
              type="button"
              class="small"
              disabled={action.busy}
              aria-expanded={asking === 'cancel'}
              aria-label={`Withdraw the offer of ${offer.image} to ${offer.to}`}
              ref={asked === 'cancel' ? ask : undefined}
              onClick={() => toggle('cancel')}
            >
              Withdraw…
            </button>
          )}
        </td>
      </tr>
      {(asking || action.error) && (
        <tr class="detail">
          <td colSpan={7}>
            {asking && (
              <div role="alertdialog" aria-labelledby={`${id}-confirm`}>
                {asking === 'accept' ? (
                  <>
                    <p id={`${id}-confirm`}>
                      Take <strong>{offer.image}</strong> ({bytes(offer.size)}) into your namespace? It counts
                      against your quota from then on.
                    </p>
                    <label>
                      Name in your namespace
                      <input
                        value={name}
                        required
                        pattern="[A-Za-z0-9_\-][A-Za-z0-9._\-]{0,127}"
                        onInput={(e) => setName((e.currentTarget as HTMLInputElement).value)}
                      />
                    </label>
                  </>
                ) : asking === 'decline' ? (
                  <p id={`${id}-confirm`}>
                    Decline <strong>{offer.image}</strong>? It stays {offer.from}’s.
                  </p>
                ) : (
                  <p id={`${id}-confirm`}>
                    Withdraw the offer of <strong>{offer.image}</strong> to {offer.to}? It stays where it is.
                  </p>
                )}
                <button
                  ref={yes}
                  type="button"
                  class={asking === 'accept' ? 'primary' : 'danger'}
                  disabled={action.busy}
                  onClick={() => answer(asking)}
                >
                  {asking === 'accept'
                    ? `Yes, accept it as ${name.trim() || '…'}`
                    : asking === 'decline'
                      ? 'Yes, decline it'
                      : 'Yes, withdraw it'}
                </button>{' '}
                <button type="button" onClick={() => setAsking(null)}>
                  Cancel
                </button>
              </div>
            )}
            <ErrorBox
              error={action.error}
              title={asking === 'accept' ? 'The image was not accepted.' : 'Nothing was changed.'}
            />
          </td>
        </tr>
      )}
    </>
  );
}
