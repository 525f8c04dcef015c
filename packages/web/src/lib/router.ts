/** A small history router: the path is the state; links inside the app navigate without reloading. */
import { useEffect, useState } from 'preact/hooks';

const listeners = new Set<() => void>();

export function navigate(to: string, replace = false) {
  if (to === location.pathname + location.search + location.hash) return;
  history[replace ? 'replaceState' : 'pushState'](null, '', to);
  for (const listener of listeners) listener();
  if (!replace) {
    window.scrollTo(0, 0);
    // A new page: screen readers start reading it from its content, as after a page load.
    document.getElementById('main')?.focus({ preventScroll: true });
  }
}

addEventListener('popstate', () => {
  for (const listener of listeners) listener();
});

// Same-origin links navigate in the page (ctrl/shift/middle clicks and downloads keep their usual meaning).
addEventListener('click', (event) => {
  if (
    event.defaultPrevented ||
    event.button !== 0 ||
    event.metaKey ||
    event.ctrlKey ||
    event.shiftKey ||
    event.altKey
  )
    return;
  const link = (event.target as Element).closest?.('a');
  if (!link || link.target || link.hasAttribute('download') || link.origin !== location.origin) return;
  if (link.pathname.startsWith('/api/')) return;
  if (link.hash && link.pathname === location.pathname && link.search === location.search) return; // in-page
  event.preventDefault();
  // (a #fragment goes along: the page it leads to shows that part once loaded, e.g. /clouds#GROUP)
  navigate(link.pathname + link.search + link.hash);
});

export interface Location {
  path: string;
  query: URLSearchParams;
}

export function useLocation(): Location {
  const [, setTick] = useState(0);
  useEffect(() => {
    const listener = () => setTick((n) => n + 1);
    listeners.add(listener);
    return () => void listeners.delete(listener);
  }, []);
  return { path: location.pathname, query: new URLSearchParams(location.search) };
}

/** Matches `/images/:owner/:name` against a path: the decoded parameters, or null. */
export function match(pattern: string, path: string): Record<string, string> | null {
  const want = pattern.split('/');
  const got = path.replace(/\/+$/, '').split('/');
  if (path === '/' && pattern === '/') return {};
  if (want.length !== got.length) return null;
  const params: Record<string, string> = {};
  for (const [i, part] of want.entries()) {
    const value = got[i] ?? '';
    if (part.startsWith(':')) {
      if (!value) return null;
      try {
        params[part.slice(1)] = decodeURIComponent(value);
      } catch {
        return null;
      }
    } else if (part !== value) return null;
  }
  return params;
}

/** Sets query parameters of the current page (empty values removed), keeping the rest. */
export function withQuery(changes: Record<string, string | number | undefined>): string {
  const query = new URLSearchParams(location.search);
  for (const [key, value] of Object.entries(changes)) {
    if (value === undefined || value === '') query.delete(key);
    else query.set(key, String(value));
  }
  const search = query.toString();
  return location.pathname + (search ? `?${search}` : '');
}

export const imagePath = (owner: string, name: string) =>
  `/images/${encodeURIComponent(owner)}/${encodeURIComponent(name)}`;
