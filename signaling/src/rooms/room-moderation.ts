/**
 * Moderation: `moderation.kick`, `moderation.mute` and `moderation.setRole` of a participant on
 * any node (the node that holds it acts; a dead node's participant is acted on here), and a
 * refreshed token's role. A kick bars the user from the room on every node for `KICK_BAN_MS`; a
 * role set by a moderator is recorded for the user, so a rejoin or a new token does not undo it.
 */
import type { PresenceEntry } from '../bus/room-bus.js';
import { PUBLISHING_ROLES, type Role } from '../protocol/common.js';
import type { Member, Room } from './room.js';
import type { RoomConnection } from './room-connection.js';
import type { RoomMembers } from './room-members.js';
import type { RoomRpc } from './room-rpc.js';
import {
  findPresence,
  onOwner,
  presenceOf,
  publish,
  withoutNode,
  type ParticipantTarget,
  type RoomContext,
} from './room-context.js';

/** Kick, mute and role changes, local and across nodes. */
export class RoomModeration {
  readonly #ctx: RoomContext;
  readonly #members: RoomMembers;

  constructor(ctx: RoomContext, members: RoomMembers) {
    this.#ctx = ctx;
    this.#members = members;
  }

  /** `moderation.kick`: the target may be on any node; it is barred from the room on every node. */
  async kick(connection: RoomConnection, participantId: string): Promise<void> {
    await this.#onParticipant(
      connection,
      participantId,
      (room, member) => this.kickHere(room, member),
      (rpc, nodeId, target) => rpc.call(nodeId, 'room.kick', target),
      async (room, entry) => {
        await this.#ban(room.id, entry.userId);
        await this.#members.removeOrphan(room.id, entry, 'kicked');
      },
    );
  }

  /** Kicks a member here: barred from the room, `session.kicked`, then it leaves with 4003. */
  async kickHere(room: Room, target: Member): Promise<void> {
    await this.#ban(room.id, target.participant.userId);
    target.connection?.sendEvent('session.kicked', { reason: 'kicked by a moderator' });
    await this.#members.remove(room, target, 'kicked');
  }

  async #ban(roomId: string, userId: string): Promise<void> {
    await this.#ctx.bus.state.putBan(roomId, userId, Date.now() + this.#ctx.config.rooms.kickBanMs);
  }

  /** `moderation.mute`: pauses the target's producers on the node where its media lives. */
  async mute(connection: RoomConnection, participantId: string): Promise<void> {
    await this.#onParticipant(
      connection,
      participantId,
      async (room) => this.#ctx.media()?.mute(room.id, participantId),
      (rpc, nodeId, target) => rpc.call(nodeId, 'room.mute', target),
      // A participant of a dead node has no media left to pause.
      async () => {},
    );
  }

  /** `moderation.setRole`: recorded for the user, so a rejoin or a refreshed token does not undo it. */
  async setRole(connection: RoomConnection, participantId: string, role: Role): Promise<void> {
    await this.#onParticipant(
      connection,
      participantId,
      (room, member) => this.setRoleHere(room, member, role),
      (rpc, nodeId, target) => rpc.call(nodeId, 'room.setRole', { ...target, role }),
      async (room, entry) => {
        // Its node is dead: the participant keeps the role if it resumes elsewhere.
        await this.#ctx.bus.state.putRole(room.id, entry.userId, role);
        if (entry.role === role) return;
        await this.#ctx.bus.presence.set(room.id, { ...entry, role });
        await publish(this.#ctx, room.id, 'participant.updated', { participant: { ...withoutNode(entry), role } });
      },
    );
  }

  /**
   * Acts on a participant of the connection's room: `here` when its session lives on this node,
   * else `there` on the node that holds it, or `whenGone` when no node holds it any more.
   */
  async #onParticipant(
    connection: RoomConnection,
    participantId: string,
    here: (room: Room, member: Member) => Promise<void>,
    there: (rpc: RoomRpc, nodeId: string, target: ParticipantTarget) => Promise<unknown>,
    whenGone: (room: Room, entry: PresenceEntry) => Promise<void>,
  ): Promise<void> {
    const { room } = this.#members.membershipOf(connection);
    const local = room.members.get(participantId);
    if (local) return here(room, local);
    const entry = await findPresence(this.#ctx, room, participantId);
    await onOwner(
      this.#ctx,
      room.id,
      entry,
      (rpc, target) => there(rpc, entry.nodeId, target),
      () => whenGone(room, entry),
    );
  }

  /** Gives a member here a role, recorded for its user. */
  async setRoleHere(room: Room, target: Member, role: Role): Promise<void> {
    await this.#ctx.bus.state.putRole(room.id, target.participant.userId, role);
    await this.#applyRole(room, target, role);
  }

  /**
   * `session.refresh` brought a token with another role: it applies like `moderation.setRole`,
   * unless a moderator set this user's role in the room (the moderator wins).
   */
  async tokenRoleChanged(connection: RoomConnection): Promise<void> {
    const membership = this.#members.find(connection);
    if (!membership) return;
    const { room, member } = membership;
    if ((await this.#ctx.bus.state.getRole(room.id, connection.userId)) !== undefined) return;
    await this.#applyRole(room, member, connection.tokenRole);
  }

  /** Gives a member a role: `participant.updated` for everyone; a demoted publisher's producers close. */
  async #applyRole(room: Room, target: Member, role: Role): Promise<void> {
    const participant = target.participant;
    const previous = participant.role;
    if (previous === role) return;
    participant.role = role;
    await this.#ctx.bus.presence.set(room.id, presenceOf(this.#ctx, target));
    await publish(this.#ctx, room.id, 'participant.updated', { participant: { ...participant } });
    if (PUBLISHING_ROLES.includes(previous) && !PUBLISHING_ROLES.includes(role)) {
      await this.#ctx.media()?.publishingRevoked(room.id, participant.participantId);
    }
  }
}
