/**
 * `repoman-server`: runs the server and its operator commands.
 *   serve [--config FILE]                       run the server (the default)
 *   issue-certificate --dn DN --out DIR         sign a user certificate with the development CA
 *   fsck, openapi                               check the repository; print the OpenAPI document
 *   rotate-capability-secret                    revoke every capability, on every server
 */
import cluster from 'node:cluster';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import type { FastifyRequest } from 'fastify';
import type { DevelopmentAdmin } from './bootstrap.ts';
import {
  connectToPrimary,
  isPreparation,
  reportPrepared,
  startPrimary,
  WorkerStartError,
} from './cluster.ts';
import { ConfigError, LOOPBACK, loadConfig, type ServerConfig } from './config.ts';
import { redactUrl } from './db/url.ts';
import { withoutCapability } from './http/capability-auth.ts';
import type { RunningServer } from './server.ts';

// Each command imports what it runs when it runs (`await import`): the primary of several workers loads
// only cluster.ts and the configuration, and lives on about half a worker's memory.

const USAGE = `Usage: repoman-server [command] [options]

Commands:
  serve                        Run the server (default)
  issue-certificate            Sign a user certificate with the development CA (development only)
  fsck                         Check that the database and the blob store agree
  openapi                      Print the OpenAPI document of the API (what /api/openapi.json serves)
  rotate-capability-secret     Replace the secret capabilities are signed with: every capability issued
                               so far is refused from the next request on, by every server of the database

Options:
  -c, --config FILE            Configuration file (TOML); also $REPOMAN_CONFIG
      --dn DN                  issue-certificate: the subject, e.g. "/O=Repoman Development/CN=Bob"
      --out DIR                issue-certificate: where to write usercert.pem, userkey.pem, user.pem
      --verify                 fsck: also check every blob's SHA-256 (reads every byte)
      --repair                 fsck: remove orphan blobs and abandoned uploads, drop broken versions
      --fill-digests           fsck: give versions the digests they lack (ADLER32 of those stored before
                               it was computed; MD5, SHA-512 if configured), reading their blobs
      --json                   fsck: print the report as JSON
      --stale-minutes N        fsck: uploads untouched for longer are abandoned, and unrecorded blobs older
                               are orphans (default 60; younger ones may be a running server's)
  -h, --help                   Show this help
`;

/** Paths in messages relative to where the user stands, when that is shorter. */
const shown = (path: string) => {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith('..') && rel.length < path.length ? rel : path;
};

interface Serving {
  httpsUrl: string;
  httpUrl: string | null;
  devAdmin: DevelopmentAdmin | null;
  warnings: string[];
}

/** The start-up lines: where the server is, what it runs on, and how to call it as the development admin. */
function banner(config: ServerConfig, running: Serving): string {
  // On the loopback default, URLs name localhost: what the README and the host certificate use.
  const loopback = config.loopbackDefaults.filter((key) => key === 'https.listen' || config.http.enabled);
  const shownUrl = (url: string, key: 'https.listen' | 'http.listen') =>
    loopback.includes(key) ? url.replace(`//${LOOPBACK}:`, '//localhost:') : url;
  const httpsUrl = shownUrl(running.httpsUrl, 'https.listen');
  const lines = [
    `Repoman is serving HTTPS at ${httpsUrl}` +
      (running.httpUrl ? ` and HTTP at ${shownUrl(running.httpUrl, 'http.listen')}` : ''),
    `  database: ${redactUrl(config.databaseUrl)}   data: ${shown(config.dataDir)}` +
      (config.workers > 1 ? `   workers: ${config.workers}` : ''),
  ];
  if (loopback.length > 0) {
    const variables = loopback.map((key) => `REPOMAN_${key.replace('.', '_').toUpperCase()}`);
    lines.push(
      `  on loopback only (${LOOPBACK}): users are checked against the development CA, whose key is in ${shown(join(config.dataDir, 'ca'))};`,
      `  to serve other machines, set ${loopback.join(' and ')} (${variables.join(', ')}), e.g. to 0.0.0.0`,
    );
  }
  for (const warning of [...config.warnings, ...running.warnings]) lines.push(`  warning: ${warning}`);
  if (running.devAdmin) {
    const admin = running.devAdmin;
    lines.push(
      '',
      `Development admin '${admin.name}' (${admin.dn}); call the API as that admin with:`,
      '',
      `  curl --cert ${shown(admin.pem)} --cacert ${shown(admin.caCert)} ${httpsUrl}/api/whoami`,
      '',
    );
  }
  return `${lines.join('\n')}\n`;
}

