/**
 * The command line: `repoman [global options] <command> [arguments] [options]`. Commands and aliases are the
 * original client's; every one has `--help` and `--json`, and exits 0 only on success (1 on a failure, 2 on a
 * usage error).
 */
import { createPrivateKey } from 'node:crypto';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { Api } from './api.ts';
import { findCaCertificates, findCredential, loadSettings, type Settings } from './config.ts';
import { asClientError, ClientError, errorDocument, exitStatusOf } from './errors.ts';

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  help: string;
  /** The value's name in help. */
  value?: string;
  /** May be given several times (the values come as a list). */
  multiple?: boolean;
}

export interface CommandSpec {
  name: string;
  alias?: string;
  summary: string;
  /** Positional arguments: `name`, `name?` (optional), `name...` (one or more). */
  args?: string[];
  options?: Record<string, OptionSpec>;
  /** Talks to the server (needs the configuration, credentials and CAs). */
  server?: boolean;
  run(context: Context): Promise<void>;
}

export interface Context {
  args: Record<string, string | string[] | undefined>;
  options: Record<string, string | string[] | boolean | undefined>;
  settings: Settings;
  json: boolean;
  /** The server, connected on first use. */
  api(): Promise<Api>;
  /** Standard output: one result. */
  print(text: string): void;
  /** Standard error: progress and notes. */
  note(text: string): void;
  /** Asks before something that cannot be undone; false unless the answer is yes. */
  confirm(question: string): Promise<boolean>;
  /** Asks for a secret without echoing it. */
  secret(prompt: string): Promise<string>;
  command: CommandSpec;
}

export const GLOBAL_OPTIONS: Record<string, OptionSpec> = {
  repository: {
    type: 'string',
    short: 'r',
    help: 'the repository host (overrides the configuration)',
    value: 'HOST',
  },
  port: { type: 'string', short: 'p', help: 'its HTTPS port (default 443)', value: 'N' },
  proxy: { type: 'string', short: 'P', help: 'the grid proxy to present', value: 'FILE' },
  token: { type: 'string', help: 'the bearer token to present (instead of a certificate)', value: 'TOKEN' },
  cert: { type: 'string', help: 'a user certificate to present instead of a proxy', value: 'FILE' },
  key: { type: 'string', help: 'the key of --cert', value: 'FILE' },
  ca: { type: 'string', help: 'the CA directory or file that vouches for the server', value: 'PATH' },
  timeout: {
    type: 'string',
    help: 'give up on a server silent for this long (default 120)',
    value: 'SECONDS',
  },
  json: { type: 'boolean', help: 'print what the server returned, as JSON' },
  help: { type: 'boolean', short: 'h', help: 'show help (after a command whose -h is its own: --help)' },
};

export interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
}

function usageOf(command: CommandSpec): string {
  const args = (command.args ?? []).map((a) =>
    a.endsWith('?') ? `[${a.slice(0, -1)}]` : a.endsWith('...') ? `${a.slice(0, -3)}...` : a,
  );
  return `repoman ${command.name} ${args.join(' ')} [options]`.replace(/\s+/g, ' ');
}

function optionLines(options: Record<string, OptionSpec>): string[] {
  const rows = Object.entries(options).map(([name, spec]) => [
    `${spec.short ? `-${spec.short}, ` : '    '}--${name}${spec.value ? ` ${spec.value}` : ''}`,
    spec.help,
  ]);
  const width = Math.max(...rows.map(([left]) => (left as string).length));
  return rows.map(([left, help]) => `  ${(left as string).padEnd(width)}  ${help}`);
}

export function commandHelp(command: CommandSpec): string {
  return [
    `usage: ${usageOf(command)}${command.alias ? `\n       (alias: repoman ${command.alias})` : ''}`,
    '',
    command.summary,
    ...(command.options && Object.keys(command.options).length
      ? ['', 'options:', ...optionLines(command.options)]
      : []),
    '',
    'global options:',
    ...optionLines(GLOBAL_OPTIONS),
  ].join('\n');
}

export function generalHelp(commands: CommandSpec[]): string {
  const width = Math.max(...commands.map((c) => c.name.length + (c.alias ? c.alias.length + 3 : 0)));
  return [
    'usage: repoman [global options] <command> [arguments] [options]',
    '',
    'commands:',
    ...commands.map((c) => `  ${`${c.name}${c.alias ? ` (${c.alias})` : ''}`.padEnd(width)}  ${c.summary}`),
    '',
    'global options:',
    ...optionLines(GLOBAL_OPTIONS),
    '',
    "'repoman help <command>' or 'repoman <command> --help' shows a command's arguments and options.",
  ].join('\n');
}

