/**
 * The room bus of a node that runs alone: seq counters and replay logs in memory, delivery to
 * subscribers synchronously inside `publish*`, presence and room state in maps.
 */
import { randomUUID } from 'node:crypto';
import type { Role } from '../protocol/common.js';
import { ReplayLog, type ReplayLogOptions } from './replay-log.js';
import {
  HISTORY_SCAN_MAX,
  completeFrame,
  framePrefix,
  type BusEvent,
  type BusListener,
  type BusStatus,
  type HistoryPage,
  type HistoryQuery,
  type PresenceEntry,
  type ResumeRecord,
  type RoomBus,
  type RoomHead,
  type RoomStateStore,
  type Unsubscribe,
} from './room-bus.js';
import { safeDeliver } from './safe-deliver.js';
import { deliverInSpan, publishSpan, wireTrace } from '../telemetry/spans.js';

/** One room's history and shared state; subscriptions live apart and outlast `dropRoom`. */
interface LocalRoom {
  readonly epoch: string;
  readonly log: ReplayLog;
  readonly presence: Map<string, PresenceEntry>;
  readonly sessions: Map<string, ResumeRecord>;
  readonly bans: Map<string, number>;
  readonly roles: Map<string, Role>;
}

export class LocalRoomBus implements RoomBus {
  readonly #rooms = new Map<string, LocalRoom>();
  readonly #listeners = new Map<string, Set<BusListener>>();
  readonly #logOptions: ReplayLogOptions;
  readonly #now: () => number;
  readonly #onListenerError: (error: unknown) => void;
  #closed = false;

  constructor(logOptions: ReplayLogOptions, onListenerError: (error: unknown) => void = () => {}) {
    this.#logOptions = logOptions;
    this.#now = logOptions.now ?? Date.now;
    this.#onListenerError = onListenerError;
  }

  status(): BusStatus {
    return { kind: 'local', state: 'ok' };
  }

  /** The local bus never changes state. */
  onStatus(_listener: (status: BusStatus) => void): () => void {
    return () => {};
  }

  publishDurable(roomId: string, event: string, data: unknown): Promise<BusEvent> {
    return publishSpan(roomId, event, async (span) => {
      const room = this.#room(roomId);
      const prefix = framePrefix(event, data);
      const logged = room.log.append((seq) => completeFrame(prefix, seq), event);
      const busEvent: BusEvent = { roomId, event, seq: logged.seq, epoch: room.epoch, frame: logged.frame };
      span?.setAttribute('trading_room.seq', logged.seq);
      this.#deliver(roomId, busEvent, wireTrace(span));
      return busEvent;
    });
  }

  publishEphemeral(roomId: string, event: string, data: unknown): Promise<void> {
    return publishSpan(roomId, event, async (span) => {
      this.#deliver(roomId, { roomId, event, frame: completeFrame(framePrefix(event, data)) }, wireTrace(span));
    });
  }

  async subscribe(roomId: string, listener: BusListener): Promise<Unsubscribe> {
    // A registration of its own, so one function subscribed twice is two subscriptions.
    const registration: BusListener = (event) => listener(event);
    let listeners = this.#listeners.get(roomId);
    if (!listeners) {
      listeners = new Set();
      this.#listeners.set(roomId, listeners);
    }
    listeners.add(registration);
    return () => {
      const current = this.#listeners.get(roomId);
      if (!current?.delete(registration)) return;
      if (current.size === 0) this.#listeners.delete(roomId);
    };
  }

  async head(roomId: string): Promise<RoomHead> {
    const room = this.#room(roomId);
    return { epoch: room.epoch, lastSeq: room.log.lastSeq };
  }

  async readAfter(roomId: string, afterSeq: number, epoch?: string): Promise<BusEvent[] | null> {
    const room = this.#rooms.get(roomId);
    if (!room) return afterSeq === 0 && epoch === undefined ? [] : null;
    if (epoch !== undefined && epoch !== room.epoch) return null;
    const entries = room.log.readAfter(afterSeq);
    return (
      entries &&
      entries.map((e) => ({ roomId, event: eventName(e.frame), seq: e.seq, epoch: room.epoch, frame: e.frame }))
    );
  }

