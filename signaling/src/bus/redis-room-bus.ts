/**
 * The room bus of a cluster: rooms shared through Redis (a single server, Sentinel or Redis
 * Cluster). One Lua script numbers, logs (a stream per room) and publishes each durable event;
 * each node subscribes only to the rooms it has listeners for and delivers their events to them
 * once each, in `seq` order, gap-free: a gap, a reconnect or a lost history is repaired from the
 * stream before anything newer is delivered. Design: `docs/cluster.md`.
 */
import { randomBytes } from 'node:crypto';
import { roleSchema } from '../protocol/common.js';
import { openRedisConnections, type RedisConnections, type RedisTarget } from './redis-connections.js';
import {
  CHECK_SCRIPT,
  DROP_SCRIPT,
  GET_FIELD_SCRIPT,
  HISTORY_SCRIPT,
  PUBLISH_SCRIPT,
  PUT_FIELD_SCRIPT,
  READ_SCRIPT,
  allKeys,
  publishCall,
  roomKeys,
  type RoomKeys,
} from './redis-scripts.js';
import {
  BusUnavailableError,
  HISTORY_SCAN_MAX,
  completeFrame,
  framePrefix,
  presenceEntrySchema,
  resumeRecordSchema,
  type BusEvent,
  type BusListener,
  type BusStatus,
  type HistoryPage,
  type HistoryQuery,
  type PresenceEntry,
  type RetentionOptions,
  type RoomBus,
  type RoomHead,
  type RoomStateStore,
  type Unsubscribe,
} from './room-bus.js';
import { safeDeliver } from './safe-deliver.js';
import { deliverInSpan, publishSpan, wireTrace } from '../telemetry/spans.js';

export interface RedisRoomBusOptions {
  readonly target: RedisTarget;
  /** How much history each room keeps (`REPLAY_LOG_MAX_EVENTS`, `REPLAY_LOG_MAX_AGE_MS`). */
  readonly retention: RetentionOptions;
  /** Prefix of every key and channel (`REDIS_KEY_PREFIX`); braces are not allowed. */
  readonly keyPrefix?: string;
  /**
   * How long a room's keys outlive its last write or its last position check by a subscribed
   * node: an abandoned room's keys expire after it. Default: the log's max age, at least 10 min.
   */
  readonly keyTtlMs?: number;
  /**
   * Every so often each subscribed room's head is compared with what was delivered: a safety
   * net under gap detection and reconnect repair (it catches a lost last message). A room that
   * delivered a durable event within the last interval is skipped (that event showed its
   * position); keys' TTLs are refreshed with it at most every `keyTtlMs / 4`. Default 10 s.
   */
  readonly positionCheckIntervalMs?: number;
  /** PING period and the answer time after which the bus reports `degraded`. Defaults 1 s, 2 s. */
  readonly healthCheckIntervalMs?: number;
  readonly healthTimeoutMs?: number;
  /** Name of this node's connections in `CLIENT LIST`. */
  readonly connectionName?: string;
  readonly onListenerError?: (error: unknown) => void;
  /** Failures of background work (repairs, connection errors), for the node's log. */
  readonly onError?: (error: unknown, what: string) => void;
  /** The webhook outbox the publish script appends to (see {@link RoomOutboxOptions}). */
  readonly outbox?: RoomOutboxOptions | undefined;
}

/**
 * Webhooks on: the publish script appends the room's start (its epoch's first event) and the
 * events named in `events` to the room's outbox stream, atomically with numbering them.
 */
export interface RoomOutboxOptions {
  /** The durable event names webhooks report. */
  readonly events: ReadonlySet<string>;
  /** The consumer group the outbox stream is read through. */
  readonly group: string;
  /** Called after a publish appended to the room's outbox (its reader is told there is work). */
  readonly appended: (roomId: string) => void;
}

/** One room this node subscribes to, shared by its listeners. */
interface RoomSubscription {
  readonly roomId: string;
  readonly keys: RoomKeys;
  readonly listeners: Set<BusListener>;
  /** The epoch and newest `seq` delivered to the listeners; epoch unknown before the first sync. */
  epoch: string | undefined;
  seq: number;
  /** Messages that arrived while syncing, handled in order afterwards; undefined when live. */
  queue: BusEvent[] | undefined;
  syncing: Promise<void> | undefined;
  /** Another pass needed after the running sync (a gap in the queue, a reconnect meanwhile). */
  again: boolean;
  /** The next pass subscribes again first (after a reconnect). */
  resubscribe: boolean;
  /** Settles when the first sync reached the head. */
  ready: Promise<void>;
  closed: boolean;
  /** `Date.now()` of the last durable event delivered (or sync), and of the last TTL refresh. */
  deliveredAt: number;
  refreshedAt: number;
  /** A position check is in flight. */
  checking: boolean;
}

