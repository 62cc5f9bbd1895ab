/**
 * The outbox of a node that runs alone: a bounded in-memory queue per room, one delivery loop per
 * room with something waiting (rooms do not wait for each other; a room's webhooks go one after
 * the other). When `maxQueued` webhooks wait, a new one is **dropped** — counted in
 * `trading_room_webhook_dropped_total{reason="queue_full"}` and logged once per overflow — so
 * what is delivered keeps its order and the node's memory stays bounded while the backend is
 * down. A crash loses what waits (nothing here is durable: a cluster's outbox is).
 */
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

export interface MemoryOutboxOptions {
  readonly sender: WebhookSender;
  readonly retry: RetryPolicy;
  /** Webhooks waiting at most (`BACKEND_WEBHOOK_QUEUE_MAX`). */
  readonly maxQueued: number;
  /** Dead letters kept at most; the oldest go first. */
  readonly maxDeadLetters?: number;
  readonly metrics?: WebhookMetrics | undefined;
  /** Reports overflows and dead letters (one line each, never per request). */
  readonly log?: (level: 'info' | 'warn', fields: Record<string, unknown>, message: string) => void;
}

interface Waiting {
  readonly event: OutboxEvent;
  readonly enqueuedAt: number;
}

/** One room's queue: an array consumed from `head` (O(1) both ends). */
interface RoomQueue {
  items: (Waiting | undefined)[];
  head: number;
  running: boolean;
}

export class MemoryOutbox implements WebhookOutbox {
  readonly #options: MemoryOutboxOptions;
  readonly #rooms = new Map<string, RoomQueue>();
  readonly #dead: DeadLetter[] = [];
  readonly #stop = new AbortController();
  readonly #idle = new Set<() => void>();
  #depth = 0;
  #overflowing = false;
  #started = false;
  #closed = false;
  #deadCount = 0;

  constructor(options: MemoryOutboxOptions) {
    this.#options = options;
  }

  enqueue(event: OutboxEvent): void {
    if (this.#closed) {
      this.#options.metrics?.dropped.inc({ reason: 'shutdown' });
      return;
    }
    if (this.#depth >= this.#options.maxQueued) {
      this.#options.metrics?.dropped.inc({ reason: 'queue_full' });
      if (!this.#overflowing) {
        this.#overflowing = true;
        this.#options.log?.(
          'warn',
          { maxQueued: this.#options.maxQueued },
          'webhook queue full: new webhooks are dropped',
        );
      }
      return;
    }
    let room = this.#rooms.get(event.roomId);
    if (!room) {
      room = { items: [], head: 0, running: false };
      this.#rooms.set(event.roomId, room);
    }
    room.items.push({ event, enqueuedAt: Date.now() });
    this.#depth++;
    if (this.#started && !room.running) void this.#run(event.roomId, room);
  }

  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    for (const [roomId, room] of this.#rooms) if (!room.running) void this.#run(roomId, room);
  }

  async #run(roomId: string, room: RoomQueue): Promise<void> {
    room.running = true;
    const { sender, retry, metrics } = this.#options;
    try {
      while (room.head < room.items.length) {
        const waiting = room.items[room.head] as Waiting;
        const message = toWebhook(waiting.event);
        if (message) {
          const end = await deliverWithRetry(sender, message, retry, () => true, this.#stop.signal, metrics);
          if (end.end === 'stopped') return;
          if (end.end === 'delivered') metrics?.deliveries.inc({ outcome: 'delivered' });
          else this.#deadLetter(message, end.attempts, end.lastError);
        } else {
          metrics?.dropped.inc({ reason: 'unreadable' });
        }
        room.items[room.head] = undefined; // let it be collected
        room.head++;
        if (room.head >= 1024 && room.head * 2 >= room.items.length) {
          room.items = room.items.slice(room.head);
          room.head = 0;
        }
        this.#depth--;
        if (this.#overflowing && this.#depth < this.#options.maxQueued * 0.9) this.#overflowing = false;
      }
      this.#rooms.delete(roomId);
    } finally {
      room.running = false;
      if (this.#depth === 0) for (const resolve of this.#idle) resolve();
    }
  }

  #deadLetter(message: WebhookMessage, attempts: number, lastError: string): void {
    this.#options.metrics?.deliveries.inc({ outcome: 'dead_lettered' });
    this.#dead.push({
      deadLetterId: String(++this.#deadCount),
      webhookId: message.id,
      roomId: message.roomId,
      type: message.type,
      body: message.body,
      attempts,
      lastError,
      deadAt: Date.now(),
    });
    if (this.#dead.length > (this.#options.maxDeadLetters ?? 1000)) this.#dead.shift();
    this.#options.log?.(
      'warn',
      { webhookId: message.id, roomId: message.roomId, attempts, lastError },
      'webhook dead-lettered',
    );
  }

  async close(deadlineMs: number): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#started && this.#depth > 0) {
      let resolveIdle = (): void => {};
      const idle = new Promise<void>((resolve) => (resolveIdle = resolve));
      this.#idle.add(resolveIdle);
      const timer = setTimeout(resolveIdle, Math.max(0, deadlineMs - Date.now()));
      await idle;
      clearTimeout(timer);
      this.#idle.delete(resolveIdle);
    }
    this.#stop.abort();
    this.#options.sender.close();
    if (this.#depth > 0) {
      this.#options.metrics?.dropped.inc({ reason: 'shutdown' }, this.#depth);
      this.#options.log?.('warn', { undelivered: this.#depth }, 'webhooks undelivered at shutdown');
    }
  }

  async deadLetters(limit: number): Promise<DeadLetter[]> {
    return this.#dead.slice(-limit).reverse();
  }

  async replayDeadLetters(ids?: readonly string[]): Promise<ReplayResult> {
    const wanted = ids ? new Set(ids) : undefined;
    const chosen = this.#dead.filter((d) => !wanted || wanted.has(d.deadLetterId)).slice(0, 100);
    const replayed: string[] = [];
    const failed: { deadLetterId: string; error: string }[] = [];
    for (const letter of chosen) {
      const result = await this.#options.sender.send({ id: letter.webhookId, body: letter.body });
      this.#options.metrics?.replays.inc({ outcome: result.ok ? 'delivered' : 'failed' });
      if (result.ok) {
        replayed.push(letter.deadLetterId);
        this.#dead.splice(this.#dead.indexOf(letter), 1);
      } else {
        failed.push({ deadLetterId: letter.deadLetterId, error: result.error ?? 'not delivered' });
      }
    }
    return { replayed, failed };
  }

  /** The head of each room's queue (the webhook being sent or next) and the queue's length. */
  async roomBacklogs(roomIds: readonly string[]): Promise<Map<string, RoomBacklog>> {
    const backlogs = new Map<string, RoomBacklog>();
    for (const roomId of roomIds) {
      const room = this.#rooms.get(roomId);
      const first = room?.items[room.head];
      if (!room || !first) continue;
      backlogs.set(roomId, {
        pending: room.items.length - room.head,
        oldestAt: first.enqueuedAt,
        oldestWebhookId: webhookId(first.event),
        oldestEvent: first.event.event,
      });
    }
    return backlogs;
  }

  stats(): OutboxStats {
    let oldest = Infinity;
    for (const room of this.#rooms.values()) {
      const first = room.items[room.head];
      if (first && first.enqueuedAt < oldest) oldest = first.enqueuedAt;
    }
    return {
      depth: this.#depth,
      oldestPendingMs: oldest === Infinity ? 0 : Date.now() - oldest,
      deadLetters: this.#dead.length,
    };
  }
}
