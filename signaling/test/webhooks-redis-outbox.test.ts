/**
 * The Redis outbox with the Redis room bus, on a single Redis and on a 3-master Redis Cluster: the
 * publish and drop scripts append to each room's outbox stream in the room's slot, two outboxes
 * (two nodes' worth of consumers) share the partitions, and the reference receiver gets every
 * room's webhooks once, in order — `room.started` first, `room.finished` last, chat never.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OUTBOX_GROUP, RedisOutbox } from '../../backend-bridge/src/webhooks/redis-outbox.js';
import { WEBHOOK_TYPE_OF_EVENT, webhookId } from '../../backend-bridge/src/webhooks/webhook-message.js';
import { WebhookSender } from '../../backend-bridge/src/webhooks/webhook-sender.js';
import { ReferenceReceiver } from '../../backend-bridge/src/reference-receiver/server.js';
import { mountWebhooks, type WebhookInbox } from '../../backend-bridge/src/reference-receiver/webhooks.js';
import { openRedisConnections, type RedisConnections } from '../src/bus/redis-connections.js';
import { RedisRoomBus } from '../src/bus/redis-room-bus.js';
import { roomKeys } from '../src/bus/redis-scripts.js';
import { eventually } from '../../test-support/async.js';
import { useTestRedis, useTestRedisCluster, type RedisUnderTest } from '../../test-support/redis.js';
import { expectRoomWebhooks, receivedFor, webhookSecret, type ExpectedWebhook } from '../../test-support/webhooks.js';

const ALERTS = 30;

function outboxSuite(name: string, redis: RedisUnderTest): void {
  describe(name, () => {
    const prefix = `wh-${randomBytes(4).toString('hex')}`;
    const secret = webhookSecret();
    const receiver = new ReferenceReceiver();
    let inbox: WebhookInbox;
    const connections: RedisConnections[] = [];
    const outboxes: RedisOutbox[] = [];
    let bus: RedisRoomBus;

    beforeAll(async () => {
      inbox = mountWebhooks(receiver, secret);
      await receiver.listen(0, '127.0.0.1');
      for (let i = 0; i < 2; i++) {
        const opened = openRedisConnections(redis.target(), `webhooks-test-${i}`);
        if (opened.subscriber !== opened.commands) opened.subscriber.disconnect();
        connections.push(opened);
        outboxes.push(
          new RedisOutbox({
            client: opened.commands,
            keyPrefix: prefix,
            streamKey: (roomId) => roomKeys(prefix, roomId).webhooks,
            consumer: `outbox-${i}`,
            partitions: 4,
            leaseMs: 2000,
            attemptTimeoutMs: 500,
            pollIntervalMs: 50,
            sender: new WebhookSender({ backendUrl: receiver.url, secret, timeoutMs: 500 }),
            retry: { maxAttempts: 1000, baseDelayMs: 20, maxDelayMs: 200 },
          }),
        );
      }
      bus = new RedisRoomBus({
        target: redis.target(),
        keyPrefix: prefix,
        retention: { maxEvents: 1000, maxAgeMs: 60_000 },
        outbox: {
          events: new Set(WEBHOOK_TYPE_OF_EVENT.keys()),
          group: OUTBOX_GROUP,
          // The publishing node lists the room with its own outbox.
          appended: (roomId) => outboxes[0]?.appended(roomId),
        },
      });
      await bus.connected();
      for (const outbox of outboxes) outbox.start();
    });
    afterAll(async () => {
      for (const outbox of outboxes) await outbox.close(Date.now() + 2000);
      for (const opened of connections) opened.disconnect();
      await bus?.close();
      await receiver.stop();
    });

    it('delivers each room in order, once, from start to finish', async () => {
      const rooms = ['orders-a', 'orders-b', 'orders-c'];
      const expected = new Map<string, ExpectedWebhook[]>();
      for (const roomId of rooms) {
        const joined = await bus.publishDurable(roomId, 'participant.joined', {
          participant: { participantId: 'p1', userId: 'u1', name: 'u1', role: 'presenter', joinedAt: 1 },
        });
        const list: ExpectedWebhook[] = [{ type: 'room.started' }, { type: 'participant.joined', seq: joined.seq }];
        for (let i = 0; i < ALERTS; i++) {
          const alert = await bus.publishDurable(roomId, 'alert.published', {
            alertId: `a${i}`,
            symbol: 'ES',
            action: 'buy',
          });
          list.push({ type: 'alert.published', seq: alert.seq });
          await bus.publishDurable(roomId, 'chat.message', { messageId: `m${i}`, text: 'not a webhook' });
        }
        list.push({ type: 'room.finished' });
        expect(await bus.dropRoom(roomId)).toBe(true);
        expected.set(roomId, list);
      }
      const total = [...expected.values()].reduce((sum, list) => sum + list.length, 0);
      await eventually(() => inbox.received.length >= total, 30_000, `${total} webhooks`);
      for (const roomId of rooms) expectRoomWebhooks(inbox, roomId, expected.get(roomId) ?? []);
      expect(inbox.received).toHaveLength(total);
      expect(inbox.duplicates).toBe(0);
      expect(inbox.rejected).toBe(0);
      // Every partition has one holder; every room's stream is gone once delivered.
      expect(outboxes.flatMap((o) => o.heldPartitions()).sort()).toEqual([0, 1, 2, 3]);
      for (const roomId of rooms) {
        await eventually(async () => (await redis.client().exists(roomKeys(prefix, roomId).webhooks)) === 0);
      }
    }, 60_000);

    it("enqueue appends an entry of its own to the room stream, delivered like the bus's", async () => {
      const frame = JSON.stringify({
        event: 'alert.published',
        data: { alertId: 'x', symbol: 'YM', action: 'sell' },
        seq: 7,
      });
      outboxes[1]?.enqueue({
        roomId: 'orders-x',
        event: 'alert.published',
        epoch: 'ex',
        seq: 7,
        timestampMs: Date.now(),
        frame,
      });
      await eventually(() => inbox.received.some((w) => w.data.roomId === 'orders-x'), 20_000, 'the enqueued webhook');
      expectRoomWebhooks(inbox, 'orders-x', [{ type: 'alert.published', seq: 7 }]);
      expect(inbox.received.find((w) => w.data.roomId === 'orders-x')?.data).toMatchObject({
        symbol: 'YM',
        epoch: 'ex',
      });
    }, 30_000);

    it("reports each room's backlog from its stream (in the room's slot) until it is delivered", async () => {
      // An outbox of its own keys, not started yet: what it is given waits.
      const idlePrefix = `${prefix}-idle`;
      const client = connections[0]?.commands;
      if (!client) throw new Error('no Redis connection');
      const idle = new RedisOutbox({
        client,
        keyPrefix: idlePrefix,
        streamKey: (roomId) => roomKeys(idlePrefix, roomId).webhooks,
        consumer: 'outbox-idle',
        partitions: 2,
        leaseMs: 2000,
        attemptTimeoutMs: 500,
        pollIntervalMs: 50,
        sender: new WebhookSender({ backendUrl: receiver.url, secret, timeoutMs: 500 }),
        retry: { maxAttempts: 1000, baseDelayMs: 20, maxDelayMs: 200 },
      });
      const rooms = ['backlog-a', 'backlog-b', 'backlog-c'];
      const enqueuedAt = Date.now();
      for (const [r, roomId] of rooms.entries()) {
        for (let seq = 1; seq <= r + 1; seq++) {
          idle.enqueue({
            roomId,
            event: 'alert.published',
            epoch: 'eb',
            seq,
            timestampMs: enqueuedAt + seq,
            frame: JSON.stringify({ event: 'alert.published', data: { alertId: `b${seq}` }, seq }),
          });
        }
      }
      const asked = [...rooms, 'backlog-none'];
      await eventually(
        async () => [...(await idle.roomBacklogs(asked)).values()].map((b) => b.pending).join() === '1,2,3',
        10_000,
        'the backlogs',
      );
      const backlogs = await idle.roomBacklogs(asked);
      expect([...backlogs.keys()]).toEqual(rooms);
      for (const roomId of rooms) {
        expect(backlogs.get(roomId)).toEqual({
          pending: rooms.indexOf(roomId) + 1,
          oldestAt: enqueuedAt + 1,
          oldestWebhookId: webhookId({ roomId, epoch: 'eb', seq: 1, event: 'alert.published' }),
          oldestEvent: 'alert.published',
        });
      }

      idle.start();
      try {
        await eventually(async () => (await idle.roomBacklogs(rooms)).size === 0, 20_000, 'the backlogs delivered');
        for (const roomId of rooms) expect(receivedFor(inbox, roomId)).toHaveLength(rooms.indexOf(roomId) + 1);
      } finally {
        await idle.close(Date.now() + 2000);
      }
    }, 30_000);
  });
}

outboxSuite('Redis outbox, single Redis', useTestRedis());
outboxSuite('Redis outbox, Redis Cluster', useTestRedisCluster());
