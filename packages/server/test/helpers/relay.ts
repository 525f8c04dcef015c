/** A relay that drops one connection in the middle, for tests of resumed transfers. TLS runs end to end through it. */
import net from 'node:net';

/**
 * A TCP relay in front of the server that cuts the first connection over which `cutAfter` bytes have gone
 * upstream (or, with `down`, come back): a dropped network, mid-transfer. Everything else passes untouched. TLS runs end to end through it.
 */
export async function cuttingRelay(targetPort: number, cutAfter: number, direction: 'up' | 'down' = 'up') {
  let cut = false;
  let upstreamBytes = 0;
  let downstreamBytes = 0;
  const sockets = new Set<net.Socket>();
  const relay = net.createServer((client) => {
    const server = net.connect(targetPort, '127.0.0.1');
    sockets.add(client).add(server);
    let sent = 0;
    const cutting = (count: number) => {
      sent += count;
      if (cut || sent <= cutAfter) return false;
      cut = true;
      client.destroy();
      server.destroy();
      return true;
    };
    client.on('data', (chunk: Buffer) => {
      upstreamBytes += chunk.length;
      if (direction === 'up' && cutting(chunk.length)) return;
      server.write(chunk);
    });
    server.on('data', (chunk: Buffer) => {
      downstreamBytes += chunk.length;
      if (direction === 'down' && cutting(chunk.length)) return;
      client.write(chunk);
    });
    for (const socket of [client, server]) {
      socket.on('error', () => {});
      socket.on('close', () => {
        client.destroy();
        server.destroy();
      });
    }
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
