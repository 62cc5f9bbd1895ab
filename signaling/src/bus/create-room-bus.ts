/**
 * Picks the room bus from plain options (the configuration's Redis settings): a Redis Cluster
 * from seed nodes, a Sentinel-managed master, a single Redis from a URL, or — with none of them —
 * the in-memory bus of a node that runs alone.
 */
import { LocalRoomBus } from './local-room-bus.js';
import type { HostPort, RedisTarget } from './redis-connections.js';
import { RedisRoomBus, type RoomOutboxOptions } from './redis-room-bus.js';
import type { RetentionOptions, RoomBus } from './room-bus.js';

export interface RoomBusOptions {
  readonly retention: RetentionOptions;
  /** `REDIS_URL`: a single server; with sentinels or cluster nodes, only credentials and TLS. */
  readonly redisUrl?: string | undefined;
  /** `REDIS_CLUSTER_NODES`: `host:port` seeds of a Redis Cluster. */
  readonly redisClusterNodes?: readonly string[] | undefined;
  /** `REDIS_SENTINELS` (`host:port`) and `REDIS_SENTINEL_NAME` (the master's name). */
  readonly redisSentinels?: readonly string[] | undefined;
  readonly redisSentinelName?: string | undefined;
  /** `REDIS_KEY_PREFIX`. */
  readonly redisKeyPrefix?: string | undefined;
  /** Names this node's Redis connections (`CLIENT LIST`). */
  readonly nodeId?: string | undefined;
  readonly onListenerError?: (error: unknown) => void;
  /** Background failures of the Redis bus (repairs, connection errors). */
  readonly onError?: (error: unknown, what: string) => void;
  /** The webhook outbox the Redis bus's publish script appends to (webhooks on, with Redis). */
  readonly outbox?: RoomOutboxOptions | undefined;
}

export function createRoomBus(options: RoomBusOptions): RoomBus {
  const target = redisTargetOf(options);
  if (!target) return new LocalRoomBus(options.retention, options.onListenerError);
  return new RedisRoomBus({
    target,
    retention: options.retention,
    keyPrefix: options.redisKeyPrefix,
    connectionName: options.nodeId ? `trading-room-bus-${options.nodeId.replace(/[^\w.-]/g, '-')}` : undefined,
    onListenerError: options.onListenerError,
    onError: options.onError,
    outbox: options.outbox,
  });
}

/** Which Redis the options name, if any. */
export function redisTargetOf(options: RoomBusOptions): RedisTarget | undefined {
  const clusterNodes = options.redisClusterNodes ?? [];
  const sentinels = options.redisSentinels ?? [];
  if (clusterNodes.length > 0 && sentinels.length > 0) {
    throw new RangeError('Redis Cluster nodes and Sentinels exclude each other');
  }
  if (clusterNodes.length > 0)
    return { mode: 'cluster', nodes: clusterNodes.map(parseHostPort), url: options.redisUrl };
  if (sentinels.length > 0) {
    if (!options.redisSentinelName) throw new RangeError('Sentinels need the name of the master they watch');
    return {
      mode: 'sentinel',
      sentinels: sentinels.map(parseHostPort),
      name: options.redisSentinelName,
      url: options.redisUrl,
    };
  }
  return options.redisUrl ? { mode: 'single', url: options.redisUrl } : undefined;
}

/** `host:port`, `[v6]:port`; the port defaults to 6379 (26379 is Sentinel's, give it). */
export function parseHostPort(address: string): HostPort {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/.exec(address.trim());
  const port = Number(match?.[3] ?? 6379);
  const host = match?.[1] ?? match?.[2];
  if (!host || !Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new RangeError(`not a host:port address: ${JSON.stringify(address)}`);
  }
  return { host, port };
}
