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
 *
 * Both limits are the server's, whatever number of worker processes it runs: the counts are kept in one ledger
 * (createAddressLedger), in the server's process or, with several workers, in their primary (cluster.ts), which
 * each worker asks about every connection as it arrives, before TLS. The connection waits for the answer
 * (a message to the primary and back, well under a millisecond) with its bytes unread.
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

/** Whether a connection may stay: if not, why, and whether its address has just reached the limit. */
export type Verdict = { ok: true } | { ok: false; reason: RefusalReason; first: boolean };

/** The counts behind both limits, by client address: one ledger per server. */
export interface AddressLedger {
  /** A connection from `address` arrives: it stays, and is counted until `release`, or it is refused. */
  admit(address: string): Verdict | Promise<Verdict>;
  /** A connection admitted from `address` has closed. */
  release(address: string): void;
  /** A certificate presented from `address` was refused. */
  strike(address: string): void;
}

const WINDOW_MS = 60_000;
/** Addresses remembered for their refusals, at most: more are forgotten, oldest window first. */
const MAX_TRACKED = 10_000;

/** The ledger itself: kept where the server's connections are counted (its process, or its primary). */
export function createAddressLedger(options: {
  max: number;
  /** Refused certificates an address may present per minute before it is held back; 0: never held back. */
  maxRefusedPerMinute?: number;
  now?: () => number;
}): Omit<AddressLedger, 'admit'> & { admit(address: string): Verdict } {
  const { max } = options;
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

  return {
    admit(address) {
      const held = maxRefused > 0 ? heldBack(address) : null;
      if (held) return { ok: false, reason: 'refused_certificates', first: held.first };
      const count = open.get(address) ?? 0;
      if (count >= max) {
        const first = !refusing.has(address);
        refusing.add(address);
        return { ok: false, reason: 'connections', first };
      }
      open.set(address, count + 1);
      return { ok: true };
    },

    release(address) {
      const count = (open.get(address) ?? 1) - 1;
      if (count <= 0) open.delete(address);
      else open.set(address, count);
      if (count < max) refusing.delete(address);
    },

    strike(address) {
      if (maxRefused <= 0) return;
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

const ignore = () => {};

export function capConnectionsPerAddress(options: {
  /** Where the counts are; by default a ledger of this process's own, with these limits. */
  ledger?: AddressLedger | undefined;
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
  const { balancers } = options;
  const ledger =
    options.ledger ??
    createAddressLedger({
      max: options.max,
      ...(options.maxRefusedPerMinute === undefined
        ? {}
        : { maxRefusedPerMinute: options.maxRefusedPerMinute }),
      ...(options.now ? { now: options.now } : {}),
    });

  return {
    attach(server, port) {
      const emit = server.emit.bind(server) as (event: string | symbol, ...args: unknown[]) => boolean;
      /** Lets the connection through, or closes it, as the ledger says. */
      const decide = (socket: Socket, address: string, verdict: Verdict) => {
        if (!verdict.ok) {
          socket.destroy();
          options.onRefused(address, port, verdict.first, verdict.reason);
          return;
        }
        if (socket.destroyed) return ledger.release(address); // gone while the ledger was asked
        socket.once('close', () => ledger.release(address));
        emit('connection', socket);
      };
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
        const verdict = ledger.admit(address);
        if (!(verdict instanceof Promise)) {
          decide(socket, address, verdict);
          return true;
        }
        // Asked elsewhere: the client's bytes wait unread (TLS and HTTP read what was buffered once they take
        // the socket), and a reset meanwhile is nobody's error.
        socket.on('error', ignore);
        verdict.then((answer) => {
          socket.off('error', ignore);
          decide(socket, address, answer);
        });
        return true;
      }) as typeof server.emit;
    },

    strike(peer) {
      if (!peer || (balancers && addressIn(balancers, peer))) return;
      ledger.strike(plain(peer));
    },
  };
}
