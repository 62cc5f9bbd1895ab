/**
 * The Redis room bus against real Redis: the conformance suite on a single server and on a
 * 3-master Redis Cluster, then what only Redis does to a bus — a room's keys and subscriptions,
 * a lost pub/sub message, a subscriber connection killed, a history rolled back, Redis
 * restarted empty, Redis frozen.
 */
import { randomUUID } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createRoomBus, parseHostPort } from '../src/bus/create-room-bus.js';
import { LocalRoomBus } from '../src/bus/local-room-bus.js';
import { RedisRoomBus, type RedisRoomBusOptions } from '../src/bus/redis-room-bus.js';
import type { RedisClient, RedisTarget } from '../src/bus/redis-connections.js';
import { PUBLISH_SCRIPT, publishCall, roomKeys } from '../src/bus/redis-scripts.js';
import { BusUnavailableError, encodeFrame, framePrefix, type BusEvent, type RoomBus } from '../src/bus/room-bus.js';
import { eventually, sleep } from '../../test-support/async.js';
import {
  startRedisCluster,
  startRedisSentinel,
  TestRedis,
  type TestRedisCluster,
  type TestRedisSentinel,
} from '../../test-support/redis.js';
import { describeRoomBus, type RoomBusFactory } from './room-bus-conformance.js';

const RETENTION = { maxEvents: 1000, maxAgeMs: 60_000 };
/** Rules out the periodic position check: what a case shows, gap detection or reconnect did. */
const NO_POSITION_CHECK = { positionCheckIntervalMs: 3_600_000, keyTtlMs: 7_200_000 };

/** Buses that share one key prefix, as the nodes of one cluster do. */
class Nodes {
  readonly prefix = `test-${randomUUID()}`;
  readonly #target: () => RedisTarget;
  readonly #buses: RedisRoomBus[] = [];

  constructor(target: () => RedisTarget) {
    this.#target = target;
  }

