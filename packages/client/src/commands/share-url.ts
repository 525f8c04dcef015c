/** `repoman share-url`: print a URL of the image that works without a certificate until it expires (a capability, for qemu, curl, a cloud). */
import { path } from '../api.ts';
import type { CommandSpec } from '../cli.ts';
import { ClientError } from '../errors.ts';
import { myName, show, str } from './kit.ts';
import { askCapability, imageRef, ownerOption } from './shared.ts';

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

export const shareUrl: CommandSpec = {
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
    const owner = ref.owner ?? (await myName(api));
    const validity = isoDuration(str(context.options.expires) ?? '1h');
    const activities = context.options.write ? 'DOWNLOAD,LIST,UPLOAD' : 'DOWNLOAD,LIST';
    const issued = await askCapability(api, path('images', 'raw', owner, ref.name), activities, validity);
    show(context, issued, () => issued.uri.targetWithMacaroon);
  },
};
