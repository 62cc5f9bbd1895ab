/**
 * What makes a node one of a cluster, built from the configuration's Redis target: the node
 * registry (heartbeats with the node's state and load, dead nodes), the cluster RPC, the Redis
 * connection of the shared rate limits and of the cluster-wide per-user connection cap, and a
 * view of the cluster's nodes refreshed every heartbeat period (for `/health`, metrics and the
 * cap, which must not wait for Redis). The node starts it before it listens and closes it after
 * its rooms; a clean close deregisters the node, anything else leaves it to the survivors.
 */
import type { Logger } from 'pino';
import { openRedisConnections, type RedisConnections, type RedisTarget } from '../bus/redis-connections.js';
import { BusUnavailableError } from '../bus/room-bus.js';
import { redisLimiterFactory, type LimiterFactory } from '../rate-limits.js';
import { RedisUserConnectionCap, type ClusterMembers } from '../gateway/user-connection-cap.js';
import { ClusterRpc, type RpcMethod } from './cluster-rpc.js';
import { NodeIdInUseError, NodeRegistry, type NodeLoad, type NodeStatus } from './node-registry.js';

export interface ClusterMembershipOptions {
  readonly target: RedisTarget;
  readonly nodeId: string;
  /** `REDIS_KEY_PREFIX`. */
  readonly keyPrefix: string;
  /** `NODE_TTL_MS`. */
  readonly nodeTtlMs: number;
  readonly version: string;
  /** `MAX_CONNECTIONS_PER_USER`, counted over every node. */
  readonly maxConnectionsPerUser: number;
  /** The node's state and load, read at every heartbeat. */
  readonly load: () => NodeLoad;
  readonly log: Logger;
}

/** How long a read of the node list may take before it counts as Redis not answering. */
const LIST_TIMEOUT_MS = 2000;

/**
 * One node's membership of a cluster. `Methods` types the cluster RPC (see {@link ClusterRpc}).
 */
export class ClusterMembership<Methods extends { [K in keyof Methods]: RpcMethod } = Record<string, RpcMethod>> {
  readonly nodeId: string;
  readonly registry: NodeRegistry;
  readonly rpc: ClusterRpc<Methods>;
  /** The shared (per-IP, per-user, per-method) rate limits in Redis. */
  readonly limiterFactory: LimiterFactory;
  readonly connectionCap: RedisUserConnectionCap;
  readonly #store: RedisConnections;
  readonly #log: Logger;
  readonly #nodeTtlMs: number;
  #view: { readonly nodes: readonly NodeStatus[]; readonly at: number } | undefined;
  #refreshing: Promise<unknown> | undefined;
  #refreshTimer: NodeJS.Timeout | undefined;
  #registered = false;
  #closing: Promise<void> | undefined;

