/**
 * Moving image bytes: uploads over the server's resumable (tus) protocol that go on after a cut connection or
 * a rerun of the same command, downloads that resume a partial file with a Range request, both checked
 * against the SHA-256 the server reports, with a progress bar on a terminal.
 */
import { createHash } from 'node:crypto';
import {
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
import { dirname, join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
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

/** SHA-256 of a file (or of its first `length` bytes), hex. */
export async function sha256Of(file: string, length?: number, progress?: Progress): Promise<string> {
  const hash = createHash('sha256');
  if (length === 0) return hash.digest('hex');
  const source = createReadStream(file, {
    highWaterMark: 1024 * 1024,
    ...(length === undefined ? {} : { end: length - 1 }),
  });
  for await (const chunk of source) {
    hash.update(chunk as Buffer);
    progress?.add((chunk as Buffer).length);
  }
  return hash.digest('hex');
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Retries after failures that another try may cure (the connection, a server busy or away). */
function retryable(error: unknown): boolean {
  if (!(error instanceof ClientError)) return true;
  if (error.kind === 'connection') return true;
  return (
    error.kind === 'server' &&
    (error.status === undefined || error.status >= 500 || [409, 423].includes(error.status))
  );
}

/** Where unfinished uploads are remembered, so that rerunning the same command resumes them. */
function uploadsFile(home: string) {
  return join(home, '.repoman', 'uploads.json');
}

function readState(file: string): Record<string, string> {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>;
  } catch {
    return {};
  }
}

function writeState(file: string, state: Record<string, string>) {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(file, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
}

const TUS = { 'tus-resumable': '1.0.0' };

export interface UploadOptions {
  file: string;
  owner: string;
  image: string;
  home: string;
  retries: number;
  note: (text: string) => void;
}

/** Uploads a file as the image's next version; resolves with the image JSON the server then shows. */
export async function upload(api: Api, options: UploadOptions): Promise<unknown> {
  const { file, owner, image, note } = options;
  let size: number;
  try {
    const info = statSync(file);
    if (!info.isFile()) throw new ClientError('usage', `${file} is not a file`);
    size = info.size;
  } catch (error) {
    if (error instanceof ClientError) throw error;
    throw new ClientError('usage', `Cannot read ${file}: ${(error as Error).message}`);
  }
  const hashing = new Progress('checking ', size);
  const sha256 = await sha256Of(file, undefined, hashing);
  hashing.finish();

  const stateFile = uploadsFile(options.home);
  const key = `${api.connection.base} ${owner}/${image} ${sha256} ${size}`;
  let location: string | undefined = readState(stateFile)[key];
  const remember = (url: string | undefined) => {
    const state = readState(stateFile);
    if (url) state[key] = url;
    else delete state[key];
    writeState(stateFile, state);
  };

  let offset = 0;
  if (location) {
    try {
      const head = await api.request('HEAD', location, { headers: TUS });
      offset = Number(head.headers['upload-offset']);
      note(`Resuming the upload at ${bytes(offset)} of ${bytes(size)}`);
    } catch (error) {
      if (!(error instanceof ClientError && [404, 410].includes(error.status ?? 0))) throw error;
      location = undefined; // expired or finished long ago: start again
    }
  }
  if (!location) {
    const metadata = [
      `image ${b64(image)}`,
      `owner ${b64(owner)}`,
      `sha256 ${b64(sha256)}`,
      `filename ${b64(file)}`,
    ];
    const created = await api.request('POST', '/api/uploads', {
      headers: { ...TUS, 'upload-length': String(size), 'upload-metadata': metadata.join(',') },
    });
    location = String(created.headers.location);
    offset = Number(created.headers['upload-offset'] ?? 0);
    remember(location);
  }

  const progress = new Progress('uploading', size, offset);
  for (let attempt = 0; offset < size || size === 0; attempt++) {
    try {
      const sent = await api.request('PATCH', location, {
        headers: {
          ...TUS,
          'content-type': 'application/offset+octet-stream',
          'upload-offset': String(offset),
          'content-length': String(size - offset),
        },
        body:
          size === offset
            ? Buffer.alloc(0)
            : createReadStream(file, { start: offset, highWaterMark: 1024 * 1024 }).pipe(progress.meter()),
      });
      offset = Number(sent.headers['upload-offset']);
      if (offset >= size) break;
    } catch (error) {
      if (attempt >= options.retries || !retryable(error)) {
        if (
          error instanceof ClientError &&
          error.status !== undefined &&
          error.status < 500 &&
          ![409, 423].includes(error.status)
        )
          remember(undefined); // refused for good: a rerun starts afresh
        progress.finish();
        throw error;
      }
      await sleep(Math.min(1000 * 2 ** attempt, 15_000));
      const head = await api.request('HEAD', location, { headers: TUS }).catch(() => null);
      if (head) offset = Number(head.headers['upload-offset']);
      note(`\nThe upload was cut (${(error as Error).message}); going on at ${bytes(offset)}`);
    }
  }
  progress.finish();
  remember(undefined);
  const json = await api.get(`/api/images/${encodeURIComponent(owner)}/${encodeURIComponent(image)}`);
  if ((json as { digests?: { sha256?: string } }).digests?.sha256 !== sha256) {
    throw new ClientError(
      'transfer',
      `The server holds a different SHA-256 (${(json as { digests?: { sha256?: string } }).digests?.sha256}) than ${file} (${sha256}): upload again`,
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
  force: boolean;
  retries: number;
  note: (text: string) => void;
}

/** Downloads an image to a file, resuming a partial `.part` file, and checks its SHA-256. */
export async function download(
  api: Api,
  options: DownloadOptions,
): Promise<{ file: string; size: number; sha256: string }> {
  const { destination, note } = options;
  const imagePath = `/api/images/${encodeURIComponent(options.owner)}/${encodeURIComponent(options.image)}`;
  const image = (await api.get(imagePath)) as {
    size: number | null;
    digests: { sha256: string } | null;
    version: number;
  };
  let expected: { size: number; sha256: string };
  if (options.version !== undefined) {
    const versions = (await api.get(`${imagePath}/versions`)) as {
      items: { version: number; size: number; digests: { sha256: string } }[];
    };
    const found = versions.items.find((v) => v.version === options.version);
    if (!found)
      throw new ClientError('server', `${options.owner}/${options.image} has no version ${options.version}`, {
        status: 404,
      });
    expected = { size: found.size, sha256: found.digests.sha256 };
  } else {
    if (!image.digests || image.size === null)
      throw new ClientError(
        'server',
        `No bytes have been uploaded to ${options.owner}/${options.image} yet`,
        { status: 404 },
      );
    expected = { size: image.size, sha256: image.digests.sha256 };
  }
  if (existsSync(destination) && !options.force)
    throw new ClientError('aborted', `${destination} exists: add --force to replace it`);

  const part = `${destination}.part`;
  const query = options.version === undefined ? {} : { version: options.version };
  const etag = `"${expected.sha256}"`;
  const hash = createHash('sha256');
  let have = existsSync(part) ? statSync(part).size : 0;
  if (have > expected.size) have = 0;
  if (have > 0) {
    // The bytes already here count towards the digest.
    for await (const chunk of createReadStream(part, { end: have - 1, highWaterMark: 1024 * 1024 }))
      hash.update(chunk as Buffer);
    note(`Resuming the download at ${bytes(have)} of ${bytes(expected.size)}`);
  }
  const progress = new Progress('downloading', expected.size, have);
  const raw = `/api/images/raw/${encodeURIComponent(options.owner)}/${encodeURIComponent(options.image)}`;
  try {
    if (have < expected.size) {
      const response = await api.open('GET', raw, {
        query,
        headers: have > 0 ? { range: `bytes=${have}-`, 'if-range': etag } : {},
      });
      if (response.headers.etag !== etag || (response.statusCode === 200 && have > 0)) {
        // The image changed since we looked (or since the partial download): start from the beginning.
        response.destroy();
        return await restart(api, options);
      }
      const hashing = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          hash.update(chunk);
          callback(null, chunk);
        },
      });
      await pipeline(
        response,
        hashing,
        progress.meter(),
        createWriteStream(part, { flags: have > 0 ? 'a' : 'w', mode: 0o644 }),
      );
    }
  } catch (error) {
    progress.finish();
    if (options.retries <= 0 || !retryable(error)) throw error;
    // What reached the disk stays; the next try hashes it again and asks for the rest.
    note(`The download was cut (${(error as Error).message}); going on`);
    await sleep(1000);
    return download(api, { ...options, retries: options.retries - 1 });
  }
  progress.finish();
  if (expected.size === 0) await (await open(part, 'w')).close();
  const sha256 = hash.digest('hex');
  if (sha256 !== expected.sha256) {
    await rm(part, { force: true });
    throw new ClientError(
      'transfer',
      `The downloaded bytes are corrupt: their SHA-256 is ${sha256}, the server's is ${expected.sha256}; nothing was kept`,
    );
  }
  if (statSync(part).size !== expected.size)
    throw new ClientError(
      'transfer',
      `${part} is ${statSync(part).size} bytes, not ${expected.size}: run the command again`,
    );
  renameSync(part, destination);
  return { file: destination, size: expected.size, sha256 };
}

async function restart(api: Api, options: DownloadOptions) {
  await rm(`${options.destination}.part`, { force: true });
  options.note('The image changed since the partial download: starting again');
  return download(api, { ...options, force: true });
}
