/**
 * The members of this node's rooms: which connection is which member (the room service's own
 * record, never written into the connection), attaching and detaching sockets, the resume grace
 * of a socket that closed, and a member leaving — here, then from presence, with
 * `participant.left` (or, in a large room, the count signal).
 */
import { BusUnavailableError, type BusEvent, type PresenceEntry } from '../bus/room-bus.js';
import { CloseCode, ProtocolError } from '../errors.js';
import type { Participant } from '../protocol/common.js';
import type { Member, Room } from './room.js';
import type { RoomConnection } from './room-connection.js';
import type { ParticipantCounts } from './participant-counts.js';
import { presenceOf, publish, type LeaveReason, type RoomContext } from './room-context.js';

/** A connection's place: its room and the member it is. */
export interface Membership {
  readonly room: Room;
  readonly member: Member;
}

/** Keeps this node's members and announces their arrivals and departures on the bus. */
export class RoomMembers {
  readonly #ctx: RoomContext;
  readonly #counts: ParticipantCounts;
  readonly #onEmpty: (room: Room) => void;
  readonly #memberships = new Map<RoomConnection, Membership>();
  /** While closing: called when the last participant here was handed over to another node. */
  #allHandedOver: (() => void) | undefined;

  /** `onEmpty` is called whenever the last member here leaves a room. */
  constructor(ctx: RoomContext, counts: ParticipantCounts, onEmpty: (room: Room) => void) {
    this.#ctx = ctx;
    this.#counts = counts;
    this.#onEmpty = onEmpty;
  }

  /** Participants whose sessions live on this node (connected or within the resume grace). */
  get participantCount(): number {
    let n = 0;
    for (const room of this.#ctx.rooms.values()) n += room.members.size;
    return n;
  }

  /** The connection's membership, or undefined when it is no member. */
  find(connection: RoomConnection): Membership | undefined {
    return this.#memberships.get(connection);
  }

  /** The connection's membership; NOT_JOINED when it has none (or its room closed). */
  membershipOf(connection: RoomConnection): Membership {
    const membership = this.#memberships.get(connection);
    if (!membership || membership.room.closed) throw new ProtocolError('NOT_JOINED', 'join the room first');
    return membership;
  }

  /** Adds a member here (not yet in presence, no socket attached). */
  create(room: Room, participant: Participant, sessionId: string, record: Member['record']): Member {
    const member: Member = { participant, sessionId, record, connection: undefined, cursor: 0, graceTimer: undefined };
    room.members.set(participant.participantId, member);
    room.memberByUser.set(participant.userId, member);
    if (room.emptyTimer) {
      clearTimeout(room.emptyTimer);
      room.emptyTimer = undefined;
    }
    return member;
  }

  /** Drops a member that never made it into presence (its join failed on the bus). */
  forget(room: Room, member: Member): void {
    const { participantId, userId } = member.participant;
    if (room.members.get(participantId) === member) room.members.delete(participantId);
    if (room.memberByUser.get(userId) === member) room.memberByUser.delete(userId);
    if (room.members.size === 0) this.#onEmpty(room);
  }

  /** Connects the member through `connection`, which has seen the room's events up to `cursor`. */
  attach(room: Room, member: Member, connection: RoomConnection, cursor: number): void {
    if (member.graceTimer) {
      clearTimeout(member.graceTimer);
      member.graceTimer = undefined;
    }
    member.connection = connection;
    member.cursor = cursor;
    this.#memberships.set(connection, { room, member });
  }

  /** Closes the member's current socket with `code`; the member itself stays. */
  detach(member: Member, code: number, reason: string): void {
    const old = member.connection;
    if (!old) return;
    member.connection = undefined;
    this.#memberships.delete(old);
    old.close(code, reason);
  }

  /** A newer session of the same user takes over: the old socket closes with 4009. */
  replace(member: Member): Member {
    this.detach(member, CloseCode.REPLACED, 'replaced by a newer session');
    return member;
  }

  /** `room.leave`, or the socket closed: leave now, or after the resume grace. */
  async leave(connection: RoomConnection, reason: 'left' | 'disconnected'): Promise<void> {
    const membership = this.#memberships.get(connection);
    if (!membership) return;
    this.#memberships.delete(connection);
    const { room, member } = membership;
    if (member.connection !== connection) return;
    member.connection = undefined;
    const graceMs = this.#ctx.config.rooms.resumeGraceMs;
    if (reason === 'left' || graceMs === 0) {
      await this.remove(room, member, reason);
      return;
    }
    member.graceTimer = setTimeout(() => {
      member.graceTimer = undefined;
      if (!member.connection) {
        this.remove(room, member, 'disconnected').catch((error: unknown) => {
          this.#ctx.log.error({ err: error, roomId: room.id }, 'removing a disconnected participant failed');
        });
      }
    }, graceMs);
    member.graceTimer.unref();
  }

  /** The member leaves the room: gone here, then from presence, with `participant.left`. */
  async remove(room: Room, member: Member, reason: LeaveReason): Promise<void> {
    const { participantId } = member.participant;
    if (room.members.get(participantId) !== member) return;
    this.#dropHere(room, member, reason === 'kicked' ? CloseCode.KICKED : CloseCode.NORMAL, reason);
    await this.#closeMedia(room, participantId, 'closing media of a leaving participant failed');
    try {
      await this.announceDeparture(room, member, reason);
    } catch (error) {
      if (!(error instanceof BusUnavailableError)) throw error;
      // Presence still names this node for it: announced when the bus is back (reconcile).
      room.departed.set(participantId, { member, reason });
      this.#ctx.log.warn({ roomId: room.id, participantId }, 'a departure waits for the bus to come back');
    }
    if (room.members.size === 0) this.#onEmpty(room);
  }

  /** The session resumes on another node: close its socket with 4009 and forget it, silently. */
  async handOver(room: Room, member: Member): Promise<void> {
    this.#dropHere(room, member, CloseCode.REPLACED, 'resumed on another node');
    if (room.members.size === 0) this.#onEmpty(room);
    if (this.participantCount === 0) this.#allHandedOver?.();
    const { participantId } = member.participant;
    await this.#closeMedia(room, participantId, 'closing media of a participant resumed elsewhere failed');
  }

  /** The member is no longer here: its grace ends, its socket closes with `code`. */
  #dropHere(room: Room, member: Member, code: number, reason: string): void {
    const { participantId, userId } = member.participant;
    if (member.graceTimer) clearTimeout(member.graceTimer);
    this.detach(member, code, reason);
    room.members.delete(participantId);
    if (room.memberByUser.get(userId) === member) room.memberByUser.delete(userId);
  }

