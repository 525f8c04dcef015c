/** Every command: the original client's names, aliases and options, and what each asks the server. */
import {
  chownSync,
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { type Api, path } from './api.ts';
import type { CommandSpec, Context, OptionSpec } from './cli.ts';
import { cloudCommands } from './clouds.ts';
import { ownerAndName, show, str } from './command-kit.ts';
import { configTemplate, findCaCertificates, findCredential, userHome } from './config.ts';
import { ClientError } from './errors.ts';
import { imageListCommands } from './image-lists.ts';
import { bytes, details, table, text } from './output.ts';
import {
  archOf,
  estimateStoredBytes,
  hypervisorOf,
  type ImagePlan,
  type Method,
  osOf,
  rootIsPartitioned,
  runStep,
  StepError,
  snapshot,
} from './snapshot.ts';
import { convertOnServer, download, Progress, upload } from './transfer.ts';

// biome-ignore lint/suspicious/noExplicitAny: API JSON is read field by field
type Json = any;

export const VERSION: string = JSON.parse(
  readFileSync(new URL('../package.json', import.meta.url), 'utf8'),
).version;

const list = (value: unknown) =>
  str(value)
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean) ?? [];

function bool(value: unknown, name: string): boolean | undefined {
  const v = str(value)?.toLowerCase();
  if (v === undefined) return undefined;
  if (['true', 'yes', '1'].includes(v)) return true;
  if (['false', 'no', '0'].includes(v)) return false;
  throw new ClientError('usage', `--${name} takes true or false, not '${value}'`);
}

/** Drops undefined fields: only what the user gave is sent. */
const given = (fields: Record<string, unknown>) =>
  Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined));

const done = (context: Context, json: unknown, message: string) => {
  if (context.json) context.print(JSON.stringify(json, null, 2));
  else context.print(`[OK] ${message}`);
};

/** `image` in the caller's namespace, or `owner/image` with --owner (or written as owner/image). */
/** How a request was authenticated, in words: `a bearer token from $BEARER_TOKEN (https://iam…)`. */
function credentialWords(credential: {
  kind?: string;
  source?: string;
  issuer?: string;
  scopes?: string | null;
}): string {
  const what =
    credential.kind === 'token'
      ? `a bearer token from ${credential.source} (${credential.issuer}${credential.scopes ? `, scopes ${credential.scopes}` : ''})`
      : credential.kind === 'proxy'
        ? `the proxy ${credential.source}`
        : credential.kind === 'capability'
          ? `a capability from ${credential.source}`
          : `the certificate ${credential.source}`;
  return what;
}

function imageRef(context: Context, name = context.args.image as string) {
  const owner = str(context.options.owner);
  if (owner) return { owner, name };
  const slash = name.indexOf('/');
  if (slash > 0) return { owner: name.slice(0, slash), name: name.slice(slash + 1) };
  return { owner: undefined, name };
}

const imagePath = (ref: { owner: string | undefined; name: string }, ...rest: string[]) =>
  path('images', ref.owner, ref.name, ...rest);

/** `30m`, `1h`, `7d`, `2w` (or an ISO 8601 duration, passed on) as ISO 8601, which the server takes. */
function isoDuration(text: string): string {
  if (/^P/i.test(text)) return text.toUpperCase();
  const match = /^(\d+)\s*([smhdw])$/i.exec(text.trim());
  if (!match)
    throw new ClientError('usage', `--expires takes 30m, 1h, 7d, 2w or an ISO 8601 duration, not '${text}'`);
  const [, count, unit = 'h'] = match;
  const lower = unit.toLowerCase();
  return lower === 'd' || lower === 'w'
    ? `P${count}${lower.toUpperCase()}`
    : `PT${count}${lower.toUpperCase()}`;
}

/** A capability for the bytes at `url` (a path of this repository, or another's URL), for `activities`. */
async function askCapability(api: Api, url: string, activities: string, validity: string) {
  return (
    await api.request('POST', url, {
      body: Buffer.from(JSON.stringify({ caveats: [`activity:${activities}`], validity })),
      headers: { 'content-type': 'application/macaroon-request' },
    })
  ).json as { macaroon: string; id: string; expires: string; uri: { targetWithMacaroon: string } };
}

/** An image's bytes URL: a URL as given, or `[owner/]image` of this repository (the caller's by default). */
async function rawUrl(api: Api, arg: string): Promise<string> {
  if (/^(https?|davs?):\/\//i.test(arg)) return arg.replace(/^dav(s?):/i, 'http$1:');
  const [owner, name] = await ownerAndName(api, arg);
  return api.url(path('images', 'raw', owner, name)).href;
}

/** The length of the bytes at `url`, as a HEAD says. */
async function sizeOf(api: Api, url: string): Promise<number> {
  const response = await api.open('HEAD', url);
  response.resume();
  return Number(response.headers['content-length'] ?? 0);
}

/** Reads a copy's performance markers (WLCG HTTP-TPC), telling `onBytes` of each; resolves with the outcome line. */
async function followMarkers(response: IncomingMessage, onBytes: (bytes: number) => void): Promise<string> {
  let rest = '';
  let last = '';
  for await (const chunk of response) {
    rest += (chunk as Buffer).toString('utf8');
    const lines = rest.split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines.map((l) => l.trim()).filter(Boolean)) {
      const transferred = /^Stripe Bytes Transferred:\s*(\d+)/i.exec(line);
      if (transferred) onBytes(Number(transferred[1]));
      else if (/^(success|failure|failed|aborted)/i.test(line)) last = line;
    }
  }
  if (rest.trim()) last = /^(success|failure)/i.test(rest.trim()) ? rest.trim() : last;
  return last || 'failure: the server ended the copy without saying how it went';
}

/** `/api/transfers/{id}` of the offer the command names. */
const transferPath = (context: Context) => path('transfers', context.args.id as string);

const imageFields = {
  unauthenticated_access: {
    type: 'string',
    short: 'a',
    help: 'public: anyone may download it',
    value: 'true|false',
  },
  description: { type: 'string', short: 'd', help: 'what the image is', value: 'TEXT' },
  hypervisor: { type: 'string', short: 'h', help: 'hypervisors it boots on (comma list)', value: 'LIST' },
  os_arch: { type: 'string', help: 'x86, x86_64, …', value: 'ARCH' },
  os_type: { type: 'string', help: 'linux, windows, …', value: 'TYPE' },
  os_variant: { type: 'string', help: 'the distribution and release', value: 'VARIANT' },
  read_only: { type: 'string', help: 'no new bytes and no deletion while set', value: 'true|false' },
  expires: { type: 'string', help: 'when it expires (2027-01-31, or "" for never)', value: 'DATE' },
} satisfies Record<string, OptionSpec>;

