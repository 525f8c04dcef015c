/** Admin, Audit log: every change, filtered by actor, action, target and outcome, in pages. */
import { useState } from 'preact/hooks';
import { api, call } from '../../api/client';
import { date } from '../../lib/format';
import { navigate, withQuery } from '../../lib/router';
import { ErrorBox, Loading, Pager, useAsync } from '../../lib/ui';
import { AUDIT_PER_PAGE } from './shared';

const AUDIT_FILTERS = ['actor', 'action', 'target', 'outcome'] as const;
type AuditFilter = (typeof AUDIT_FILTERS)[number];

const ACTIONS = [
  'user.',
  'group.',
  'image.',
  'upload.',
  'job.',
  'user.create',
  'user.modify',
  'user.delete',
  'group.create',
  'group.modify',
  'group.delete',
  'group.add_member',
  'group.remove_member',
  'group.grant',
  'group.revoke',
  'image.create',
  'image.modify',
  'image.delete',
  'image.upload',
  'image.rollback',
  'image.share',
  'image.unshare',
  'image.convert',
  'image.delete_variant',
  'upload.create',
  'upload.delete',
  'job.cancel',
];
const OUTCOMES = ['ok', 'failed', 'forbidden', 'limited_proxy', 'quota_exceeded', 'image_read_only'];

function detailText(detail: Record<string, unknown> | null | undefined): string {
  if (!detail) return '';
  return Object.entries(detail)
    .map(([key, value]) => `${key}: ${Array.isArray(value) ? value.join(', ') : String(value)}`)
    .join('; ');
}

export function AuditTab() {
  const search = location.search;
  const query = new URLSearchParams(search);
  const offset = Math.max(0, Number(query.get('offset')) || 0);
  const filters: Partial<Record<AuditFilter, string>> = {};
  for (const key of AUDIT_FILTERS) {
    const value = query.get(key);
    if (value) filters[key] = value;
  }
  const audit = useAsync(
    () => call(api.GET('/api/audit', { params: { query: { ...filters, limit: AUDIT_PER_PAGE, offset } } })),
    [search],
  );
  const filtered = Object.keys(filters).length > 0;
  return (
    <>
      <h2 id="audit-heading">Audit log</h2>
      <p class="muted">Every request that changed something, or tried to, newest first.</p>
      <AuditFilters key={search} filters={filters} filtered={filtered} />
      <ErrorBox error={audit.error} title="The audit log could not be read." />
      {audit.loading && !audit.data && <Loading what="the audit log" />}
      {audit.data && (
        <>
          <p class="count" aria-live="polite">
            {audit.data.total === 0
              ? filtered
                ? 'No entries match.'
                : 'No entries yet.'
              : audit.data.total === 1
                ? '1 entry'
                : `${audit.data.total} entries`}
          </p>
          {audit.data.items.length > 0 && (
            <div class="table-wrap">
              <table class="audit">
                <caption class="visually-hidden">Audit log, newest first</caption>
                <thead>
                  <tr>
                    <th scope="col">Time</th>
                    <th scope="col">Actor</th>
                    <th scope="col">Address</th>
                    <th scope="col">Action</th>
                    <th scope="col">Target</th>
                    <th scope="col">Outcome</th>
                    <th scope="col">Status</th>
                  </tr>
                </thead>
                <tbody>
                  {audit.data.items.map((entry) => {
                    const detail = detailText(entry.detail);
                    return (
                      <tr key={entry.id}>
                        <td>
                          <time
                            dateTime={entry.time}
                            title={
                              entry.request_id ? `${entry.time}, request ${entry.request_id}` : entry.time
                            }
                          >
                            {date(entry.time)}
                          </time>
                        </td>
                        <td>
                          {entry.actor ? (
                            <a
                              href={withQuery({ actor: entry.actor, offset: undefined })}
                              title={entry.dn ?? undefined}
                            >
                              {entry.actor}
                            </a>
                          ) : entry.dn ? (
                            <span class="muted" title={entry.dn}>
                              unknown certificate
                            </span>
                          ) : (
                            '—'
                          )}
                        </td>
                        <td>{entry.address ?? '—'}</td>
                        <td title={entry.method && entry.path ? `${entry.method} ${entry.path}` : undefined}>
                          <code>{entry.action}</code>
                          {detail && <div class="muted small">{detail}</div>}
                        </td>
                        <td class="target">
                          {entry.target ?? '—'}
                          {entry.target_type && <div class="muted small">{entry.target_type}</div>}
                        </td>
                        <td>
                          <span class={`badge ${entry.outcome === 'ok' ? 'public' : 'expired'}`}>
                            {entry.outcome}
                          </span>
                        </td>
                        <td class="number">{entry.status}</td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
          )}
          <Pager
            total={audit.data.total}
            limit={AUDIT_PER_PAGE}
            offset={offset}
            href={(o) => withQuery({ offset: o || undefined })}
          />
        </>
      )}
    </>
  );
}

function AuditFilters(props: { filters: Partial<Record<AuditFilter, string>>; filtered: boolean }) {
  const [values, setValues] = useState<Record<AuditFilter, string>>({
    actor: props.filters.actor ?? '',
    action: props.filters.action ?? '',
    target: props.filters.target ?? '',
    outcome: props.filters.outcome ?? '',
  });
  const submit = (event: Event) => {
    event.preventDefault();
    const changes: Record<string, string | undefined> = { offset: undefined };
    for (const key of AUDIT_FILTERS) changes[key] = values[key].trim() || undefined;
    navigate(withQuery(changes));
  };
  const field = (key: AuditFilter, label: string, extra: Record<string, string> = {}) => (
    <label>
      {label}
      <input
        name={key}
        value={values[key]}
        onInput={(event) => {
          const value = (event.currentTarget as HTMLInputElement).value;
          setValues((all) => ({ ...all, [key]: value }));
        }}
        autocomplete="off"
        spellcheck={false}
        {...extra}
      />
    </label>
  );
  return (
    <search>
      <form class="search" onSubmit={submit} aria-label="Filter the audit log">
        <div class="row">
          {field('actor', 'Actor', { placeholder: 'user name' })}
          {field('action', 'Action', { placeholder: 'image. or image.delete', list: 'audit-actions' })}
          {field('target', 'Target', { placeholder: 'bob, team, bob/rhel.img' })}
          {field('outcome', 'Outcome', { placeholder: 'ok, failed or a code', list: 'audit-outcomes' })}
          <button type="submit">Filter</button>
          {props.filtered && (
            <a class="button" href="/admin/audit">
              Clear filters
            </a>
          )}
        </div>
        <datalist id="audit-actions">
          {ACTIONS.map((action) => (
            <option key={action} value={action} />
          ))}
        </datalist>
        <datalist id="audit-outcomes">
          {OUTCOMES.map((outcome) => (
            <option key={outcome} value={outcome} />
          ))}
        </datalist>
      </form>
    </search>
  );
}