  async readBefore(roomId: string, query: HistoryQuery): Promise<HistoryPage> {
    const room = this.#rooms.get(roomId);
    if (!room) return { epoch: '', events: [], hasMore: false, nextBeforeSeq: 0, truncated: false };
    const { log, epoch } = room;
    const oldestSeq = log.oldestSeq;
    const found: HistoryPage['events'][number][] = [];
    let scanned = 0;
    let nextBeforeSeq = 0;
    let hasMore = false;
    for (const entry of log.newestFirst(query.beforeSeq ?? Number.MAX_SAFE_INTEGER)) {
      if (scanned === HISTORY_SCAN_MAX) {
        hasMore = true;
        break;
      }
      scanned++;
      const event = entry.event ?? eventName(entry.frame);
      if (!query.events.has(event)) {
        nextBeforeSeq = entry.seq;
        continue;
      }
      if (found.length === query.limit) {
        hasMore = true;
        break;
      }
      found.push({ roomId, event, seq: entry.seq, epoch, frame: entry.frame });
      nextBeforeSeq = entry.seq;
    }
    return { epoch, events: found.reverse(), hasMore, nextBeforeSeq, truncated: oldestSeq > 1 };
  }

  async lastSeq(roomId: string): Promise<number> {
    return this.#rooms.get(roomId)?.log.lastSeq ?? 0;
  }

  readonly presence = {
    set: async (roomId: string, entry: PresenceEntry): Promise<void> => {
      this.#room(roomId).presence.set(entry.participantId, entry);
    },
    remove: async (roomId: string, participantId: string): Promise<void> => {
      this.#rooms.get(roomId)?.presence.delete(participantId);
    },
    list: async (roomId: string): Promise<PresenceEntry[]> => [...(this.#rooms.get(roomId)?.presence.values() ?? [])],
    count: async (roomId: string): Promise<number> => this.#rooms.get(roomId)?.presence.size ?? 0,
  };

  readonly state: RoomStateStore = {
    getSession: async (roomId, sessionId) => {
      const room = this.#rooms.get(roomId);
      const record = room?.sessions.get(sessionId);
      if (!room || !record) return undefined;
      if (record.leftAt !== undefined && this.#now() - record.leftAt > this.#logOptions.maxAgeMs) {
        room.sessions.delete(sessionId);
        return undefined;
      }
      return { ...record };
    },
    putSession: async (roomId, sessionId, record) => {
      this.#room(roomId).sessions.set(sessionId, { ...record });
    },
    deleteSession: async (roomId, sessionId) => {
      this.#rooms.get(roomId)?.sessions.delete(sessionId);
    },
    getBan: async (roomId, userId) => {
      const room = this.#rooms.get(roomId);
      const untilMs = room?.bans.get(userId);
      if (!room || untilMs === undefined) return undefined;
      if (untilMs > this.#now()) return untilMs;
      room.bans.delete(userId);
      return undefined;
    },
    putBan: async (roomId, userId, untilMs) => {
      this.#room(roomId).bans.set(userId, untilMs);
    },
    getRole: async (roomId, userId) => this.#rooms.get(roomId)?.roles.get(userId),
    putRole: async (roomId, userId, role) => {
      this.#room(roomId).roles.set(userId, role);
    },
  };

  async dropRoom(roomId: string): Promise<boolean> {
    const room = this.#rooms.get(roomId);
    if (room && room.presence.size > 0) return false;
    this.#rooms.delete(roomId);
    return true;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#rooms.clear();
    this.#listeners.clear();
  }

  #room(roomId: string): LocalRoom {
    let room = this.#rooms.get(roomId);
    if (!room) {
      room = {
        epoch: randomUUID(),
        log: new ReplayLog(this.#logOptions),
        presence: new Map(),
        sessions: new Map(),
        bans: new Map(),
        roles: new Map(),
      };
      this.#rooms.set(roomId, room);
    }
    return room;
  }

  #deliver(roomId: string, event: BusEvent, trace: string | undefined): void {
    const listeners = this.#listeners.get(roomId);
    if (!listeners) return;
    if (trace === undefined) {
      safeDeliver([...listeners], event, this.#onListenerError);
      return;
    }
    const traced: BusEvent = { ...event, trace };
    deliverInSpan(traced, trace, () => safeDeliver([...listeners], traced, this.#onListenerError));
  }
}

/** Reads the event name back out of an encoded frame (only on the replay path). */
function eventName(frame: string): string {
  return (JSON.parse(frame) as { event: string }).event;
}
