/**
 * The room service's webhooks: where room events enter the backend bridge's outbox.
 *
 * - **A room starts** with the first event of its history's epoch (`seq` 1: a new room, or one
 *   whose history was lost), and **finishes** when the bus forgets it because nobody is present on
 *   any node (`dropRoom` answered true). Durable `participant.joined/left`, `producer.added/removed`
 *   and `alert.published` become webhooks with their `seq`.
 * - **With Redis**, the bus's scripts append to the room's outbox stream themselves, atomically with
 *   numbering the event (publish) or forgetting the room (drop); this module hands the bus the
 *   outbox's options and runs the {@link RedisOutbox} that delivers.
 * - **Alone**, {@link RoomWebhooks.wrapBus} puts a thin layer over the in-memory bus that enqueues
 *   in the {@link MemoryOutbox} right after each publish and drop (O(1), nothing awaited).
 */
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import {
  MemoryOutbox,
  OUTBOX_GROUP,
  ROOM_FINISHED,
  ROOM_STARTED,
  RedisOutbox,
  WEBHOOK_TYPE_OF_EVENT,
  WebhookMetrics,
  WebhookSender,
  backendMetrics,
  type WebhookOutbox,
} from '../../../backend-bridge/src/index.js';
import type { Config } from '../config.js';
import { openRedisConnections, type RedisConnections } from '../bus/redis-connections.js';
import type { RoomOutboxOptions } from '../bus/redis-room-bus.js';
import { roomKeys } from '../bus/redis-scripts.js';
import type { BusEvent, RoomBus } from '../bus/room-bus.js';

/** The durable events webhooks report (wire names). */
const WEBHOOK_EVENTS: ReadonlySet<string> = new Set(WEBHOOK_TYPE_OF_EVENT.keys());

export class RoomWebhooks {
  readonly outbox: WebhookOutbox;
  /** What the Redis bus needs to append to the outbox (undefined alone). */
  readonly busOutbox: RoomOutboxOptions | undefined;
  readonly #connections: RedisConnections | undefined;

  private constructor(outbox: WebhookOutbox, busOutbox: RoomOutboxOptions | undefined, connections?: RedisConnections) {
    this.outbox = outbox;
    this.busOutbox = busOutbox;
    this.#connections = connections;
  }

  /** The node's webhooks, or undefined when they are off (no `BACKEND_WEBHOOK_SECRET`). */
  static create(config: Config, deps: { registry: Registry; log: Logger }): RoomWebhooks | undefined {
    const settings = config.webhooks;
    if (!settings || !config.backendUrl) return undefined;
    const log = deps.log.child({ component: 'webhooks' });
    const sender = new WebhookSender({
      backendUrl: config.backendUrl,
      secret: settings.secret,
      timeoutMs: settings.timeoutMs,
      metrics: backendMetrics(deps.registry),
    });
    const retry = {
      maxAttempts: settings.maxAttempts,
      baseDelayMs: settings.retryBaseMs,
      maxDelayMs: settings.retryMaxMs,
    };
    const report = (level: 'info' | 'warn', fields: Record<string, unknown>, message: string): void =>
      log[level](fields, message);
    let outbox: WebhookOutbox | undefined;
    const metrics = new WebhookMetrics(deps.registry, () => (outbox as WebhookOutbox).stats());
    if (!config.redis) {
      outbox = new MemoryOutbox({ sender, retry, maxQueued: settings.queueMax, metrics, log: report });
      return new RoomWebhooks(outbox, undefined);
    }
    const connections = openRedisConnections(
      config.redis,
      `trading-room-webhooks-${config.nodeId.replace(/[^\w.-]/g, '-')}`,
    );
    connections.commands.on('error', () => {}); // the outbox reports Redis trouble once per outage
    if (connections.subscriber !== connections.commands) connections.subscriber.disconnect();
    const redisOutbox = new RedisOutbox({
      client: connections.commands,
      keyPrefix: config.redisKeyPrefix,
      streamKey: (roomId) => roomKeys(config.redisKeyPrefix, roomId).webhooks,
      consumer: `${config.nodeId}:${process.pid}:${Date.now().toString(36)}`,
      partitions: settings.partitions,
      leaseMs: settings.leaseMs,
      attemptTimeoutMs: settings.timeoutMs,
      sender,
      retry,
      metrics,
      log: report,
    });
    outbox = redisOutbox;
    const busOutbox: RoomOutboxOptions = {
      events: WEBHOOK_EVENTS,
      group: OUTBOX_GROUP,
      appended: (roomId) => redisOutbox.appended(roomId),
    };
    return new RoomWebhooks(outbox, busOutbox, connections);
  }

