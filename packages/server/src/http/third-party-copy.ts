/**
 * Third-party copy (WLCG HTTP-TPC, as FTS and gfal2 drive it) of one image between this server and another:
 * a `COPY` with `Source:` pulls the other end's bytes into a new version of the image here; with
 * `Destination:` this server pushes the image's bytes there with a `PUT`. What can be decided here (who may,
 * which image, which URL) is decided before the copy starts; the copy itself reports as it goes, in
 * performance markers (routes/copy.ts).
 *
 * - **Pull** goes through the versions service exactly as a PUT does: admission (rights, size, quota; again
 *   with the length the other end announces), then the bytes streamed in, hashed, inspected and published
 *   as one version, or nothing. The checksums the other end gives (`Repr-Digest`, or RFC 3230 `Digest`
 *   answering our `Want-Digest`: ADLER32, MD5, SHA-256) are the digests the bytes must have: a mismatch
 *   publishes nothing.
 * - **Push** sends the bytes with their `Repr-Digest` (a Repoman destination refuses other bytes), then
 *   compares what the destination says it stored: its answer's `Repr-Digest`, else the `Digest` a `HEAD` with
 *   `Want-Digest` gives.
 * - **Verification**: each check is named in the outcome. `RequireChecksumVerification: true` (FTS, dCache)
 *   makes a copy with no checksum to compare fail; otherwise it succeeds unverified, and says so.
 */

import type { IncomingMessage } from 'node:http';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { DigestName, ExpectedDigests, RepomanError } from '@repoman/core';
import type { Actor } from '../authz.ts';
import type { ImageRef } from '../services/image-access.ts';
import type { Services } from '../services/index.ts';
import { type RemotePolicy, remoteFailure, remoteRequest, shownUrl } from '../tpc/remote.ts';
import { digestsGiven, reprDigest } from './digests.ts';

export interface CopyOutcome {
  /** Bytes that crossed. */
  bytes: number;
  /** The checksums compared, and found equal. */
  verified: DigestName[];
  /** Pull: the version the bytes became. */
  version?: number;
  createdImage?: boolean;
}

/** A copy decided and ready: `run` moves the bytes, telling `onBytes` of each chunk. */
export interface PreparedCopy {
  run(onBytes: (count: number) => void, signal: AbortSignal): Promise<CopyOutcome>;
}

export interface CopyRequest {
  actor: Actor;
  ref: ImageRef;
  /** The other end. */
  remote: URL;
  /** What goes to the other end as headers (the caller's TransferHeader*). */
  headers: Record<string, string>;
  requireChecksum: boolean;
}

/** What a pull asks the other end for, beside its bytes. */
const WANT_DIGEST = 'sha-256, adler32;q=0.9, md5;q=0.8';

/** `stream`, counting what passes on to `onBytes`. */
function counted(stream: Readable, onBytes: (count: number) => void): Readable {
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      onBytes(chunk.length);
      done(null, chunk);
    },
  });
  pipeline(stream, counter).catch((error: Error) => counter.destroy(error));
  return counter;
}

/** Up to 2 KiB of an answer's body, for a failure's message (the rest is not read: the caller closes it). */
async function snippet(response: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of response) {
    text += (chunk as Buffer).toString('utf8');
    if (text.length >= 2048) break;
  }
  return text.slice(0, 2048).replace(/\s+/g, ' ').trim();
}

function noChecksum(where: string): RepomanError {
  return remoteFailure(`${where} gave no checksum to verify the copy against (RequireChecksumVerification)`);
}

export function createThirdPartyCopy(services: Services, policy: RemotePolicy) {
  return {
    /** A pull into the image: who may write it is decided now (a name not taken yet is made, as by PUT). */
    async preparePull(copy: CopyRequest): Promise<PreparedCopy> {
      const { actor, ref, remote } = copy;
      await services.versions.admitUpload(actor, ref, undefined, { createIfMissing: true });
      return {
        async run(onBytes, signal) {
          const response = await remoteRequest(
            { method: 'GET', url: remote, headers: { ...copy.headers, 'want-digest': WANT_DIGEST }, signal },
            policy,
          );
          try {
            if (response.statusCode !== 200)
              throw remoteFailure(
                `${shownUrl(remote)} answered ${response.statusCode}: ${await snippet(response)}`,
              );
            const header = response.headers['content-length'];
            const length = header === undefined ? undefined : Number(header);
            // The announced length against the size limit and the owner's quota, before a byte is stored.
            const admitted = await services.versions.admitUpload(actor, ref, length, {
              createIfMissing: true,
            });
            const expected: ExpectedDigests = digestsGiven(response.headers);
            if (copy.requireChecksum && Object.keys(expected).length === 0)
              throw noChecksum(shownUrl(remote));
            const received = await services.versions.receive(
              admitted,
              counted(response, onBytes),
              expected,
              signal,
            );
            return {
              bytes: received.size,
              verified: Object.keys(expected) as DigestName[],
              version: received.version,
              createdImage: received.createdImage,
            };
          } finally {
            response.destroy();
          }
        },
      };
    },

    /** A push of the image's current bytes: who may read them is decided now. */
    async preparePush(copy: CopyRequest): Promise<PreparedCopy> {
      const { actor, ref, remote } = copy;
      const download = await services.versions.openDownload(actor, ref);
      return {
        async run(onBytes, signal) {
          const response = await remoteRequest(
            {
              method: 'PUT',
              url: remote,
              headers: {
                ...copy.headers,
                'content-type': 'application/octet-stream',
                'repr-digest': reprDigest(download.sha256),
              },
              body: { length: download.size, open: async () => counted(await download.open(), onBytes) },
              signal,
            },
            policy,
          );
          const text = await snippet(response).finally(() => response.destroy());
          if ((response.statusCode ?? 0) >= 300)
            throw remoteFailure(`${shownUrl(remote)} answered ${response.statusCode}: ${text}`);
          let given = digestsGiven(response.headers);
          if (Object.keys(given).length === 0) {
            // What the destination holds now, as it says on a HEAD.
            const head = await remoteRequest(
              {
                method: 'HEAD',
                url: remote,
                headers: { ...copy.headers, 'want-digest': WANT_DIGEST },
                signal,
              },
              policy,
            );
            head.resume();
            if (head.statusCode === 200) given = digestsGiven(head.headers);
          }
          const names = Object.keys(given) as DigestName[];
          const ours = { sha256: download.sha256, ...(await download.digests(names)) };
          const verified: DigestName[] = [];
          for (const name of names) {
            if (!ours[name]) continue;
            if (ours[name] !== given[name])
              throw remoteFailure(
                `${shownUrl(remote)} holds other bytes than were sent: its ${name} is ${given[name]}, ours ${ours[name]}`,
              );
            verified.push(name);
          }
          if (copy.requireChecksum && verified.length === 0) throw noChecksum(shownUrl(remote));
          return { bytes: download.size, verified };
        },
      };
    },
  };
}

export type ThirdPartyCopy = ReturnType<typeof createThirdPartyCopy>;
