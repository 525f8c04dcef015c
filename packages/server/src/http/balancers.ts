/**
 * Lists of client addresses the operator configures (the balancers that send the PROXY protocol, the addresses
 * that may read /metrics): parsed here, with no dependency, so that config.ts checks them as it reads them.
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';

/** `10.0.0.5`, `10.0.0.0/8`, `::1`, `fd00::/8`: the balancers' addresses, as a list Node checks quickly. */
export function balancerList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [address = '', bits] = entry.trim().split('/');
    const type = isIPv4(address) ? 'ipv4' : isIPv6(address) ? 'ipv6' : null;
    const prefix = bits === undefined ? undefined : Number(bits);
    if (
      !type ||
      (prefix !== undefined &&
        (!Number.isInteger(prefix) || prefix < 0 || prefix > (type === 'ipv4' ? 32 : 128)))
    )
      throw new Error(`not an IP address or CIDR block: ${JSON.stringify(entry)}`);
    if (prefix === undefined) list.addAddress(address, type);
    else list.addSubnet(address, prefix, type);
  }
  return list;
}