  constructor(options: ClusterMembershipOptions) {
    const { target, nodeId, keyPrefix, log } = options;
    this.nodeId = nodeId;
    this.#log = log;
    this.#nodeTtlMs = options.nodeTtlMs;
    const name = (what: string): string => `trading-room-${what}-${nodeId}`;
    const onError = (error: unknown, what: string): void => {
      if (error instanceof NodeIdInUseError) log.error({ err: error }, 'cluster: another live node has this NODE_ID');
      else log.warn({ err: error, what }, 'cluster: Redis failure');
    };
    this.registry = new NodeRegistry({
      target,
      nodeId,
      keyPrefix,
      version: options.version,
      nodeTtlMs: options.nodeTtlMs,
      load: options.load,
      connectionName: name('registry'),
      onError,
    });
    this.rpc = new ClusterRpc<Methods>({ target, nodeId, keyPrefix, connectionName: name('rpc'), onError });
    this.#store = openRedisConnections(target, name('limits'));
    this.#store.commands.on('error', () => {}); // failures show as insurance limits and local counts
    if (this.#store.subscriber !== this.#store.commands) {
      this.#store.subscriber.on('error', () => {});
      this.#store.subscriber.disconnect(); // commands only
    }
    this.limiterFactory = redisLimiterFactory(this.#store.commands, `${keyPrefix}:rate`);
    this.connectionCap = new RedisUserConnectionCap({
      client: this.#store.commands,
      keyPrefix,
      max: options.maxConnectionsPerUser,
      member: this.#member(nodeId, this.registry.instanceId),
      members: () => this.members(),
    });
  }

  /**
   * Registers the node, starts listening for RPC and waits for the shared limits' connection.
   * Resolves true once all are done, or false
   * after `waitMs` (Redis unreachable, or an earlier process with this NODE_ID not reaped yet):
   * the node then runs degraded and registers as soon as it can. Rejects when another live
   * node has this NODE_ID.
   */
  async start(waitMs: number): Promise<boolean> {
    const registered = this.registry.start().then(() => {
      this.#registered = true;
    });
    const store = this.#store.commands;
    const storeReady = new Promise<void>((resolve) => {
      if (store.status === 'ready') resolve();
      else store.once('ready', () => resolve());
    });
    const ready = Promise.all([registered, this.rpc.start(), storeReady]);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), waitMs);
    });
    try {
      const started = await Promise.race([ready.then(() => true), timeout]);
      if (!started) {
        ready.catch(() => {}); // reported through the registry's onError
        this.#log.warn({ waitMs }, 'cluster: not registered yet (Redis unreachable?); starting degraded');
      }
      return started;
    } finally {
      clearTimeout(timer);
      this.#refreshTimer = setInterval(() => void this.#refresh(), Math.max(100, Math.floor(this.#nodeTtlMs / 3)));
      this.#refreshTimer.unref();
      void this.#refresh();
    }
  }

  /** Whether this node's heartbeat has been written at least once. */
  get registered(): boolean {
    return this.#registered;
  }

  /**
   * Every node Redis knows (dead ones for a while after their last heartbeat), read now, by
   * node id. Rejects with {@link BusUnavailableError} when Redis does not answer within 2 s.
   */
  async nodes(): Promise<NodeStatus[]> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new BusUnavailableError('Redis did not answer')), LIST_TIMEOUT_MS);
    });
    try {
      const nodes = (await Promise.race([this.registry.list(), timeout])).sort((a, b) =>
        a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0,
      );
      this.#view = { nodes, at: Date.now() };
      return nodes;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Live nodes in the last view (this one at least), and how old the view is. */
  view(): { readonly aliveNodes: number; readonly ageMs: number | undefined } {
    const view = this.#view;
    if (!view) return { aliveNodes: 1, ageMs: undefined };
    return { aliveNodes: Math.max(1, view.nodes.filter((n) => n.alive).length), ageMs: Date.now() - view.at };
  }

  /** The node processes of the last view, as the connection cap counts them. */
  members(): ClusterMembers {
    const nodes = this.#view?.nodes ?? [];
    const ids = (alive: boolean): string[] =>
      nodes.filter((n) => n.alive === alive).map((n) => this.#member(n.nodeId, n.instanceId));
    return { live: ids(true), dead: ids(false) };
  }

  /**
   * Stops the RPC, then deregisters the node when `clean` (never reaped: its rooms were closed
   * properly) or just stops heartbeating (survivors take over its participants), then closes
   * the Redis connections. A Redis that does not answer delays it by 2 s at most. Safe to call twice.
   */
  close(clean: boolean): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#refreshTimer);
      await this.rpc.close();
      if (clean) {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<void>((resolve) => {
          timer = setTimeout(resolve, LIST_TIMEOUT_MS);
        });
        await Promise.race([
          this.registry
            .deregister()
            .catch((error: unknown) => this.#log.warn({ err: error }, 'cluster: deregistration failed')),
          timeout,
        ]);
        clearTimeout(timer);
      }
      this.registry.stop();
      this.#store.disconnect();
    })();
    return this.#closing;
  }

  async #refresh(): Promise<void> {
    if (this.#refreshing || this.#closing) return;
    this.#refreshing = this.nodes().catch(() => {}); // the registry reports the outage
    await this.#refreshing;
    this.#refreshing = undefined;
  }

  #member(nodeId: string, instanceId: string): string {
    return `${nodeId}/${instanceId}`;
  }
}
