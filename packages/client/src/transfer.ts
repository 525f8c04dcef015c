/**
 * Moving image bytes: uploads over the server's resumable (tus) protocol that go on after a cut connection or
 * a rerun of the same command, downloads that resume a partial file with a Range request, both checked
 * against the SHA-256 the server reports, with a progress bar on a terminal.
 */

import { createHash } from 'node:crypto';
import {
  chownSync,
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Image, Job, Page, Version } from '@repoman/core';
import type { Api } from './api.ts';
import { ClientError } from './errors.ts';
import { bytes } from './output.ts';

/** A progress line on a terminal (bytes, rate, time left); nothing when stderr is not one. */
export class Progress {
  #stream: NodeJS.WriteStream | null;
  #label: string;
  #total: number;
  #done = 0;
  #started = Date.now();
  #startedAt = 0;
  #shown = 0;

  constructor(label: string, total: number, from = 0, stream: NodeJS.WriteStream = process.stderr) {
    this.#stream = stream.isTTY ? stream : null;
    this.#label = label;
    this.#total = total;
    this.#done = from;
    this.#startedAt = from;
  }

  /** A pass-through stream that counts what flows. */
  meter(): Transform {
    return new Transform({
      transform: (chunk: Buffer, _encoding, callback) => {
        this.add(chunk.length);
        callback(null, chunk);
      },
    });
  }

  get done(): number {
    return this.#done;
  }

  add(count: number) {
    this.#done += count;
    const now = Date.now();
    if (now - this.#shown >= 200) this.#draw(now);
  }

  finish() {
    this.#draw(Date.now());
    this.#stream?.write('\n');
  }

  #draw(now: number) {
    if (!this.#stream) return;
    this.#shown = now;
    const seconds = Math.max((now - this.#started) / 1000, 0.001);
    const rate = (this.#done - this.#startedAt) / seconds;
    const percent = this.#total ? Math.floor((this.#done / this.#total) * 100) : 100;
    const left = rate > 0 ? (this.#total - this.#done) / rate : 0;
    const clock = `${Math.floor(left / 60)}:${String(Math.floor(left % 60)).padStart(2, '0')}`;
    this.#stream.write(
      `\r${this.#label} ${String(percent).padStart(3)}% ${bytes(this.#done)} of ${bytes(this.#total)}  ${bytes(rate)}/s  ${clock} left\x1b[K`,
    );
  }
}

/** SHA-256 of a file, hex. */
export async function sha256Of(file: string, progress?: Progress): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024 })) {
    hash.update(chunk as Buffer);
    progress?.add((chunk as Buffer).length);
  }
  return hash.digest('hex');
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Errors of the local disk: another try would fail the same way. */
const LOCAL = new Set([
  'ENOENT',
  'ENOSPC',
  'EACCES',
  'EPERM',
  'EISDIR',
  'ENOTDIR',
  'EROFS',
  'EDQUOT',
  'EMFILE',
]);

/** Server answers that another try cannot change: a full quota is the owner's to free, not a moment's. */
const DEFINITE = new Set(['quota_exceeded', 'too_many_uploads', 'too_many_images']);

/** Retries after failures that another try may cure (the connection, a server busy or away). */
function retryable(error: unknown): boolean {
  if (!(error instanceof ClientError)) return !LOCAL.has((error as NodeJS.ErrnoException)?.code ?? '');
  if (error.kind === 'connection') return true;
  if (error.code !== undefined && DEFINITE.has(error.code)) return false;
  return (
    error.kind === 'server' &&
    (error.status === undefined || error.status >= 500 || [409, 423].includes(error.status))
  );
}

/**
 * Runs `attempt` until it succeeds, pausing longer after each failure that another try may cure; the count of
 * tries starts again whenever one made progress (so a long transfer survives many short cuts).
 */
async function persist<T>(
  retries: number,
  attempt: () => Promise<T>,
  onFailure: (error: unknown) => Promise<boolean>,
): Promise<T> {
  for (let failures = 0; ; ) {
    try {
      return await attempt();
    } catch (error) {
      if (failures >= retries || !retryable(error)) throw error;
      const progressed = await onFailure(error);
      failures = progressed ? 1 : failures + 1;
      await sleep(Math.min(1000 * 2 ** (failures - 1), 15_000));
    }
  }
}

/** Where unfinished uploads are remembered, so that rerunning the same command resumes them. */
function uploadsFile(home: string) {
  return join(home, '.repoman', 'uploads.json');
}

function readState(file: string): Record<string, string> {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>;
  } catch {
    return {}; // none yet, or unreadable: uploads then start afresh
  }
}

