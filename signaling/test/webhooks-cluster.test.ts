/**
 * Webhooks of a cluster: three node processes on a real Redis, the outbox in Redis streams read
 * through a consumer group, rooms spread over leased partitions. The node delivering a room's
 * webhooks is killed (`kill -9`) while it holds entries it read but the backend refused; a
 * survivor takes its partition once the lease ran out, claims the pending entries, and every
 * event reaches the reference receiver — exactly once after de-duplication, in `seq` order.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { partitionOf } from '../../backend-bridge/src/webhooks/redis-outbox.js';
import { webhookInbox, type WebhookInbox } from '../../backend-bridge/src/reference-receiver/webhooks.js';
import { eventually } from '../../test-support/async.js';
import { TestBackend } from '../../test-support/backend.js';
import { TestCluster } from '../../test-support/cluster.js';
import { RawSocket } from '../../test-support/harness.js';
import { GENEROUS_LIMITS, durable } from '../../test-support/room-helpers.js';
import { expectRoomWebhooks, expectedWebhooks, webhookEnv, webhookSecret } from '../../test-support/webhooks.js';

const PARTITIONS = 4;
const ROOMS = ['cw-room-1', 'cw-room-2', 'cw-room-3'];

describe('webhooks, cluster', () => {
  let backend: TestBackend;
  let inbox: WebhookInbox;
  let cluster: TestCluster;
  let redis: Redis;

  beforeAll(async () => {
    const secret = webhookSecret();
    backend = await TestBackend.start({ webhookSecret: secret });
    inbox = webhookInbox(backend.receiver) as WebhookInbox;
    cluster = await TestCluster.start({
      nodes: 3,
      env: {
        ...GENEROUS_LIMITS,
        ...webhookEnv(backend.url, secret),
        BACKEND_WEBHOOK_PARTITIONS: String(PARTITIONS),
        BACKEND_WEBHOOK_LEASE_MS: '3000',
      },
    });
    redis = new Redis(cluster.redis.port, '127.0.0.1');
  }, 90_000);
  afterAll(async () => {
    redis?.disconnect();
    await cluster?.close();
    await backend?.close();
  });

  /** The node (by index) holding each partition's lease. */
  async function holders(): Promise<(number | undefined)[]> {
    return Promise.all(
      Array.from({ length: PARTITIONS }, async (_, p) => {
        const holder = await redis.get(`${cluster.keyPrefix}:{webhooks:${p}}:lease`);
        const index = holder ? Number(/^node-(\d+):/.exec(holder)?.[1]) - 1 : NaN;
        return Number.isInteger(index) ? index : undefined;
      }),
    );
  }

  async function joinOn(node: number, userId: string, roomId: string, role?: 'presenter'): Promise<RawSocket> {
    const raw = await cluster.raw(node, await cluster.token(userId, { roomId, ...(role ? { role } : {}) }));
    expect(await raw.request('room.join', {})).toMatchObject({ ok: true });
    return raw;
  }

  it('a survivor claims what the killed delivering node left pending: nothing lost, nothing out of order', async () => {
    await eventually(async () => (await holders()).every((h) => h !== undefined), 15_000, 'every partition leased');
    const leased = await holders();
    const victim = leased[partitionOf(ROOMS[0] as string, PARTITIONS)] as number;
    const others = [0, 1, 2].filter((i) => i !== victim);

    // The backend refuses every webhook: what the nodes read stays pending with them.
    backend.misbehave({ kind: 'status', status: 503 });
    const watchers = new Map<string, RawSocket>();
    for (const [r, roomId] of ROOMS.entries()) {
      const node = others[r % others.length] as number;
      watchers.set(roomId, await joinOn(node, `watcher-${roomId}`, roomId));
      const presenter = await joinOn(
        others[(r + 1) % others.length] as number,
        `presenter-${roomId}`,
        roomId,
        'presenter',
      );
      for (let i = 0; i < 3; i++) {
        const trader = await joinOn(node, `trader-${roomId}-${i}`, roomId);
        expect(await trader.request('room.leave', {})).toMatchObject({ ok: true });
      }
      for (let i = 0; i < 40; i++) {
        expect(await presenter.request('alert.publish', { symbol: 'TSLA', action: 'watch' })).toMatchObject({
          ok: true,
        });
      }
    }
    for (const roomId of ROOMS) {
      await eventually(() => durable(watchers.get(roomId) as RawSocket, 'alert.published').length === 40);
    }

    // The victim read room 1's entries and keeps retrying the first: they are pending with it.
    const stream = cluster.roomKey(ROOMS[0] as string, 'webhooks');
    await eventually(
      async () => {
        const [count, , , consumers] = (await redis.xpending(stream, 'webhooks')) as [
          number,
          string,
          string,
          [string, string][],
        ];
        return count > 0 && (consumers ?? []).some(([name]) => name.startsWith(`node-${victim + 1}:`));
      },
      15_000,
      'entries pending with the delivering node',
    );
    await cluster.kill(victim);
    backend.misbehave({ kind: 'none' });

    const expected = new Map<string, ReturnType<typeof expectedWebhooks>>();
    for (const roomId of ROOMS) expected.set(roomId, expectedWebhooks(await cluster.roomLog(roomId)));
    const total = [...expected.values()].reduce((sum, list) => sum + list.length, 0);
    await eventually(() => inbox.received.length >= total, 60_000, `${total} webhooks after the kill`);
    for (const roomId of ROOMS) expectRoomWebhooks(inbox, roomId, expected.get(roomId) ?? []);
    expect(inbox.received).toHaveLength(total);
    expect(inbox.rejected).toBe(0);
    // A survivor took the victim's partition (it had not held it before the kill).
    const taken = (node: number): boolean =>
      cluster
        .node(node)
        .stdout.split('\n')
        .some(
          (line) =>
            line.includes('"msg":"webhook partition taken"') &&
            line.includes(`"partition":${partitionOf(ROOMS[0] as string, PARTITIONS)},`),
        );
    expect(others.some(taken)).toBe(true);
    // The dead node's partitions have a living holder now, and nothing is left pending.
    await eventually(async () => (await holders()).every((h) => h !== undefined && h !== victim), 15_000);
    for (const roomId of ROOMS) {
      await eventually(
        async () => (await redis.exists(cluster.roomKey(roomId, 'webhooks'))) === 0,
        10_000,
        `${roomId} outbox empty`,
      );
    }

    // Steady state on the survivors: each event is delivered by one node, once.
    const duplicatesBefore = inbox.duplicates;
    const presenter = await joinOn(others[0] as number, 'presenter-late', ROOMS[1] as string, 'presenter');
    for (let i = 0; i < 20; i++) await presenter.request('alert.publish', { symbol: 'NVDA', action: 'buy' });
    const log = await cluster.roomLog(ROOMS[1] as string);
    const late = expectedWebhooks(log);
    await eventually(() => inbox.received.filter((w) => w.data.roomId === ROOMS[1]).length === late.length, 20_000);
    expectRoomWebhooks(inbox, ROOMS[1] as string, late);
    expect(inbox.duplicates).toBe(duplicatesBefore);
  }, 180_000);
});