const ownerOption: Record<string, OptionSpec> = {
  owner: { type: 'string', short: 'o', help: "the image's namespace, when it is not yours", value: 'USER' },
};
/** --version N, checked. */
function versionOption(context: Context): number | undefined {
  const value = context.options.version;
  if (value === undefined) return undefined;
  const version = Number(value);
  if (!Number.isInteger(version) || version < 1)
    throw new ClientError('usage', `'${value}' is not a version number`);
  return version;
}

/** --format for a variant, checked. */
function variantFormat(context: Context): string | undefined {
  const format = str(context.options.format);
  if (format !== undefined && !['raw', 'qcow2', 'vmdk'].includes(format))
    throw new ClientError('usage', `'${format}' is not a format Repoman converts to: raw, qcow2 or vmdk`);
  return format;
}

/** The quota of an image's owner (the caller's, or `owner`'s where the caller may see it): null if none. */
async function quotaRoom(
  api: Awaited<ReturnType<Context['api']>>,
  owner: string | undefined,
): Promise<{ user: string; quota: number; usage: number; room: number } | null> {
  const user: Json = await api.get(owner ? path('users', owner) : '/api/whoami').catch(() => null);
  if (typeof user?.quota !== 'number' || typeof user.usage !== 'number') return null;
  return {
    user: user.user_name,
    quota: user.quota,
    usage: user.usage,
    room: Math.max(0, user.quota - user.usage),
  };
}

/**
 * save-image refuses before the copy (on its estimate) and before the upload (on the file's size) when the
 * owner's quota cannot take the image; --force tries anyway (the server refuses before any byte if it is so).
 * The server publishes no free space: only the quota is checked here.
 */
function refuseOverQuota(
  context: Context,
  room: { user: string; quota: number; usage: number; room: number } | null,
  bytesOut: number,
  how: 'about' | 'exactly',
) {
  if (!room || bytesOut <= room.room || context.options.force) return;
  throw new StepError(
    'preflight',
    `the image takes ${how} ${bytes(bytesOut)}, and ${room.user}'s quota leaves ${bytes(room.room)} (${room.usage} of ${room.quota} bytes used): delete images, ask an admin, or --force to try anyway`,
  );
}

const forceOption: Record<string, OptionSpec> = {
  force: { type: 'boolean', short: 'f', help: 'do not ask for confirmation' },
};
const retriesOption: Record<string, OptionSpec> = {
  retries: { type: 'string', help: 'tries after a cut connection before giving up (default 5)', value: 'N' },
};

function retries(context: Context): number {
  const value = str(context.options.retries) ?? '5';
  if (!/^\d+$/.test(value)) throw new ClientError('usage', `--retries takes a number, not '${value}'`);
  return Number(value);
}

const shortOption: Record<string, OptionSpec> = {
  short: { type: 'boolean', short: 's', help: 'names only' },
};

function imageBody(options: Context['options']) {
  return given({
    unauthenticated_access: bool(options.unauthenticated_access, 'unauthenticated_access'),
    description: str(options.description),
    hypervisor: str(options.hypervisor),
    os_arch: str(options.os_arch),
    os_type: str(options.os_type),
    os_variant: str(options.os_variant),
    read_only: bool(options.read_only, 'read_only'),
    expires: options.expires === undefined ? undefined : str(options.expires) || null,
  });
}

function imagesTable(images: Json[]): string {
  if (images.length === 0) return 'No images.';
  const sorted = [...images].sort((a, b) =>
    `${a.owner}/${a.name}`.localeCompare(`${b.owner}/${b.name}`, undefined, { sensitivity: 'base' }),
  );
  return table(sorted, [
    { title: 'Image', value: (i) => i.name },
    { title: 'Owner', value: (i) => i.owner },
    { title: 'Size', value: (i) => bytes(i.size), right: true },
    { title: 'Format', value: (i) => [i.disk_format, i.compression].filter(Boolean).join('+') || '-' },
    { title: 'Virtual', value: (i) => bytes(i.virtual_size), right: true },
    { title: 'Version', value: (i) => String(i.version), right: true },
    { title: 'Modified', value: (i) => text(i.modified) },
    {
      title: 'Flags',
      value: (i) =>
        [i.unauthenticated_access && 'public', i.read_only && 'read-only', i.expired && 'expired']
          .filter(Boolean)
          .join(',') || '-',
    },
    { title: 'Description', value: (i) => i.description ?? '' },
  ]);
}

async function confirmOrForce(context: Context, question: string) {
  if (context.options.force) return;
  if (!(await context.confirm(question))) throw new ClientError('aborted', 'Nothing was changed');
}

/** Applies `each` to every name in turn, stopping at the first failure (its message names the item). */
async function forEach(names: string[], each: (name: string) => Promise<void>) {
  if (names.length === 0) throw new ClientError('usage', 'Name at least one');
  for (const name of names) await each(name);
}

