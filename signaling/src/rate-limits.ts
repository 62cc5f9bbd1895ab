/**
 * The contract's four rate limits, on `rate-limiter-flexible`: per IP on the upgrade, per
 * connection, per user (across all its connections) and per method per user. Stores are chosen
 * here only, so a cluster can put the per-IP and per-user ones in Redis (with an in-memory
 * insurance limiter) without touching callers.
 */
import { isIP } from 'node:net';
import type { RedisClient } from './bus/redis-connections.js';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Config, Limit } from './config.js';
import type { Role } from './protocol/common.js';

export type LimitKind = 'ip' | 'connection' | 'user' | 'method';

export interface RateLimitRejection {
  readonly kind: LimitKind;
  readonly retryAfterMs: number;
}

/** Builds a limiter for a limit; swap this for a Redis-backed factory in a cluster. */
export type LimiterFactory = (name: LimitKind, limit: Limit) => RateLimiterAbstract;

export const memoryLimiter = (name: LimitKind | 'abuse', limit: Limit): RateLimiterAbstract =>
  new RateLimiterMemory({ keyPrefix: name, points: limit.points, duration: limit.durationMs / 1000 });

/**
 * Limits shared by every node of a cluster through Redis (a server or a Redis Cluster; windows in
 * whole seconds there). Each keeps an in-memory insurance limiter that decides while Redis is
 * unreachable, and a key that went far past its limit (twice the points) is blocked in memory for
 * the rest of its window, so a flooder costs no Redis round trips.
 */
export function redisLimiterFactory(storeClient: RedisClient, keyPrefix = 'trading-room:rate'): LimiterFactory {
  return (name, limit) => {
    const durationS = Math.max(1, Math.round(limit.durationMs / 1000));
    return new RateLimiterRedis({
      storeClient,
      keyPrefix: `${keyPrefix}:${name}`,
      points: limit.points,
      duration: durationS,
      rejectIfRedisNotReady: true,
      inMemoryBlockOnConsumed: limit.points * 2,
      inMemoryBlockDuration: durationS,
      insuranceLimiter: memoryLimiter(name, limit),
    });
  };
}

type MethodLimitName = keyof Config['rateLimits']['methods'];

export class RateLimits {
  readonly enabled: boolean;
  readonly #ip: RateLimiterAbstract;
  readonly #connection: RateLimiterAbstract;
  readonly #user: RateLimiterAbstract;
  readonly #methods: ReadonlyMap<string, RateLimiterAbstract>;
  /** `chat.send` limiters of the roles with a limit of their own. */
  readonly #chatByRole: ReadonlyMap<Role, RateLimiterAbstract>;
  readonly #abuse: RateLimiterAbstract;

  constructor(config: Config['rateLimits'], factories: { shared?: LimiterFactory } = {}) {
    const shared = factories.shared ?? memoryLimiter;
    this.enabled = config.enabled;
    this.#ip = shared('ip', config.ip);
    this.#connection = memoryLimiter('connection', config.connection);
    this.#user = shared('user', config.user);
    this.#methods = new Map(
      (Object.entries(config.methods) as [MethodLimitName, Limit][]).map(([method, limit]) => [
        method,
        shared('method', limit),
      ]),
    );
    this.#chatByRole = new Map(
      (Object.entries(config.chatByRole ?? {}) as [Role, Limit][]).map(([role, limit]) => [
        role,
        shared('method', limit),
      ]),
    );
    // Rejections a connection may collect over one connection window before it is closed.
    this.#abuse = memoryLimiter('abuse', {
      points: config.abuseCloseAfterRejections,
      durationMs: config.connection.durationMs,
    });
  }

  /** One upgrade attempt from `ip` (an IPv6 address counts against its /64, see {@link ipLimitKey}). */
  async consumeUpgrade(ip: string): Promise<RateLimitRejection | undefined> {
    if (!this.enabled) return undefined;
    return consume(this.#ip, ipLimitKey(ip), 'ip');
  }

  /** One inbound message on a connection of `userId`. */
  async consumeMessage(connectionId: string, userId: string): Promise<RateLimitRejection | undefined> {
    if (!this.enabled) return undefined;
    const rejection =
      (await consume(this.#connection, connectionId, 'connection')) ?? (await consume(this.#user, userId, 'user'));
    return (
      rejection &&
      this.#untilAllowed(rejection, [
        [this.#connection, connectionId],
        [this.#user, userId],
      ])
    );
  }

  /**
   * One call of a method that has its own limit (others pass), after its message was counted.
   * `chat.send` by a `role` with a chat limit of its own counts against that one instead.
   */
  async consumeMethod(
    method: string,
    userId: string,
    connectionId: string,
    role?: Role,
  ): Promise<RateLimitRejection | undefined> {
    if (!this.enabled) return undefined;
    const byRole = role !== undefined && method === 'chat.send' ? this.#chatByRole.get(role) : undefined;
    const limiter = byRole ?? this.#methods.get(method);
    if (!limiter) return undefined;
    const key = byRole ? `${method}:${role}:${userId}` : `${method}:${userId}`;
    const rejection = await consume(limiter, key, 'method');
    return (
      rejection &&
      this.#untilAllowed(rejection, [
        [this.#connection, connectionId],
        [this.#user, userId],
        [limiter, key],
      ])
    );
  }

  /**
   * Stretches `retryAfterMs` to when every limit a retry would count against has room again,
   * so that a client retrying after it is not refused by another, longer window.
   */
  async #untilAllowed(
    rejection: RateLimitRejection,
    limits: readonly (readonly [RateLimiterAbstract, string])[],
  ): Promise<RateLimitRejection> {
    let retryAfterMs = rejection.retryAfterMs;
    for (const [limiter, key] of limits) {
      const state = await limiter.get(key);
      if (state && state.consumedPoints >= limiter.points) retryAfterMs = Math.max(retryAfterMs, state.msBeforeNext);
    }
    return { kind: rejection.kind, retryAfterMs };
  }

  /** Records a refused request; true when the connection has gone far past its limits. */
  async isAbusive(connectionId: string): Promise<boolean> {
    return (await consume(this.#abuse, connectionId, 'connection')) !== undefined;
  }

  /** Drops the per-connection counters of a closed connection. */
  forgetConnection(connectionId: string): void {
    void this.#connection.delete(connectionId).catch(() => {});
    void this.#abuse.delete(connectionId).catch(() => {});
  }
}

async function consume(
  limiter: RateLimiterAbstract,
  key: string,
  kind: LimitKind,
): Promise<RateLimitRejection | undefined> {
  try {
    await limiter.consume(key, 1);
    return undefined;
  } catch (result) {
    if (result instanceof RateLimiterRes) return { kind, retryAfterMs: Math.max(1, result.msBeforeNext) };
    throw result;
  }
}

/**
 * The per-IP limit's key for an address: an IPv4 address as it is, an IPv6 address by its /64
 * (`2001:db8:1:2::/64`). A subscriber is given at least a /64 and picks addresses in it freely,
 * so keying by the full address would give one client 2^64 budgets.
 */
export function ipLimitKey(ip: string): string {
  if (isIP(ip) !== 6) return ip;
  const address = ip.split('%')[0] as string; // no zone
  const [head = '', tail] = address.split('::');
  const groups = (part: string): string[] => (part === '' ? [] : part.split(':'));
  const width = (part: string[]): number => part.reduce((n, g) => n + (g.includes('.') ? 2 : 1), 0);
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const zeros = tail === undefined ? 0 : 8 - width(left) - width(right);
  const all = [...left, ...Array<string>(zeros).fill('0'), ...right];
  return `${all
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}
