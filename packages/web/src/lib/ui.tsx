/** Small shared pieces: loading data, errors in words, copy buttons, badges, pages of lists. */
import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import type { Image } from '../api/client';
import { describe } from '../api/client';

export interface Async<T> {
  data: T | undefined;
  error?: unknown;
  loading: boolean;
  reload: () => void;
}

/** Runs `load` now and whenever `keys` change; the latest call wins. */
export function useAsync<T>(load: () => Promise<T>, keys: unknown[]): Async<T> {
  const [state, setState] = useState<{ data?: T; error?: unknown; loading: boolean }>({ loading: true });
  const [tick, setTick] = useState(0);
  const latest = useRef(0);
  // The caller names what the load depends on (`keys`).
  useEffect(() => {
    const id = ++latest.current;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => id === latest.current && setState({ data, loading: false }),
      (error: unknown) => id === latest.current && setState({ error, loading: false }),
    );
  }, [...keys, tick]);
  return { ...state, data: state.data, reload: useCallback(() => setTick((n) => n + 1), []) };
}

export function ErrorBox({ error, title }: { error: unknown; title?: string }) {
  if (!error) return null;
  const { message, advice } = describe(error);
  return (
    <div class="error" role="alert">
      <strong>{title ?? 'That did not work.'}</strong> {message}
      {advice && <p>{advice}</p>}
    </div>
  );
}

/** A message: a caution (yellow), or with `ok` a success (green). */
export function Notice({ children, ok = false }: { children: ComponentChildren; ok?: boolean }) {
  return (
    <p class={ok ? 'notice ok' : 'notice'} role="status">
      {children}
    </p>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="loading" aria-busy="true">
      Loading {what}…
    </p>
  );
}

export function CopyButton({ text, label }: { text: string; label: string }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      // Without clipboard access (plain HTTP is not a secure context), select the text for ctrl+C instead.
      const field = document.createElement('textarea');
      field.value = text;
      document.body.append(field);
      field.select();
      document.execCommand('copy');
      field.remove();
    }
    setCopied(true);
    setTimeout(() => setCopied(false), 1500);
  };
  return (
    <button type="button" class="copy" onClick={copy} aria-label={`Copy ${label}`}>
      {copied ? 'Copied' : 'Copy'}
    </button>
  );
}

/** A value people copy: shown in full, with its button. */
export function Copyable({ text, label }: { text: string; label: string }) {
  return (
    <div class="copyable">
      <code>{text}</code>
      <CopyButton text={text} label={label} />
    </div>
  );
}

/** `me`: the signed-in user (null: nobody, or an admin, to whom "shared" would say nothing). */
export function Badges({ image, me }: { image: Image; me: string | null }) {
  const shares = (image.shared_with?.users?.length ?? 0) + (image.shared_with?.groups?.length ?? 0);
  return (
    <span class="badges">
      {image.unauthenticated_access && <span class="badge public">public</span>}
      {(shares > 0 || (me !== null && image.owner !== me && !image.unauthenticated_access)) && (
        <span
          class="badge shared"
          title={shares > 0 ? `shared with ${shares} users or groups` : 'shared with you'}
        >
          shared
        </span>
      )}
      {image.read_only && <span class="badge readonly">read-only</span>}
      {image.expired && <span class="badge expired">expired</span>}
      {!image.raw_file_uploaded && <span class="badge empty">no bytes yet</span>}
    </span>
  );
}

export function Pager(props: {
  total: number;
  limit: number;
  offset: number;
  href: (offset: number) => string;
}) {
  const { total, limit, offset } = props;
  if (total <= limit && offset === 0) return null;
  if (offset >= total && total > 0)
    return (
      <nav class="pager" aria-label="Pages">
        <a href={props.href(0)}>← First page</a>
      </nav>
    );
  const last = Math.min(offset + limit, total);
  return (
    <nav class="pager" aria-label="Pages">
      {offset > 0 ? <a href={props.href(Math.max(0, offset - limit))}>← Previous</a> : <span />}
      <span>
        {offset + 1}–{last} of {total}
      </span>
      {last < total ? <a href={props.href(offset + limit)}>Next →</a> : <span />}
    </nav>
  );
}

/**
 * Focus for an inline confirmation ("Delete …?"): to its "Yes" button (`yes`) when it appears, back to the
 * button that asked (`ask`) when it goes, so that keyboard and screen-reader users stay where they were.
 */
export function useConfirmFocus(confirming: boolean) {
  const yes = useRef<HTMLButtonElement>(null);
  const ask = useRef<HTMLButtonElement>(null);
  const shown = useRef(false);
  useEffect(() => {
    if (confirming) yes.current?.focus();
    else if (shown.current) ask.current?.focus();
    shown.current = confirming;
  }, [confirming]);
  return { yes, ask };
}

/**
 * Busy, failed or done: the state of one thing the user asked for. `run` does it; what it returns is the
 * message to show on success. True if it succeeded.
 */
export function useAction() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState('');
  const run = async (work: () => Promise<string | undefined>): Promise<boolean> => {
    setBusy(true);
    setError(null);
    setNotice('');
    try {
      const done = await work();
      if (done) setNotice(done);
      return true;
    } catch (failure) {
      setError(failure);
      return false;
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, notice, run, setError };
}
