/**
 * The outbox of a cluster, in Redis. Each room's webhook entries live in a stream of the room's
 * own hash slot (`P:{room:ID}:webhooks`), appended by the room bus's publish script in the same
 * atomic step that numbers the event: no event can be numbered without its entry, even on a Redis
 * Cluster (one script, one slot). The stream is read through a consumer group (`webhooks`): an
 * entry read by a node stays pending until that node acknowledged it (`XACK`, then `XDEL`), so a
 * node that dies leaves its entries pending, and the next reader claims them (`XAUTOCLAIM` with a
 * min-idle time) before anything newer.
 *
 * Order per room needs one reader per room at a time. Rooms are spread over `partitions` by a hash
 * of their id; each partition has a lease (`P:{webhooks:N}:lease`, `SET NX PX`, renewed every third
 * of its time) and an index of its rooms with entries (`P:{webhooks:N}:rooms`, a sorted set the
 * publishing node adds the room to after its publish). Only the lease holder reads a partition's
 * rooms, one entry after the other per room, and it starts an attempt only while its lease is
 * sure to outlive it (the attempt's timeout plus a margin): when a holder dies or is cut off, its
 * lease runs out after its last attempt ended, and the next holder claims the pending entries and
 * goes on in order. Design and reasoning: `docs/decisions.md` ("Webhooks").
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { toWebhook, webhookId, type OutboxEvent, type WebhookMessage } from './webhook-message.js';
import type { WebhookSender } from './webhook-sender.js';
import type { WebhookMetrics } from './webhook-metrics.js';
import {
  deliverWithRetry,
  type DeadLetter,
  type OutboxStats,
  type ReplayResult,
  type RetryPolicy,
  type RoomBacklog,
  type WebhookOutbox,
} from './webhook-outbox.js';

export type RedisClient = Redis | Cluster;

/** The consumer group every room's outbox stream is read through. */
export const OUTBOX_GROUP = 'webhooks';

export interface RedisOutboxOptions {
  /** A connection of the outbox's own (its commands may wait on a slow Redis). */
  readonly client: RedisClient;
  /** `REDIS_KEY_PREFIX` (no braces). */
  readonly keyPrefix: string;
  /** The room's outbox stream: in the room's hash slot, where the bus's publish script appends. */
  readonly streamKey: (roomId: string) => string;
  /** This process in the consumer groups and the leases (unique per process). */
  readonly consumer?: string;
  /** `BACKEND_WEBHOOK_PARTITIONS`: the same on every node. */
  readonly partitions: number;
  /** `BACKEND_WEBHOOK_LEASE_MS`: at least twice `attemptTimeoutMs`. */
  readonly leaseMs: number;
  /** One attempt's time budget (`BACKEND_WEBHOOK_TIMEOUT_MS`). */
  readonly attemptTimeoutMs: number;
  /** How often the held partitions' rooms are looked at. Default 200 ms. */
  readonly pollIntervalMs?: number;
  /** Dead letters kept (the stream is trimmed to about this many). Default 10 000. */
  readonly maxDeadLetters?: number;
  readonly sender: WebhookSender;
  readonly retry: RetryPolicy;
  readonly metrics?: WebhookMetrics | undefined;
  readonly log?: (level: 'info' | 'warn', fields: Record<string, unknown>, message: string) => void;
}

/** A partition of the rooms: its lease and the rooms of it being delivered here. */
interface Partition {
  readonly index: number;
  readonly roomsKey: string;
  readonly leaseKey: string;
  held: boolean;
  /** `performance.now()` until which the lease is surely this node's. */
  validUntil: number;
  readonly workers: Map<string, Promise<void>>;
}

/** What a room's worker last saw: entries left, and when its oldest was written (epoch ms). */
interface RoomDepth {
  length: number;
  oldestAt: number;
}

/** A Lua script run by SHA, sent in full when the server does not know it yet. */
class Script {
  readonly #source: string;
  readonly #sha: string;

