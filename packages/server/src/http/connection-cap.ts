/**
 * A cap on the connections one client address holds open at once (`connections.max_per_address`), on the
 * HTTPS and plain-HTTP ports together. A connection is counted as it arrives, before TLS: one past the cap is
 * closed at once, so it costs no handshake, no parser and no timer. Behind balancers (http/proxy-protocol.ts)
 * a connection counts for the client its PROXY header names; a balancer's own address counts for nobody, as
 * it carries many clients and its health checks.
 */
import type { BlockList, Server, Socket } from 'node:net';
import { addressIn, plain } from './proxy-protocol.ts';

export interface ConnectionCap {
  /** Counts `server`'s connections. Attach before acceptProxyProtocol, so that this sees the client's address. */
  attach(server: Server, port: 'https' | 'http'): void;
}

export function capConnectionsPerAddress(options: {
  max: number;
  balancers: BlockList | null;
  /** A connection was closed for its address; `first` when the address has just reached the cap. */
  onRefused: (address: string, port: 'https' | 'http', first: boolean) => void;
}): ConnectionCap {
  const { max, balancers } = options;
  const open = new Map<string, number>();
  /** Addresses refused since they last held fewer than `max`: said once per episode, not per connection. */
  const refusing = new Set<string>();

  const release = (address: string) => {
    const count = (open.get(address) ?? 1) - 1;
    if (count === 0) open.delete(address);
    else open.set(address, count);
    if (count < max) refusing.delete(address);
  };

  return {
    attach(server, port) {
      const emit = server.emit.bind(server) as (event: string | symbol, ...args: unknown[]) => boolean;
      server.emit = ((event: string | symbol, ...args: unknown[]) => {
        if (event !== 'connection') return emit(event, ...args);
        const socket = args[0] as Socket;
        const peer = socket.remoteAddress;
        if (!peer) {
          socket.destroy(); // gone already: there is nobody to serve
          return true;
        }
        if (balancers && addressIn(balancers, peer)) return emit(event, ...args);
        const address = plain(peer);
        const count = open.get(address) ?? 0;
        if (count >= max) {
          socket.destroy();
          options.onRefused(address, port, !refusing.has(address));
          refusing.add(address);
          return true;
        }
        open.set(address, count + 1);
        socket.once('close', () => release(address));
        return emit(event, ...args);
      }) as typeof server.emit;
    },
  };
}
