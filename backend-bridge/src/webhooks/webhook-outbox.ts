/**
 * The webhook outbox: room events wait here until the backend acknowledged them, delivered at
 * least once and in order per room (a room's next webhook is sent only after the previous one was
 * acknowledged or dead-lettered). Two implementations: {@link MemoryOutbox} (a node alone: a
 * bounded in-memory queue) and {@link RedisOutbox} (a cluster: each room's events in a Redis stream
 * read through a consumer group, rooms spread over leased partitions). Failed attempts are retried
 * with exponential backoff and jitter; after `maxAttempts` the webhook goes to the dead letters,
 * which an operator lists and replays (`/admin/webhooks/dead-letters`).
 */
import { backoffDelayMs, sleepUnlessAborted, type BackoffOptions } from '../retry.js';
import type { OutboxEvent, WebhookMessage } from './webhook-message.js';
import type { AttemptResult, WebhookSender } from './webhook-sender.js';
import type { WebhookMetrics } from './webhook-metrics.js';

/** A webhook the backend never acknowledged, kept for an operator. */
export interface DeadLetter {
  /** The dead letter's own id (what a replay names). */
  readonly deadLetterId: string;
  /** `webhook-id` (a replay sends the same). */
  readonly webhookId: string;
  readonly roomId: string;
  /** The webhook type (`participant.joined`, …). */
  readonly type: string;
  /** The body as sent. */
  readonly body: string;
  readonly attempts: number;
  readonly lastError: string;
  /** When it was given up (epoch ms). */
  readonly deadAt: number;
}

/** What a replay did: the dead letters delivered now (and removed), and those that failed again. */
export interface ReplayResult {
  readonly replayed: readonly string[];
  readonly failed: readonly { readonly deadLetterId: string; readonly error: string }[];
}

/** A room's webhooks the backend has not acknowledged yet (being sent, waiting, or retried). */
export interface RoomBacklog {
  /** How many of the room's webhooks wait (at least 1). */
  readonly pending: number;
  /** When the oldest of them happened (epoch ms): the room's next webhook to deliver. */
  readonly oldestAt: number;
  /** Its `webhook-id`. */
  readonly oldestWebhookId: string;
  /** Its entry's event (`participant.joined`, `room.started`, …). */
  readonly oldestEvent: string;
}

/** What the metrics read from an outbox. */
export interface OutboxStats {
  /** Webhooks waiting (for a cluster: in the rooms of the partitions this node holds). */
  readonly depth: number;
  /** Age of the oldest of them (ms; 0 when none wait). */
  readonly oldestPendingMs: number;
  /** Dead letters kept. */
  readonly deadLetters: number;
}

export interface WebhookOutbox {
  /**
   * Adds a room event; O(1), never waits for the backend. (In a cluster the room's durable
   * events are appended by the bus's publish script itself; this is for the other entries.)
   */
  enqueue(event: OutboxEvent): void;
  /** Starts delivering. */
  start(): void;
  /**
   * Stops: a node alone delivers what it still can until `deadlineMs` (epoch ms); a cluster node
   * finishes the attempts in flight and hands its partitions back at once. Safe to call twice.
   */
  close(deadlineMs: number): Promise<void>;
  /** The newest dead letters, at most `limit`. */
  deadLetters(limit: number): Promise<DeadLetter[]>;
  /** Sends the named dead letters (all, oldest first, up to 100, when none are named) once more. */
  replayDeadLetters(ids?: readonly string[]): Promise<ReplayResult>;
  /**
   * The backlog of each named room (cheap per room, for the admin API's pages); rooms with nothing
   * waiting are absent. With Redis, every room of the cluster, whichever node delivers it.
   */
  roomBacklogs(roomIds: readonly string[]): Promise<Map<string, RoomBacklog>>;
  stats(): OutboxStats;
}

export interface RetryPolicy extends BackoffOptions {
  /** Attempts before a webhook goes to the dead letters. */
  readonly maxAttempts: number;
}

/** How {@link deliverWithRetry} ended. */
export type DeliveryEnd =
  | { readonly end: 'delivered' }
  | { readonly end: 'dead'; readonly attempts: number; readonly lastError: string }
  | { readonly end: 'stopped' };

/**
 * Sends `message` until the backend acknowledges it, waiting `backoffDelayMs` between attempts;
 * `dead` after `policy.maxAttempts`; `stopped` as soon as `mayStart()` answers false before an
 * attempt or `signal` aborts (the webhook then stays where it is, for whoever delivers next).
 */
export async function deliverWithRetry(
  sender: WebhookSender,
  message: WebhookMessage,
  policy: RetryPolicy,
  mayStart: () => boolean,
  signal: AbortSignal,
  metrics: WebhookMetrics | undefined,
): Promise<DeliveryEnd> {
  let last: AttemptResult | undefined;
  for (let attempt = 1; attempt <= policy.maxAttempts; attempt++) {
    if (signal.aborted || !mayStart()) return { end: 'stopped' };
    last = await sender.send(message);
    metrics?.attempts.inc({ outcome: last.ok ? 'delivered' : 'failed' });
    if (last.ok) return { end: 'delivered' };
    if (attempt === policy.maxAttempts) break;
    try {
      await sleepUnlessAborted(Math.max(1, backoffDelayMs(attempt, policy)), signal);
    } catch {
      return { end: 'stopped' };
    }
  }
  return { end: 'dead', attempts: policy.maxAttempts, lastError: last?.error ?? 'not delivered' };
}