  constructor(source: string) {
    this.#source = source;
    this.#sha = createHash('sha1').update(source).digest('hex');
  }

  async run(client: RedisClient, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    try {
      return await client.evalsha(this.#sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return client.eval(this.#source, keys.length, ...keys, ...args);
    }
  }
}

/** KEYS: stream. ARGV: group, event, epoch, seq ('' when none), time ms, frame ('' when none). */
const APPEND = new Script(`
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM') end
if ARGV[6] == '' then return redis.call('XADD', KEYS[1], '*', 'e', ARGV[2], 'p', ARGV[3], 's', ARGV[4], 't', ARGV[5]) end
return redis.call('XADD', KEYS[1], '*', 'e', ARGV[2], 'p', ARGV[3], 's', ARGV[4], 't', ARGV[5], 'f', ARGV[6])
`);

/**
 * KEYS: stream. ARGV: group, consumer, count, min idle ms, claim ('1': first claim what other
 * consumers left pending, and answer 'wait' while some of it is too fresh to claim).
 * Returns {'empty'}, {'wait'} or {'entries', {{id, {field, value, …}}, …}}: this consumer's
 * pending entries first, then new ones, oldest first.
 */
const NEXT = new Script(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {'empty'} end
if ARGV[5] == '1' then
  local cursor = '0-0'
  repeat
    cursor = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[4], cursor, 'COUNT', 100, 'JUSTID')[1]
  until cursor == '0-0'
  local consumers = redis.call('XPENDING', KEYS[1], ARGV[1])[4]
  if consumers then
    for _, c in ipairs(consumers) do
      if c[1] ~= ARGV[2] then return {'wait'} end
    end
  end
end
for _, from in ipairs({'0', '>'}) do
  local read = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], from)
  if read and read[1] and #read[1][2] > 0 then return {'entries', read[1][2]} end
end
return {'empty'}
`);

/** KEYS: stream. ARGV: group, entry id. Acknowledges and removes the entry; returns what is left. */
const ACK = new Script(`
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return redis.call('XLEN', KEYS[1])
`);

/** KEYS: stream. Deletes an empty stream (and its group); 1 when the stream is gone. */
const FINISH = new Script(`
if redis.call('XLEN', KEYS[1]) > 0 then return 0 end
redis.call('DEL', KEYS[1])
return 1
`);

/**
 * KEYS: stream. The room's backlog: {0} when nothing waits, else {length, {id, {field, value, …}}}
 * with the stream's first entry. An entry leaves the stream when it is acknowledged (ACK deletes
 * it), so every entry left is unacknowledged — read and pending with a consumer, or not read yet —
 * and the first is the oldest. XLEN is O(1); the first entry O(log N) (at most one stream node of
 * deleted entries is stepped over).
 */
const BACKLOG = new Script(`
local length = redis.call('XLEN', KEYS[1])
if length == 0 then return {0} end
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
if not first then return {0} end
return {length, first}
`);

/** KEYS: lease. ARGV: holder, ms. Renews a lease this holder has; 1 when it had it. */
const RENEW = new Script(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`);

