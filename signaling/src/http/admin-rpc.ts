/**
 * What the admin API asks each node of the cluster over the cluster RPC: a page of its rooms
 * with their figures, one room's media health, the node's own state and load, and a drain. The
 * params are checked where they arrive; the results are this node's figures only (the node that
 * serves the admin request merges them).
 */
import { z } from 'zod';
import type { ConsumerHealth, ProducerHealth } from '../../../sfu/src/room-media-health.js';
import { idSchema } from '../protocol/common.js';
import type { NodeRoomSummary } from '../rooms/room-rpc.js';

/** Most rooms, nodes or entries one admin page holds (`?limit=`). */
export const ADMIN_PAGE_MAX = 100;
/** The page size when `?limit=` is not given. */
export const ADMIN_PAGE_DEFAULT = 50;

/** Params of every admin RPC method, checked by the node that answers. */
export const adminRpcParams = {
  /** The node's rooms after `after` (by room id), `limit` at most, with their figures. */
  'admin.rooms': z.object({ after: idSchema.optional(), limit: z.number().int().min(1).max(ADMIN_PAGE_MAX) }),
  /** The producers and consumers of one room on the node, with bitrate and loss. */
  'admin.roomMedia': z.object({ roomId: idSchema }),
  /** The node's state, load, workers and dependencies. */
  'admin.node': z.object({}),
  /** Starts the node's drain (a no-op when it drains already). */
  'admin.drain': z.object({}),
} as const;

/** One room of one node in an admin page: the node's summary without its participant list, plus media. */
export type NodeAdminRoom = Omit<NodeRoomSummary, 'participantList'> & {
  /** The room's producers on this node. */
  producers: number;
  /** Summed bitrate of those producers (bits/s), undefined when media is off or did not answer. */
  publishBitrate: number | undefined;
};

/** A producer or consumer with the node that holds it. */
export type NodeProducerHealth = ProducerHealth & { nodeId: string };
export type NodeConsumerHealth = ConsumerHealth & { nodeId: string };

/** One room's media on one node. */
export interface NodeRoomMedia {
  nodeId: string;
  producers: NodeProducerHealth[];
  consumers: NodeConsumerHealth[];
  /** Producers and consumers whose stats did not arrive in time. */
  timedOut: number;
}

/** One mediasoup worker with its load. */
export interface WorkerLoad {
  workerIndex: number;
  pid: number;
  routers: number;
  consumers: number;
  /** CPU use since the previous reading of this node's figures (0..1 of one core); undefined the first time. */
  cpu: number | undefined;
  maxRssBytes: number | undefined;
}

/** What a node reports of itself to `/admin/nodes` (on top of its heartbeat). */
export interface NodeDetail {
  nodeId: string;
  version: string;
  /** The drain state machine: `RUNNING`, `DRAINING` or `CLOSED`. */
  drainState: string;
  drainStartedAt: number | undefined;
  drainDeadline: number | undefined;
  connections: number;
  rooms: number;
  participants: number;
  uptimeSeconds: number;
  /** The room bus: `ok`, or `degraded` while it cannot reach Redis. */
  redis: { state: string; mode: string | undefined };
  media: {
    state: 'ok' | 'disabled' | 'unavailable';
    workers: WorkerLoad[];
    workerRestarts: number;
    producers: number;
    consumers: number;
  };
  /** The backend's circuit breaker, once the node has a backend (`closed`, `open`, `halfOpen`). */
  backend: { circuit: string } | undefined;
  /** Open file descriptors of the process and its soft limit (Linux; undefined elsewhere). */
  openFds: number | undefined;
  maxFds: number | undefined;
}

type Params<M extends keyof typeof adminRpcParams> = z.infer<(typeof adminRpcParams)[M]>;

/** The admin API's RPC method map. */
export interface AdminRpcMethods {
  'admin.rooms': { params: Params<'admin.rooms'>; result: { rooms: NodeAdminRoom[] } };
  'admin.roomMedia': { params: Params<'admin.roomMedia'>; result: NodeRoomMedia };
  'admin.node': { params: Params<'admin.node'>; result: NodeDetail };
  'admin.drain': { params: Params<'admin.drain'>; result: { state: string; deadline: number | undefined } };
}
