/**
 * The room bus: how room events travel between the nodes of a cluster, how each room's durable
 * events get their `seq`, and where the room state a cluster must share lives. `LocalRoomBus`
 * keeps everything in memory for a single node; `RedisRoomBus` shares it through Redis. One
 * conformance suite (`signaling/test/room-bus-conformance.ts`) runs against both; the design is
 * in `docs/cluster.md`.
 */
import { z } from 'zod';
import { participantSchema, type Role } from '../protocol/common.js';

/** An event as delivered to a room's subscribers. */
export interface BusEvent {
  readonly roomId: string;
  readonly event: string;
  /** Present on durable events only. */
  readonly seq?: number;
  /**
   * The epoch of the room's history `seq` belongs to (durable events only). It changes when the
   * history was lost (a Redis restart without persistence, a dropped room): `seq` starts again
   * at 1 under the new epoch. Within one epoch a `seq` is never reused.
   */
  readonly epoch?: string;
  /** The encoded notification frame, built once and written to every socket as is. */
  readonly frame: string;
  /**
   * The publisher's trace context when its request was sampled: trace id and span id, 48 hex
   * digits. Each node delivers the event in a span of that trace. Never part of the frame.
   */
  readonly trace?: string;
}

/**
 * Receives a subscribed room's events. Durable events arrive once each, in `seq` order and
 * without gaps within an epoch; the only jumps are an epoch change (the event carries a new
 * `epoch`, `seq` counts from 1 again) and, after this node was cut off for longer than the log
 * retains, a `seq` past events no longer retained. A listener that throws is reported through
 * the bus's `onListenerError` and keeps receiving; the others are not affected.
 */
export type BusListener = (event: BusEvent) => void;

/** Stops a subscription; resolves when the shared store has forgotten it too. Safe to call twice. */
export type Unsubscribe = () => Promise<void> | void;

/** Where a participant is connected, as shared presence. */
export const presenceEntrySchema = participantSchema.extend({ nodeId: z.string() });
export type PresenceEntry = z.infer<typeof presenceEntrySchema>;

/** What a session id resumes; kept after the participant left until the log's max age passed. */
export const resumeRecordSchema = z.object({
  participantId: z.string(),
  userId: z.string(),
  joinedAt: z.number(),
  /** The room's `seq` the session's join covered: a resume never replays events before it. */
  joinSeq: z.number().int().min(0),
  /** When the participant left (epoch ms); absent while it is present. */
  leftAt: z.number().optional(),
});
export type ResumeRecord = z.infer<typeof resumeRecordSchema>;

/** A room's history position: its epoch and newest `seq` (0 before the first event). */
export interface RoomHead {
  readonly epoch: string;
  readonly lastSeq: number;
}

/** How much history a bus keeps per room, like the local replay log. */
export interface RetentionOptions {
  readonly maxEvents: number;
  readonly maxAgeMs: number;
}

/** What {@link RoomBus.readBefore} looks for. */
export interface HistoryQuery {
  /** Only events with a smaller `seq`; undefined: from the newest. */
  readonly beforeSeq?: number | undefined;
  /** At most this many events. */
  readonly limit: number;
  /** The event names wanted; every other event is skipped. */
  readonly events: ReadonlySet<string>;
}

/** A page of a room's retained history, from its current epoch. */
export interface HistoryPage {
  /** The room's epoch ('' when it has none yet). */
  readonly epoch: string;
  /** Oldest first. */
  readonly events: readonly (BusEvent & { readonly seq: number; readonly epoch: string })[];
  /** Older matching events may still be retained: ask again with `beforeSeq: nextBeforeSeq`. */
  readonly hasMore: boolean;
  /** Where the next (older) page starts; meaningful when `hasMore`. */
  readonly nextBeforeSeq: number;
  /** Retention already dropped events of this epoch (its oldest retained `seq` is above 1). */
  readonly truncated: boolean;
}

/** Log entries a single {@link RoomBus.readBefore} looks at, at most (bounded work per call). */
export const HISTORY_SCAN_MAX = 2000;

export interface BusStatus {
  readonly kind: 'local' | 'redis';
  /** `degraded` while the shared store is unreachable; rooms local to the node keep working. */
  readonly state: 'ok' | 'degraded';
}

/**
 * Room state the nodes of a cluster share. Session records expire `maxAgeMs` (the log's max
 * age) after `leftAt`; a ban at its `untilMs`; role overrides live as long as the room.
 */
