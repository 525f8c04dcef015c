import { randomBytes } from 'node:crypto';
import { BlockList } from 'node:net';
import { rootCertificates } from 'node:tls';
import { sql } from 'kysely';
import type { HashingPool } from '../blobs/hashing.ts';
import type { BlobStore } from '../blobs/store.ts';
import { type CloudPolicy, createOpenStack } from '../clouds/openstack.ts';
import type { SecretKeys } from '../clouds/secrets.ts';
import type { Db } from '../db/schema.ts';
import { createAuditService } from './audit.ts';
import { type CapabilityPolicy, createCapabilityService } from './capabilities.ts';
import { createCloudSync, type SyncEvents, type SyncPolicy } from './cloud-sync.ts';
import { createCloudService } from './clouds.ts';
import { type ConversionSettings, createConversionService } from './conversions.ts';
import { createEndorsementService } from './endorsements.ts';
import { createGroupService } from './groups.ts';
import { createIdentityService } from './identity.ts';
import { createImageListService, type ListPolicy } from './image-lists.ts';
import { createImageService } from './images.ts';
import { createNamespaceService } from './namespaces.ts';
import { createQuotaService } from './quota.ts';
import { createTokenService, type TokenPolicy } from './tokens.ts';
import { createTransferService, type TransferPolicy } from './transfers.ts';
import { createUserService } from './users.ts';
import { createVersionsService, type UploadPolicy } from './versions/index.ts';
import { createResumableService, type ResumablePolicy } from './versions/resumable.ts';

type CheckResult = { status: 'ok' | 'failing'; ms: number };

/** Runs a check with a time limit: a store or database that hangs is as failing as one that refuses. */
async function timed(check: () => Promise<unknown>, limitMs = 5000): Promise<CheckResult> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error('timed out')), limitMs);
  });
  try {
    await Promise.race([check(), limit]);
    return { status: 'ok', ms: Math.round(performance.now() - started) };
  } catch {
    return { status: 'failing', ms: Math.round(performance.now() - started) };
  } finally {
    clearTimeout(timer);
  }
}

