/**
 * What one node asks another about a room, over the cluster RPC: the methods with their params'
 * schemas (checked where they arrive) and results, and the narrow views of the cluster RPC and
 * the node registry the room service uses. A handler that finds no such participant on its node
 * answers `NOT_FOUND`, which the caller passes on to its client.
 */
import { z } from 'zod';
import type { ClusterRpc } from '../cluster/cluster-rpc.js';
import type { NodeRegistry } from '../cluster/node-registry.js';
import { idSchema, roleSchema, type Participant, type Role } from '../protocol/common.js';
import type { MediaRpcMethods } from './media-rpc.js';

const participantTarget = z.object({ roomId: idSchema, participantId: idSchema });
const roomTarget = z.object({ roomId: idSchema });

/** Params of every room RPC method, checked by the node that answers. */
export const roomRpcParams = {
  /** `moderation.kick` of a participant connected to the node called. */
  'room.kick': participantTarget,
  /** `moderation.mute`: pauses the participant's producers (media lives on its node). */
  'room.mute': participantTarget,
  'room.setRole': participantTarget.extend({ role: roleSchema }),
  /** A fresh join of the same user elsewhere: close with 4009, `participant.left {reason: replaced}`. */
  'room.replace': participantTarget,
  /** The session resumes elsewhere: close with 4009 and forget the participant here, silently. */
  'room.handOver': participantTarget,
  /** Admin: close the room on the node called (`session.kicked`, 4003). */
  'room.close': roomTarget,
  /** Admin: the node's figures of its rooms (at most {@link ADMIN_ROOMS_PER_NODE}). */
  'room.summaries': z.object({}),
  /** Admin: the node's figures of one room. */
  'room.summary': roomTarget,
} as const;

/** Rooms one node reports to `/admin/rooms` at most. */
export const ADMIN_ROOMS_PER_NODE = 1000;

/** One node's figures of one room (its own participants), as `/admin/rooms` merges them. */
export interface NodeRoomSummary {
  roomId: string;
  nodeId: string;
  epoch: string;
  createdAt: number;
  participants: number;
  participantsByRole: Record<Role, number>;
  connected: number;
  publishers: string[];
  eventsPerMinute: number;
  /** Chat messages and alerts per minute (absent from nodes of an older version). */
  chatMessagesPerMinute?: number;
  alertsPerMinute?: number;
  /** Members within their resume grace (no socket), by participant id. */
  disconnected?: string[];
  lastSeq: number;
  participantList: Participant[];
}

type Params<M extends keyof typeof roomRpcParams> = z.infer<(typeof roomRpcParams)[M]>;
type Done = Record<string, never>;

/** The room service's RPC method map, the media pipes' included (`media-rpc.ts`). */
export interface RoomRpcMethods extends MediaRpcMethods {
  'room.kick': { params: Params<'room.kick'>; result: Done };
  'room.mute': { params: Params<'room.mute'>; result: Done };
  'room.setRole': { params: Params<'room.setRole'>; result: Done };
  'room.replace': { params: Params<'room.replace'>; result: Done };
  'room.handOver': { params: Params<'room.handOver'>; result: Done };
  'room.close': { params: Params<'room.close'>; result: { closed: boolean } };
  'room.summaries': { params: Params<'room.summaries'>; result: NodeRoomSummary[] };
  'room.summary': { params: Params<'room.summary'>; result: NodeRoomSummary | null };
}

/** The cluster RPC as the room service uses it. */
export type RoomRpc = Pick<ClusterRpc<RoomRpcMethods>, 'call' | 'handle'>;

/** The node registry as the room service uses it. */
export type RoomRegistry = Pick<NodeRegistry, 'trackRoom' | 'untrackRoom' | 'list' | 'reaped' | 'on' | 'off'>;

/** What the room service needs to share rooms with other nodes; absent when the node runs alone. */
export interface RoomCluster {
  readonly rpc: RoomRpc;
  readonly registry: RoomRegistry;
  /** This node's id (the RPC address and presence's `nodeId`). */
  readonly nodeId: string;
}
