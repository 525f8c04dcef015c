/**
 * Upload a new image, or a new version of one, with the tus protocol: progress with rate and time left, pause,
 * and resumption after a reload or a dropped network (the browser remembers where each upload stood; choosing
 * the same file again carries on from the server's offset).
 */

import type { ErrorBody } from '@repoman/core';
import { useEffect, useRef, useState } from 'preact/hooks';
import { defaultOptions, type PreviousUpload, Upload } from 'tus-js-client';
import { ApiError, api, call, type Image } from '../api/client';
import { bytes, duration } from '../lib/format';
import { imagePath, navigate, withQuery } from '../lib/router';
import type { Session } from '../lib/session';
import { ErrorBox, Notice, useAction, useAsync } from '../lib/ui';

type State =
  | { kind: 'idle' }
  | { kind: 'uploading'; sent: number; total: number; rate: number }
  | { kind: 'paused'; sent: number; total: number }
  | { kind: 'done'; image: Image }
  | { kind: 'failed'; error: unknown; sent: number; total: number };

/** Bytes per second over the last few seconds. */
function rateMeter() {
  const samples: [number, number][] = [];
  return (sent: number) => {
    const now = performance.now();
    samples.push([now, sent]);
    while (samples.length > 2 && now - (samples[0]?.[0] ?? now) > 5000) samples.shift();
    const [t0, b0] = samples[0] ?? [now, sent];
    return now > t0 ? ((sent - b0) * 1000) / (now - t0) : 0;
  };
}

const fingerprintOf = (owner: string, image: string, file: File) =>
  ['repoman', owner, image, file.name, file.size, file.lastModified].join('/');

export function UploadPage({ session, query }: { session: Session; query: URLSearchParams }) {
  if (session.kind !== 'user')
    return (
      <section>
        <h1>Upload</h1>
        <ErrorBox error={new Error('Sign in with your certificate to upload images.')} />
      </section>
    );
  const me = session.user.user_name;
  const owner = query.get('owner') || me;
  const image = query.get('image');
  return (
    <section>
      <h1>Upload</h1>
      <Unfinished />
      {image ? <UploadFile owner={owner} image={image} me={me} /> : <ChooseImage me={me} />}
    </section>
  );
}

/** Uploads this browser started and did not finish: choose the same file again to go on. */
function Unfinished() {
  const stored = useAsync(() => defaultOptions.urlStorage.findAllUploads(), []);
  const uploads = (stored.data ?? []).filter((u) => u.metadata.image);
  if (uploads.length === 0) return null;
  return (
    <div class="card">
      <h2>Unfinished uploads in this browser</h2>
      <ul>
        {uploads.map((u) => (
          <li key={u.urlStorageKey}>
            <a
              href={`/upload?owner=${encodeURIComponent(u.metadata.owner ?? '')}&image=${encodeURIComponent(u.metadata.image ?? '')}`}
            >
              {u.metadata.owner ? `${u.metadata.owner}/` : ''}
              {u.metadata.image}
            </a>{' '}
            from {u.metadata.filename} ({bytes(u.size)}), started {new Date(u.creationTime).toLocaleString()}
          </li>
        ))}
      </ul>
      <p class="muted">Open one and choose the same file again: the upload goes on where it stopped.</p>
    </div>
  );
}

