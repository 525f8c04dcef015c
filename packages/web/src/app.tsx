/** The frame (header, navigation, skip link) and the page the path names. */
import type { ComponentChildren } from 'preact';
import { useEffect } from 'preact/hooks';
import { plainHttp } from './api/client';
import { match, useLocation } from './lib/router';
import { isAdmin, loadSession, type Session } from './lib/session';
import { ErrorBox, Loading, useAsync } from './lib/ui';
import { AccountPage } from './pages/account';
import { AdminPage } from './pages/admin/index';
import { CloudsPage } from './pages/clouds';
import { EditPage } from './pages/edit';
import { GroupPage } from './pages/group';
import { ImagePage } from './pages/image';
import { ImagesPage } from './pages/images';
import { UploadPage } from './pages/upload';

/** The page a path names, and its title. */
function route(
  s: Session,
  path: string,
  query: URLSearchParams,
  reload: () => void,
): [string, ComponentChildren] {
  if (match('/', path) || match('/images', path)) return ['Images', <ImagesPage session={s} query={query} />];
  const image = match('/images/:owner/:name', path);
  if (image)
    return [image.name ?? '', <ImagePage session={s} owner={image.owner ?? ''} name={image.name ?? ''} />];
  const edit = match('/images/:owner/:name/edit', path);
  if (edit) return ['Edit', <EditPage session={s} owner={edit.owner ?? ''} name={edit.name ?? ''} />];
  if (match('/upload', path)) return ['Upload', <UploadPage session={s} query={query} />];
  if (match('/account', path)) return ['Account', <AccountPage session={s} reload={reload} />];
  const group = match('/groups/:name', path);
  if (group)
    return [`Group ${group.name ?? ''}`, <GroupPage session={s} name={group.name ?? ''} query={query} />];
  if (match('/clouds', path)) return ['Clouds', <CloudsPage session={s} />];
  const admin = match('/admin', path) ?? match('/admin/:tab', path);
  if (admin) return ['Admin', <AdminPage session={s} tab={admin.tab ?? 'users'} />];
  return [
    'Not found',
    <section>
      <h1>No such page</h1>
      <p>
        <a href="/">See the images</a>.
      </p>
    </section>,
  ];
}

export function App() {
  const { path, query } = useLocation();
  const session = useAsync(loadSession, []);

  const s = session.data;
  const [title, page] = s ? route(s, path, query, session.reload) : ['Images', null];
  useEffect(() => {
    document.title = `${title} · Repoman`;
  }, [title]);

  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href="/">
          Repoman
        </a>
        {s && <Navigation session={s} path={path} />}
        {s && <Who session={s} />}
      </header>
      <main id="main" tabIndex={-1}>
        {session.loading && !s && <Loading what="your account" />}
        <ErrorBox error={session.error} title="The server could not be asked who you are." />
        {page}
      </main>
      <footer class="bottom">{!plainHttp && <a href="/api/openapi.json">API (OpenAPI)</a>}</footer>
    </>
  );
}

function Navigation({ session, path }: { session: Session; path: string }) {
  const items: [string, string][] = [['/', 'Images']];
  if (session.kind === 'user') items.push(['/upload', 'Upload']);
  if (session.kind === 'user') items.push(['/clouds', 'Clouds']);
  if (session.kind !== 'public') items.push(['/account', 'Account']);
  if (isAdmin(session)) items.push(['/admin', 'Admin']);
  const current = (href: string) =>
    href === '/' ? path === '/' || path.startsWith('/images') : path.startsWith(href);
  return (
    <nav aria-label="Main">
      <ul>
        {items.map(([href, label]) => (
          <li key={href}>
            <a href={href} aria-current={current(href) ? 'page' : undefined}>
              {label}
            </a>
          </li>
        ))}
      </ul>
    </nav>
  );
}

function Who({ session }: { session: Session }) {
  if (session.kind === 'user')
    return (
      <a class="who" href="/account" title={session.user.client_dn ?? ''}>
        {session.user.user_name}
      </a>
    );
  if (session.kind === 'unknown')
    return (
      <a class="who warn" href="/account">
        Unknown certificate
      </a>
    );
  if (session.kind === 'public') return <span class="who">Public images</span>;
  return (
    <a class="who warn" href="/account">
      Not signed in
    </a>
  );
}