/** Written whole or not at all (a new file renamed over the old), and owned by the user under sudo. */
function writeState(file: string, state: Record<string, string>) {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const fresh = `${file}.${process.pid}.tmp`;
  writeFileSync(fresh, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  const uid = Number(process.env.SUDO_UID);
  const gid = Number(process.env.SUDO_GID);
  if (process.getuid?.() === 0 && uid && gid) chownSync(fresh, uid, gid);
  renameSync(fresh, file);
}

const TUS = { 'tus-resumable': '1.0.0' };

export interface UploadOptions {
  file: string;
  owner: string;
  image: string;
  home: string;
  retries: number;
  /** The format the file must be in (the server refuses it otherwise). */
  format?: string | undefined;
  /** Have the server store a compressed file decompressed. */
  decompress?: boolean;
  /**
   * Called once the server has accepted the upload (it checks permission, read-only, size and quota when the
   * upload is created or resumed) and before any byte is sent: a question asked here is never answered in vain.
   * If it throws, an upload created for this run is withdrawn.
   */
  beforeSending?: (() => Promise<void>) | undefined;
  note: (text: string) => void;
}

function statOf(file: string) {
  try {
    const info = statSync(file);
    if (!info.isFile()) throw new ClientError('usage', `${file} is not a file`);
    return { size: info.size, mtime: info.mtimeMs };
  } catch (error) {
    if (error instanceof ClientError) throw error;
    throw new ClientError('usage', `Cannot read ${file}: ${(error as Error).message}`);
  }
}

/** Uploads a file as the image's next version; resolves with the image JSON the server then shows. */
export async function upload(api: Api, options: UploadOptions): Promise<Image> {
  const { file, owner, image, note } = options;
  const before = statOf(file);
  const size = before.size;
  const unchanged = () => {
    const now = statOf(file);
    if (now.size !== before.size || now.mtime !== before.mtime)
      throw new ClientError(
        'transfer',
        `${file} changed during the upload: upload it again once it is complete`,
      );
  };
  const hashing = new Progress('checking ', size);
  const sha256 = await sha256Of(file, hashing);
  hashing.finish();
  unchanged();

  const stateFile = uploadsFile(options.home);
  const key = `${api.connection.base} ${owner}/${image} ${sha256} ${size}${options.decompress ? ' decompress' : ''}`;
  const remember = (url: string | undefined) => {
    const state = readState(stateFile);
    if (url) state[key] = url;
    else delete state[key];
    writeState(stateFile, state);
  };
  const where = (location: string) =>
    api.request('HEAD', location, { headers: TUS }).then((head) => Number(head.headers['upload-offset']));

  let location: string | undefined = readState(stateFile)[key];
  let offset = 0;
  let fresh = false;
  if (location) {
    const known = location;
    offset = await persist(
      options.retries,
      () => where(known),
      async () => false,
    ).catch((error: unknown) => {
      if (error instanceof ClientError && [404, 410].includes(error.status ?? 0)) return -1; // expired: afresh
      throw error;
    });
    if (offset < 0) location = undefined;
    else note(`Resuming the upload at ${bytes(offset)} of ${bytes(size)}`);
  }
  if (!location) {
    const metadata = [
      `image ${b64(image)}`,
      `owner ${b64(owner)}`,
      `sha256 ${b64(sha256)}`,
      `filename ${b64(basename(file))}`,
      ...(options.format ? [`disk_format ${b64(options.format)}`] : []),
      ...(options.decompress ? [`decompress ${b64('true')}`] : []),
    ];
    const created = await persist(
      options.retries,
      () =>
        api.request('POST', '/api/uploads', {
          headers: { ...TUS, 'upload-length': String(size), 'upload-metadata': metadata.join(',') },
        }),
      async () => false,
    );
    location = String(created.headers.location);
    offset = Number(created.headers['upload-offset'] ?? 0);
    fresh = true;
    remember(location);
  }
  if (options.beforeSending) {
    const created = location;
    await options.beforeSending().catch(async (error: unknown) => {
      if (fresh) {
        remember(undefined);
        await api.request('DELETE', created, { headers: TUS }).catch(() => {}); // expires by itself otherwise
      }
      throw error;
    });
  }

  const url = location;
  const progress = new Progress('uploading', size, offset);
  try {
    await persist(
      options.retries,
      async () => {
        do {
          unchanged();
          const source = createReadStream(file, { start: offset, highWaterMark: 1024 * 1024 });
          const meter = progress.meter();
          source.on('error', (error) => meter.destroy(error));
          const sent = await api.request('PATCH', url, {
            headers: {
              ...TUS,
              'content-type': 'application/offset+octet-stream',
              'upload-offset': String(offset),
              'content-length': String(size - offset),
            },
            body: size === offset ? Buffer.alloc(0) : source.pipe(meter),
          });
          offset = Number(sent.headers['upload-offset']);
        } while (offset < size);
      },
      async (error) => {
        const was = offset;
        offset = await where(url).catch(() => offset);
        note(`\nThe upload was cut (${(error as Error).message}); going on at ${bytes(offset)}`);
        return offset > was;
      },
    );
  } catch (error) {
    progress.finish();
    // Refused for good (not a network or server hiccup): a rerun starts afresh.
    if (error instanceof ClientError && error.kind === 'server' && !retryable(error)) remember(undefined);
    throw error;
  }
  progress.finish();
  remember(undefined);
  const json = await api.get<Image>(`/api/images/${encodeURIComponent(owner)}/${encodeURIComponent(image)}`);
  // Unpacked on the server, the stored bytes differ from the file; the server checked the file's SHA-256.
  const unpacked = options.decompress === true && json.compression === null;
  if (json.digests?.sha256 !== sha256 && !unpacked) {
    throw new ClientError(
      'transfer',
      `The server holds a different SHA-256 (${json.digests?.sha256}) than ${file} (${sha256}): upload again`,
    );
  }
  return json;
}

const b64 = (text: string) => Buffer.from(text).toString('base64');

export interface DownloadOptions {
  owner: string;
  image: string;
  destination: string;
  version?: number | undefined;
  /** A converted variant (raw, qcow2, vmdk); converted on the server first if there is none yet. */
  format?: string | undefined;
  force: boolean;
  retries: number;
  note: (text: string) => void;
}

/** What a conversion ends with: the job's state and the variant it made (or found already there). */
export type ConversionOutcome = Pick<Job, 'state' | 'progress' | 'error' | 'variant'>;

/**
 * Asks the server to convert a version and waits for the job, showing its progress; resolves with the
 * finished job (or the existing variant as a finished job's `variant`).
 */
export async function convertOnServer(
  api: Api,
  options: { owner: string; image: string; format: string; compress?: boolean; version?: number | undefined },
  estimate: number,
): Promise<ConversionOutcome> {
  const name = `${encodeURIComponent(options.owner)}/${encodeURIComponent(options.image)}`;
  const answer = await api.post<{ job?: Job; variant?: Job['variant'] }>(`/api/images/${name}/conversions`, {
    format: options.format,
    ...(options.compress ? { compress: true } : {}),
    ...(options.version === undefined ? {} : { version: options.version }),
  });
  if (!answer.job) return { state: 'succeeded', progress: 1, error: null, variant: answer.variant ?? null };
  let job = answer.job;
  const progress = new Progress('converting ', estimate);
  try {
    while (job.state === 'queued' || job.state === 'running') {
      await new Promise((resolve) => setTimeout(resolve, 500));
      job = await api.get<Job>(`/api/jobs/${job.id}`);
      progress.add(Math.max(0, Math.floor(job.progress * estimate) - progress.done));
    }
  } finally {
    progress.finish();
  }
  if (job.state !== 'succeeded')
    throw new ClientError(
      'server',
      job.error
        ? `The conversion failed: ${job.error.message} (${job.error.code})`
        : `The conversion was ${job.state}`,
    );
  return job;
}

/** Downloads an image to a file, resuming a partial `.part` file, and checks its SHA-256. */
export async function download(
  api: Api,
  options: DownloadOptions,
): Promise<{ file: string; size: number; sha256: string }> {
  const { destination, note } = options;
  const name = `${encodeURIComponent(options.owner)}/${encodeURIComponent(options.image)}`;
  const image = await api.get<Image>(`/api/images/${name}`);
  let expected: { size: number; sha256: string };
  let format = options.format;
  let version = options.version;
  if (options.version !== undefined || format !== undefined) {
    const versions = await api.get<Page<Version>>(`/api/images/${name}/versions`);
    const found = versions.items.find((v) =>
      options.version === undefined ? v.current : v.version === options.version,
    );
    if (!found)
      throw new ClientError(
        'server',
        options.version === undefined
          ? `No bytes have been uploaded to ${options.owner}/${options.image} yet`
          : `${options.owner}/${options.image} has no version ${options.version}`,
        { status: 404 },
      );
    expected = { size: found.size, sha256: found.digests.sha256 };
    // It is in that format already (an ISO is read as raw).
    if (
      format !== undefined &&
      (format === found.disk_format || (format === 'raw' && found.disk_format === 'iso'))
    )
      format = undefined;
    if (format !== undefined) {
      let variant = found.variants?.find((v) => v.format === format);
      if (!variant) {
        note(
          `${options.owner}/${options.image} v${found.version} has no ${format} variant yet: converting it on the server`,
        );
        const job = await convertOnServer(
          api,
          { owner: options.owner, image: options.image, format, version: found.version },
          found.virtual_size ?? found.size,
        );
        variant = job.variant ?? undefined;
        if (!variant) throw new ClientError('server', 'The conversion finished without a variant');
      }
      expected = { size: variant.size, sha256: variant.digests.sha256 };
    }
    version = found.version; // the one checked, even if a newer one arrives meanwhile
  } else {
    if (!image.digests || image.size === null)
      throw new ClientError(
        'server',
        `No bytes have been uploaded to ${options.owner}/${options.image} yet`,
        {
          status: 404,
        },
      );
    expected = { size: image.size, sha256: image.digests.sha256 };
  }
  if (existsSync(destination) && !options.force)
    throw new ClientError('aborted', `${destination} exists: add --force to replace it`);
  const folder = dirname(destination);
  if (!existsSync(folder) || !statSync(folder).isDirectory())
    throw new ClientError('usage', `There is no directory ${folder} to download into`);

  const part = `${destination}.part`;
  const query = {
    ...(version === undefined ? {} : { version }),
    ...(format === undefined ? {} : { format }),
  };
  const etag = `"${expected.sha256}"`;
  const sizeOfPart = () => (existsSync(part) ? statSync(part).size : 0);
  let have = sizeOfPart();
  if (have > expected.size) {
    await rm(part, { force: true });
    have = 0;
  }
  if (have > 0) note(`Resuming the download at ${bytes(have)} of ${bytes(expected.size)}`);
  const progress = new Progress('downloading', expected.size, have);

  /** Appends the rest of the image to the partial file; false if the image changed (start again). */
  const fetchRest = async (): Promise<boolean> => {
    have = sizeOfPart();
    if (have >= expected.size) return true;
    const response = await api.open('GET', `/api/images/raw/${name}`, {
      query,
      headers: have > 0 ? { range: `bytes=${have}-`, 'if-range': etag } : {},
    });
    if (response.headers.etag !== etag || (response.statusCode === 200 && have > 0)) {
      response.destroy();
      return false;
    }
    await pipeline(
      response,
      progress.meter(),
      createWriteStream(part, { flags: have > 0 ? 'a' : 'w', mode: 0o644 }),
    );
    return true;
  };
  try {
    const complete = await persist(options.retries, fetchRest, async (error) => {
      const was = have;
      note(`\nThe download was cut (${(error as Error).message}); going on`);
      return sizeOfPart() > was;
    });
    if (!complete) {
      // The image changed since we looked (or since the partial download): start from the beginning.
      note('The image changed since the partial download: starting again');
      await rm(part, { force: true });
      return download(api, { ...options, force: true });
    }
  } finally {
    progress.finish();
  }
  if (!existsSync(part)) await (await open(part, 'w')).close(); // an empty image
  const sha256 = await sha256Of(part);
  if (sha256 !== expected.sha256 || statSync(part).size !== expected.size) {
    await rm(part, { force: true });
    throw new ClientError(
      'transfer',
      `The downloaded bytes are corrupt: their SHA-256 is ${sha256}, the server's is ${expected.sha256}; nothing was kept`,
    );
  }
  renameSync(part, destination);
  return { file: destination, size: expected.size, sha256 };
}
