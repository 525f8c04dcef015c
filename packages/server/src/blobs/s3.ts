/**
 * A blob store in an S3-compatible object store (AWS S3, OpenStack Swift's s3api, Ceph RGW, MinIO).
 *
 * Layout in the bucket (all names opaque, made here; `<prefix>` is the configured prefix, often empty):
 *   <prefix>blobs/<key>                  committed blobs
 *   <prefix>uploads/<key>/state.json     an upload in progress: its multipart upload, parts and tail
 *   <prefix>uploads/<key>/tail-<id>      bytes after the last whole part (S3 parts but the last must be 5 MiB+)
 *
 * An upload streams into a multipart upload of `<prefix>blobs/<key>` in parts of `partSize` bytes, one being
 * sent while the next fills, so a multi-GB image never sits in memory or on a local disk. What is left after
 * the last whole part when a request ends (a resumable upload sends its image in several requests) is kept as a
 * small tail object and put in front of the next request's bytes. The state object records which parts and
 * which tail make up the upload, so that any server sharing the bucket can resume it.
 *
 * S3 cannot read the parts of an unfinished multipart upload. An upload is therefore read (its headers
 * inspected, its bytes hashed again) only once it is whole: reading completes the multipart upload first
 * ("sealing" it), and the upload can then only be committed or aborted.
 */
import { randomBytes } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { BLOB_KEY, copyThroughTwoBuffers, newBlobKey, STALE_UPLOAD_MS } from './common.ts';
import type { S3Settings } from './s3-settings.ts';
import {
  BlobNotFoundError,
  type BlobReadable,
  type BlobStore,
  type BlobUpload,
  type ByteRange,
  type DownloadUrlOptions,
} from './store.ts';

const MAX_PARTS = 10_000;

interface Tail {
  /** Object name, under the upload's prefix. */
  name: string;
  /** Where in the upload its bytes start, and how many. */
  start: number;
  size: number;
}

interface Part {
  number: number;
  size: number;
  etag: string;
}

interface UploadState {
  /** The multipart upload's id, once the first whole part is sent. */
  multipart: string | null;
  parts: Part[];
  /** The bytes after the last part, if any. */
  tail: Tail | null;
  /**
   * Every tail written and still matching the upload's bytes where it lies: an upload cut back (a request's
   * bytes refused) returns to one of these.
   */
  saved: Tail[];
  /** The multipart upload is complete: the bytes are at `blobs/<key>`, waiting to be committed or aborted. */
  sealed: boolean;
}

/** A part's size: `base` for the first thousand parts, twice that for the next thousand, and so on. */
export function partSizeFor(base: number, number: number): number {
  return base * 2 ** Math.floor((number - 1) / 1000);
}

const isMissing = (error: unknown) =>
  error instanceof S3ServiceException &&
  (error.name === 'NoSuchKey' || error.name === 'NotFound' || error.$metadata?.httpStatusCode === 404);

const isNoSuchUpload = (error: unknown) =>
  error instanceof S3ServiceException &&
  (error.name === 'NoSuchUpload' || error.$metadata?.httpStatusCode === 404);

async function bodyBuffer(body: unknown): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body as Readable) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * Copies an object's body to the client in writes of 256 KiB through two reused buffers, rather than in the
 * 16 to 64 KiB chunks the object store's socket delivers: fewer, larger TLS records and writes, and no
 * garbage per chunk. One buffer fills while the other is being written.
 */
