/** A relay that drops one connection in the middle, for tests of resumed transfers. TLS runs end to end through it. */
import net from 'node:net';

/**
 * A TCP relay in front of the server that cuts the first connection over which `cutAfter` bytes have gone
 * upstream (or, with `down`, come back): a dropped network, mid-transfer. Everything else passes untouched.
 *
 * An upstream cut is a dropped client as the server sees it once the bytes in flight have arrived: the client's
 * side goes at once, the server's side ends after the bytes forwarded so far. Connections made after the cut
 * wait until the server has closed the cut one, that is, until it has read everything sent before the cut, so a
 * client that resumes at once finds what a real network would have delivered, however loaded the machine.
 */
export async function cuttingRelay(targetPort: number, cutAfter: number, direction: 'up' | 'down' = 'up') {
  let cut = false;
  let settled: Promise<void> = Promise.resolve();
  let upstreamBytes = 0;
  let downstreamBytes = 0;
  const sockets = new Set<net.Socket>();
  const relay = net.createServer(async (client) => {
    sockets.add(client);
    client.on('error', () => {});
    client.pause();
    await settled;
    if (client.destroyed) return;
    const server = net.connect(targetPort, '127.0.0.1');
    sockets.add(server);
    server.on('error', () => {});
    let sent = 0;
    let cutHere = false;
    const cutting = (chunk: Buffer): boolean => {
      if (cut || sent + chunk.length <= cutAfter) {
        sent += chunk.length;
        return false;
      }
      cut = cutHere = true;
      client.destroy();
      if (direction === 'up') {
        settled = new Promise((resolve) => server.once('close', () => resolve()));
        server.end(chunk.subarray(0, cutAfter - sent));
      } else server.destroy();
      sent = cutAfter;
      return true;
    };
    client.on('data', (chunk: Buffer) => {
      upstreamBytes += chunk.length;
      if (direction === 'up' && cutting(chunk)) return;
      if (!cutHere) server.write(chunk);
    });
    server.on('data', (chunk: Buffer) => {
      downstreamBytes += chunk.length;
      if (direction === 'down' && cutting(chunk)) return;
      if (!cutHere) client.write(chunk);
    });
    client.on('close', () => {
      if (!cutHere) server.destroy();
    });
    server.on('close', () => client.destroy());
    client.resume();
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  return {
    port: (relay.address() as net.AddressInfo).port,
    get cut() {
      return cut;
    },
    get upstreamBytes() {
      return upstreamBytes;
    },
    get downstreamBytes() {
      return downstreamBytes;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        relay.close(() => resolve());
      }),
  };
}
