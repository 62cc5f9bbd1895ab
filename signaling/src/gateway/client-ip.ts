/** The client's address: the socket's, or `X-Forwarded-For` when a trusted proxy sent it. */
import { BlockList, isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';

export class ClientIpResolver {
  readonly #trusted = new BlockList();
  readonly #any: boolean;

  constructor(trustedProxies: readonly string[]) {
    for (const entry of trustedProxies) {
      const [address = '', prefix] = entry.split('/');
      const type = isIP(address) === 6 ? 'ipv6' : 'ipv4';
      if (prefix === undefined) this.#trusted.addAddress(address, type);
      else this.#trusted.addSubnet(address, Number(prefix), type);
    }
    this.#any = trustedProxies.length > 0;
  }

  resolve(request: IncomingMessage): string {
    const remote = normalize(request.socket.remoteAddress ?? 'unknown');
    if (!this.#any || !this.#isTrusted(remote)) return remote;
    const header = request.headers['x-forwarded-for'];
    const hops = (Array.isArray(header) ? header.join(',') : (header ?? ''))
      .split(',')
      .map((h) => normalize(h.trim()))
      .filter((h) => isIP(h) !== 0);
    // Walk from the nearest hop back while the hops are our own proxies.
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i] as string;
      if (!this.#isTrusted(hop)) return hop;
    }
    return hops[0] ?? remote;
  }

  #isTrusted(address: string): boolean {
    const type = isIP(address);
    if (type === 0) return false;
    return this.#trusted.check(address, type === 6 ? 'ipv6' : 'ipv4');
  }
}

function normalize(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}