  /** Closes the participant's media; a failure is logged with `message`. */
  async #closeMedia(room: Room, participantId: string, message: string): Promise<void> {
    try {
      await this.#ctx.media()?.participantLeft(room.id, participantId);
    } catch (error) {
      this.#ctx.log.warn({ err: error, roomId: room.id, participantId }, message);
    }
  }

  /** Resolves once no participant is left here (all handed over to other nodes), or after `timeoutMs`. */
  async handOversDone(timeoutMs: number): Promise<void> {
    if (this.participantCount === 0 || timeoutMs <= 0) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      this.#allHandedOver = done;
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
    });
    this.#allHandedOver = undefined;
  }

  /** Writes presence and, unless the room is large and this a trader, `participant.joined`. */
  async announceJoin(room: Room, member: Member): Promise<BusEvent | undefined> {
    const { bus } = this.#ctx;
    await bus.presence.set(room.id, presenceOf(this.#ctx, member));
    const count = await bus.presence.count(room.id);
    if (this.#counts.isPresenceDurable(member.participant.role, count)) {
      return publish(this.#ctx, room.id, 'participant.joined', { participant: { ...member.participant } });
    }
    await this.#counts.presenceChanged(room.id);
    return undefined;
  }

  /** Writes the member's resume record; a failure costs only a later resume (it joins afresh). */
  async saveRecord(room: Room, member: Member): Promise<void> {
    try {
      await this.#ctx.bus.state.putSession(room.id, member.sessionId, member.record);
    } catch (error) {
      this.#ctx.log.warn(
        { err: error, roomId: room.id },
        'the resume record could not be written; a resume will join afresh',
      );
    }
  }

  /** The shared side of a departure: the resume record (gone after a kick), presence, `participant.left`. */
  async announceDeparture(room: Room, member: Member, reason: LeaveReason): Promise<void> {
    const { state } = this.#ctx.bus;
    if (reason === 'kicked') await state.deleteSession(room.id, member.sessionId);
    else await state.putSession(room.id, member.sessionId, { ...member.record, leftAt: Date.now() });
    await this.announceLeave(room.id, member.participant, reason);
  }

  /** Removes the participant from presence and tells the room (durably unless large and a trader). */
  async announceLeave(
    roomId: string,
    participant: Pick<Participant, 'participantId' | 'role'>,
    reason: LeaveReason,
  ): Promise<void> {
    const { bus } = this.#ctx;
    const countBefore = await bus.presence.count(roomId);
    await bus.presence.remove(roomId, participant.participantId);
    if (this.#counts.isPresenceDurable(participant.role, countBefore)) {
      await publish(this.#ctx, roomId, 'participant.left', { participantId: participant.participantId, reason });
    } else {
      await this.#counts.presenceChanged(roomId);
    }
  }

  /** A participant in presence that no node holds any more (its node forgot it, or died). */
  async removeOrphan(roomId: string, entry: PresenceEntry, reason: LeaveReason): Promise<void> {
    await this.announceLeave(roomId, entry, reason);
  }
}
