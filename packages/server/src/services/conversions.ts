/**
 * Conversions: an owner asks for a version in another format; a job, persisted in the database and claimed
 * by one server with a lease, runs `qemu-img convert` confined (formats/convert.ts) in a temporary directory,
 * stores the result as a variant of that version (its own blob, size and digests) and records it in one
 * transaction. Variants go with their version: pruned, replaced or deleted, the version takes them along.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import {
  type ConversionBody,
  type Job,
  type JobState,
  RepomanError,
  type VariantFormat,
} from '@repoman/core';
import { type Actor, canModifyImage } from '../authz.ts';
import { Hasher, type HashingPool } from '../blobs/hashing.ts';
import { type BlobStore, type BlobUpload, deleteBlobsQuietly } from '../blobs/store.ts';
import { findImageById } from '../db/images-dal.ts';
import {
  cancelJob,
  claimJob,
  deleteVariant,
  findJob,
  findPendingJob,
  findVariant,
  finishJob,
  forgetJobs,
  insertJob,
  type JobRow,
  listJobsOf,
  putVariant,
  recoverJobs,
  releaseJobs,
  renewJob,
  type VariantRow,
} from '../db/jobs-dal.ts';
import type { Db } from '../db/schema.ts';
import { findUserById } from '../db/users-dal.ts';
import { findVersion, lockImage, type VersionRow } from '../db/versions-dal.ts';
import {
  CONVERTIBLE,
  ConversionError,
  type ConvertLimits,
  convert,
  qemuImgVersion,
} from '../formats/convert.ts';
import { inspect } from '../formats/inspect.ts';
import { guardService, nowIso, translateStorageError } from './common.ts';
import { createImageAccess, type ImageRef } from './image-access.ts';
import type { QuotaService } from './quota.ts';
import { ingest } from './versions/ingest.ts';
import type { UploadPolicy } from './versions/policy.ts';
import { type VariantView, variantView } from './versions/views.ts';

export interface ConversionSettings {
  /** Admins may switch conversions off. */
  enabled: boolean;
  qemuImg: string;
  /** Conversions one server runs at a time. */
  maxJobs: number;
  /** Where conversions write (as large as the largest raw image they may produce). */
  tempDir: string;
  limits: ConvertLimits;
}

/** A job as shown: with its image's name, who asked, and the variant it made. */
export type JobView = Omit<Job, 'url' | 'variant'> & {
  variant: VariantView | null;
  /** The image's owner and name, for the variant's URL. */
  ref: ImageRef | null;
};

const LEASE_MS = 30_000;
const RENEW_MS = 2_000;
const POLL_MS = 2_000;
const MAX_ATTEMPTS = 3;
/** Finished jobs are remembered this long. */
const KEEP_JOBS_MS = 7 * 24 * 3600_000;
/** Temporary directories another server (sharing the database) may still be using. */
const STALE_TEMP_MS = 24 * 3600_000;
/** Share of the progress bar for qemu-img; the rest is storing its output. */
const CONVERT_SHARE = 0.8;

/**
 * A failure as its job shows it, without the server's paths: qemu-img names the files it opened (the blob's
 * path, often inside a `json:{…}` file specification) and the system names those it could not write. Each
 * known path becomes what it is to the owner (the image and version, the converted file); any other absolute
 * path is hidden.
 */
