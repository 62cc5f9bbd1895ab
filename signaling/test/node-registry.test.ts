/**
 * The node registry against real Redis, on a single server and on a 3-master Redis Cluster:
 * heartbeats and the node list, the room index, exactly one survivor reaping a crashed node
 * (three registries racing), a clean deregistration never reaped, stale fencing tokens refused,
 * a restarted node id waiting for its predecessor, pruning, and Redis lost or frozen.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { RedisTarget } from '../src/bus/redis-connections.js';
import { BusUnavailableError } from '../src/bus/room-bus.js';
import { registryKeys } from '../src/cluster/node-registry-scripts.js';
import {
  NodeIdInUseError,
  NodeRegistry,
  type NodeDeadEvent,
  type NodeLoad,
  type NodeRegistryOptions,
  type NodeStatus,
} from '../src/cluster/node-registry.js';
import { eventually, sleep } from '../../test-support/async.js';
import { useTestRedis, useTestRedisCluster, type RedisUnderTest } from '../../test-support/redis.js';

const NODE_TTL_MS = 600;

/** What each survivor does with `nodedead`: record it, and call `reaped()` unless told to hold. */
interface Reaping {
  readonly events: { by: string; event: NodeDeadEvent }[];
  /** When false, survivors keep the lock (never call `reaped()`). */
  reap: boolean;
}

/** The registries of one test: one key prefix, as the nodes of one cluster share. */
class Registries {
  readonly prefix = `test-${randomUUID()}`;
  readonly keys = registryKeys(this.prefix);
  readonly errors: { nodeId: string; error: unknown; what: string }[] = [];
  readonly reaping: Reaping = { events: [], reap: true };
  readonly loads = new Map<string, NodeLoad>();
  readonly #target: () => RedisTarget;
  readonly #registries: NodeRegistry[] = [];

  constructor(target: () => RedisTarget) {
    this.#target = target;
  }

  /** A registry that is not started yet; `reaper` adds the recording `nodedead` listener. */
  create(nodeId: string, options: Partial<NodeRegistryOptions> & { reaper?: boolean } = {}): NodeRegistry {
    const { reaper = true, ...rest } = options;
    this.loads.set(nodeId, { state: 'running', connections: 0 });
    const registry = new NodeRegistry({
      target: this.#target(),
      nodeId,
      keyPrefix: this.prefix,
      version: '1.2.3',
      nodeTtlMs: NODE_TTL_MS,
      load: () => this.loads.get(nodeId) as NodeLoad,
      onError: (error, what) => this.errors.push({ nodeId, error, what }),
      ...rest,
    });
    this.#registries.push(registry);
    if (reaper) {
      registry.on('nodedead', async (event) => {
        this.reaping.events.push({ by: nodeId, event });
        if (this.reaping.reap) await registry.reaped(event.nodeId, event.fencingToken);
      });
    }
    return registry;
  }

  async start(
    nodeId: string,
    options: Partial<NodeRegistryOptions> & { reaper?: boolean } = {},
  ): Promise<NodeRegistry> {
    const registry = this.create(nodeId, options);
    await registry.start();
    return registry;
  }

  /** A started registry with one room tracked, and its next `reregistered` event. */
  async startWithRoom(
    nodeId: string,
    roomId: string,
  ): Promise<{ registry: NodeRegistry; reregistered: Promise<void> }> {
    const registry = await this.start(nodeId);
    await registry.trackRoom(roomId);
    const reregistered = new Promise<void>((resolve) => registry.once('reregistered', resolve));
    return { registry, reregistered };
  }

  /** Waits until `n` nodedead events were emitted, in all. */
  async deaths(n: number): Promise<NodeDeadEvent[]> {
    await eventually(() => this.reaping.events.length >= n, 10_000, `${n} nodedead events`);
    return this.reaping.events.map((e) => e.event);
  }

