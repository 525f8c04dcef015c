/**
 * The cloud sync's reconciler: makes each cloud hold what its group wants there (docs/clouds.md), as desired
 * state. For each cloud due (one server at a time: a lease in the database), it works out what should be
 * there (the group's endorsed versions, if the cloud follows them, and the current version of each image
 * chosen for it), lists the Glance images it owns there (those carrying `repoman_cloud` = the cloud's id),
 * and:
 * - a wanted version that is missing: made, after checking for Glint's three conflicts with the project's
 *   other images (same name, other bytes; same name and bytes, not Repoman's; same bytes under another
 *   name), and filled by Glance's web-download import from its pinned URL (a capability URL if private) or by
 *   an upload this server streams;
 * - one being filled: checked again soon; `active` with Glance's SHA-512 equal to Repoman's is present and
 *   verified; `active` with other bytes, or `killed`, is deleted and tried again, with backoff;
 * - an owned image no longer wanted (an old version once its successor is present, or one unsubscribed):
 *   deactivated, then deleted after `clouds.grace_seconds`;
 * - a Glance image it does not own is never touched.
 *
 * Every change in a cloud is in the audit log (actor: the sync), and /metrics counts transfers, failures and
 * bytes per cloud.
 */
import { randomUUID } from 'node:crypto';
import { Transform } from 'node:stream';
import { type CloudCopyState, imagePath, rawPath } from '@repoman/core';
import { canReadImage, isVisibleToGroup } from '../authz.ts';
import type { HashingPool } from '../blobs/hashing.ts';
import type { BlobStore } from '../blobs/store.ts';
import type { Glance, GlanceImage, OpenStack } from '../clouds/openstack.ts';
import {
  type CloudCopyRow,
  type CloudWithGroup,
  chosenImages,
  claimCloud,
  copiesOf,
  deleteCopy,
  dueClouds,
  findCloudById,
  releaseCloud,
  saveCopy,
} from '../db/clouds-dal.ts';
import { listEndorsements } from '../db/endorsements-dal.ts';
import { findImageWithAccessById, type ImageWithAccess } from '../db/images-dal.ts';
import { findVariant } from '../db/jobs-dal.ts';
import type { Db } from '../db/schema.ts';
import { findVersion } from '../db/versions-dal.ts';
import type { AuditService } from './audit.ts';
import type { CapabilityService } from './capabilities.ts';
import type { CloudService } from './clouds.ts';
import type { ConversionService } from './conversions.ts';
import type { IdentityService } from './identity.ts';
import { targetOf } from './image-access.ts';
import { createStoredDigests, type DigestTarget } from './versions/stored-digests.ts';

export interface SyncPolicy {
  /** How often each cloud is reconciled (and at once when something changes). */
  syncMs: number;
  /** How long an unwanted image stays (deactivated) before it is deleted. */
  graceMs: number;
  /** Uploads into clouds this server runs at once. */
  maxTransfers: number;
  /** Repoman's HTTPS URL as clouds reach it (web-download's source). */
  publicUrl: () => string;
}

/** What a cloud should hold of one image. */
interface Wanted {
  uuid: string;
  owner: string;
  name: string;
  version: number;
  size: number;
  sha512: string;
  format: string;
  blobKey: string;
  public: boolean;
  description: string | null;
  osVariant: string | null;
  osArch: string | null;
  /** In whose name a private image's capability URL is issued: its chooser, or its endorser. */
  issuer: number | null;
  /** Why it cannot go yet (a variant to make first), or null. */
  blocked: string | null;
}

export interface SyncEvents {
  transfer(cloud: string, outcome: 'ok' | 'failed', bytes: number): void;
}

const CHECK_SOON_MS = 2000;
/** How often an upload's progress is recorded. */
const PROGRESS_MS = 3000;
/** An upload with no progress recorded for this long has stopped (its server died): made again. */
const STALLED_UPLOAD_MS = 5 * 60_000;
/** A web-download import still `queued` this long after it was asked for did not start: made again. */
const IMPORT_START_MS = 60_000;
const LEASE_MS = 30 * 60_000;
const seg = encodeURIComponent;

/** Glance's `disk_format` for a stored format. */
const glanceFormat = (format: string) => (format === 'iso' ? 'iso' : format);

