/**
 * The authorization matrix: every route of the API (checked against /api/openapi.json, so a new route must
 * join the table) against every role: anonymous, an unknown DN, a suspended user, an ordinary user, a user
 * the image is shared with, a member of a group it is shared with, its owner, an admin, and a holder of each
 * of the 16 permissions. The expected status of each cell is in MATRIX below; docs/security.md shows the same
 * table, and this test checks that it does.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import { PERMISSIONS } from '@repoman/core';
import { type ClientCredential, request } from './helpers/http.ts';
import { makeTestPki, type TestPki } from './helpers/pki.ts';
import { startServerFor, type TestServer } from './helpers/server.ts';

/** The roles, in the order of the table's columns; a permission holder's column is its permission. */
const ROLES = [
  'anonymous',
  'unknown',
  'suspended',
  'user',
  'reader',
  'member',
  'owner',
  'limited',
  'admin',
  ...PERMISSIONS,
] as const;
type Role = (typeof ROLES)[number];

/** Short column titles for the table. */
const TITLES: Record<Role, string> = {
  anonymous: 'anon',
  unknown: 'unkn',
  suspended: 'susp',
  user: 'user',
  reader: 'shrd',
  member: 'grp',
  owner: 'ownr',
  limited: 'lim',
  admin: 'admn',
  user_create: 'uc',
  user_modify: 'um',
  user_delete: 'ud',
  user_modify_self: 'ums',
  group_create: 'gc',
  group_modify: 'gm',
  group_delete: 'gd',
  group_modify_membership: 'gmm',
  group_modify_permissions: 'gmp',
  image_create: 'ic',
  image_modify: 'im',
  image_delete: 'id',
  image_modify_group: 'img',
  image_delete_group: 'idg',
  image_endorse: 'ie',
  cloud_manage: 'cm',
};

/** The user name playing a role (anonymous has none; unknown has a certificate but no account). */
const userOf = (role: Role) =>
  ({
    anonymous: 'nobody',
    unknown: 'stranger',
    suspended: 'sam',
    user: 'ursula',
    reader: 'rita',
    member: 'mia',
    owner: 'bob',
    limited: 'bob',
    admin: 'admin',
  })[role as string] ?? `p-${role.replaceAll('_', '-')}`;

interface Cell {
  /** METHOD path; {r} is the role's own short name (a target of its own), {me} its user name. */
  route: string;
  body?: unknown;
  raw?: Buffer;
  /** Headers, or headers made for the role's short name. */
  headers?: Record<string, string> | ((r: string) => Record<string, string>);
  /** Said after the route in docs/security.md. */
  label?: string;
  /** Over the plain-HTTP port (no certificate there: everyone is anonymous). */
  http?: boolean;
}

const TUS = { 'tus-resumable': '1.0.0' };
const MACAROON = { 'content-type': 'application/macaroon-request' };
/** The other end of a third-party copy: the policy refuses it once the copy has started (202, then failure). */
const NOWHERE = 'https://127.0.0.1:9/nothing.img';
const MACAROON_ASK = Buffer.from('{"validity": "PT1H"}');
const b64 = (text: string) => Buffer.from(text).toString('base64');