async function copyCoalesced(source: Readable, destination: Writable): Promise<void> {
  const chunks = (source as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  let rest: Buffer = Buffer.alloc(0); // what is left of the last chunk, for the next buffer
  destination.once('close', () => source.destroy()); // the client left: let go of the store's connection
  try {
    await copyThroughTwoBuffers(async (buffer) => {
      let filled = 0;
      while (filled < buffer.length) {
        if (rest.length === 0) {
          const next = await chunks.next();
          if (next.done) break;
          rest = next.value;
        }
        const copied = rest.copy(buffer, filled);
        filled += copied;
        rest = rest.subarray(copied);
      }
      return filled;
    }, destination);
  } finally {
    source.destroy();
  }
}

/** Bytes an upload holds: its parts, then its tail. */
const sizeOf = (s: UploadState) => s.parts.reduce((sum, p) => sum + p.size, 0) + (s.tail?.size ?? 0);

/** The multipart upload a request sends its parts to, and the parts stored so far (the earlier ones first). */
interface SentParts {
  multipart: string | null;
  parts: Part[];
}

/** The parts that lie wholly within the first `length` bytes, and where the last of them ends. */
function wholePartsWithin(parts: readonly Part[], length: number): { parts: Part[]; end: number } {
  let end = 0;
  const within = [];
  for (const part of parts) {
    if (end + part.size > length) break;
    within.push(part);
    end += part.size;
  }
  return { parts: within, end };
}

/**
 * The state after a request one of whose parts could not be stored: the upload stays at its last whole part
 * (or where it was), and the client resends from there.
 */
function stateAfterFailedPart(before: UploadState, sent: SentParts): UploadState {
  if (sent.parts.length === before.parts.length) return { ...before, multipart: sent.multipart };
  const kept = sizeOf({ ...before, parts: sent.parts, tail: null });
  return {
    ...before,
    multipart: sent.multipart,
    parts: sent.parts,
    tail: null,
    saved: before.saved.filter((t) => t.start + t.size <= kept),
  };
}

/** A request with no bytes for an upload already whole (a retry of its last request) is fine; bytes are not. */
async function takeOnlyAnEmptyRetry(key: string, source: Readable): Promise<number> {
  let extra = 0;
  for await (const chunk of source as AsyncIterable<Buffer>) extra += chunk.length;
  if (extra > 0) throw new Error(`upload ${key} is complete; it cannot be written to`);
  return 0;
}

/**
 * One request's bytes on their way into an upload's parts, after the tail it resumes from (`head`). Two
 * buffers: one fills while the other's part is being sent by `send`, one part at a time, in order; parts grow
 * as `partSizeFor` says. What is left after the last whole part stays in the buffer (`rest`), to become the
 * new tail. A part that could not be stored (`sendFailure`) stops the request at the next one.
 */
class PartFiller {
  /** Bytes in the buffer being filled. */
  filled = 0;
  /** Bytes this request brought (the tail it started from not counted). */
  written = 0;
  sendFailure: unknown = null;
  readonly #partSize: number;
  readonly #send: (bytes: Buffer, number: number) => Promise<void>;
  #number: number;
  #capacity: number;
  #buffers: Buffer[];
  #turn = 0;
  #sending: Promise<void> | null = null;

  constructor(
    partSize: number,
    number: number,
    head: Buffer | null,
    send: (bytes: Buffer, number: number) => Promise<void>,
  ) {
    this.#partSize = partSize;
    this.#send = send;
    this.#number = number;
    this.#capacity = partSizeFor(partSize, number);
    this.#buffers = [Buffer.allocUnsafe(Math.max(this.#capacity, head?.length ?? 0)), Buffer.alloc(0)];
    if (head) this.filled = head.copy(this.#buffers[0] as Buffer, 0);
  }

  /** The bytes after the last part sent. */
  rest(): Buffer {
    return (this.#buffers[this.#turn] as Buffer).subarray(0, this.filled);
  }

  /**
   * Takes the source's bytes, sending each part as it fills; resolves, once the last part sent is stored or
   * failed, with what stopped the source early (or null).
   */
  async receive(source: Readable, signal: AbortSignal | undefined): Promise<unknown> {
    let failure: unknown = null;
    try {
      for await (const chunk of source as AsyncIterable<Buffer>) {
        signal?.throwIfAborted();
        for (let at = 0; at < chunk.length; ) {
          if (this.filled >= this.#capacity) await this.#sendPart();
          const take = Math.min(chunk.length - at, this.#capacity - this.filled);
          chunk.copy(this.#buffers[this.#turn] as Buffer, this.filled, at, at + take);
          this.filled += take;
          at += take;
          this.written += take;
        }
        if (this.filled >= this.#capacity) await this.#sendPart();
      }
    } catch (error) {
      failure = error;
    }
    if (this.#sending) await this.#sending;
    return failure;
  }

  /** Sends the filled buffer as the next part (once the previous one is sent) and turns to the other. */
  async #sendPart() {
    if (this.#number > MAX_PARTS) throw new Error('the upload is larger than an S3 object can be');
    if (this.#sending) await this.#sending;
    if (this.sendFailure) throw this.sendFailure;
    this.#sending = this.#send(this.rest(), this.#number).catch((error: unknown) => {
      this.sendFailure = error;
    });
    this.#number++;
    this.#capacity = partSizeFor(this.#partSize, this.#number);
    this.#turn ^= 1;
    if ((this.#buffers[this.#turn] as Buffer).length < this.#capacity)
      this.#buffers[this.#turn] = Buffer.allocUnsafe(this.#capacity);
    this.filled = 0;
  }
}

export interface S3Store extends BlobStore {
  /** Checks that the bucket can be reached (making it if configured to); rejects with what went wrong. */
  check(): Promise<void>;
  readonly client: S3Client;
}

export function createS3Store(settings: S3Settings): S3Store {
  const client = new S3Client({
    region: settings.region,
    ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
    forcePathStyle: settings.pathStyle,
    ...(settings.accessKeyId && settings.secretAccessKey
      ? { credentials: { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey } }
      : {}),
    // Checksums only where S3 demands them: with the defaults, streamed bodies are sent as aws-chunked, which
    // other S3 servers (Swift's s3api among them) refuse. Image bytes are hashed here anyway.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: {
      connectionTimeout: 10_000,
      // A silent connection to the store (a stalled download or part) fails rather than hangs.
      requestTimeout: 120_000,
      httpAgent: { keepAlive: true, maxSockets: settings.maxSockets },
      httpsAgent: { keepAlive: true, maxSockets: settings.maxSockets },
    },
  });
  const Bucket = settings.bucket;
  const blobName = (key: string) => {
    if (!BLOB_KEY.test(key)) throw new BlobNotFoundError(`Invalid blob key ${key}`);
    return `${settings.prefix}blobs/${key}`;
  };
  const uploadDir = (key: string) => `${settings.prefix}uploads/${key}/`;
  const stateName = (key: string) => `${uploadDir(key)}state.json`;

  async function* listNames(Prefix: string, Delimiter?: string) {
    let ContinuationToken: string | undefined;
    do {
      const page = await client.send(
        new ListObjectsV2Command({ Bucket, Prefix, ContinuationToken, ...(Delimiter ? { Delimiter } : {}) }),
      );
      for (const object of page.Contents ?? [])
        if (object.Key) yield { name: object.Key, modified: object.LastModified };
      for (const common of page.CommonPrefixes ?? [])
        if (common.Prefix) yield { name: common.Prefix, modified: undefined };
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }

  const deleteObject = (Key: string) =>
    client.send(new DeleteObjectCommand({ Bucket, Key })).then(
      () => {},
      (error: unknown) => {
        if (!isMissing(error)) throw error;
      },
    );

  async function getObject(Key: string, range?: ByteRange) {
    try {
      return await client.send(
        new GetObjectCommand({
          Bucket,
          Key,
          ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}),
        }),
      );
    } catch (error) {
      if (isMissing(error)) throw new BlobNotFoundError(`No object ${Key}`);
      throw error;
    }
  }

  /** Aborts a multipart upload; one already gone (completed or aborted) is not an error. */
  const removeMultipartOf = (key: string, UploadId: string) =>
    client.send(new AbortMultipartUploadCommand({ Bucket, Key: blobName(key), UploadId })).then(
      () => {},
      (error: unknown) => {
        if (!isNoSuchUpload(error)) throw error;
      },
    );

  /** Removes an upload's own objects (state and tails), and its multipart upload if it has one. */
  async function removeUpload(key: string, multipart: string | null) {
    if (multipart) await removeMultipartOf(key, multipart);
    const names: string[] = [];
    for await (const { name } of listNames(uploadDir(key))) names.push(name);
    // The state last: while it exists, the upload is listed and a sweep finds what is left of it.
    names.sort((a, b) => Number(a.endsWith('state.json')) - Number(b.endsWith('state.json')));
    for (const name of names) await deleteObject(name);
  }

  const putState = (key: string, state: UploadState) =>
    client.send(
      new PutObjectCommand({
        Bucket,
        Key: stateName(key),
        Body: JSON.stringify(state),
        ContentType: 'application/json',
      }),
    );

  async function putTail(key: string, bytes: Buffer, start: number): Promise<Tail> {
    const tail = { name: `tail-${randomBytes(8).toString('hex')}`, start, size: bytes.length };
    await client.send(new PutObjectCommand({ Bucket, Key: uploadDir(key) + tail.name, Body: bytes }));
    return tail;
  }

  async function tailBytes(key: string, tail: Tail, length = tail.size): Promise<Buffer> {
    if (length === 0) return Buffer.alloc(0);
    const object = await getObject(uploadDir(key) + tail.name, { start: 0, end: length - 1 });
    return bodyBuffer(object.Body);
  }

  /** Seals an upload with no whole part: small enough for one object, the tail (or nothing) is copied into place. */
  async function sealAsOneObject(key: string, state: UploadState): Promise<UploadState> {
    const Key = blobName(key);
    if (state.tail)
      await client.send(
        new CopyObjectCommand({
          Bucket,
          Key,
          CopySource: encodeURI(`${Bucket}/${uploadDir(key)}${state.tail.name}`),
        }),
      );
    else await client.send(new PutObjectCommand({ Bucket, Key, Body: Buffer.alloc(0) }));
    if (state.multipart) await removeMultipartOf(key, state.multipart);
    return { ...state, multipart: null, sealed: true };
  }

  /** Seals an upload of parts: its tail is sent as the last part, and the multipart upload completed. */
  async function sealMultipart(key: string, state: UploadState): Promise<UploadState> {
    const Key = blobName(key);
    const parts = [...state.parts];
    if (state.tail && state.multipart) {
      const number = parts.length + 1;
      const sent = await client.send(
        new UploadPartCommand({
          Bucket,
          Key,
          UploadId: state.multipart,
          PartNumber: number,
          Body: await tailBytes(key, state.tail),
        }),
      );
      parts.push({ number, size: state.tail.size, etag: sent.ETag ?? '' });
    }
    try {
      await client.send(
        new CompleteMultipartUploadCommand({
          Bucket,
          Key,
          UploadId: state.multipart ?? undefined,
          MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.number, ETag: p.etag })) },
        }),
      );
    } catch (error) {
      // Completed by an earlier try whose state was not saved (a server that died between the two)?
      const done = isNoSuchUpload(error) ? await store.stat(key).catch(() => null) : null;
      if (done?.size !== sizeOf({ ...state, parts, tail: null })) throw error;
    }
    return { ...state, parts, tail: null, sealed: true };
  }

  /**
   * Stores one part of a request's bytes, starting the multipart upload with the first, and records it in the
   * upload's state (with `save`) at once.
   */
  async function storePart(
    key: string,
    before: UploadState,
    sent: SentParts,
    save: (next: UploadState) => Promise<void>,
    bytes: Buffer,
    number: number,
  ) {
    if (!sent.multipart) {
      const created = await client.send(new CreateMultipartUploadCommand({ Bucket, Key: blobName(key) }));
      sent.multipart = created.UploadId ?? null;
      if (!sent.multipart) throw new Error('the object store gave no multipart upload id');
      await save({ ...before, multipart: sent.multipart });
    }
    // Not stopped by `signal`: a part on its way is finished, so that a stopped request keeps its bytes.
    const stored = await client.send(
      new UploadPartCommand({
        Bucket,
        Key: blobName(key),
        UploadId: sent.multipart,
        PartNumber: number,
        Body: bytes,
        ContentLength: bytes.length,
      }),
    );
    sent.parts.push({ number, size: bytes.length, etag: stored.ETag ?? '' });
    // Recorded at once: the upload's age (what sweeps look at) moves while bytes flow, and a server that
    // dies keeps what it sent. The bytes of the old tail are in these parts now.
    await save({ ...before, multipart: sent.multipart, parts: [...sent.parts], tail: null });
  }

  /**
   * The state after a request whose every part was stored: what reached us is kept (a cut resumable upload
   * resumes after it), the bytes after its last whole part as the new tail.
   */
  async function keepRequest(
    key: string,
    before: UploadState,
    sent: SentParts,
    filler: PartFiller,
  ): Promise<UploadState> {
    const end = sizeOf({ ...before, tail: null }) + (before.tail?.size ?? 0) + filler.written;
    const tailStart = sizeOf({ ...before, parts: sent.parts, tail: null });
    const unchanged = sent.parts.length === before.parts.length && filler.written === 0;
    const tail = unchanged
      ? before.tail
      : filler.filled > 0
        ? await putTail(key, filler.rest(), tailStart)
        : null;
    // Kept: the tail this request started from (a refused request is cut back to it) and the new one;
    // older tails are never returned to, and go.
    const keep = [before.tail, tail].filter((t): t is Tail => t !== null);
    const names = new Set(keep.map((t) => t.name));
    const next = {
      ...before,
      multipart: sent.multipart,
      parts: sent.parts,
      tail,
      saved: keep.filter((t, i) => keep.indexOf(t) === i),
    };
    for (const old of before.saved)
      if (!names.has(old.name)) await deleteObject(uploadDir(key) + old.name).catch(() => {});
    if (sizeOf(next) !== end) throw new Error(`upload ${key}: ${sizeOf(next)} bytes recorded, ${end} sent`);
    return next;
  }

  function uploadOf(key: string, initial: UploadState): BlobUpload {
    let state = initial;
    let finished = false;
    const save = (next: UploadState) =>
      putState(key, next).then(() => {
        state = next;
      });

    /** Completes the upload at `blobs/<key>`: the last tail becomes the last part. */
    async function seal() {
      if (state.sealed) return;
      await save(
        state.parts.length === 0 ? await sealAsOneObject(key, state) : await sealMultipart(key, state),
      );
    }

    return {
      key,

      async write(source, signal) {
        if (state.sealed || finished) return takeOnlyAnEmptyRetry(key, source);
        const before = state;
        const sent: SentParts = { multipart: before.multipart, parts: [...before.parts] };
        const filler = new PartFiller(
          settings.partSize,
          sent.parts.length + 1,
          before.tail ? await tailBytes(key, before.tail) : null,
          (bytes, number) => storePart(key, before, sent, save, bytes, number),
        );
        let failure = await filler.receive(source, signal);
        // What reached us is kept (a cut resumable upload resumes after it), unless a part could not be
        // stored: then the upload stays at its last whole part (or where it was), and the client resends.
        let next: UploadState;
        if (filler.sendFailure) {
          failure ??= filler.sendFailure;
          next = stateAfterFailedPart(before, sent);
        } else next = await keepRequest(key, before, sent, filler);
        await save(next);
        if (failure) throw failure;
        return filler.written;
      },

      async commit() {
        if (finished) return;
        await seal();
        // The blob is in place; what is left of the upload is clutter, which a sweep would also remove.
        await removeUpload(key, null).catch(() => {});
        finished = true;
      },

      async abort() {
        if (finished) return;
        finished = true;
        if (state.sealed) await deleteObject(blobName(key));
        await removeUpload(key, state.sealed ? null : state.multipart);
      },

      async size() {
        // A sealed upload's state still says what its object holds (the tail became its last part).
        return sizeOf(state);
      },

      async truncate(length) {
        const size = sizeOf(state);
        if (length === size) return;
        if (state.sealed || length > size) throw new Error(`upload ${key} cannot be cut to ${length} bytes`);
        const { parts, end } = wholePartsWithin(state.parts, length);
        let tail: Tail | null = null;
        if (length > end) {
          // Parts already sent cannot be read back: the cut must fall in a tail that starts where they end.
          const from = state.saved.find((t) => t.start === end && t.start + t.size >= length);
          if (!from)
            throw new Error(`upload ${key} cannot be cut to ${length} bytes: it lies in a part already sent`);
          tail =
            from.size === length - end
              ? from
              : await putTail(key, await tailBytes(key, from, length - end), end);
        }
        const saved = state.saved.filter((t) => t.start + t.size <= length);
        await save({
          ...state,
          parts,
          tail,
          saved: tail && !saved.includes(tail) ? [...saved, tail] : saved,
        });
      },

      async readAt(offset, length) {
        const size = sizeOf(state);
        if (!state.sealed && state.tail && offset >= state.tail.start) {
          const end = Math.min(offset + length, size);
          if (end <= offset) return Buffer.alloc(0);
          const object = await getObject(uploadDir(key) + state.tail.name, {
            start: offset - state.tail.start,
            end: end - state.tail.start - 1,
          });
          return bodyBuffer(object.Body);
        }
        await seal();
        const end = Math.min(offset + length, sizeOf(state));
        if (end <= offset) return Buffer.alloc(0);
        return bodyBuffer((await getObject(blobName(key), { start: offset, end: end - 1 })).Body);
      },

      async readBack() {
        if (!state.sealed && state.parts.length === 0 && state.tail)
          return (await getObject(uploadDir(key) + state.tail.name)).Body as Readable;
        await seal();
        return (await getObject(blobName(key))).Body as Readable;
      },
    };
  }

  async function readState(key: string): Promise<UploadState | null> {
    try {
      const object = await client.send(new GetObjectCommand({ Bucket, Key: stateName(key) }));
      return JSON.parse((await bodyBuffer(object.Body)).toString('utf8')) as UploadState;
    } catch (error) {
      if (isMissing(error)) return null;
      throw error;
    }
  }

  const store: S3Store = {
    client,

    async check() {
      try {
        await client.send(new HeadBucketCommand({ Bucket }));
      } catch (error) {
        if (!(isMissing(error) && settings.createBucket)) throw error;
        // Several servers starting at once may all make it: one that finds it made by us is content.
        await client.send(new CreateBucketCommand({ Bucket })).catch((created: unknown) => {
          if ((created as Error).name !== 'BucketAlreadyOwnedByYou') throw created;
        });
      }
    },

    async createUpload() {
      const key = newBlobKey();
      const state: UploadState = { multipart: null, parts: [], tail: null, saved: [], sealed: false };
      await putState(key, state);
      return uploadOf(key, state);
    },

    async resumeUpload(key) {
      if (!BLOB_KEY.test(key)) return null;
      const state = await readState(key);
      if (state) return uploadOf(key, state);
      // Committed, and its state removed, but not recorded as a version (the server died in between): the
      // blob is the whole upload, which its next request publishes.
      const committed = await this.stat(key);
      if (!committed) return null;
      const parts = [{ number: 1, size: committed.size, etag: '' }];
      return uploadOf(key, { multipart: null, parts, tail: null, saved: [], sealed: true });
    },

    async read(key, range): Promise<BlobReadable> {
      const body = (await getObject(blobName(key), range)).Body as Readable;
      return Object.assign(body, { pipeTo: (destination: Writable) => copyCoalesced(body, destination) });
    },

    async stat(key) {
      try {
        const head = await client.send(new HeadObjectCommand({ Bucket, Key: blobName(key) }));
        return { size: head.ContentLength ?? 0, modified: head.LastModified ?? new Date(0) };
      } catch (error) {
        if (isMissing(error) || error instanceof BlobNotFoundError) return null;
        throw error;
      }
    },

    async delete(key) {
      await deleteObject(blobName(key));
    },

    async downloadUrl(key: string, options: DownloadUrlOptions) {
      return getSignedUrl(
        client,
        new GetObjectCommand({
          Bucket,
          Key: blobName(key),
          ResponseContentDisposition: options.contentDisposition,
          ResponseContentType: options.contentType,
        }),
        { expiresIn: options.expiresSeconds },
      );
    },

    async *list() {
      const prefix = `${settings.prefix}blobs/`;
      for await (const { name } of listNames(prefix)) {
        const key = name.slice(prefix.length);
        if (BLOB_KEY.test(key)) yield key;
      }
    },

    async listUploads() {
      const now = Date.now();
      const found: { name: string; key: string; ageMs: number }[] = [];
      const prefix = `${settings.prefix}uploads/`;
      const withState = new Set<string>();
      for await (const { name } of listNames(prefix, '/')) {
        const key = name.slice(prefix.length).replace(/\/$/, '');
        if (!BLOB_KEY.test(key)) continue;
        const head = await client
          .send(new HeadObjectCommand({ Bucket, Key: stateName(key) }))
          .catch((error: unknown) => {
            if (isMissing(error)) return null; // tails without a state: an upload whose removal was cut short
            throw error; // not knowing its age, never call it stale
          });
        withState.add(key);
        found.push({ name: `upload ${key}`, key, ageMs: now - (head?.LastModified?.getTime() ?? 0) });
      }
      // Multipart uploads no upload state names: a server stopped between starting one and recording it.
      let KeyMarker: string | undefined;
      let UploadIdMarker: string | undefined;
      do {
        const page = await client.send(
          new ListMultipartUploadsCommand({
            Bucket,
            Prefix: `${settings.prefix}blobs/`,
            KeyMarker,
            UploadIdMarker,
          }),
        );
        for (const upload of page.Uploads ?? []) {
          const key = (upload.Key ?? '').slice(`${settings.prefix}blobs/`.length);
          if (!BLOB_KEY.test(key) || withState.has(key)) continue;
          found.push({
            name: `multipart ${key} ${upload.UploadId}`,
            key,
            ageMs: now - (upload.Initiated?.getTime() ?? 0),
          });
        }
        KeyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
        UploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
      } while (KeyMarker);
      return found;
    },

    async removeStaleUploads(olderThanMs = STALE_UPLOAD_MS, keep: ReadonlySet<string> = new Set()) {
      const removed: string[] = [];
      for (const upload of await store.listUploads()) {
        if (upload.ageMs <= olderThanMs || keep.has(upload.key)) continue;
        if (upload.name.startsWith('multipart ')) {
          await removeMultipartOf(upload.key, upload.name.split(' ')[2] ?? '');
        } else {
          const state = await readState(upload.key);
          // A sealed upload's blob stays: fsck removes it as an orphan if no version names it.
          await removeUpload(upload.key, state && !state.sealed ? state.multipart : null);
        }
        removed.push(upload.name);
      }
      return removed;
    },
  };

  return store;
}