/** SIGINT and SIGTERM (and, in a worker, its primary's end) stop the server: requests in progress finish. */
function stopOn(running: RunningServer, events: string[]) {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    running.app.log.info({ signal }, 'shutting down');
    running.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  for (const event of events) process.on(event, () => stop(event));
}

async function serve(configFile: string | undefined) {
  // Everything the server writes (database, keys, blobs) is for its own user only.
  process.umask(0o077);
  const config = loadConfig({ file: configFile });
  const logger = {
    level: config.logLevel,
    redact: ['req.headers.authorization', 'req.headers.cookie'],
    // Fastify's request line, with a capability in the query (?authz=) hidden.
    serializers: {
      req: (request: FastifyRequest) => ({
        method: request.method,
        url: withoutCapability(request.url),
        remoteAddress: request.ip,
        remotePort: request.socket?.remotePort ?? 0,
      }),
    },
  };
  if (!cluster.isWorker && config.workers > 1) {
    const primary = await startPrimary(config);
    process.stdout.write(banner(config, primary));
    return;
  }
  const { prepareServer, startServer } = await import('./server.ts');
  if (isPreparation()) {
    // The primary's once-only work before its workers start (cluster.ts `prepare`).
    await reportPrepared(await prepareServer(config));
    process.exit(0);
  }
  if (cluster.isWorker) {
    // One of the primary's workers (cluster.ts): it prints nothing but its logs.
    const link = connectToPrimary();
    const running = await startServer(config, { logger, worker: link });
    stopOn(running, ['SIGINT', 'SIGTERM', 'disconnect']);
    link.ready(running.httpsPort, running.httpPort);
    return;
  }
  const running = await startServer(config, { logger });
  process.stdout.write(banner(config, { ...running, warnings: running.trust.warnings() }));
  stopOn(running, ['SIGINT', 'SIGTERM']);
}

async function issueCertificate(
  configFile: string | undefined,
  dnText: string | undefined,
  out: string | undefined,
) {
  if (!dnText || !out) throw new ConfigError('issue-certificate needs --dn DN and --out DIR');
  const { DEV_NAMESPACE } = await import('./bootstrap.ts');
  const { derToPem } = await import('./pki/certificate.ts');
  const { createUserCertificate, credentialPem, keyPem, loadCredential } = await import('./pki/issue.ts');
  const { normalizeDn } = await import('./pki/names.ts');
  const config = loadConfig({ file: configFile });
  const caCert = join(config.dataDir, 'ca', 'ca.pem');
  const caKey = join(config.dataDir, 'ca', 'ca.key');
  if (!existsSync(caCert) || !existsSync(caKey)) {
    throw new ConfigError(
      `No development CA in ${shown(join(config.dataDir, 'ca'))}; run 'npm start' once first`,
    );
  }
  const ca = loadCredential(readFileSync(caCert, 'utf8'), readFileSync(caKey, 'utf8'));
  const dn = normalizeDn(dnText);
  if (!dn.startsWith(`${DEV_NAMESPACE}/`)) {
    throw new ConfigError(
      `The development CA vouches only for DNs that start with ${DEV_NAMESPACE}/ (its namespace file says so): ${dn} would be refused at login`,
    );
  }
  const taken = ['usercert.pem', 'userkey.pem', 'user.pem'].filter((f) => existsSync(join(out, f)));
  if (taken.length > 0) {
    throw new ConfigError(`${shown(out)} already holds ${taken.join(', ')}; choose another --out directory`);
  }
  const credential = createUserCertificate(ca, dn, { keyKind: 'rsa' });
  mkdirSync(out, { recursive: true, mode: 0o700 });
  writeFileSync(join(out, 'usercert.pem'), derToPem(credential.cert.der), { mode: 0o644, flag: 'wx' });
  writeFileSync(join(out, 'userkey.pem'), keyPem(credential), { mode: 0o400, flag: 'wx' });
  writeFileSync(join(out, 'user.pem'), credentialPem(credential), { mode: 0o600, flag: 'wx' });
  process.stdout.write(
    `Issued ${dn}\n  ${shown(join(out, 'usercert.pem'))}, ${shown(join(out, 'userkey.pem'))}, ${shown(join(out, 'user.pem'))} (certificate and key in one file)\n`,
  );
}