export function withoutPaths(message: string, known: readonly (readonly [string, string])[]): string {
  let text = message;
  for (const [path, label] of known) {
    // A qemu file specification naming the path is the path.
    text = text.replace(/json:\{[^']*\}/g, (spec) => (spec.includes(path) ? label : spec));
    text = text.split(path).join(label);
  }
  return text.replace(/(^|[\s'"(:=,])\/[^\s'",)]+/g, '$1(a server path)');
}

export function createConversionService(deps: {
  db: Db;
  /** Reads a version (from its own file where the store has one) and stores the variant. */
  store: Pick<BlobStore, 'localPath' | 'read' | 'createUpload' | 'delete'>;
  hashing: HashingPool;
  policy: Pick<UploadPolicy, 'maxImageSize' | 'digests'>;
  quota: Pick<QuotaService, 'room' | 'lock' | 'check'>;
  settings: ConversionSettings;
}) {
  const { db, store, hashing, policy, quota, settings } = deps;
  const { find } = createImageAccess(db);
  const lease = randomUUID();
  let qemuImg: Promise<string | null> | null = null;
  const running = new Map<string, { controller: AbortController; done: Promise<void> }>();
  let timer: NodeJS.Timeout | null = null;
  let closed = false;
  let onError: (error: unknown, message: string) => void = () => {};

  const available = () => {
    qemuImg ??= qemuImgVersion(settings.qemuImg);
    return qemuImg;
  };

  async function view(row: JobRow): Promise<JobView> {
    const [image, user] = await Promise.all([findImageById(db, row.image_id), findUserById(db, row.user_id)]);
    let variant: VariantRow | null = null;
    if (row.state === 'succeeded' && image) {
      const version = await findVersion(db, image.id, row.version);
      if (version) variant = (await findVariant(db, version.id, row.format)) ?? null;
    }
    return {
      id: row.id,
      kind: 'convert',
      image: image ? `${image.owner_name}/${image.name}` : '(deleted)',
      version: row.version,
      format: row.format as VariantFormat,
      compressed: Boolean(row.compressed),
      state: row.state as JobState,
      progress: row.progress,
      error: row.error_code ? { code: row.error_code, message: row.error_message ?? '' } : null,
      variant: variant ? variantView(variant) : null,
      ref: image ? { owner: image.owner_name, name: image.name } : null,
      requested_by: user?.name ?? '(deleted)',
      created: row.created,
      started: row.started,
      finished: row.finished,
    };
  }

  /** The job, if the actor asked for it, may change its image, or is an admin. */
  async function visibleJob(actor: Actor, id: string): Promise<JobRow> {
    const row = await findJob(db, id);
    const notFound = new RepomanError('job_not_found', `No job ${id}`);
    if (!row) throw notFound;
    if (row.user_id === actor.id || actor.isAdmin) return row;
    const image = await findImageById(db, row.image_id);
    if (!image) throw notFound;
    try {
      const { target } = await find(actor, { owner: image.owner_name, name: image.name }, canModifyImage);
      if (canModifyImage(actor, target)) return row;
    } catch {}
    throw notFound;
  }

  function unsupported(version: VersionRow, ref: ImageRef): RepomanError {
    const what = version.compression
      ? `${version.compression}-compressed (upload it again with decompression on, to convert it)`
      : (version.disk_format ?? 'of an unknown format');
    return new RepomanError(
      'conversion_unsupported',
      `Version ${version.version} of ${ref.owner}/${ref.name} is ${what}; qcow2, raw, vmdk, vpc, vhdx, vdi and ISO images convert`,
    );
  }

  // ---- running jobs ----

  async function runJob(job: JobRow, controller: AbortController): Promise<void> {
    let dir: string | null = null;
    /** Paths a failure may name, and what the owner is told instead (most specific first). */
    const paths: [string, string][] = [];
    let upload: BlobUpload | null = null;
    let hasher: Hasher | null = null;
    let progress = 0;
    let outputSize = 0;
    const renew = setInterval(() => {
      if (hasher && outputSize > 0)
        progress = CONVERT_SHARE + (1 - CONVERT_SHARE) * (hasher.bytes / outputSize);
      renewJob(db, job.id, lease, new Date(Date.now() + LEASE_MS).toISOString(), Math.min(progress, 0.99))
        .then((kept) => {
          if (!kept) controller.abort(); // cancelled, or recovered by another server
        })
        .catch(() => {}); // the database is away; the lease may lapse, and another server retries the job
    }, RENEW_MS);
    try {
      const image = await findImageById(db, job.image_id);
      const version = image ? await findVersion(db, image.id, job.version) : undefined;
      if (!image || !version)
        throw new RepomanError('version_not_found', `Version ${job.version} is no longer kept`);
      if (!version.disk_format || !CONVERTIBLE.has(version.disk_format))
        throw unsupported(version, { owner: image.owner_name, name: image.name });
      dir = await mkdtemp(join(settings.tempDir, 'job-'));
      let source = store.localPath?.(version.blob_key);
      if (!source) source = join(dir, 'source');
      const target = join(dir, `converted.${job.format}`);
      paths.push(
        [source, `${image.owner_name}/${image.name} (version ${version.version})`],
        [target, `the ${job.format} image`],
        [dir, "the job's directory"],
      );
      if (source === join(dir, 'source')) {
        // A store without local files: the source is copied here first (qemu-img needs to seek).
        await pipeline(await store.read(version.blob_key), createWriteStream(source), {
          signal: controller.signal,
        });
      }
      // What qemu-img may write: the size limit, or what is left of the owner's quota (stored and reserved
      // bytes counted) if that is less. Past it, qemu-img is stopped and nothing is kept.
      const quotaRoom = await quota.room(image.owner_id);
      const room = Math.min(policy.maxImageSize, quotaRoom);
      const overQuota = (size: number) =>
        new RepomanError(
          'quota_exceeded',
          `The ${job.format} image would pass the ${quotaRoom} bytes the owner's quota leaves (${size} bytes or more); nothing was kept`,
          { details: { room: quotaRoom } },
        );
      await convert({
        qemuImg: settings.qemuImg,
        source,
        sourceFormat: version.disk_format,
        target,
        format: job.format as VariantFormat,
        compress: Boolean(job.compressed),
        cwd: dir,
        limits: { ...settings.limits, outputBytes: room },
        onProgress: (fraction) => {
          progress = CONVERT_SHARE * fraction;
        },
        signal: controller.signal,
      }).catch(async (error: unknown) => {
        // Stopped at the file size limit, which was the quota's room: say so.
        const written = (await stat(target).catch(() => null))?.size ?? 0;
        if (error instanceof ConversionError && quotaRoom < policy.maxImageSize && written >= quotaRoom)
          throw overQuota(written);
        throw error;
      });
      outputSize = (await stat(target)).size;
      if (outputSize > quotaRoom) throw overQuota(outputSize);
      if (outputSize > policy.maxImageSize)
        throw new RepomanError(
          'image_too_large',
          `The ${job.format} image would have ${outputSize} bytes, more than the limit of ${policy.maxImageSize}`,
        );
      upload = await store.createUpload();
      hasher = new Hasher(hashing, ['sha256', ...policy.digests]);
      await ingest(createReadStream(target), upload, hasher, {
        max: policy.maxImageSize,
        signal: controller.signal,
      });
      const written = upload;
      const inspection = await inspect(hasher.bytes, (offset, length) => written.readAt(offset, length));
      if (inspection.format !== job.format || inspection.refusals.length > 0)
        throw new ConversionError(`qemu-img wrote ${inspection.format}, not ${job.format}`);
      const digests = await hasher.digests();
      await upload.commit();
      const committed = upload;
      upload = null;
      try {
        const replaced = await db.transaction().execute(async (trx) => {
          // Under the image's lock, as pruning and deletion take it: they see this variant, or it sees
          // that the version is gone.
          await lockImage(trx, job.image_id);
          const current = await findVersion(trx, job.image_id, job.version);
          if (!current)
            throw new RepomanError('version_not_found', `Version ${job.version} is no longer kept`);
          const old = await putVariant(trx, {
            version_id: current.id,
            format: job.format,
            compressed: Boolean(job.compressed),
            blob_key: committed.key,
            size: hasher?.bytes ?? 0,
            sha256: digests.sha256,
            md5: digests.md5 ?? null,
            sha512: digests.sha512 ?? null,
            adler32: digests.adler32 ?? null,
            virtual_size: inspection.virtualSize,
            created: nowIso(),
          });
          await quota.lock(trx, [image.owner_id]);
          await quota.check(image.owner_id, 0, { q: trx });
          // Cancelled meanwhile, or taken back by another server: the variant is not recorded.
          if (!(await finishJob(trx, job.id, lease, { state: 'succeeded', finished: nowIso() })))
            throw new ConversionError('The job was cancelled');
          return old;
        });
        if (replaced) await deleteBlobsQuietly(store, [replaced]);
      } catch (error) {
        await deleteBlobsQuietly(store, [committed.key]);
        throw translateStorageError(error);
      }
    } catch (error) {
      hasher?.dispose();
      await upload?.abort().catch(() => {});
      if (controller.signal.aborted && closed) return; // shutting down: the job is retried later
      const failure = {
        error_code: error instanceof RepomanError ? error.code : 'conversion_failed',
        error_message: withoutPaths((error as Error).message, paths),
      };
      if (!(error instanceof RepomanError) && !(error instanceof ConversionError))
        onError(error, `conversion job ${job.id} failed`);
      await finishJob(db, job.id, lease, { state: 'failed', ...failure, finished: nowIso() }).catch(
        (finishError: unknown) => onError(finishError, `recording the failure of job ${job.id} failed`),
      );
    } finally {
      clearInterval(renew);
      if (dir) await rm(dir, { recursive: true, force: true }).catch(() => {});
    }
  }

  let pumping = false;
  let lastRecovery = 0;
  /** Starts queued jobs while this server has room. */
  async function pump(): Promise<void> {
    if (pumping || closed) return;
    pumping = true;
    try {
      const now = Date.now();
      if (now - lastRecovery > LEASE_MS / 2) {
        lastRecovery = now;
        await recoverJobs(db, new Date(now).toISOString(), MAX_ATTEMPTS);
        await forgetJobs(db, new Date(now - KEEP_JOBS_MS).toISOString());
      }
      while (!closed && running.size < settings.maxJobs) {
        const until = new Date(Date.now() + LEASE_MS).toISOString();
        const job = await claimJob(db, lease, nowIso(), until);
        if (!job) break;
        const controller = new AbortController();
        const done = runJob(job, controller).finally(() => {
          running.delete(job.id);
          void pump();
        });
        running.set(job.id, { controller, done });
      }
    } catch (error) {
      onError(error, 'looking for conversion jobs failed; trying again shortly');
    } finally {
      pumping = false;
    }
  }

  const service = guardService({
    /** Queues a conversion, or answers with the variant if it exists already. */
    async request(
      actor: Actor,
      ref: ImageRef,
      body: ConversionBody,
    ): Promise<{ job: JobView; created: boolean } | { variant: VariantView; version: number }> {
      const { row, target } = await find(actor, ref, canModifyImage);
      if (!canModifyImage(actor, target))
        throw new RepomanError('forbidden', `You may not convert ${ref.owner}/${ref.name}`);
      if (!settings.enabled)
        throw new RepomanError(
          'conversions_unavailable',
          'Conversions are switched off on this server (conversions.enabled)',
        );
      if (row.version === 0)
        throw new RepomanError(
          'image_not_uploaded',
          `No bytes have been uploaded to ${ref.owner}/${ref.name} yet`,
        );
      const wanted = body.version ?? row.version;
      const version = await findVersion(db, row.id, wanted);
      if (!version)
        throw new RepomanError(
          'version_not_found',
          `${ref.owner}/${ref.name} has no version ${wanted} (any more)`,
        );
      const compress = body.compress === true;
      if (compress && body.format !== 'qcow2')
        throw new RepomanError('invalid_field', 'compress applies to qcow2 only', {
          details: { field: 'compress' },
        });
      if (!version.disk_format || !CONVERTIBLE.has(version.disk_format)) throw unsupported(version, ref);
      const sourceDriver = version.disk_format === 'iso' ? 'raw' : version.disk_format;
      if (sourceDriver === body.format && compress)
        throw new RepomanError(
          'conversion_unsupported',
          `Version ${wanted} of ${ref.owner}/${ref.name} is qcow2 already; compress it before uploading (qemu-img convert -c)`,
        );
      if (sourceDriver === body.format)
        throw new RepomanError(
          'conversion_not_needed',
          `Version ${wanted} of ${ref.owner}/${ref.name} is ${version.disk_format} already; download it as it is`,
        );
      const existing = await findVariant(db, version.id, body.format);
      if (existing && Boolean(existing.compressed) === compress)
        return { variant: variantView(existing), version: version.version };
      if (body.format === 'raw' && (version.virtual_size ?? 0) > policy.maxImageSize)
        throw new RepomanError(
          'image_too_large',
          `As raw it would have ${version.virtual_size} bytes, more than the limit of ${policy.maxImageSize}`,
        );
      // A first check of the quota, on what the result will roughly need; the real size is checked at the end.
      await quota.check(row.owner_id, body.format === 'raw' ? (version.virtual_size ?? version.size) : 0);
      if (!(await available()))
        throw new RepomanError(
          'conversions_unavailable',
          `This server cannot run ${settings.qemuImg}; ask its administrator to install qemu-utils`,
        );
      const pending = await findPendingJob(db, row.id, wanted, body.format, compress);
      if (pending) return { job: await view(pending), created: false };
      const job: JobRow = {
        id: randomUUID(),
        kind: 'convert',
        user_id: actor.id,
        image_id: row.id,
        version: wanted,
        format: body.format,
        compressed: compress,
        state: 'queued',
        progress: 0,
        error_code: null,
        error_message: null,
        attempts: 0,
        lease: null,
        lease_until: null,
        created: nowIso(),
        started: null,
        finished: null,
      };
      await insertJob(db, job);
      void pump();
      return { job: await view(job), created: true };
    },

    async get(actor: Actor, id: string): Promise<JobView> {
      return view(await visibleJob(actor, id));
    },

    /** The actor's own jobs, newest first. */
    async list(actor: Actor): Promise<JobView[]> {
      return Promise.all((await listJobsOf(db, actor.id, 100)).map(view));
    },

    /** Cancels a queued or running job (a running qemu-img is killed); a finished job stays as it was. */
    async cancel(actor: Actor, id: string): Promise<JobView> {
      const row = await visibleJob(actor, id);
      if (await cancelJob(db, id, nowIso())) running.get(id)?.controller.abort();
      return view((await findJob(db, id)) ?? row);
    },

    /** Removes a variant (it can be made again). */
    async removeVariant(actor: Actor, ref: ImageRef, format: string, versionNumber?: number): Promise<void> {
      const { row, target } = await find(actor, ref, canModifyImage);
      if (!canModifyImage(actor, target))
        throw new RepomanError('forbidden', `You may not change ${ref.owner}/${ref.name}`);
      if (row.read_only)
        throw new RepomanError(
          'image_read_only',
          `${ref.owner}/${ref.name} is read-only; clear read_only to remove its variants`,
        );
      const wanted = versionNumber ?? row.version;
      const version = await findVersion(db, row.id, wanted);
      const key = version ? await deleteVariant(db, version.id, format) : undefined;
      if (!key)
        throw new RepomanError(
          'variant_not_found',
          `Version ${wanted} of ${ref.owner}/${ref.name} has no ${format} variant`,
        );
      await deleteBlobsQuietly(store, [key]);
    },
  });

  return {
    ...service,
    available,
    /**
     * Starts taking jobs. A server alone on its database (SQLite) takes back every running job and clears
     * its temporary directory: nothing of an earlier run survives it.
     */
    async start(options: { alone: boolean; onError: (error: unknown, message: string) => void }) {
      onError = options.onError;
      await mkdir(settings.tempDir, { recursive: true, mode: 0o700 });
      // Only the directories jobs make (job-*): the directory may be shared with anything else.
      const names = (await readdir(settings.tempDir).catch(() => [] as string[])).filter((n) =>
        n.startsWith('job-'),
      );
      for (const name of names) {
        const path = join(settings.tempDir, name);
        const info = await stat(path).catch(() => null);
        if (info && (options.alone || Date.now() - info.mtimeMs > STALE_TEMP_MS))
          await rm(path, { recursive: true, force: true }).catch(() => {});
      }
      await recoverJobs(db, nowIso(), MAX_ATTEMPTS, options.alone);
      timer = setInterval(() => void pump(), POLL_MS);
      timer.unref();
      void pump();
    },
    /** Stops taking jobs and stops the running ones (they run again later, here or on another server). */
    async close() {
      closed = true;
      if (timer) clearInterval(timer);
      for (const { controller } of running.values()) controller.abort();
      await Promise.allSettled([...running.values()].map((r) => r.done));
      await releaseJobs(db, lease).catch(() => {});
    },
  };
}

export type ConversionService = ReturnType<typeof createConversionService>;
