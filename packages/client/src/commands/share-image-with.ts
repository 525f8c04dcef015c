/** share-image-with-users/-groups and unshare-image-with-users/-groups: read-only sharing of an image. */
import type { CommandSpec } from '../cli.ts';
import { forEach, imagePath, imageRef, list, ownerOption } from './shared.ts';

export const shareCommands: CommandSpec[] = (['users', 'groups'] as const).flatMap((kind) =>
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
);