interface ReadResult {
  readonly epoch: string | null;
  readonly lastSeq: number;
  /** The entries start right after the seq asked for. */
  readonly complete: boolean;
  readonly entries: (BusEvent & { seq: number; epoch: string })[];
}

const DEFAULT_PREFIX = 'trading-room';
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 5000;
/** Messages kept while a room syncs; durable ones beyond it are read back from the stream. */
const MAX_QUEUED = 10_000;

export class RedisRoomBus implements RoomBus {
  readonly #connections: RedisConnections;
  readonly #prefix: string;
  readonly #retention: RetentionOptions;
  readonly #keyTtlMs: number;
  readonly #positionCheckIntervalMs: number;
  readonly #healthTimeoutMs: number;
  readonly #onListenerError: (error: unknown) => void;
  readonly #onError: (error: unknown, what: string) => void;
  readonly #outbox: RoomOutboxOptions | undefined;
  /** This bus instance in the rooms' `nodes` hashes (random: a restarted node is a new one). */
  readonly #instance = randomBytes(6).toString('base64url');
  readonly #ownEphemeral = `f|${this.#instance}|`;
  readonly #rooms = new Map<string, RoomSubscription>();
  readonly #byChannel = new Map<string, RoomSubscription>();
  readonly #statusListeners = new Set<(status: BusStatus) => void>();
  readonly #timers: NodeJS.Timeout[];
  #state: BusStatus['state'] = 'degraded';
  #everOk = false;
  #pings = 0;
  #pingStartedAt: number | undefined;
  #closed = false;