/** KEYS: lease. ARGV: holder. Gives a lease back. */
const RELEASE = new Script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
`);

const BATCH = 100;
/** Rooms of one partition delivered at once, at most. */
const ROOMS_PER_SCAN = 200;

export class RedisOutbox implements WebhookOutbox {
  readonly #options: RedisOutboxOptions;
  readonly #client: RedisClient;
  readonly #consumer: string;
  readonly #partitions: Partition[];
  readonly #deadKey: string;
  readonly #pollMs: number;
  readonly #stop = new AbortController();
  readonly #depths = new Map<string, RoomDepth>();
  /** Rooms whose index entry could not be written yet (Redis was away): written at the next tick. */
  readonly #unindexed = new Set<string>();
  #timers: NodeJS.Timeout[] = [];
  #deadLetterCount = 0;
  #redisDown = false;
  #started = false;
  #closed = false;

  constructor(options: RedisOutboxOptions) {
    if (/[{}]/.test(options.keyPrefix)) throw new RangeError('the Redis key prefix must not contain braces');
    if (options.leaseMs < 2 * options.attemptTimeoutMs) {
      throw new RangeError('the partition lease must last at least twice the attempt timeout');
    }
    this.#options = options;
    this.#client = options.client;
    this.#consumer = options.consumer ?? randomBytes(8).toString('base64url');
    this.#pollMs = options.pollIntervalMs ?? 200;
    this.#deadKey = `${options.keyPrefix}:{webhooks}:dead`;
    this.#partitions = Array.from({ length: options.partitions }, (_, index) => ({
      index,
      roomsKey: `${options.keyPrefix}:{webhooks:${index}}:rooms`,
      leaseKey: `${options.keyPrefix}:{webhooks:${index}}:lease`,
      held: false,
      validUntil: 0,
      workers: new Map(),
    }));
  }

  /** This process's name in the consumer groups and the leases. */
  get consumer(): string {
    return this.#consumer;
  }

  /** The partitions this node holds now. */
  heldPartitions(): number[] {
    return this.#partitions.filter((p) => p.held).map((p) => p.index);
  }

  /** Which partition a room belongs to (the same on every node). */
  partitionOf(roomId: string): number {
    return partitionOf(roomId, this.#partitions.length);
  }

  /**
   * The bus's publish script appended to the room's stream: list the room in its partition's
   * index (the holder delivers only indexed rooms). A failure is retried at the next tick; a node
   * that dies in between leaves the room unindexed until its next entry (see `docs/decisions.md`).
   */
  appended(roomId: string): void {
    if (this.#closed) return;
    void this.#index(roomId);
  }

  async #index(roomId: string): Promise<void> {
    const partition = this.#partitions[this.partitionOf(roomId)] as Partition;
    try {
      await this.#client.zadd(partition.roomsKey, 'NX', Date.now(), roomId);
      this.#unindexed.delete(roomId);
    } catch (error) {
      this.#unindexed.add(roomId);
      this.#failed(error);
    }
  }

  /**
   * Appends an entry the bus's scripts do not write themselves (the room's durable events,
   * `room.started` and `room.finished` are appended by them, atomically); a failure is counted as a
   * `redis_unavailable` drop.
   */
  enqueue(event: OutboxEvent): void {
    if (this.#closed) {
      this.#options.metrics?.dropped.inc({ reason: 'shutdown' });
      return;
    }
    void (async () => {
      try {
        await APPEND.run(
          this.#client,
          [this.#options.streamKey(event.roomId)],
          [OUTBOX_GROUP, event.event, event.epoch, event.seq ?? '', event.timestampMs, event.frame ?? ''],
        );
      } catch (error) {
        this.#options.metrics?.dropped.inc({ reason: 'redis_unavailable' });
        this.#options.log?.('warn', { err: error, roomId: event.roomId, event: event.event }, 'webhook not enqueued');
        return;
      }
      await this.#index(event.roomId);
    })();
  }

  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    const leaseEveryMs = Math.max(50, Math.floor(this.#options.leaseMs / 3));
    this.#timers = [
      setInterval(() => void this.#leaseTick(), leaseEveryMs),
      setInterval(() => void this.#scan(), this.#pollMs),
    ];
    for (const timer of this.#timers) timer.unref();
    void this.#leaseTick();
  }

  /** Takes free partitions, renews held ones, drops those lost; retries index writes; counts dead letters. */
  async #leaseTick(): Promise<void> {
    if (this.#closed) return;
    const { leaseMs } = this.#options;
    await Promise.all(
      this.#partitions.map(async (partition) => {
        const sentAt = performance.now();
        try {
          const ok = partition.held
            ? (await RENEW.run(this.#client, [partition.leaseKey], [this.#consumer, leaseMs])) === 1
            : (await this.#client.set(partition.leaseKey, this.#consumer, 'PX', leaseMs, 'NX')) === 'OK';
          if (this.#closed) return;
          if (ok) {
            if (!partition.held) this.#options.log?.('info', { partition: partition.index }, 'webhook partition taken');
            partition.held = true;
            partition.validUntil = sentAt + leaseMs;
          } else if (partition.held) {
            partition.held = false;
            this.#options.log?.('warn', { partition: partition.index }, 'webhook partition lost to another node');
          }
          this.#recovered();
        } catch (error) {
          this.#failed(error);
        }
      }),
    );
    for (const roomId of this.#unindexed) void this.#index(roomId);
    this.#client.xlen(this.#deadKey).then(
      (count) => (this.#deadLetterCount = count),
      () => {},
    );
  }

  /** Starts a worker for every indexed room of each held partition that has none. */
  async #scan(): Promise<void> {
    if (this.#closed) return;
    for (const partition of this.#partitions) {
      if (!this.#mayStart(partition)) continue;
      let rooms: string[];
      try {
        rooms = await this.#client.zrange(partition.roomsKey, '0', String(ROOMS_PER_SCAN - 1));
      } catch (error) {
        this.#failed(error);
        continue;
      }
      for (const roomId of rooms) {
        if (partition.workers.has(roomId) || this.#closed) continue;
        const worker = this.#work(partition, roomId)
          .catch((error: unknown) => this.#failed(error))
          .finally(() => {
            partition.workers.delete(roomId);
            this.#depths.delete(roomId);
          });
        partition.workers.set(roomId, worker);
      }
    }
  }

  /** The lease is this node's for longer than one more attempt can take. */
  #mayStart(partition: Partition): boolean {
    if (!partition.held || this.#closed) return false;
    return performance.now() + this.#options.attemptTimeoutMs + 250 < partition.validUntil;
  }

  /** Delivers one room's entries in order, until its stream is empty or the lease must be let go. */
  async #work(partition: Partition, roomId: string): Promise<void> {
    const key = this.#options.streamKey(roomId);
    let claim = true;
    while (this.#mayStart(partition)) {
      let next: unknown;
      try {
        next = await NEXT.run(
          this.#client,
          [key],
          [OUTBOX_GROUP, this.#consumer, BATCH, this.#options.attemptTimeoutMs, claim ? '1' : '0'],
        );
      } catch (error) {
        this.#failed(error);
        if (!(await this.#pause())) return;
        continue;
      }
      const [kind, entries] = next as [string, [string, string[]][] | undefined];
      if (kind === 'wait') {
        // Another consumer's entries are too fresh to claim: it may still be sending one.
        if (!(await this.#pause())) return;
        continue;
      }
      claim = false;
      if (kind !== 'entries' || !entries) {
        if (await this.#finish(partition, roomId, key)) return;
        continue;
      }
      for (const [entryId, fields] of entries) {
        const depth = this.#depths.get(roomId) ?? { length: entries.length, oldestAt: Date.now() };
        depth.oldestAt = Number(field(fields, 't')) || Date.now();
        this.#depths.set(roomId, depth);
        if (!(await this.#deliver(partition, roomId, key, entryId, fields))) return;
      }
    }
  }

  /** One entry: sent until acknowledged or dead-lettered, then removed; false when stopped. */
  async #deliver(
    partition: Partition,
    roomId: string,
    key: string,
    entryId: string,
    fields: string[],
  ): Promise<boolean> {
    const { sender, retry, metrics } = this.#options;
    const message = toWebhook(entryOf(roomId, fields));
    if (message) {
      const end = await deliverWithRetry(
        sender,
        message,
        retry,
        () => this.#mayStart(partition),
        this.#stop.signal,
        metrics,
      );
      if (end.end === 'stopped') return false;
      if (end.end === 'dead') {
        // Written before the entry is removed: a crash in between sends it again rather than lose it.
        if (!(await this.#untilDone(() => this.#deadLetter(message, end.attempts, end.lastError)))) return false;
        metrics?.deliveries.inc({ outcome: 'dead_lettered' });
      } else {
        metrics?.deliveries.inc({ outcome: 'delivered' });
      }
    } else {
      metrics?.dropped.inc({ reason: 'unreadable' });
    }
    return this.#untilDone(async () => {
      const left = Number(await ACK.run(this.#client, [key], [OUTBOX_GROUP, entryId]));
      const depth = this.#depths.get(roomId);
      if (depth) depth.length = left;
    });
  }

  /** Runs `step` until it succeeds (Redis may be away a while); false when the outbox closes first. */
  async #untilDone(step: () => Promise<void>): Promise<boolean> {
    for (;;) {
      try {
        await step();
        return true;
      } catch (error) {
        this.#failed(error);
        if (!(await this.#pause())) return false;
      }
    }
  }

  /** Removes an empty room from its partition; false when an entry arrived meanwhile. */
  async #finish(partition: Partition, roomId: string, key: string): Promise<boolean> {
    try {
      if ((await FINISH.run(this.#client, [key], [])) !== 1) return false;
      await this.#client.zrem(partition.roomsKey, roomId);
      // A publish between the two steps appended after the stream was deleted: list it again.
      if ((await this.#client.exists(key)) === 0) return true;
      await this.#client.zadd(partition.roomsKey, 'NX', Date.now(), roomId);
      return false;
    } catch (error) {
      this.#failed(error);
      return !(await this.#pause());
    }
  }

  async #deadLetter(message: WebhookMessage, attempts: number, lastError: string): Promise<void> {
    const max = this.#options.maxDeadLetters ?? 10_000;
    await this.#client.xadd(
      this.#deadKey,
      'MAXLEN',
      '~',
      String(max),
      '*',
      'w',
      message.id,
      'r',
      message.roomId,
      'y',
      message.type,
      'b',
      message.body,
      'a',
      String(attempts),
      'x',
      lastError,
      't',
      String(Date.now()),
    );
    this.#options.log?.(
      'warn',
      { webhookId: message.id, roomId: message.roomId, attempts, lastError },
      'webhook dead-lettered',
    );
  }

  /** Waits one poll interval; false when the outbox closed meanwhile. */
  async #pause(): Promise<boolean> {
    await new Promise((resolve) => setTimeout(resolve, this.#pollMs).unref());
    return !this.#closed;
  }

  #failed(error: unknown): void {
    if (this.#redisDown || this.#closed) return;
    this.#redisDown = true;
    this.#options.log?.('warn', { err: error }, 'webhook outbox: Redis failed; retrying');
  }

  #recovered(): void {
    if (!this.#redisDown) return;
    this.#redisDown = false;
    this.#options.log?.('info', {}, 'webhook outbox: Redis answers again');
  }

  async close(deadlineMs: number): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const timer of this.#timers) clearInterval(timer);
    this.#stop.abort();
    // Attempts in flight end (each within its timeout); then the partitions go back at once.
    const workers = this.#partitions.flatMap((p) => [...p.workers.values()]);
    await Promise.race([
      Promise.allSettled(workers),
      new Promise((resolve) => setTimeout(resolve, Math.max(0, deadlineMs - Date.now())).unref()),
    ]);
    await Promise.allSettled(
      this.#partitions
        .filter((p) => p.held)
        .map((p) => {
          p.held = false;
          return RELEASE.run(this.#client, [p.leaseKey], [this.#consumer]);
        }),
    );
    this.#options.sender.close();
  }

  async deadLetters(limit: number): Promise<DeadLetter[]> {
    const entries = await this.#client.xrevrange(this.#deadKey, '+', '-', 'COUNT', limit);
    return entries.map(([id, fields]) => deadLetterOf(id, fields));
  }

  async replayDeadLetters(ids?: readonly string[]): Promise<ReplayResult> {
    const entries = ids
      ? (await Promise.all(ids.slice(0, 100).map((id) => this.#client.xrange(this.#deadKey, id, id)))).flat()
      : await this.#client.xrange(this.#deadKey, '-', '+', 'COUNT', 100);
    const replayed: string[] = [];
    const failed: { deadLetterId: string; error: string }[] = [];
    for (const [id, fields] of entries) {
      const letter = deadLetterOf(id, fields);
      const result = await this.#options.sender.send({ id: letter.webhookId, body: letter.body });
      this.#options.metrics?.replays.inc({ outcome: result.ok ? 'delivered' : 'failed' });
      if (result.ok) {
        await this.#client.xdel(this.#deadKey, id);
        replayed.push(id);
      } else {
        failed.push({ deadLetterId: id, error: result.error ?? 'not delivered' });
      }
    }
    return { replayed, failed };
  }

  /** Each room's stream length and first entry: one script per room, in the room's own slot. */
  async roomBacklogs(roomIds: readonly string[]): Promise<Map<string, RoomBacklog>> {
    const answers = await Promise.all(
      roomIds.map(async (roomId) => {
        const answer = (await BACKLOG.run(this.#client, [this.#options.streamKey(roomId)], [])) as
          [0] | [number, [string, string[]]];
        if (answer[0] === 0 || answer.length < 2) return undefined;
        const [pending, [entryId, fields]] = answer as [number, [string, string[]]];
        const entry = entryOf(roomId, fields);
        const backlog: RoomBacklog = {
          pending,
          oldestAt: Number(field(fields, 't')) || Number(entryId.split('-')[0]),
          oldestWebhookId: webhookId(entry),
          oldestEvent: entry.event,
        };
        return [roomId, backlog] as const;
      }),
    );
    return new Map(answers.filter((a) => a !== undefined));
  }

  stats(): OutboxStats {
    let depth = 0;
    let oldest = Infinity;
    for (const room of this.#depths.values()) {
      depth += room.length;
      if (room.length > 0 && room.oldestAt < oldest) oldest = room.oldestAt;
    }
    return {
      depth,
      oldestPendingMs: oldest === Infinity ? 0 : Math.max(0, Date.now() - oldest),
      deadLetters: this.#deadLetterCount,
    };
  }
}

/** The partition of a room among `partitions` (a hash of its id: the same on every node). */
export function partitionOf(roomId: string, partitions: number): number {
  return createHash('sha1').update(roomId).digest().readUInt32BE(0) % partitions;
}

function field(fields: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}

/**
 * An outbox stream entry: `e` event, `p` epoch, `s` seq ('' or 0: none), `t` time (ms), `f` the
 * notification frame (room events only). The bus's publish script writes the same fields.
 */
function entryOf(roomId: string, fields: readonly string[]): OutboxEvent {
  const seq = Number(field(fields, 's'));
  const event = field(fields, 'e') ?? '';
  return {
    roomId,
    event,
    epoch: field(fields, 'p') ?? '',
    seq: seq > 0 ? seq : undefined,
    timestampMs: Number(field(fields, 't')) || Date.now(),
    frame: field(fields, 'f'),
  };
}

function deadLetterOf(id: string, fields: readonly string[]): DeadLetter {
  return {
    deadLetterId: id,
    webhookId: field(fields, 'w') ?? '',
    roomId: field(fields, 'r') ?? '',
    type: field(fields, 'y') ?? '',
    body: field(fields, 'b') ?? '',
    attempts: Number(field(fields, 'a') ?? 0),
    lastError: field(fields, 'x') ?? '',
    deadAt: Number(field(fields, 't') ?? 0),
  };
}
