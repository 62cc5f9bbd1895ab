/**
 * What a webhook says, per the contract (`PROTOCOL.md`, "Backend"): the body `{type, timestamp,
 * data: {roomId, seq?, …}}` and its `webhook-id`. The outbox keeps room events in the compact form
 * {@link OutboxEvent} (the notification frame as delivered to clients, its epoch and `seq`); the
 * webhook is built from it when it is sent, so enqueueing costs no parsing.
 */
import { createHash } from 'node:crypto';

/** The webhook types of the contract. */
export const WEBHOOK_TYPES = [
  'room.started',
  'room.finished',
  'participant.joined',
  'participant.left',
  'producer.published',
  'producer.unpublished',
  'alert.published',
] as const;
export type WebhookType = (typeof WEBHOOK_TYPES)[number];

/** The room's durable notifications (wire names) that become webhooks, and the type each becomes. */
export const WEBHOOK_TYPE_OF_EVENT: ReadonlyMap<string, WebhookType> = new Map<string, WebhookType>([
  ['participant.joined', 'participant.joined'],
  ['participant.left', 'participant.left'],
  ['producer.added', 'producer.published'],
  ['producer.removed', 'producer.unpublished'],
  ['alert.published', 'alert.published'],
]);

/** The room lifecycle entries of an outbox (they have no notification and no `seq`). */
export const ROOM_STARTED = 'room.started';
export const ROOM_FINISHED = 'room.finished';

/** A room event as an outbox keeps it until it is delivered. */
export interface OutboxEvent {
  readonly roomId: string;
  /** A notification's wire name (`participant.joined`, …), or `room.started` / `room.finished`. */
  readonly event: string;
  /** The epoch of the room's history the event belongs to. */
  readonly epoch: string;
  /** The event's `seq` (notifications only). */
  readonly seq?: number | undefined;
  /** When it happened (epoch ms). */
  readonly timestampMs: number;
  /** The notification frame `{"event","data","seq"}` as clients got it (notifications only). */
  readonly frame?: string | undefined;
}

/** The data of a webhook: always the room, its epoch, and `seq` where the event has one. */
export interface WebhookData {
  readonly roomId: string;
  readonly epoch: string;
  readonly seq?: number;
  readonly [field: string]: unknown;
}

/** One webhook, ready to sign and send. */
export interface WebhookMessage {
  /** `webhook-id`: the same for every attempt, every re-delivery and every replay of the event. */
  readonly id: string;
  readonly roomId: string;
  readonly type: WebhookType;
  /** The exact body sent: `{"type","timestamp","data"}`. */
  readonly body: string;
}

/**
 * The webhook of an outbox entry; undefined for an event that is not one (or whose frame cannot
 * be read: then there is nothing meaningful to send).
 */
export function toWebhook(entry: OutboxEvent): WebhookMessage | undefined {
  const type: WebhookType | undefined =
    entry.event === ROOM_STARTED || entry.event === ROOM_FINISHED
      ? entry.event
      : WEBHOOK_TYPE_OF_EVENT.get(entry.event);
  if (!type) return undefined;
  let fields: Record<string, unknown> = {};
  if (entry.frame !== undefined) {
    const data = dataOfFrame(entry.frame);
    if (!data) return undefined;
    fields = data;
  }
  const data: WebhookData = {
    ...fields,
    roomId: entry.roomId,
    epoch: entry.epoch,
    ...(entry.seq === undefined ? {} : { seq: entry.seq }),
  };
  const body = JSON.stringify({ type, timestamp: new Date(entry.timestampMs).toISOString(), data });
  return { id: webhookId(entry), roomId: entry.roomId, type, body };
}

/**
 * The idempotency key: derived from the room, the epoch and the `seq` (or, for the lifecycle
 * entries, their type: one start and one finish per epoch), so every copy of an event — a retry,
 * a second delivery after a node died, a replay — carries the same id.
 */
export function webhookId(entry: Pick<OutboxEvent, 'roomId' | 'epoch' | 'seq' | 'event'>): string {
  const which = entry.seq === undefined ? entry.event : String(entry.seq);
  const digest = createHash('sha256').update(`${entry.roomId}\n${entry.epoch}\n${which}`).digest('base64url');
  return `msg_${digest.slice(0, 27)}`;
}

function dataOfFrame(frame: string): Record<string, unknown> | undefined {
  try {
    const parsed: unknown = JSON.parse(frame);
    const data = typeof parsed === 'object' && parsed !== null ? (parsed as { data?: unknown }).data : undefined;
    return typeof data === 'object' && data !== null && !Array.isArray(data)
      ? (data as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
