/**
 * Prometheus metrics: they change as requests are made (requests, bytes, transfers, authentication failures,
 * database and store latency), and only the configured addresses may read them.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { clientFor } from './helpers/http.ts';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import { startServerFor, type TestServer } from './helpers/server.ts';

/** The value of one sample, `name{labels}` exactly as exposed (labels in the order the server writes them). */
function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

describe('Prometheus metrics', () => {
  let pki: TestPki;
  let server: TestServer;
  let closed: TestServer;
  before(async () => {
    pki = await makeTestPki();
    server = await startServerFor(pki, 'sqlite');
    closed = await startServerFor(pki, 'sqlite', { REPOMAN_METRICS_ALLOW: '192.0.2.1' });
  });
  after(async () => {
    await server?.stop();
    await closed?.stop();
  });

  const scrape = async () => {
    const res = await fetch(`${server.httpUrl}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
    return res.text();
  };

  it('count requests, bytes, transfers, authentication failures, and time the database and the store', async () => {
    const admin = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('admin'));
    const before = await scrape();
    await admin.post('/api/images', { name: 'm.img' });
    const bytes = Buffer.alloc(300_000, 7);
    assert.equal((await admin.put('/api/images/raw/m.img', bytes)).status, 201);
    assert.equal((await admin.get('/api/images/raw/admin/m.img')).body.length, bytes.length);
    const stranger = clientFor(server.httpsUrl, pki.ca.certPem, pki.credential('stranger'));
    assert.equal((await stranger.get('/api/whoami')).status, 403);
    const after = await scrape();
    const grew = (series: string, by = 1) =>
      assert.ok(
        sample(after, series) >= sample(before, series) + by,
        `${series}: ${sample(before, series)} → ${sample(after, series)}`,
      );
    grew('repoman_http_requests_total{method="PUT",route="/api/images/raw/:image",status="201"}');
    grew('repoman_http_requests_total{method="GET",route="/api/images/raw/:user/:image",status="200"}');
    grew('repoman_http_requests_total{method="GET",route="/api/whoami",status="403"}');
    grew('repoman_http_received_bytes_total{route="/api/images/raw/:image"}', bytes.length);
    grew('repoman_http_sent_bytes_total{route="/api/images/raw/:user/:image"}', bytes.length);
    grew('repoman_transfer_duration_seconds_count{direction="upload",outcome="ok"}');
    grew('repoman_transfer_duration_seconds_count{direction="download",outcome="ok"}');
    assert.equal(sample(after, 'repoman_transfers_active{direction="upload"}'), 0, 'none left running');
    grew('repoman_auth_failures_total{reason="unknown_certificate"}');
    grew('repoman_db_query_duration_seconds_count{outcome="ok"}', 3);
    grew('repoman_store_operation_duration_seconds_count{operation="upload_commit",outcome="ok"}');
    grew('repoman_store_operation_duration_seconds_count{operation="read",outcome="ok"}');
    assert.match(after, /^repoman_process_resident_memory_bytes \d+/m, "and the process's own");
  });

  it('answer only the configured addresses', async () => {
    const res = await fetch(`${closed.httpUrl}/metrics`);
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'not_found');
  });
});
