/**
 * Capabilities: macaroons a user asks for on an image's or a namespace's bytes URL, to hand to a client that
 * has no certificate (qemu's curl driver, a cloud's image import, FTS). A capability carries its owner's
 * rights as they are when it is used, narrowed by its caveats (capabilities/caveats.ts); it never grants more
 * than its owner has. Each has an id (the macaroon's identifier): its owner lists and revokes it; rotating the
 * server's secret (kept in the database, so every server sharing it sees the rotation at once) revokes all.
 */
import { randomBytes } from 'node:crypto';
import {
  type Activity,
  type Capability,
  type CapabilityListQuery,
  type CapabilityRequest,
  RepomanError,
} from '@repoman/core';
import { type Actor, canCreateImage, canDeleteImage, canModifyImage } from '../authz.ts';
import {
  activitiesOf,
  type CapabilityRequestFacts,
  durationSeconds,
  parseCaveat,
  pathWithin,
  refusalOf,
} from '../capabilities/caveats.ts';
import { mintMacaroon, parseMacaroon, serializeMacaroon, signedWith } from '../capabilities/macaroon.ts';
import {
  type CapabilityWithUser,
  currentKey,
  deleteCapabilitiesExpiredBefore,
  findCapabilityWithKey,
  insertCapability,
  listCapabilities,
  revokeCapability,
} from '../db/capabilities-dal.ts';
import type { Db } from '../db/schema.ts';
import { findUserByName } from '../db/users-dal.ts';
import { guardService, nowIso, type PageOf } from './common.ts';
import type { IdentityService } from './identity.ts';
import { createImageAccess, type ImageRef } from './image-access.ts';

export interface CapabilityPolicy {
  /** Validity of a capability whose request names none. */
  defaultValiditySeconds: number;
  /** The longest validity granted; a longer request gets this. */
  maxValiditySeconds: number;
}

/** What a capability is asked for: an image (named in full), a namespace, or the whole tree. */
export type CapabilityTarget =
  | { kind: 'image'; ref: ImageRef; path: string }
  | { kind: 'namespace'; owner: string; path: string }
  | { kind: 'tree'; path: string };

export interface IssuedCapabilityView {
  macaroon: string;
  id: string;
  expires: string;
}

/** A capability's id (its macaroon's identifier): 16 random bytes in hex. */
const ID = /^[0-9a-f]{32}$/;

/** What a capability asked for without an activity caveat allows: reading. */
const READS: Activity[] = ['DOWNLOAD', 'LIST', 'READ_METADATA'];

/** The activities that change something: asking for them needs the right to make that change. */
const WRITES: readonly Activity[] = ['UPLOAD', 'DELETE', 'MANAGE'];

/** Expired capabilities are kept this long for their owners' lists, then deleted. */
const KEEP_EXPIRED_MS = 7 * 24 * 3600 * 1000;

function viewOf(row: CapabilityWithUser): Capability {
  return {
    id: row.id,
    user: row.user_name,
    path: row.path,
    activities: row.activities.split(',').filter(Boolean) as Activity[],
    created: row.created,
    expires: row.expires,
    revoked: row.revoked,
    revoked_reason: row.revoked_reason,
  };
}