export function createServices(deps: {
  db: Db;
  store: BlobStore;
  policy: UploadPolicy & ResumablePolicy;
  hashing: HashingPool;
  conversions: ConversionSettings;
  /** Transfer offers; by default they wait three days for an answer. */
  transfers?: TransferPolicy | undefined;
  /** Limits per user (docs/configuration.md); absent: none. */
  limits?: { defaultQuota: number | null; maxImagesPerUser: number } | undefined;
  /**
   * Tells this server's other worker processes that who someone is may have changed, and resolves once they
   * have forgotten it (cluster.ts); absent when the server is one process.
   */
  tellOtherWorkers?: (() => Promise<void>) | undefined;
  /** Validity of capabilities (macaroons); by default an hour, and 30 days at most. */
  capabilities?: CapabilityPolicy | undefined;
  /** Image lists: their validity (28 days by default) and the server's signer (none by default). */
  imageLists?: ListPolicy | undefined;
  /** The cloud sync: the key of its secrets, how it reaches clouds, how often it syncs; absent: no clouds. */
  clouds?:
    | { keys: SecretKeys; reach: CloudPolicy; sync: SyncPolicy; events?: SyncEvents | undefined }
    | undefined;
  /** Trusted token issuers and browser sessions; absent: none (no bearer JWT is taken). */
  tokens?: TokenPolicy | undefined;
  /** Where background work reports what failed (the sync). */
  onError?: ((error: unknown, message: string) => void) | undefined;
}) {
  const { db, store, policy, hashing, limits } = deps;
  const quota = createQuotaService({ db });
  const versions = createVersionsService({
    db,
    store,
    policy,
    hashing,
    quota,
    maxImagesPerUser: limits?.maxImagesPerUser,
  });
  /** `incoming` more bytes must fit in the user's quota beside what they store and reserve. */
  const checkQuota = (userId: number, incoming: number, q: Db) => quota.check(userId, incoming, { q });
  async function checkHealth() {
    const [database, blobs] = await Promise.all([
      timed(() => sql`select 1`.execute(db)),
      timed(async () => store.check?.()),
    ]);
    const ok = database.status === 'ok' && blobs.status === 'ok';
    return { status: ok ? ('ok' as const) : ('unavailable' as const), database, store: blobs };
  }
  let lastHealth: { at: number; result: ReturnType<typeof checkHealth> } | undefined;
  // Who a DN is, remembered briefly: the services that change users and groups make every worker forget.
  const identity = createIdentityService({ db });
  const identitiesChanged = async () => {
    await identity.forget();
    await deps.tellOtherWorkers?.();
  };
  const capabilities = createCapabilityService({
    db,
    identity,
    policy: deps.capabilities ?? { defaultValiditySeconds: 3600, maxValiditySeconds: 30 * 86400 },
  });
  const audit = createAuditService({ db });
  const conversions = createConversionService({
    db,
    store,
    hashing,
    policy,
    quota,
    settings: deps.conversions,
  });
  const openstack = createOpenStack(
    deps.clouds?.reach ?? { allowed: new BlockList(), cas: () => [...rootCertificates], idleMs: 60_000 },
  );
  let sync: ReturnType<typeof createCloudSync> | null = null;
  const clouds = createCloudService({
    db,
    keys: deps.clouds?.keys ?? { current: randomBytes(32), previous: [] },
    openstack,
    wake: () => sync?.wake(),
  });
  if (deps.clouds)
    sync = createCloudSync({
      db,
      store,
      hashing,
      openstack,
      clouds,
      capabilities,
      identity,
      audit,
      conversions,
      policy: deps.clouds.sync,
      events: deps.clouds.events,
      onError: deps.onError,
    });
  const tokens = createTokenService({
    db,
    identity,
    defaultQuota: limits?.defaultQuota,
    policy: deps.tokens ?? {
      issuers: [],
      clockSkewSeconds: 60,
      sessionSeconds: 12 * 3600,
      keyRefreshSeconds: 60,
      serverUrl: () => 'https://localhost',
    },
  });
  return {
    identity,
    capabilities,
    /** Bearer JWTs of trusted issuers, the identities linked to users, and browser sessions. */
    tokens,
    /** A group's clouds (OpenStack), and the sync that keeps images present in them. */
    clouds,
    cloudSync: sync,
    /** Groups' endorsements of image versions, and the subscribers of their lists. */
    endorsements: createEndorsementService({ db, store, hashing }),
    /** The signed image lists made of the endorsements. */
    imageLists: createImageListService({
      db,
      identity,
      capabilities,
      policy: deps.imageLists ?? { maxValiditySeconds: 28 * 86400, signing: null },
    }),
    audit,
    users: createUserService({ db, store, defaultQuota: limits?.defaultQuota, identitiesChanged, tokens }),
    groups: createGroupService({ db, identitiesChanged }),
    images: createImageService({ db, store, maxImagesPerUser: limits?.maxImagesPerUser, checkQuota }),
    /** Namespaces as a tree (the WebDAV listings). */
    namespaces: createNamespaceService({ db }),
    transfers: createTransferService({
      db,
      checkQuota,
      policy: deps.transfers ?? { offerExpiryMs: 3 * 24 * 3600 * 1000 },
      maxImagesPerUser: limits?.maxImagesPerUser,
    }),
    /** The byte path: uploads, downloads, versions (services/versions/). */
    versions,
    resumable: createResumableService({ db, store, hashing, versions, quota, policy }),
    conversions,
    /**
     * Whether the database and the blob store answer, and how fast (for balancers' health checks). Asked at
     * most once a second, however often it is called (it needs no certificate).
     */
    health() {
      const now = Date.now();
      if (!lastHealth || now - lastHealth.at > 1000) lastHealth = { at: now, result: checkHealth() };
      return lastHealth.result;
    },
  };
}

export type Services = ReturnType<typeof createServices>;
