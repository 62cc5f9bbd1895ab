/**
 * A node's cluster wiring, in process: `GET /admin/nodes` alone and with peers; the per-IP limit
 * shared through Redis; Redis lost and back (`/health` and metrics say degraded, liveness stays
 * 200, the node registers again); a node that cannot reach Redis at start-up starts degraded; a
 * drain shows at once on the peers, and its clean end deregisters the node instead of leaving it
 * to be reaped.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, nodePerTest, startTestNode, type TestNode } from '../../test-support/harness.js';
import { eventually } from '../../test-support/async.js';
import { freePort } from '../../test-support/child-node.js';
import { startRedisCluster, startRedisSentinel, TestRedis } from '../../test-support/redis.js';
import { GENEROUS_LIMITS, http, parsePrometheus, sampleValue } from '../../test-support/room-helpers.js';
import { refusal } from '../../test-support/sockets.js';

const ADMIN = { Authorization: `Bearer ${ADMIN_TOKEN}` };
const NODE_TTL_MS = 1000;

interface Listed {
  nodeId: string;
  state: string;
  connections: number;
  alive: boolean;
  heartbeatAt: number;
}

async function adminNodes(t: TestNode): Promise<{ status: number; nodes: Listed[]; headers: Headers }> {
  const answer = await http(t, '/admin/nodes', { headers: ADMIN });
  return { status: answer.status, headers: answer.headers, nodes: (answer.json as { nodes?: Listed[] }).nodes ?? [] };
}

async function metric(t: TestNode, name: string): Promise<number | undefined> {
  return sampleValue(parsePrometheus((await http(t, '/metrics')).text).samples, name);
}

describe('a node alone', () => {
  const start = nodePerTest(GENEROUS_LIMITS);

  it('lists just itself in GET /admin/nodes, behind the admin token', async () => {
    const t = await start({ NODE_ID: 'lonely-node' });
    await t.raw(await t.token('someone'));
    const before = Date.now();
    const listed = await adminNodes(t);
    expect(listed.status).toBe(200);
    expect(listed.nodes).toEqual([
      expect.objectContaining({ nodeId: 'lonely-node', state: 'running', connections: 1, rooms: 0, alive: true }),
    ]);
    expect(listed.nodes[0]?.heartbeatAt).toBeGreaterThanOrEqual(before);
    expect((await http(t, '/admin/nodes')).status).toBe(401);
    const post = await http(t, '/admin/nodes', { method: 'POST', headers: ADMIN });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET');
    expect(await metric(t, 'trading_room_cluster_nodes')).toBe(1);
    expect(await metric(t, 'trading_room_bus_degraded')).toBe(0);
  });
});

describe('nodes on one Redis', () => {
  let redis: TestRedis;
  const nodes: TestNode[] = [];

  beforeAll(async () => {
    redis = await TestRedis.start();
  });

  afterAll(async () => {
    for (const t of nodes) await t.close();
    await redis.close();
  });

  async function startNode(nodeId: string, env: Record<string, string> = {}): Promise<TestNode> {
    const t = await startTestNode({
      ...GENEROUS_LIMITS,
      REDIS_URL: redis.url,
      NODE_ID: nodeId,
      NODE_TTL_MS: String(NODE_TTL_MS),
      REDIS_KEY_PREFIX: `test-${nodeId}-group`,
      ...env,
    });
    nodes.push(t);
    return t;
  }

  it('share the per-IP upgrade limit', async () => {
    const env = { RATE_LIMIT_IP_CONNECTIONS: '3', REDIS_KEY_PREFIX: 'test-limits' };
    const a = await startNode('limits-a', env);
    const b = await startNode('limits-b', env);
    await a.raw(await a.token('u1'));
    await a.raw(await a.token('u2'));
    await b.raw(await b.token('u3'));
    const refused = await refusal(b.raw(await b.token('u4')));
    expect(refused.status).toBe(429);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
  });

  it('say degraded while Redis is gone, keep liveness, and come back when it returns', async () => {
    const env = { REDIS_KEY_PREFIX: 'test-outage' };
    const a = await startNode('outage-a', env);
    const b = await startNode('outage-b', env);
    await eventually(async () => (await adminNodes(a)).nodes.length === 2, 5000, 'both nodes listed');
    expect(await http(a, '/health')).toMatchObject({
      json: { status: 'ok', bus: { kind: 'redis', state: 'ok' }, cluster: { redis: 'single', registered: true } },
    });

    await redis.stop();
    await eventually(
      async () => ((await http(a, '/health')).json as { status: string }).status === 'degraded',
      5000,
      '/health to say degraded',
    );
    expect((await http(a, '/health')).json).toMatchObject({ bus: { kind: 'redis', state: 'degraded' } });
    expect((await http(a, '/health/live')).status).toBe(200);
    expect((await http(a, '/health/ready')).status).toBe(200);
    expect(await metric(a, 'trading_room_bus_degraded')).toBe(1);
    const unknown = await adminNodes(a);
    expect(unknown.status).toBe(503);
    expect(unknown.headers.get('retry-after')).toBe('1');

    await redis.resume(); // empty: every registration is gone
    await eventually(
      async () => ((await http(a, '/health')).json as { status: string }).status === 'ok',
      10_000,
      '/health to say ok again',
    );
    expect(await metric(a, 'trading_room_bus_degraded')).toBe(0);
    await eventually(
      async () => (await adminNodes(b)).nodes.filter((n) => n.alive).length === 2,
      10_000,
      'both nodes registered again',
    );
  });

  it('start degraded, and soon, when Redis cannot be reached', async () => {
    const nowhere = `redis://127.0.0.1:${await freePort()}`;
    const startedAt = Date.now();
    const t = await startNode('unreachable', { REDIS_URL: nowhere });
    expect(Date.now() - startedAt).toBeLessThan(2 * NODE_TTL_MS + 3000);
    expect((await http(t, '/health')).json).toMatchObject({
      status: 'degraded',
      bus: { kind: 'redis', state: 'degraded' },
      cluster: { registered: false },
    });
    expect((await http(t, '/health/live')).status).toBe(200);
    const closing = Date.now();
    await t.close();
    expect(Date.now() - closing).toBeLessThan(5000);
  });

  it('show a drain to their peers at once, and deregister at its clean end', async () => {
    // Heartbeats every 3 s: a drain seen within 1.5 s was announced by a heartbeat of its own.
    const env = { REDIS_KEY_PREFIX: 'test-leave', DRAIN_TIMEOUT_MS: '20000', NODE_TTL_MS: '9000' };
    const a = await startNode('leave-a', env);
    const b = await startNode('leave-b', env);
    await eventually(async () => (await adminNodes(a)).nodes.length === 2, 5000, 'both nodes listed');
    const straggler = await b.raw(await b.token('straggler'));

    const drained = b.node.drain();
    await eventually(
      async () => (await adminNodes(a)).nodes.find((n) => n.nodeId === 'leave-b')?.state === 'draining',
      1500,
      'leave-a to see leave-b draining before its next heartbeat',
    );
    straggler.ws.close();
    await drained;
    const listed = await adminNodes(a);
    expect(listed.nodes.map((n) => n.nodeId)).toEqual(['leave-a']);
  });
});

describe('nodes on a Redis Cluster and through a Sentinel', () => {
  const start = nodePerTest(GENEROUS_LIMITS);

  it('share the connection cap and the upgrade limit on a 3-master Redis Cluster', async () => {
    const redisCluster = await startRedisCluster();
    try {
      const env = {
        REDIS_CLUSTER_NODES: redisCluster.nodes.map((n) => `${n.host}:${n.port}`).join(','),
        NODE_TTL_MS: String(NODE_TTL_MS),
        MAX_CONNECTIONS_PER_USER: '1',
        RATE_LIMIT_IP_CONNECTIONS: '3',
      };
      const a = await start({ ...env, NODE_ID: 'rc-a' });
      const b = await start({ ...env, NODE_ID: 'rc-b' });
      expect((await http(a, '/health')).json).toMatchObject({
        status: 'ok',
        bus: { kind: 'redis', state: 'ok' },
        cluster: { redis: 'cluster', registered: true },
      });
      await eventually(async () => (await adminNodes(b)).nodes.length === 2, 5000, 'both nodes listed');

      await a.raw(await a.token('one-socket-user'));
      expect((await refusal(b.raw(await b.token('one-socket-user')))).status).toBe(429);
      await b.raw(await b.token('other-user')); // the third upgrade from this IP, the second on b
      const refused = await refusal(a.raw(await a.token('third-user')));
      expect(refused.status).toBe(429);
      expect(refused.body).toContain('too many connection attempts');
    } finally {
      await redisCluster.close();
    }
  });

  it('finds the master through a Sentinel', async () => {
    const redis = await TestRedis.start();
    const sentinel = await startRedisSentinel(redis, 'tr-master');
    try {
      const t = await start({
        REDIS_SENTINELS: `${sentinel.host}:${sentinel.port}`,
        REDIS_SENTINEL_NAME: 'tr-master',
        NODE_ID: 'via-sentinel',
        NODE_TTL_MS: String(NODE_TTL_MS),
      });
      expect((await http(t, '/health')).json).toMatchObject({
        status: 'ok',
        bus: { kind: 'redis', state: 'ok' },
        cluster: { redis: 'sentinel', registered: true },
      });
      expect((await adminNodes(t)).nodes.map((n) => n.nodeId)).toEqual(['via-sentinel']);
    } finally {
      await sentinel.close();
      await redis.close();
    }
  });
});