/** Global options that take a value, so that the command name can be found among the arguments. */
const VALUED = new Set(
  Object.entries(GLOBAL_OPTIONS).flatMap(([name, spec]) =>
    spec.type === 'string' ? [`--${name}`, ...(spec.short ? [`-${spec.short}`] : [])] : [],
  ),
);

type ParseOptions = NonNullable<Parameters<typeof parseArgs>[0]>['options'];

/** Global options as `parseArgs` takes them, without the short names in `taken` (a command's own). */
function globalParseOptions(taken: ReadonlySet<string>): ParseOptions {
  return Object.fromEntries(
    Object.entries(GLOBAL_OPTIONS).map(([key, spec]) => [
      key,
      { type: spec.type, ...(spec.short && !taken.has(spec.short) ? { short: spec.short } : {}) },
    ]),
  );
}

export interface CommandLine {
  /** The command as written (a name or an alias); undefined when only global options were given. */
  name: string | undefined;
  command: CommandSpec | undefined;
  options: Context['options'];
  positionals: string[];
}

/**
 * Splits a command line as the original's argparse did: options before the command name are global (so
 * `repoman -p 8443 create-group g` is the port), options after it are the command's own, its short options
 * winning over the global ones (`create-group g -p LIST` is --permissions, `put-image -h HV` is --hypervisor).
 * Global options are still taken after the command by their long names, and by their short ones where the
 * command leaves them free. Throws a usage error for an unknown option or a missing value.
 */
export function parseCommandLine(argv: string[], commands: CommandSpec[]): CommandLine {
  let index = 0;
  while (index < argv.length && (argv[index] as string).startsWith('-') && argv[index] !== '--')
    index += VALUED.has(argv[index] as string) ? 2 : 1;
  if (argv[index] === '--') index++;
  const parse = (args: string[], options: ParseOptions, hint: string) => {
    try {
      return parseArgs({ args, options, allowPositionals: true, strict: true });
    } catch (error) {
      throw new ClientError('usage', `${(error as Error).message.split('\n')[0]} (see '${hint}')`);
    }
  };
  const leading = parse(argv.slice(0, index), globalParseOptions(new Set()), 'repoman help');
  const name = argv[index];
  const command = name === undefined ? undefined : commands.find((c) => c.name === name || c.alias === name);
  if (!command) return { name, command, options: leading.values as Context['options'], positionals: [] };
  const taken = new Set(Object.values(command.options ?? {}).flatMap((o) => (o.short ? [o.short] : [])));
  const own: ParseOptions = Object.fromEntries(
    Object.entries(command.options ?? {}).map(([key, spec]) => [
      key,
      {
        type: spec.type,
        ...(spec.short ? { short: spec.short } : {}),
        ...(spec.multiple ? { multiple: true } : {}),
      },
    ]),
  );
  const rest = parse(
    argv.slice(index + 1),
    { ...globalParseOptions(taken), ...own },
    `repoman ${command.name} --help`,
  );
  return {
    name,
    command,
    // What follows the command name wins over what precedes it.
    options: { ...leading.values, ...rest.values } as Context['options'],
    positionals: rest.positionals,
  };
}

/** Runs one command line; resolves with the exit status. */
export async function main(argv: string[], commands: CommandSpec[], io: Io): Promise<number> {
  const write = (stream: NodeJS.WritableStream) => (text: string) =>
    stream.write(text.endsWith('\n') ? text : `${text}\n`);
  const print = write(io.stdout);
  const note = write(io.stderr);
  let label = 'repoman';
  // --json as written anywhere, so that even a command line that cannot be parsed fails as a JSON document.
  const json = argv.includes('--json');
  const connected: { api: Api | null } = { api: null };
  try {
    const line = parseCommandLine(argv, commands);
    const { name, command, options } = line;
    if (name !== undefined) label = command?.name ?? name;
    if (options.help && (name === undefined || command !== undefined)) {
      print(command ? commandHelp(command) : generalHelp(commands));
      return 0;
    }
    if (name === undefined) throw new ClientError('usage', "too few arguments: try 'repoman help'");
    if (!command) throw new ClientError('usage', `'${name}' is not a repoman command: try 'repoman help'`);
    const args = bindArguments(command, line.positionals);
    // Read on first use: make-config, help and version work even beside a broken configuration file.
    let settings: Settings | undefined;
    const context: Context = {
      args,
      options,
      get settings() {
        settings ??= loadSettings(io.env);
        return settings;
      },
      json,
      command,
      print,
      note,
      async api() {
        connected.api ??= await connect(context.settings, options, io, context);
        return connected.api;
      },
      confirm: (question) => confirm(io, question),
      secret: (prompt) => secret(io, prompt),
    };
    await command.run(context);
    return 0;
  } catch (error) {
    const failure = asClientError(error);
    if (json) print(JSON.stringify(errorDocument(failure), null, 2));
    note(`[FAILED] ${label}: ${failure.message}`);
    return exitStatusOf(failure);
  } finally {
    connected.api?.close();
  }
}

