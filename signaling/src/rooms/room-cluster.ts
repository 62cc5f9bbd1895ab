/**
 * This node's side of a cluster: the room RPC methods other nodes call (`rooms/room-rpc.ts`) —
 * kick, mute, setRole, replacement and hand-over of a participant held here, closing a room here,
 * this node's figures — the reaping of a dead node's participants (registry `nodedead`: this node
 * holds the dead node's lock), and presence repaired after this node registered again.
 */
import { ProtocolError } from '../errors.js';
import type { NodeDeadEvent } from '../cluster/node-registry.js';
import type { Member, Room } from './room.js';
import type { RoomMembers } from './room-members.js';
import type { RoomModeration } from './room-moderation.js';
import type { RoomLifecycle } from './room-lifecycle.js';
import type { PresenceRepair } from './presence-repair.js';
import { localSummaries, localSummary } from './room-reports.js';
import { ADMIN_ROOMS_PER_NODE, roomRpcParams, type RoomCluster } from './room-rpc.js';
import type { ParticipantTarget, RoomContext } from './room-context.js';

/** The modules the cluster's requests act through. */
export interface RoomClusterParts {
  readonly members: RoomMembers;
  readonly moderation: RoomModeration;
  readonly lifecycle: RoomLifecycle;
  readonly repair: PresenceRepair;
}

/** Answers other nodes and reaps dead ones. */
export class RoomClusterHandlers {
  readonly #ctx: RoomContext;
  readonly #parts: RoomClusterParts;
  readonly #reapTimers = new Set<NodeJS.Timeout>();

  constructor(ctx: RoomContext, parts: RoomClusterParts) {
    this.#ctx = ctx;
    this.#parts = parts;
  }

  /** Registers the RPC handlers and the registry listeners; returns what undoes each. */
  start({ rpc, registry }: RoomCluster): (() => void)[] {
    const { members, moderation, lifecycle, repair } = this.#parts;
    /** What a participant's own node does for another node, answered `{}` (NOT_FOUND when it is not here). */
    const onHere =
      <P extends ParticipantTarget>(act: (room: Room, member: Member, params: P) => unknown) =>
      async (params: P): Promise<Record<string, never>> => {
        const room = this.#ctx.rooms.get(params.roomId);
        const member = room?.members.get(params.participantId);
        if (!room || !member)
          throw new ProtocolError('NOT_FOUND', `no participant ${params.participantId} in this room`);
        await act(room, member, params);
        return {};
      };
    const p = roomRpcParams;
    const stops = [
      rpc.handle(
        'room.kick',
        onHere((room, member) => moderation.kickHere(room, member)),
        { params: p['room.kick'] },
      ),
      rpc.handle(
        'room.mute',
        onHere((room, member) => this.#ctx.media()?.mute(room.id, member.participant.participantId)),
        { params: p['room.mute'] },
      ),
      rpc.handle(
        'room.setRole',
        onHere((room, member, { role }) => moderation.setRoleHere(room, member, role)),
        { params: p['room.setRole'] },
      ),
      rpc.handle(
        'room.replace',
        onHere((room, member) => members.remove(room, members.replace(member), 'replaced')),
        { params: p['room.replace'] },
      ),
      rpc.handle(
        'room.handOver',
        onHere((room, member) => members.handOver(room, member)),
        { params: p['room.handOver'] },
      ),
      rpc.handle('room.close', async ({ roomId }) => ({ closed: await lifecycle.closeHere(roomId) }), {
        params: p['room.close'],
      }),
      rpc.handle('room.summaries', () => localSummaries(this.#ctx).slice(0, ADMIN_ROOMS_PER_NODE), {
        params: p['room.summaries'],
      }),
      rpc.handle('room.summary', ({ roomId }) => localSummary(this.#ctx, roomId) ?? null, {
        params: p['room.summary'],
      }),
    ];
    const onNodeDead = (event: NodeDeadEvent): void => void this.#reapNode(event);
    const onReregistered = (): void => repair.reconcileAll();
    registry.on('nodedead', onNodeDead);
    registry.on('reregistered', onReregistered);
    stops.push(() => {
      registry.off('nodedead', onNodeDead);
      registry.off('reregistered', onReregistered);
    });
    return stops;
  }

  /** The node is closing: reaps still waiting out the resume grace are left to another survivor. */
  stopReaping(): void {
    for (const timer of this.#reapTimers) clearTimeout(timer);
  }

  /**
   * A node stopped heartbeating and this one holds its lock: its participants get the resume
   * grace (they may resume on any node), then those still present under its id leave with
   * reason `disconnected`.
   */
  async #reapNode({ nodeId, rooms, fencingToken }: NodeDeadEvent): Promise<void> {
    const { bus, cluster, config, log } = this.#ctx;
    const registry = cluster?.registry;
    if (!registry) return;
    log.info({ deadNodeId: nodeId, rooms: rooms.length }, 'a node died; its participants get the resume grace');
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#reapTimers.delete(timer);
        resolve();
      }, config.rooms.resumeGraceMs);
      this.#reapTimers.add(timer);
    });
    if (this.#ctx.closing()) return; // another survivor claims the node again once the lock expires
    try {
      let left = 0;
      for (const roomId of rooms) {
        for (const entry of await bus.presence.list(roomId)) {
          if (entry.nodeId !== nodeId) continue;
          await this.#parts.members.removeOrphan(roomId, entry, 'disconnected');
          left++;
        }
      }
      const done = await registry.reaped(nodeId, fencingToken);
      log.info({ deadNodeId: nodeId, left, done }, 'reaped a dead node');
    } catch (error) {
      log.warn({ err: error, deadNodeId: nodeId }, 'reaping a dead node failed; another pass claims it later');
    }
  }
}
