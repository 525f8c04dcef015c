/** What storage scopes allow and which groups `wlcg.groups` name: the pure rules of tokens/scopes.ts. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  groupNameOfPath,
  joinBase,
  mappedGroups,
  scopesAllow,
  storageScopesOf,
} from '../../src/tokens/scopes.ts';

describe('storage scopes', () => {
  it('reads WLCG and SciTokens scopes, ignores the others, and joins the base path', () => {
    assert.equal(
      storageScopesOf('openid profile offline_access', '/'),
      null,
      'no storage scope: identity only',
    );
    assert.equal(storageScopesOf(undefined, '/'), null);
    assert.deepEqual(storageScopesOf('openid storage.read:/bob storage.create:/bob/new.img', '/'), [
      { operation: 'read', path: '/bob' },
      { operation: 'create', path: '/bob/new.img' },
    ]);
    assert.deepEqual(storageScopesOf('read:/ write:/a.img', '/fts'), [
      { operation: 'read', path: '/fts' },
      { operation: 'modify', path: '/fts/a.img' },
    ]);
    assert.deepEqual(storageScopesOf('storage.modify', '/fts'), [{ operation: 'modify', path: '/fts' }]);
    // a storage scope that cannot be read still narrows: it allows nothing
    assert.deepEqual(storageScopesOf('storage.read:/bob/../pam', '/'), []);
    assert.deepEqual(storageScopesOf('storage.stage:/bob', '/'), []);
  });

  it('compares paths by segment, and create never covers a change', () => {
    const scopes = storageScopesOf('storage.read:/bob storage.create:/carol', '/') ?? [];
    assert.ok(scopesAllow(scopes, { operation: 'read', paths: ['/bob/rhel.img'] }));
    assert.ok(scopesAllow(scopes, { operation: 'read', paths: ['/bob'] }));
    assert.ok(!scopesAllow(scopes, { operation: 'read', paths: ['/bobby/x.img'] }));
    assert.ok(!scopesAllow(scopes, { operation: 'read', paths: ['/'] }));
    assert.ok(scopesAllow(scopes, { operation: 'create', paths: ['/carol/new.img'] }));
    assert.ok(!scopesAllow(scopes, { operation: 'modify', paths: ['/carol/new.img'] }));
    assert.ok(!scopesAllow(scopes, { operation: 'read', paths: ['/carol/new.img'] }), 'create does not read');
    const modify = storageScopesOf('storage.modify:/carol', '/') ?? [];
    assert.ok(scopesAllow(modify, { operation: 'create', paths: ['/carol/x.img'] }), 'modify creates too');
    assert.ok(!scopesAllow(modify, { operation: 'read', paths: ['/carol/x.img'] }));
    assert.ok(
      !scopesAllow(modify, { operation: 'modify', paths: ['/carol/x.img', '/bob/x.img'] }),
      'both paths',
    );
  });

  it('joins base paths canonically', () => {
    assert.equal(joinBase('/', '/'), '/');
    assert.equal(joinBase('/fts', '/'), '/fts');
    assert.equal(joinBase('/fts/', '/a.img'), '/fts/a.img');
    assert.equal(joinBase('/fts', '/../bob'), null);
    assert.equal(joinBase('fts', '/'), null);
  });
});

describe('wlcg.groups', () => {
  it('maps by the table first, then by the prefix rule, and never to admins', () => {
    const rule = { map: { '/atlas': 'atlas-users' }, prefix: true };
    assert.deepEqual(mappedGroups(['/atlas', '/atlas/prod', '/cms/Production'], rule), [
      'atlas-users',
      'atlas-prod',
      'cms-production',
    ]);
    assert.deepEqual(mappedGroups(['/admins', '/atlas/prod'], { map: {}, prefix: true }), ['atlas-prod']);
    assert.deepEqual(mappedGroups(['/atlas/prod'], { map: {}, prefix: false }), []);
    assert.deepEqual(mappedGroups('not a list', rule), []);
    assert.deepEqual(mappedGroups([42, '/a b', '/../x'], { map: {}, prefix: true }), []);
    assert.equal(groupNameOfPath(`/${'a'.repeat(70)}`), null, 'too long for a group name');
  });
});
