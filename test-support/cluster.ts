/**
 * A cluster for tests: a real Redis ({@link TestRedis}) and N node child processes
 * ({@link spawnNode}) on free loopback ports sharing it, named `node-1` … `node-N`, with one
 * JWT secret and admin token. In front of them stands a load balancer: one loopback port per
 * node that forwards TCP connections to that node while it takes new clients, and round-robin
 * to the others that do once it was killed or told to drain — so SDK clients "on node 2"
 * reconnect to the other nodes, as they would behind nginx. `useCluster()` starts one for a
 * describe block and tears everything down after it, even when a test or the start-up failed.
 * A room's shared state can be read straight from Redis ({@link TestCluster.roomLog},
 * {@link TestCluster.presence}), and {@link TestCluster.recorded} gives an SDK client that
 * records what reached the application, with the frame each notification came in.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll } from 'vitest';
import { Redis } from 'ioredis';
import {
  TradingRoomClient,
  type ClientOptions,
  type ConnectionState,
  type JoinResult,
  type Notification,
  type ResyncCause,
  type SocketFactory,
  type WebSocketLike,
} from '../signaling/client/index.js';
import { nodeSocketFactory } from '../signaling/client/node.js';
import WebSocket from 'ws';
import { RawSocket, testToken, type TokenOptions } from './harness.js';
import { spawnNode, type ChildExit, type ChildNode } from './child-node.js';
import { TestRedis } from './redis.js';

export interface TestClusterOptions {
  /** How many nodes (default 3). */
  readonly nodes?: number;
  /** `NODE_TTL_MS` of every node (default 2000: dead nodes show quickly). */
  readonly nodeTtlMs?: number;
  /** More variables for every node (they win over the harness's). */
  readonly env?: Readonly<Record<string, string>>;
  /** Variables for one node, by index. */
  readonly nodeEnv?: (index: number) => Readonly<Record<string, string>>;
}

/** A node as `GET /admin/nodes` lists it. */
export interface AdminNode {
  readonly nodeId: string;
  readonly state: 'running' | 'draining';
  readonly connections: number;
  readonly rooms: number;
  readonly heartbeatAt: number;
  readonly alive: boolean;
  readonly [field: string]: unknown;
}

/** Where a client connects: through the balancer's entry for a node (default), or to the node itself. */
export interface ClusterClientOptions extends TokenOptions, Partial<ClientOptions> {
  /** The node's index (0-based). */
  readonly node: number;
  /** Skip the balancer: a reconnect goes to the same node, dead or not. */
  readonly direct?: boolean;
}

/** A durable event as the room's log in Redis holds it (the stream `P:{room:ID}:log`). */
export interface LoggedEvent {
  readonly seq: number;
  readonly event: string;
  /** The frame every node delivers for it, byte for byte. */
  readonly frame: string;
}

/** A participant as the room's presence hash in Redis holds it. */
export interface PresenceRecord {
  readonly participantId: string;
  readonly userId: string;
  readonly role: string;
  readonly nodeId: string;
  readonly [field: string]: unknown;
}

/** A notification the application got, with the text frame it arrived in. */
export interface ReceivedNotification {
  readonly notification: Notification;
  readonly frame: string;
  readonly seq: number | undefined;
}

/** An SDK client that records, from its first frame on, what reached it. */
export interface RecordedClient {
  readonly userId: string;
  readonly client: TradingRoomClient;
  /** The first join's result. */
  readonly join: JoinResult;
  /** Every notification the application got (after the SDK's de-duplication), in order. */
  readonly received: ReceivedNotification[];
  /** Every text frame handed to the SDK, over all its sockets, in order. */
  readonly frames: string[];
  /** Every change of the connection's state after the first join, with `Date.now()`. */
  readonly states: { readonly state: ConnectionState; readonly at: number }[];
  readonly resyncs: ResyncCause[];
  readonly closed: Promise<{ code: number; reason: string }>;
}

export class TestCluster {
  readonly redis: TestRedis;
  readonly nodes: readonly ChildNode[];
  readonly nodeTtlMs: number;
  /** `REDIS_KEY_PREFIX` of the nodes. */
  readonly keyPrefix: string;
  readonly #balancer: Balancer;
  readonly #clients = new Set<{ close(): void }>();

  private constructor(redis: TestRedis, nodes: ChildNode[], nodeTtlMs: number, balancer: Balancer, keyPrefix: string) {
    this.redis = redis;
    this.nodes = nodes;
    this.nodeTtlMs = nodeTtlMs;
    this.#balancer = balancer;
    this.keyPrefix = keyPrefix;
  }

