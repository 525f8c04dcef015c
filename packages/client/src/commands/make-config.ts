/** repoman make-config: write ~/.repoman/repoman.conf (an existing one is kept as .bak). */
import { chownSync, existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { CommandSpec } from '../cli.ts';
import { configTemplate, userHome } from '../config.ts';
import { ClientError } from '../errors.ts';
import { str } from './kit.ts';
import { done } from './shared.ts';

export const makeConfig: CommandSpec = {
  name: 'make-config',
  alias: 'mc',
  summary: 'write ~/.repoman/repoman.conf (an existing one is kept as .bak)',
  options: { stdout: { type: 'boolean', help: 'print the file instead of writing it' } },
  async run(context) {
    const port = context.options.port === undefined ? undefined : Number(context.options.port);
    if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536))
      throw new ClientError('usage', `Invalid port '${context.options.port}'`);
    const content = configTemplate(str(context.options.repository), port);
    if (context.options.stdout) return context.print(content.trimEnd());
    const file = join(userHome(), '.repoman', 'repoman.conf');
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    if (existsSync(file)) renameSync(file, `${file}.bak`);
    writeFileSync(file, content, { mode: 0o644 });
    const uid = Number(process.env.SUDO_UID);
    const gid = Number(process.env.SUDO_GID);
    if (process.getuid?.() === 0 && uid && gid) {
      chownSync(dirname(file), uid, gid);
      chownSync(file, uid, gid);
    }
    done(context, { file }, `New repoman configuration file written to ${file}`);
  },
};