  constructor(options: RedisRoomBusOptions) {
    this.#prefix = options.keyPrefix ?? DEFAULT_PREFIX;
    if (/[{}]/.test(this.#prefix)) throw new RangeError('the Redis key prefix must not contain braces');
    this.#retention = options.retention;
    const positionCheckIntervalMs = options.positionCheckIntervalMs ?? 10_000;
    this.#positionCheckIntervalMs = positionCheckIntervalMs;
    this.#keyTtlMs = options.keyTtlMs ?? Math.max(options.retention.maxAgeMs, 10 * 60_000);
    if (this.#keyTtlMs < 2 * positionCheckIntervalMs) {
      throw new RangeError('keyTtlMs must be at least twice positionCheckIntervalMs');
    }
    this.#healthTimeoutMs = options.healthTimeoutMs ?? 2000;
    this.#onListenerError = options.onListenerError ?? (() => {});
    this.#onError = options.onError ?? (() => {});
    this.#outbox = options.outbox;
    this.#connections = openRedisConnections(options.target, options.connectionName ?? 'trading-room-bus');

    const { commands, subscriber, sharded } = this.#connections;
    const onConnectionError = (error: unknown): void => {
      if (this.#state === 'ok') this.#onError(error, 'Redis connection');
    };
    commands.on('error', onConnectionError);
    if (subscriber !== commands) subscriber.on('error', onConnectionError);
    commands.on('close', () => this.#setState('degraded'));
    commands.on('ready', () => {
      this.#checkHealth();
      // Best effort: a script the server does not know is sent in full by the call that needs it.
      for (const script of [CHECK_SCRIPT, READ_SCRIPT, PUBLISH_SCRIPT]) {
        script.load(commands).catch(() => {});
      }
    });
    if (sharded) {
      subscriber.on('smessage', (channel: string, message: string) => this.#onMessage(channel, message));
      subscriber.on('subscribersReady', () => this.#resyncAll());
    } else {
      subscriber.on('message', (channel: string, message: string) => this.#onMessage(channel, message));
      subscriber.on('ready', () => this.#resyncAll());
    }
    this.#timers = [
      setInterval(() => this.#checkHealth(), options.healthCheckIntervalMs ?? 1000),
      setInterval(() => this.#checkPositions(), positionCheckIntervalMs),
    ];
    for (const timer of this.#timers) timer.unref();
  }

  status(): BusStatus {
    return { kind: 'redis', state: this.#state };
  }

  onStatus(listener: (status: BusStatus) => void): () => void {
    const registration = (status: BusStatus): void => listener(status);
    this.#statusListeners.add(registration);
    return () => this.#statusListeners.delete(registration);
  }

  /** Resolves once Redis answered for the first time (the bus works before, degraded). */
  async connected(): Promise<void> {
    if (this.#everOk) return;
    await new Promise<void>((resolve) => {
      const stop = this.onStatus((status) => {
        if (status.state !== 'ok') return;
        stop();
        resolve();
      });
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Publishing

  publishDurable(roomId: string, event: string, data: unknown): Promise<BusEvent> {
    return publishSpan(roomId, event, (span) => this.#publishDurable(roomId, event, data, wireTrace(span)));
  }

  async #publishDurable(roomId: string, event: string, data: unknown, trace: string | undefined): Promise<BusEvent> {
    if (this.#closed) throw new BusUnavailableError('the room bus is closed');
    // Refused while degraded: the caller answers UNAVAILABLE rather than waiting on a frozen Redis.
    if (this.#state === 'degraded') throw new BusUnavailableError('Redis is unreachable');
    checkEventName(event);
    const prefix = framePrefix(event, data);
    const room = this.#rooms.get(roomId);
    const call = publishCall({
      instance: room ? this.#instance : '',
      keys: roomKeys(this.#prefix, roomId),
      candidateEpoch: newEpoch(),
      framePrefix: prefix,
      event,
      maxEvents: this.#retention.maxEvents,
      keyTtlMs: this.#keyTtlMs,
      sharded: this.#connections.sharded,
      trace,
      outbox: this.#outbox && { wanted: this.#outbox.events.has(event), group: this.#outbox.group },
    });
    const [epoch, seq, , outboxed] = (await this.#command(() =>
      PUBLISH_SCRIPT.run(this.#connections.commands, call.keys, call.args),
    )) as [string, number, number, number | undefined];
    if (outboxed) this.#outbox?.appended(roomId);
    const published: BusEvent = { roomId, event, seq, epoch, frame: completeFrame(prefix, seq), trace };
    // This node's listeners get it from the answer: the script sends the pub/sub message only when
    // another node subscribes (a copy that also comes back here is dropped as already delivered).
    const current = this.#rooms.get(roomId);
    if (current) this.#accept(current, published);
    return published;
  }

  publishEphemeral(roomId: string, event: string, data: unknown): Promise<void> {
    return publishSpan(roomId, event, (span) => this.#publishEphemeral(roomId, event, data, wireTrace(span)));
  }

  async #publishEphemeral(roomId: string, event: string, data: unknown, trace: string | undefined): Promise<void> {
    checkEventName(event);
    const { channel } = roomKeys(this.#prefix, roomId);
    const frame = completeFrame(framePrefix(event, data));
    // Marked with this instance: its own copy is dropped here, the listeners got it from the
    // answer — on the commands connection, in order with this node's durable events.
    const message = `${tracePrefix(trace)}f|${this.#instance}|${frame}`;
    const { commands, sharded } = this.#connections;
    await this.#command(() => (sharded ? commands.spublish(channel, message) : commands.publish(channel, message)));
    const room = this.#rooms.get(roomId);
    if (room) this.#accept(room, { roomId, event, frame, trace });
  }

  // ---------------------------------------------------------------------------------------------
  // Subscribing, and delivery in order

  async subscribe(roomId: string, listener: BusListener): Promise<Unsubscribe> {
    let room = this.#rooms.get(roomId);
    if (!room) {
      if (this.#closed) throw new BusUnavailableError('the room bus is closed');
      if (this.#state === 'degraded') throw new BusUnavailableError('Redis is unreachable');
      room = this.#open(roomId);
    }
    const subscription = room;
    // A registration of its own, so one function subscribed twice is two subscriptions.
    const registration: BusListener = (event) => listener(event);
    subscription.listeners.add(registration);
    try {
      await subscription.ready;
    } catch (error) {
      subscription.listeners.delete(registration);
      throw error;
    }
    let done = false;
    return async () => {
      if (done) return;
      done = true;
      subscription.listeners.delete(registration);
      if (subscription.listeners.size === 0) await this.#close(subscription);
    };
  }

  #open(roomId: string): RoomSubscription {
    const keys = roomKeys(this.#prefix, roomId);
    const room: RoomSubscription = {
      roomId,
      keys,
      listeners: new Set(),
      epoch: undefined,
      seq: 0,
      queue: [],
      syncing: undefined,
      again: false,
      resubscribe: true,
      ready: Promise.resolve(),
      closed: false,
      deliveredAt: 0,
      refreshedAt: 0,
      checking: false,
    };
    this.#rooms.set(roomId, room);
    this.#byChannel.set(keys.channel, room);
    const first = this.#sync(room);
    room.syncing = first;
    room.ready = first.then(
      () => {
        if (room.syncing === first) room.syncing = undefined;
      },
      async (error: unknown) => {
        if (room.syncing === first) room.syncing = undefined;
        await this.#close(room);
        throw error instanceof BusUnavailableError
          ? error
          : new BusUnavailableError('subscribing to the room failed', RETRY_MIN_MS, { cause: error });
      },
    );
    room.ready.catch(() => {}); // the subscribers waiting on it get the error
    return room;
  }

  /** The last listener left: forget the room here and in Redis. */
  async #close(room: RoomSubscription): Promise<void> {
    if (room.closed) return;
    room.closed = true;
    room.queue = undefined;
    if (this.#rooms.get(room.roomId) === room) this.#rooms.delete(room.roomId);
    if (this.#byChannel.get(room.keys.channel) === room) this.#byChannel.delete(room.keys.channel);
    if (this.#closed) return;
    const { commands, subscriber, sharded } = this.#connections;
    // Before anything is awaited: a new subscription's read script (which stamps the entry again)
    // goes down the same connection later.
    commands.hdel(room.keys.nodes, this.#instance).catch(() => {}); // a stale entry only costs bytes
    // Sent at once, so a new subscription of the same room (sent later) wins on the connection.
    const unsubscribing = sharded
      ? subscriber.sunsubscribe(room.keys.channel)
      : subscriber.unsubscribe(room.keys.channel);
    // Down: the subscription died with the connection; it is not restored for a closed room.
    await unsubscribing.catch(() => {});
  }

  #onMessage(channel: string, received: string): void {
    const room = this.#byChannel.get(channel);
    if (!room) return;
    // A sampled publisher's trace context leads the message: `t|<trace>|<message>`.
    let payload = received;
    let trace: string | undefined;
    if (received.startsWith('t|')) {
      const end = received.indexOf('|', 2);
      trace = received.slice(2, end);
      payload = received.slice(end + 1);
    }
    // This node's own ephemeral event: delivered when Redis answered the PUBLISH.
    if (payload.startsWith(this.#ownEphemeral)) return;
    const message = parseMessage(room.roomId, payload, trace);
    if (!message) {
      this.#onError(new Error(`unreadable bus message on ${channel}`), 'reading a bus message');
      return;
    }
    this.#accept(room, message);
  }

  /** A message for the room, from pub/sub or from this node's own publish. */
  #accept(room: RoomSubscription, message: BusEvent): void {
    if (room.closed) return;
    if (room.queue) {
      if (room.queue.length < MAX_QUEUED) room.queue.push(message);
      else if (message.seq !== undefined) room.again = true; // read back from the stream
      return;
    }
    if (!this.#handle(room, message)) {
      room.queue = [message];
      this.#startSync(room, false);
    }
  }

  /** Delivers a message that fits the room's position; false when the stream must be read first. */
  #handle(room: RoomSubscription, message: BusEvent): boolean {
    if (message.seq !== undefined) {
      if (message.epoch !== room.epoch) return false;
      if (message.seq <= room.seq) return true;
      if (message.seq !== room.seq + 1) return false;
      room.seq = message.seq;
      room.deliveredAt = Date.now();
    }
    if (message.trace === undefined) safeDeliver(room.listeners, message, this.#onListenerError);
    else deliverInSpan(message, message.trace, () => safeDeliver(room.listeners, message, this.#onListenerError));
    return true;
  }

  #startSync(room: RoomSubscription, resubscribe: boolean): void {
    if (room.closed) return;
    room.queue ??= [];
    room.resubscribe ||= resubscribe;
    if (room.syncing) {
      room.again = true;
      return;
    }
    const running = this.#sync(room).catch((error: unknown) => this.#onError(error, 'repairing a room'));
    room.syncing = running;
    void running.finally(() => {
      if (room.syncing === running) room.syncing = undefined;
    });
  }

  /**
   * Brings the room to the stream's head: subscribes again when asked, reads what the listeners
   * have not had (all of a new epoch), delivers it, then the messages that queued meanwhile. A
   * failed pass is retried (100 ms doubling to 5 s); only the very first one rejects.
   */
  async #sync(room: RoomSubscription): Promise<void> {
    let delayMs = RETRY_MIN_MS;
    for (;;) {
      if (room.closed) return;
      const resubscribe = room.resubscribe;
      room.resubscribe = false;
      room.again = false;
      try {
        if (resubscribe) await this.#subscribeInRedis(room.keys.channel);
        const after = room.epoch === undefined ? -1 : room.seq;
        const startedAt = Date.now();
        const read = await this.#read(room.roomId, room.keys, after, room.epoch ?? '', true, this.#instance);
        if (room.closed) return;
        // The read script refreshed every key's TTL and showed the head.
        room.refreshedAt = startedAt;
        room.deliveredAt = startedAt;
        this.#catchUp(room, read);
      } catch (error) {
        if (room.epoch === undefined) throw error;
        if (room.closed || this.#closed) return;
        this.#onError(error, 'repairing a room from its stream');
        room.resubscribe = true;
        await sleep(delayMs);
        delayMs = Math.min(delayMs * 2, RETRY_MAX_MS);
        continue;
      }
      if (!room.again) {
        room.queue = undefined;
        return;
      }
    }
  }

  #catchUp(room: RoomSubscription, read: ReadResult): void {
    const epoch = read.epoch ?? '';
    if (room.epoch === undefined) {
      room.epoch = epoch;
      room.seq = read.lastSeq;
    } else {
      if (epoch !== room.epoch) {
        room.epoch = epoch;
        room.seq = 0;
      }
      for (const event of read.entries) {
        if (event.seq <= room.seq) continue;
        room.seq = event.seq;
        safeDeliver(room.listeners, event, this.#onListenerError);
      }
      // Past events no longer retained (this node was cut off longer than the log keeps).
      room.seq = Math.max(room.seq, read.lastSeq);
    }
    const queue = room.queue ?? [];
    room.queue = [];
    for (let i = 0; i < queue.length; i++) {
      const message = queue[i] as BusEvent;
      // Published under an epoch Redis no longer has: its history is gone with it.
      if (message.seq !== undefined && message.epoch !== room.epoch) continue;
      if (!this.#handle(room, message)) {
        room.queue = queue.slice(i);
        room.again = true;
        return;
      }
    }
  }

  async #subscribeInRedis(channel: string): Promise<void> {
    const { subscriber, sharded } = this.#connections;
    await (sharded ? subscriber.ssubscribe(channel) : subscriber.subscribe(channel));
  }

  /** After a reconnect (or Redis answering again): subscribe every room again and repair it. */
  #resyncAll(): void {
    for (const room of this.#rooms.values()) this.#startSync(room, true);
  }

  /**
   * The periodic safety net: each room that delivered nothing within the last interval (or whose
   * keys' TTLs are due) has its head compared with its delivered position by one small script
   * (answer: 1 byte of payload); only a room that is behind runs a sync.
   */
  #checkPositions(): void {
    if (this.#state !== 'ok') return;
    const now = Date.now();
    const refreshEveryMs = this.#keyTtlMs / 4;
    for (const room of this.#rooms.values()) {
      if (room.syncing || room.queue || room.checking || room.epoch === undefined) continue;
      const refresh = now - room.refreshedAt >= refreshEveryMs;
      if (!refresh && now - room.deliveredAt < this.#positionCheckIntervalMs) continue;
      void this.#checkPosition(room, refresh, now);
    }
  }

  async #checkPosition(room: RoomSubscription, refresh: boolean, now: number): Promise<void> {
    room.checking = true;
    try {
      const args = [room.epoch ?? '', room.seq, refresh ? this.#keyTtlMs : 0, this.#instance];
      const keys = [...allKeys(room.keys), room.keys.nodes];
      const reply = await this.#command(() => CHECK_SCRIPT.run(this.#connections.commands, keys, args));
      if (room.closed) return;
      if (reply === 1) {
        if (refresh) room.refreshedAt = now;
      } else {
        this.#startSync(room, false); // behind, or another epoch: the read script repairs (and refreshes)
      }
    } catch (error) {
      // Redis trouble: the health check notices, and its return resyncs every room.
      if (!this.#closed) this.#onError(error, "checking a room's position");
    } finally {
      room.checking = false;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Reading the log

  async head(roomId: string): Promise<RoomHead> {
    const read = await this.#read(roomId, roomKeys(this.#prefix, roomId), -1, '', true);
    return { epoch: read.epoch ?? '', lastSeq: read.lastSeq };
  }

  async readAfter(roomId: string, afterSeq: number, epoch?: string): Promise<BusEvent[] | null> {
    if (!Number.isSafeInteger(afterSeq) || afterSeq < 0) return null;
    const read = await this.#read(roomId, roomKeys(this.#prefix, roomId), afterSeq, epoch ?? '', false);
    if (read.epoch === null) return afterSeq === 0 && epoch === undefined ? [] : null;
    if (epoch !== undefined && read.epoch !== epoch) return null;
    return read.complete ? read.entries : null;
  }

  async readBefore(roomId: string, query: HistoryQuery): Promise<HistoryPage> {
    const keys = roomKeys(this.#prefix, roomId);
    const args = [
      query.beforeSeq ?? 0,
      query.limit,
      this.#retention.maxEvents,
      this.#retention.maxAgeMs,
      HISTORY_SCAN_MAX,
      ...query.events,
    ];
    const reply = await this.#command(() =>
      HISTORY_SCRIPT.run(this.#connections.commands, [keys.meta, keys.log], args),
    );
    return parseHistory(roomId, reply);
  }

  async lastSeq(roomId: string): Promise<number> {
    return (await this.#read(roomId, roomKeys(this.#prefix, roomId), -1, '', false)).lastSeq;
  }

  async #read(
    roomId: string,
    keys: RoomKeys,
    after: number,
    epoch: string,
    ensure: boolean,
    instance = '',
  ): Promise<ReadResult> {
    const reply = await this.#command(() =>
      READ_SCRIPT.run(
        this.#connections.commands,
        [...allKeys(keys), keys.nodes],
        [
          after,
          epoch,
          this.#retention.maxEvents,
          this.#retention.maxAgeMs,
          ensure ? '1' : '0',
          newEpoch(),
          this.#keyTtlMs,
          instance,
        ],
      ),
    );
    return parseRead(roomId, reply);
  }

  // ---------------------------------------------------------------------------------------------
  // Presence and room state

  readonly presence = {
    set: async (roomId: string, entry: PresenceEntry): Promise<void> => {
      const { presence } = roomKeys(this.#prefix, roomId);
      await this.#command(() =>
        this.#connections.commands
          .multi()
          .hset(presence, entry.participantId, JSON.stringify(entry))
          .pexpire(presence, this.#keyTtlMs)
          .exec(),
      );
    },
    remove: async (roomId: string, participantId: string): Promise<void> => {
      await this.#command(() =>
        this.#connections.commands.hdel(roomKeys(this.#prefix, roomId).presence, participantId),
      );
    },
    list: async (roomId: string): Promise<PresenceEntry[]> => {
      const values = await this.#command(() =>
        this.#connections.commands.hvals(roomKeys(this.#prefix, roomId).presence),
      );
      const entries: PresenceEntry[] = [];
      for (const value of values) {
        const parsed = presenceEntrySchema.safeParse(JSON.parse(value));
        if (parsed.success) entries.push(parsed.data);
        else this.#onError(parsed.error, 'reading presence');
      }
      return entries;
    },
    count: async (roomId: string): Promise<number> =>
      this.#command(() => this.#connections.commands.hlen(roomKeys(this.#prefix, roomId).presence)),
  };

  readonly state: RoomStateStore = {
    getSession: async (roomId, sessionId) => {
      const value = await this.#getField(roomKeys(this.#prefix, roomId).sessions, sessionId);
      return value === null ? undefined : resumeRecordSchema.parse(JSON.parse(value));
    },
    putSession: async (roomId, sessionId, record) => {
      const expiresAt = record.leftAt === undefined ? 0 : record.leftAt + this.#retention.maxAgeMs;
      await this.#putField(roomKeys(this.#prefix, roomId).sessions, sessionId, JSON.stringify(record), expiresAt);
    },
    deleteSession: async (roomId, sessionId) => {
      await this.#command(() => this.#connections.commands.hdel(roomKeys(this.#prefix, roomId).sessions, sessionId));
    },
    getBan: async (roomId, userId) => {
      const value = await this.#getField(roomKeys(this.#prefix, roomId).bans, userId);
      return value === null ? undefined : Number(value);
    },
    putBan: async (roomId, userId, untilMs) => {
      await this.#putField(roomKeys(this.#prefix, roomId).bans, userId, String(untilMs), untilMs);
    },
    getRole: async (roomId, userId) => {
      const value = await this.#getField(roomKeys(this.#prefix, roomId).roles, userId);
      return value === null ? undefined : roleSchema.parse(value);
    },
    putRole: async (roomId, userId, role) => {
      await this.#putField(roomKeys(this.#prefix, roomId).roles, userId, role, 0);
    },
  };

  async #getField(key: string, field: string): Promise<string | null> {
    return (await this.#command(() => GET_FIELD_SCRIPT.run(this.#connections.commands, [key], [field]))) as
      string | null;
  }

  async #putField(key: string, field: string, value: string, expiresAtMs: number): Promise<void> {
    const args = [field, value, Math.max(0, Math.ceil(expiresAtMs)), this.#keyTtlMs];
    await this.#command(() => PUT_FIELD_SCRIPT.run(this.#connections.commands, [key], args));
  }

  async dropRoom(roomId: string): Promise<boolean> {
    const roomKeysOf = roomKeys(this.#prefix, roomId);
    const keys = allKeys(roomKeysOf);
    // Webhooks on: the room's outbox stream gets `room.finished` in the same step.
    const outbox = this.#outbox ? { keys: [...keys, roomKeysOf.webhooks], args: [this.#outbox.group] } : undefined;
    const reply = await this.#command(() =>
      DROP_SCRIPT.run(this.#connections.commands, outbox?.keys ?? keys, outbox?.args ?? []),
    );
    if (reply === 2) this.#outbox?.appended(roomId);
    return reply === 1 || reply === 2;
  }

  // ---------------------------------------------------------------------------------------------
  // Health and lifecycle

  /** One PING at a time; one unanswered past the timeout means degraded and is given up. */
  #checkHealth(): void {
    if (this.#closed) return;
    if (this.#pingStartedAt !== undefined) {
      if (Date.now() - this.#pingStartedAt <= this.#healthTimeoutMs) return;
      this.#setState('degraded');
    }
    const ping = ++this.#pings;
    this.#pingStartedAt = Date.now();
    const answered = (ok: boolean): void => {
      if (ping !== this.#pings) return; // a newer PING was sent since
      this.#pingStartedAt = undefined;
      this.#setState(ok && this.#connections.commands.status === 'ready' ? 'ok' : 'degraded');
    };
    this.#connections.ping().then(
      () => answered(true),
      () => answered(false),
    );
  }

  #setState(state: BusStatus['state']): void {
    if (this.#closed || state === this.#state) return;
    this.#state = state;
    if (state === 'ok') {
      // Redis answers again (after a pause, a failover): make sure nothing was missed meanwhile.
      if (this.#everOk) this.#resyncAll();
      this.#everOk = true;
    }
    safeDeliver([...this.#statusListeners], this.status(), (error) => this.#onError(error, 'a status listener'));
  }

  /** Runs a Redis command; a connection failure becomes {@link BusUnavailableError}. */
  async #command<T>(run: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new BusUnavailableError('the room bus is closed');
    try {
      return await run();
    } catch (error) {
      if (isReplyError(error) && !UNAVAILABLE_REPLY.test(error.message)) throw error;
      throw new BusUnavailableError('Redis did not answer', RETRY_MIN_MS * 10, { cause: error });
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const timer of this.#timers) clearInterval(timer);
    for (const room of this.#rooms.values()) room.closed = true;
    this.#rooms.clear();
    this.#byChannel.clear();
    this.#statusListeners.clear();
    this.#connections.disconnect();
  }
}

/** Replies that mean "not now" rather than "wrong": the cluster or the server is in transition. */
const UNAVAILABLE_REPLY = /^(CLUSTERDOWN|TRYAGAIN|LOADING|MASTERDOWN|READONLY|BUSY)\b/;

function isReplyError(error: unknown): error is Error {
  return error instanceof Error && error.name === 'ReplyError';
}

/**
 * Event names travel in the stream and, in the message format of earlier versions, between `|`
 * separators; a name starting with `{` would read as a frame there.
 */
function checkEventName(event: string): void {
  if (event.includes('|') || event.startsWith('{')) {
    throw new RangeError(`event name ${JSON.stringify(event)} contains "|" or starts with "{"`);
  }
}

/**
 * `d|<epoch>|<seq>|<frame>` (durable) or `f|<publisher's bus instance>|<frame>` (ephemeral); the
 * event name is read from the frame. Messages of earlier versions, `d|<epoch>|<seq>|<event>|<frame>` and `e|<event>|<frame>`
 * (a frame starts with `{`, an event name never does), are read too: nodes of both versions share
 * a room during a rolling upgrade. A sampled publisher's message leads with `t|<trace>|` (stripped
 * before this), whose trace context becomes the event's `trace`.
 */
function parseMessage(roomId: string, payload: string, trace: string | undefined): BusEvent | undefined {
  if (payload.startsWith('f|')) {
    const start = payload.indexOf('|', 2) + 1;
    const event = start > 0 ? eventOfFrame(payload.slice(start)) : undefined;
    return event === undefined ? undefined : { roomId, event, frame: payload.slice(start), trace };
  }
  if (payload.startsWith('e|')) {
    const body = withEvent(payload, 2);
    return body && { roomId, ...body };
  }
  if (!payload.startsWith('d|')) return undefined;
  const epochEnd = payload.indexOf('|', 2);
  const seqEnd = epochEnd < 0 ? -1 : payload.indexOf('|', epochEnd + 1);
  if (seqEnd < 0) return undefined;
  const seq = Number(payload.slice(epochEnd + 1, seqEnd));
  if (!Number.isSafeInteger(seq)) return undefined;
  const body = withEvent(payload, seqEnd + 1);
  return body && { roomId, event: body.event, seq, epoch: payload.slice(2, epochEnd), frame: body.frame, trace };
}

/** What leads a message of a sampled publisher: `t|<trace id><span id>|` (else nothing). */
function tracePrefix(trace: string | undefined): string {
  return trace === undefined ? '' : `t|${trace}|`;
}

const FRAME_START = '{"event":"';

/** The event and frame at `start` of a message: `<frame>`, or `<event>|<frame>` (earlier versions). */
function withEvent(payload: string, start: number): { event: string; frame: string } | undefined {
  if (payload.charCodeAt(start) !== 0x7b /* { */) {
    const end = payload.indexOf('|', start);
    return end < 0 ? undefined : { event: payload.slice(start, end), frame: payload.slice(end + 1) };
  }
  const frame = payload.slice(start);
  const event = eventOfFrame(frame);
  return event === undefined ? undefined : { event, frame };
}

/** The event name of a frame (`encodeFrame` puts it first), without parsing the rest. */
function eventOfFrame(frame: string): string | undefined {
  if (frame.startsWith(FRAME_START)) {
    const end = frame.indexOf('"', FRAME_START.length);
    const name = end < 0 ? '' : frame.slice(FRAME_START.length, end);
    if (end >= 0 && !name.includes('\\')) return name;
  }
  try {
    const parsed: unknown = JSON.parse(frame);
    const event = typeof parsed === 'object' && parsed !== null ? (parsed as { event?: unknown }).event : undefined;
    return typeof event === 'string' ? event : undefined;
  } catch {
    return undefined;
  }
}

/** The reply of the read script: `{epoch or nil, lastSeq, complete, seq, event, frame, …}`. */
function parseRead(roomId: string, reply: unknown): ReadResult {
  if (!Array.isArray(reply) || reply.length < 3) throw new Error('unexpected reply of the read script');
  const epoch = reply[0] === null ? null : String(reply[0]);
  const entries: ReadResult['entries'] = [];
  for (let i = 3; i + 2 < reply.length; i += 3) {
    entries.push({
      roomId,
      event: String(reply[i + 1]),
      seq: Number(reply[i]),
      epoch: epoch ?? '',
      frame: String(reply[i + 2]),
    });
  }
  return { epoch, lastSeq: Number(reply[1]), complete: reply[2] === 1, entries };
}

/** The reply of the history script: `{epoch or nil, hasMore, nextBeforeSeq, truncated, seq, event, frame, …}`. */
function parseHistory(roomId: string, reply: unknown): HistoryPage {
  if (!Array.isArray(reply) || reply.length < 4) throw new Error('unexpected reply of the history script');
  const epoch = reply[0] === null ? '' : String(reply[0]);
  const events: HistoryPage['events'][number][] = [];
  for (let i = reply.length - 3; i >= 4; i -= 3) {
    events.push({ roomId, event: String(reply[i + 1]), seq: Number(reply[i]), epoch, frame: String(reply[i + 2]) });
  }
  return { epoch, events, hasMore: reply[1] === 1, nextBeforeSeq: Number(reply[2]), truncated: reply[3] === 1 };
}

/** 72 random bits: distinct enough between a room's epochs, short in every pub/sub message. */
function newEpoch(): string {
  return randomBytes(9).toString('base64url');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
