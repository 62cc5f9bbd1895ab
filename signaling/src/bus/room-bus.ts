/**
 * The room bus: how room events travel between the nodes of a cluster and how each room's
 * durable events get their `seq`. `LocalRoomBus` keeps everything in memory for a single node;
 * `RedisRoomBus` (cluster issue) shares it through Redis. One conformance suite runs against
 * every implementation.
 */
import type { Participant } from '../protocol/common.js';

/** An event as delivered to a room's subscribers. */
export interface BusEvent {
  readonly roomId: string;
  readonly event: string;
  /** Present on durable events only. */
  readonly seq?: number;
  /** The encoded notification frame, built once and written to every socket as is. */
  readonly frame: string;
}

export type BusListener = (event: BusEvent) => void;

/** Where a participant is connected, as shared presence. */
export interface PresenceEntry extends Participant {
  readonly nodeId: string;
}

export interface BusStatus {
  readonly kind: 'local' | 'redis';
  /** `degraded` while the shared store is unreachable; rooms local to the node keep working. */
  readonly state: 'ok' | 'degraded';
}

export interface RoomBus {
  status(): BusStatus;
  /** Assigns the room's next `seq`, logs the event and delivers it to every subscriber. */
  publishDurable(roomId: string, event: string, data: unknown): Promise<BusEvent>;
  /** Delivers an event without `seq` to every subscriber; not logged. */
  publishEphemeral(roomId: string, event: string, data: unknown): Promise<void>;
  /** Starts delivery of a room's events to `listener`; returns the function that stops it. */
  subscribe(roomId: string, listener: BusListener): () => void;
  /** Durable events after `afterSeq`, in order; `null` when they are no longer all retained. */
  readAfter(roomId: string, afterSeq: number): Promise<BusEvent[] | null>;
  /** The room's newest `seq` (0 when it has none). */
  lastSeq(roomId: string): Promise<number>;
  presence: {
    set(roomId: string, entry: PresenceEntry): Promise<void>;
    remove(roomId: string, participantId: string): Promise<void>;
    list(roomId: string): Promise<PresenceEntry[]>;
    count(roomId: string): Promise<number>;
  };
  /** Forgets a closed room's log and presence. */
  dropRoom(roomId: string): Promise<void>;
  close(): Promise<void>;
}

/** Encodes a notification frame; `seq` last, so the Redis bus can append it to a prefix. */
export function encodeFrame(event: string, data: unknown, seq?: number): string {
  const head = `{"event":${JSON.stringify(event)},"data":${JSON.stringify(data)}`;
  return seq === undefined ? `${head}}` : `${head},"seq":${seq}}`;
}
