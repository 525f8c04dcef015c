/**
 * Admin: users (created from a certificate DN; the CA they are bound to, suspension, quota, deletion), groups
 * (members, permissions) and the audit log; one file per tab.
 */
import { isAdmin, type Session, userName } from '../../lib/session';
import { ErrorBox } from '../../lib/ui';
import { AuditTab } from './audit';
import { GroupsTab } from './groups';
import { UsersTab } from './users';

const TABS = [
  ['users', '/admin', 'Users'],
  ['groups', '/admin/groups', 'Groups'],
  ['audit', '/admin/audit', 'Audit log'],
] as const;

export function AdminPage({ session, tab }: { session: Session; tab: string }) {
  if (!isAdmin(session))
    return (
      <section>
        <h1>Admin</h1>
        <ErrorBox
          title="Only Repoman administrators may use these pages."
          error={
            new Error(
              session.kind === 'user'
                ? 'Your account is not in the admins group, so it cannot manage users, groups or the audit log.'
                : 'Sign in with the certificate of an administrator (a member of the admins group) to manage users, groups and the audit log.',
            )
          }
        />
      </section>
    );
  const me = userName(session) ?? '';
  return (
    <section>
      <h1>Admin</h1>
      <nav class="tabs" aria-label="Admin sections">
        {TABS.map(([key, href, label]) => (
          <a key={key} href={href} aria-current={tab === key ? 'page' : undefined}>
            {label}
          </a>
        ))}
      </nav>
      {tab === 'users' ? (
        <UsersTab me={me} />
      ) : tab === 'groups' ? (
        <GroupsTab me={me} />
      ) : tab === 'audit' ? (
        <AuditTab />
      ) : (
        <ErrorBox
          title="No such admin section."
          error={new Error('Choose Users, Groups or Audit log above.')}
        />
      )}
    </section>
  );
}
