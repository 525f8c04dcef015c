/**
 * Database faults (reliability, part 3), run by `npm run test:faults`: PostgreSQL stopped and started again
 * under load. While it is down every request fails cleanly with 503 `database_unavailable` (never a 500, never
 * a hang); afterwards requests succeed again without restarting Repoman, and nothing was half-written.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { clientFor } from '../helpers/http.ts';
import { makeTestPki, type TestPki } from '../helpers/pki.ts';
import { PG_URL, requirePostgres } from '../helpers/postgres.ts';
import { startServerFor, type TestServer } from '../helpers/server.ts';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Stops or starts the PostgreSQL the tests use: the throwaway cluster of scripts/test-setup.sh through the
 * program it names in REPOMAN_TEST_PG_CTL, else the system's first cluster with pg_ctlcluster.
 */
async function cluster(action: 'stop' | 'start') {
  const ctl = process.env.REPOMAN_TEST_PG_CTL;
  if (ctl) await run(ctl, [action]);
  else {
    const [version] = await readdir('/etc/postgresql');
    await run('pg_ctlcluster', ['--skip-systemctl-redirect', version as string, 'main', action]);
  }
  if (action === 'start') {
    for (let i = 0; i < 60; i++) {
      if (
        await requirePostgres().then(
          () => true,
          () => false,
        )
      )
        return;
      await sleep(500);
    }
    throw new Error(`PostgreSQL did not come back at ${PG_URL}`);
  }
}

describe('PostgreSQL stopped and started under load', () => {
  let pki: TestPki;
  let server: TestServer;
  let bob: ReturnType<typeof clientFor>;

  before(async () => {
    pki = await makeTestPki();
    server = await startServerFor(pki, 'postgres');
    const admin = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('admin'));
    await admin.post('/api/users', { user_name: 'bob', client_dn: pki.dn('bob') });
    bob = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('bob'));
  });
  after(async () => {
    // Whatever happened, PostgreSQL runs again for everything after this test.
    await cluster('start').catch(() => {});
    await server?.stop();
  });

  it('answers 503 while the database is down, and serves again once it is back', async (t) => {
    const statuses: number[] = [];
    let running = true;
    let created = 0;
    const load = (async () => {
      for (let i = 0; running; i++) {
        const responses = await Promise.all([
          bob.get('/api/images'),
          bob.post('/api/images', { name: `load-${i}.img` }),
          bob.get('/api/whoami'),
        ]);
        for (const response of responses) {
          statuses.push(response.status);
          if (response.status >= 500)
            assert.equal(response.json?.error?.code, 'database_unavailable', JSON.stringify(response.json));
        }
        if (responses[1]?.status === 201) created++;
        await sleep(20);
      }
    })();
    await sleep(500);
    await cluster('stop');
    await sleep(2000);
    const whileDown = await bob.get('/api/images');
    assert.equal(whileDown.status, 503);
    assert.equal(whileDown.json.error.code, 'database_unavailable');
    await cluster('start');
    // Back without restarting Repoman: the pool makes new connections.
    let recovered = false;
    for (let i = 0; i < 40 && !recovered; i++) {
      recovered = (await bob.get('/api/images')).status === 200;
      if (!recovered) await sleep(250);
    }
    assert.ok(recovered, 'requests succeed again after PostgreSQL is back');
    await sleep(500);
    running = false;
    await load;
    assert.deepEqual(
      [...new Set(statuses)].sort(),
      [200, 201, 503],
      'only successes and clean 503s, never a 500',
    );
    // Every image the load was told was created exists; none was half-written.
    const listed = (await bob.get('/api/images', undefined, {})).json;
    assert.ok(listed.total >= created, `${listed.total} images listed, ${created} created`);
    t.diagnostic(
      `${statuses.length} requests under load: ${statuses.filter((s) => s === 503).length} clean 503s while PostgreSQL was down, no other failure`,
    );
  });
});
