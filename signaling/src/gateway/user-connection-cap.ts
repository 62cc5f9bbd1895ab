/**
 * The per-user connection cap (`MAX_CONNECTIONS_PER_USER`): how many sockets one user may hold
 * open at once. {@link LocalUserConnectionCap} counts this node's sockets; in a cluster,
 * {@link RedisUserConnectionCap} counts every node's in one Redis hash per user, with a field per
 * node process that stops counting as soon as that process is seen dead, so a crashed node's
 * sockets do not hold users out.
 */
import { LuaScript } from '../bus/redis-scripts.js';
import type { RedisClient } from '../bus/redis-connections.js';

/** Un-counts one admitted connection; calling it again does nothing. */
export type ReleaseConnection = () => void;

export interface UserConnectionCap {
  /** Counts one more connection of `userId`; resolves its release, or undefined when the user is at the cap. */
  acquire(userId: string): Promise<ReleaseConnection | undefined>;
}

/** The cap over this node's connections only: a node that runs alone. */
export class LocalUserConnectionCap implements UserConnectionCap {
  readonly #max: number;
  readonly #counts = new Map<string, number>();

  constructor(max: number) {
    this.#max = max;
  }

  /** Connections of `userId` counted here. */
  count(userId: string): number {
    return this.#counts.get(userId) ?? 0;
  }

  acquire(userId: string): Promise<ReleaseConnection | undefined> {
    return Promise.resolve(this.tryAcquire(userId));
  }

  /** {@link acquire}, synchronously. */
  tryAcquire(userId: string): ReleaseConnection | undefined {
    return this.count(userId) >= this.#max ? undefined : this.add(userId);
  }

  /** Counts a connection admitted elsewhere (by a cluster-wide count), whatever the cap. */
  add(userId: string): ReleaseConnection {
    this.#counts.set(userId, this.count(userId) + 1);
    return once(() => {
      const left = this.count(userId) - 1;
      if (left <= 0) this.#counts.delete(userId);
      else this.#counts.set(userId, left);
    });
  }
}

/** The node processes a cluster knows, as `nodeId/instanceId`. */
export interface ClusterMembers {
  /** Alive now (this node among them). */
  readonly live: readonly string[];
  /** Known dead: their counts are removed. Others (not yet seen, long gone) are ignored. */
  readonly dead: readonly string[];
}

export interface RedisUserConnectionCapOptions {
  readonly client: RedisClient;
  /** `REDIS_KEY_PREFIX`. */
  readonly keyPrefix: string;
  readonly max: number;
  /** This node process, `nodeId/instanceId`: its field in every user's hash. */
  readonly member: string;
  /** The cluster's members as last seen (a cached view: it is read on every upgrade). */
  readonly members: () => ClusterMembers;
  /** A user's hash expires this long after its last change. Default one day. */
  readonly keyTtlMs?: number;
  /** A Redis failure; the upgrade is then decided by this node's own count. */
  readonly onError?: (error: unknown) => void;
}

/**
 * Counts live members' fields, drops dead members' fields, and adds one to this member's when
 * the total is under the cap — atomically, so two nodes admitting the same user at once cannot
 * both take the last place. KEYS: the user's hash. ARGV: max, member, TTL ms, the number of live
 * members, the live members, the dead members. Returns `{admitted (0/1), total}`.
 */
const ACQUIRE_SCRIPT = new LuaScript(`
local live = {}
local nlive = tonumber(ARGV[4])
for i = 5, 4 + nlive do live[ARGV[i]] = true end
for i = 5 + nlive, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
live[ARGV[2]] = true
local fields = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #fields, 2 do
  if live[fields[i]] then total = total + tonumber(fields[i + 1]) end
end
if total >= tonumber(ARGV[1]) then return {0, total} end
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, total + 1}
`);

/** Takes one from this member's field, removing it at zero. KEYS: the user's hash. ARGV: member. */
const RELEASE_SCRIPT = new LuaScript(`
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
`);

/**
 * The cap across a cluster. While Redis does not answer, this node decides with its own count (a
 * user may then hold the cap on each node); connections admitted that way are never taken off
 * Redis's count. Redis restarted empty forgets the counts of connections open at the time: they
 * are not counted until they close.
 */
export class RedisUserConnectionCap implements UserConnectionCap {
  readonly #options: RedisUserConnectionCapOptions;
  readonly #local: LocalUserConnectionCap;
  readonly #keyTtlMs: number;

  constructor(options: RedisUserConnectionCapOptions) {
    this.#options = options;
    this.#local = new LocalUserConnectionCap(options.max);
    this.#keyTtlMs = options.keyTtlMs ?? 24 * 3_600_000;
  }

  async acquire(userId: string): Promise<ReleaseConnection | undefined> {
    const { client, max, member, members } = this.#options;
    const key = `${this.#options.keyPrefix}:conns:${userId}`;
    const { live, dead } = members();
    let admitted: boolean;
    try {
      const [ok] = (await ACQUIRE_SCRIPT.run(
        client,
        [key],
        [max, member, this.#keyTtlMs, live.length, ...live, ...dead.filter((m) => m !== member)],
      )) as [number, number];
      admitted = ok === 1;
    } catch (error) {
      this.#options.onError?.(error);
      return this.#local.tryAcquire(userId);
    }
    if (!admitted) return undefined;
    // This node's own count (for when Redis does not answer) follows Redis's, never refusing.
    const releaseLocal = this.#local.add(userId);
    return once(() => {
      releaseLocal();
      RELEASE_SCRIPT.run(client, [key], [member]).catch((error: unknown) => this.#options.onError?.(error));
    });
  }
}

function once(run: () => void): ReleaseConnection {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    run();
  };
}