  /** Starts Redis, then the nodes (together), then the balancer; on any failure closes what started. */
  static async start(options: TestClusterOptions = {}): Promise<TestCluster> {
    const count = options.nodes ?? 3;
    const nodeTtlMs = options.nodeTtlMs ?? 2000;
    const redis = await TestRedis.start();
    const spawned = await Promise.allSettled(
      Array.from({ length: count }, (_, i) =>
        spawnNode({
          REDIS_URL: redis.url,
          NODE_ID: `node-${i + 1}`,
          NODE_TTL_MS: String(nodeTtlMs),
          ...options.env,
          ...options.nodeEnv?.(i),
        }),
      ),
    );
    const nodes = spawned.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const failure = spawned.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    let balancer: Balancer | undefined;
    try {
      if (failure) throw failure.reason;
      balancer = await Balancer.start(nodes);
      const keyPrefix = options.env?.REDIS_KEY_PREFIX ?? 'trading-room';
      return new TestCluster(redis, nodes, nodeTtlMs, balancer, keyPrefix);
    } catch (error) {
      await balancer?.close();
      await Promise.all(nodes.map((n) => n.kill()));
      await redis.close();
      throw error;
    }
  }

  node(index: number): ChildNode {
    const node = this.nodes[index];
    if (!node) throw new RangeError(`no node ${index} (the cluster has ${this.nodes.length})`);
    return node;
  }

  /** The WebSocket URL of the balancer's entry for node `index`. */
  entryUrl(index: number): string {
    this.node(index);
    return `ws://127.0.0.1:${this.#balancer.port(index)}/ws`;
  }

  /** An access token every node accepts. */
  token(userId: string, options: TokenOptions = {}): Promise<string> {
    return testToken(userId, options);
  }

  /** An SDK client aimed at node `options.node` (not connected yet); closed by {@link close}. */
  async client(userId: string, options: ClusterClientOptions): Promise<TradingRoomClient> {
    const { node, direct = false, ...rest } = options;
    const client = new TradingRoomClient({
      url: direct ? this.node(node).wsUrl : this.entryUrl(node),
      token: await this.token(userId, rest),
      createSocket: nodeSocketFactory,
      reconnect: { initialDelayMs: 50, maxDelayMs: 500 },
      ...rest,
    });
    this.#clients.add(client);
    return client;
  }

  /** An SDK client on node `options.node`, connected and joined. */
  async joined(
    userId: string,
    options: ClusterClientOptions,
  ): Promise<{ client: TradingRoomClient; join: JoinResult }> {
    const client = await this.client(userId, options);
    return { client, join: await client.connect() };
  }

  /**
   * An SDK client on node `options.node`, connected and joined, that records every notification
   * (with its frame), every frame, its state changes and `resync`s from the start.
   */
  async recorded(userId: string, options: ClusterClientOptions): Promise<RecordedClient> {
    const received: ReceivedNotification[] = [];
    const frames: string[] = [];
    const states: { state: ConnectionState; at: number }[] = [];
    const resyncs: ResyncCause[] = [];
    let frame = '';
    const createSocket = tappedSocketFactory(nodeSocketFactory, (data) => {
      frames.push(data);
      frame = data;
    });
    const client = await this.client(userId, { createSocket, ...options });
    client.on('notification', (notification) => {
      const seq = (notification as { seq?: number }).seq;
      received.push({ notification, frame, seq });
    });
    client.on('resync', (_join, cause) => resyncs.push(cause));
    const closed = new Promise<{ code: number; reason: string }>((resolve) => client.on('closed', resolve));
    const join = await client.connect();
    client.on('state', (state) => states.push({ state, at: Date.now() }));
    return { userId, client, join, received, frames, states, resyncs, closed };
  }

  /** The key of a room's `part` (`log`, `meta`, `presence`, …) in Redis. */
  roomKey(roomId: string, part: string): string {
    return `${this.keyPrefix}:{room:${roomId}}:${part}`;
  }

  /** The room's retained durable events, read straight from Redis (`XRANGE` on its log). */
  async roomLog(roomId: string): Promise<LoggedEvent[]> {
    const entries = await this.#withRedis((redis) => redis.xrange(this.roomKey(roomId, 'log'), '-', '+'));
    return entries.map(([id, fields]) => {
      const field = (name: string): string => fields[fields.indexOf(name) + 1] ?? '';
      return { seq: Number(id.split('-')[0]), event: field('e'), frame: field('f') };
    });
  }

