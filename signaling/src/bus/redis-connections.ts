/**
 * The Redis connections of one node's room bus, for a single server, a Sentinel-managed master
 * or a Redis Cluster. Two rules keep the bus exact: a command cut off in flight is never sent
 * again (`autoResendUnfulfilledCommands: false`: a resent publish script would number one event
 * twice), and subscriptions are restored by the bus itself after a reconnect (it must repair
 * the room from its stream right after), not silently by the client.
 */
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** Where Redis is; `url` of the Sentinel and Cluster forms only carries credentials and TLS. */
export type RedisTarget =
  | { readonly mode: 'single'; readonly url: string }
  | { readonly mode: 'sentinel'; readonly sentinels: readonly HostPort[]; readonly name: string; readonly url?: string }
  | { readonly mode: 'cluster'; readonly nodes: readonly HostPort[]; readonly url?: string };

/** A client the bus sends commands to: a server, or a whole Cluster. */
export type RedisClient = Redis | Cluster;

export interface RedisConnections {
  readonly commands: RedisClient;
  /**
   * Where the bus subscribes: a second connection (`message` events), or on a Cluster the
   * Cluster itself with one sharded subscriber per master (`smessage` events).
   */
  readonly subscriber: RedisClient;
  /** Sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`): on a Cluster, where a message costs one shard. */
  readonly sharded: boolean;
  /** Resolves when every master answered a PING. */
  ping(): Promise<void>;
  /** Closes every connection at once (commands in flight are rejected). */
  disconnect(): void;
}

const COMMAND_OPTIONS: RedisOptions = {
  autoResendUnfulfilledCommands: false,
  // A command while the connection is down fails at once (the bus reports it unavailable).
  enableOfflineQueue: false,
  // A command in flight when the connection drops fails at once too: without this ioredis keeps
  // it until the reconnect, then drops it without settling (not resent), and its caller hangs.
  maxRetriesPerRequest: 0,
};

const SUBSCRIBER_OPTIONS: RedisOptions = { autoResendUnfulfilledCommands: false, autoResubscribe: false };

/** Opens (lazily: connecting starts at once, nothing waits for it) the connections for `target`. */
export function openRedisConnections(target: RedisTarget, connectionName: string): RedisConnections {
  if (target.mode === 'cluster') return openCluster(target, connectionName);
  const base: RedisOptions =
    target.mode === 'single'
      ? {}
      : { ...credentialsOf(target.url), sentinels: target.sentinels.map((s) => ({ ...s })), name: target.name };
  const open = (options: RedisOptions): Redis =>
    target.mode === 'single'
      ? new Redis(target.url, { ...options, connectionName })
      : new Redis({ ...base, ...options, connectionName });
  const commands = open(COMMAND_OPTIONS);
  const subscriber = open(SUBSCRIBER_OPTIONS);
  return {
    commands,
    subscriber,
    sharded: false,
    ping: async () => {
      await commands.ping();
    },
    disconnect: () => {
      commands.disconnect();
      subscriber.disconnect();
    },
  };
}

function openCluster(target: Extract<RedisTarget, { mode: 'cluster' }>, connectionName: string): RedisConnections {
  const options: ClusterOptions = {
    shardedSubscribers: true,
    redisOptions: { ...credentialsOf(target.url), ...SUBSCRIBER_OPTIONS, connectionName },
  };
  const cluster = new Cluster(
    target.nodes.map((n) => ({ ...n })),
    options,
  );
  return {
    commands: cluster,
    subscriber: cluster,
    sharded: true,
    ping: async () => {
      const masters = cluster.nodes('master');
      if (masters.length === 0) throw new Error('no Redis Cluster master connected');
      await Promise.all(masters.map((node) => node.ping()));
    },
    disconnect: () => cluster.disconnect(),
  };
}

/** Username, password and TLS from a `redis://` / `rediss://` URL (Sentinel and Cluster forms). */
function credentialsOf(url: string | undefined): RedisOptions {
  if (!url) return {};
  const parsed = new URL(url);
  const options: RedisOptions = {};
  if (parsed.username) options.username = decodeURIComponent(parsed.username);
  if (parsed.password) options.password = decodeURIComponent(parsed.password);
  if (parsed.protocol === 'rediss:') options.tls = {};
  return options;
}