  /**
   * The bus the room service uses: a Redis bus appends to the outbox itself (it was built with
   * {@link busOutbox}) and is returned as is; the in-memory bus gets a layer that enqueues.
   */
  wrapBus(bus: RoomBus): RoomBus {
    return bus.status().kind === 'redis' ? bus : new OutboxRoomBus(bus, this.outbox);
  }

  start(): void {
    this.outbox.start();
  }

  /** Delivers what it can until `deadlineMs` (alone) or hands its partitions over (cluster). */
  async close(deadlineMs: number): Promise<void> {
    await this.outbox.close(deadlineMs);
    this.#connections?.disconnect();
  }
}

/** The in-memory bus, with every room start, webhook event and room finish enqueued. */
class OutboxRoomBus implements RoomBus {
  readonly #bus: RoomBus;
  readonly #outbox: WebhookOutbox;
  /** The epoch of each room's last event, for its `room.finished`. */
  readonly #epochs = new Map<string, string>();

  constructor(bus: RoomBus, outbox: WebhookOutbox) {
    this.#bus = bus;
    this.#outbox = outbox;
    this.presence = bus.presence;
    this.state = bus.state;
  }

  readonly presence: RoomBus['presence'];
  readonly state: RoomBus['state'];

  async publishDurable(roomId: string, event: string, data: unknown): Promise<BusEvent> {
    const published = await this.#bus.publishDurable(roomId, event, data);
    const { seq, epoch = '' } = published;
    if (seq === 1) {
      this.#epochs.set(roomId, epoch);
      this.#outbox.enqueue({ roomId, event: ROOM_STARTED, epoch, timestampMs: Date.now() });
    }
    if (WEBHOOK_EVENTS.has(event)) {
      this.#outbox.enqueue({ roomId, event, epoch, seq, timestampMs: Date.now(), frame: published.frame });
    }
    return published;
  }

  async dropRoom(roomId: string): Promise<boolean> {
    const dropped = await this.#bus.dropRoom(roomId);
    const epoch = this.#epochs.get(roomId);
    if (dropped && epoch !== undefined) {
      this.#epochs.delete(roomId);
      this.#outbox.enqueue({ roomId, event: ROOM_FINISHED, epoch, timestampMs: Date.now() });
    }
    return dropped;
  }

  status: RoomBus['status'] = () => this.#bus.status();
  onStatus: RoomBus['onStatus'] = (listener) => this.#bus.onStatus(listener);
  publishEphemeral: RoomBus['publishEphemeral'] = (roomId, event, data) =>
    this.#bus.publishEphemeral(roomId, event, data);
  subscribe: RoomBus['subscribe'] = (roomId, listener) => this.#bus.subscribe(roomId, listener);
  head: RoomBus['head'] = (roomId) => this.#bus.head(roomId);
  readAfter: RoomBus['readAfter'] = (roomId, afterSeq, epoch) => this.#bus.readAfter(roomId, afterSeq, epoch);
  readBefore: RoomBus['readBefore'] = (roomId, query) => this.#bus.readBefore(roomId, query);
  lastSeq: RoomBus['lastSeq'] = (roomId) => this.#bus.lastSeq(roomId);
  close: RoomBus['close'] = () => this.#bus.close();
}