export interface RoomStateStore {
  getSession(roomId: string, sessionId: string): Promise<ResumeRecord | undefined>;
  putSession(roomId: string, sessionId: string, record: ResumeRecord): Promise<void>;
  deleteSession(roomId: string, sessionId: string): Promise<void>;
  /** The end of the user's ban (epoch ms), undefined when not banned now. */
  getBan(roomId: string, userId: string): Promise<number | undefined>;
  putBan(roomId: string, userId: string, untilMs: number): Promise<void>;
  getRole(roomId: string, userId: string): Promise<Role | undefined>;
  putRole(roomId: string, userId: string, role: Role): Promise<void>;
}

export interface RoomBus {
  status(): BusStatus;
  /** Calls `listener` on every change of `status()`; returns the function that stops it. */
  onStatus(listener: (status: BusStatus) => void): () => void;
  /**
   * Assigns the room's next `seq`, logs the event and delivers it to every subscriber of every
   * node. Rejects with {@link BusUnavailableError} when the shared store cannot be reached (the
   * event then has no `seq`, though with Redis a command cut off in flight may still have run).
   */
  publishDurable(roomId: string, event: string, data: unknown): Promise<BusEvent>;
  /** Delivers an event without `seq` to every subscriber of every node; not logged. */
  publishEphemeral(roomId: string, event: string, data: unknown): Promise<void>;
  /**
   * Starts delivery of a room's events to `listener`. Resolves once the subscription is live in
   * the shared store: from then on the listener gets every durable event newer than the room's
   * head at that moment (it may also get a few older ones, never one twice). Rejects with
   * {@link BusUnavailableError} when the shared store cannot be reached.
   */
  subscribe(roomId: string, listener: BusListener): Promise<Unsubscribe>;
  /** The room's epoch and newest `seq`; starts the room's epoch when it has none. */
  head(roomId: string): Promise<RoomHead>;
  /**
   * Durable events after `afterSeq`, in order; `null` when they are no longer all retained, when
   * `afterSeq` is ahead of the log, or when `epoch` is given and is not the room's epoch.
   */
  readAfter(roomId: string, afterSeq: number, epoch?: string): Promise<BusEvent[] | null>;
  /**
   * The newest retained events of the room's current epoch named in `query.events`, before
   * `query.beforeSeq`: at most `query.limit`, oldest first, frames as delivered. Looks at no more
   * than {@link HISTORY_SCAN_MAX} log entries; `hasMore` says whether older ones may match.
   */
  readBefore(roomId: string, query: HistoryQuery): Promise<HistoryPage>;
  /** The room's newest `seq` (0 when it has none). */
  lastSeq(roomId: string): Promise<number>;
  presence: {
    set(roomId: string, entry: PresenceEntry): Promise<void>;
    remove(roomId: string, participantId: string): Promise<void>;
    list(roomId: string): Promise<PresenceEntry[]>;
    count(roomId: string): Promise<number>;
  };
  readonly state: RoomStateStore;
  /**
   * Forgets a room's log, presence and state when no participant is present on any node;
   * resolves `false` (and forgets nothing) otherwise. The next event starts a new epoch.
   */
  dropRoom(roomId: string): Promise<boolean>;
  close(): Promise<void>;
}

/** The shared store cannot be reached (or the bus is closed): try again after `retryAfterMs`. */
export class BusUnavailableError extends Error {
  readonly retryAfterMs: number;

  constructor(message: string, retryAfterMs = 1000, options?: ErrorOptions) {
    super(message, options);
    this.name = 'BusUnavailableError';
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * The frame without its closing part: `{"event":…,"data":…`. `seq` goes last so the Redis bus
 * appends `,"seq":N}` inside its script and every node delivers the same bytes.
 */
export function framePrefix(event: string, data: unknown): string {
  return `{"event":${JSON.stringify(event)},"data":${JSON.stringify(data)}`;
}

/** Completes a {@link framePrefix}; the Redis publish script does the same in Lua. */
export function completeFrame(prefix: string, seq?: number): string {
  return seq === undefined ? `${prefix}}` : `${prefix},"seq":${seq}}`;
}

/** Encodes a notification frame; `seq` last, so the Redis bus can append it to a prefix. */
export function encodeFrame(event: string, data: unknown, seq?: number): string {
  return completeFrame(framePrefix(event, data), seq);
}
