/**
 * Endorsements and signed image lists (docs/image-lists.md): `endorse`, `withdraw`, `list-endorsements` and
 * `image-list`. An endorser's own list is signed here, with the system's `openssl` and the endorser's key
 * (handed to openssl on a pipe: it never leaves this machine, nor touches its disk); a list is verified here
 * as a site verifies it: `openssl smime -verify`, its signer against its `hv:endorser`, its expiry, and every
 * image it lists downloaded without a certificate and checked against its size and SHA-512.
 */

import { execFile, spawn } from 'node:child_process';
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Endorsement, Page, PublishedList } from '@repoman/core';
import { type Api, path } from '../api.ts';
import type { CommandSpec, Context } from '../cli.ts';
import { ClientError } from '../errors.ts';
import { bytes, table, text } from '../output.ts';
import { myName, ownerAndName, show, str } from './kit.ts';

const run = promisify(execFile);
const DAY = 86_400_000;
/** An endorser is warned when their signed list expires sooner than this. */
const WARN_DAYS = 14;

/** `owner/name`, the caller's own namespace when no owner is given. */
const imageName = async (api: Api, arg: string) => (await ownerAndName(api, arg)).join('/');

/** A grid proxy (RFC 3820 or the Globus forms): its subject is its issuer's plus one CN. */
function isProxy(certPem: string): boolean {
  const leaf = new X509Certificate(certPem);
  return !leaf.ca && leaf.subject.startsWith(`${leaf.issuer}\nCN=`);
}

/**
 * Runs openssl with `args` (never through a shell string); `key`, if given, reaches it as `/dev/stdin` through
 * a real pipe (Node's own stdin for a child is a socket, which openssl cannot open as a file): a fixed `sh -c`
 * line pipes it from its environment, so the key touches no disk. Its failure as one line.
 */
function openssl(args: string[], key?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = key
      ? spawn('sh', ['-c', 'printf "%s" "$REPOMAN_SIGNING_KEY" | exec openssl "$@"', 'sh', ...args], {
          env: { ...process.env, REPOMAN_SIGNING_KEY: key },
          stdio: ['ignore', 'pipe', 'pipe'],
        })
      : spawn('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
    });
    child.stderr.on('data', (chunk: Buffer) => {
      err += chunk.toString('utf8');
    });
    child.on('error', (error: NodeJS.ErrnoException) =>
      reject(new ClientError('local', `openssl failed to start: ${error.message}`)),
    );
    child.on('close', (code) => {
      if (code === 0) return resolve(out);
      if (code === 127 || /not found/.test(err))
        return reject(
          new ClientError('local', 'openssl is not installed: signing and verifying image lists use it'),
        );
      reject(new ClientError('local', `openssl ${args[0]} failed: ${err.trim().split('\n')[0] ?? code}`));
    });
  });
}

/**
 * Signs the caller's own list in the group and publishes it: fetched as JSON, signed with openssl, sent back
 * with If-Match (another endorsement meanwhile: fetched and signed again). Null if there is nothing to sign.
 */
