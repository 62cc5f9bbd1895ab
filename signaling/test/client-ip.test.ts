/**
 * Client address resolution: `X-Forwarded-For` counts only when the socket peer is one of
 * `TRUSTED_PROXIES`; the resolved address is what the per-IP upgrade limit keys on.
 */
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { ClientIpResolver, parseHop } from '../src/gateway/client-ip.js';
import { ipLimitKey } from '../src/rate-limits.js';
import { nodePerTest } from '../../test-support/harness.js';
import { refusal } from '../../test-support/sockets.js';

function request(remoteAddress: string | undefined, forwardedFor?: string | string[]): IncomingMessage {
  const headers: Record<string, string | string[]> = {};
  if (forwardedFor !== undefined) headers['x-forwarded-for'] = forwardedFor;
  return { socket: { remoteAddress }, headers } as unknown as IncomingMessage;
}

describe('ClientIpResolver', () => {
  it('uses the socket address and ignores X-Forwarded-For when no proxy is trusted', () => {
    const ips = new ClientIpResolver([]);
    expect(ips.resolve(request('198.51.100.7', '203.0.113.9'))).toBe('198.51.100.7');
    expect(ips.resolve(request('::ffff:198.51.100.7'))).toBe('198.51.100.7');
    expect(ips.resolve(request('2001:db8::1', '203.0.113.9'))).toBe('2001:db8::1');
    expect(ips.resolve(request(undefined))).toBe('unknown');
  });

  it('ignores X-Forwarded-For from a peer that is not a trusted proxy', () => {
    const ips = new ClientIpResolver(['10.0.0.0/8']);
    expect(ips.resolve(request('198.51.100.7', '203.0.113.9'))).toBe('198.51.100.7');
    expect(ips.resolve(request('11.0.0.1', '203.0.113.9'))).toBe('11.0.0.1');
  });

  it('takes the nearest untrusted hop behind trusted proxies (a client cannot spoof past them)', () => {
    const ips = new ClientIpResolver(['10.0.0.0/8', '192.0.2.1']);
    expect(ips.resolve(request('10.1.2.3', '203.0.113.9'))).toBe('203.0.113.9');
    expect(ips.resolve(request('::ffff:10.1.2.3', '203.0.113.9'))).toBe('203.0.113.9');
    // The client wrote "1.2.3.4" itself; the proxies appended the real hops.
    expect(ips.resolve(request('10.0.0.1', '1.2.3.4, 203.0.113.9, 192.0.2.1, 10.9.9.9'))).toBe('203.0.113.9');
    expect(ips.resolve(request('192.0.2.1', '203.0.113.9'))).toBe('203.0.113.9');
    // Several headers are one list, in order.
    expect(ips.resolve(request('10.0.0.1', ['1.2.3.4', '203.0.113.10, 10.0.0.2']))).toBe('203.0.113.10');
    expect(ips.resolve(request('10.0.0.1', '::ffff:203.0.113.11'))).toBe('203.0.113.11');
  });

  it('falls back sensibly when the header is empty or all trusted', () => {
    const ips = new ClientIpResolver(['10.0.0.0/8']);
    expect(ips.resolve(request('10.0.0.1'))).toBe('10.0.0.1');
    expect(ips.resolve(request('10.0.0.1', ''))).toBe('10.0.0.1');
    expect(ips.resolve(request('10.0.0.1', ' , '))).toBe('10.0.0.1');
    expect(ips.resolve(request('10.0.0.1', 'garbage, 203.0.113.9, '))).toBe('203.0.113.9');
    expect(ips.resolve(request('10.0.0.1', '10.0.0.7, 10.0.0.8'))).toBe('10.0.0.7');
  });

  // The client wrote "1.2.3.4"; the proxies appended the peers they saw, with ports or brackets.
  it.each([
    ['1.2.3.4, 198.51.100.8:51234', '198.51.100.8'],
    ['1.2.3.4, [2001:db8::1]', '2001:db8::1'],
    ['1.2.3.4, [2001:db8::1]:443', '2001:db8::1'],
    ['1.2.3.4, [::FFFF:198.51.100.8]:443', '198.51.100.8'],
    ['1.2.3.4, 2001:DB8::2', '2001:db8::2'],
    ['1.2.3.4, 198.51.100.8:5, 10.0.0.9:443', '198.51.100.8'], // a trusted hop with a port
  ])('reads the hops of %j as the addresses they carry: %s', (header, client) => {
    expect(new ClientIpResolver(['10.0.0.0/8']).resolve(request('10.0.0.1', header))).toBe(client);
  });

  it('ends the walk at a hop it cannot read: the proxy that wrote it is the client', () => {
    const ips = new ClientIpResolver(['10.0.0.0/8']);
    for (const hop of [
      'unknown',
      '_hidden',
      'not-an-ip',
      '198.51.100.8:port',
      '198.51.100.8:123456',
      '[198.51.100.8]',
      '[2001:db8::1',
      '[2001:db8::1]:x',
      '2001:db8::1:443:1:1:1:1:1',
      '01.2.3.4',
    ]) {
      expect(ips.resolve(request('10.0.0.1', `1.2.3.4, ${hop}`)), hop).toBe('10.0.0.1');
      // Behind a second trusted proxy, that proxy wrote the unreadable hop.
      expect(ips.resolve(request('10.0.0.1', `1.2.3.4, ${hop}, 10.0.0.2`)), hop).toBe('10.0.0.2');
    }
    // An unreadable hop left of the client changes nothing.
    expect(ips.resolve(request('10.0.0.1', 'unknown, 203.0.113.9'))).toBe('203.0.113.9');
  });

  it('handles IPv6 proxies and clients', () => {
    const ips = new ClientIpResolver(['2001:db8::/32', '::1']);
    expect(ips.resolve(request('2001:db8::5', '2001:db9::42'))).toBe('2001:db9::42');
    expect(ips.resolve(request('::1', '203.0.113.9, 2001:db8::9'))).toBe('203.0.113.9');
    expect(ips.resolve(request('2001:dead::1', '203.0.113.9'))).toBe('2001:dead::1');
  });
});