  async node(options: Partial<RedisRoomBusOptions> = {}): Promise<RedisRoomBus> {
    const bus = new RedisRoomBus({ target: this.#target(), keyPrefix: this.prefix, retention: RETENTION, ...options });
    this.#buses.push(bus);
    await bus.connected();
    return bus;
  }

  async close(): Promise<void> {
    await Promise.all(this.#buses.splice(0).map((b) => b.close()));
  }
}

function worldOn(target: () => RedisTarget): RoomBusFactory {
  return async ({ onListenerError, ...retention }) => {
    const nodes = new Nodes(target);
    return { node: () => nodes.node({ retention, onListenerError }), close: () => nodes.close() };
  };
}

/** Subscribes and keeps what arrives. */
async function record(bus: RoomBus, roomId: string): Promise<BusEvent[]> {
  const events: BusEvent[] = [];
  await bus.subscribe(roomId, (event) => events.push(event));
  return events;
}

async function receivedCount(events: BusEvent[], n: number): Promise<void> {
  await eventually(() => events.length >= n, 15_000, `${n} events`);
  expect(events).toHaveLength(n);
}

/** A new room with three durable events published on `a`, all received on `b`. */
async function roomWithThreeEvents(a: RoomBus, b: RoomBus): Promise<{ roomId: string; onB: BusEvent[] }> {
  const roomId = `room-${randomUUID()}`;
  const onB = await record(b, roomId);
  for (let i = 1; i <= 3; i++) await a.publishDurable(roomId, 'chat.message', { i });
  await receivedCount(onB, 3);
  return { roomId, onB };
}

/** Cases for any Redis deployment; `raw()` is a plain client of it, `subscriptions` counts a channel's. */
function describeRedisFaults(
  name: string,
  target: () => RedisTarget,
  raw: () => RedisClient,
  subscriptions: (channel: string) => Promise<number>,
): void {
  describe(`RedisRoomBus faults: ${name}`, () => {
    let nodes: Nodes;
    afterEach(async () => {
      await nodes.close();
    });

    /** Two nodes whose only repairs are gap detection and reconnects. */
    async function twoNodes(): Promise<[RedisRoomBus, RedisRoomBus]> {
      nodes = new Nodes(target);
      return [await nodes.node(NO_POSITION_CHECK), await nodes.node(NO_POSITION_CHECK)];
    }

    /**
     * Publishes through the bus's own script; with `elsewhere` its pub/sub message goes to a
     * channel nobody listens to (of the room's slot: a Cluster runs the script there).
     */
    function lostPublish(roomId: string, i: number, options: { elsewhere?: boolean; killSubscribers?: boolean }) {
      const keys = roomKeys(nodes.prefix, roomId);
      const call = publishCall({
        keys: { ...keys, channel: options.elsewhere ? `${keys.channel}:nobody` : keys.channel },
        candidateEpoch: randomUUID(),
        framePrefix: framePrefix('chat.message', { i }),
        event: 'chat.message',
        maxEvents: RETENTION.maxEvents,
        keyTtlMs: 60_000,
        sharded: target().mode === 'cluster',
      });
      if (!options.killSubscribers) return PUBLISH_SCRIPT.run(raw(), call.keys, call.args);
      // In one transaction: every subscriber connection is gone before the message is sent.
      return raw()
        .multi()
        .call('CLIENT', 'KILL', 'TYPE', 'pubsub')
        .eval(PUBLISH_SCRIPT.source, call.keys.length, ...call.keys, ...call.args)
        .exec();
    }

    it('subscribes in Redis only to rooms that have listeners, once per node', async () => {
      nodes = new Nodes(target);
      const bus = await nodes.node();
      const roomId = `room-${randomUUID()}`;
      const { channel } = roomKeys(nodes.prefix, roomId);
      expect(await subscriptions(channel)).toBe(0);
      const first = await bus.subscribe(roomId, () => {});
      const second = await bus.subscribe(roomId, () => {});
      expect(await subscriptions(channel)).toBe(1);
      await first();
      expect(await subscriptions(channel)).toBe(1);
      await second();
      expect(await subscriptions(channel)).toBe(0);
    });

    it('repairs a gap from the stream when a pub/sub message was lost', async () => {
      const [a, b] = await twoNodes();
      const roomId = `room-${randomUUID()}`;
      const onB = await record(b, roomId);
      await a.publishDurable(roomId, 'chat.message', { i: 1 });
      await lostPublish(roomId, 2, { elsewhere: true });
      await a.publishDurable(roomId, 'chat.message', { i: 3 });

      await receivedCount(onB, 3);
      expect(onB.map((e) => e.seq)).toEqual([1, 2, 3]);
      expect(onB).toEqual(await a.readAfter(roomId, 0));
    });

    it('delivers a lost last message at its next position check', async () => {
      nodes = new Nodes(target);
      const checking = { positionCheckIntervalMs: 200, keyTtlMs: 60_000 };
      const [a, b] = [await nodes.node(checking), await nodes.node(checking)];
      const roomId = `room-${randomUUID()}`;
      const onB = await record(b, roomId);
      await a.publishDurable(roomId, 'chat.message', { i: 1 });
      await lostPublish(roomId, 2, { elsewhere: true });

      await receivedCount(onB, 2);
      expect(onB).toEqual(await a.readAfter(roomId, 0));
    });

    it('repairs from the stream after its subscriber connection was killed', async () => {
      const [a, b] = await twoNodes();
      const roomId = `room-${randomUUID()}`;
      const [onA, onB] = [await record(a, roomId), await record(b, roomId)];
      await a.publishDurable(roomId, 'chat.message', { i: 1 });
      await receivedCount(onB, 1);

      // The last event's message reaches nobody: no later event reveals a gap; the reconnect must.
      await lostPublish(roomId, 2, { killSubscribers: true });
      await receivedCount(onB, 2);
      await receivedCount(onA, 2);
      await a.publishDurable(roomId, 'chat.message', { i: 3 });
      await receivedCount(onB, 3);
      expect(onB.map((e) => e.seq)).toEqual([1, 2, 3]);
      expect(onA).toEqual(onB);
    });

    it('starts a new epoch when Redis holds fewer events than a node saw (writes lost in a failover)', async () => {
      const [a, b] = await twoNodes();
      const { roomId, onB } = await roomWithThreeEvents(a, b);
      const before = await a.head(roomId);

      // What a promoted replica that missed the last writes looks like; a publisher reuses seq 2
      // there, its message lost with the subscribers' connections, which then reconnect.
      await raw().hset(roomKeys(nodes.prefix, roomId).meta, 'seq', 1);
      await raw().xtrim(roomKeys(nodes.prefix, roomId).log, 'MAXLEN', 1);
      await lostPublish(roomId, 0, { elsewhere: true, killSubscribers: true });
      await eventually(async () => (await a.head(roomId)).epoch !== before.epoch, 15_000, 'a new epoch');

      const next = await a.publishDurable(roomId, 'chat.message', { i: 4 });
      expect(next.seq).toBe(1);
      await receivedCount(onB, 4);
      expect(onB[3]).toEqual(next);
      expect(next.epoch).not.toBe(before.epoch);
    });
  });
}

describe('RedisRoomBus on a single Redis', () => {
  let redis: TestRedis;
  let client: Redis;
  beforeAll(async () => {
    redis = await TestRedis.start();
    client = new Redis(redis.url);
    client.on('error', () => {}); // refused while a case restarts Redis
  });
  afterAll(async () => {
    client.disconnect();
    await redis.close();
  });
  const target = (): RedisTarget => ({ mode: 'single', url: redis.url });

  describeRoomBus('RedisRoomBus, single Redis', worldOn(target));
  describeRedisFaults(
    'single Redis',
    target,
    () => client,
    async (channel) => Number(((await client.pubsub('NUMSUB', channel)) as [string, number])[1]),
  );

  describe('what a room costs Redis', () => {
    let nodes: Nodes;
    afterEach(async () => {
      await nodes.close();
    });

    async function commandCalls(): Promise<Map<string, number>> {
      const info = await client.info('commandstats');
      return new Map([...info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)].map((m) => [m[1] as string, Number(m[2])]));
    }

    it('publishes epoch, seq and frame only, and reads the messages of earlier versions', async () => {
      nodes = new Nodes(target);
      const [a, b] = [await nodes.node(NO_POSITION_CHECK), await nodes.node(NO_POSITION_CHECK)];
      const roomId = `room-${randomUUID()}`;
      const { channel } = roomKeys(nodes.prefix, roomId);
      const listener = new Redis(redis.url);
      try {
        const messages: string[] = [];
        listener.on('message', (_channel: string, message: string) => messages.push(message));
        await listener.subscribe(channel);
        const onB = await record(b, roomId);
        const first = await a.publishDurable(roomId, 'chat.message', { i: 1 });
        await a.publishEphemeral(roomId, 'chat.typing', { i: 2 });
        await eventually(() => messages.length >= 2, 15_000, 'two messages');
        expect(messages[0]).toBe(`d|${first.epoch}|1|${first.frame}`);
        // Ephemeral: marked with the publisher's bus instance (it delivers its own from the answer).
        expect(messages[1]).toMatch(/^f\|[\w-]{8}\|/);
        expect(messages[1]?.replace(/^f\|[\w-]{8}\|/, '')).toBe(encodeFrame('chat.typing', { i: 2 }));

        // A node of an earlier version sends the event name before the frame.
        const old = encodeFrame('chat.message', { i: 3 }, 2);
        await client.publish(channel, `d|${first.epoch}|2|chat.message|${old}`);
        await client.publish(channel, `e|chat.typing|${encodeFrame('chat.typing', { i: 4 })}`);
        await receivedCount(onB, 4);
        expect(onB.slice(2)).toEqual([
          { roomId, event: 'chat.message', seq: 2, epoch: first.epoch, frame: old },
          { roomId, event: 'chat.typing', frame: encodeFrame('chat.typing', { i: 4 }) },
        ]);
      } finally {
        listener.disconnect();
      }
    });

    it('sends no pub/sub message while only the publishing node subscribes; its listeners get every event once', async () => {
      nodes = new Nodes(target);
      const [a, b] = [await nodes.node(NO_POSITION_CHECK), await nodes.node(NO_POSITION_CHECK)];
      const roomId = `room-${randomUUID()}`;
      const listener = new Redis(redis.url);
      try {
        const messages: string[] = [];
        listener.on('message', (_channel: string, message: string) => messages.push(message));
        await listener.subscribe(roomKeys(nodes.prefix, roomId).channel);
        const onA = await record(a, roomId);
        for (let i = 1; i <= 3; i++) await a.publishDurable(roomId, 'chat.message', { i });
        await receivedCount(onA, 3);

        const onB = await record(b, roomId);
        const fourth = await a.publishDurable(roomId, 'chat.message', { i: 4 });
        await b.publishDurable(roomId, 'chat.message', { i: 5 });
        await receivedCount(onB, 2);
        await receivedCount(onA, 5); // the copy of 4 reached a before 5 (one connection, in order)
        // The first message the channel carried is the 4th event's: the first three were not sent.
        await eventually(() => messages.length >= 2, 15_000, 'two messages');
        expect(messages[0]).toBe(`d|${fourth.epoch}|4|${fourth.frame}`);
        expect(onA.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
        expect(onA).toEqual(await a.readAfter(roomId, 0));
        expect(onB).toEqual(onA.slice(3));
      } finally {
        listener.disconnect();
      }
    });

    it("checks an idle room's position with one small script, refreshing its keys' TTLs every keyTtlMs / 4", async () => {
      nodes = new Nodes(target);
      const keyTtlMs = 1000;
      const bus = await nodes.node({ positionCheckIntervalMs: 100, keyTtlMs });
      const roomId = `room-${randomUUID()}`;
      await record(bus, roomId);
      await bus.publishDurable(roomId, 'chat.message', { i: 1 });
      const before = await commandCalls();
      const scripts = (calls: Map<string, number>): number => (calls.get('evalsha') ?? 0) + (calls.get('eval') ?? 0);
      const startedAt = Date.now();
      // Twenty checks (and longer than the keys' TTL): each a script call.
      await eventually(async () => scripts(await commandCalls()) - scripts(before) >= 20, 15_000, 'twenty checks');
      const elapsedMs = Date.now() - startedAt;
      const after = await commandCalls();
      const count = (name: string): number => (after.get(name) ?? 0) - (before.get(name) ?? 0);

      expect(elapsedMs).toBeGreaterThan(keyTtlMs);
      expect(count('xrange')).toBe(0); // in sync: nothing read
      const refreshes = count('pexpire') / 7; // every key of the room per refresh
      expect(refreshes).toBeGreaterThan(0);
      expect(refreshes).toBeLessThanOrEqual(Math.floor(elapsedMs / (keyTtlMs / 4)) + 1);
      expect(await client.pttl(roomKeys(nodes.prefix, roomId).meta)).toBeGreaterThan(0);
    });
  });

  describe('Redis itself failing', () => {
    let nodes: Nodes;
    afterEach(async () => {
      redis.unpause();
      await redis.resume();
      await nodes.close();
    });

    /** Two nodes that notice a silent Redis within half a second. */
    async function twoWatchfulNodes(): Promise<[RedisRoomBus, RedisRoomBus]> {
      nodes = new Nodes(target);
      const watchful = { healthCheckIntervalMs: 100, healthTimeoutMs: 500 };
      return [await nodes.node(watchful), await nodes.node(watchful)];
    }

    async function allInState(state: 'ok' | 'degraded', ...buses: RoomBus[]): Promise<void> {
      await eventually(() => buses.every((bus) => bus.status().state === state), 15_000, `every bus ${state}`);
    }

    it('keeps every key of a room under the prefix and the room hash tag, each with a TTL', async () => {
      nodes = new Nodes(target);
      const bus = await nodes.node();
      const roomId = `room-${randomUUID()}`;
      await bus.publishDurable(roomId, 'chat.message', { i: 1 });
      await bus.presence.set(roomId, {
        participantId: 'p',
        userId: 'u',
        name: 'n',
        role: 'trader',
        joinedAt: 1,
        nodeId: 'a',
      });
      await bus.state.putSession(roomId, 's', { participantId: 'p', userId: 'u', joinedAt: 1, joinSeq: 0 });
      await bus.state.putBan(roomId, 'u', Date.now() + 60_000);
      await bus.state.putRole(roomId, 'u', 'moderator');

      const keys = (await client.keys(`${nodes.prefix}:*`)).sort();
      expect(keys.map((k) => k.replace(`${nodes.prefix}:{room:${roomId}}:`, ''))).toEqual([
        'bans',
        'log',
        'meta',
        'presence',
        'roles',
        'sessions',
      ]);
      for (const key of keys) expect(await client.pttl(key)).toBeGreaterThan(0);
    });

    it('starts a new epoch from seq 1 when Redis restarted empty, and its subscribers notice', async () => {
      const [a, b] = await twoWatchfulNodes();
      const { roomId, onB } = await roomWithThreeEvents(a, b);
      const oldEpoch = onB[0]?.epoch;
      const states: string[] = [];
      b.onStatus((status) => states.push(status.state));

      await redis.stop();
      await allInState('degraded', a, b);
      await expect(a.publishDurable(roomId, 'chat.message', { i: 0 })).rejects.toBeInstanceOf(BusUnavailableError);
      await expect(a.subscribe(`room-${randomUUID()}`, () => {})).rejects.toBeInstanceOf(BusUnavailableError);
      await redis.resume();
      await allInState('ok', a, b);

      const first = await a.publishDurable(roomId, 'chat.message', { i: 4 });
      const second = await a.publishDurable(roomId, 'chat.message', { i: 5 });
      expect([first.seq, second.seq]).toEqual([1, 2]);
      expect(first.epoch).not.toBe(oldEpoch);
      await receivedCount(onB, 5);
      expect(onB.slice(3)).toEqual([first, second]);
      expect(states).toEqual(['degraded', 'ok']);
      expect(await a.head(roomId)).toEqual({ epoch: first.epoch, lastSeq: 2 });
      expect(await a.readAfter(roomId, 3, oldEpoch)).toBeNull();
      const pairs = onB.map((e) => `${e.epoch}/${e.seq}`);
      expect(new Set(pairs).size).toBe(pairs.length);
    });

    it('loses nothing and keeps the order when Redis is frozen for 3 s', async () => {
      const [a, b] = await twoWatchfulNodes();
      const roomId = `room-${randomUUID()}`;
      const onB = await record(b, roomId);
      await a.publishDurable(roomId, 'chat.message', { i: 1 });
      await receivedCount(onB, 1);

      redis.pause();
      const pausedAt = Date.now();
      const during = [2, 3, 4].map((i) => a.publishDurable(roomId, 'chat.message', { i }));
      await allInState('degraded', a, b);
      await expect(a.publishDurable(roomId, 'chat.message', { i: 0 })).rejects.toBeInstanceOf(BusUnavailableError);
      await sleep(Math.max(0, 3000 - (Date.now() - pausedAt)));
      redis.unpause();

      expect((await Promise.all(during)).map((e) => e.seq)).toEqual([2, 3, 4]);
      await receivedCount(onB, 4);
      expect(onB.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
      await allInState('ok', a, b);
      await a.publishDurable(roomId, 'chat.message', { i: 5 });
      await receivedCount(onB, 5);
    });
  });
});

describe('RedisRoomBus on a Redis Cluster', () => {
  let cluster: TestRedisCluster;
  let client: Cluster;
  beforeAll(async () => {
    cluster = await startRedisCluster();
    client = new Cluster(cluster.nodes.map((n) => ({ ...n })));
    client.on('error', () => {}); // a killed subscriber connection is reported here
  });
  afterAll(async () => {
    client.disconnect();
    await cluster.close();
  });
  const target = (): RedisTarget => ({ mode: 'cluster', nodes: cluster.nodes });

  /** Sharded subscriptions over every master; classic ones must stay 0 (they would cost every shard). */
  async function shardSubscriptions(channel: string): Promise<number> {
    let total = 0;
    for (const node of client.nodes('master')) {
      const classic = (await node.pubsub('NUMSUB', channel)) as [string, number];
      expect(Number(classic[1])).toBe(0);
      total += Number(((await node.pubsub('SHARDNUMSUB', channel)) as [string, number])[1]);
    }
    return total;
  }

  describeRoomBus('RedisRoomBus, Redis Cluster', worldOn(target));
  describeRedisFaults('Redis Cluster', target, () => client, shardSubscriptions);
});

describe('createRoomBus', () => {
  let redis: TestRedis;
  let sentinel: TestRedisSentinel;
  beforeAll(async () => {
    redis = await TestRedis.start();
    sentinel = await startRedisSentinel(redis);
  });
  afterAll(async () => {
    await sentinel.close();
    await redis.close();
  });

  it('runs alone in memory without Redis settings, and reads host:port addresses', async () => {
    const bus = createRoomBus({ retention: RETENTION });
    expect(bus).toBeInstanceOf(LocalRoomBus);
    await bus.close();
    expect(parseHostPort('10.0.0.1:7000')).toEqual({ host: '10.0.0.1', port: 7000 });
    expect(parseHostPort('[::1]:7001')).toEqual({ host: '::1', port: 7001 });
    expect(parseHostPort('redis-a')).toEqual({ host: 'redis-a', port: 6379 });
    expect(() => parseHostPort('redis-a:99999')).toThrow(RangeError);
    expect(() => createRoomBus({ retention: RETENTION, redisSentinels: ['a:26379'] })).toThrow(/name/);
    expect(() =>
      createRoomBus({
        retention: RETENTION,
        redisSentinels: ['a:26379'],
        redisClusterNodes: ['b:7000'],
        redisSentinelName: 'm',
      }),
    ).toThrow(RangeError);
  });

  describeRoomBus(
    'RedisRoomBus through Sentinel, built by createRoomBus',
    async ({ onListenerError, ...retention }) => {
      const redisKeyPrefix = `test-${randomUUID()}`;
      const buses: RoomBus[] = [];
      return {
        node: async () => {
          const bus = createRoomBus({
            retention,
            onListenerError,
            redisKeyPrefix,
            redisSentinels: [`${sentinel.host}:${sentinel.port}`],
            redisSentinelName: sentinel.name,
            nodeId: 'node a',
          });
          buses.push(bus);
          expect(bus).toBeInstanceOf(RedisRoomBus);
          await eventually(() => bus.status().state === 'ok', 10_000, 'the bus to reach Redis through Sentinel');
          return bus;
        },
        close: async () => {
          await Promise.all(buses.splice(0).map((b) => b.close()));
        },
      };
    },
  );
});
