import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../src/config.ts';

describe('configuration', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'repoman-config-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('defaults to ./repoman-data with SQLite, HTTPS 8443 and HTTP 8080', () => {
    const config = loadConfig({ env: {}, cwd: dir });
    assert.equal(config.dataDir, join(dir, 'repoman-data'));
    assert.equal(config.databaseUrl, `sqlite:${join(dir, 'repoman-data', 'repoman.db')}`);
    assert.equal(config.blobDir, join(dir, 'repoman-data', 'blobs'));
    assert.equal(config.https.port, 8443);
    assert.equal(config.http.port, 8080);
    assert.equal(config.trust.crlMode, 'if-present');
    assert.deepEqual(config.admins, []);
  });

  it('listens on loopback while the development CA is trusted, unless an address is named', () => {
    const development = loadConfig({ env: {}, cwd: dir });
    assert.equal(development.https.listen, '127.0.0.1');
    assert.equal(development.http.listen, '127.0.0.1');
    assert.deepEqual(development.loopbackDefaults, ['https.listen', 'http.listen']);

    const named = loadConfig({ env: { REPOMAN_HTTPS_LISTEN: '0.0.0.0' }, cwd: dir });
    assert.equal(named.https.listen, '0.0.0.0', 'a named address is kept');
    assert.equal(named.http.listen, '127.0.0.1', 'each listener on its own');
    assert.deepEqual(named.loopbackDefaults, ['http.listen']);

    const grid = loadConfig({ env: { REPOMAN_TRUST_CA_DIR: '/etc/grid-security/certificates' }, cwd: dir });
    assert.equal(grid.https.listen, '0.0.0.0', 'with its own CAs, a server answers every address');
    assert.equal(grid.http.listen, '0.0.0.0');
    assert.deepEqual(grid.loopbackDefaults, []);
  });

  it('reads a TOML file with paths relative to it, and lets variables override it', async () => {
    const file = join(dir, 'server.toml');
    await writeFile(
      file,
      `data_dir = "data"
database_url = "postgres://repoman@db/repoman"
[https]
port = 443
cert = "certs/host.pem"
key = "/etc/key.pem"
[trust]
ca_dir = "/etc/grid-security/certificates"
crl_mode = "require"
[[admins]]
name = "alice"
dn = "/C=CA/O=Grid/CN=Alice"
`,
    );
    const config = loadConfig({
      file,
      env: { REPOMAN_HTTPS_PORT: '9443', REPOMAN_HTTP_ENABLED: 'no' },
      cwd: '/',
    });
    assert.equal(config.dataDir, join(dir, 'data'));
    assert.equal(config.databaseUrl, 'postgres://repoman@db/repoman');
    assert.equal(config.https.port, 9443, 'the variable wins');
    assert.equal(config.https.cert, join(dir, 'certs/host.pem'));
    assert.equal(config.https.key, '/etc/key.pem');
    assert.equal(config.http.enabled, false);
    assert.equal(config.trust.crlMode, 'require');
    assert.deepEqual(config.admins, [{ name: 'alice', dn: '/C=CA/O=Grid/CN=Alice' }]);
  });

  it('takes admins from REPOMAN_ADMINS as name=DN pairs', () => {
    const config = loadConfig({
      env: { REPOMAN_ADMINS: 'alice=/C=CA/O=Grid/CN=Alice; bob=CN=Bob,O=Grid' },
      cwd: dir,
    });
    assert.deepEqual(config.admins, [
      { name: 'alice', dn: '/C=CA/O=Grid/CN=Alice' },
      { name: 'bob', dn: 'CN=Bob,O=Grid' },
    ]);
  });

  it('warns about REPOMAN_* variables that name no setting', () => {
    const config = loadConfig({
      env: { REPOMAN_HTTPS_PROT: '1', REPOMAN_HTTPS_PORT: '1', REPOMAN_CONFIG: '' },
      cwd: dir,
    });
    assert.equal(config.warnings.length, 1);
    assert.match(config.warnings[0] ?? '', /REPOMAN_HTTPS_PROT names no setting/);
  });

  it('names the key and the source of a bad value, and rejects unknown keys', async () => {
    assert.throws(
      () => loadConfig({ env: { REPOMAN_HTTPS_PORT: 'eighty' }, cwd: dir }),
      /https\.port \(REPOMAN_HTTPS_PORT\) must be a port/,
    );
    assert.throws(() => loadConfig({ env: { REPOMAN_TRUST_CRL_MODE: 'maybe' }, cwd: dir }), ConfigError);
    assert.throws(
      () => loadConfig({ env: { REPOMAN_BLOB_STORE: 'tape' }, cwd: dir }),
      /blob_store \(REPOMAN_BLOB_STORE\) must be directory, s3 or discard/,
    );
    // An object store needs a valid bucket and parts S3 accepts; the endpoint and region come from the
    // variables the AWS tools use when the configuration names none.
    assert.throws(() => loadConfig({ env: { REPOMAN_BLOB_STORE: 's3' }, cwd: dir }), /needs s3\.bucket/);
    assert.throws(
      () => loadConfig({ env: { REPOMAN_BLOB_STORE: 's3', REPOMAN_S3_BUCKET: 'No_Such' }, cwd: dir }),
      /s3\.bucket must be an S3 bucket name/,
    );
    assert.throws(
      () =>
        loadConfig({
          env: { REPOMAN_BLOB_STORE: 's3', REPOMAN_S3_BUCKET: 'images', REPOMAN_S3_PART_SIZE_MIB: '2' },
          cwd: dir,
        }),
      /part_size_mib must be between 5 and 512/,
    );
    const s3 = loadConfig({
      env: {
        REPOMAN_BLOB_STORE: 's3',
        REPOMAN_S3_BUCKET: 'images',
        REPOMAN_S3_PREFIX: '/site-a',
        AWS_ENDPOINT_URL: 'http://127.0.0.1:9000',
        AWS_REGION: 'eu-west-1',
      },
      cwd: dir,
    });
    assert.deepEqual(
      [s3.s3.endpoint, s3.s3.region, s3.s3.prefix, s3.s3.partSize, s3.s3.redirectDownloads],
      ['http://127.0.0.1:9000', 'eu-west-1', 'site-a/', 8 * 1024 * 1024, false],
    );
    const discarding = loadConfig({ env: { REPOMAN_BLOB_STORE: 'discard' }, cwd: dir });
    assert.equal(discarding.blobStore, 'discard');
    assert.match(discarding.warnings.join('\n'), /thrown away/, 'said at start-up');
    const file = join(dir, 'typo.toml');
    await writeFile(file, '[https]\nprot = 443\n');
    assert.throws(() => loadConfig({ file, env: {}, cwd: dir }), /unknown setting 'https\.prot'/);
    assert.throws(() => loadConfig({ file: join(dir, 'missing.toml'), env: {}, cwd: dir }), /Cannot read/);
    await writeFile(file, 'data_dir = \n');
    assert.throws(() => loadConfig({ file, env: {}, cwd: dir }), ConfigError);
  });

  it('takes the allowed image formats as a TOML array or a comma list, and refuses unknown ones', async () => {
    assert.ok(loadConfig({ env: {}, cwd: dir }).uploads.allowedFormats.includes('vmdk'), 'all by default');
    const file = join(dir, 'formats.toml');
    await writeFile(file, '[uploads]\nallowed_formats = ["raw", "qcow2"]\n');
    assert.deepEqual(loadConfig({ file, env: {}, cwd: dir }).uploads.allowedFormats, ['raw', 'qcow2']);
    assert.deepEqual(
      loadConfig({ env: { REPOMAN_UPLOADS_ALLOWED_FORMATS: 'qcow2, vmdk' }, cwd: dir }).uploads
        .allowedFormats,
      ['qcow2', 'vmdk'],
    );
    assert.throws(
      () => loadConfig({ env: { REPOMAN_UPLOADS_ALLOWED_FORMATS: 'raw,floppy' }, cwd: dir }),
      /uploads\.allowed_formats \(REPOMAN_UPLOADS_ALLOWED_FORMATS\) must be a list of formats among raw, qcow2/,
    );
  });

  it('reads trusted token issuers, and refuses one that would widen trust by mistake', async () => {
    const file = join(dir, 'issuers.toml');
    const issuers = async (text: string) => {
      await writeFile(file, text);
      return loadConfig({ file, env: {}, cwd: dir }).tokens.issuers;
    };
    assert.deepEqual(loadConfig({ env: {}, cwd: dir }).tokens.issuers, [], 'none by default');
    const [iam, fts] = await issuers(
      [
        '[[tokens.issuers]]',
        'url = "https://iam.example.org/"',
        'name = "WLCG IAM"',
        'audiences = ["https://wlcg.cern.ch/jwt/v1/any"]',
        'group_prefix = true',
        'client_id = "repoman"',
        '[tokens.issuers.groups]',
        '"/atlas" = "atlas"',
        '[[tokens.issuers]]',
        'url = "https://fts-iam.example.org/"',
        'mode = "capability"',
        'user = "fts"',
      ].join('\n'),
    );
    assert.equal(iam?.mode, 'identity');
    assert.equal(iam?.basePath, '/');
    assert.deepEqual(iam?.groupMap, { '/atlas': 'atlas' });
    assert.equal(iam?.clientId, 'repoman');
    assert.equal(
      fts?.basePath,
      '/fts',
      "a capability issuer's tokens stay in its user's namespace by default",
    );
    const refused: [string, RegExp][] = [
      ['url = "http://iam.example.org/"', /must be https/],
      ['url = "https://iam.example.org/"\nmode = "capability"', /needs user/],
      ['url = "https://iam.example.org/"\nmode = "admin"', /identity or capability/],
      ['url = "https://iam.example.org/"\nbase_path = "/../x"', /base_path/],
      ['url = "https://iam.example.org/"\nsecret = "x"', /unknown setting 'secret'/],
      ['url = "https://iam.example.org/"\n[tokens.issuers.groups]\n"/vo/admins" = "admins"', /not admins/],
    ];
    for (const [text, message] of refused)
      await assert.rejects(issuers(`[[tokens.issuers]]\n${text}\n`), message, text);
    await assert.rejects(
      issuers(
        '[[tokens.issuers]]\nurl = "https://a.example/"\n[[tokens.issuers]]\nurl = "https://a.example/"\n',
      ),
      /configured twice/,
    );
  });

  it('allows no optional image feature by default, and the known ones when listed', async () => {
    assert.deepEqual(loadConfig({ env: {}, cwd: dir }).uploads.allowedFeatures, []);
    const file = join(dir, 'features.toml');
    await writeFile(file, '[uploads]\nallowed_features = ["encrypted"]\n');
    assert.deepEqual(loadConfig({ file, env: {}, cwd: dir }).uploads.allowedFeatures, ['encrypted']);
    assert.deepEqual(
      loadConfig({ env: { REPOMAN_UPLOADS_ALLOWED_FEATURES: '' }, cwd: dir }).uploads.allowedFeatures,
      [],
    );
    assert.throws(
      () => loadConfig({ env: { REPOMAN_UPLOADS_ALLOWED_FEATURES: 'backing_file' }, cwd: dir }),
      /must be a list of features among encrypted/,
    );
  });
});
