/**
 * The room bus of a node that runs alone: seq counters and replay logs in memory, delivery to
 * subscribers synchronously inside `publish*`, presence in a map.
 */
import { ReplayLog, type ReplayLogOptions } from './replay-log.js';
import {
  encodeFrame,
  type BusEvent,
  type BusListener,
  type BusStatus,
  type PresenceEntry,
  type RoomBus,
} from './room-bus.js';

interface LocalRoom {
  readonly log: ReplayLog;
  readonly listeners: Set<BusListener>;
  readonly presence: Map<string, PresenceEntry>;
}

export class LocalRoomBus implements RoomBus {
  readonly #rooms = new Map<string, LocalRoom>();
  readonly #logOptions: ReplayLogOptions;
  readonly #onListenerError: (error: unknown) => void;
  #closed = false;

  constructor(logOptions: ReplayLogOptions, onListenerError: (error: unknown) => void = () => {}) {
    this.#logOptions = logOptions;
    this.#onListenerError = onListenerError;
  }

  status(): BusStatus {
    return { kind: 'local', state: 'ok' };
  }

  async publishDurable(roomId: string, event: string, data: unknown): Promise<BusEvent> {
    const room = this.#room(roomId);
    const logged = room.log.append((seq) => encodeFrame(event, data, seq));
    const busEvent: BusEvent = { roomId, event, seq: logged.seq, frame: logged.frame };
    this.#deliver(room, busEvent);
    return busEvent;
  }

  async publishEphemeral(roomId: string, event: string, data: unknown): Promise<void> {
    const room = this.#rooms.get(roomId);
    if (room) this.#deliver(room, { roomId, event, frame: encodeFrame(event, data) });
  }

  subscribe(roomId: string, listener: BusListener): () => void {
    const room = this.#room(roomId);
    room.listeners.add(listener);
    return () => room.listeners.delete(listener);
  }

  async readAfter(roomId: string, afterSeq: number): Promise<BusEvent[] | null> {
    const room = this.#rooms.get(roomId);
    if (!room) return afterSeq === 0 ? [] : null;
    const entries = room.log.readAfter(afterSeq);
    return entries && entries.map((e) => ({ roomId, event: eventName(e.frame), seq: e.seq, frame: e.frame }));
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

  async dropRoom(roomId: string): Promise<void> {
    this.#rooms.delete(roomId);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#rooms.clear();
  }

  #room(roomId: string): LocalRoom {
    let room = this.#rooms.get(roomId);
    if (!room) {
      room = { log: new ReplayLog(this.#logOptions), listeners: new Set(), presence: new Map() };
      this.#rooms.set(roomId, room);
    }
    return room;
  }

  #deliver(room: LocalRoom, event: BusEvent): void {
    for (const listener of room.listeners) {
      try {
        listener(event);
      } catch (error) {
        this.#onListenerError(error);
      }
    }
  }
}

/** Reads the event name back out of an encoded frame (only on the replay path). */
function eventName(frame: string): string {
  return (JSON.parse(frame) as { event: string }).event;
}
