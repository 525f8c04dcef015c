/** The server's name check, with the grid convention for host certificates named `CN=host/<fqdn>`. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PeerCertificate } from 'node:tls';
import { checkServer } from '../src/api.ts';

const certificate = (fields: { CN: string | string[]; subjectaltname?: string }) =>
  ({ subject: { CN: fields.CN }, subjectaltname: fields.subjectaltname }) as unknown as PeerCertificate;

describe('checkServer', () => {
  it('accepts what TLS accepts: a subjectAltName naming the host', () => {
    assert.equal(
      checkServer('repo.example.org', certificate({ CN: 'x', subjectaltname: 'DNS:repo.example.org' })),
      undefined,
    );
  });
  it('accepts a grid host certificate named host/<fqdn> without subjectAltName', () => {
    assert.equal(checkServer('repo.example.org', certificate({ CN: 'host/repo.example.org' })), undefined);
    assert.equal(
      checkServer('REPO.example.org', certificate({ CN: ['host/repo.example.org', 'other'] })),
      undefined,
    );
  });
  it('refuses other hosts, and host/ names once a subjectAltName is there', () => {
    assert.ok(checkServer('evil.example.org', certificate({ CN: 'host/repo.example.org' })));
    assert.ok(
      checkServer(
        'repo.example.org',
        certificate({ CN: 'host/repo.example.org', subjectaltname: 'DNS:other.example.org' }),
      ),
    );
  });
});
