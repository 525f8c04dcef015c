/**
 * `Expect: 100-continue`: Node answers it by itself unless the server listens for 'checkContinue', which ours
 * do (server.ts), so a client such as curl sends a large body only once the request has been accepted. Routes
 * call this when they are ready to read the body; a refusal before it is answered at once, and the client
 * never sends the body.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';

const CONTINUED = Symbol('repoman.continued');

export function acceptBody(request: FastifyRequest, reply: FastifyReply): void {
  const raw = request.raw as FastifyRequest['raw'] & { [CONTINUED]?: boolean };
  if (raw[CONTINUED] || !/100-continue/i.test(raw.headers.expect ?? '')) return;
  raw[CONTINUED] = true;
  reply.raw.writeContinue();
}

/** A signal that fires when the client goes away before its body has all arrived. */
export function abortOnClose(request: FastifyRequest): AbortSignal {
  const aborted = new AbortController();
  if (request.raw.destroyed && !request.raw.complete)
    aborted.abort(new Error('the client closed the connection'));
  request.raw.once('close', () => {
    if (!request.raw.complete) aborted.abort(new Error('the client closed the connection'));
  });
  return aborted.signal;
}

/**
 * Once the body has all arrived, the server may work on it for a while (hashing a resumed upload again,
 * decompressing it) before it answers: the connection's idle timeout, meant for silent clients, is suspended
 * until the response is sent.
 */
export function holdWhileWorking(request: FastifyRequest, reply: FastifyReply): void {
  const socket = request.raw.socket;
  const suspend = () => {
    const idle = socket.timeout ?? 0;
    if (idle === 0 || socket.destroyed) return;
    socket.setTimeout(0);
    reply.raw.once('finish', () => {
      if (!socket.destroyed) socket.setTimeout(idle);
    });
  };
  if (request.raw.complete) suspend();
  else request.raw.once('end', suspend);
}