  /** The epoch of the room's history in Redis (undefined when Redis has none). */
  async roomEpoch(roomId: string): Promise<string | undefined> {
    return (await this.#withRedis((redis) => redis.hget(this.roomKey(roomId, 'meta'), 'epoch'))) ?? undefined;
  }

  /** The room's presence in Redis, by participant id. */
  async presence(roomId: string): Promise<Map<string, PresenceRecord>> {
    const values = await this.#withRedis((redis) => redis.hvals(this.roomKey(roomId, 'presence')));
    const records = values.map((v) => JSON.parse(v) as PresenceRecord);
    return new Map(records.map((r) => [r.participantId, r]));
  }

  async #withRedis<T>(use: (redis: Redis) => Promise<T>): Promise<T> {
    const redis = new Redis(this.redis.port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 });
    redis.on('error', () => {}); // a refused connect rejects connect() too
    try {
      await redis.connect();
      return await use(redis);
    } finally {
      redis.disconnect();
    }
  }

  /** A raw socket straight to node `index`, open (rejects with `UpgradeRefused` when refused). */
  async raw(index: number, token: string): Promise<RawSocket> {
    const ws = new WebSocket(`${this.node(index).wsUrl}?token=${encodeURIComponent(token)}`, {
      perMessageDeflate: false,
    });
    const raw = new RawSocket(ws);
    this.#clients.add({ close: () => ws.terminate() });
    raw.closed.catch(() => {});
    await raw.opened;
    return raw;
  }

  /** `GET /admin/nodes` on node `index`. */
  async adminNodes(index: number): Promise<AdminNode[]> {
    const response = await this.node(index).http('/admin/nodes', { admin: true });
    if (response.status !== 200) throw new Error(`/admin/nodes answered ${response.status}: ${await response.text()}`);
    return ((await response.json()) as { nodes: AdminNode[] }).nodes;
  }

  /** `kill -9` of node `index`; the balancer stops sending it clients. */
  async kill(index: number): Promise<void> {
    this.#balancer.stopRouting(index);
    await this.node(index).kill();
  }

  /** SIGTERM to node `index` (a drain); the balancer stops sending it clients at once. Resolves with its exit. */
  async drain(index: number, timeoutMs?: number): Promise<ChildExit> {
    this.#balancer.stopRouting(index);
    return this.node(index).terminate(timeoutMs);
  }

  /** Closes every client, the balancer, every node (`kill -9`) and Redis. Safe to call twice. */
  async close(): Promise<void> {
    for (const client of this.#clients) client.close();
    this.#clients.clear();
    await this.#balancer.close();
    await Promise.all(this.nodes.map((n) => n.kill()));
    await this.redis.close();
  }
}

/**
 * A cluster for the enclosing describe block: started before its tests, closed after them
 * (also when starting failed half-way). Read it inside tests: `const cluster = useCluster(); …
 * cluster().node(0)`.
 */
export function useCluster(options: TestClusterOptions = {}): () => TestCluster {
  let cluster: TestCluster | undefined;
  beforeAll(async () => {
    cluster = await TestCluster.start(options);
  }, 120_000);
  afterAll(async () => {
    await cluster?.close();
  }, 60_000);
  return () => {
    if (!cluster) throw new Error('the cluster did not start');
    return cluster;
  };
}

/** The durable notifications a client got, split where `room.resync` restarted the numbering. */
export function durableSegments(received: readonly ReceivedNotification[]): {
  readonly resync: { readonly epoch: string; readonly lastSeq: number } | undefined;
  readonly events: ReceivedNotification[];
}[] {
  const segments: { resync: { epoch: string; lastSeq: number } | undefined; events: ReceivedNotification[] }[] = [
    { resync: undefined, events: [] },
  ];
  for (const r of received) {
    if (r.notification.event === 'room.resync') {
      segments.push({ resync: r.notification.data as { epoch: string; lastSeq: number }, events: [] });
    } else if (r.seq !== undefined) segments.at(-1)?.events.push(r);
  }
  return segments;
}

/**
 * Where the durable events a client got differ from the room's log after `afterSeq`: each logged
 * event once, in order, in the same frame, nothing else. Undefined when they do not differ.
 */
