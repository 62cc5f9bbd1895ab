/**
 * A room's life on this node: opened on the first join (subscribed to its bus, positioned at its
 * head), its bus events routed to the fan-out and the participant counts, closed once nobody has
 * been in it here for `ROOM_EMPTY_GRACE_MS`, and closed on purpose — by the admin API on every
 * node that has members in it, or by the node shutting down.
 */
import type { BusEvent } from '../bus/room-bus.js';
import { CloseCode, ProtocolError } from '../errors.js';
import { RpcNoListenerError } from '../cluster/cluster-rpc.js';
import { Room } from './room.js';
import type { RoomFanout } from './room-fanout.js';
import type { ParticipantCounts } from './participant-counts.js';
import type { PresenceRepair } from './presence-repair.js';
import type { RoomMembers } from './room-members.js';
import { toRoomError, type RoomContext } from './room-context.js';

/** The modules a room's life involves. */
export interface RoomLifecycleParts {
  readonly fanout: RoomFanout;
  readonly counts: ParticipantCounts;
  readonly members: RoomMembers;
  readonly repair: PresenceRepair;
}

/** Opens, closes and disposes of this node's rooms. */
export class RoomLifecycle {
  readonly #ctx: RoomContext;
  readonly #parts: RoomLifecycleParts;
  readonly #opening = new Map<string, Promise<Room>>();

  constructor(ctx: RoomContext, parts: RoomLifecycleParts) {
    this.#ctx = ctx;
    this.#parts = parts;
  }

  /** The room, opened here if it is not yet; UNAVAILABLE once the node is closing. */
  async open(roomId: string): Promise<Room> {
    const { rooms, bus, cluster } = this.#ctx;
    const existing = rooms.get(roomId);
    if (existing) return existing;
    if (this.#ctx.closing()) throw new ProtocolError('UNAVAILABLE', 'the node is shutting down');
    let opening = this.#opening.get(roomId);
    if (!opening) {
      opening = (async () => {
        const room = new Room(roomId);
        room.unsubscribe = await bus.subscribe(roomId, (event) => this.#onBusEvent(room, event));
        try {
          // Taken right after the subscription is live: every newer event reaches the listener.
          room.open(await bus.head(roomId));
        } catch (error) {
          await room.unsubscribe();
          throw error;
        }
        rooms.set(roomId, room);
        void cluster?.registry.trackRoom(roomId);
        return room;
      })().finally(() => this.#opening.delete(roomId));
      this.#opening.set(roomId, opening);
    }
    return opening;
  }

  #onBusEvent(room: Room, event: BusEvent): void {
    if (room.closed) return;
    const { counts, fanout } = this.#parts;
    if (counts.consumeSignal(room, event)) return;
    fanout.deliver(room, event);
    counts.delivered(room, event);
  }

  /** The last member here left: the room closes after the empty grace unless someone joins. */
  scheduleEmptyClose(room: Room): void {
    if (room.emptyTimer || room.closed) return;
    room.emptyTimer = setTimeout(() => {
      room.emptyTimer = undefined;
      if (room.members.size === 0) void this.#closeEmpty(room);
    }, this.#ctx.config.rooms.emptyGraceMs);
    room.emptyTimer.unref();
  }

  /** Closes a room nobody is in here; a departure the bus refused is settled first. */
  async #closeEmpty(room: Room): Promise<void> {
    if (room.departed.size > 0 || room.unreconciled) {
      try {
        await this.#parts.repair.reconcile(room, false);
      } catch {
        this.scheduleEmptyClose(room);
        return;
      }
    }
    if (room.members.size === 0) await this.#dispose(room);
  }

  async #dispose(room: Room): Promise<void> {
    if (room.closed) return;
    const { bus, cluster, log } = this.#ctx;
    room.closed = true;
    clearTimeout(room.emptyTimer);
    clearTimeout(room.countTimer);
    room.settleWaiters();
    this.#ctx.rooms.delete(room.id);
    void cluster?.registry.untrackRoom(room.id);
    await Promise.resolve(room.unsubscribe?.()).catch((error: unknown) => {
      log.warn({ err: error, roomId: room.id }, 'unsubscribing from a room failed');
    });
    await this.#ctx
      .media()
      ?.roomClosed(room.id)
      .catch((error: unknown) => {
        log.warn({ err: error, roomId: room.id }, 'closing room media failed');
      });
    await bus.dropRoom(room.id).catch((error: unknown) => {
      log.warn({ err: error, roomId: room.id }, 'forgetting a closed room failed; its keys expire');
    });
    log.info({ roomId: room.id }, 'room closed');
  }

  /**
   * Admin: closes a room on every node that has members in it (each tells its participants with
   * `session.kicked` and closes them with 4003). False when no node knows the room.
   */
  async closeRoom(roomId: string): Promise<boolean> {
    const { bus, cluster, nodeId } = this.#ctx;
    const presence = await bus.presence.list(roomId);
    const nodes = new Set(presence.map((p) => p.nodeId));
    if (this.#ctx.rooms.has(roomId)) nodes.add(nodeId);
    let closed = false;
    for (const node of nodes) {
      if (node === nodeId || !cluster) {
        closed = (await this.closeHere(roomId)) || closed;
        continue;
      }
      try {
        closed = (await cluster.rpc.call(node, 'room.close', { roomId })).closed || closed;
      } catch (error) {
        if (!(error instanceof RpcNoListenerError)) throw toRoomError(error);
      }
    }
    // What is left names dead nodes (or none): nobody to tell.
    for (const entry of await bus.presence.list(roomId)) await bus.presence.remove(roomId, entry.participantId);
    await bus.dropRoom(roomId).catch(() => false);
    return closed || nodes.size > 0;
  }

  /** Closes the room on this node: `session.kicked` and 4003 for each member here. */
  async closeHere(roomId: string): Promise<boolean> {
    const room = this.#ctx.rooms.get(roomId);
    if (!room) return false;
    for (const member of [...room.members.values()]) {
      member.connection?.sendEvent('session.kicked', { reason: 'room closed' });
      if (member.graceTimer) clearTimeout(member.graceTimer);
      this.#parts.members.detach(member, CloseCode.KICKED, 'room closed');
      await this.#ctx.bus.presence.remove(room.id, member.participant.participantId);
    }
    room.members.clear();
    room.memberByUser.clear();
    await this.#dispose(room);
    return true;
  }

  /**
   * Node shutdown: disposes of every room here. In a cluster, members still here leave with
   * `disconnected` first (a later resume on another node still finds their session).
   */
  async closeAll(): Promise<void> {
    const inCluster = this.#ctx.cluster !== undefined;
    for (const room of [...this.#ctx.rooms.values()]) {
      for (const member of [...room.members.values()]) {
        if (member.graceTimer) clearTimeout(member.graceTimer);
        if (inCluster) await this.#parts.members.remove(room, member, 'disconnected').catch(() => {});
      }
      await this.#dispose(room);
    }
  }
}
