/**
 * Fan-out of a room's events to this node's sockets: every frame encoded and framed once (one
 * `PreparedFrame` per event) and the same bytes written to every connected member; durable
 * events past each member's cursor, so none reaches a socket twice. The bus delivers durable
 * events once, in `seq` order, without gaps within an epoch; when it hands over a new epoch (the
 * shared store lost the history) or a `seq` past events it could no longer read, connected
 * members first get `room.resync` and every cursor restarts under the new numbering.
 */
import { encodeFrame, type BusEvent } from '../bus/room-bus.js';
import { PreparedFrame } from '../gateway/prepared-frame.js';
import type { NodeMetrics } from '../metrics.js';
import type { EphemeralEventName, EventData } from '../protocol/notifications.js';
import type { Room } from './room.js';

/** Control events between the nodes of a room travel on its bus with this prefix; sockets never see them. */
export const CONTROL_EVENT_PREFIX = '~';

export interface RoomFanoutOptions {
  readonly metrics: Pick<NodeMetrics, 'fanoutDeliveries'>;
  /** The room moved to another epoch (or past unreadable events); its members were told. */
  readonly onResync: (room: Room) => void;
}

export class RoomFanout {
  readonly #metrics: RoomFanoutOptions['metrics'];
  readonly #onResync: (room: Room) => void;

  constructor(options: RoomFanoutOptions) {
    this.#metrics = options.metrics;
    this.#onResync = options.onResync;
  }

  /** Delivers one event of the room's bus to this node's members. */
  deliver(room: Room, event: BusEvent): void {
    if (event.seq === undefined) {
      if (!event.event.startsWith(CONTROL_EVENT_PREFIX)) this.#write(room, undefined, event.frame);
      return;
    }
    const epoch = event.epoch ?? '';
    if (room.epoch === undefined) {
      // Still opening: nobody is attached yet, the position is all there is to keep.
      room.epoch = epoch;
      room.deliveredSeq = event.seq;
      return;
    }
    if (epoch !== room.epoch || event.seq > room.deliveredSeq + 1) this.#resync(room, epoch, event.seq - 1);
    else if (event.seq <= room.deliveredSeq) return;
    room.deliveredSeq = event.seq;
    room.countEvent(event.event);
    this.#write(room, event.seq, event.frame);
    room.settleWaiters();
  }

  /** Sends an ephemeral event to this node's connected members only (never through the bus). */
  sendHere<E extends EphemeralEventName>(room: Room, event: E, data: EventData<E>): void {
    this.#write(room, undefined, encodeFrame(event, data));
  }

  /** Tells the connected members the numbering restarts after `lastSeq` of `epoch`; resets every cursor. */
  #resync(room: Room, epoch: string, lastSeq: number): void {
    room.epoch = epoch;
    room.deliveredSeq = lastSeq;
    const frame = new PreparedFrame(encodeFrame('room.resync', { epoch, lastSeq }));
    for (const member of room.members.values()) {
      member.cursor = lastSeq;
      member.connection?.sendFrame(frame);
    }
    room.settleWaiters();
    this.#onResync(room);
  }

  /** Encode and frame once, write the same bytes to every connected socket of the room here. */
  #write(room: Room, seq: number | undefined, frame: string): void {
    const payload = new PreparedFrame(frame);
    let deliveries = 0;
    for (const member of room.members.values()) {
      const connection = member.connection;
      if (!connection) continue;
      if (seq !== undefined) {
        if (seq <= member.cursor) continue;
        member.cursor = seq;
      }
      connection.sendFrame(payload);
      deliveries++;
    }
    this.#metrics.fanoutDeliveries.inc(deliveries);
  }
}