export function createCloudSync(deps: {
  db: Db;
  store: BlobStore;
  hashing: HashingPool;
  openstack: OpenStack;
  clouds: CloudService;
  capabilities: CapabilityService;
  identity: IdentityService;
  audit: AuditService;
  /** Converts a version to the format a cloud wants (a job in its owner's name). */
  conversions: ConversionService;
  policy: SyncPolicy;
  events?: SyncEvents | undefined;
  onError?: ((error: unknown, message: string) => void) | undefined;
}) {
  const { db, openstack, policy } = deps;
  const lease = `sync-${randomUUID()}`;
  const digestsOf = createStoredDigests({
    db,
    store: deps.store,
    hashing: deps.hashing,
    computes: ['sha512'],
  });
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<void> | null = null;
  let again = false;
  let closed = false;
  let uploads = 0;

  /** Records a change made in a cloud (the sync is the actor). */
  async function audit(
    cloud: CloudWithGroup,
    action: string,
    target: string,
    detail: Record<string, unknown>,
  ) {
    await deps.audit
      .record({
        at: new Date().toISOString(),
        actor: null,
        dn: null,
        address: null,
        requestId: lease,
        method: 'SYNC',
        path: `/api/clouds/${seg(cloud.group_name)}/${seg(cloud.name)}`,
        action,
        targetType: 'image',
        target,
        outcome: 'ok',
        status: 200,
        detail: { cloud: `${cloud.group_name}/${cloud.name}`, ...detail },
      })
      .catch((error: unknown) => deps.onError?.(error, 'recording a cloud change in the audit log failed'));
  }

  /**
   * Asks for a conversion of the version into the format the cloud takes, as a job in its owner's name (the
   * variant counts in their quota, as any variant); what the copy waits for meanwhile, or null if it is there.
   */
  async function convert(
    ownerId: number,
    ref: { owner: string; name: string },
    version: number,
    format: string,
  ) {
    try {
      const owner = await deps.identity.actorForUser(ownerId);
      const asked = await deps.conversions.request(owner, ref, {
        format: format as 'raw' | 'qcow2' | 'vmdk',
        version,
      });
      if ('variant' in asked)
        return `version ${version} was converted to ${format} just now: it goes at the next pass`;
      return `waiting for version ${version} to be converted to ${format} (job ${asked.job.id}, ${asked.job.state})`;
    } catch (error) {
      return `version ${version} cannot be converted to ${format}: ${error instanceof Error ? error.message : String(error)}`;
    }
  }

  /** Whether the image may go to the group's cloud: visible to the group, and readable by its chooser. */
  async function mayGo(
    cloud: CloudWithGroup,
    image: ImageWithAccess,
    chooser: number | null,
  ): Promise<boolean> {
    const target = targetOf(image);
    if (!isVisibleToGroup(target, cloud.group_name)) return false;
    if (chooser === null) return true;
    const actor = await deps.identity.actorForUser(chooser).catch(() => null);
    return actor !== null && canReadImage(actor, target);
  }

  /** The versions the cloud should hold: endorsed ones (if it follows them), then chosen images' current. */
  async function wantedOf(cloud: CloudWithGroup): Promise<Wanted[]> {
    /** Who chose each chosen image (null: an endorsement's, which the group vouches for). */
    const wanted = new Map<
      number,
      { imageId: number; version: number; chooser: number | null; issuer: number | null }
    >();
    if (cloud.follow_endorsed) {
      const { items } = await listEndorsements(db, {
        groupId: cloud.group_id,
        activeAt: new Date().toISOString(),
      });
      for (const e of items)
        wanted.set(e.image_id, {
          imageId: e.image_id,
          version: e.version,
          chooser: null,
          issuer: e.endorser_id,
        });
    }
    for (const chosen of await chosenImages(db, cloud.id))
      if (!wanted.has(chosen.image_id))
        wanted.set(chosen.image_id, {
          imageId: chosen.image_id,
          version: 0,
          chooser: chosen.chosen_by ?? cloud.created_by ?? -1,
          issuer: chosen.chosen_by ?? cloud.created_by,
        });
    const result: Wanted[] = [];
    for (const { imageId, version, chooser, issuer } of wanted.values()) {
      const image = await findImageWithAccessById(db, imageId);
      if (!image || image.version === 0) continue;
      // Sent only while it is visible to the group, and a chosen one while its chooser may still read it:
      // unshared since, it is no longer wanted there (and its copy is retired).
      if (!(await mayGo(cloud, image, chooser))) continue;
      const row = await findVersion(db, imageId, version || image.version);
      if (!row) continue;
      // The bytes that go: the version's, or its variant in the format the cloud takes.
      let served: DigestTarget = { ...row, table: 'image_versions' };
      let { size, disk_format: format } = row;
      let blocked: string | null = null;
      if (cloud.disk_format && cloud.disk_format !== (format ?? 'raw')) {
        const variant = await findVariant(db, row.id, cloud.disk_format);
        if (variant) {
          served = { ...variant, table: 'image_variants' };
          size = variant.size;
        } else
          blocked = await convert(
            image.owner_id,
            { owner: image.owner_name, name: image.name },
            row.version,
            cloud.disk_format,
          );
        format = cloud.disk_format;
      }
      const blobKey = served.blob_key;
      let sha512 = served.sha512;
      if (!sha512 && !blocked) sha512 = (await digestsOf(served, ['sha512'])).sha512 ?? null;
      result.push({
        uuid: image.uuid,
        owner: image.owner_name,
        name: image.name,
        version: row.version,
        size,
        sha512: sha512 ?? '',
        format: format ?? 'raw',
        blobKey,
        public: Boolean(image.unauthenticated_access),
        description: image.description,
        osVariant: image.os_variant,
        osArch: image.os_arch,
        issuer,
        blocked,
      });
    }
    return result;
  }

  /** The URL Glance fetches: the pinned version, public or with a capability in its chooser's name. */
  async function sourceOf(cloud: CloudWithGroup, want: Wanted): Promise<string> {
    const path = rawPath(want.owner, want.name);
    const format =
      cloud.disk_format && cloud.disk_format !== want.format
        ? ''
        : cloud.disk_format
          ? `&format=${cloud.disk_format}`
          : '';
    const pinned = `${policy.publicUrl()}${path}?version=${want.version}${format}`;
    if (want.public) return pinned;
    if (want.issuer === null)
      throw new Error('nobody to issue a capability in the name of (the chooser is gone)');
    const actor = await deps.identity.actorForUser(want.issuer);
    const issued = await deps.capabilities.issue(
      actor,
      { kind: 'image', ref: { owner: want.owner, name: want.name }, path },
      { caveats: ['activity:DOWNLOAD'], validity: 'P1D' },
      policy.publicUrl(),
    );
    return `${pinned}&authz=${seg(issued.macaroon)}`;
  }

  const copyName = (cloud: CloudWithGroup, want: Wanted) => `${cloud.name_prefix}${want.name}`;

  /** Glint's three conflicts, among the project's images Repoman does not own. */
  function conflictOf(cloud: CloudWithGroup, want: Wanted, others: GlanceImage[]): string | null {
    const name = copyName(cloud, want);
    for (const other of others) {
      const sameBytes = other.os_hash_algo === 'sha512' && other.os_hash_value === want.sha512;
      if (other.name === name && sameBytes)
        return `the cloud has an image ${name} (${other.id}) with the same bytes that Repoman did not make`;
      if (other.name === name)
        return `the cloud has another image named ${name} (${other.id}), with other bytes`;
      if (sameBytes) return `the cloud has the same bytes under another name: ${other.name} (${other.id})`;
    }
    return null;
  }

  /** Makes the copy in Glance and starts its transfer; the Glance image is deleted if the start fails. */
  async function startCopy(
    cloud: CloudWithGroup,
    glance: Glance,
    want: Wanted,
    project: string,
    /** An upload's progress: the Glance image, and the bytes sent so far (every few seconds). */
    progress: (id: string, sent: number) => Promise<void>,
  ): Promise<string> {
    // Where Glance fetches from, before anything is made there: a capability refused makes nothing.
    const source = cloud.transfer === 'upload' ? null : await sourceOf(cloud, want);
    const made = await glance.create({
      name: copyName(cloud, want),
      disk_format: glanceFormat(want.format),
      container_format: 'bare',
      visibility: cloud.visibility,
      repoman_cloud: cloud.id,
      repoman_image: want.uuid,
      repoman_version: String(want.version),
      repoman_sha512: want.sha512,
      repoman_source: `${policy.publicUrl()}${imagePath(want.owner, want.name)}`,
      ...(want.osVariant ? { os_distro: want.osVariant } : {}),
      ...(want.osArch ? { architecture: want.osArch } : {}),
      ...(want.description ? { description: want.description } : {}),
    });
    await audit(cloud, 'cloud.image_create', `${want.owner}/${want.name}`, {
      version: want.version,
      glance_id: made.id,
      transfer: cloud.transfer,
    });
    try {
      if (cloud.visibility === 'shared')
        for (const member of JSON.parse(cloud.shared_projects) as string[])
          if (member !== project) await glance.addMember(made.id, member);
      if (source !== null) {
        await glance.importFrom(made.id, source);
        return made.id;
      }
      if (uploads >= policy.maxTransfers) return made.id; // started by a later pass
      uploads++;
      try {
        let sent = 0;
        let told = Date.now();
        await progress(made.id, 0);
        const counted = (await deps.store.read(want.blobKey)).pipe(
          new Transform({
            transform(chunk: Buffer, _encoding, done) {
              sent += chunk.length;
              if (Date.now() - told > PROGRESS_MS) {
                told = Date.now();
                progress(made.id, sent).catch(() => undefined);
              }
              done(null, chunk);
            },
          }),
        );
        await glance.upload(made.id, { length: want.size, stream: counted });
      } finally {
        uploads--;
      }
      return made.id;
    } catch (error) {
      await glance.remove(made.id).catch(() => undefined);
      throw error;
    }
  }

  /** Why a copy in Glance is not the image's, or null if it is (active, with Repoman's SHA-512). */
  function wrongOf(image: GlanceImage, want: Wanted): string | null {
    if (image.status !== 'active') return null;
    if (image.os_hash_algo !== 'sha512')
      return `Glance hashes with ${image.os_hash_algo ?? 'nothing'}, not sha512 (its hashing_algorithm): ${image.id} cannot be checked`;
    if (image.os_hash_value !== want.sha512) return `Glance's SHA-512 of ${image.id} is not the image's`;
    return null;
  }

  /** One pass over one cloud: when to look again (soon while something is on its way). */
  async function reconcile(cloud: CloudWithGroup, renew: () => Promise<void>): Promise<number> {
    const session = await openstack.login(deps.clouds.endpointOf(cloud));
    await deps.clouds.reseal(cloud);
    const glance = openstack.glance(session);
    const now = new Date();
    const nowIso = now.toISOString();
    const project = session.project.id;
    const wanted = await wantedOf(cloud);
    // Owned: made by this cloud's registration, in its own project (a property alone could be forged).
    const owned = (await glance.list({ repoman_cloud: cloud.id, owner: project })).filter(
      (image) => image.owner === project && image.repoman_cloud === cloud.id,
    );
    const copies = new Map((await copiesOf(db, cloud.id)).map((c) => [`${c.image_uuid}/${c.version}`, c]));
    // The project's other images, for the conflicts: read once, and only if a copy is to be made.
    let others: GlanceImage[] | null = null;
    const othersNow = async () => {
      others ??= (await glance.list({ owner: project })).filter(
        (image) => image.owner === project && image.repoman_cloud !== cloud.id,
      );
      return others;
    };
    let next = now.getTime() + policy.syncMs;
    const soon = () => {
      next = Math.min(next, Date.now() + CHECK_SOON_MS);
    };
    const present = new Set<string>();
    /** The Glance image each wanted version keeps (another copy of the same version is an extra: retired). */
    const kept = new Set<string>();
    const save = (
      want: Pick<Wanted, 'uuid' | 'owner' | 'name' | 'version'>,
      fields: Partial<CloudCopyRow>,
    ) => {
      const key = `${want.uuid}/${want.version}`;
      const before = copies.get(key);
      const row: CloudCopyRow = {
        cloud_id: cloud.id,
        image_uuid: want.uuid,
        image_name: `${want.owner}/${want.name}`,
        version: want.version,
        glance_id: before?.glance_id ?? null,
        state: before?.state ?? 'pending',
        detail: null,
        attempts: before?.attempts ?? 0,
        next_attempt: null,
        retire_after: null,
        updated: nowIso,
        ...fields,
      };
      copies.set(key, row);
      return saveCopy(db, row);
    };
    const backoff = (attempts: number) =>
      new Date(now.getTime() + Math.min(3600_000, 2 ** Math.min(attempts, 12) * 5000)).toISOString();

    for (const want of wanted) {
      const copy = copies.get(`${want.uuid}/${want.version}`);
      const mine = owned.filter(
        (i) => i.repoman_image === want.uuid && i.repoman_version === String(want.version),
      );
      const image = mine.find((i) => i.id === copy?.glance_id) ?? mine[0];
      if (image) kept.add(image.id);
      const state = async (s: CloudCopyState, fields: Partial<CloudCopyRow> = {}) =>
        save(want, { state: s, ...fields });
      const fail = async (why: string, glanceId: string | null) => {
        deps.events?.transfer(cloud.id, 'failed', 0);
        const attempts = (copy?.attempts ?? 0) + 1;
        const retry = backoff(attempts);
        next = Math.min(next, Date.parse(retry));
        await state('failed', { glance_id: glanceId, detail: why, attempts, next_attempt: retry });
      };
      if (want.blocked) {
        await state('pending', { detail: want.blocked });
        // A conversion under way is looked at again soon; one that cannot be made, at the next sync.
        if (!want.blocked.includes('cannot be converted')) soon();
        continue;
      }
      if (image?.status === 'deactivated') {
        // Retiring, and wanted again: back in service rather than sent again.
        await glance.reactivate(image.id);
        await audit(cloud, 'cloud.image_reactivate', `${want.owner}/${want.name}`, {
          version: want.version,
          glance_id: image.id,
        });
        image.status = 'active';
      }
      if (image) {
        const wrong = wrongOf(image, want);
        if (image.status === 'active' && !wrong) {
          // The cloud's visibility changed since the copy was made (community to private, say): it follows.
          if (image.visibility !== cloud.visibility) {
            await glance.setProperties(image, { visibility: cloud.visibility });
            await audit(cloud, 'cloud.image_modify', `${want.owner}/${want.name}`, {
              version: want.version,
              glance_id: image.id,
              visibility: cloud.visibility,
            });
          }
          if (copy?.state !== 'present') deps.events?.transfer(cloud.id, 'ok', want.size);
          await state('present', { glance_id: image.id, attempts: copy?.attempts ?? 0 });
          present.add(want.uuid);
          continue;
        }
        const failedImport = image.os_glance_failed_import ? String(image.os_glance_failed_import) : '';
        const uploading = copy?.detail?.startsWith('uploading') === true;
        const since = Date.parse(String(image.updated_at ?? nowIso));
        // In progress: importing or saving; a web-download just asked for; an upload still sending.
        const inProgress =
          !wrong &&
          !failedImport &&
          (['saving', 'importing', 'uploading'].includes(image.status) ||
            (image.status === 'queued' &&
              (cloud.transfer === 'upload'
                ? uploading && Date.parse(copy?.updated ?? '') > now.getTime() - STALLED_UPLOAD_MS
                : since > now.getTime() - IMPORT_START_MS)));
        if (inProgress) {
          soon();
          await state('transferring', { glance_id: image.id, detail: copy?.detail ?? null });
          continue;
        }
        // Failed in Glance (killed, an import that fell back to queued), bytes other than ours, an upload that
        // never started or stalled: the copy goes, and is made again (with backoff, but an upload not started
        // for lack of room, at once).
        const why =
          wrong ??
          (failedImport
            ? `Glance's web-download of ${image.id} failed (in store ${failedImport}): can the cloud reach Repoman and trust its certificate?`
            : `Glance left ${image.id} ${image.status}`);
        await glance.remove(image.id);
        await audit(cloud, 'cloud.image_delete', `${want.owner}/${want.name}`, {
          version: want.version,
          glance_id: image.id,
          why,
        });
        kept.delete(image.id);
        if (image.status === 'queued' && cloud.transfer === 'upload' && !uploading) {
          soon();
          await state('pending', { glance_id: null, detail: 'waiting for a free upload slot' });
        } else await fail(why, null);
        continue;
      }
      if (copy?.next_attempt && copy.next_attempt > nowIso) {
        next = Math.min(next, Date.parse(copy.next_attempt));
        continue;
      }
      const conflict = conflictOf(cloud, want, await othersNow());
      if (conflict) {
        await state('conflict', { glance_id: null, detail: conflict });
        continue;
      }
      try {
        const id = await startCopy(cloud, glance, want, project, async (glanceId, sent) => {
          await state('transferring', {
            glance_id: glanceId,
            detail: `uploading: ${sent} of ${want.size} bytes sent`,
          });
          await renew();
        });
        kept.add(id);
        await state('transferring', { glance_id: id, detail: null });
        soon();
      } catch (error) {
        await fail(error instanceof Error ? error.message : String(error), null);
      }
    }

    // What it owns there and no longer wants: retired once its successor (if any) is present.
    const wantedKeys = new Set(wanted.map((w) => `${w.uuid}/${w.version}`));
    const wantedUuids = new Set(wanted.map((w) => w.uuid));
    for (const image of owned) {
      if (kept.has(image.id)) continue;
      const uuid = String(image.repoman_image ?? '');
      const version = Number(image.repoman_version ?? 0);
      const extra = wantedKeys.has(`${uuid}/${version}`); // a second copy of a wanted version
      if (!extra && wantedUuids.has(uuid) && !present.has(uuid)) continue; // its successor is not there yet
      const copy = copies.get(`${uuid}/${version}`);
      const name = copy?.image_name ?? String(image.name ?? image.id);
      if (extra) {
        await glance.remove(image.id);
        await audit(cloud, 'cloud.image_delete', name, {
          version,
          glance_id: image.id,
          why: 'a second copy',
        });
        continue;
      }
      const [owner = '', imageName = ''] = name.split('/');
      const ref = { uuid, owner, name: imageName, version };
      if (!copy?.retire_after) {
        if (image.status === 'active') await glance.deactivate(image.id);
        await audit(cloud, 'cloud.image_deactivate', name, { version, glance_id: image.id });
        const retireAfter = now.getTime() + policy.graceMs;
        await save(ref, {
          state: 'retiring',
          glance_id: image.id,
          retire_after: new Date(retireAfter).toISOString(),
        });
        next = Math.min(next, retireAfter);
      } else if (copy.retire_after <= nowIso) {
        await glance.remove(image.id);
        await audit(cloud, 'cloud.image_delete', name, {
          version,
          glance_id: image.id,
          why: 'no longer wanted',
        });
        await deleteCopy(db, cloud.id, uuid, version);
      } else next = Math.min(next, Date.parse(copy.retire_after));
    }
    // Copies of images gone from Glance and no longer wanted: forgotten.
    for (const copy of copies.values())
      if (
        !wantedKeys.has(`${copy.image_uuid}/${copy.version}`) &&
        !owned.some((i) => i.id === copy.glance_id)
      )
        await deleteCopy(db, cloud.id, copy.image_uuid, copy.version);
    return next;
  }

  async function pass() {
    for (const due of await dueClouds(db, new Date().toISOString())) {
      if (closed) return;
      // Each cloud with the clock and the row as they are when it is taken (an earlier cloud's pass may
      // have been long, and the cloud changed meanwhile).
      const claimed = new Date().toISOString();
      const leaseUntil = () => new Date(Date.now() + LEASE_MS).toISOString();
      if (!(await claimCloud(db, due.id, lease, claimed, leaseUntil()))) continue;
      const cloud = await findCloudById(db, due.id);
      if (!cloud) continue;
      // Renewed as an upload progresses; a pass that lost its lease stops at its next renewal.
      const renew = async () => {
        if (!(await claimCloud(db, cloud.id, lease, new Date().toISOString(), leaseUntil())))
          throw new Error('another server took this cloud over (its lease ran out): this pass stops');
      };
      let next = Date.now() + policy.syncMs;
      let error: string | null = null;
      try {
        next = await reconcile(cloud, renew);
      } catch (failure) {
        error = failure instanceof Error ? failure.message : String(failure);
        deps.onError?.(failure, `syncing cloud ${cloud.group_name}/${cloud.name} failed; trying again later`);
        deps.events?.transfer(cloud.id, 'failed', 0);
        next = Date.now() + Math.min(policy.syncMs, 60_000);
      }
      await releaseCloud(db, cloud.id, lease, claimed, {
        next_sync: new Date(Math.max(next, Date.now() + 500)).toISOString(),
        last_sync: new Date().toISOString(),
        last_error: error,
      });
    }
  }

  function run() {
    if (closed) return;
    if (running) {
      again = true;
      return;
    }
    running = pass()
      .catch((error: unknown) => deps.onError?.(error, 'the cloud sync failed; trying again later'))
      .finally(() => {
        running = null;
        if (again) {
          again = false;
          run();
        }
      });
  }

  return {
    /** Looks for clouds due every second (a sync asked for starts within it). */
    start() {
      timer = setInterval(run, 1000);
      timer.unref();
      run();
    },
    /** Something changed: look now. */
    wake: () => run(),
    async close() {
      closed = true;
      if (timer) clearInterval(timer);
      await running;
    },
  };
}

export type CloudSync = ReturnType<typeof createCloudSync>;