async function runFsck(
  configFile: string | undefined,
  flags: {
    verify?: boolean | undefined;
    repair?: boolean | undefined;
    fillDigests?: boolean | undefined;
    json?: boolean | undefined;
    staleMinutes?: string | undefined;
  },
) {
  const staleMinutes = flags.staleMinutes === undefined ? 60 : Number(flags.staleMinutes);
  if (!Number.isFinite(staleMinutes) || staleMinutes < 0)
    throw new ConfigError(`--stale-minutes must be a number of minutes; got ${flags.staleMinutes}`);
  const config = loadConfig({ file: configFile });
  const { openDatabase } = await import('./db/connect.ts');
  const { formatReport, fsck } = await import('./fsck.ts');
  const { openBlobStore, uploadDigests } = await import('./server.ts');
  const database = await openDatabase({
    url: config.databaseUrl,
    ...(config.databaseSchema ? { schema: config.databaseSchema } : {}),
  });
  try {
    const report = await fsck(database.db, await openBlobStore(config), {
      verify: Boolean(flags.verify),
      repair: Boolean(flags.repair),
      ...(flags.fillDigests ? { fillDigests: uploadDigests(config) } : {}),
      staleUploadMs: staleMinutes * 60_000,
    });
    process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
    if (report.problems.some((p) => !p.repaired)) process.exitCode = 1;
  } finally {
    await database.close();
  }
}

async function rotateCapabilitySecret(configFile: string | undefined) {
  const config = loadConfig({ file: configFile });
  const { openDatabase } = await import('./db/connect.ts');
  const { rotateKey } = await import('./db/capabilities-dal.ts');
  const database = await openDatabase({
    url: config.databaseUrl,
    ...(config.databaseSchema ? { schema: config.databaseSchema } : {}),
  });
  try {
    const { generation, revoked } = await rotateKey(database.db, new Date().toISOString());
    process.stdout.write(
      `The capability secret is now generation ${generation}: ${revoked} capabilities still valid were revoked\n`,
    );
  } finally {
    await database.close();
  }
}

async function main(argv: string[]) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      dn: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      verify: { type: 'boolean' },
      repair: { type: 'boolean' },
      'fill-digests': { type: 'boolean' },
      'stale-minutes': { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const command = positionals[0] ?? 'serve';
  if (values.help) return void process.stdout.write(USAGE);
  if (command === 'serve') return serve(values.config);
  if (command === 'issue-certificate') return issueCertificate(values.config, values.dn, values.out);
  if (command === 'openapi') {
    const { openApiDocument } = await import('./http/app.ts');
    return void process.stdout.write(`${JSON.stringify(await openApiDocument(), null, 2)}\n`);
  }
  if (command === 'rotate-capability-secret') return rotateCapabilitySecret(values.config);
  if (command === 'fsck')
    return runFsck(values.config, {
      verify: values.verify,
      repair: values.repair,
      fillDigests: values['fill-digests'],
      json: values.json,
      staleMinutes: values['stale-minutes'],
    });
  throw new ConfigError(`Unknown command '${command}'\n\n${USAGE}`);
}

main(process.argv.slice(2)).catch((error: unknown) => {
  let message = error instanceof Error ? error.message : String(error);
  if ((error as { code?: string }).code === 'EADDRINUSE') {
    message +=
      ' (another server has the port: stop it, or choose others with REPOMAN_HTTPS_PORT / REPOMAN_HTTP_PORT or https.port / http.port in the configuration)';
  }
  process.stderr.write(`repoman-server: ${message}\n`);
  process.exit(error instanceof ConfigError ? 2 : error instanceof WorkerStartError ? error.exitCode : 1);
});
