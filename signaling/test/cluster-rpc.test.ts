/**
 * Cluster RPC against real Redis, on a single server and on a 3-master Redis Cluster: calls
 * answered by the node addressed, protocol errors passed through, bad input dropped, typed
 * failures (timeout, nobody listening, Redis down, closed, too many in flight), self-calls
 * without Redis, and each node's channel subscribed once (a shard channel on a Cluster).
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { RedisClient, RedisTarget } from '../src/bus/redis-connections.js';
import { BusUnavailableError } from '../src/bus/room-bus.js';
import {
  ClusterRpc,
  RpcNoListenerError,
  RpcRemoteError,
  RpcTimeoutError,
  RpcUnavailableError,
  rpcChannel,
  type ClusterRpcOptions,
  type RpcRequestContext,
} from '../src/cluster/cluster-rpc.js';
import { ProtocolError } from '../src/errors.js';
import { eventually } from '../../test-support/async.js';
import { useTestRedis, useTestRedisCluster, type RedisUnderTest } from '../../test-support/redis.js';

interface TestMethods {
  echo: { params: { text: string }; result: { text: string; context: RpcRequestContext } };
  fail: { params: { kind: 'not-found' | 'forbidden-like' | 'crash' }; result: never };
  wait: { params: { id: string }; result: string };
  add: { params: { a: number; b: number }; result: number };
}

type Rpc = ClusterRpc<TestMethods>;

const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

/** The RPC instances of one test, sharing a key prefix as the nodes of one cluster do. */
class Nodes {
  readonly prefix = `test-${randomUUID()}`;
  readonly errors: { error: unknown; what: string }[] = [];
  readonly #target: () => RedisTarget;
  readonly #nodes: Rpc[] = [];
  /** Resolvers of `wait` calls, by id. */
  readonly waiting = new Map<string, (value: string) => void>();
  /** `add` calls each node's handler ran, by node id. */
  readonly adds = new Map<string, number>();
  /** The functions that stop each node's handlers. */
  readonly stops = new Map<string, Record<keyof TestMethods, () => void>>();

  constructor(target: () => RedisTarget) {
    this.#target = target;
  }

  /** A started node answering every test method. */
  async node(nodeId: string, options: Partial<ClusterRpcOptions> = {}): Promise<Rpc> {
    const rpc = this.unstarted(nodeId, options);
    await rpc.start();
    return rpc;
  }

  unstarted(nodeId: string, options: Partial<ClusterRpcOptions> = {}): Rpc {
    const rpc: Rpc = new ClusterRpc<TestMethods>({
      target: this.#target(),
      nodeId,
      keyPrefix: this.prefix,
      onError: (error, what) => this.errors.push({ error, what }),
      ...options,
    });
    this.#nodes.push(rpc);
    const stops = {
      echo: rpc.handle('echo', ({ text }, context) => ({ text, context })),
      fail: rpc.handle('fail', ({ kind }) => {
        if (kind === 'not-found') throw new ProtocolError('NOT_FOUND', 'no such participant');
        if (kind === 'forbidden-like') throw Object.assign(new Error('moderators only'), { code: 'FORBIDDEN' });
        throw new Error('database exploded at 10.0.0.7');
      }),
      wait: rpc.handle('wait', ({ id }) => new Promise<string>((resolve) => this.waiting.set(id, resolve))),
      add: rpc.handle(
        'add',
        ({ a, b }) => {
          this.adds.set(nodeId, (this.adds.get(nodeId) ?? 0) + 1);
          return a + b;
        },
        { params: z.object({ a: z.number(), b: z.number() }) },
      ),
    };
    this.stops.set(nodeId, stops);
    return rpc;
  }

