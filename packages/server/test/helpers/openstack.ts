/**
 * A real OpenStack for the tests: Keystone and Glance from Debian's packages, started on loopback with SQLite
 * and a filesystem store by the project's own script (scripts/openstack.sh). If it cannot start, the tests
 * that need it fail and say why.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const SCRIPT = resolve(import.meta.dirname, '../../../../scripts/openstack.sh');

export interface OpenStackFixture {
  authUrl: string;
  glanceUrl: string;
  admin: { username: string; password: string; project: string };
  /** A token of the admin, scoped to the admin project, for the tests' own calls. */
  adminToken(): Promise<{ token: string; userId: string; projectId: string }>;
  /** A token of a user of projectUser's, scoped to their project. */
  tokenOf(user: { username: string; password: string; project: string }): Promise<{ token: string }>;
  /** An application credential of the admin (Keystone makes it; its secret is shown once). */
  applicationCredential(name: string): Promise<{ id: string; secret: string }>;
  /** A project of its own with a user of its own in it (the `member` role, as a cloud's users have). */
  projectUser(name: string): Promise<{ username: string; password: string; project: string }>;
  /** Glance's API as the admin, or as the holder of `token` (a project user's, from tokenOf). */
  glance(
    method: string,
    path: string,
    body?: unknown,
    token?: string,
    // biome-ignore lint/suspicious/noExplicitAny: test responses are inspected field by field
  ): Promise<{ status: number; json: any }>;
  stopGlance(): Promise<void>;
  startGlance(): Promise<void>;
  stop(): Promise<void>;
}

/** Starts Keystone and Glance; Glance's web-download trusts `caPem` (a test CA) beside the system's CAs. */
export async function startOpenStack(options: { caPem?: string } = {}): Promise<OpenStackFixture> {
  const dir = await mkdtemp(join(tmpdir(), 'repoman-openstack-'));
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (options.caPem) {
    await writeFile(join(dir, 'test-ca.pem'), options.caPem);
    env.OPENSTACK_CA_FILE = join(dir, 'test-ca.pem');
  }
  let stdout: string;
  try {
    ({ stdout } = await run(SCRIPT, ['start', dir], { timeout: 240_000, env }));
  } catch (error) {
    await run(SCRIPT, ['stop', dir]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
    const { stderr, message } = error as { stderr?: string; message: string };
    throw new Error(
      `The cloud tests need Keystone and Glance (Debian: keystone glance-api python3-openstackclient), started by scripts/openstack.sh: ${stderr?.trim() || message}`,
    );
  }
  const vars = Object.fromEntries(
    stdout
      .trim()
      .split('\n')
      .map((line) => line.split('=', 2) as [string, string]),
  ) as Record<string, string>;
  const authUrl = vars.OS_AUTH_URL as string;
  const glanceUrl = vars.GLANCE_URL as string;
  const admin = { username: 'admin', password: vars.OS_PASSWORD as string, project: 'admin' };

  /** A token of `user` (the admin by default), scoped to their project. */
  async function tokenOf(user: { username: string; password: string; project: string } = admin) {
    const response = await fetch(`${authUrl}/auth/tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        auth: {
          identity: {
            methods: ['password'],
            password: { user: { name: user.username, domain: { name: 'Default' }, password: user.password } },
          },
          scope: { project: { name: user.project, domain: { name: 'Default' } } },
        },
      }),
    });
    if (response.status !== 201) throw new Error(`Keystone: ${response.status} ${await response.text()}`);
    const body = (await response.json()) as { token: { user: { id: string }; project: { id: string } } };
    return {
      token: response.headers.get('x-subject-token') as string,
      userId: body.token.user.id,
      projectId: body.token.project.id,
    };
  }
  const adminToken = () => tokenOf();

  return {
    authUrl,
    glanceUrl,
    admin,
    adminToken,
    tokenOf,
    async applicationCredential(name) {
      const { token, userId } = await adminToken();
      const response = await fetch(`${authUrl}/users/${userId}/application_credentials`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-auth-token': token },
        body: JSON.stringify({ application_credential: { name } }),
      });
      if (response.status !== 201) throw new Error(`Keystone: ${response.status} ${await response.text()}`);
      const made = (await response.json()) as { application_credential: { id: string; secret: string } };
      return { id: made.application_credential.id, secret: made.application_credential.secret };
    },
    async projectUser(name) {
      const { token } = await adminToken();
      const post = async (path: string, body: unknown) => {
        const response = await fetch(`${authUrl}${path}`, {
          method: path.includes('/roles/') ? 'PUT' : 'POST',
          headers: { 'content-type': 'application/json', 'x-auth-token': token },
          ...(body === null ? {} : { body: JSON.stringify(body) }),
        });
        if (response.status >= 300) throw new Error(`Keystone: ${response.status} ${await response.text()}`);
        return response.status === 204 ? {} : ((await response.json()) as Record<string, { id: string }>);
      };
      const password = `pw-${name}-${Date.now()}`;
      const project = (await post('/projects', { project: { name, domain_id: 'default' } })).project as {
        id: string;
      };
      const user = (await post('/users', { user: { name, password, domain_id: 'default' } })).user as {
        id: string;
      };
      const roles = await fetch(`${authUrl}/roles?name=member`, { headers: { 'x-auth-token': token } });
      const role = ((await roles.json()) as { roles: { id: string }[] }).roles[0] as { id: string };
      await post(`/projects/${project.id}/users/${user.id}/roles/${role.id}`, null);
      return { username: name, password, project: name };
    },
    async glance(method, path, body, token) {
      const response = await fetch(`${glanceUrl}${path}`, {
        method,
        headers: {
          'x-auth-token': token ?? (await adminToken()).token,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await response.text();
      let json: unknown;
      try {
        json = text ? JSON.parse(text) : undefined;
      } catch {
        json = text;
      }
      return { status: response.status, json };
    },
    stopGlance: async () => void (await run(SCRIPT, ['stop-glance', dir])),
    startGlance: async () => void (await run(SCRIPT, ['start-glance', dir], { timeout: 120_000, env })),
    async stop() {
      await run(SCRIPT, ['stop', dir]).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
