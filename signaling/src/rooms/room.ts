/**
 * One room as this node sees it: the participants whose sessions live here (connected, or
 * within their resume grace), the position of the durable events delivered to this node's
 * sockets, and the room's timers. What the nodes of a cluster share — presence, resume records,
 * bans, role overrides — lives on the bus, never here.
 */
import type { ResumeRecord, RoomHead, Unsubscribe } from '../bus/room-bus.js';
import type { Participant } from '../protocol/common.js';
import type { EventData } from '../protocol/notifications.js';
import type { RoomConnection } from './room-connection.js';

/** A participant of the room whose session lives on this node. */
export interface Member {
  /** Its role changes with `moderation.setRole` and refreshed tokens. */
  readonly participant: Participant;
  readonly sessionId: string;
  /** What its session resumes, as last written to the bus. */
  record: ResumeRecord;
  /** The socket it is connected through; undefined while it may still resume. */
  connection: RoomConnection | undefined;
  /** Highest `seq` written to `connection`. */
  cursor: number;
  graceTimer: NodeJS.Timeout | undefined;
}

type LeaveReason = EventData<'participant.left'>['reason'];

interface DeliveryWaiter {
  readonly epoch: string;
  readonly seq: number;
  readonly resolve: () => void;
}

export class Room {
  readonly id: string;
  readonly createdAt = Date.now();
  readonly members = new Map<string, Member>();
  readonly memberByUser = new Map<string, Member>();
  /** The epoch of the history delivered here; undefined until the room is open. */
  epoch: string | undefined;
  /** Highest durable `seq` of `epoch` fanned out to this node's sockets. */
  deliveredSeq = 0;
  unsubscribe: Unsubscribe | undefined;
  emptyTimer: NodeJS.Timeout | undefined;
  countTimer: NodeJS.Timeout | undefined;
  lastCountSentAt = 0;
  /** The last `participant.count` sent here; -1 until the room is first large. */
  lastCountSent = -1;
  /** Departures the bus refused (it was unreachable), announced when it is back. */
  readonly departed = new Map<string, { readonly member: Member; readonly reason: LeaveReason }>();
  /** A reconcile with the bus failed: run it again when the bus is back, and before closing. */
  unreconciled = false;
  closed = false;
  /** Durable events per one-minute bucket, for the admin event rates: all, chat messages, alerts. */
  readonly #eventBuckets: [minute: number, count: number][] = [];
  readonly #chatBuckets: [minute: number, count: number][] = [];
  readonly #alertBuckets: [minute: number, count: number][] = [];
  #waiters: DeliveryWaiter[] = [];

  constructor(id: string) {
    this.id = id;
  }

  /** Takes the room's position right after subscribing, unless a delivery already moved it on. */
  open(head: RoomHead): void {
    if (this.epoch === head.epoch) this.deliveredSeq = Math.max(this.deliveredSeq, head.lastSeq);
    else {
      this.epoch = head.epoch;
      this.deliveredSeq = head.lastSeq;
    }
  }

  /**
   * Resolves once the durable event `seq` of `epoch` has been fanned out here (or the room moved
   * to another epoch, or closed), or after `timeoutMs`.
   */
  delivered(epoch: string, seq: number, timeoutMs: number): Promise<void> {
    if (this.#isDelivered(epoch, seq)) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      const waiter: DeliveryWaiter = { epoch, seq, resolve: done };
      this.#waiters.push(waiter);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
    });
  }

  /** Called after every durable delivery, epoch change and close. */
  settleWaiters(): void {
    if (this.#waiters.length === 0) return;
    const waiting: DeliveryWaiter[] = [];
    for (const waiter of this.#waiters) {
      if (this.#isDelivered(waiter.epoch, waiter.seq)) waiter.resolve();
      else waiting.push(waiter);
    }
    this.#waiters = waiting;
  }

  #isDelivered(epoch: string, seq: number): boolean {
    return this.closed || this.epoch !== epoch || this.deliveredSeq >= seq;
  }

  /** Counts a durable event (by its name) for the event-rate figures. */
  countEvent(event?: string, now = Date.now()): void {
    countInBucket(this.#eventBuckets, now);
    if (event === 'chat.message') countInBucket(this.#chatBuckets, now);
    else if (event === 'alert.published') countInBucket(this.#alertBuckets, now);
  }

  /** Durable events in the last full minute plus the current one, scaled to per minute. */
  eventsPerMinute(now = Date.now()): number {
    return perMinute(this.#eventBuckets, now);
  }

  /** Chat messages per minute, measured like {@link eventsPerMinute}. */
  chatMessagesPerMinute(now = Date.now()): number {
    return perMinute(this.#chatBuckets, now);
  }

  /** Alerts per minute, measured like {@link eventsPerMinute}. */
  alertsPerMinute(now = Date.now()): number {
    return perMinute(this.#alertBuckets, now);
  }
}

function countInBucket(buckets: [minute: number, count: number][], now: number): void {
  const minute = Math.floor(now / 60_000);
  const last = buckets.at(-1);
  if (last && last[0] === minute) last[1]++;
  else {
    buckets.push([minute, 1]);
    if (buckets.length > 2) buckets.shift();
  }
}

function perMinute(buckets: readonly [minute: number, count: number][], now: number): number {
  const minute = Math.floor(now / 60_000);
  let total = 0;
  for (const [m, count] of buckets) if (m >= minute - 1) total += count;
  const elapsedMs = 60_000 + (now % 60_000);
  return Math.round((total * 60_000) / elapsedMs);
}
