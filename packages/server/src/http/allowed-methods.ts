/**
 * Which methods each API path takes, from the routes themselves: a method a known path does not take is a 405
 * with `Allow` (RFC 9110 §15.5.6), not a 404 that grid tools report as "No such file", and OPTIONS answers
 * with the same list. Kept in a router of its own (Fastify's, find-my-way), filled as routes are registered,
 * so that a new route is counted without anyone listing it here.
 *
 * Only paths under /api count: the web interface's catch-all (`/*`) would make every path "known".
 */

import type { FastifyInstance } from 'fastify';
import FindMyWay from 'find-my-way';

export interface AllowedMethods {
  /** The methods the path of `url` takes (sorted, OPTIONS included), or null for a path no route knows. */
  of(url: string): string[] | null;
}

export function trackAllowedMethods(app: FastifyInstance): AllowedMethods {
  /** Route patterns (parameters renamed alike: `/raw/:user` and `/raw/:image` are one path) → methods. */
  const patterns = new Map<string, Set<string>>();
  let router: FindMyWay.Instance<FindMyWay.HTTPVersion.V1> | null = null;
  app.addHook('onRoute', (route) => {
    // (a wildcard, such as the OPTIONS answer for every path, would make every path known)
    if (!route.url.startsWith('/api/') || route.url.includes('*')) return;
    const pattern = route.url.replace(/:[^/]+/g, ':p');
    const methods = patterns.get(pattern) ?? new Set(['OPTIONS']);
    for (const method of Array.isArray(route.method) ? route.method : [route.method]) methods.add(method);
    // Fastify answers HEAD for every GET it registers, unless the route says otherwise.
    if (methods.has('GET') && route.exposeHeadRoute !== false) methods.add('HEAD');
    patterns.set(pattern, methods);
    router = null;
  });
  return {
    of(url) {
      if (!router) {
        const built = FindMyWay();
        for (const [pattern, methods] of patterns)
          built.on('GET', pattern, () => {}, { methods: [...methods].sort() });
        router = built;
      }
      const found = router.find('GET', url.split('?')[0] ?? '');
      return found ? ((found.store as { methods: string[] }).methods ?? null) : null;
    },
  };
}