async function signOwnList(context: Context, api: Api, group: string) {
  const { credential, passphrase } = api.connection;
  if (credential.kind === 'token') {
    context.note(
      `Not signing your own list of ${group}: you presented a bearer token (${credential.source}), and lists are signed with a certificate's key; sign yours with --cert and --key.`,
    );
    return null;
  }
  if (isProxy(credential.cert)) {
    context.note(
      `Not signing your own list of ${group}: ${credential.source} is a grid proxy, and sites trust end-entity DNs. ` +
        "The group's list (signed by the server, if it signs) has the endorsement; sign yours with --cert and --key.",
    );
    return null;
  }
  const me = await myName(api);
  const listPath = path('groups', group, 'endorsers', me, 'image-list');
  // The key, unlocked here, goes to openssl on its standard input only.
  const key = createPrivateKey({
    key: credential.key,
    ...(passphrase === undefined ? {} : { passphrase }),
  }).export({ type: 'pkcs8', format: 'pem' }) as string;
  const work = await mkdtemp(join(tmpdir(), 'repoman-sign-'));
  try {
    const pems =
      credential.cert.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
    await writeFile(join(work, 'cert.pem'), pems[0] ?? '');
    if (pems.length > 1) await writeFile(join(work, 'chain.pem'), pems.slice(1).join(''));
    for (let attempt = 1; ; attempt++) {
      const response = await api.open('GET', `${listPath}.json`);
      const etag = String(response.headers.etag ?? '');
      const document = await readBody(response);
      const list = JSON.parse(document)['hv:imagelist'];
      await writeFile(join(work, 'list.json'), document);
      const chain = pems.length > 1 ? ['-certfile', join(work, 'chain.pem')] : [];
      const signed = await openssl(
        [
          'smime',
          '-sign',
          '-signer',
          join(work, 'cert.pem'),
          '-inkey',
          '/dev/stdin',
          // (PEM said: without it openssl 3 probes the pipe for a format, which it cannot seek)
          '-keyform',
          'PEM',
          ...chain,
          '-in',
          join(work, 'list.json'),
        ],
        key,
      );
      const sent = await api.request<PublishedList>('PUT', listPath, {
        body: Buffer.from(signed),
        headers: { 'content-type': 'text/plain', 'if-match': etag },
        accept: [412],
      });
      if (sent.status === 200) return { ...sent.json, images: list['hv:images'].length as number };
      if (attempt >= 3)
        throw new ClientError(
          'server',
          `Your list of ${group} kept changing while it was being signed; try again`,
        );
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function readBody(response: AsyncIterable<unknown>): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of response) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** What signing one's own list published (null: nothing was signed). */
type SignedList = (PublishedList & { images: number }) | null;

/** What signing said, and a warning if the list expires soon (it cannot renew itself). */
function signedNote(context: Context, signed: SignedList, group: string) {
  if (!signed) return;
  context.note(
    `Signed your own list of ${group} (version ${signed.version}, ${signed.images} image(s)), valid until ${text(signed.expires)}: ${signed.url}`,
  );
  if (new Date(signed.expires).getTime() - Date.now() < WARN_DAYS * DAY)
    context.note(
      `Warning: your signed list expires on ${text(signed.expires)} with its earliest endorsement; endorse again before then`,
    );
}

const groupOption = {
  group: { type: 'string' as const, short: 'g', help: 'the group (VO) that endorses', value: 'GROUP' },
};
const noSignOption = {
  'no-sign': {
    type: 'boolean' as const,
    help: 'do not sign your own list of the group with your certificate (the server’s signed list still has it)',
  },
};

function requireGroup(context: Context): string {
  const group = str(context.options.group);
  if (!group) throw new ClientError('usage', 'Say which group endorses: --group GROUP');
  return group;
}

/** Where a site would verify a list's signer: a CA directory (-CApath) or file (-CAfile). */
function caArgs(context: Context): string[] {
  const given = str(context.options['ca-dir']);
  const candidates = [
    given,
    process.env.X509_CERT_DIR,
    str(context.options.ca),
    context.settings.caPath,
    '/etc/grid-security/certificates',
  ];
  for (const candidate of candidates) {
    if (!candidate || !existsSync(candidate)) {
      if (candidate && candidate === given)
        throw new ClientError('config', `The CA directory ${given} does not exist`);
      continue;
    }
    return statSync(candidate).isDirectory() ? ['-CApath', candidate] : ['-CAfile', candidate];
  }
  throw new ClientError('config', 'No CA directory to verify the list with: --ca-dir DIR or $X509_CERT_DIR');
}

/** Downloads `uri` as a site does (no certificate), hashing it: its size and SHA-512. */
function fetchAndHash(uri: string, ca: string[]): Promise<{ size: number; sha512: string }> {
  return new Promise((resolve, reject) => {
    const request = https.get(uri, { ca, agent: false }, (response) => {
      if ((response.statusCode ?? 0) !== 200) {
        response.resume();
        return reject(new Error(`HTTP ${response.statusCode}`));
      }
      const hash = createHash('sha512');
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        hash.update(chunk);
      });
      response.on('end', () => resolve({ size, sha512: hash.digest('hex') }));
      response.on('error', reject);
    });
    request.on('error', reject);
  });
}

