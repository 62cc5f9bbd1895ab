/**
 * The rate-limit stores a cluster uses: per-IP and per-user limits kept in a real Redis hold
 * across two nodes' limiters; with Redis gone, the in-memory insurance limiter still limits.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { RateLimits, redisLimiterFactory } from '../src/rate-limits.js';
import { TestRedis } from '../../test-support/redis.js';
import { eventually } from '../../test-support/harness.js';

describe('rate limits on Redis', () => {
  let redis: TestRedis;
  const clients: Redis[] = [];

  beforeAll(async () => {
    redis = await TestRedis.start();
  });

  afterAll(async () => {
    for (const client of clients) client.disconnect();
    await redis.close();
  });

  /** A node's Redis client, connected. */
  async function connect(): Promise<Redis> {
    const client = new Redis(redis.url, { maxRetriesPerRequest: 1, enableOfflineQueue: false });
    clients.push(client);
    client.on('error', () => {}); // refused connections while the test stops Redis on purpose
    await new Promise((resolve) => client.once('ready', resolve));
    return client;
  }

  const limitsOf = (env: Record<string, string>, client: Redis, prefix: string): RateLimits =>
    new RateLimits(loadConfig({ NODE_ENV: 'test', ...env }).rateLimits, {
      shared: redisLimiterFactory(client, prefix),
    });

  it('sums one user over two nodes and one IP over two nodes', async () => {
    const env = { RATE_LIMIT_USER_MESSAGES: '6', RATE_LIMIT_IP_CONNECTIONS: '4' };
    const a = limitsOf(env, await connect(), 'test:two-nodes');
    const b = limitsOf(env, await connect(), 'test:two-nodes');

    for (let i = 0; i < 3; i++) {
      expect(await a.consumeMessage('conn-a', 'user-1')).toBeUndefined();
      expect(await b.consumeMessage('conn-b', 'user-1')).toBeUndefined();
    }
    const over = await b.consumeMessage('conn-b', 'user-1');
    expect(over).toMatchObject({ kind: 'user' });
    expect(over?.retryAfterMs).toBeGreaterThan(0);
    expect(over?.retryAfterMs).toBeLessThanOrEqual(60_000);
    expect(await a.consumeMessage('conn-a2', 'user-2')).toBeUndefined();

    for (let i = 0; i < 2; i++) {
      expect(await a.consumeUpgrade('10.1.1.1')).toBeUndefined();
      expect(await b.consumeUpgrade('10.1.1.1')).toBeUndefined();
    }
    expect(await a.consumeUpgrade('10.1.1.1')).toMatchObject({ kind: 'ip' });
    expect(await (await connect()).keys('test:two-nodes:*')).not.toHaveLength(0);
  });

  it('keeps limiting from memory while Redis is down, and uses Redis again when it is back', async () => {
    const client = await connect();
    const limits = limitsOf({ RATE_LIMIT_CHAT_MESSAGES: '3' }, client, 'test:insurance');
    await redis.stop();
    try {
      await eventually(() => client.status !== 'ready', 5000, 'the client to notice Redis is gone');
      for (let i = 0; i < 3; i++) expect(await limits.consumeMethod('chat.send', 'user-9', 'conn-9')).toBeUndefined();
      expect(await limits.consumeMethod('chat.send', 'user-9', 'conn-9')).toMatchObject({ kind: 'method' });
    } finally {
      await redis.resume();
    }
    // The same node's client reconnects by itself; its counts go to Redis again.
    if (client.status !== 'ready') await new Promise((resolve) => client.once('ready', resolve));
    expect(await limits.consumeMethod('chat.send', 'user-10', 'conn-10')).toBeUndefined();
    expect(await client.keys('test:insurance:method*user-10')).toHaveLength(1);
  });
});