  async close(): Promise<void> {
    await Promise.all(this.#nodes.splice(0).map((n) => n.close()));
  }
}

/** Publishes a raw message to a node's channel, as a misbehaving peer would. */
async function publishRaw(raw: RedisClient, sharded: boolean, channel: string, payload: string): Promise<number> {
  return Number(await (sharded ? raw.spublish(channel, payload) : raw.publish(channel, payload)));
}

function describeClusterRpc(name: string, redis: RedisUnderTest): void {
  const { target, client: raw, subscriptions } = redis;
  describe(`ClusterRpc: ${name}`, () => {
    let nodes: Nodes;
    afterEach(async () => {
      await nodes.close();
    });
    const sharded = (): boolean => target().mode === 'cluster';

    it('calls the node addressed and resolves its handler result, with caller, deadline and trace context', async () => {
      nodes = new Nodes(target);
      const [a, b] = [await nodes.node('a'), await nodes.node('b')];
      const before = Date.now();
      const answer = await a.call('b', 'echo', { text: 'hello' }, { timeoutMs: 2000, traceparent: TRACEPARENT });
      expect(answer.text).toBe('hello');
      expect(answer.context.callerNodeId).toBe('a');
      expect(answer.context.traceparent).toBe(TRACEPARENT);
      expect(answer.context.deadline).toBeGreaterThanOrEqual(before + 2000);
      expect(answer.context.deadline).toBeLessThanOrEqual(Date.now() + 2000);
      expect(await b.call('a', 'add', { a: 2, b: 3 })).toBe(5);
    });

    it('listens on one channel per node, subscribed once (a shard channel on a Cluster)', async () => {
      nodes = new Nodes(target);
      await nodes.node('a');
      expect(await subscriptions(rpcChannel(nodes.prefix, 'a'))).toBe(1);
      expect(await subscriptions(rpcChannel(nodes.prefix, 'b'))).toBe(0);
    });

    it('matches concurrent answers to their calls, from several callers at once', async () => {
      nodes = new Nodes(target);
      const [a, b, c] = [await nodes.node('a'), await nodes.node('b'), await nodes.node('c')];
      const calls = [a, c].flatMap((caller) =>
        Array.from({ length: 50 }, (_, i) => caller.call('b', 'add', { a: i, b: caller === a ? 1000 : 2000 })),
      );
      const sums = await Promise.all(calls);
      expect(sums).toEqual([
        ...Array.from({ length: 50 }, (_, i) => i + 1000),
        ...Array.from({ length: 50 }, (_, i) => i + 2000),
      ]);
      expect(b.nodeId).toBe('b');
    });

    it('passes a protocol error through with its code and message; anything else is INTERNAL, reported where it failed', async () => {
      nodes = new Nodes(target);
      const [a] = [await nodes.node('a'), await nodes.node('b')];

      const notFound = await a.call('b', 'fail', { kind: 'not-found' }).catch((e: unknown) => e);
      expect(notFound).toBeInstanceOf(RpcRemoteError);
      expect(notFound).toMatchObject({
        code: 'NOT_FOUND',
        message: 'no such participant',
        nodeId: 'b',
        method: 'fail',
      });
      const asProtocol = (notFound as RpcRemoteError).toProtocolError();
      expect(asProtocol).toBeInstanceOf(ProtocolError);
      expect(asProtocol.toBody()).toEqual({ code: 'NOT_FOUND', message: 'no such participant' });

      await expect(a.call('b', 'fail', { kind: 'forbidden-like' })).rejects.toMatchObject({
        code: 'FORBIDDEN',
        message: 'moderators only',
      });

      const crash = await a.call('b', 'fail', { kind: 'crash' }).catch((e: unknown) => e);
      expect(crash).toMatchObject({ name: 'RpcRemoteError', code: 'INTERNAL', message: 'internal error' });
      expect(nodes.errors.map((e) => [e.what, (e.error as Error).message])).toEqual([
        ['RPC handler fail', 'database exploded at 10.0.0.7'],
      ]);
    });

    it('answers UNKNOWN_METHOD for a method without a handler and BAD_REQUEST for params its schema refuses', async () => {
      nodes = new Nodes(target);
      const [a, b] = [await nodes.node('a'), await nodes.node('b')];
      const bad = { a: 1, b: 'two' } as unknown as { a: number; b: number };
      await expect(a.call('b', 'add', bad)).rejects.toMatchObject({ name: 'RpcRemoteError', code: 'BAD_REQUEST' });
      expect(nodes.adds.get('b')).toBeUndefined();
      expect(() => b.handle('echo', ({ text }, context) => ({ text, context }))).toThrow(/registered already/);

      nodes.stops.get('b')?.echo();
      await expect(a.call('b', 'echo', { text: 'x' })).rejects.toMatchObject({ code: 'UNKNOWN_METHOD' });
      b.handle('echo', ({ text }) => ({ text: text.toUpperCase(), context: {} as RpcRequestContext }));
      expect((await a.call('b', 'echo', { text: 'x' })).text).toBe('X');
    });

    it('drops unreadable messages and expired requests, reports them, and keeps answering', async () => {
      nodes = new Nodes(target);
      const [a] = [await nodes.node('a'), await nodes.node('b')];
      const channel = rpcChannel(nodes.prefix, 'b');
      const expired = {
        t: 'req',
        id: 'x1',
        from: 'a',
        method: 'add',
        params: { a: 1, b: 1 },
        deadline: Date.now() - 1,
      };
      for (const payload of [
        'not json',
        '{"t":"req"}',
        JSON.stringify({ t: 'res', id: 5 }),
        JSON.stringify({ ...expired, traceparent: 'not a trace' }),
        JSON.stringify(expired),
      ]) {
        expect(await publishRaw(raw(), sharded(), channel, payload)).toBe(1);
      }
      // Messages on one channel arrive in order: once this answer is back, every bad one was handled.
      expect(await a.call('b', 'add', { a: 2, b: 2 })).toBe(4);
      expect(nodes.adds.get('b')).toBe(1);
      expect(nodes.errors.map((e) => e.what)).toEqual(Array(4).fill('reading an RPC message'));
    });

    it('rejects with RpcTimeoutError when the node does not answer in time', async () => {
      nodes = new Nodes(target);
      const [a] = [await nodes.node('a'), await nodes.node('b')];
      const started = Date.now();
      const error = await a.call('b', 'wait', { id: 'never' }, { timeoutMs: 300 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RpcTimeoutError);
      expect(error).toMatchObject({ nodeId: 'b', method: 'wait' });
      expect(Date.now() - started).toBeGreaterThanOrEqual(290);
      // The late answer finds no call waiting and changes nothing.
      nodes.waiting.get('never')?.('late');
      expect(await a.call('b', 'add', { a: 1, b: 1 })).toBe(2);
    });

    it('rejects at once with RpcNoListenerError when no node listens on the id', async () => {
      nodes = new Nodes(target);
      const [a, b] = [await nodes.node('a'), await nodes.node('b')];
      await b.close();
      // Redis counts a closed connection's subscription until it notices the socket closed.
      const channel = rpcChannel(nodes.prefix, 'b');
      await eventually(async () => (await subscriptions(channel)) === 0, 5000, 'b unsubscribed');
      const started = Date.now();
      await expect(a.call('b', 'add', { a: 1, b: 1 }, { timeoutMs: 10_000 })).rejects.toBeInstanceOf(
        RpcNoListenerError,
      );
      await expect(a.call('nobody', 'add', { a: 1, b: 1 }, { timeoutMs: 10_000 })).rejects.toBeInstanceOf(
        RpcNoListenerError,
      );
      expect(Date.now() - started).toBeLessThan(5000);
    });

    it('refuses calls beyond its bound of pending calls; close() rejects the pending ones', async () => {
      nodes = new Nodes(target);
      const [a] = [await nodes.node('a', { maxPending: 2 }), await nodes.node('b')];
      const first = a.call('b', 'wait', { id: 'w1' });
      const second = a.call('b', 'wait', { id: 'w2' });
      const third = await a.call('b', 'add', { a: 1, b: 1 }).catch((e: unknown) => e);
      expect(third).toBeInstanceOf(RpcUnavailableError);
      expect(third).toBeInstanceOf(BusUnavailableError);
      await eventually(() => nodes.waiting.has('w1') && nodes.waiting.has('w2'), 5000, 'both calls to arrive');
      nodes.waiting.get('w1')?.('one');
      expect(await first).toBe('one');
      await a.close();
      await expect(second).rejects.toBeInstanceOf(RpcUnavailableError);
      await expect(a.call('b', 'add', { a: 1, b: 1 })).rejects.toBeInstanceOf(RpcUnavailableError);
      await a.close();
    });

    it('answers a call to its own node id without Redis, with the same results and errors', async () => {
      nodes = new Nodes(target);
      // Nothing listens at this address: a call that went through Redis could not succeed.
      const alone = nodes.unstarted('alone', { target: { mode: 'single', url: 'redis://127.0.0.1:1' } });
      expect(await alone.call('alone', 'add', { a: 20, b: 22 })).toBe(42);
      const echoed = await alone.call('alone', 'echo', { text: 'me' }, { traceparent: TRACEPARENT });
      expect(echoed.context).toMatchObject({ callerNodeId: 'alone', traceparent: TRACEPARENT });
      await expect(alone.call('alone', 'fail', { kind: 'not-found' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
      await expect(alone.call('alone', 'wait', { id: 'self' }, { timeoutMs: 100 })).rejects.toBeInstanceOf(
        RpcTimeoutError,
      );
      await expect(alone.call('other', 'add', { a: 1, b: 1 })).rejects.toBeInstanceOf(RpcUnavailableError);
    });
  });
}

describe('ClusterRpc on a single Redis', () => {
  const redis = useTestRedis();
  describeClusterRpc('single Redis', redis);

  describe('Redis down', () => {
    let nodes: Nodes;
    afterEach(async () => {
      await redis.server().resume();
      await nodes.close();
    });

    it('rejects calls with RpcUnavailableError while Redis is down, and answers again once it is back', async () => {
      nodes = new Nodes(redis.target);
      const [a] = [await nodes.node('a'), await nodes.node('b')];
      await redis.server().stop();
      await eventually(
        async () => (await a.call('b', 'add', { a: 1, b: 1 }).catch((e: unknown) => e)) instanceof RpcUnavailableError,
        10_000,
        'calls refused as unavailable',
      );
      await redis.server().resume();
      // Node b subscribes again by itself after reconnecting.
      await eventually(
        async () => (await a.call('b', 'add', { a: 1, b: 1 }, { timeoutMs: 500 }).catch(() => 0)) === 2,
        15_000,
        'calls answered again',
      );
    });

    it('starts while Redis is down and is ready once it is back', async () => {
      nodes = new Nodes(redis.target);
      const a = await nodes.node('a');
      await redis.server().stop();
      const b = nodes.unstarted('b');
      const started = b.start();
      await redis.server().resume();
      await started;
      await eventually(
        async () => (await a.call('b', 'add', { a: 1, b: 1 }, { timeoutMs: 500 }).catch(() => 0)) === 2,
        15_000,
        'a reaching b',
      );
      expect(await b.call('a', 'add', { a: 2, b: 2 })).toBe(4);
    });
  });
});

describe('ClusterRpc on a Redis Cluster', () => {
  describeClusterRpc('Redis Cluster', useTestRedisCluster());
});
