/**
 * Participant counts of large rooms. Past `LARGE_ROOM_THRESHOLD`, traders' joins and leaves are
 * not durable events: the node that saw one signals the room's nodes on the bus, and each node
 * sends `participant.count` (the cluster-wide count) to its own sockets, at most once per
 * interval, never through the bus.
 */
import type { BusEvent } from '../bus/room-bus.js';
import type { Role } from '../protocol/common.js';
import type { Room } from './room.js';
import { CONTROL_EVENT_PREFIX, type RoomFanout } from './room-fanout.js';
import type { RoomContext } from './room-context.js';

/**
 * A trader joined or left a large room without a durable event: every node of the room counts
 * again (`participant.count` goes to each node's own sockets, never through the bus).
 */
const PRESENCE_CHANGED = `${CONTROL_EVENT_PREFIX}presence`;

/** Decides which presence changes are durable and sends `participant.count` in large rooms. */
export class ParticipantCounts {
  readonly #ctx: RoomContext;
  readonly #fanout: RoomFanout;

  constructor(ctx: RoomContext, fanout: RoomFanout) {
    this.#ctx = ctx;
    this.#fanout = fanout;
  }

  /** Large rooms: traders' joins and leaves are not durable; `participant.count` tells. */
  isPresenceDurable(role: Role, count: number): boolean {
    return role !== 'trader' || count <= this.#ctx.config.rooms.largeRoomThreshold;
  }

  /** Tells every node of the room to count again (a join or leave that was not durable). */
  async presenceChanged(roomId: string): Promise<void> {
    await this.#ctx.bus.publishEphemeral(roomId, PRESENCE_CHANGED, {});
  }

  /** Takes the room's count signal off the bus: true when `event` was one (it is for no socket). */
  consumeSignal(room: Room, event: BusEvent): boolean {
    if (event.event !== PRESENCE_CHANGED) return false;
    this.#schedule(room);
    return true;
  }

  /** After a delivery: a durable join or leave in a large room changes the count too. */
  delivered(room: Room, event: BusEvent): void {
    if (room.lastCountSent >= 0 && (event.event === 'participant.joined' || event.event === 'participant.left')) {
      this.#schedule(room);
    }
  }

  /**
   * `participant.count` once a room is large, at most once per interval, trailing, when the
   * cluster-wide count changed. Each node sends it to its own sockets only.
   */
  #schedule(room: Room): void {
    if (room.countTimer || room.closed) return;
    const { bus, config, log } = this.#ctx;
    const interval = config.rooms.participantCountIntervalMs;
    const delay = Math.max(0, room.lastCountSentAt + interval - Date.now());
    room.countTimer = setTimeout(() => {
      room.countTimer = undefined;
      if (room.closed) return;
      bus.presence
        .count(room.id)
        .then((count) => {
          const large = count > config.rooms.largeRoomThreshold;
          if (room.closed || count === room.lastCountSent || (!large && room.lastCountSent < 0)) return;
          room.lastCountSent = count;
          room.lastCountSentAt = Date.now();
          this.#fanout.sendHere(room, 'participant.count', { count });
        })
        .catch((error: unknown) => {
          log.warn({ err: error, roomId: room.id }, 'sending participant.count failed');
        });
    }, delay);
    room.countTimer.unref();
  }
}