/** A new image (its slot is created first), or one of mine. */
function ChooseImage({ me }: { me: string }) {
  const mine = useAsync(
    () =>
      call(
        api.GET('/api/images', {
          params: { query: { owner: me, limit: 1000, sort: 'modified', order: 'desc' } },
        }),
      ),
    [me],
  );
  const action = useAction();
  const create = async (event: Event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    const body: Record<string, string> = { name: String(form.get('name')).trim() };
    for (const key of ['description', 'os_type', 'os_variant', 'os_arch', 'hypervisor']) {
      const value = String(form.get(key) ?? '').trim();
      if (value) body[key] = value;
    }
    await action.run(async () => {
      const created = await call(api.POST('/api/images', { body: body as never }));
      navigate(withQuery({ owner: created.owner, image: created.name }), true);
      return undefined;
    });
  };
  return (
    <div class="two">
      <form class="card" onSubmit={create}>
        <h2>A new image</h2>
        <label>
          Name
          <input
            name="name"
            required
            pattern="[A-Za-z0-9_\-][A-Za-z0-9._\-]{0,127}"
            placeholder="rhel9-worker.qcow2"
          />
        </label>
        <label>
          Description
          <input name="description" />
        </label>
        <div class="row">
          <label>
            OS type
            <input name="os_type" placeholder="linux" />
          </label>
          <label>
            OS variant
            <input name="os_variant" placeholder="rhel9" />
          </label>
        </div>
        <div class="row">
          <label>
            Architecture
            <input name="os_arch" placeholder="x86_64" />
          </label>
          <label>
            Hypervisor
            <input name="hypervisor" placeholder="kvm" />
          </label>
        </div>
        <ErrorBox error={action.error} title="The image was not created." />
        <button type="submit" class="primary" disabled={action.busy}>
          Create and choose a file
        </button>
      </form>
      <div class="card">
        <h2>A new version of one of my images</h2>
        <ErrorBox error={mine.error} />
        {mine.data?.items.length === 0 && <p class="muted">You have no images yet.</p>}
        <ul class="plain">
          {mine.data?.items.map((image) => (
            <li key={image.uuid}>
              <a href={withQuery({ owner: image.owner, image: image.name })}>{image.name}</a>{' '}
              <span class="muted">
                {image.raw_file_uploaded ? `version ${image.version}` : 'no bytes yet'}
              </span>
            </li>
          ))}
        </ul>
      </div>
    </div>
  );
}

function UploadFile({ owner, image, me }: { owner: string; image: string; me: string }) {
  const [file, setFile] = useState<File | null>(null);
  const [previous, setPrevious] = useState<PreviousUpload | null>(null);
  const [state, setState] = useState<State>({ kind: 'idle' });
  const upload = useRef<Upload | null>(null);
  const target = useAsync(
    () => call(api.GET('/api/images/{user}/{image}', { params: { path: { user: owner, image } } })),
    [owner, image],
  );

  // Leaving the page while bytes flow: the browser asks first (the upload could go on after a reload).
  useEffect(() => {
    if (state.kind !== 'uploading') return;
    const warn = (event: BeforeUnloadEvent) => event.preventDefault();
    addEventListener('beforeunload', warn);
    return () => removeEventListener('beforeunload', warn);
  }, [state.kind]);
  useEffect(() => () => void upload.current?.abort(), []);

  const choose = async (event: Event) => {
    const chosen = (event.currentTarget as HTMLInputElement).files?.[0] ?? null;
    upload.current?.abort();
    upload.current = null;
    setFile(chosen);
    setState({ kind: 'idle' });
    setPrevious(null);
    if (!chosen) return;
    const found = await defaultOptions.urlStorage.findUploadsByFingerprint(
      fingerprintOf(owner, image, chosen),
    );
    setPrevious(found[0] ?? null);
  };

  const start = (resume: PreviousUpload | null) => {
    if (!file) return;
    const meter = rateMeter();
    const tus = new Upload(file, {
      endpoint: `${location.origin}/api/uploads`,
      metadata: {
        image,
        ...(owner !== me ? { owner } : {}),
        filename: file.name,
        ...(file.type ? { filetype: file.type } : {}),
      },
      fingerprint: async () => fingerprintOf(owner, image, file),
      retryDelays: [0, 1000, 3000, 5000, 10000, 20000, 30000],
      removeFingerprintOnSuccess: true,
      onProgress: (sent, total) => setState({ kind: 'uploading', sent, total, rate: meter(sent) }),
      onSuccess: async () => {
        setPrevious(null);
        try {
          const done = await call(
            api.GET('/api/images/{user}/{image}', { params: { path: { user: owner, image } } }),
          );
          setState({ kind: 'done', image: done });
        } catch (error) {
          setState({ kind: 'failed', error, sent: file.size, total: file.size });
        }
      },
      // Retries are spent: what was sent stays on the server, and "Try again" goes on from there.
      onError: (error) =>
        setState((s) => ({
          kind: 'failed',
          error: tusError(error),
          sent: 'sent' in s ? s.sent : 0,
          total: file.size,
        })),
    });
    upload.current = tus;
    if (resume) tus.resumeFromPreviousUpload(resume);
    else if (previous) {
      // Starting over: the earlier upload goes on the server too, not only from this browser's memory.
      void defaultOptions.urlStorage.removeUpload(previous.urlStorageKey);
      if (previous.uploadUrl) Upload.terminate(previous.uploadUrl).catch(() => {});
    }
    setState({ kind: 'uploading', sent: 0, total: file.size, rate: 0 });
    tus.start();
  };

  const pause = async () => {
    if (state.kind !== 'uploading') return;
    await upload.current?.abort();
    setState({ kind: 'paused', sent: state.sent, total: state.total });
  };
  const resume = () => {
    setState((s) => ({ kind: 'uploading', sent: 'sent' in s ? s.sent : 0, total: file?.size ?? 0, rate: 0 }));
    upload.current?.start();
  };

  // The same upload again, from where the server stands (its URL is known once it was created).
  const retry = () => {
    if (upload.current?.url) resume();
    else start(previous);
  };

  const busy = state.kind === 'uploading' || state.kind === 'paused';
  return (
    <div class="card">
      <h2>
        Upload to{' '}
        <a href={imagePath(owner, image)}>
          {owner}/{image}
        </a>
      </h2>
      <ErrorBox error={target.error} title="The image to upload to could not be found." />
      {target.data?.raw_file_uploaded && (
        <p class="muted">
          It is at version {target.data.version}; this upload becomes version {(target.data.version ?? 0) + 1}
          .
        </p>
      )}
      {target.data?.read_only && (
        <Notice>This image is read-only: clear read-only on its Edit page first.</Notice>
      )}
      <label>
        File
        <input type="file" onChange={choose} disabled={busy} />
      </label>
      {file && state.kind === 'idle' && (
        <div class="actions">
          {previous ? (
            <>
              <Notice>
                This file was being uploaded here before ({new Date(previous.creationTime).toLocaleString()}):
                it can go on from where the server stands.
              </Notice>
              <button type="button" class="primary" onClick={() => start(previous)}>
                Resume upload
              </button>
              <button type="button" onClick={() => start(null)}>
                Start over
              </button>
            </>
          ) : (
            <button type="button" class="primary" onClick={() => start(null)}>
              Upload {bytes(file.size)}
            </button>
          )}
        </div>
      )}
      {(state.kind === 'uploading' || state.kind === 'paused' || state.kind === 'failed') && (
        <Progress state={state} onPause={pause} onResume={resume} />
      )}
      {state.kind === 'failed' && (
        <>
          <ErrorBox error={state.error} title="The upload stopped." />
          <button type="button" class="primary" onClick={retry}>
            Try again
          </button>
        </>
      )}
      {state.kind === 'done' && (
        <div role="status" class="success">
          <p>
            <strong>Uploaded.</strong> {owner}/{image} is now version {state.image.version},{' '}
            {bytes(state.image.size)}
            {state.image.disk_format ? `, ${state.image.disk_format}` : ''}.
          </p>
          <p>
            SHA-256{' '}
            <code class="hash" data-testid="sha256">
              {state.image.digests?.sha256}
            </code>
          </p>
          <a class="button primary" href={imagePath(owner, image)}>
            See the image
          </a>
        </div>
      )}
    </div>
  );
}

