/**
 * What the room service's modules share: the node's parts (bus, configuration, cluster), the
 * rooms open here, and the small helpers every concern uses to publish and to reach the node that
 * holds a participant. Internal to `rooms/`; handlers talk to {@link RoomService}.
 */
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { ProtocolError } from '../errors.js';
import type { BusEvent, PresenceEntry, RoomBus } from '../bus/room-bus.js';
import { RpcNoListenerError, RpcRemoteError, RpcTimeoutError } from '../cluster/cluster-rpc.js';
import type { Participant } from '../protocol/common.js';
import type { DurableEventName, EventData } from '../protocol/notifications.js';
import type { NodeMetrics } from '../metrics.js';
import type { Member, Room } from './room.js';
import type { RoomMediaHooks } from './media-hooks.js';
import type { RoomCluster, RoomRpc } from './room-rpc.js';

/** Why a participant left, as `participant.left` says. */
export type LeaveReason = EventData<'participant.left'>['reason'];

/** A participant addressed on the node that holds it (the params of the participant RPC methods). */
export interface ParticipantTarget {
  readonly roomId: string;
  readonly participantId: string;
}

/** The parts and state the room service's modules share. */
export interface RoomContext {
  readonly bus: RoomBus;
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: NodeMetrics;
  /** The other nodes, when this one is part of a cluster. */
  readonly cluster: RoomCluster | undefined;
  /** This node's id (presence's `nodeId`, the RPC address). */
  readonly nodeId: string;
  /** The rooms open on this node, by id. */
  readonly rooms: Map<string, Room>;
  /** The SFU's hooks, once media is up. */
  media(): RoomMediaHooks | undefined;
  /** True once the node started closing. */
  closing(): boolean;
}

/** Publishes a durable room event and counts it. */
export async function publish(
  ctx: RoomContext,
  roomId: string,
  event: DurableEventName,
  data: unknown,
): Promise<BusEvent> {
  const published = await ctx.bus.publishDurable(roomId, event, data);
  ctx.metrics.durableEvents.inc();
  return published;
}

/** The member's presence entry, naming this node. */
export function presenceOf(ctx: RoomContext, member: Member): PresenceEntry {
  return { ...member.participant, nodeId: ctx.nodeId };
}

/** The participant's presence entry, wherever it is connected; NOT_FOUND when it is not in the room. */
export async function findPresence(ctx: RoomContext, room: Room, participantId: string): Promise<PresenceEntry> {
  const entry = (await ctx.bus.presence.list(room.id)).find((p) => p.participantId === participantId);
  if (!entry) throw new ProtocolError('NOT_FOUND', `no participant ${participantId} in this room`);
  return entry;
}

/**
 * Asks the node that holds a participant to act on it. Its protocol errors (`NOT_FOUND`, …)
 * pass through; when no node holds the participant any more (its node is dead, or it is an
 * orphan of this one), `whenGone` acts in its place.
 */
export async function onOwner(
  ctx: RoomContext,
  roomId: string,
  entry: PresenceEntry,
  call: (rpc: RoomRpc, target: ParticipantTarget) => Promise<unknown>,
  whenGone: () => Promise<void>,
): Promise<void> {
  const cluster = ctx.cluster;
  if (entry.nodeId === ctx.nodeId || !cluster) return whenGone();
  try {
    await call(cluster.rpc, { roomId, participantId: entry.participantId });
  } catch (error) {
    if (!(error instanceof RpcNoListenerError)) throw toRoomError(error);
    await whenGone();
  }
}

/** A failure of a call to another node, as the client is answered. */
export function toRoomError(error: unknown): unknown {
  if (error instanceof RpcRemoteError) return error.toProtocolError();
  if (error instanceof RpcTimeoutError) {
    return new ProtocolError('UNAVAILABLE', 'the node of that participant did not answer', { retryAfterMs: 1000 });
  }
  return error;
}

/** The node called no longer holds the participant (NOT_FOUND), is shutting down, or is gone. */
export function isGone(error: unknown): boolean {
  return (
    error instanceof RpcNoListenerError ||
    error instanceof RpcTimeoutError ||
    (error instanceof RpcRemoteError && (error.code === 'NOT_FOUND' || error.code === 'UNKNOWN_METHOD'))
  );
}

/** A presence entry as the participant clients see. */
export function withoutNode({ nodeId: _nodeId, ...participant }: PresenceEntry): Participant {
  return participant;
}
