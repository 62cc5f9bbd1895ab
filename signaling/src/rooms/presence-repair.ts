/**
 * Keeps a room's presence in line with this node's members. The shared store can lose presence
 * (Redis restarted empty, a new epoch), a survivor can reap this node while it was cut off, and
 * a departure can be refused while the bus is unreachable: each time, members missing from
 * presence are written back and announced again, and entries naming this node that it no longer
 * holds are removed and announced. Runs after an epoch change, when the bus is back and when the
 * node registered again.
 */
import type { BusStatus } from '../bus/room-bus.js';
import type { Room } from './room.js';
import type { RoomMembers } from './room-members.js';
import type { RoomContext } from './room-context.js';

/** Repairs presence per room, one pass at a time, again when asked meanwhile. */
export class PresenceRepair {
  readonly #ctx: RoomContext;
  readonly #members: RoomMembers;
  /** Rooms whose presence is being (or must again be) brought in line with this node's members. */
  readonly #reconciling = new Map<Room, { again: boolean; epochChanged: boolean }>();

  constructor(ctx: RoomContext, members: RoomMembers) {
    this.#ctx = ctx;
    this.#members = members;
  }

  /**
   * Brings the room's presence in line with this node's members, in the background. After an
   * epoch change every member's resume record is written again, counting from the new numbering.
   */
  reconcileSoon(room: Room, epochChanged = false): void {
    const running = this.#reconciling.get(room);
    if (running) {
      running.again = true;
      running.epochChanged ||= epochChanged;
      return;
    }
    const state = { again: false, epochChanged };
    this.#reconciling.set(room, state);
    void (async () => {
      do {
        const changed = state.epochChanged;
        state.again = false;
        state.epochChanged = false;
        try {
          await this.reconcile(room, changed);
        } catch (error) {
          this.#ctx.log.warn(
            { err: error, roomId: room.id },
            'bringing presence in line failed; retried when the bus is back',
          );
          room.unreconciled = true;
          break;
        }
      } while (state.again && !room.closed);
      this.#reconciling.delete(room);
    })();
  }

  /** Every room here, in the background (the node registered again). */
  reconcileAll(): void {
    for (const room of this.#ctx.rooms.values()) this.reconcileSoon(room);
  }

  /** One pass of {@link reconcileSoon}; rejects when the bus fails (the room stays `unreconciled`). */
  async reconcile(room: Room, epochChanged: boolean): Promise<void> {
    if (room.closed) return;
    room.unreconciled = false;
    const members = this.#members;
    const presence = await this.#ctx.bus.presence.list(room.id);
    const present = new Map(presence.map((p) => [p.participantId, p]));
    for (const member of [...room.members.values()]) {
      if (room.members.get(member.participant.participantId) !== member) continue;
      if (epochChanged) member.record = { ...member.record, joinSeq: Math.min(member.cursor, room.deliveredSeq) };
      const entry = present.get(member.participant.participantId);
      if (!entry) {
        await members.announceJoin(room, member);
        await members.saveRecord(room, member);
      } else if (epochChanged) await members.saveRecord(room, member);
    }
    for (const entry of presence) {
      if (entry.nodeId !== this.#ctx.nodeId || room.members.has(entry.participantId)) continue;
      const departed = room.departed.get(entry.participantId);
      if (departed) await members.announceDeparture(room, departed.member, departed.reason);
      else await members.removeOrphan(room.id, entry, 'disconnected');
      room.departed.delete(entry.participantId);
    }
    room.departed.clear();
  }

  /** The bus is back: settle the departures it refused and the passes that failed. */
  onBusStatus(status: BusStatus): void {
    if (status.state !== 'ok') return;
    for (const room of this.#ctx.rooms.values()) {
      if (room.departed.size > 0 || room.unreconciled) this.reconcileSoon(room);
    }
  }
}
