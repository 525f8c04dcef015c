/** Images: mine, shared with me, public; search, filters, sorting and pages, all kept in the URL. */
import { useState } from 'preact/hooks';
import { api, call } from '../api/client';
import { bytes, date } from '../lib/format';
import { imagePath, navigate, withQuery } from '../lib/router';
import { isAdmin, type Session, userName } from '../lib/session';
import { Badges, ErrorBox, Loading, Pager, useAsync } from '../lib/ui';
import { SignInHint } from './account';

const LIMIT = 25;
const VIEWS = [
  ['all', 'All I can see'],
  ['mine', 'Mine'],
  ['shared', 'Shared with me'],
  ['public', 'Public'],
] as const;
const FILTERS = [
  ['os_type', 'OS type', 'linux'],
  ['os_variant', 'OS variant', 'rhel9'],
  ['os_arch', 'Architecture', 'x86_64'],
  ['hypervisor', 'Hypervisor', 'kvm'],
] as const;
const FORMATS = ['qcow2', 'raw', 'vmdk', 'vhdx', 'vpc', 'vdi', 'iso', 'ova'];
type Sort = 'name' | 'owner' | 'created' | 'modified';
const SORTS: Sort[] = ['name', 'owner', 'created', 'modified'];

export function ImagesPage({ session, query }: { session: Session; query: URLSearchParams }) {
  const me = userName(session);
  const admin = isAdmin(session);
  const view = me ? (query.get('view') ?? 'all') : 'public';
  const sort: Sort = SORTS.includes(query.get('sort') as Sort) ? (query.get('sort') as Sort) : 'name';
  const order = query.get('order') === 'desc' ? 'desc' : 'asc';
  const offset = Math.max(0, Number(query.get('offset')) || 0);
  const filters = Object.fromEntries(
    [...FILTERS.map(([key]) => key), 'disk_format'].flatMap((key) => {
      const value = query.get(key);
      return value ? [[key, value]] : [];
    }),
  );
  const namePrefix = query.get('q') ?? '';

  const images = useAsync(
    () =>
      call(
        api.GET('/api/images', {
          params: {
            query: {
              ...filters,
              ...(namePrefix ? { name_prefix: namePrefix } : {}),
              ...(view === 'mine' && me ? { owner: me } : {}),
              ...(view === 'shared' ? { shared: true } : {}),
              ...(view === 'public' ? { public: true } : {}),
              sort,
              order,
              limit: LIMIT,
              offset,
            },
          },
        }),
      ),
    [query.toString(), me],
  );

  const sortHeader = (key: Sort, label: string) => {
    const active = sort === key;
    const next = active && order === 'asc' ? 'desc' : 'asc';
    return (
      <th scope="col" aria-sort={active ? (order === 'asc' ? 'ascending' : 'descending') : undefined}>
        <a class="sort" href={withQuery({ sort: key, order: next, offset: undefined })}>
          {label}
          {active ? (order === 'asc' ? ' ▲' : ' ▼') : ''}
        </a>
      </th>
    );
  };

  return (
    <section>
      <div class="title-row">
        <h1>Images</h1>
        {me && (
          <a class="button primary" href="/upload">
            Upload an image
          </a>
        )}
      </div>
      {!me && (
        <SignInHint
          session={session}
          httpsOrigin={images.data?.items[0] ? new URL(images.data.items[0].url).origin : undefined}
        />
      )}
      {me && (
        <nav class="tabs" aria-label="Which images">
          {VIEWS.map(([key, label]) => (
            <a
              key={key}
              href={withQuery({ view: key === 'all' ? undefined : key, offset: undefined })}
              aria-current={view === key ? 'page' : undefined}
            >
              {label}
            </a>
          ))}
        </nav>
      )}
      <SearchForm query={query} namePrefix={namePrefix} key={query.toString()} />
      <ErrorBox error={images.error} title="The images could not be listed." />
      {images.loading && !images.data && <Loading what="images" />}
      {images.data && (
        <>
          <p class="count" aria-live="polite">
            {images.data.total === 0
              ? query.toString() === '' || query.toString() === 'view=mine'
                ? me
                  ? 'No images yet: upload one.'
                  : 'No public images yet.'
                : 'No images match.'
              : `${images.data.total} image${images.data.total === 1 ? '' : 's'}`}
          </p>
          {images.data.items.length > 0 && (
            <div class="table-wrap">
              <table class="images">
                <caption class="visually-hidden">Images, sorted by {sort}</caption>
                <thead>
                  <tr>
                    {sortHeader('name', 'Name')}
                    {sortHeader('owner', 'Owner')}
                    <th scope="col">Size</th>
                    <th scope="col">Format</th>
                    <th scope="col">Virtual size</th>
                    <th scope="col">Version</th>
                    {sortHeader('modified', 'Modified')}
                    <th scope="col">Status</th>
                  </tr>
                </thead>
                <tbody>
                  {images.data.items.map((image) => (
                    <tr key={image.uuid}>
                      <td>
                        <a href={imagePath(image.owner, image.name)}>{image.name}</a>
                        {image.description && <div class="muted small">{image.description}</div>}
                      </td>
                      <td>{image.owner}</td>
                      <td class="number">{bytes(image.size)}</td>
                      <td>{image.disk_format ?? '—'}</td>
                      <td class="number">{bytes(image.virtual_size)}</td>
                      <td class="number">{image.version || '—'}</td>
                      <td>{date(image.modified)}</td>
                      <td>
                        <Badges image={image} me={admin ? null : me} />
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
          <Pager
            total={images.data.total}
            limit={LIMIT}
            offset={offset}
            href={(o) => withQuery({ offset: o || undefined })}
          />
        </>
      )}
    </section>
  );
}

function SearchForm({ query, namePrefix }: { query: URLSearchParams; namePrefix: string }) {
  const [open, setOpen] = useState(
    FILTERS.some(([key]) => query.get(key)) || Boolean(query.get('disk_format')),
  );
  const submit = (event: Event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    const changes: Record<string, string | undefined> = { offset: undefined };
    for (const key of ['q', 'disk_format', ...FILTERS.map(([k]) => k)])
      changes[key] = String(form.get(key) ?? '').trim() || undefined;
    navigate(withQuery(changes));
  };
  return (
    <search>
      <form class="search" onSubmit={submit}>
        <div class="row">
          <label>
            Name starts with
            <input name="q" type="search" defaultValue={namePrefix} autocomplete="off" />
          </label>
          <button type="submit">Search</button>
          <button type="button" class="link" aria-expanded={open} onClick={() => setOpen(!open)}>
            {open ? 'Fewer filters' : 'More filters'}
          </button>
        </div>
        {open && (
          <div class="row filters">
            {FILTERS.map(([key, label, example]) => (
              <label key={key}>
                {label}
                <input
                  name={key}
                  defaultValue={query.get(key) ?? ''}
                  placeholder={example}
                  autocomplete="off"
                />
              </label>
            ))}
            <label>
              Format
              <select name="disk_format">
                <option value="">any</option>
                {FORMATS.map((format) => (
                  <option key={format} selected={query.get('disk_format') === format}>
                    {format}
                  </option>
                ))}
              </select>
            </label>
          </div>
        )}
      </form>
    </search>
  );
}
