/** `repoman copy`: copy an image from one repository to another, server to server (a third-party copy: the bytes do not pass through here). */
import type { IncomingMessage } from 'node:http';
import { type Api, path } from '../api.ts';
import type { CommandSpec } from '../cli.ts';
import { ClientError } from '../errors.ts';
import { Progress } from '../transfer.ts';
import { ownerAndName } from './kit.ts';
import { askCapability, done } from './shared.ts';

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

export const copy: CommandSpec = {
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
};
