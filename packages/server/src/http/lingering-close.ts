/**
 * Closing a connection on a client that is still sending, without losing the answer ("lingering close").
 *
 * The server closes a connection before it has read the whole request in three cases: Node's parser refused
 * the request (oversized headers: 431; a malformed request: 400), a JSON body declared too large (413), and an
 * upload refused from its headers whose client sends the body anyway, without `Expect: 100-continue` (403,
 * 404, 413...). Each answer is a JSON error that says what was wrong; the traps are in how the connection ends.
 *
 * - **A close with unread bytes is a reset.** A socket closed while bytes the client sent are still unread
 *   makes the kernel send a reset at once and drop what it had not yet sent, our answer among them: the client
 *   reads ECONNRESET instead of the error. Node's own close after a `Connection: close` answer
 *   (`socket.destroySoon`) closes as soon as the answer is handed to the kernel, and `socket.destroy()` right
 *   after `socket.write()` may not even hand it over.
 * - **Reading it all is a gift to the client.** Reading a refused 10 GB upload to the end to close cleanly
 *   would let anyone keep a connection busy for as long as they like.
 *
 * So, as web servers do: send the answer and then a FIN (the client sees the end of the answer), go on taking
 * what the client still sends (Node's parser discards the rest of a refused body) until the client closes its
 * side, but for at most LINGER_MS; only then close. The per-address connection limit bounds how many
 * connections can linger at once.
 */
import type { Duplex } from 'node:stream';

/** How long a connection whose answer has been sent may go on taking a refused request's bytes. */
export const LINGER_MS = 2000;

type Closable = Duplex & { destroySoon?: () => void };

const lingering = new WeakSet<Duplex>();

/** Ends the connection after what was written to it (FIN), and closes it once the client has, or LINGER_MS on. */
export function closeLingering(socket: Duplex): void {
  if (socket.destroyed || lingering.has(socket)) return;
  lingering.add(socket);
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  socket.end();
}

/** Whether the connection is already ending this way (later parser errors on it are not answered again). */
export function isLingering(socket: Duplex): boolean {
  return lingering.has(socket);
}

/** Has Node's close after a `Connection: close` answer on this connection linger (above) instead of resetting. */
export function lingerAfterResponse(socket: Duplex): void {
  (socket as Closable).destroySoon = () => closeLingering(socket);
}
