/**
 * One room as this node sees it: the participants whose sessions live here, the sessions that
 * may still resume, role overrides and bans, and the cursor of durable events delivered to the
 * node's sockets.
 */
import type { Participant, Role } from '../protocol/common.js';
import type { ClientSession } from '../gateway/client-session.js';

/** A participant of the room whose session lives on this node. */
export interface Member {
  readonly participant: Participant;
  readonly sessionId: string;
  /** The socket it is connected through; undefined while it may still resume. */
  connection: ClientSession | undefined;
  /** Highest `seq` written to `connection`. */
  cursor: number;
  graceTimer: NodeJS.Timeout | undefined;
}

/** What a session id resumes, kept after the participant leaves until it ages out. */
export interface SessionRecord {
  readonly participantId: string;
  readonly userId: string;
  readonly joinedAt: number;
  /** The room's `seq` when the session first joined: a resume never replays from before it. */
  joinSeq: number;
  leftAt: number | undefined;
}

export class Room {
  readonly id: string;
  readonly createdAt = Date.now();
  readonly members = new Map<string, Member>();
  readonly memberByUser = new Map<string, Member>();
  readonly sessions = new Map<string, SessionRecord>();
  readonly roleOverrides = new Map<string, Role>();
  readonly bans = new Map<string, number>();
  /** Highest durable `seq` fanned out to this node's sockets. */
  deliveredSeq = 0;
  unsubscribe: (() => void) | undefined;
  emptyTimer: NodeJS.Timeout | undefined;
  countTimer: NodeJS.Timeout | undefined;
  lastCountSentAt = 0;
  lastCountSent = -1;
  /** Durable events per one-minute bucket, for the admin event rate. */
  readonly #eventBuckets: [minute: number, count: number][] = [];
  /** Frames that arrived while a seq gap is being repaired, kept until the repair succeeds. */
  pendingRepair: { seq: number | undefined; frame: string }[] | undefined;
  /** Failed repair attempts in a row, and the timer of the next one. */
  repairFailures = 0;
  repairTimer: NodeJS.Timeout | undefined;
  closed = false;

  constructor(id: string) {
    this.id = id;
  }

  /** Counts a durable event for the event-rate figure. */
  countEvent(now = Date.now()): void {
    const minute = Math.floor(now / 60_000);
    const last = this.#eventBuckets.at(-1);
    if (last && last[0] === minute) last[1]++;
    else {
      this.#eventBuckets.push([minute, 1]);
      if (this.#eventBuckets.length > 2) this.#eventBuckets.shift();
    }
  }

  /** Durable events in the last full minute plus the current one, scaled to per minute. */
  eventsPerMinute(now = Date.now()): number {
    const minute = Math.floor(now / 60_000);
    let total = 0;
    for (const [m, count] of this.#eventBuckets) if (m >= minute - 1) total += count;
    const elapsedMs = 60_000 + (now % 60_000);
    return Math.round((total * 60_000) / elapsedMs);
  }

  isBanned(userId: string, now = Date.now()): boolean {
    const until = this.bans.get(userId);
    if (until === undefined) return false;
    if (until > now) return true;
    this.bans.delete(userId);
    return false;
  }

  /** Drops session records that can no longer resume. */
  pruneSessions(maxAgeMs: number, now = Date.now()): void {
    for (const [id, record] of this.sessions) {
      if (record.leftAt !== undefined && now - record.leftAt > maxAgeMs) this.sessions.delete(id);
    }
  }
}
