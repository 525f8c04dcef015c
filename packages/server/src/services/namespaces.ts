/**
 * Namespaces as a tree, for WebDAV listings (routes/webdav.ts): the namespaces a caller sees images in, and
 * every image a caller may see in one namespace. What a caller sees is exactly what `GET /api/images` lists
 * for them: their own images, the public ones, those shared with them or their groups (admins: all).
 */
import { MAX_PAGE_SIZE, RepomanError } from '@repoman/core';
import { type Actor, canSeeUserDetails } from '../authz.ts';
import { listImages, visibleNamespaces } from '../db/images-dal.ts';
import type { Db } from '../db/schema.ts';
import { findUserByName } from '../db/users-dal.ts';
import { guardService } from './common.ts';
import { type ImageView, imageView, visibilityOf } from './image-access.ts';

export interface NamespaceEntry {
  name: string;
  /** When its owner's account was made; null where the caller may not know (all but the owner and admins). */
  created: string | null;
  /** The newest change to an image the caller sees in it; else its creation, where they may know it. */
  modified: string | null;
}

export interface NamespaceListing extends NamespaceEntry {
  images: ImageView[];
}

export function createNamespaceService(deps: { db: Db }) {
  const { db } = deps;

  return guardService({
    /** The namespaces holding images the caller may see, with their own beside them (even if empty). */
    async list(actor: Actor | null): Promise<NamespaceEntry[]> {
      const found = await visibleNamespaces(db, visibilityOf(actor));
      const entries: NamespaceEntry[] = found.map((n) => ({
        name: n.name,
        created: null,
        modified: n.modified,
      }));
      if (actor && !entries.some((entry) => entry.name === actor.name)) {
        const own = await findUserByName(db, actor.name);
        if (own) entries.push({ name: own.name, created: own.created, modified: own.created });
        entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      }
      return entries;
    },

    /**
     * A namespace and every image in it the caller may see. A namespace is its owner's account: callers with a
     * certificate see any user's (users are listed to them anyway); anonymous ones only those with public images.
     */
    async show(actor: Actor | null, owner: string): Promise<NamespaceListing> {
      const user = await findUserByName(db, owner);
      const notFound = () => new RepomanError('not_found', `No namespace '${owner}'`);
      if (!user) throw notFound();
      const images: ImageView[] = [];
      for (let offset = 0; ; offset += MAX_PAGE_SIZE) {
        const { rows } = await listImages(db, {
          visibleTo: visibilityOf(actor),
          ownerId: user.id,
          sort: 'name',
          order: 'asc',
          limit: MAX_PAGE_SIZE,
          offset,
        });
        images.push(...rows.map((row) => imageView(row)));
        if (rows.length < MAX_PAGE_SIZE) break;
      }
      if (!actor && images.length === 0) throw notFound();
      // When the account was made is the user's and the admins' to know, as in GET /api/users/{user}.
      const created = actor && canSeeUserDetails(actor, user) ? user.created : null;
      let newest = created; // (ISO dates: compared as text)
      for (const image of images) if (newest === null || image.modified > newest) newest = image.modified;
      return { name: user.name, created, modified: newest, images };
    },
  });
}

export type NamespaceService = ReturnType<typeof createNamespaceService>;