export const commands: CommandSpec[] = [
  {
    name: 'help',
    summary: 'show the commands, or one command’s arguments and options',
    args: ['command?'],
    async run(context) {
      const { commandHelp, generalHelp } = await import('./cli.ts');
      const wanted = str(context.args.command);
      if (!wanted) return context.print(generalHelp(commands));
      const command = commands.find((c) => c.name === wanted || c.alias === wanted);
      if (!command) throw new ClientError('usage', `'${wanted}' is not a repoman command`);
      context.print(commandHelp(command));
    },
  },
  {
    name: 'version',
    summary: 'the client’s version',
    async run(context) {
      show(context, { version: VERSION }, () => VERSION);
    },
  },
  {
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
  },
  {
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
  },
  {
    name: 'whoami',
    summary: 'the user your certificate, proxy or token identifies, and which credential was used',
    server: true,
    options: { long: { type: 'boolean', short: 'l', help: 'everything about you, not just your name' } },
    async run(context) {
      const api = await context.api();
      const me = await api.get('/api/whoami');
      // Which credential this client presented, and what the server took it as.
      const used = api.connection.credential;
      me.credential = { ...me.credential, source: used.source };
      if (!context.options.long) context.note(`(with ${credentialWords(me.credential)})`);
      show(context, me, () => (context.options.long ? details(me) : me.user_name));
    },
  },

  // Images
  {
    name: 'create-image',
    alias: 'ci',
    summary: 'create an image slot (upload its bytes with put-image)',
    args: ['image'],
    options: { ...imageFields, ...ownerOption },
    server: true,
    async run(context) {
      const ref = imageRef(context);
      const created = await (await context.api()).post('/api/images', {
        name: ref.name,
        ...(ref.owner ? { owner: ref.owner } : {}),
        ...imageBody(context.options),
      });
      done(context, created, `Created image ${created.owner}/${created.name}`);
    },
  },
  {
    name: 'list-images',
    alias: 'li',
    summary:
      'list your images (or all you may see, or those shared with a group or user), or show one in full',
    args: ['image?'],
    options: {
      ...ownerOption,
      all: { type: 'boolean', short: 'a', help: 'every image you may see: yours, shared with you, public' },
      group: {
        type: 'string',
        short: 'g',
        help: 'the images shared with GROUP (one of yours)',
        value: 'GROUP',
      },
      user: {
        type: 'string',
        short: 'u',
        help: 'images you share with USER, and USER’s images shared with you',
        value: 'USER',
      },
      ...shortOption,
      url: { type: 'boolean', short: 'U', help: 'the download URLs' },
    },
    server: true,
    async run(context) {
      const api = await context.api();
      const { options } = context;
      if (options.short && options.url)
        throw new ClientError('usage', '--short and --url do not go together');
      if (context.args.image) {
        const image = await api.get(imagePath(imageRef(context)));
        return show(context, image, () => details(image));
      }
      if ([options.all, options.user, options.group].filter(Boolean).length > 1)
        throw new ClientError('usage', 'Choose one of --all, --group and --user');
      const me = (await api.get('/api/whoami')).user_name as string;
      let images: Json[];
      if (options.all) images = await api.all('/api/images');
      else if (options.group) images = await api.all(path('groups', options.group as string, 'shared'));
      else if (options.user) {
        const user = options.user as string;
        const mine = (await api.all('/api/images', { owner: me })) as Json[];
        const theirs = (await api.all(path('users', me, 'shared'))) as Json[];
        images = [
          ...mine.filter((i) => i.shared_with?.users?.includes(user)),
          ...theirs.filter((i) => i.owner === user),
        ];
      } else images = await api.all('/api/images', { owner: str(options.owner) ?? me });
      if (context.json) return context.print(JSON.stringify(images, null, 2));
      if (options.short) return context.print(images.map((i) => `${i.owner}/${i.name}`).join('\n'));
      if (options.url)
        return context.print(
          images
            .map((i) =>
              [
                `${i.owner}/${i.name}`,
                ...(i.http_file_url ? [`  ${i.http_file_url}`] : []),
                `  ${i.file_url}`,
              ].join('\n'),
            )
            .join('\n\n'),
        );
      context.print(imagesTable(images));
    },
  },
  {
    name: 'put-image',
    alias: 'pi',
    summary: 'upload a file as the image’s next version (resumable: rerun the same command to go on)',
    args: ['file', 'image'],
    options: {
      ...forceOption,
      ...ownerOption,
      hypervisor: {
        type: 'string',
        short: 'h',
        help: 'accepted for compatibility; images are not per hypervisor',
        value: 'HV',
      },
      format: {
        type: 'string',
        help: 'refuse the upload unless the file is in this format (qcow2, raw, vmdk, …)',
        value: 'FORMAT',
      },
      decompress: {
        type: 'boolean',
        help: 'store a gzip, xz, zstd or bzip2 file decompressed (checked on the server)',
      },
      ...retriesOption,
    },
    server: true,
    async run(context) {
      const api = await context.api();
      const ref = imageRef(context);
      const image = await api.get(imagePath(ref));
      const question = `${image.owner}/${image.name} already holds version ${image.version} (${bytes(image.size)}). Upload a new version?`;
      const file = context.args.file as string;
      const result = (await upload(api, {
        file,
        owner: image.owner,
        image: image.name,
        home: userHome(),
        retries: retries(context),
        format: str(context.options.format),
        decompress: Boolean(context.options.decompress),
        // Asked once the server has accepted the upload: a refusal comes before the question.
        beforeSending:
          image.raw_file_uploaded && !context.options.force
            ? () => confirmOrForce(context, question)
            : undefined,
        note: context.note,
      })) as Json;
      done(
        context,
        result,
        `${file} uploaded to ${result.owner}/${result.name}: version ${result.version}, sha256 ${result.digests.sha256}`,
      );
    },
  },
  {
    name: 'get-image',
    alias: 'gi',
    summary: 'download an image (resumes a partial download; checks its SHA-256)',
    args: ['image', 'path?'],
    options: {
      ...forceOption,
      ...ownerOption,
      version: { type: 'string', help: 'an older, kept version', value: 'N' },
      format: {
        type: 'string',
        help: 'raw, qcow2 or vmdk: a converted variant (converted on the server first if needed)',
        value: 'FORMAT',
      },
      ...retriesOption,
    },
    server: true,
    async run(context) {
      const api = await context.api();
      const ref = imageRef(context);
      const owner = ref.owner ?? (await api.get('/api/whoami')).user_name;
      const version = versionOption(context);
      const format = variantFormat(context);
      const target = str(context.args.path) ?? ref.name;
      const destination =
        existsSync(target) && statSync(target).isDirectory() ? join(target, ref.name) : target;
      const result = await download(api, {
        owner,
        image: ref.name,
        destination,
        version,
        format,
        force: Boolean(context.options.force),
        retries: retries(context),
        note: context.note,
      });
      done(
        context,
        result,
        `${owner}/${ref.name} saved to ${result.file} (${bytes(result.size)}, sha256 ${result.sha256})`,
      );
    },
  },
  {
    name: 'convert-image',
    alias: 'cv',
    summary: 'convert an image on the server to raw, qcow2 or vmdk (kept beside its version)',
    args: ['image'],
    options: {
      ...ownerOption,
      format: { type: 'string', help: 'raw, qcow2 or vmdk (stream-optimised)', value: 'FORMAT' },
      compress: { type: 'boolean', help: 'qcow2: compress its clusters' },
      version: { type: 'string', help: 'an older, kept version', value: 'N' },
    },
    server: true,
    async run(context) {
      const format = variantFormat(context);
      if (format === undefined)
        throw new ClientError('usage', 'Say which format: --format raw, qcow2 or vmdk');
      const api = await context.api();
      const image = await api.get(imagePath(imageRef(context)));
      const job = await convertOnServer(
        api,
        {
          owner: image.owner,
          image: image.name,
          format,
          compress: Boolean(context.options.compress),
          version: versionOption(context),
        },
        image.virtual_size ?? image.size ?? 0,
      );
      const variant = job.variant as Json;
      if (!variant)
        throw new ClientError(
          'server',
          'The conversion finished, but its variant is gone (removed meanwhile?)',
        );
      done(
        context,
        variant,
        `${image.owner}/${image.name} converted to ${format}: ${bytes(variant.size)}, sha256 ${variant.digests.sha256}\n` +
          `  repoman get-image ${image.owner}/${image.name} --format ${format}`,
      );
    },
  },
  {
    name: 'modify-image',
    alias: 'mi',
    summary:
      'change an image’s metadata, rename it (-n) or offer it to another user (-N; admins give it at once)',
    args: ['image'],
    options: {
      ...imageFields,
      ...ownerOption,
      new_name: { type: 'string', short: 'n', help: 'rename the image', value: 'NAME' },
      new_owner: {
        type: 'string',
        short: 'N',
        help: 'offer the image to USER, who accepts it (admins: give it now)',
        value: 'USER',
      },
    },
    server: true,
    async run(context) {
      const fields = given({ ...imageBody(context.options), name: str(context.options.new_name) });
      const to = str(context.options.new_owner);
      if (Object.keys(fields).length === 0 && to === undefined)
        throw new ClientError('usage', 'Nothing to change: give at least one option');
      const api = await context.api();
      const ref = imageRef(context);
      if (to === undefined) {
        const image = await api.patch(imagePath(ref), fields);
        return done(context, image, `Modified image ${image.owner}/${image.name}`);
      }
      // Admins give an image away at once, with the other changes in one request; for anyone else the
      // server answers transfer_offer_required, and the image is offered instead (docs/api.md#transfers).
      try {
        const image = await api.patch(imagePath(ref), { ...fields, owner: to });
        return done(
          context,
          image,
          `Gave ${ref.owner ? `${ref.owner}/` : ''}${ref.name} to ${to} directly (as an admin: there is nothing for ${to} to accept); it is now ${image.owner}/${image.name}`,
        );
      } catch (error) {
        if (!(error instanceof ClientError && error.code === 'transfer_offer_required')) throw error;
      }
      let offered = ref;
      if (Object.keys(fields).length > 0) {
        const image = await api.patch(imagePath(ref), fields);
        offered = { owner: image.owner, name: image.name };
      }
      const offer = await api.post(imagePath(offered, 'transfer'), { to }).catch((error: unknown) => {
        throw offered === ref || !(error instanceof ClientError)
          ? error
          : new ClientError(
              error.kind,
              `Modified image ${offered.owner}/${offered.name}, but offering it to ${to} failed: ${error.message}`,
              {
                ...(error.code ? { code: error.code } : {}),
                ...(error.status ? { status: error.status } : {}),
              },
            );
      });
      done(
        context,
        offer,
        `Offered ${offer.image} to ${offer.to} until ${text(offer.expires)}; it stays yours until they accept it\n` +
          `  ${offer.to} accepts it with: repoman accept-transfer ${offer.id}   (withdraw it: repoman cancel-transfer ${offer.id})`,
      );
    },
  },
  {
    name: 'remove-image',
    alias: 'ri',
    summary: 'delete an image and all its versions',
    args: ['image'],
    options: { ...forceOption, ...ownerOption },
    server: true,
    async run(context) {
      const ref = imageRef(context);
      const api = await context.api();
      const image = await api.get(imagePath(ref));
      if (!context.options.force) {
        // The server says first whether it would delete it: a refusal comes before the question.
        await api.request('DELETE', imagePath(ref), { query: { dry_run: true } });
        await confirmOrForce(context, `Delete ${image.owner}/${image.name} and all its versions?`);
      }
      await api.delete(imagePath(ref));
      done(
        context,
        { deleted: `${image.owner}/${image.name}` },
        `Removed image ${image.owner}/${image.name}`,
      );
    },
  },
  {
    name: 'share-url',
    alias: 'su',
    summary:
      'print a URL of the image that works without a certificate until it expires (a capability, for qemu, curl, a cloud)',
    args: ['image'],
    options: {
      expires: {
        type: 'string',
        short: 'e',
        help: 'how long it works: 30m, 1h (the default), 7d, or an ISO 8601 duration',
        value: 'DURATION',
      },
      write: { type: 'boolean', short: 'w', help: 'it may also upload new bytes (PUT)' },
      ...ownerOption,
    },
    server: true,
    async run(context) {
      const ref = imageRef(context);
      const api = await context.api();
      const owner = ref.owner ?? (await api.get('/api/whoami')).user_name;
      const validity = isoDuration(str(context.options.expires) ?? '1h');
      const activities = context.options.write ? 'DOWNLOAD,LIST,UPLOAD' : 'DOWNLOAD,LIST';
      const issued = await askCapability(api, path('images', 'raw', owner, ref.name), activities, validity);
      show(context, issued, () => issued.uri.targetWithMacaroon);
    },
  },
  {
    name: 'copy',
    alias: 'cp',
    summary:
      'copy an image from one repository to another, server to server (a third-party copy: the bytes do not pass through here)',
    args: ['source', 'destination'],
    options: {
      push: {
        type: 'boolean',
        short: 'p',
        help: "the source's server sends the bytes (by default the destination's server fetches them)",
      },
    },
    server: true,
    async run(context) {
      const api = await context.api();
      const source = await rawUrl(api, context.args.source as string);
      const destination = await rawUrl(api, context.args.destination as string);
      const push = Boolean(context.options.push);
      // The passive end gives a capability for the active end to use, revoked once the copy is over.
      const [active, passive] = push ? [source, destination] : [destination, source];
      const grant = await askCapability(api, passive, push ? 'UPLOAD' : 'DOWNLOAD', 'PT12H');
      const size = await sizeOf(api, source);
      const progress = new Progress(`copy ${push ? 'push' : 'pull'}`, size);
      try {
        const response = await api.open('COPY', active, {
          headers: {
            [push ? 'destination' : 'source']: passive,
            transferheaderauthorization: `Bearer ${grant.macaroon}`,
            requirechecksumverification: 'true',
          },
        });
        const outcome = await followMarkers(response, (bytes) => progress.add(bytes - progress.done));
        progress.finish();
        if (!outcome.startsWith('success'))
          throw new ClientError('server', `The copy failed: ${outcome.replace(/^failure:\s*/, '')}`);
        done(
          context,
          { source, destination, mode: push ? 'push' : 'pull', outcome },
          `Copied ${source} to ${destination} (${outcome.replace(/^success:\s*(Created\s*)?/i, '').replace(/^\((.*)\)$/, '$1')})`,
        );
      } finally {
        await api.delete(new URL(`/api/capabilities/${grant.id}`, passive).href).catch(() => undefined);
      }
    },
  },
  ...(['users', 'groups'] as const).flatMap((kind) =>
    (
      [
        ['share', 'si', 'POST', 'share an image read-only with', 'Shared'],
        ['unshare', 'ui', 'DELETE', 'stop sharing an image with', 'Unshared'],
      ] as const
    ).map(
      ([verb, prefix, method, summary, past]): CommandSpec => ({
        name: `${verb}-image-with-${kind}`,
        alias: `${prefix}${kind[0]}`,
        summary: `${summary} ${kind} (comma list)`,
        args: ['image', kind],
        options: ownerOption,
        server: true,
        async run(context) {
          const api = await context.api();
          const ref = imageRef(context);
          const singular = kind.slice(0, -1);
          await forEach(list(context.args[kind]), async (name) => {
            await api.request(method, imagePath(ref, 'share', singular, name));
            if (!context.json) context.print(`[OK] ${past} image ${ref.name} with ${singular} ${name}`);
          });
          if (context.json) context.print(JSON.stringify(await api.get(imagePath(ref)), null, 2));
        },
      }),
    ),
  ),
  {
    name: 'list-versions',
    alias: 'lv',
    summary: 'the kept versions of an image, newest first',
    args: ['image'],
    options: ownerOption,
    server: true,
    async run(context) {
      const versions = await (await context.api()).get(imagePath(imageRef(context), 'versions'));
      show(context, versions, () =>
        table(versions.items as Json[], [
          { title: 'Version', value: (v) => `${v.version}${v.current ? '*' : ''}`, right: true },
          { title: 'Size', value: (v) => bytes(v.size), right: true },
          { title: 'Format', value: (v) => text(v.disk_format ?? v.compression) },
          {
            title: 'Variants',
            value: (v) =>
              (v.variants as Json[])
                .map((x) => `${x.format}${x.compressed ? ' (compressed)' : ''}`)
                .join(', ') || '-',
          },
          { title: 'Uploaded', value: (v) => text(v.created) },
          { title: 'SHA-256', value: (v) => v.digests.sha256 },
        ]),
      );
    },
  },
  {
    name: 'rollback',
    alias: 'rb',
    summary: 'serve an older, kept version of an image again',
    args: ['image', 'version'],
    options: ownerOption,
    server: true,
    async run(context) {
      const version = Number(context.args.version);
      if (!Number.isInteger(version) || version < 1)
        throw new ClientError('usage', `'${context.args.version}' is not a version number`);
      const ref = imageRef(context);
      const api = await context.api();
      await api.post(imagePath(ref, 'rollback'), { version });
      const image = await api.get(imagePath(ref));
      done(context, image, `Image ${image.owner}/${image.name} serves version ${version} again`);
    },
  },

  // Giving images away: offers, which their receiver accepts or declines and their giver may cancel
  {
    name: 'list-transfers',
    alias: 'lt',
    summary: 'pending offers of images made to you and by you (-N on modify-image makes one), or one in full',
    args: ['id?'],
    options: {
      to: { type: 'boolean', help: 'only offers made to you' },
      from: { type: 'boolean', help: 'only offers you made' },
    },
    server: true,
    async run(context) {
      const api = await context.api();
      if (context.args.id) {
        const offer = await api.get(transferPath(context));
        return show(context, offer, () => details(offer));
      }
      const { to, from } = context.options;
      if (to && from) throw new ClientError('usage', 'Choose one of --to and --from (neither: both)');
      const offers = (await api.all('/api/transfers', {
        direction: to ? 'to' : from ? 'from' : undefined,
      })) as Json[];
      if (context.json) return context.print(JSON.stringify(offers, null, 2));
      if (offers.length === 0) return context.print('No pending offers.');
      context.print(
        table(offers, [
          { title: 'ID', value: (t) => t.id },
          { title: 'Image', value: (t) => t.image },
          { title: 'From', value: (t) => t.from },
          { title: 'To', value: (t) => t.to },
          { title: 'Size', value: (t) => bytes(t.size), right: true },
          { title: 'Expires', value: (t) => text(t.expires) },
          { title: 'Description', value: (t) => t.description ?? '' },
        ]),
      );
      const me = (await api.get('/api/whoami')).user_name;
      if (offers.some((t) => t.to === me))
        context.note(
          'Answer an offer to you: repoman accept-transfer ID [--name NEW], or decline-transfer ID',
        );
    },
  },
  {
    name: 'accept-transfer',
    alias: 'at',
    summary: 'take an image offered to you into your namespace (optionally under another name)',
    args: ['id'],
    options: {
      name: {
        type: 'string',
        short: 'n',
        help: 'take it under this name (when you have an image of its name)',
        value: 'NAME',
      },
    },
    server: true,
    async run(context) {
      const api = await context.api();
      const offer = await api.get(transferPath(context));
      const name = str(context.options.name);
      const image = await api
        .post(`${transferPath(context)}/accept`, given({ name }))
        .catch((error: unknown) => {
          throw error instanceof ClientError && error.code === 'image_exists'
            ? new ClientError('server', `${error.message}: take it under another name with --name NAME`, {
                code: error.code,
                ...(error.status ? { status: error.status } : {}),
              })
            : error;
        });
      done(
        context,
        image,
        `Accepted ${offer.image} from ${offer.from}: it is now ${image.owner}/${image.name}`,
      );
    },
  },
  {
    name: 'decline-transfer',
    alias: 'dt',
    summary: 'refuse an image offered to you (it stays its owner’s)',
    args: ['id'],
    server: true,
    async run(context) {
      const api = await context.api();
      const offer = await api.get(transferPath(context));
      await api.post(`${transferPath(context)}/decline`);
      done(context, { declined: offer }, `Declined ${offer.image} from ${offer.from}; it stays theirs`);
    },
  },
  {
    name: 'cancel-transfer',
    alias: 'ct',
    summary: 'withdraw an offer you made (admins: any offer); the image stays where it is',
    args: ['id'],
    server: true,
    async run(context) {
      const api = await context.api();
      // An expired offer (410) may still be withdrawn: it is then named by its id alone.
      const offer = await api.get(transferPath(context)).catch((error: unknown) => {
        if (error instanceof ClientError && error.code === 'transfer_expired') return null;
        throw error;
      });
      await api.delete(transferPath(context));
      done(
        context,
        { cancelled: offer ?? { id: context.args.id } },
        offer
          ? `Cancelled the offer of ${offer.image} to ${offer.to}; it stays ${offer.from}'s`
          : `Cancelled the expired offer ${context.args.id}`,
      );
    },
  },

  // Users
  {
    name: 'create-user',
    alias: 'cu',
    summary: 'create a user from the DN of their certificate',
    args: ['user', 'client_dn'],
    options: {
      email: { type: 'string', short: 'e', help: 'their email address', value: 'ADDRESS' },
      full_name: { type: 'string', short: 'f', help: 'their full name', value: 'NAME' },
      groups: { type: 'string', short: 'g', help: 'groups to put them in (comma list)', value: 'LIST' },
    },
    server: true,
    async run(context) {
      const user = await (await context.api()).post('/api/users', {
        user_name: context.args.user,
        client_dn: context.args.client_dn,
        ...given({
          email: str(context.options.email),
          full_name: str(context.options.full_name),
          groups: context.options.groups === undefined ? undefined : list(context.options.groups),
        }),
      });
      done(context, user, `Created user ${user.user_name}`);
    },
  },
  {
    name: 'list-users',
    alias: 'lu',
    summary: 'list users (or a group’s members), or show one in full',
    args: ['user?'],
    options: {
      ...shortOption,
      group: { type: 'string', short: 'g', help: 'only the members of GROUP', value: 'GROUP' },
    },
    server: true,
    async run(context) {
      const api = await context.api();
      if (context.args.user) {
        const user = await api.get(path('users', context.args.user as string));
        return show(context, user, () => details(user));
      }
      let users = (await api.all('/api/users')) as Json[];
      if (context.options.group) {
        const members = new Set(
          (await api.get(path('groups', context.options.group as string))).users as string[],
        );
        users = users.filter((u) => members.has(u.user_name));
      }
      if (context.json) return context.print(JSON.stringify(users, null, 2));
      if (context.options.short) return context.print(users.map((u) => u.user_name).join('\n'));
      context.print(
        table(users, [
          { title: 'User', value: (u) => u.user_name },
          { title: 'Full name', value: (u) => u.full_name ?? '' },
          { title: 'Client DN', value: (u) => u.client_dn ?? '' },
        ]),
      );
    },
  },
  {
    name: 'modify-user',
    alias: 'mu',
    summary: 'change a user: name, DN, email, full name, suspension, quota',
    args: ['user'],
    options: {
      client_dn: { type: 'string', short: 'c', help: 'the DN of their new certificate', value: 'DN' },
      email: { type: 'string', short: 'e', help: 'their email address', value: 'ADDRESS' },
      full_name: { type: 'string', short: 'f', help: 'their full name', value: 'NAME' },
      new_name: { type: 'string', short: 'n', help: 'rename the user', value: 'NAME' },
      suspended: { type: 'string', help: 'suspend or restore the account', value: 'true|false' },
      quota: { type: 'string', help: 'bytes they may store ("" for no limit)', value: 'BYTES' },
    },
    server: true,
    async run(context) {
      const { options } = context;
      const quota = str(options.quota);
      if (quota !== undefined && quota !== '' && !/^\d+$/.test(quota))
        throw new ClientError('usage', `--quota takes a number of bytes, not '${quota}'`);
      const body = given({
        client_dn: str(options.client_dn),
        email: str(options.email),
        full_name: str(options.full_name),
        user_name: str(options.new_name),
        suspended: bool(options.suspended, 'suspended'),
        quota: quota === undefined ? undefined : quota === '' ? null : Number(quota),
      });
      if (Object.keys(body).length === 0)
        throw new ClientError('usage', 'Nothing to change: give at least one option');
      const user = await (await context.api()).patch(path('users', context.args.user as string), body);
      done(context, user, `Modified user ${user.user_name}`);
    },
  },
  {
    name: 'remove-user',
    alias: 'ru',
    summary: 'delete a user, with all their images',
    args: ['user'],
    options: forceOption,
    server: true,
    async run(context) {
      const name = context.args.user as string;
      await confirmOrForce(context, `Delete user ${name} and all their images?`);
      await (await context.api()).delete(path('users', name));
      done(context, { deleted: name }, `Removed user ${name}`);
    },
  },

  // Groups
  {
    name: 'create-group',
    alias: 'cg',
    summary: 'create a group, with members and permissions',
    args: ['group'],
    options: {
      permissions: {
        type: 'string',
        short: 'p',
        help: 'permissions of its members (comma list)',
        value: 'LIST',
      },
      users: { type: 'string', short: 'u', help: 'its members (comma list)', value: 'LIST' },
    },
    server: true,
    async run(context) {
      const group = await (await context.api()).post('/api/groups', {
        name: context.args.group,
        permissions: list(context.options.permissions),
        users: list(context.options.users),
      });
      done(context, group, `Created group ${group.name}`);
    },
  },
  {
    name: 'list-groups',
    alias: 'lg',
    summary: 'list your groups (or all, or a user’s), or show one in full',
    args: ['group?'],
    options: {
      ...shortOption,
      all: { type: 'boolean', short: 'a', help: 'every group' },
      user: { type: 'string', short: 'u', help: 'the groups of USER', value: 'USER' },
    },
    server: true,
    async run(context) {
      const api = await context.api();
      if (context.args.group) {
        const group = await api.get(path('groups', context.args.group as string));
        return show(context, group, () => details(group));
      }
      let groups = (await api.all('/api/groups')) as Json[];
      if (!context.options.all) {
        const user = str(context.options.user) ?? (await api.get('/api/whoami')).user_name;
        const names = new Set(
          ((await api.get(path('users', user, 'groups'))).items ?? []).map((g: Json) => g.name ?? g),
        );
        groups = groups.filter((g) => names.has(g.name));
      }
      if (context.json) return context.print(JSON.stringify(groups, null, 2));
      if (context.options.short) return context.print(groups.map((g) => g.name).join('\n'));
      context.print(
        table(groups, [
          { title: 'Group', value: (g) => g.name },
          { title: 'Members', value: (g) => [...g.users].sort().join(', ') },
          { title: 'Permissions', value: (g) => [...g.permissions].sort().join(', ') },
        ]),
      );
    },
  },
  {
    name: 'modify-group',
    alias: 'mg',
    summary: 'rename a group, or set its members or permissions to exactly these',
    args: ['group'],
    options: {
      new_name: { type: 'string', short: 'n', help: 'rename the group', value: 'NAME' },
      permissions: {
        type: 'string',
        short: 'p',
        help: 'its permissions, exactly (comma list)',
        value: 'LIST',
      },
      users: { type: 'string', short: 'u', help: 'its members, exactly (comma list)', value: 'LIST' },
    },
    server: true,
    async run(context) {
      const api = await context.api();
      const { options } = context;
      if (options.new_name === undefined && options.permissions === undefined && options.users === undefined)
        throw new ClientError('usage', 'Nothing to change: give at least one option');
      let name = context.args.group as string;
      const group = await api.get(path('groups', name));
      for (const [option, field, route] of [
        ['users', 'users', 'users'],
        ['permissions', 'permissions', 'permissions'],
      ] as const) {
        if (options[option] === undefined) continue;
        const wanted = new Set(list(options[option]));
        const current = new Set(group[field] as string[]);
        for (const item of wanted) if (!current.has(item)) await api.post(path('groups', name, route, item));
        for (const item of current)
          if (!wanted.has(item)) await api.delete(path('groups', name, route, item));
      }
      if (options.new_name !== undefined) {
        await api.patch(path('groups', name), { name: options.new_name });
        name = options.new_name as string;
      }
      const after = await api.get(path('groups', name));
      done(context, after, `Modified group ${after.name}`);
    },
  },
  {
    name: 'remove-group',
    alias: 'rg',
    summary: 'delete a group (its shares go too)',
    args: ['group'],
    options: forceOption,
    server: true,
    async run(context) {
      const name = context.args.group as string;
      await confirmOrForce(context, `Delete group ${name}?`);
      await (await context.api()).delete(path('groups', name));
      done(context, { deleted: name }, `Removed group ${name}`);
    },
  },
  ...(
    [
      ['add-users-to-group', 'aug', 'users', 'POST', 'add users to a group', 'Added user %s to group %g'],
      [
        'remove-users-from-group',
        'rug',
        'users',
        'DELETE',
        'remove users from a group',
        'Removed user %s from group %g',
      ],
      [
        'add-permissions-to-group',
        'apg',
        'permissions',
        'POST',
        'grant permissions (comma list) to a group',
        'Added permission %s to group %g',
      ],
      [
        'remove-permissions-from-group',
        'rpg',
        'permissions',
        'DELETE',
        'revoke permissions (comma list) from a group',
        'Removed permission %s from group %g',
      ],
    ] as const
  ).map(
    ([name, alias, route, method, summary, message]): CommandSpec => ({
      name,
      alias,
      summary,
      args: ['group', route === 'users' ? 'users...' : 'permissions'],
      server: true,
      async run(context) {
        const api = await context.api();
        const group = context.args.group as string;
        const items =
          route === 'users' ? (context.args.users as string[]).flatMap(list) : list(context.args.permissions);
        await forEach(items, async (item) => {
          await api.request(method, path('groups', group, route, item));
          if (!context.json) context.print(`[OK] ${message.replace('%s', item).replace('%g', group)}`);
        });
        if (context.json) context.print(JSON.stringify(await api.get(path('groups', group)), null, 2));
      },
    }),
  ),
  {
    name: 'save-image',
    alias: 'si',
    summary:
      'snapshot this machine (or --root DIR) into a disk image and upload it as the image’s next version',
    args: ['image'],
    options: {
      unauthenticated_access: imageFields.unauthenticated_access,
      description: imageFields.description,
      hypervisor: imageFields.hypervisor,
      os_arch: imageFields.os_arch,
      os_type: imageFields.os_type,
      os_variant: imageFields.os_variant,
      ...ownerOption,
      force: {
        type: 'boolean',
        short: 'f',
        help: 'do not ask for confirmation, and save even if the estimate passes the quota',
      },
      root: { type: 'string', help: 'save this directory tree instead of / (a chroot)', value: 'DIR' },
      exclude: {
        type: 'string',
        multiple: true,
        help: 'leave out what matches (rsync pattern, from the root: /srv/cache/*); repeatable',
        value: 'PATTERN',
      },
      resize: {
        type: 'string',
        help: 'the image’s size (default: the tree’s size plus a quarter and 512 MiB, in whole GiB)',
        value: 'MIB',
      },
      format: {
        type: 'string',
        help: 'qcow2 (default: only the data is sent) or raw (the whole virtual size is sent)',
        value: 'FORMAT',
      },
      partitioned: { type: 'boolean', help: 'an MBR disk with one partition (default when / is on one)' },
      'filesystem-only': { type: 'boolean', help: 'a bare filesystem, no partition table' },
      'keep-host-identity': {
        type: 'boolean',
        help: 'keep SSH host keys, machine-id and the like (clones would share them)',
      },
      method: {
        type: 'string',
        help: 'mount (loop-mount the image, as root), mkfs (mkfs.ext4 -d, no mount) or auto (default)',
        value: 'METHOD',
      },
      clean: { type: 'boolean', help: 'start from an empty copy rather than update the last one' },
      gzip: { type: 'boolean', short: 'z', help: 'upload it gzip-compressed' },
      verbose: { type: 'boolean', short: 'v', help: 'show every file rsync copies' },
      'dry-run': { type: 'boolean', short: 'n', help: 'say what would be done, and do nothing' },
      ...retriesOption,
    },
    server: true,
    async run(context) {
      const started = performance.now();
      const { options } = context;
      const ref = imageRef(context);
      if (!/^[a-zA-Z0-9_\-.]+$/.test(ref.name))
        throw new ClientError('usage', `'${ref.name}' is not an image name: letters, digits, _ - and . only`);
      if (options.gzip && !ref.name.endsWith('.gz')) {
        ref.name = `${ref.name}.gz`;
        context.note(`note: saving as ${ref.name} (gzip-compressed)`);
      }
      const format = str(options.format) ?? 'qcow2';
      if (format !== 'raw' && format !== 'qcow2')
        throw new ClientError('usage', `--format takes raw or qcow2, not '${format}'`);
      if (options.partitioned && options['filesystem-only'])
        throw new ClientError('usage', '--partitioned and --filesystem-only do not go together');
      const resize = str(options.resize);
      if (resize !== undefined && !/^[1-9]\d*$/.test(resize))
        throw new ClientError('usage', `--resize takes a size in MiB, not '${resize}'`);
      const method = str(options.method) ?? 'auto';
      if (!['auto', 'mount', 'mkfs'].includes(method))
        throw new ClientError('usage', `--method takes auto, mount or mkfs, not '${method}'`);
      const root = str(options.root) ?? '/';
      if (root === '/' && process.getuid?.() !== 0)
        throw new ClientError(
          'usage',
          'saving / needs root (files only root may read would be missing): use sudo, or --root DIR for a tree you can read',
        );

      // Metadata: what the tree says, overridden by what the user says.
      const detected = {
        ...(await osOf(root)),
        os_arch: archOf(root),
        ...(root === '/' ? given({ hypervisor: await hypervisorOf() }) : {}),
      };
      const fields = { ...detected, ...imageBody(options) };
      const partitioned = options.partitioned
        ? true
        : options['filesystem-only']
          ? false
          : root === '/' && (await rootIsPartitioned());
      const { settings } = context;
      const excludes = [
        ...`${settings.systemExcludes} ${settings.userExcludes}`.split(/\s+/).filter(Boolean),
        ...((options.exclude as string[] | undefined) ?? []),
      ];

      const api = await context.api();
      const existing = await api.get(imagePath(ref)).catch((error: unknown) => {
        if (error instanceof ClientError && error.status === 404) return null;
        throw error;
      });
      if (existing?.raw_file_uploaded && !options.force && !options['dry-run'])
        await confirmOrForce(
          context,
          `${existing.owner}/${existing.name} already holds version ${existing.version}. Save over it (as a new version)?`,
        );
      if (format === 'qcow2')
        await runStep('preflight', 'qemu-img', ['--version']).catch(() => {
          throw new StepError(
            'preflight',
            'qemu-img is needed for a qcow2 image (Debian: apt-get install qemu-utils), or save with --format raw',
          );
        });

      // Before anything is copied: the sizes, and whether the owner's quota can take them.
      const room = await quotaRoom(api, existing?.owner ?? ref.owner);
      let estimatedBytes: number | undefined;
      const approve = async (plan: ImagePlan) => {
        const bytesOut = estimateStoredBytes(plan, options.gzip ? 'qcow2' : format);
        estimatedBytes = bytesOut;
        context.note(
          `image: ${bytes(plan.virtualSize)} virtual, ${format}${options.gzip ? ', gzip-compressed' : ''}; about ${bytes(bytesOut)} to send and store (the tree: ${bytes(plan.treeBytes)}, ${plan.treeFiles} files)`,
        );
        if (!options['dry-run']) refuseOverQuota(context, room, bytesOut, 'about');
      };

      const shot = await snapshot({
        root,
        workDir: settings.snapshotDir,
        names: {
          lock: settings.lockfile,
          image: settings.snapshot,
          mount: settings.mountpoint,
          staging: `${settings.mountpoint}-tree`,
        },
        method: method as Method,
        excludes,
        size: resize === undefined ? undefined : Number(resize) * 1024 * 1024,
        partitioned,
        keepHostIdentity: Boolean(options['keep-host-identity']),
        clean: Boolean(options.clean),
        verbose: Boolean(options.verbose),
        dryRun: Boolean(options['dry-run']),
        note: context.note,
        approve,
      });
      const target = `${existing?.owner ?? ref.owner ?? '(you)'}/${ref.name}`;
      if (options['dry-run']) {
        const plan = {
          image: target,
          exists: existing !== null,
          method: shot.method,
          size: shot.size,
          estimated_bytes: estimatedBytes,
          ...(room ? { quota_room: room.room } : {}),
          format,
          partitioned,
          metadata: fields,
        };
        return context.print(
          context.json
            ? JSON.stringify(plan, null, 2)
            : `[DRY RUN] would save ${root} to ${target} (${existing ? 'a new version' : 'a new image'}): ${shot.size} bytes virtual, about ${estimatedBytes} to send, ${format}, ${partitioned ? 'partitioned' : 'filesystem only'}\n  metadata: ${JSON.stringify(fields)}`,
        );
      }
      for (const warning of shot.warnings) context.note(`warning: ${warning}`);

      // The file to upload: the raw image, or qcow2 made from it, gzip-compressed if asked.
      let file = shot.file;
      if (format === 'qcow2') {
        const qcow2 = `${shot.file}.qcow2`;
        await runStep('convert (qemu-img)', 'qemu-img', [
          'convert',
          '-f',
          'raw',
          '-O',
          'qcow2',
          shot.file,
          qcow2,
        ]);
        file = qcow2;
      }
      if (options.gzip) {
        context.note('compressing (gzip)…');
        await pipeline(
          createReadStream(file),
          createGzip(),
          createWriteStream(`${file}.gz`, { mode: 0o600 }),
        );
        file = `${file}.gz`;
      }
      const sending = statSync(file).size;
      context.note(`sending ${bytes(sending)} (${sending} bytes)`);
      refuseOverQuota(context, room, sending, 'exactly');

      // The slot: created if new (and removed again if the upload fails), updated once the bytes are in.
      let created = false;
      let image = existing;
      if (!image) {
        image = await api.post('/api/images', {
          name: ref.name,
          ...(ref.owner ? { owner: ref.owner } : {}),
          ...fields,
        });
        created = true;
      }
      let result: Json;
      try {
        result = await upload(api, {
          file,
          owner: image.owner,
          image: image.name,
          home: userHome(),
          retries: retries(context),
          ...(options.gzip ? {} : { format }),
          note: context.note,
        });
      } catch (error) {
        if (created)
          await api.request('DELETE', imagePath({ owner: image.owner, name: image.name })).catch(() => {});
        throw error instanceof ClientError && error.kind !== 'usage'
          ? new ClientError(error.kind, `upload failed: ${error.message}`, {
              ...(error.code ? { code: error.code } : {}),
              ...(error.status ? { status: error.status } : {}),
            })
          : error;
      }
      if (!created && Object.keys(fields).length > 0)
        result = await api.post(imagePath({ owner: image.owner, name: image.name }), fields);
      const seconds = (performance.now() - started) / 1000;
      const synced = `${shot.synced.incremental ? 'synced' : 'copied'} ${shot.synced.files} files (${bytes(shot.synced.bytes)})`;
      if (context.json)
        return context.print(JSON.stringify({ image: result, snapshot: { ...shot, seconds } }, null, 2));
      context.print(
        `[OK] saved ${root} as ${result.owner}/${result.name} version ${result.version} in ${seconds.toFixed(1)} s: ${synced}; ${bytes(shot.size)} image${shot.bootable ? '' : ' (not bootable by itself)'}, ${bytes(sending)} sent as ${options.gzip ? 'gzip' : format}, sha256 ${result.digests?.sha256}`,
      );
    },
  },
  ...imageListCommands,
  ...cloudCommands,
];
