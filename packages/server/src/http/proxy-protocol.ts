/**
 * The PROXY protocol (versions 1 and 2, as HAProxy sends them with `send-proxy` / `send-proxy-v2`), accepted
 * only on connections from configured balancer addresses. A balancer in TCP mode passes TLS through untouched,
 * so the client's certificate (or proxy chain) reaches the server that verifies it; the PROXY header in front
 * of the TLS bytes says who the client is, and the server logs and records that address instead of the
 * balancer's. A connection from a balancer without a valid header is closed; from anyone else, a header is
 * never looked for (it would be a TLS error), so nobody but the balancers can claim an address.
 */
import { type BlockList, isIPv4, isIPv6, type Server, type Socket } from 'node:net';
import { Server as TlsServer } from 'node:tls';

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** A version 1 header is at most 107 bytes; version 2 headers with TLVs are kept to this. */
const MAX_HEADER = 4096;
const HEADER_TIMEOUT_MS = 5000;

export interface ClientAddress {
  address: string;
  port: number;
  family: 'IPv4' | 'IPv6';
}

export class ProxyProtocolError extends Error {
  override name = 'ProxyProtocolError';
}

/** An IPv4 client of a dual-stack listener shows as `::ffff:a.b.c.d`. */
export const plain = (address: string) => address.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');

export function addressIn(list: BlockList, address: string | undefined): boolean {
  if (!address) return false;
  const bare = plain(address);
  return list.check(bare, isIPv4(bare) ? 'ipv4' : 'ipv6');
}

/**
 * Parses a PROXY header at the start of `data`: the client's address (null for a balancer's own connection,
 * such as a health check: `LOCAL` or `UNKNOWN`) and the header's length; or undefined if more bytes are needed.
 */
export function parseProxyHeader(data: Buffer): { client: ClientAddress | null; length: number } | undefined {
  if (data.length >= 1 && data[0] === 0x0d) {
    if (data.length < 16) {
      if (!V2_SIGNATURE.subarray(0, data.length).equals(data.subarray(0, V2_SIGNATURE.length)))
        throw new ProxyProtocolError('not a PROXY protocol header');
      return undefined;
    }
    if (!data.subarray(0, 12).equals(V2_SIGNATURE))
      throw new ProxyProtocolError('not a PROXY protocol header');
    const versionCommand = data[12] as number;
    if (versionCommand >> 4 !== 2) throw new ProxyProtocolError('unknown PROXY protocol version');
    const length = 16 + data.readUInt16BE(14);
    if (length > MAX_HEADER) throw new ProxyProtocolError('PROXY protocol header too long');
    if (data.length < length) return undefined;
    const command = versionCommand & 0x0f;
    if (command === 0) return { client: null, length }; // LOCAL: the balancer itself
    if (command !== 1) throw new ProxyProtocolError('unknown PROXY protocol command');
    const family = data[13] as number;
    if (family === 0x11 && length >= 16 + 12) {
      const address = [...data.subarray(16, 20)].join('.');
      return { client: { address, port: data.readUInt16BE(24), family: 'IPv4' }, length };
    }
    if (family === 0x21 && length >= 16 + 36) {
      const groups = Array.from({ length: 8 }, (_, i) => data.readUInt16BE(16 + 2 * i).toString(16));
      const address = plain(new URL(`http://[${groups.join(':')}]`).hostname.slice(1, -1));
      return { client: { address, port: data.readUInt16BE(48), family: 'IPv6' }, length };
    }
    return { client: null, length }; // UNSPEC or a Unix socket: nothing to say about the client
  }
  const end = data.indexOf('\r\n');
  const prefix = data.subarray(0, Math.min(data.length, 6)).toString('latin1');
  if (!'PROXY '.startsWith(prefix)) throw new ProxyProtocolError('not a PROXY protocol header');
  if (end < 0) {
    if (data.length >= 107) throw new ProxyProtocolError('PROXY protocol header too long');
    return undefined;
  }
  const fields = data.subarray(0, end).toString('latin1').split(' ');
  const length = end + 2;
  if (fields[1] === 'UNKNOWN') return { client: null, length };
  const [, protocol, source, , sourcePort] = fields;
  const port = Number(sourcePort);
  const valid =
    fields.length === 6 &&
    ((protocol === 'TCP4' && isIPv4(source ?? '')) || (protocol === 'TCP6' && isIPv6(source ?? ''))) &&
    Number.isInteger(port) &&
    port >= 0 &&
    port <= 65535;
  if (!valid) throw new ProxyProtocolError('malformed PROXY protocol header');
  return {
    client: { address: plain(source as string), port, family: protocol === 'TCP4' ? 'IPv4' : 'IPv6' },
    length,
  };
}

/** Reads the header off the socket, leaving every byte after it to whoever reads the socket next. */
function readHeader(socket: Socket): Promise<ClientAddress | null> {
  return new Promise((resolve, reject) => {
    let received: Buffer = Buffer.alloc(0);
    const timer = setTimeout(
      () => finish(new ProxyProtocolError('no PROXY protocol header in time')),
      HEADER_TIMEOUT_MS,
    );
    const finish = (error: Error | null, client: ClientAddress | null = null, rest?: Buffer) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('end', onEnd);
      socket.pause();
      if (rest && rest.length > 0) socket.unshift(rest);
      if (error) reject(error);
      else resolve(client);
    };
    const onError = (error: Error) => finish(error);
    const onEnd = () =>
      finish(new ProxyProtocolError('the connection closed before its PROXY protocol header'));
    const onData = (chunk: Buffer) => {
      received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
      try {
        const header = parseProxyHeader(received);
        if (header) finish(null, header.client, received.subarray(header.length));
      } catch (error) {
        finish(error as Error);
      }
    };
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('end', onEnd);
  });
}

/**
 * Makes the connection report the client's address (`remoteAddress`, `remotePort`, `remoteFamily`), here and
 * on the TLS socket later wrapped around it, which asks the same handle.
 */
function setPeer(socket: Socket, client: ClientAddress) {
  const handle = (
    socket as unknown as { _handle?: { getpeername?: (out: Record<string, unknown>) => number } }
  )._handle;
  if (!handle) return;
  handle.getpeername = (out) => {
    out.address = client.address;
    out.port = client.port;
    out.family = client.family;
    return 0;
  };
  (socket as unknown as { _peername?: unknown })._peername = undefined;
}

/**
 * Has `server` read a PROXY header from every connection that comes from a balancer before it handles it (as
 * TLS, or as plain HTTP). Connections from elsewhere are handled as they are.
 */
export function acceptProxyProtocol(
  server: Server,
  balancers: BlockList,
  onRefused: (error: Error, balancer: string) => void,
): void {
  const emit = server.emit.bind(server) as (event: string | symbol, ...args: unknown[]) => boolean;
  server.emit = ((event: string | symbol, ...args: unknown[]) => {
    if (event !== 'connection') return emit(event, ...args);
    const socket = args[0] as Socket;
    const peer = socket.remoteAddress;
    if (!addressIn(balancers, peer)) return emit(event, ...args);
    readHeader(socket).then(
      (client) => {
        if (socket.destroyed) return;
        if (client) setPeer(socket, client);
        emit(event, socket);
        // TLS reads what came after the header from the paused socket as it wraps it; plain HTTP reads the
        // native handle, so the bytes put back must be let flow.
        if (!('encrypted' in socket) && !(server instanceof TlsServer)) socket.resume();
      },
      (error: Error) => {
        onRefused(error, peer as string);
        socket.destroy();
      },
    );
    return true;
  }) as typeof server.emit;
}