  async close(): Promise<void> {
    for (const registry of this.#registries.splice(0)) registry.stop();
  }
}

async function entry(registry: NodeRegistry, nodeId: string): Promise<NodeStatus | undefined> {
  return (await registry.list()).find((n) => n.nodeId === nodeId);
}

function describeNodeRegistry(name: string, { target, client: raw }: RedisUnderTest): void {
  describe(`NodeRegistry: ${name}`, () => {
    let registries: Registries;
    afterEach(async () => {
      await registries.close();
    });

    /** The fencing counter: how many claims were ever made under this prefix. */
    const claims = async (): Promise<number> => Number((await raw().get(registries.keys.fence)) ?? 0);

    it('lists every node with its info, a heartbeat on Redis clock, and a TTL key of its own', async () => {
      registries = new Registries(target);
      const a = await registries.start('a');
      await registries.start('b');
      registries.loads.set('b', { state: 'draining', connections: 7, drainDeadline: 1_900_000_000_000 });

      const [first] = (await a.list()).filter((n) => n.nodeId === 'b');
      await eventually(async () => (await entry(a, 'b'))?.state === 'draining', 5000, 'b draining');
      const b = await entry(a, 'b');
      expect(b).toMatchObject({
        nodeId: 'b',
        state: 'draining',
        connections: 7,
        rooms: 0,
        drainDeadline: 1_900_000_000_000,
        version: '1.2.3',
        alive: true,
      });
      expect(b?.heartbeatAt).toBeGreaterThan(first?.heartbeatAt ?? Infinity);
      expect(b?.startedAt).toBeLessThanOrEqual(Date.now());
      expect((await a.list()).map((n) => n.nodeId).sort()).toEqual(['a', 'b']);

      expect(await raw().hkeys(registries.keys.nodes)).toHaveLength(2);
      const ttl = await raw().pttl(registries.keys.node('b').alive);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(NODE_TTL_MS);
    });

    it('writes a heartbeat on demand, e.g. when the node starts draining', async () => {
      registries = new Registries(target);
      const a = await registries.start('a', { nodeTtlMs: 60_000 });
      registries.loads.set('a', { state: 'draining', connections: 3, drainDeadline: 1_900_000_000_000 });
      await a.heartbeat();
      expect(await entry(a, 'a')).toMatchObject({ state: 'draining', connections: 3, alive: true });
    });

    it('keeps an index of the rooms each node has members in', async () => {
      registries = new Registries(target);
      const a = registries.create('a');
      await a.trackRoom('early'); // before registration: written with the first heartbeat
      await a.start();
      await a.trackRoom('r1');
      await a.trackRoom('r2');
      await a.trackRoom('r2');
      await a.untrackRoom('r1');
      await a.untrackRoom('never');
      expect((await raw().smembers(registries.keys.node('a').rooms)).sort()).toEqual(['early', 'r2']);
      await a.heartbeat();
      expect(await entry(a, 'a')).toMatchObject({ rooms: 2 });
    });

    it('hands a crashed node to exactly one of three racing survivors, with its rooms and a fencing token', async () => {
      registries = new Registries(target);
      const [a, b, c] = [await registries.start('a'), await registries.start('b'), await registries.start('c')];
      const crashed = await registries.start('crashed');
      await crashed.trackRoom('room-1');
      await crashed.trackRoom('room-2');
      registries.reaping.reap = false; // the holder keeps the lock while the others race
      crashed.stop();

      const [event] = await registries.deaths(1);
      expect(event).toMatchObject({ nodeId: 'crashed', rooms: ['room-1', 'room-2'], fencingToken: 1 });
      expect(event?.info).toMatchObject({ nodeId: 'crashed', instanceId: crashed.instanceId, state: 'running' });
      // Everyone races for it again, several passes each at once: the lock holds.
      const passes = await Promise.all([a, b, c].flatMap((r) => [r.sweep(), r.sweep(), r.sweep()]));
      expect(passes.flat()).toEqual([]);
      expect(registries.reaping.events).toHaveLength(1);
      expect(await entry(a, 'crashed')).toMatchObject({ alive: false });

      const holder = [a, b, c].find((r) => r.nodeId === registries.reaping.events[0]?.by) as NodeRegistry;
      expect(await holder.reaped('crashed', event?.fencingToken ?? 0)).toBe(true);
      expect((await Promise.all([a, b, c].map((r) => r.sweep()))).flat()).toEqual([]);
      expect(registries.reaping.events).toHaveLength(1);
      expect(await claims()).toBe(1);
      expect(await raw().exists(registries.keys.node('crashed').rooms)).toBe(0);
      const reaped = await entry(a, 'crashed');
      expect(reaped).toMatchObject({ alive: false });
      expect(reaped?.reapedAt).toBeGreaterThanOrEqual(reaped?.heartbeatAt ?? Infinity);
    });

    it('never reaps a node that deregistered cleanly', async () => {
      registries = new Registries(target);
      const [a, b] = [await registries.start('a'), await registries.start('b')];
      const leaving = await registries.start('leaving');
      await leaving.trackRoom('room-1');
      const crashed = await registries.start('crashed');
      await leaving.deregister();
      crashed.stop();
      expect((await a.list()).map((n) => n.nodeId).sort()).toEqual(['a', 'b', 'crashed']);
      expect(await raw().exists(registries.keys.node('leaving').rooms, registries.keys.node('leaving').alive)).toBe(0);

      // The crashed node's death shows the TTL has passed for both.
      await registries.deaths(1);
      expect((await Promise.all([a.sweep(), b.sweep()])).flat()).toEqual([]);
      expect(registries.reaping.events.map((e) => e.event.nodeId)).toEqual(['crashed']);
      expect(await claims()).toBe(1);
      await leaving.deregister(); // twice: nothing
    });

    it('refuses a stale fencing token once the holder died mid-reap and another survivor claimed the node', async () => {
      registries = new Registries(target);
      registries.reaping.reap = false;
      const first = await registries.start('first', { lockTtlMs: 300 });
      const crashed = await registries.start('crashed');
      crashed.stop();
      const [claim] = await registries.deaths(1);
      first.stop(); // dies holding the lock; it expires

      const second = await registries.start('second');
      await eventually(
        () => registries.reaping.events.some((e) => e.by === 'second' && e.event.nodeId === 'crashed'),
        10_000,
        'the second claim',
      );
      const again = registries.reaping.events.find((e) => e.by === 'second' && e.event.nodeId === 'crashed')?.event;
      expect(again?.fencingToken).toBeGreaterThan(claim?.fencingToken ?? Infinity);
      expect(again?.rooms).toEqual(claim?.rooms);
      expect(await second.reaped('crashed', claim?.fencingToken ?? 0)).toBe(false);
      expect((await entry(second, 'crashed'))?.reapedAt).toBeUndefined();
      expect(await second.reaped('crashed', again?.fencingToken ?? 0)).toBe(true);
      expect(await second.reaped('crashed', again?.fencingToken ?? 0)).toBe(false);
    });

    it('claims nothing without a nodedead listener, and prunes dead nodes after the retention', async () => {
      registries = new Registries(target);
      const a = await registries.start('a', { reaper: false, deadNodeRetentionMs: 1500 });
      const crashed = await registries.start('crashed', { reaper: false });
      await crashed.trackRoom('room-1');
      crashed.stop();
      await eventually(async () => (await entry(a, 'crashed'))?.alive === false, 5000, 'crashed dead');
      expect(await a.sweep()).toEqual([]);
      await eventually(async () => (await entry(a, 'crashed')) === undefined, 10_000, 'crashed pruned');
      expect(await raw().exists(registries.keys.node('crashed').rooms)).toBe(0);
      expect(await claims()).toBe(0);
    });

    it('makes a restarted node id wait for its predecessor to be reaped; a live duplicate is refused', async () => {
      registries = new Registries(target);
      await registries.start('survivor');
      const before = registries.create('x');
      await before.start();
      await before.trackRoom('old-room');
      before.stop();

      const after = registries.create('x');
      await after.trackRoom('new-room');
      await after.start();
      const events = registries.reaping.events.map((e) => e.event);
      expect(events).toMatchObject([{ nodeId: 'x', rooms: ['old-room'] }]);
      expect(events[0]?.info.instanceId).toBe(before.instanceId);
      expect(await entry(after, 'x')).toMatchObject({ instanceId: after.instanceId, alive: true });
      expect(await raw().smembers(registries.keys.node('x').rooms)).toEqual(['new-room']);

      const duplicate = registries.create('x');
      await expect(duplicate.start()).rejects.toBeInstanceOf(NodeIdInUseError);
      expect(await entry(after, 'x')).toMatchObject({ instanceId: after.instanceId, alive: true });
    });

    it('registers again, room index included, when its entry disappeared from Redis', async () => {
      registries = new Registries(target);
      const { registry: a, reregistered } = await registries.startWithRoom('a', 'room-1');
      await raw().hdel(registries.keys.nodes, 'a');
      await raw().del(registries.keys.node('a').rooms);
      await reregistered;
      expect(await entry(a, 'a')).toMatchObject({ alive: true, rooms: 1 });
      expect(await raw().smembers(registries.keys.node('a').rooms)).toEqual(['room-1']);
    });
  });
}

describe('NodeRegistry on a single Redis', () => {
  const redis = useTestRedis();
  const { target, client } = redis;
  describeNodeRegistry('single Redis', redis);

  describe('Redis failing', () => {
    let registries: Registries;
    afterEach(async () => {
      redis.server().unpause();
      await redis.server().resume();
      await registries.close();
    });

    it('reports heartbeat failures while Redis is down and registers again, rooms included, when it returns empty', async () => {
      registries = new Registries(target);
      const { registry: a, reregistered } = await registries.startWithRoom('a', 'room-1');

      await redis.server().stop();
      await eventually(
        () => registries.errors.some((e) => e.what === 'the node heartbeat'),
        5000,
        'a reported failure',
      );
      await expect(a.list()).rejects.toBeInstanceOf(BusUnavailableError);
      await a.trackRoom('room-2'); // not written now: repaired with the registration
      expect(registries.errors.filter((e) => e.what === 'the node heartbeat')).toHaveLength(1);

      await redis.server().resume();
      await reregistered;
      expect(await entry(a, 'a')).toMatchObject({ alive: true, rooms: 2 });
      expect((await client().smembers(registries.keys.node('a').rooms)).sort()).toEqual(['room-1', 'room-2']);
    });

    it('starts while Redis is down and registers once it is back', async () => {
      registries = new Registries(target);
      await redis.server().stop();
      const a = registries.create('a');
      const started = a.start();
      await redis.server().resume();
      await started;
      expect(await entry(a, 'a')).toMatchObject({ alive: true, instanceId: a.instanceId });
    });

    it('reaps no live node after Redis was frozen for longer than the TTL', async () => {
      registries = new Registries(target);
      const [a, b] = [await registries.start('a'), await registries.start('b')];
      redis.server().pause();
      await sleep(3 * NODE_TTL_MS); // the outage itself, not a wait for something to happen
      redis.server().unpause();
      const unpausedAt = Date.now();
      await eventually(
        async () => (await a.list()).every((n) => n.alive && n.heartbeatAt > unpausedAt - 100),
        5000,
        'both heartbeating again',
      );
      // One more round of each loop after both were back: a reaper would act now, and must not.
      const beatAt = Math.max(...(await a.list()).map((n) => n.heartbeatAt));
      await eventually(async () => (await b.list()).every((n) => n.heartbeatAt > beatAt), 5000, 'another round');
      expect((await Promise.all([a.sweep(), b.sweep()])).flat()).toEqual([]);
      expect(registries.reaping.events).toEqual([]);
      expect(await client().get(registries.keys.fence)).toBeNull();
    });
  });
});

describe('NodeRegistry on a Redis Cluster', () => {
  describeNodeRegistry('Redis Cluster', useTestRedisCluster());
});