// biome-ignore format: the table is read by people, column by column
const MATRIX: [Cell, string][] = [
  //                                                                                                                                                               ano unk sus usr shr grp own lim adm uc  um  ud  ums gc  gm  gd  gmm gmp ic  im  id  img idg ie cm
  [{ route: 'GET /api/whoami' },                                                                                                                                  '401 403 403 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'POST /api/whoami/identities', label: 'no session beside the certificate' }, '401 403 403 400 400 400 400 403 400 400 400 400 400 400 400 400 400 400 400 400 400 400 400 400 400'],
  [{ route: 'GET /api/users/bob/identities' }, '401 403 403 403 403 403 200 200 200 403 403 403 403 403 403 403 403 403 403 403 403 403 403 403 403'],
  [{ route: 'POST /api/users/bob/identities', body: { issuer: 'https://iam.example', subject: 'sub-{r}' }, label: 'an issuer not trusted here' }, '401 403 403 403 403 403 403 403 400 403 400 403 403 403 403 403 403 403 403 403 403 403 403 403 403'],
  [{ route: 'DELETE /api/users/bob/identities/999999' }, '401 403 403 403 403 403 404 403 404 403 404 403 403 403 403 403 403 403 403 403 403 403 403 403 403'],
  [{ route: 'GET /api/auth/issuers' }, '200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'GET /api/auth/sign-in?issuer=https%3A%2F%2Fiam.example', label: 'an issuer not trusted here' }, '404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'GET /api/auth/callback?state=x&code=y', label: 'no sign-in started' }, '303 303 303 303 303 303 303 303 303 303 303 303 303 303 303 303 303 303 303 303 303 303 303 303 303'],
  [{ route: 'POST /api/auth/sign-out' }, '200 200 200 200 200 200 200 403 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'GET /api/users' },                                                                                                                                   '401 403 403 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'POST /api/users', body: { user_name: 'new-{r}', client_dn: '/O=Grid/CN=New {r}' } },                                                                 '401 403 403 403 403 403 403 403 201 201 403 403 403 403 403 403 403 403 403 403 403 403 403 403 403'],
  [{ route: 'GET /api/users/bob' },                                                                                                                               '401 403 403 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'PATCH /api/users/victim-{r}', body: { full_name: 'Changed' } },                                                                                      '401 403 403 403 403 403 403 403 200 403 200 403 403 403 403 403 403 403 403 403 403 403 403 403 403'],
  [{ route: 'PATCH /api/users/{me}', body: { full_name: 'Myself' } },                                                                                             '401 403 403 200 200 200 200 403 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'DELETE /api/users/gone-{r}' },                                                                                                                       '401 403 403 403 403 403 403 403 204 403 403 204 403 403 403 403 403 403 403 403 403 403 403 403 403'],
  [{ route: 'POST /api/users/victim-{r}', body: { email: 'victim-{r}@example.org' } },                                                                            '401 403 403 403 403 403 403 403 200 403 200 403 403 403 403 403 403 403 403 403 403 403 403 403 403'],
  [{ route: 'GET /api/users/bob/images' },                                                                                                                        '401 403 403 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'GET /api/users/bob/groups' },                                                                                                                        '401 403 403 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'GET /api/users/bob/shared' },                                                                                                                        '401 403 403 403 403 403 200 200 200 403 403 403 403 403 403 403 403 403 403 403 403 403 403 403 403'],
  [{ route: 'GET /api/groups' },                                                                                                                                  '401 403 403 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'POST /api/groups', body: { name: 'ng-{r}' } },                                                                                                       '401 403 403 403 403 403 403 403 201 403 403 403 403 201 403 403 403 403 403 403 403 403 403 403 403'],
  [{ route: 'GET /api/groups/team' },                                                                                                                             '401 403 403 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'PATCH /api/groups/vg-{r}', body: { name: 'vr-{r}' } },                                                                                               '401 403 403 403 403 403 403 403 200 403 403 403 403 403 200 403 403 403 403 403 403 403 403 403 403'],
  [{ route: 'POST /api/groups/vgr-{r}', body: { name: 'vs-{r}' } },                                                                                               '401 403 403 403 403 403 403 403 200 403 403 403 403 403 200 403 403 403 403 403 403 403 403 403 403'],
  [{ route: 'DELETE /api/groups/vgd-{r}' },                                                                                                                       '401 403 403 403 403 403 403 403 204 403 403 403 403 403 403 204 403 403 403 403 403 403 403 403 403'],
  [{ route: 'GET /api/groups/team/shared' },                                                                                                                      '401 403 403 403 403 403 200 200 200 403 403 403 403 403 403 403 403 403 403 403 403 200 200 403 403'],
  [{ route: 'GET /api/groups/team/users' },                                                                                                                       '401 403 403 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'GET /api/groups/team/permissions' },                                                                                                                 '401 403 403 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'POST /api/groups/vgm-{r}/users/victim-{r}' },                                                                                                        '401 403 403 403 403 403 403 403 200 403 403 403 403 403 403 403 200 403 403 403 403 403 403 403 403'],
  [{ route: 'DELETE /api/groups/vgm-{r}/users/bob' },                                                                                                             '401 403 403 403 403 403 403 403 200 403 403 403 403 403 403 403 200 403 403 403 403 403 403 403 403'],
  [{ route: 'POST /api/groups/vgp-{r}/permissions/image_delete' },                                                                                                '401 403 403 403 403 403 403 403 200 403 403 403 403 403 403 403 403 403 403 403 403 403 403 403 403'],
  [{ route: 'DELETE /api/groups/vgp-{r}/permissions/image_create' },                                                                                              '401 403 403 403 403 403 403 403 200 403 403 403 403 403 403 403 403 200 403 403 403 403 403 403 403'],
  [{ route: 'GET /api/groups/vo/endorsements' },                                                                                                                  '401 403 403 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'POST /api/groups/vo/endorsements', body: { image: 'bob/pub.img', expires: '2099-01-01' } },                                                        '401 403 403 403 403 403 403 403 201 403 403 403 403 403 403 403 403 403 403 403 403 403 403 201 403'],
  [{ route: 'GET /api/groups/vo/endorsements/bob/pub.img' },                                                                                                      '401 403 403 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'DELETE /api/groups/vo/endorsements/bob/end-{r}.img' },                                                                                               '401 403 403 403 403 403 403 403 204 403 403 403 403 403 403 403 403 403 403 403 403 403 403 204 403'],
  [{ route: 'GET /api/groups/vo/image-list/access' },                                                                                                             '401 403 403 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'PUT /api/groups/vo/image-list/access', body: { subscribers_only: false } },                                                                           '401 403 403 403 403 403 403 403 200 403 403 403 403 403 403 403 403 403 403 403 403 403 403 200 403'],
  [{ route: 'GET /api/groups/vo/subscribers' },                                                                                                                   '401 403 403 403 403 403 403 403 200 403 403 403 403 403 403 403 403 403 403 403 403 403 403 200 403'],
  [{ route: 'POST /api/groups/vo/subscribers', body: { name: 'site {r}' } },                                                                                      '401 403 403 403 403 403 403 403 201 403 403 403 403 403 403 403 403 403 403 403 403 403 403 201 403'],
  [{ route: 'DELETE /api/groups/vo/subscribers/{subscriber}' },                                                                                                   '401 403 403 403 403 403 403 403 204 403 403 403 403 403 403 403 403 403 403 403 403 403 403 204 403'],
  [{ route: 'GET /api/groups/vo/image-list' },                                                                                                                    '200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'GET /api/groups/vo/image-list', http: true, label: 'plain HTTP' },                                                                                   '200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'GET /api/groups/vo/image-list.json' },                                                                                                               '200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'GET /api/groups/team/image-list', label: 'holding a private image: its members, or a subscriber token' },                                          '401 401 401 401 401 401 200 200 200 401 401 401 401 401 401 401 401 401 401 401 401 200 200 401 401'],
  [{ route: 'GET /api/groups/vo/endorsers/p-image-endorse/image-list', label: 'not signed by its endorser' },                                                   '404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'GET /api/groups/vo/endorsers/p-image-endorse/image-list.json' },                                                                                     '200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'PUT /api/groups/vo/endorsers/{me}/image-list', raw: Buffer.from('not signed'), headers: { 'content-type': 'text/plain', 'if-match': '"x"' }, label: 'one’s own, signed badly' }, '401 403 403 403 403 403 403 403 412 403 403 403 403 403 403 403 403 403 403 403 403 403 403 412 403'],
  [{ route: 'GET /api/images/bob/pub.img/image-list' },                                                                                                           '200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'GET /api/images/bob/pub.img/image-list.json' },                                                                                                      '200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'GET /api/clouds' },                                                                                                                                  '401 403 403 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'GET /api/clouds/vo' },                                                                                                                               '401 403 403 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'POST /api/clouds/vo', body: { name: 'c-{r}', auth_url: 'http://127.0.0.1:9/v3', application_credential_id: 'x', application_credential_secret: 'y' }, label: 'a cloud that does not answer' }, '401 403 403 403 403 403 403 403 400 403 403 403 403 403 403 403 403 403 403 403 403 403 403 403 400'],
  [{ route: 'GET /api/clouds/vo/site' },                                                                                                                          '401 403 403 404 404 404 200 200 200 404 404 404 404 404 404 404 404 404 404 404 404 404 404 200 200'],
  [{ route: 'PATCH /api/clouds/vo/site', body: { name_prefix: 'x-' } },                                                                                           '401 403 403 404 404 404 403 403 200 404 404 404 404 404 404 404 404 404 404 404 404 404 404 403 200'],
  [{ route: 'POST /api/clouds/vo/site', body: { name_prefix: 'y-' } },                                                                                            '401 403 403 404 404 404 403 403 200 404 404 404 404 404 404 404 404 404 404 404 404 404 404 403 200'],
  [{ route: 'DELETE /api/clouds/vo/del-{r}' },                                                                                                                    '401 403 403 404 404 404 403 403 204 404 404 404 404 404 404 404 404 404 404 404 404 404 404 403 204'],
  [{ route: 'PUT /api/clouds/vo/site/images/bob/pub.img' },                                                                                                       '401 403 403 404 404 404 403 403 200 404 404 404 404 404 404 404 404 404 404 404 404 404 404 403 200'],
  [{ route: 'DELETE /api/clouds/vo/site/images/bob/end-{r}.img' },                                                                                                '401 403 403 404 404 404 403 403 200 404 404 404 404 404 404 404 404 404 404 404 404 404 404 403 200'],
  [{ route: 'GET /api/clouds/vo/site/status' },                                                                                                                   '401 403 403 404 404 404 200 200 200 404 404 404 404 404 404 404 404 404 404 404 404 404 404 200 200'],
  [{ route: 'POST /api/clouds/vo/site/sync' },                                                                                                                    '401 403 403 404 404 404 403 403 202 404 404 404 404 404 404 404 404 404 404 404 404 404 404 403 202'],
  [{ route: 'GET /api/images' },                                                                                                                                  '200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'GET /api/images', http: true, label: 'plain HTTP' },                                                                                                 '200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'POST /api/images', body: { name: 'new-{r}.img' }, label: 'in one’s own namespace' },                                                                 '401 403 403 201 201 201 201 403 201 201 201 201 201 201 201 201 201 201 201 201 201 201 201 201 201'],
  [{ route: 'POST /api/images', body: { name: 'for-bob-{r}.img', owner: 'bob' }, label: 'in bob’s namespace' },                                                   '401 403 403 403 403 403 201 403 201 403 403 403 403 403 403 403 403 403 403 403 403 403 403 403 403'],
  [{ route: 'GET /api/images/bob/vm.img' },                                                                                                                       '404 403 403 404 200 200 200 200 200 404 404 404 404 404 404 404 404 404 404 200 200 200 200 404 404'],
  [{ route: 'GET /api/images/bob/pub.img' },                                                                                                                      '200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'GET /api/images/bob/pub.img', http: true, label: 'plain HTTP' },                                                                                     '200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'PATCH /api/images/bob/vm-{r}.img', body: { description: 'changed' } },                                                                               '401 403 403 404 403 403 200 403 200 404 404 404 404 404 404 404 404 404 404 200 403 200 403 404 404'],
  [{ route: 'POST /api/images/bob/vm-{r}.img', body: { os_type: 'linux' } },                                                                                      '401 403 403 404 403 403 200 403 200 404 404 404 404 404 404 404 404 404 404 200 403 200 403 404 404'],
  [{ route: 'PATCH /api/images/bob/give-{r}.img', body: { owner: 'ursula' }, label: 'give it away' },                                                             '401 403 403 404 403 403 403 403 200 404 404 404 404 404 404 404 404 404 404 403 403 403 403 404 404'],
  [{ route: 'POST /api/images/bob/off-{r}.img/transfer', body: { to: 'ursula' }, label: 'offer it' },                                                             '401 403 403 404 403 403 201 403 201 404 404 404 404 404 404 404 404 404 404 403 403 403 403 404 404'],
  [{ route: 'DELETE /api/images/bob/del-{r}.img' },                                                                                                               '401 403 403 404 403 403 204 403 204 404 404 404 404 404 404 404 404 404 404 403 204 403 204 404 404'],
  [{ route: 'GET /api/images/bob/vm.img/versions' },                                                                                                              '401 403 403 404 200 200 200 200 200 404 404 404 404 404 404 404 404 404 404 200 200 200 200 404 404'],
  [{ route: 'POST /api/images/bob/vm-{r}.img/rollback', body: { version: 1 } },                                                                                   '401 403 403 404 403 403 200 403 200 404 404 404 404 404 404 404 404 404 404 200 403 200 403 404 404'],
  [{ route: 'POST /api/images/bob/vm-{r}.img/share/user/ursula' },                                                                                                '401 403 403 404 403 403 200 403 200 404 404 404 404 404 404 404 404 404 404 403 403 403 403 404 404'],
  [{ route: 'DELETE /api/images/bob/vm-{r}.img/share/user/rita' },                                                                                                '401 403 403 404 403 403 200 403 200 404 404 404 404 404 404 404 404 404 404 403 403 403 403 404 404'],
  [{ route: 'POST /api/images/bob/vm-{r}.img/share/group/team' },                                                                                                 '401 403 403 404 403 403 200 403 200 404 404 404 404 404 404 404 404 404 404 403 403 403 403 404 404'],
  [{ route: 'DELETE /api/images/bob/vm-{r}.img/share/group/readers' },                                                                                            '401 403 403 404 403 403 200 403 200 404 404 404 404 404 404 404 404 404 404 403 403 403 403 404 404'],
  [{ route: 'POST /api/images/bob/vm-{r}.img/conversions', body: { format: 'qcow2' } },                                                                           '401 403 403 404 403 403 202 403 202 404 404 404 404 404 404 404 404 404 404 202 403 202 403 404 404'],
  [{ route: 'DELETE /api/images/bob/vm.img/variants/qcow2' },                                                                                                     '401 403 403 404 403 403 404 403 404 404 404 404 404 404 404 404 404 404 404 404 403 404 403 404 404'],
  [{ route: 'GET /api/images/own.img' },                                                                                                                          '401 403 403 404 404 404 200 200 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'PATCH /api/images/own.img', body: { description: 'own' } },                                                                                          '401 403 403 404 404 404 200 403 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'POST /api/images/own.img', body: { os_arch: 'x86_64' } },                                                                                            '401 403 403 404 404 404 200 403 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'POST /api/images/own.img/transfer', body: { to: 'ursula' } },                                                                                        '401 403 403 404 404 404 201 403 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'DELETE /api/images/nothing.img' },                                                                                                                   '401 403 403 404 404 404 404 403 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'GET /api/images/own.img/versions' },                                                                                                                 '401 403 403 404 404 404 200 200 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'POST /api/images/own.img/rollback', body: { version: 1 } },                                                                                          '401 403 403 404 404 404 200 403 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'POST /api/images/own.img/share/user/ursula' },                                                                                                       '401 403 403 404 404 404 200 403 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'DELETE /api/images/own.img/share/user/rita' },                                                                                                       '401 403 403 404 404 404 200 403 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'POST /api/images/own.img/share/group/team' },                                                                                                        '401 403 403 404 404 404 200 403 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'DELETE /api/images/own.img/share/group/readers' },                                                                                                   '401 403 403 404 404 404 200 403 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'POST /api/images/own.img/conversions', body: { format: 'qcow2' } },                                                                                  '401 403 403 404 404 404 202 403 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'DELETE /api/images/own.img/variants/vmdk' },                                                                                                         '401 403 403 404 404 404 204 403 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'GET /api/jobs' },                                                                                                                                    '401 403 403 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'GET /api/jobs/{job}' },                                                                                                                              '401 403 403 404 404 404 200 200 200 404 404 404 404 404 404 404 404 404 404 200 404 200 404 404 404'],
  [{ route: 'DELETE /api/jobs/{job}' },                                                                                                                           '401 403 403 404 404 404 200 403 200 404 404 404 404 404 404 404 404 404 404 200 404 200 404 404 404'],
  [{ route: 'GET /api/transfers' },                                                                                                                               '401 403 403 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'GET /api/transfers/{transfer}', label: 'bob’s offer to ursula' },                                                                                    '401 403 403 200 404 404 200 200 200 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'POST /api/transfers/{accept}/accept' },                                                                                                              '401 403 403 200 404 404 403 403 403 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'POST /api/transfers/{decline}/decline' },                                                                                                            '401 403 403 204 404 404 403 403 403 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'DELETE /api/transfers/{cancel}' },                                                                                                                   '401 403 403 403 404 404 204 403 204 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'GET /api/images/raw/bob/vm.img' },                                                                                                                   '404 403 403 404 200 200 200 200 200 404 404 404 404 404 404 404 404 404 404 403 403 200 200 404 404'],
  [{ route: 'HEAD /api/images/raw/bob/vm.img' },                                                                                                                  '404 403 403 404 200 200 200 200 200 404 404 404 404 404 404 404 404 404 404 403 403 200 200 404 404'],
  [{ route: 'PUT /api/images/raw/bob/vm-{r}.img', raw: Buffer.from('new bytes') },                                                                                '401 403 403 404 403 403 200 403 200 404 404 404 404 404 404 404 404 404 404 200 403 200 403 404 404'],
  [{ route: 'GET /api/images/raw/own.img' },                                                                                                                      '401 403 403 404 404 404 200 200 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'HEAD /api/images/raw/own.img' },                                                                                                                     '401 403 403 404 404 404 200 200 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'PUT /api/images/raw/own.img', raw: Buffer.from('new bytes'), label: 'made if missing' },                                                             '401 403 403 201 201 201 200 403 201 201 201 201 201 201 201 201 201 201 201 201 201 201 201 201 201'],
  [{ route: 'GET /api/images/raw/bob/nothing.img', label: 'no such image' },                                                                                      '404 403 403 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'GET /api/images/raw/bob/pub.img' },                                                                                                                  '200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'GET /api/images/raw/bob/pub.img', http: true, label: 'plain HTTP' },                                                                                 '200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'GET /api/images/raw/bob/vm.img', http: true, label: 'plain HTTP' },                                                                                  '404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'PUT /api/images/raw/bob/new-{r}.img', raw: Buffer.from('new bytes'), label: 'a free name in bob’s namespace' },                                      '401 403 403 404 404 404 201 403 201 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'DELETE /api/images/raw/bob/rdel-{r}.img' },                                                                                                          '401 403 403 404 403 403 204 403 204 404 404 404 404 404 404 404 404 404 404 403 204 403 204 404 404'],
  [{ route: 'DELETE /api/images/raw/nothing.img', label: 'the short form: not a route' },                                                               '401 403 403 404 404 404 404 403 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'MOVE /api/images/raw/bob/mv-{r}.img', headers: (r) => ({ destination: `/api/images/raw/bob/mvd-${r}.img` }), label: 'rename' },                      '401 403 403 404 403 403 201 403 201 404 404 404 404 404 404 404 404 404 404 201 403 201 403 404 404'],
  [{ route: 'PROPFIND /api/images/raw/', headers: { depth: '1' } },                                                                                               '207 207 207 207 207 207 207 207 207 207 207 207 207 207 207 207 207 207 207 207 207 207 207 207 207'],
  [{ route: 'PROPFIND /api/images/raw/bob/', headers: { depth: '1' } },                                                                                           '207 207 207 207 207 207 207 207 207 207 207 207 207 207 207 207 207 207 207 207 207 207 207 207 207'],
  [{ route: 'PROPFIND /api/images/raw/bob/vm.img', headers: { depth: '0' } },                                                                                     '404 403 403 404 207 207 207 207 207 404 404 404 404 404 404 404 404 404 404 207 207 207 207 404 404'],
  [{ route: 'OPTIONS /api/images/raw/bob/vm.img' },                                                                                                               '200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'OPTIONS /api/images/raw/' },                                                                                                                         '200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'OPTIONS /api/images/raw/bob/' },                                                                                                                     '200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'OPTIONS /api/users' },                                                                                                                               '200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'MKCOL /api/images/raw/bob/', label: 'an existing namespace' },                                                                                       '401 403 403 405 405 405 405 403 405 405 405 405 405 405 405 405 405 405 405 405 405 405 405 405 405'],
  [{ route: 'LOCK /api/images/raw/bob/vm.img', label: 'a method no route takes' },                                                                                '401 403 403 405 405 405 405 403 405 405 405 405 405 405 405 405 405 405 405 405 405 405 405 405 405'],
  [{ route: 'COPY /api/images/raw/bob/cp-{r}.img', headers: { source: NOWHERE }, label: 'pull into it' },                                                           '401 403 403 404 403 403 202 403 202 404 404 404 404 404 404 404 404 404 404 202 403 202 403 404 404'],
  [{ route: 'COPY /api/images/raw/bob/vm.img', headers: { destination: NOWHERE }, label: 'push it' },                                                                '401 403 403 404 202 202 202 403 202 404 404 404 404 404 404 404 404 404 404 403 403 202 202 404 404'],
  [{ route: 'POST /api/images/raw/bob/vm.img', raw: MACAROON_ASK, headers: MACAROON, label: 'a capability' },                                                   '401 403 403 404 200 200 200 403 200 404 404 404 404 404 404 404 404 404 404 200 200 200 200 404 404'],
  [{ route: 'POST /api/images/raw/bob', raw: MACAROON_ASK, headers: MACAROON, label: 'a capability' },                                                          '401 403 403 200 200 200 200 403 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'POST /api/images/raw', raw: MACAROON_ASK, headers: MACAROON, label: 'a capability' },                                                              '401 403 403 200 200 200 200 403 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'GET /api/capabilities' },                                                                                                                            '401 403 403 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'DELETE /api/capabilities/{capability}', label: 'bob’s' },                                                                                             '401 403 403 404 404 404 200 403 200 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'POST /api/uploads', headers: (r) => ({ ...TUS, 'upload-length': '1', 'upload-metadata': `image ${b64(`vm-${r}.img`)},owner ${b64('bob')}` }) },      '401 403 403 404 403 403 201 403 201 404 404 404 404 404 404 404 404 404 404 201 403 201 403 404 404'],
  [{ route: 'HEAD /api/uploads/{upload}', headers: TUS },                                                                                                         '401 403 403 404 404 404 200 200 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'PATCH /api/uploads/{upload}', raw: Buffer.from('x'), headers: { ...TUS, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' } }, '401 403 403 404 404 404 204 403 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'DELETE /api/uploads/{upload2}', headers: TUS },                                                                                                      '401 403 403 404 404 404 204 403 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404 404'],
  [{ route: 'GET /api/audit' },                                                                                                                                   '401 403 403 403 403 403 403 403 200 403 403 403 403 403 403 403 403 403 403 403 403 403 403 403 403'],
  [{ route: 'GET /metrics', label: 'from an allowed address' },                                                                                                   '200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'GET /metrics', http: true, label: 'plain HTTP, from an allowed address' },                                                                           '200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'GET /api/health' },                                                                                                                                  '200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'GET /api/health', http: true, label: 'plain HTTP' },                                                                                                 '200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
  [{ route: 'GET /api/openapi.json' },                                                                                                                            '200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200 200'],
];

