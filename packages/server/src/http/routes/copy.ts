/**
 * WebDAV's `COPY` on an image's bytes URL, as WLCG's HTTP third-party copy uses it (http/third-party-copy.ts):
 * with `Source: URL` the image pulls the bytes there into a new version; with `Destination: URL` it pushes
 * its bytes there. Anything wrong with the request itself (rights, headers, `Overwrite: F` on an image with
 * bytes) is an error answered at once; once the copy starts, the answer is `202` with a
 * `text/perf-marker-stream` body, which FTS and gfal2 (davix) read line by line:
 *
 * ```
 * Perf Marker
 *     Timestamp: 1796654337
 *     Stripe Index: 0
 *     Stripe Bytes Transferred: 8388608
 *     Total Stripe Count: 1
 * End
 * ```
 *
 * every `tpc.marker_seconds`, then one last marker and `success: Created` or `failure: <why>`. No blank line
 * and nothing else: davix takes any other line for an error. A client that goes away stops the copy.
 */
import { PassThrough } from 'node:stream';
import { RepomanError } from '@repoman/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { type RemotePolicy, remoteUrl, shownUrl, transferHeaders } from '../../tpc/remote.ts';
import { finishAudit } from '../audit.ts';
import { requireActor } from '../auth.ts';
import { holdWhileWorking } from '../continue.ts';
import { RAW_FORMS, type RefParams, refOf } from '../image-ref.ts';
import { createThirdPartyCopy, type PreparedCopy } from '../third-party-copy.ts';
import type { RouteDeps } from './deps.ts';

/** What a copy's settings say: the policy for the other end, and how often to report. */
export interface CopySettings {
  remote: RemotePolicy;
  markerMs: number;
}

/** A performance-marker stream on `out`: one marker now, one every `everyMs`, the last with the outcome. */
function perfMarkers(out: PassThrough, everyMs: number) {
  let bytes = 0;
  const marker = () =>
    out.write(
      `Perf Marker\n\tTimestamp: ${Math.floor(Date.now() / 1000)}\n\tStripe Index: 0\n` +
        `\tStripe Bytes Transferred: ${bytes}\n\tTotal Stripe Count: 1\nEnd\n`,
    );
  marker();
  const timer = setInterval(marker, everyMs);
  return {
    add: (count: number) => {
      bytes += count;
    },
    end(line: string) {
      clearInterval(timer);
      marker();
      out.end(`${line}\n`);
    },
  };
}

/** A message as one line of the stream (it ends at the first line break a remote answer may hold). */
const oneLine = (text: string) => text.replace(/[\r\n]+/g, ' ').slice(0, 1000);

export function copyRoutes(app: FastifyInstance, deps: RouteDeps) {
  const { services } = deps;
  const tpc = createThirdPartyCopy(services, deps.copy.remote);
  const [fullForm] = RAW_FORMS;

  app.route<{ Params: RefParams }>({
    method: 'COPY',
    url: fullForm.path,
    schema: { hide: true },
    handler: async (request: FastifyRequest<{ Params: RefParams }>, reply: FastifyReply) => {
      const actor = requireActor(request);
      const ref = refOf(request);
      const header = (name: string) => {
        const value = request.headers[name];
        return typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined;
      };
      const source = header('source');
      const destination = header('destination');
      if ((source === undefined) === (destination === undefined))
        throw new RepomanError(
          'bad_request',
          'COPY takes a Source header (pull the bytes there into this image) or a Destination header (push this image there), one of the two',
        );
      const remote = source ? remoteUrl(source, 'Source') : remoteUrl(destination as string, 'Destination');
      const copy = {
        actor,
        ref,
        remote,
        headers: transferHeaders(request.headers),
        requireChecksum: /^true$/i.test(header('requirechecksumverification') ?? ''),
      };
      const direction = source ? 'pull' : 'push';
      // (A refusal from here on is recorded as the answer goes out; a copy that starts, once it has ended.)
      request.audit = { detail: { direction, remote: shownUrl(remote) } };
      let prepared: PreparedCopy;
      if (source) {
        if (/^f$/i.test(header('overwrite') ?? '')) {
          const image = await services.images.get(actor, ref).catch((error: unknown) => {
            if (error instanceof RepomanError && error.code === 'image_not_found') return null;
            throw error;
          });
          if (image?.size != null)
            throw new RepomanError(
              'destination_exists',
              `${ref.owner}/${ref.name} has bytes, and the copy said not to overwrite them (Overwrite: F)`,
            );
        }
        prepared = await tpc.preparePull(copy);
      } else {
        prepared = await tpc.preparePush(copy);
      }

      // From here the copy runs, and its outcome is in the answer's body.
      request.audit.later = true;
      const out = new PassThrough();
      const markers = perfMarkers(out, deps.copy.markerMs);
      const stop = new AbortController();
      reply.raw.once('close', () => {
        if (!reply.raw.writableFinished) stop.abort(new Error('the client of the copy went away'));
      });
      holdWhileWorking(request, reply);
      // The audit entry is written before the outcome line: whoever reads the outcome finds the entry.
      prepared
        .run(markers.add, stop.signal)
        .then(
          async (outcome) => {
            const verified = outcome.verified.length > 0 ? outcome.verified.join(', ') : 'no checksum given';
            await finishAudit(request, 'ok', { ...outcome });
            return `success: Created (${outcome.bytes} bytes; verified: ${verified})`;
          },
          async (error: unknown) => {
            const coded = error instanceof RepomanError ? error : null;
            if (!coded) request.log.error({ err: error }, 'a third-party copy failed');
            const message = coded ? coded.message : 'internal error';
            await finishAudit(request, coded?.code ?? 'internal', { failure: message });
            return `failure: ${oneLine(message)}`;
          },
        )
        // Whatever went wrong in reporting, the stream ends (its timer with it) and says so.
        .catch((error: unknown) => {
          request.log.error({ err: error }, 'a third-party copy could not report its outcome');
          return 'failure: internal error';
        })
        .then((line) => markers.end(line));
      return reply.code(202).type('text/perf-marker-stream').header('cache-control', 'no-store').send(out);
    },
  });
}
