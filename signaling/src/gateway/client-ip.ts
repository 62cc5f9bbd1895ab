/**
 * The client's address: the socket peer's, or the one `X-Forwarded-For` names when the peer is
 * a trusted proxy. Each proxy appends the peer it saw, so the hops are read right to left while
 * they are trusted proxies; the first one that is not is the client.
 */
import { isIP, type BlockList } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { blockListOf, listed } from '../net/cidr.js';

export class ClientIpResolver {
  readonly #trusted: BlockList;
  readonly #any: boolean;

  /** `trustedProxies`: IP addresses and CIDR ranges (`TRUSTED_PROXIES`, validated by the configuration). */
  constructor(trustedProxies: readonly string[]) {
    this.#trusted = blockListOf(trustedProxies);
    this.#any = trustedProxies.length > 0;
  }

  resolve(request: IncomingMessage): string {
    const peer = request.socket.remoteAddress;
    let client = peer === undefined ? 'unknown' : (parseHop(peer) ?? peer);
    if (!this.#any || !this.#isTrusted(client)) return client;
    const header = request.headers['x-forwarded-for'];
    const hops = (Array.isArray(header) ? header.join(',') : (header ?? ''))
      .split(',')
      .map((hop) => hop.trim())
      .filter((hop) => hop !== ''); // empty list elements are ignored (RFC 9110, 5.6.1)
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = parseHop(hops[i] as string);
      // `client` is a trusted proxy that wrote this hop. When it cannot be read, nobody knows
      // who that proxy's peer was, and everything left of it came from that peer: the proxy
      // is the best address there is.
      if (hop === undefined) return client;
      client = hop;
      if (!this.#isTrusted(hop)) return hop;
    }
    return client;
  }

  #isTrusted(address: string): boolean {
    return listed(this.#trusted, address);
  }
}

/**
 * The address in one `X-Forwarded-For` hop, as proxies write them: `203.0.113.9`,
 * `203.0.113.9:51234`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:443`; an IPv4-mapped
 * IPv6 address becomes the IPv4 one. Undefined for anything else (`unknown`, an obfuscated
 * identifier, garbage).
 */
export function parseHop(hop: string): string | undefined {
  let address = hop;
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(hop);
  if (bracketed) {
    address = bracketed[1] as string;
    if (isIP(address) !== 6) return undefined;
  } else {
    const withPort = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/.exec(hop);
    if (withPort) address = withPort[1] as string;
  }
  if (isIP(address) === 0) return undefined;
  address = address.toLowerCase();
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}