describe('parseHop', () => {
  it.each([
    ['203.0.113.9', '203.0.113.9'],
    ['203.0.113.9:443', '203.0.113.9'],
    ['2001:db8::1', '2001:db8::1'],
    ['[2001:db8::1]', '2001:db8::1'],
    ['[2001:db8::1]:51234', '2001:db8::1'],
    ['::ffff:203.0.113.9', '203.0.113.9'],
    ['unknown', undefined],
    ['', undefined],
    ['203.0.113.9:', undefined],
    ['[203.0.113.9]:443', undefined],
    ['2001:db8::1]', undefined],
  ])('%j → %j', (hop, address) => {
    expect(parseHop(hop)).toBe(address);
  });
});

describe('per-IP upgrade limit keyed on the resolved address (real node)', () => {
  const startNode = nodePerTest();

  it('behind a trusted proxy, each forwarded client has its own budget', async () => {
    const node = await startNode({
      TRUSTED_PROXIES: '127.0.0.1',
      RATE_LIMIT_IP_CONNECTIONS: '2',
      RATE_LIMIT_IP_WINDOW_MS: '60000',
    });
    const a = { 'X-Forwarded-For': '203.0.113.1' };
    const b = { 'X-Forwarded-For': '203.0.113.2' };
    await node.raw(await node.token('u1'), a);
    await node.raw(await node.token('u2'), a);
    expect((await refusal(node.raw(await node.token('u3'), a))).status).toBe(429);
    // Another forwarded client, and the proxy itself, are unaffected.
    await node.raw(await node.token('u4'), b);
    await node.raw(await node.token('u5'), b);
    await node.raw(await node.token('u6'));
    expect((await refusal(node.raw(await node.token('u7'), b))).status).toBe(429);
  });

  it.each([
    ['a port-suffixed IPv4 hop', (i: number) => `198.51.100.8:${51230 + i}`],
    ['a bracketed IPv6 hop', () => '[2001:db8::1]'],
    ['a bracketed IPv6 hop with a port', (i: number) => `[2001:db8::1]:${440 + i}`],
    ['an unreadable hop', () => 'unknown'],
  ])('rotating the left-hand value behind %s does not escape the limit', async (_what, proxyHop) => {
    const node = await startNode({
      TRUSTED_PROXIES: '127.0.0.1',
      RATE_LIMIT_IP_CONNECTIONS: '2',
      RATE_LIMIT_IP_WINDOW_MS: '60000',
    });
    const forwarded = (i: number): Record<string, string> => ({ 'X-Forwarded-For': `203.0.113.${i}, ${proxyHop(i)}` });
    await node.raw(await node.token('u1'), forwarded(1));
    await node.raw(await node.token('u2'), forwarded(2));
    expect((await refusal(node.raw(await node.token('u3'), forwarded(3)))).status).toBe(429);
  });

  it('two IPv6 addresses of one /64 share a budget; another /64 has its own', async () => {
    const node = await startNode({
      TRUSTED_PROXIES: '127.0.0.1',
      RATE_LIMIT_IP_CONNECTIONS: '2',
      RATE_LIMIT_IP_WINDOW_MS: '60000',
    });
    await node.raw(await node.token('u1'), { 'X-Forwarded-For': '2001:db8:1:2::a' });
    await node.raw(await node.token('u2'), { 'X-Forwarded-For': '[2001:db8:1:2:ffff:ffff:ffff:b]:443' });
    const refused = await refusal(node.raw(await node.token('u3'), { 'X-Forwarded-For': '2001:db8:1:2:1234::c' }));
    expect(refused.status).toBe(429);
    await node.raw(await node.token('u4'), { 'X-Forwarded-For': '2001:db8:1:3::a' });
  });

  it('without TRUSTED_PROXIES, a forged X-Forwarded-For does not escape the limit', async () => {
    const node = await startNode({ RATE_LIMIT_IP_CONNECTIONS: '2', RATE_LIMIT_IP_WINDOW_MS: '60000' });
    await node.raw(await node.token('u1'), { 'X-Forwarded-For': '203.0.113.1' });
    await node.raw(await node.token('u2'), { 'X-Forwarded-For': '203.0.113.2' });
    expect((await refusal(node.raw(await node.token('u3'), { 'X-Forwarded-For': '203.0.113.3' }))).status).toBe(429);
  });
});

describe('ipLimitKey', () => {
  it.each([
    ['203.0.113.9', '203.0.113.9'],
    ['2001:db8:1:2::a', '2001:db8:1:2::/64'],
    ['2001:DB8:1:2:ffff:ffff:ffff:b', '2001:db8:1:2::/64'],
    ['2001:0db8:0001:0002:0:0:0:1', '2001:db8:1:2::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['1::2:3:4:5:6:7', '1:0:2:3::/64'],
    ['1:2::', '1:2:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['64:ff9b::203.0.113.9', '64:ff9b:0:0::/64'],
    ['unknown', 'unknown'],
  ])('%s → %s', (ip, key) => {
    expect(ipLimitKey(ip)).toBe(key);
  });
});
