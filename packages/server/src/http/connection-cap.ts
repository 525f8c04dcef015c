/**
 * A cap on the connections one client address holds open at once (`connections.max_per_address`), on the
 * HTTPS and plain-HTTP ports together. A connection is counted as it arrives, before TLS: one past the cap is
 * closed at once, so it costs no handshake, no parser and no timer. Behind balancers (http/proxy-protocol.ts)
 * a connection counts for the client its PROXY header names; a balancer's own address counts for nobody, as
 * it carries many clients and its health checks.
 *
 * The same gate holds back an address that keeps presenting certificates the server refuses
 * (`connections.max_refused_certificates_per_minute`): once it has had more refusals than that within a minute,
 * its new connections are closed as they arrive until the minute is over. Every refusal costs a TLS handshake
 * and a chain check on the server's one thread; a loop of them from a few addresses slowed everyone else.
 */
import type { BlockList, Server, Socket } from 'node:net';
import { addressIn, plain } from './proxy-protocol.ts';

export interface ConnectionCap {
  /** Counts `server`'s connections. Attach before acceptProxyProtocol, so that this sees the client's address. */
  attach(server: Server, port: 'https' | 'http'): void;
  /** The certificate of a connection from `address` was refused. */
  strike(address: string | undefined): void;
}

export type RefusalReason = 'connections' | 'refused_certificates';

const WINDOW_MS = 60_000;
/** Addresses remembered for their refusals, at most: more are forgotten, oldest window first. */
const MAX_TRACKED = 10_000;

export function capConnectionsPerAddress(options: {
  max: number;
  balancers: BlockList | null;
  /** Refused certificates an address may present per minute before it is held back; 0: never held back. */
  maxRefusedPerMinute?: number;
  /**
   * A connection was closed for its address; `first` when the address has just reached the cap (or just been
   * held back), `reason` which.
   */
  onRefused: (address: string, port: 'https' | 'http', first: boolean, reason: RefusalReason) => void;
  now?: () => number;
}): ConnectionCap {
  const { max, balancers } = options;
  const maxRefused = options.maxRefusedPerMinute ?? 0;
  const now = options.now ?? Date.now;
  /** Per address: refusals in the current window, when it began, and whether it is held back. */
  const strikes = new Map<string, { count: number; since: number; said: boolean }>();
  const heldBack = (address: string): { first: boolean } | null => {
    const entry = strikes.get(address);
    if (!entry || entry.count <= maxRefused) return null;
    if (now() - entry.since >= WINDOW_MS) {
      strikes.delete(address);
      return null;
    }
    const first = !entry.said;
    entry.said = true;
    return { first };
  };
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
        const held = maxRefused > 0 ? heldBack(address) : null;
        if (held) {
          socket.destroy();
          options.onRefused(address, port, held.first, 'refused_certificates');
          return true;
        }
        const count = open.get(address) ?? 0;
        if (count >= max) {
          socket.destroy();
          options.onRefused(address, port, !refusing.has(address), 'connections');
          refusing.add(address);
          return true;
        }
        open.set(address, count + 1);
        socket.once('close', () => release(address));
        return emit(event, ...args);
      }) as typeof server.emit;
    },

    strike(peer) {
      if (maxRefused <= 0 || !peer || (balancers && addressIn(balancers, peer))) return;
      const address = plain(peer);
      const at = now();
      let entry = strikes.get(address);
      if (!entry || at - entry.since >= WINDOW_MS) {
        if (!entry && strikes.size >= MAX_TRACKED) {
          for (const [key, old] of strikes) if (at - old.since >= WINDOW_MS) strikes.delete(key);
          if (strikes.size >= MAX_TRACKED) strikes.delete(strikes.keys().next().value as string);
        }
        entry = { count: 0, since: at, said: false };
        strikes.set(address, entry);
      }
      entry.count++;
    },
  };
}
