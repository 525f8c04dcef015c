/** What the admin tabs share: name rules, list and quota readers, and the form that creates a user or a group. */
import type { ComponentChildren } from 'preact';
import { ErrorBox, Notice, useAction } from '../../lib/ui';

/** User and group names (docs/api.md, "Names and DNs"); `\-` so that it is valid with the `v` flag too. */
export const NAME_PATTERN = '[a-z0-9_\\-]{1,64}';
export const NAME_HINT = 'Lower-case letters, digits, dash and underscore; at most 64.';
export const GIB = 1024 ** 3;
export const USERS_PER_PAGE = 100;
export const AUDIT_PER_PAGE = 50;
export const ADMINS = 'admins';

export const list = (text: string) =>
  text
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);

export const gib = (quota: number | null | undefined) =>
  quota === null || quota === undefined ? '' : String(Number((quota / GIB).toFixed(3)));

/** One text field: its label, input and hint (tied to the input for screen readers). */
export function TextField(props: {
  label: string;
  name: string;
  value: string;
  onInput: (value: string) => void;
  hint?: ComponentChildren;
  type?: 'text' | 'email';
  required?: boolean;
  pattern?: string;
  maxLength?: number;
  placeholder?: string;
}) {
  const id = `field-${props.name}`;
  const hintId = props.hint ? `${props.name}-hint` : undefined;
  // Only the attributes given (the typed input attributes take no explicit undefined).
  const given = {
    ...(hintId ? { 'aria-describedby': hintId } : {}),
    ...(props.required ? { required: true } : {}),
    ...(props.pattern ? { pattern: props.pattern } : {}),
    ...(props.maxLength ? { maxLength: props.maxLength } : {}),
    ...(props.placeholder ? { placeholder: props.placeholder } : {}),
  };
  const onInput = (event: Event) => props.onInput((event.currentTarget as HTMLInputElement).value);
  const input =
    props.type === 'email' ? (
      <input
        name={props.name}
        type="email"
        value={props.value}
        onInput={onInput}
        autocomplete="off"
        {...given}
      />
    ) : (
      <input
        id={id}
        name={props.name}
        value={props.value}
        onInput={onInput}
        autocomplete="off"
        spellcheck={false}
        {...given}
      />
    );
  if (!props.hint)
    return (
      <label for={id}>
        {props.label}
        {input}
      </label>
    );
  return (
    <div class="field">
      <label for={id}>
        {props.label}
        {input}
      </label>
      <span class="hint" id={hintId}>
        {props.hint}
      </span>
    </div>
  );
}

/** A field's setter that also says the form was edited (the last "Created …" notice goes). */
export const editing = (onEdit: () => void) => (set: (value: string) => void) => (value: string) => {
  set(value);
  onEdit();
};

/**
 * The "Create a user" and "Create a group" card: its heading, the fields given as children, why it failed,
 * what was created, and the button. `send` creates it; `onCreated` gets what was made (to clear the fields).
 */
export function CreateForm<T>(props: {
  /** `user` or `group`: the heading, the button and the messages say it. */
  noun: string;
  send: () => Promise<T>;
  onCreated: (made: T) => void;
  created: string;
  intro?: ComponentChildren;
  children: ComponentChildren;
}) {
  const { noun } = props;
  const action = useAction();
  const submit = async () => {
    let made: T | undefined;
    const ok = await action.run(async () => {
      made = await props.send();
      return undefined;
    });
    if (ok && made !== undefined) props.onCreated(made);
  };
  return (
    <form
      class="card"
      aria-labelledby={`create-${noun}-heading`}
      onSubmit={(event) => {
        event.preventDefault();
        void submit();
      }}
    >
      <h2 id={`create-${noun}-heading`}>Create a {noun}</h2>
      {props.intro}
      {props.children}
      <ErrorBox error={action.error} title={`The ${noun} was not created.`} />
      {props.created && <Notice ok>{props.created}</Notice>}
      <button type="submit" class="primary" disabled={action.busy}>
        {action.busy ? 'Creating…' : `Create ${noun}`}
      </button>
    </form>
  );
}

/** A user's or group's name: the rule the server checks, said and checked here first. */
export function NameField(props: {
  label: string;
  name: string;
  value: string;
  onInput: (value: string) => void;
}) {
  return <TextField {...props} hint={NAME_HINT} required pattern={NAME_PATTERN} maxLength={64} />;
}