/** Verifies a signed list as a site does; the document, the signer's DN, and one line per image. */
async function verifyList(context: Context, api: Api, message: string) {
  const work = await mkdtemp(join(tmpdir(), 'repoman-verify-'));
  try {
    await writeFile(join(work, 'list.smime'), message);
    await openssl([
      'smime',
      '-verify',
      ...caArgs(context),
      '-in',
      join(work, 'list.smime'),
      '-out',
      join(work, 'list.json'),
      '-signer',
      join(work, 'signer.pem'),
    ]).catch((error: ClientError) => {
      throw new ClientError(
        'transfer',
        `The list's signature does not verify: ${error.message.replace(/^openssl smime failed: /, '')}`,
      );
    });
    const document = JSON.parse(await readFile(join(work, 'list.json'), 'utf8'));
    const subject = (
      await run('openssl', [
        'x509',
        '-in',
        join(work, 'signer.pem'),
        '-noout',
        '-subject',
        '-nameopt',
        'compat',
      ])
    ).stdout
      .trim()
      .replace(/^subject=\s*/, '');
    const list = document['hv:imagelist'];
    const problems: string[] = [];
    const endorser = list?.['hv:endorser']?.['hv:x509']?.['hv:dn'];
    if (endorser !== subject) problems.push(`signed by ${subject}, but its hv:endorser is ${endorser}`);
    const expires = new Date(list?.['dc:date:expires'] ?? 0);
    if (!(expires.getTime() > Date.now())) problems.push(`expired on ${list?.['dc:date:expires']}`);
    const checks: { image: string; version: string; size: number; ok: boolean; why: string }[] = [];
    for (const { 'hv:image': image } of list?.['hv:images'] ?? []) {
      const name = `${image['dc:title']} ${image['hv:version']}`;
      try {
        const got = await fetchAndHash(image['hv:uri'], api.connection.ca);
        const why =
          got.size !== image['hv:size']
            ? `${got.size} bytes, the list says ${image['hv:size']}`
            : got.sha512 !== image['sl:checksum:sha512']
              ? 'its SHA-512 differs from the list’s'
              : '';
        checks.push({
          image: image['dc:title'],
          version: image['hv:version'],
          size: got.size,
          ok: !why,
          why,
        });
        context.note(`${why ? 'FAILED' : 'ok'}  ${name}  ${bytes(got.size)}${why ? `: ${why}` : ''}`);
      } catch (error) {
        const why = `downloading it failed: ${(error as Error).message}`;
        checks.push({ image: image['dc:title'], version: image['hv:version'], size: 0, ok: false, why });
        context.note(`FAILED  ${name}: ${why}`);
      }
    }
    for (const check of checks) if (!check.ok) problems.push(`${check.image} ${check.version}: ${check.why}`);
    return { document, signer: subject, expires: list?.['dc:date:expires'], images: checks, problems };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export const imageListCommands: CommandSpec[] = [
  {
    name: 'endorse',
    alias: 'en',
    summary:
      "endorse an image's version for a group's image list (the current version by default), and sign your own list",
    args: ['image'],
    options: {
      ...groupOption,
      expires: {
        type: 'string',
        short: 'e',
        help: 'until when sites may trust it: a date (2027-06-30) or date-time',
        value: 'DATE',
      },
      version: {
        type: 'string',
        short: 'v',
        help: 'the version to endorse (default: the current one)',
        value: 'N',
      },
      comment: { type: 'string', short: 'c', help: 'a note for the sites (sl:comments)', value: 'TEXT' },
      ...noSignOption,
    },
    server: true,
    async run(context) {
      const group = requireGroup(context);
      const expires = str(context.options.expires);
      if (!expires) throw new ClientError('usage', 'Say until when: --expires 2027-06-30');
      const version = str(context.options.version);
      if (version !== undefined && !/^[1-9]\d{0,9}$/.test(version))
        throw new ClientError('usage', `--version takes a version number, not '${version}'`);
      const api = await context.api();
      const image = await imageName(api, context.args.image as string);
      const made = await api.post<Endorsement>(path('groups', group, 'endorsements'), {
        image,
        expires,
        ...(version === undefined ? {} : { version: Number(version) }),
        ...(str(context.options.comment) === undefined ? {} : { comment: str(context.options.comment) }),
      });
      const signed = context.options['no-sign'] ? null : await signOwnList(context, api, group);
      show(
        context,
        { endorsement: made, signed },
        `[OK] ${group} endorses ${made.image} version ${made.version} until ${text(made.expires)}`,
      );
      signedNote(context, signed, group);
    },
  },
  {
    name: 'withdraw',
    alias: 'wd',
    summary:
      "withdraw a group's endorsement of an image (sites stop being offered it), and sign your list again",
    args: ['image'],
    options: { ...groupOption, ...noSignOption },
    server: true,
    async run(context) {
      const group = requireGroup(context);
      const api = await context.api();
      const [owner, name] = (await imageName(api, context.args.image as string)).split('/') as [
        string,
        string,
      ];
      await api.delete(path('groups', group, 'endorsements', owner, name));
      const mine = (await api.get<Page<Endorsement>>(path('groups', group, 'endorsements'))).items;
      const me = await myName(api);
      const signed =
        context.options['no-sign'] || !mine.some((e) => e.endorser === me)
          ? null
          : await signOwnList(context, api, group);
      show(
        context,
        { withdrawn: `${owner}/${name}`, group, signed },
        `[OK] ${group} no longer endorses ${owner}/${name}`,
      );
      signedNote(context, signed, group);
    },
  },
  {
    name: 'list-endorsements',
    alias: 'le',
    summary: "a group's endorsements: what its image list offers",
    args: ['group'],
    options: { all: { type: 'boolean', short: 'a', help: 'expired ones too' } },
    server: true,
    async run(context) {
      const api = await context.api();
      const items = await api.all<Endorsement>(path('groups', context.args.group as string, 'endorsements'), {
        ...(context.options.all ? { all: true } : {}),
      });
      show(
        context,
        items,
        items.length === 0
          ? `${context.args.group} endorses nothing${context.options.all ? '' : ' now'}`
          : table(items, [
              { title: 'IMAGE', value: (e) => e.image },
              { title: 'VERSION', value: (e) => String(e.version) },
              { title: 'SIZE', value: (e) => bytes(e.size) },
              { title: 'ENDORSER', value: (e) => e.endorser },
              { title: 'EXPIRES', value: (e) => `${text(e.expires)}${e.expired ? ' (expired)' : ''}` },
              { title: 'COMMENT', value: (e) => e.comment ?? '' },
            ]),
      );
    },
  },
  {
    name: 'image-list',
    alias: 'il',
    summary:
      "a group's signed image list (or an image's own, or an endorser's): print it, save it, or verify it as a site does",
    args: ['group'],
    options: {
      image: {
        type: 'string',
        short: 'i',
        help: "the image's own list instead (owner/name)",
        value: 'IMAGE',
      },
      endorser: { type: 'string', short: 'e', help: "the endorser's own list in the group", value: 'USER' },
      output: {
        type: 'string',
        short: 'o',
        help: 'save the signed list (S/MIME) to this file',
        value: 'FILE',
      },
      verify: {
        type: 'boolean',
        help: 'check the signature, the signer, the expiry, and download every image to check its size and SHA-512',
      },
      'subscriber-token': {
        type: 'string',
        short: 't',
        help: "a subscriber token of the group's lists",
        value: 'TOKEN',
      },
      'ca-dir': {
        type: 'string',
        help: 'the CAs the signer is checked against (default $X509_CERT_DIR, --ca, /etc/grid-security/certificates)',
        value: 'DIR',
      },
    },
    server: true,
    async run(context) {
      const group = context.args.group as string;
      const image = str(context.options.image);
      const endorser = str(context.options.endorser);
      if (image && endorser)
        throw new ClientError('usage', '--image and --endorser name different lists: give one');
      const api = await context.api();
      const listPath = image
        ? `${path('images', ...(await imageName(api, image)).split('/'))}/image-list`
        : endorser
          ? path('groups', group, 'endorsers', endorser, 'image-list')
          : path('groups', group, 'image-list');
      const token = str(context.options['subscriber-token']);
      const headers = token
        ? { authorization: `Basic ${Buffer.from(`${token}:x-oauth-basic`).toString('base64')}` }
        : undefined;
      const message = await readBody(await api.open('GET', listPath, headers ? { headers } : {}));
      const output = str(context.options.output);
      if (output) await writeFile(output, message);
      if (!context.options.verify) {
        if (output) return show(context, { saved: output }, `[OK] Saved the signed list to ${output}`);
        // The signed content, as JSON: what the list says.
        const json = await readBody(await api.open('GET', `${listPath}.json`, headers ? { headers } : {}));
        return context.print(json.trimEnd());
      }
      const result = await verifyList(context, api, message);
      if (result.problems.length > 0)
        throw new ClientError('transfer', `The list does not verify: ${result.problems.join('; ')}`);
      show(
        context,
        { signer: result.signer, expires: result.expires, images: result.images },
        `[OK] Signed by ${result.signer}, valid until ${text(result.expires)}; ${result.images.length} image(s) downloaded and checked (size, SHA-512)`,
      );
    },
  },
];
