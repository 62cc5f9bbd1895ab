/**
 * Lists of IP addresses and CIDR ranges, as the configuration takes them (`TRUSTED_PROXIES`,
 * `SFU_PLAIN_ALLOWED_CIDRS`): validated by {@link isCidr}, matched through a `node:net`
 * `BlockList` built by {@link blockListOf} and asked with {@link listed}.
 */
import { BlockList, isIP } from 'node:net';

/** Whether `value` is an IP address or a CIDR range whose prefix fits the address family. */
export function isCidr(value: string): boolean {
  const [address = '', prefix, ...rest] = value.split('/');
  const family = isIP(address);
  if (family === 0 || rest.length > 0) return false;
  if (prefix === undefined) return true;
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128);
}

/**
 * A `BlockList` holding `cidrs`: IP addresses (a /32 or /128 range) and CIDR ranges, each
 * already accepted by {@link isCidr}. IPv4-mapped IPv6 addresses match the IPv4 ranges.
 */
export function blockListOf(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [address = '', prefix] = cidr.split('/');
    const type = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    list.addSubnet(address, prefix === undefined ? (type === 'ipv6' ? 128 : 32) : Number(prefix), type);
  }
  return list;
}

/** Whether `address` is an IP address inside `list`; false for anything that is not an IP address. */
export function listed(list: BlockList, address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  return list.check(address, family === 6 ? 'ipv6' : 'ipv4');
}