export function createCapabilityService(deps: {
  db: Db;
  identity: IdentityService;
  policy: CapabilityPolicy;
}) {
  const { db, identity, policy } = deps;
  const access = createImageAccess(db);

  /** Refuses what the actor may not ask for on the target: 404 for what they may not see, 403 for writes. */
  async function checkTarget(actor: Actor, target: CapabilityTarget, activities: readonly Activity[]) {
    const writes = activities.filter((a) => WRITES.includes(a));
    const refuse = () =>
      new RepomanError(
        'forbidden',
        `You may not ${writes.join(', ')} at ${target.path}, so no capability can allow it`,
      );
    if (target.kind === 'tree') {
      if (writes.length > 0 && !actor.isAdmin) throw refuse();
      return;
    }
    if (target.kind === 'namespace') {
      const owner = await findUserByName(db, target.owner);
      if (!owner) throw new RepomanError('not_found', `No namespace '${target.owner}'`);
      if (writes.length > 0 && !canCreateImage(actor, owner.id)) throw refuse();
      return;
    }
    const found = await access.find(actor, target.ref).catch(async (error: unknown) => {
      // A name not taken yet: a capability there that may write (a grid tool's PUT, the destination of a
      // third-party copy, which gfal2 asks for with every activity) is one to create the image, for whoever
      // may create it. One that may only read it is a typo's: still "not found".
      if (!(error instanceof RepomanError) || error.code !== 'image_not_found') throw error;
      const owner = await findUserByName(db, target.ref.owner);
      if (owner && writes.length > 0 && canCreateImage(actor, owner.id)) return null;
      throw error;
    });
    if (!found) return;
    const may: Record<string, boolean> = {
      UPLOAD: canModifyImage(actor, found.target),
      MANAGE: canModifyImage(actor, found.target),
      DELETE: canDeleteImage(actor, found.target),
    };
    if (writes.some((a) => !may[a])) throw refuse();
  }

  return guardService({
    /**
     * A new capability for `target`, with the caveats asked for (each one checked) plus those the server
     * adds: the target's path, the activities, and the expiry.
     */
    async issue(
      actor: Actor,
      target: CapabilityTarget,
      request: CapabilityRequest,
      location: string,
    ): Promise<IssuedCapabilityView> {
      const asked = request.caveats ?? [];
      for (const caveat of asked) {
        const parsed = parseCaveat(caveat);
        if (!parsed)
          throw new RepomanError(
            'invalid_field',
            `Unknown or malformed caveat '${caveat}' (this server takes activity:, path:, before: and ip:)`,
            { details: { field: 'caveats' } },
          );
        if (
          parsed.kind === 'path' &&
          !pathWithin(parsed.path, target.path) &&
          !pathWithin(target.path, parsed.path)
        )
          throw new RepomanError(
            'invalid_field',
            `The caveat '${caveat}' is outside ${target.path}, where the capability was asked for`,
            { details: { field: 'caveats' } },
          );
      }
      // Without an activity caveat, reading: a capability to change something is asked for.
      const granted = asked.some((c) => c.startsWith('activity:')) ? activitiesOf(asked) : READS;
      if (granted.length === 0)
        throw new RepomanError('invalid_field', 'The activity caveats leave nothing allowed', {
          details: { field: 'caveats' },
        });
      await checkTarget(actor, target, granted);
      let seconds = policy.defaultValiditySeconds;
      if (request.validity !== undefined) {
        const asked = durationSeconds(request.validity);
        if (asked === null || asked <= 0)
          throw new RepomanError(
            'invalid_field',
            `validity '${request.validity}' is not an ISO 8601 duration such as PT1H or P7D`,
            { details: { field: 'validity' } },
          );
        seconds = asked;
      }
      seconds = Math.min(seconds, policy.maxValiditySeconds);
      const now = new Date();
      const expires = new Date(
        Math.floor(now.getTime() / 1000) * 1000 + Math.ceil(seconds) * 1000,
      ).toISOString();
      const key = await currentKey(db);
      const id = randomBytes(16).toString('hex');
      await deleteCapabilitiesExpiredBefore(db, new Date(now.getTime() - KEEP_EXPIRED_MS).toISOString());
      await insertCapability(db, {
        id,
        user_id: actor.id,
        key_generation: key.generation,
        path: target.path,
        activities: granted.join(','),
        created: now.toISOString(),
        expires,
        revoked: null,
        revoked_reason: null,
      });
      const caveats = [
        `path:${target.path}`,
        `activity:${granted.join(',')}`,
        `before:${expires}`,
        ...asked.filter((c) => !c.startsWith('activity:')),
      ];
      const macaroon = mintMacaroon(Buffer.from(key.secret, 'hex'), location, id, caveats);
      return { macaroon: serializeMacaroon(macaroon), id, expires };
    },

    /**
     * The user a capability acts for, if the token is a capability of this server, signed with its current
     * secret, neither revoked nor expired, and its caveats allow this request. `facts` (given the owner's
     * name) is asked for only once the token is known to be genuine.
     */
    async authenticate(
      token: string,
      facts: (owner: string) => CapabilityRequestFacts,
    ): Promise<{ actor: Actor; capability: string }> {
      const macaroon = parseMacaroon(token);
      const invalid = (why: string) => new RepomanError('capability_invalid', `The capability ${why}`);
      if (!macaroon) throw invalid('is not a macaroon this server can read');
      if (!ID.test(macaroon.identifier)) throw invalid('was not issued by this server');
      const row = await findCapabilityWithKey(db, macaroon.identifier);
      if (!row) throw invalid('was not issued by this server, or it expired long ago');
      // Its key is gone once the secret was rotated (whether or not the rotation got to mark its row).
      if (row.secret === null)
        throw new RepomanError(
          'capability_revoked',
          "The capability was revoked when the server's secret was rotated; ask for a new one",
        );
      if (!signedWith(macaroon, Buffer.from(row.secret, 'hex')))
        throw invalid('was altered after it was issued');
      if (row.revoked) throw new RepomanError('capability_revoked', `The capability ${row.id} was revoked`);
      // Signed, so its caveats hold the path, activities and expiry the server gave it, and any added since.
      const refusal = refusalOf(macaroon.caveats, facts(row.user_name));
      if (refusal?.expired)
        throw new RepomanError('capability_expired', `The capability ${row.id} expired: ${refusal.reason}`);
      if (refusal)
        throw new RepomanError(
          'capability_denied',
          `The capability ${row.id} does not allow this: ${refusal.reason}`,
        );
      return { actor: await identity.actorForUser(row.user_id), capability: row.id };
    },

    /** The caller's capabilities (admins: anyone's, or one user's), newest first. */
    async list(
      actor: Actor,
      query: Required<Pick<CapabilityListQuery, 'limit' | 'offset'>> & CapabilityListQuery,
    ): Promise<PageOf<Capability>> {
      let userId: number | null = actor.id;
      if (query.user !== undefined && query.user !== actor.name) {
        if (!actor.isAdmin)
          throw new RepomanError('forbidden', "Only admins may list other users' capabilities");
        const user = await findUserByName(db, query.user);
        if (!user) throw new RepomanError('user_not_found', `No user '${query.user}'`);
        userId = user.id;
      } else if (query.user === undefined && actor.isAdmin) {
        userId = null;
      }
      const { items, total } = await listCapabilities(db, {
        userId,
        usableAt: query.all ? null : nowIso(),
        limit: query.limit,
        offset: query.offset,
      });
      return { items: items.map(viewOf), total };
    },

    /** Revokes one of the caller's capabilities (admins: anyone's); revoking it again changes nothing. */
    async revoke(actor: Actor, id: string): Promise<Capability> {
      const notFound = () => new RepomanError('capability_not_found', `No capability '${id}'`);
      const row = ID.test(id) ? await findCapabilityWithKey(db, id) : undefined;
      if (!row || (row.user_id !== actor.id && !actor.isAdmin)) throw notFound();
      const now = nowIso();
      const revoked = await revokeCapability(db, id, now);
      return viewOf(revoked ? { ...row, revoked: now, revoked_reason: 'revoked' } : row);
    },
  });
}

export type CapabilityService = ReturnType<typeof createCapabilityService>;