function bindArguments(command: CommandSpec, positionals: string[]): Context['args'] {
  const specs = command.args ?? [];
  const args: Context['args'] = {};
  let at = 0;
  for (const spec of specs) {
    if (spec.endsWith('...')) {
      const rest = positionals.slice(at);
      if (rest.length === 0)
        throw new ClientError('usage', `missing ${spec.slice(0, -3)}: ${usageOf(command)}`);
      args[spec.slice(0, -3)] = rest;
      at = positionals.length;
    } else if (spec.endsWith('?')) {
      args[spec.slice(0, -1)] = positionals[at++];
    } else {
      const value = positionals[at++];
      if (value === undefined) throw new ClientError('usage', `missing ${spec}: ${usageOf(command)}`);
      args[spec] = value;
    }
  }
  if (at < positionals.length)
    throw new ClientError('usage', `unexpected '${positionals[at]}': ${usageOf(command)}`);
  return args;
}

async function connect(
  settings: Settings,
  options: Context['options'],
  io: Io,
  context: Context,
): Promise<Api> {
  const host = (options.repository as string | undefined) ?? settings.repository;
  if (!host) {
    throw new ClientError(
      'config',
      settings.files.length === 0
        ? 'No repoman configuration file found: run repoman make-config and set the repository'
        : `No repository set in ${settings.files.join(', ')} (nor --repository)`,
    );
  }
  const port = options.port === undefined ? settings.port : Number(options.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new ClientError('usage', `Invalid port '${options.port}'`);
  const credential = findCredential(
    settings,
    {
      proxy: options.proxy as string | undefined,
      cert: options.cert as string | undefined,
      key: options.key as string | undefined,
      token: options.token as string | undefined,
    },
    io.env,
  );
  const ca = findCaCertificates(settings, options.ca as string | undefined, io.env);
  const passphrase =
    credential.kind === 'certificate' && credential.encrypted
      ? await context.secret(`Passphrase for ${credential.source}: `)
      : undefined;
  try {
    if (credential.kind === 'certificate')
      createPrivateKey({ key: credential.key, ...(passphrase === undefined ? {} : { passphrase }) });
  } catch {
    throw new ClientError(
      'credentials',
      credential.kind === 'certificate' && credential.encrypted
        ? `Cannot unlock the key of ${credential.source}: wrong passphrase?`
        : `The key of ${credential.source} cannot be read`,
    );
  }
  const timeout = options.timeout === undefined ? 120 : Number(options.timeout);
  if (!(timeout > 0))
    throw new ClientError('usage', `--timeout takes a number of seconds, not '${options.timeout}'`);
  const base = `https://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`;
  try {
    return new Api({
      base,
      ca: ca.pems,
      caSource: ca.source,
      credential,
      passphrase,
      timeoutMs: timeout * 1000,
    });
  } catch (error) {
    throw new ClientError('credentials', `Cannot use ${credential.source}: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

async function confirm(io: Io, question: string): Promise<boolean> {
  if (!io.stdin.isTTY)
    throw new ClientError('aborted', `${question} (not asked without a terminal: add --force)`);
  const rl = createInterface({ input: io.stdin, output: io.stderr });
  try {
    const answer = await new Promise<string>((resolve) => {
      rl.once('close', () => resolve('')); // end of input: no
      rl.question(`${question} [yes/no]: `, resolve);
    });
    return ['y', 'yes'].includes(answer.trim().toLowerCase());
  } finally {
    rl.close();
  }
}

async function secret(io: Io, prompt: string): Promise<string> {
  const input = io.stdin as NodeJS.ReadStream;
  if (!input.isTTY || typeof input.setRawMode !== 'function')
    throw new ClientError(
      'credentials',
      'The key is encrypted and there is no terminal to ask for its passphrase: use a proxy',
    );
  io.stderr.write(prompt);
  input.setRawMode(true);
  input.resume();
  let answer = '';
  try {
    await new Promise<void>((resolve, reject) => {
      const onData = (data: Buffer) => {
        for (const char of data.toString('utf8')) {
          if (char === '\r' || char === '\n' || char === '\u0003') {
            input.off('data', onData);
            if (char === '\u0003') reject(new ClientError('aborted', 'Interrupted'));
            else resolve();
            return;
          }
          if (char === '\u007f' || char === '\b') answer = answer.slice(0, -1);
          else answer += char;
        }
      };
      input.on('data', onData);
      input.once('end', () => reject(new ClientError('aborted', 'No passphrase given')));
    });
  } finally {
    input.setRawMode(false);
    input.pause();
    io.stderr.write('\n');
  }
  return answer;
}