describe('the authorization matrix', () => {
  let pki: TestPki;
  let server: TestServer;
  let signerDir = '';
  const credentials = new Map<Role, ClientCredential | null>();
  const call = (
    role: Role,
    method: string,
    path: string,
    options: Omit<Cell, 'route' | 'headers'> & { headers?: Record<string, string> } = {},
  ) =>
    request(
      (options.http ? (server.httpUrl as string) : server.httpsUrl) + path,
      method,
      options.http ? null : (credentials.get(role) ?? null),
      pki.ca.certPem,
      {
        ...(options.raw ? { body: options.raw } : options.body === undefined ? {} : { body: options.body }),
        ...(options.headers ? { headers: options.headers } : {}),
      },
    );
  const admin = (method: string, path: string, body?: unknown) => call('admin', method, path, { body });
  const short = (role: Role) => TITLES[role];
  const ids = { job: '', upload: '', upload2: '', transfer: '', capability: '' };
  /** Offers of bob's to ursula, one per role and answer: `{accept}`, `{decline}`, `{cancel}` in a route. */
  /** A subscriber of vo's lists for each role to remove (`{subscriber}`). */
  const subscribers = new Map<string, string>();
  const offers = {
    accept: new Map<string, string>(),
    decline: new Map<string, string>(),
    cancel: new Map<string, string>(),
  };

  before(async () => {
    pki = await makeTestPki();
    // The server signs image lists with a certificate of the test CA.
    signerDir = await mkdtemp(join(tmpdir(), 'repoman-matrix-'));
    const signer = pki.credential('lists');
    await writeFile(join(signerDir, 'signer.pem'), signer.cert);
    await writeFile(join(signerDir, 'signer.key'), signer.key, { mode: 0o600 });
    server = await startServerFor(pki, 'sqlite', {
      REPOMAN_IMAGE_LISTS_SIGNING_CERT: join(signerDir, 'signer.pem'),
      REPOMAN_IMAGE_LISTS_SIGNING_KEY: join(signerDir, 'signer.key'),
    });
    for (const role of ROLES)
      credentials.set(
        role,
        role === 'anonymous'
          ? null
          : role === 'limited'
            ? pki.proxy('bob', 'limited')
            : pki.credential(userOf(role)),
      );
    const must = async (pending: ReturnType<typeof call>) => {
      const response = await pending;
      assert.ok(response.status < 300, response.text);
      return response;
    };
    // Accounts: every role but anonymous and unknown has one; each permission holder is alone in a group
    // that grants just that permission.
    for (const role of ROLES) {
      if (['anonymous', 'unknown', 'admin', 'limited'].includes(role)) continue;
      await must(admin('POST', '/api/users', { user_name: userOf(role), client_dn: pki.dn(userOf(role)) }));
      if ((PERMISSIONS as readonly string[]).includes(role)) {
        await must(
          admin('POST', '/api/groups', {
            name: `g-${short(role)}`,
            users: [userOf(role)],
            permissions: [role],
          }),
        );
      }
    }
    await must(admin('PATCH', '/api/users/sam', { suspended: true }));
    await must(admin('POST', '/api/groups', { name: 'readers', users: ['mia'] }));
    // The owner's group: the _group permissions reach images of fellow members.
    await must(
      admin('POST', '/api/groups', {
        name: 'team',
        users: ['bob', userOf('image_modify_group'), userOf('image_delete_group')],
      }),
    );
    const bob = (method: string, path: string, body?: unknown) => call('owner', method, path, { body });
    await must(bob('POST', '/api/images', { name: 'vm.img' }));
    await must(call('owner', 'PUT', '/api/images/raw/vm.img', { raw: Buffer.from('version one') }));
    await must(bob('POST', '/api/images/vm.img/share/user/rita'));
    await must(bob('POST', '/api/images/vm.img/share/group/team'));
    await must(admin('POST', '/api/groups/readers/users/bob'));
    await must(bob('POST', '/api/images/vm.img/share/group/readers'));
    await must(bob('POST', '/api/images', { name: 'own.img' }));
    await must(call('owner', 'PUT', '/api/images/raw/own.img', { raw: Buffer.from('own') }));
    await must(bob('POST', '/api/images/own.img/share/user/rita'));
    await must(bob('POST', '/api/images/own.img/share/group/readers'));
    // A variant that exists, for the row that removes one (made now: a job's timing is not the matrix's).
    const made = (await must(bob('POST', '/api/images/own.img/conversions', { format: 'vmdk' }))).json.job;
    for (let i = 0; i < 600; i++) {
      const job = (await bob('GET', `/api/jobs/${made.id}`)).json;
      if (job.state === 'succeeded') break;
      assert.ok(['queued', 'running'].includes(job.state), JSON.stringify(job));
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await must(bob('POST', '/api/images', { name: 'job.img' }));
    await must(call('owner', 'PUT', '/api/images/raw/job.img', { raw: Buffer.alloc(4096) }));
    ids.job = (await must(bob('POST', '/api/images/job.img/conversions', { format: 'qcow2' }))).json.job.id;
    for (const key of ['upload', 'upload2'] as const) {
      const created = await must(
        call('owner', 'POST', '/api/uploads', {
          headers: { ...TUS, 'upload-length': '1', 'upload-metadata': `image ${b64('own.img')}` },
        }),
      );
      ids[key] = String(created.headers.location).split('/').pop() as string;
    }
    await must(bob('POST', '/api/images', { name: 'tr.img' }));
    ids.transfer = (await must(bob('POST', '/api/images/tr.img/transfer', { to: 'ursula' }))).json.id;
    for (const role of ROLES)
      for (const kind of ['accept', 'decline', 'cancel'] as const) {
        const name = `${kind}-${short(role)}.img`;
        await must(bob('POST', '/api/images', { name }));
        offers[kind].set(
          short(role),
          (await must(bob('POST', `/api/images/${name}/transfer`, { to: 'ursula' }))).json.id,
        );
      }
    ids.capability = (
      await must(
        call('owner', 'POST', '/api/images/raw/bob/vm.img', { raw: MACAROON_ASK, headers: MACAROON }),
      )
    ).json.id;
    await must(bob('POST', '/api/images', { name: 'pub.img', unauthenticated_access: true }));
    await must(call('owner', 'PUT', '/api/images/raw/pub.img', { raw: Buffer.from('public') }));
    // A VO that endorses images, with the image_endorse holder (and bob) in it; team's list holds a private one.
    await must(
      admin('POST', '/api/groups', {
        name: 'vo',
        users: ['bob', userOf('image_endorse'), userOf('cloud_manage')],
      }),
    );
    await must(admin('POST', '/api/groups/vo/endorsements', { image: 'bob/pub.img', expires: '2099-01-01' }));
    await must(
      admin('POST', '/api/groups/team/endorsements', { image: 'bob/vm.img', expires: '2099-01-01' }),
    );
    // A target of its own for every role, for the routes that change or delete something.
    for (const role of ROLES) {
      const r = short(role);
      for (const name of [
        `vm-${r}.img`,
        `del-${r}.img`,
        `rdel-${r}.img`,
        `mv-${r}.img`,
        `cp-${r}.img`,
        `give-${r}.img`,
        `off-${r}.img`,
      ]) {
        await must(bob('POST', '/api/images', { name }));
        await must(call('owner', 'PUT', `/api/images/raw/${name}`, { raw: Buffer.from(name) }));
        await must(bob('POST', `/api/images/${name}/share/user/rita`));
        await must(bob('POST', `/api/images/${name}/share/group/readers`));
      }
      await must(bob('POST', '/api/images', { name: `end-${r}.img`, unauthenticated_access: true }));
      await must(call('owner', 'PUT', `/api/images/raw/end-${r}.img`, { raw: Buffer.from(r) }));
      await must(
        admin('POST', '/api/groups/vo/endorsements', { image: `bob/end-${r}.img`, expires: '2099-01-01' }),
      );
      subscribers.set(
        r,
        (await must(admin('POST', '/api/groups/vo/subscribers', { name: `for ${r}` }))).json.id,
      );
      clouds.push(`del-${r}`);
      chosen.push(`end-${r}.img`);
      await must(
        admin('POST', '/api/users', { user_name: `victim-${r}`, client_dn: `/O=Grid/CN=Victim ${r}` }),
      );
      await must(admin('POST', '/api/users', { user_name: `gone-${r}`, client_dn: `/O=Grid/CN=Gone ${r}` }));
      for (const group of [`vg-${r}`, `vgd-${r}`, `vgp-${r}`, `vgr-${r}`])
        await must(
          admin('POST', '/api/groups', { name: group, users: ['bob'], permissions: ['image_create'] }),
        );
      // Members change only in groups one belongs to: the role's own user is in this one.
      const own = ['anonymous', 'unknown', 'admin', 'owner', 'limited'].includes(role) ? [] : [userOf(role)];
      await must(
        admin('POST', '/api/groups', {
          name: `vgm-${r}`,
          users: ['bob', ...own],
          permissions: ['image_create'],
        }),
      );
    }
    insertClouds();
  });
  /** Clouds made without asking one (no cloud answers here): registering checks a credential against it. */
  const clouds: string[] = ['site'];
  const chosen: string[] = [];
  function insertClouds() {
    const db = new DatabaseSync(join(server.dir, 'data', 'repoman.db'));
    try {
      const group = db.prepare("select id from groups where name = 'vo'").get() as { id: number };
      const now = new Date().toISOString();
      const later = new Date(Date.now() + 86_400_000).toISOString();
      for (const name of clouds)
        db.prepare(
          `insert into clouds (id, group_id, name, auth_url, region, credential_kind, credential, credential_secret,
             disk_format, visibility, shared_projects, name_prefix, transfer, follow_endorsed, created_by, created,
             modified, next_sync) values (?, ?, ?, 'http://127.0.0.1:9/v3', null, 'application_credential',
             '{"kind":"application_credential","id":"x"}', 'v1.0.0.0.0', null, 'private', '[]', '', 'web-download', 0,
             null, ?, ?, ?)`,
        ).run(`cloud-${name}`, group.id, name, now, now, later);
      for (const image of chosen)
        db.prepare(
          "insert into cloud_images (cloud_id, image_id, added) select 'cloud-site', id, ? from images where name = ?",
        ).run(now, image);
    } finally {
      db.close();
    }
  }
  after(async () => {
    await server?.stop();
    if (signerDir) await rm(signerDir, { recursive: true, force: true });
  });

  it('covers every route of the API', async () => {
    const spec = (await admin('GET', '/api/openapi.json')).json as {
      paths: Record<string, Record<string, unknown>>;
    };
    const routes = Object.entries(spec.paths).flatMap(([path, methods]) =>
      Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`),
    );
    // The route each row calls: the most specific OpenAPI path its own path matches.
    const patterns = routes.map((route) => {
      const [method, path] = route.split(' ') as [string, string];
      const regex = new RegExp(`^${path.replace(/\{[^}]+\}/g, '[^/]+')}$`);
      return { route, method, regex, statics: path.split('/').filter((p) => !p.startsWith('{')).length };
    });
    const template = (route: string) => {
      const [method, path] = route.split(' ') as [string, string];
      const matches = patterns.filter(
        (p) => p.method === method && p.regex.test(path.split('?')[0] as string),
      );
      return matches.sort((a, b) => b.statics - a.statics)[0]?.route ?? route;
    };
    const covered = new Set(MATRIX.map(([cell]) => template(cell.route)));
    const missing = routes.filter((r) => !covered.has(r) && !r.startsWith('OPTIONS '));
    assert.deepEqual(missing, [], 'routes with no row in the matrix');
    // WebDAV's methods, which OpenAPI cannot describe: each one a path of the bytes' tree takes has a row.
    const davMissing: string[] = [];
    for (const [path, pattern] of [
      // (a collection with or without its trailing slash: both are routes of it)
      ['/api/images/raw/', /^\/api\/images\/raw\/?$/],
      ['/api/images/raw/bob/', /^\/api\/images\/raw\/[^/]+\/?$/],
      ['/api/images/raw/bob/vm.img', /^\/api\/images\/raw\/[^/]+\/[^/]+$/],
    ] as const) {
      const allow = String((await admin('OPTIONS', path)).headers.allow).split(', ');
      for (const method of allow)
        if (
          !MATRIX.some(
            ([cell]) => cell.route.startsWith(`${method} `) && pattern.test(cell.route.split(' ')[1] ?? ''),
          )
        )
          davMissing.push(`${method} ${path}`);
    }
    assert.deepEqual(davMissing, [], 'methods of the bytes’ tree with no row in the matrix');
  });

  it('answers every role on every route as the table says', async () => {
    const differences: string[] = [];
    const actual: [string, string][] = [];
    for (const [cell, expected] of MATRIX) {
      const [method, template] = cell.route.split(' ') as [string, string];
      const statuses: number[] = [];
      for (const role of ROLES) {
        const path = template
          .replaceAll('{r}', short(role))
          .replaceAll('{me}', userOf(role))
          .replaceAll('{job}', ids.job)
          .replaceAll('{upload}', ids.upload)
          .replaceAll('{upload2}', ids.upload2)
          .replaceAll('{transfer}', ids.transfer)
          .replaceAll('{capability}', ids.capability)
          .replaceAll('{subscriber}', subscribers.get(short(role)) ?? '')
          .replaceAll('{accept}', offers.accept.get(short(role)) ?? '')
          .replaceAll('{decline}', offers.decline.get(short(role)) ?? '')
          .replaceAll('{cancel}', offers.cancel.get(short(role)) ?? '');
        const body = JSON.parse(JSON.stringify(cell.body ?? null)?.replaceAll('{r}', short(role)) ?? 'null');
        const response = await call(role, method, path, {
          ...(body === null ? {} : { body }),
          ...(cell.raw ? { raw: cell.raw } : {}),
          ...(cell.headers
            ? { headers: typeof cell.headers === 'function' ? cell.headers(short(role)) : cell.headers }
            : {}),
          ...(cell.http ? { http: true } : {}),
        });
        statuses.push(response.status);
      }
      const got = statuses.join(' ');
      actual.push([cell.route, got]);
      const want = expected.split(/\s+/).join(' ');
      if (got !== want) differences.push(`${cell.route}\n  want ${want}\n  got  ${got}`);
    }
    if (process.env.MATRIX_PRINT)
      for (const [route, got] of actual) console.log(`${route.padEnd(80)} '${got}'`);
    assert.deepEqual(differences, []);
  });

  it('is the table docs/security.md shows', async () => {
    const doc = await readFile(join(import.meta.dirname, '..', '..', '..', 'docs', 'security.md'), 'utf8');
    for (const [cell, expected] of MATRIX) {
      const row = `| \`${cell.route}\`${cell.label ? ` (${cell.label})` : ''} | ${expected.split(/\s+/).join(' | ')} |`;
      assert.ok(doc.replace(/ {2,}/g, ' ').includes(row), `docs/security.md lacks the row ${row}`);
    }
  });
});
