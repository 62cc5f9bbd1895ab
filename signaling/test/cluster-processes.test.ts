/**
 * Three node processes on one Redis: each lists all three alive in `/admin/nodes` and runs its
 * bus on Redis; the per-user connection cap counts a user's sockets on every node and lets go of
 * a crashed node's; a node killed with -9 is listed dead by the others within `NODE_TTL_MS`, and
 * an SDK client that was on it reconnects through the test load balancer to a live node.
 */
import { describe, expect, it } from 'vitest';
import { eventually } from '../../test-support/async.js';
import { useCluster } from '../../test-support/cluster.js';
import { UpgradeRefused } from '../../test-support/harness.js';
import { GENEROUS_LIMITS } from '../../test-support/room-helpers.js';
import { refusal } from '../../test-support/sockets.js';

const NODE_TTL_MS = 2000;
const NODE_IDS = ['node-1', 'node-2', 'node-3'];

describe('three node processes on one Redis', { timeout: 60_000 }, () => {
  const cluster = useCluster({
    nodes: 3,
    nodeTtlMs: NODE_TTL_MS,
    env: { ...GENEROUS_LIMITS, MAX_CONNECTIONS_PER_USER: '2' },
  });

  /** Opens a socket for `token` on node `index`: true when admitted, false when refused by the cap. */
  async function admitted(index: number, token: string): Promise<boolean> {
    try {
      await cluster().raw(index, token);
      return true;
    } catch (error) {
      if (error instanceof UpgradeRefused && error.status === 429) return false;
      throw error;
    }
  }

  it('every node lists all three alive, runs its bus on Redis and counts three nodes', async () => {
    for (const [index, node] of cluster().nodes.entries()) {
      const listed = await cluster().adminNodes(index);
      expect(listed.map((n) => n.nodeId).sort()).toEqual(NODE_IDS);
      for (const n of listed) {
        expect(n).toMatchObject({ state: 'running', alive: true, connections: 0 });
        expect(Math.abs(Date.now() - n.heartbeatAt)).toBeLessThan(NODE_TTL_MS);
      }
      const health = await node.health();
      expect(health).toMatchObject({
        status: 'ok',
        nodeId: NODE_IDS[index],
        bus: { kind: 'redis', state: 'ok' },
        cluster: { redis: 'single', registered: true },
      });
      await eventually(async () => (await node.metric('trading_room_cluster_nodes')) === 3, 5000, 'the nodes metric');
      expect(await node.metric('trading_room_bus_degraded')).toBe(0);
    }
  });

  it('caps a user’s connections over every node, and frees a place when one closes', async () => {
    const token = await cluster().token('capped-user');
    const first = await cluster().raw(0, token);
    await cluster().raw(1, token);
    const refused = await refusal(cluster().raw(2, token));
    expect(refused.status).toBe(429);
    expect(refused.body).toContain('at most 2 connections per user');

    first.ws.close();
    await first.closed;
    await eventually(() => admitted(2, token), 5000, 'a place for the user on node-3');
    // Each heartbeat carries its node's connection count.
    await eventually(
      async () => (await cluster().adminNodes(0)).find((n) => n.nodeId === 'node-3')?.connections === 1,
      NODE_TTL_MS,
      'node-3 to report its connection',
    );
  });

  it('lists a node killed with -9 as dead within NODE_TTL_MS, and its connections stop counting', async () => {
    const token = await cluster().token('crash-user');
    await cluster().raw(2, token);
    await cluster().raw(2, token);
    expect((await refusal(cluster().raw(0, token))).status).toBe(429);

    // An SDK client that came in through the load balancer's entry for node-3.
    const { client } = await cluster().joined('balanced-user', { node: 2 });
    const states: string[] = [];
    client.on('state', (state) => states.push(state));

    const killedAt = Date.now();
    await cluster().kill(2);
    for (const survivor of [0, 1]) {
      await eventually(
        async () => (await cluster().adminNodes(survivor)).find((n) => n.nodeId === 'node-3')?.alive === false,
        NODE_TTL_MS + 2000,
        `node-${survivor + 1} to list node-3 dead`,
      );
    }
    expect(Date.now() - killedAt).toBeLessThanOrEqual(NODE_TTL_MS + 500);
    const listed = await cluster().adminNodes(0);
    expect(listed.filter((n) => n.alive).map((n) => n.nodeId)).toEqual(['node-1', 'node-2']);

    // The balancer sent its reconnect to a live node.
    await eventually(() => states.includes('reconnecting') && client.state === 'joined', 10_000, 'the reconnect');

    // Once node-1 sees node-3 dead, the user's two sockets there no longer hold the cap.
    await eventually(() => admitted(0, token), NODE_TTL_MS + 2000, 'a place for the user once node-3 is dead');
  });
});