function Progress({ state, onPause, onResume }: { state: State; onPause: () => void; onResume: () => void }) {
  if (!('sent' in state)) return null;
  const { sent, total } = state;
  const rate = state.kind === 'uploading' ? state.rate : 0;
  const percent = total > 0 ? Math.floor((sent / total) * 100) : 0;
  return (
    <div class="progress">
      <progress max={total} value={sent} aria-label="Upload progress" />
      <p>
        {percent}% · {bytes(sent)} of {bytes(total)}
        {state.kind === 'uploading' &&
          rate > 0 &&
          ` · ${bytes(rate)}/s · ${duration((total - sent) / rate)} left`}
        {state.kind === 'paused' && ' · paused'}
      </p>
      {state.kind === 'uploading' && (
        <button type="button" onClick={onPause}>
          Pause
        </button>
      )}
      {state.kind === 'paused' && (
        <button type="button" class="primary" onClick={onResume}>
          Resume
        </button>
      )}
    </div>
  );
}

/** tus-js-client's errors carry the server's answer: its JSON error, in words. */
function tusError(error: Error): Error {
  const response = (error as { originalResponse?: { getBody(): string; getStatus(): number } | null })
    .originalResponse;
  if (!response)
    return new ApiError(0, 'network', `The upload could not reach the server (${error.message}).`);
  try {
    const body = JSON.parse(response.getBody()) as Partial<ErrorBody>;
    if (body.error?.code && body.error.message)
      return new ApiError(response.getStatus(), body.error.code, body.error.message);
  } catch {
    // not JSON: the status says it
  }
  return new ApiError(response.getStatus(), 'http_error', `The server answered ${response.getStatus()}.`);
}
