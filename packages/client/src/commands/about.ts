/** `repoman about`: the configuration in use: files, repository, credentials, CAs, snapshot settings. */
import type { CommandSpec } from '../cli.ts';
import { findCaCertificates, findCredential } from '../config.ts';
import { details } from '../output.ts';
import { show, str } from './kit.ts';
import { VERSION } from './shared.ts';

export const about: CommandSpec = {
  name: 'about',
  summary: 'the configuration in use: files, repository, credentials, CAs, snapshot settings',
  async run(context) {
    const { settings, options } = context;
    const attempt = <T>(f: () => T): T | string => {
      try {
        return f();
      } catch (error) {
        return `(${(error as Error).message})`;
      }
    };
    const credential = attempt(() =>
      findCredential(settings, {
        proxy: str(options.proxy),
        cert: str(options.cert),
        key: str(options.key),
        token: str(options.token),
      }),
    );
    const ca = attempt(() => findCaCertificates(settings, str(options.ca)));
    const about = {
      client_version: VERSION,
      config_files: settings.files,
      repository: str(options.repository) ?? settings.repository ?? null,
      port: options.port === undefined ? settings.port : Number(options.port),
      credentials: typeof credential === 'string' ? credential : credential.source,
      subject: typeof credential === 'string' ? null : credential.subject,
      valid_until: typeof credential === 'string' ? null : (credential.notAfter?.toISOString() ?? null),
      ca: typeof ca === 'string' ? ca : `${ca.source} (${ca.pems.length} certificates)`,
      snapshot_dir: settings.snapshotDir,
      snapshot: settings.snapshot,
      mountpoint: settings.mountpoint,
      lockfile: settings.lockfile,
      system_excludes: settings.systemExcludes,
      user_excludes: settings.userExcludes,
    };
    show(context, about, () => details(about));
  },
};