export function logMismatch(
  events: readonly { readonly seq: number | undefined; readonly frame: string }[],
  log: readonly LoggedEvent[],
  afterSeq: number,
): string | undefined {
  const expected = log.filter((e) => e.seq > afterSeq);
  for (let i = 0; i < Math.max(events.length, expected.length); i++) {
    const got = events[i];
    const want = expected[i];
    if (!got) return `missing seq ${want?.seq} and ${expected.length - i - 1} more (got ${events.length})`;
    if (!want) return `seq ${got.seq} is not in the log (log ends at ${log.at(-1)?.seq ?? afterSeq})`;
    if (got.seq !== want.seq) return `expected seq ${want.seq} at index ${i}, got ${got.seq}`;
    if (got.frame !== want.frame) return `seq ${want.seq}: got ${got.frame}, the log holds ${want.frame}`;
  }
  return undefined;
}

/**
 * {@link logMismatch} of everything a client's application got, from its first join on: every
 * event after the join's `lastSeq`, and possibly a few before it (events fanned out to the socket
 * while the join was being answered arrive ahead of the answer). For a client that saw no
 * `room.resync`.
 */
export function clientLogMismatch(c: RecordedClient, log: readonly LoggedEvent[]): string | undefined {
  const events = c.received.filter((r) => r.seq !== undefined);
  return logMismatch(events, log, Math.min(c.join.lastSeq, (events[0]?.seq ?? Infinity) - 1));
}

/** Durable `seq`s handed to the SDK more than once within one epoch, over all its sockets. */
export function repeatedOnWire(frames: readonly string[]): number[] {
  const repeated: number[] = [];
  let seen = new Set<number>();
  for (const frame of frames) {
    const message = JSON.parse(frame) as { event?: string; seq?: number };
    if (message.event === 'room.resync') seen = new Set();
    if (message.seq === undefined) continue;
    if (seen.has(message.seq)) repeated.push(message.seq);
    seen.add(message.seq);
  }
  return repeated;
}

/**
 * A socket factory that hands every text frame to `onFrame` right before the SDK handles it (so a
 * notification the SDK emits can be paired with its frame).
 */
export function tappedSocketFactory(create: SocketFactory, onFrame: (data: string) => void): SocketFactory {
  return (url) => {
    const inner = create(url);
    const tapped: WebSocketLike = {
      get readyState() {
        return inner.readyState;
      },
      get upgradeRefusal() {
        return inner.upgradeRefusal;
      },
      send: (data) => inner.send(data),
      close: (code, reason) => inner.close(code, reason),
      get onopen() {
        return inner.onopen;
      },
      set onopen(listener) {
        inner.onopen = listener;
      },
      get onmessage() {
        return inner.onmessage;
      },
      set onmessage(listener) {
        inner.onmessage = listener
          ? (event) => {
              onFrame(String(event.data));
              listener(event);
            }
          : null;
      },
      get onclose() {
        return inner.onclose;
      },
      set onclose(listener) {
        inner.onclose = listener;
      },
      get onerror() {
        return inner.onerror;
      },
      set onerror(listener) {
        inner.onerror = listener;
      },
    };
    return tapped;
  };
}

/**
 * One loopback port per node; each forwards to its node while routable, else round-robin to the
 * other routable ones.
 */
class Balancer {
  readonly #nodes: readonly ChildNode[];
  readonly #servers: Server[] = [];
  readonly #routable: boolean[];
  readonly #sockets = new Set<Socket>();
  #nextFallback = 0;

  private constructor(nodes: readonly ChildNode[]) {
    this.#nodes = nodes;
    this.#routable = nodes.map(() => true);
  }

  static async start(nodes: readonly ChildNode[]): Promise<Balancer> {
    const balancer = new Balancer(nodes);
    for (let i = 0; i < nodes.length; i++) {
      const server = createServer((socket) => balancer.#forward(i, socket));
      balancer.#servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
    }
    return balancer;
  }

  port(index: number): number {
    return (this.#servers[index]?.address() as { port: number }).port;
  }

  stopRouting(index: number): void {
    this.#routable[index] = false;
  }

  #forward(index: number, client: Socket): void {
    const open = (i: number): boolean => this.#routable[i] === true && this.#nodes[i]?.alive === true;
    const others = this.#nodes.map((_, i) => i).filter((i) => i !== index && open(i));
    const target = open(index) ? index : others[this.#nextFallback++ % Math.max(1, others.length)];
    if (target === undefined) {
      client.destroy();
      return;
    }
    const upstream = connect((this.#nodes[target] as ChildNode).port, '127.0.0.1');
    for (const socket of [client, upstream]) {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
      socket.on('error', () => {}); // a reset on one side closes the other below
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await Promise.all(this.#servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}
