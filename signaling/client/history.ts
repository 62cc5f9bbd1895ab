/**
 * The room's history for late joiners: paging backwards through `room.history`, and a timeline
 * that merges those earlier events with live ones without duplicates (one entry per `seq` within
 * the room's epoch). Browser-safe, like the rest of the SDK.
 */
import type { MethodData, MethodResult, Notification } from './protocol.generated.js';

/** One page of `room.history`. */
export type HistoryPage = MethodResult<'room.history'>;
/** What `room.history` is asked: `kinds`, `beforeSeq`, `limit`. */
export type HistoryOptions = MethodData<'room.history'>;
/** A chat message or an alert, as delivered live. */
export type HistoryEvent = HistoryPage['events'][number];

/**
 * Pages of the room's history, newest page first, each page oldest first: asks again with the
 * previous page's `nextBeforeSeq` while `hasMore`, and stops at the oldest retained event (or
 * when the room's epoch changed between two pages: older pages would be another history).
 */
export async function* historyPages(
  fetchPage: (options: HistoryOptions) => Promise<HistoryPage>,
  options: HistoryOptions = {},
): AsyncGenerator<HistoryPage, void, undefined> {
  let request: HistoryOptions = options;
  let epoch: string | undefined;
  for (;;) {
    const page = await fetchPage(request);
    if (epoch !== undefined && page.epoch !== epoch) return;
    epoch = page.epoch;
    yield page;
    const next = page.nextBeforeSeq ?? page.events[0]?.seq;
    if (!page.hasMore || next === undefined) return;
    request = { ...request, beforeSeq: next };
  }
}

/** A chat message or alert of the timeline; `earlier` when it came from history, not live. */
export interface TimelineEntry {
  readonly seq: number;
  readonly earlier: boolean;
  readonly notification: HistoryEvent;
}

/** The events a timeline keeps. */
const TIMELINE_EVENTS = new Set<string>(['chat.message', 'alert.published']);

/**
 * The room's chat and alerts in `seq` order, from history and live delivery together: an event
 * both brought is kept once (as live when live came first). A new epoch starts it empty.
 */
export class RoomTimeline {
  readonly #bySeq = new Map<number, TimelineEntry>();
  #epoch: string | undefined;

  /** The epoch the entries belong to. */
  get epoch(): string | undefined {
    return this.#epoch;
  }

  /** Adds a page of history; returns the entries that were new. */
  addHistory(page: HistoryPage): TimelineEntry[] {
    this.#useEpoch(page.epoch);
    const added: TimelineEntry[] = [];
    for (const notification of page.events) {
      if (this.#bySeq.has(notification.seq)) continue;
      const entry = { seq: notification.seq, earlier: true, notification };
      this.#bySeq.set(entry.seq, entry);
      added.push(entry);
    }
    return added;
  }

  /**
   * Adds a live notification of the room's `epoch`; returns its entry, or undefined when it is
   * not a chat message or an alert, or was already there.
   */
  addLive(notification: Notification, epoch: string): TimelineEntry | undefined {
    const seq = (notification as { seq?: number }).seq;
    if (seq === undefined || !TIMELINE_EVENTS.has(notification.event)) return undefined;
    this.#useEpoch(epoch);
    if (this.#bySeq.has(seq)) return undefined;
    const entry: TimelineEntry = { seq, earlier: false, notification: notification as HistoryEvent };
    this.#bySeq.set(seq, entry);
    return entry;
  }

  /** Every entry, oldest first. */
  entries(): TimelineEntry[] {
    return [...this.#bySeq.values()].sort((a, b) => a.seq - b.seq);
  }

  #useEpoch(epoch: string): void {
    if (epoch === this.#epoch) return;
    this.#epoch = epoch;
    this.#bySeq.clear();
  }
}
