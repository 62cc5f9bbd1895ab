/**
 * The admin API's cluster-wide views: pages of rooms and nodes, one room in detail with the media
 * health of every node that has it, and a drain of any node. This node asks every live node for
 * its own figures over the cluster RPC (`admin.*`, see `admin-rpc.ts`) and merges them; a node
 * that does not answer in time is left out of the figures and named in `unreachableNodes`.
 *
 * Pages are bounded: rooms and nodes come in id order, `limit` (at most {@link ADMIN_PAGE_MAX}) at
 * a time, and `nextCursor` continues after the last one. Each node sends only its first `limit`
 * rooms after the cursor, which is enough: a room among the page's first `limit` is among the
 * first `limit` of every node that has it.
 */
import { ProtocolError } from '../errors.js';
import { RpcNoListenerError, RpcRemoteError, RpcTimeoutError, type ClusterRpc } from '../cluster/cluster-rpc.js';
import type { NodeStatus } from '../cluster/node-registry.js';
import { ROLES, type Role } from '../protocol/common.js';
import type { RoomDetail } from '../rooms/room-reports.js';
import type { AdminNodeFigures } from './admin-node.js';
import {
  ADMIN_PAGE_DEFAULT,
  ADMIN_PAGE_MAX,
  adminRpcParams,
  type AdminRpcMethods,
  type NodeAdminRoom,
  type NodeConsumerHealth,
  type NodeDetail,
  type NodeProducerHealth,
  type NodeRoomMedia,
} from './admin-rpc.js';

/** How long an admin request waits for each node. */
const NODE_TIMEOUT_MS = 2000;

/**
 * A room's webhooks the backend has not acknowledged yet, as `GET /admin/rooms` shows them:
 * `pending` 0 (and no oldest) when nothing waits.
 */
export interface WebhookBacklogEntry {
  /** Webhooks of the room waiting for the backend's acknowledgement. */
  readonly pending: number;
  /** How long the oldest of them has waited (ms; 0 when none waits). */
  readonly oldestAgeMs: number;
  /** When the oldest happened (epoch ms). */
  readonly oldestPendingAt?: number;
  /** The oldest one's `webhook-id` (what the backend will see, and de-duplicates by). */
  readonly oldestWebhookId?: string;
  /** The oldest one's event (`participant.joined`, `room.started`, …). */
  readonly oldestEvent?: string;
}

/** What the webhook outbox says of a room with a backlog. */
export interface RoomWebhookBacklog {
  readonly pending: number;
  readonly oldestAt: number;
  readonly oldestWebhookId: string;
  readonly oldestEvent: string;
}

/**
 * Reads the webhook outbox for the rooms of a page (the backend bridge provides it: its Redis
 * outbox holds the whole cluster's); rooms without a backlog are absent from the answer.
 */
export type WebhookBacklog = (roomIds: readonly string[]) => Promise<ReadonlyMap<string, RoomWebhookBacklog>>;

/** One room across the cluster in a page of `GET /admin/rooms`. */
export interface AdminRoom {
  roomId: string;
  epoch: string;
  createdAt: number;
  participants: number;
  participantsByRole: Record<Role, number>;
  /** Participants whose session lives on each node. */
  participantsByNode: Record<string, number>;
  connected: number;
  publishers: string[];
  producers: number;
  /** Bits/s over the room's producers; undefined when a node could not measure its own. */
  publishBitrate: number | undefined;
  eventsPerMinute: number;
  chatMessagesPerMinute: number;
  alertsPerMinute: number;
  lastSeq: number;
  nodes: string[];
  /** The room's unacknowledged webhooks and the oldest of them; null when webhooks are off. */
  webhookBacklog: WebhookBacklogEntry | null;
}

/** A page: the entries and where the next page starts (undefined on the last page). */
export interface AdminPage<T> {
  readonly items: T[];
  readonly nextCursor: string | undefined;
  /** Live nodes that did not answer; their figures are missing from the page. */
  readonly unreachableNodes: string[];
}

/** A participant of `GET /admin/rooms/:roomId` (presence plus its node's figures). */
export interface AdminParticipant {
  participantId: string;
  userId: string;
  name: string;
  role: Role;
  joinedAt: number;
  nodeId: string;
  /** How long ago its session joined the room (a resume keeps the session's age). */
  connectionAgeMs: number;
  /** False within the resume grace (no socket); undefined when its node did not answer. */
  connected: boolean | undefined;
}

/** `GET /admin/rooms/:roomId`: the room's report, its participants and media on every node. */
export type AdminRoomDetail = RoomDetail & {
  participantsByNode: Record<string, number>;
  media: { producers: NodeProducerHealth[]; consumers: NodeConsumerHealth[]; timedOut: number };
  participantDetails: AdminParticipant[];
  unreachableNodes: string[];
};

/** A node of `GET /admin/nodes`: its heartbeat entry, and what it reported of itself. */
export type AdminNode = NodeStatus & {
  /** Draining past its deadline (it should have closed). */
  drainOverdue: boolean;
  /** What the node reported (undefined when dead or it did not answer). */
  detail: NodeDetail | undefined;
};

/** A parsed `?limit=&cursor=`. */
export interface PageRequest {
  readonly limit: number;
  /** The last id of the previous page. */
  readonly after: string | undefined;
}

/** The cluster the admin service reaches other nodes through; absent when the node runs alone. */
export interface AdminCluster {
  readonly rpc: Pick<ClusterRpc<AdminRpcMethods>, 'call' | 'handle'>;
  /** Every node Redis knows, sorted by id. */
  nodes(): Promise<NodeStatus[]>;
}

export interface AdminServiceOptions {
  readonly local: AdminNodeFigures;
  readonly cluster: AdminCluster | undefined;
  /** The room report the room service builds (presence-based). */
  roomReport(roomId: string): Promise<RoomDetail | undefined>;
  /** This node's heartbeat entry when it runs alone. */
  selfStatus(): NodeStatus;
}

export class AdminService {
  readonly #local: AdminNodeFigures;
  readonly #cluster: AdminCluster | undefined;
  readonly #options: AdminServiceOptions;
  #webhookBacklog: WebhookBacklog | undefined;

  constructor(options: AdminServiceOptions) {
    this.#options = options;
    this.#local = options.local;
    this.#cluster = options.cluster;
  }

  /** Answers the other nodes' admin requests; returns the function that stops it. */
  serve(): () => void {
    const rpc = this.#cluster?.rpc;
    if (!rpc) return () => {};
    const local = this.#local;
    const stops = [
      rpc.handle('admin.rooms', async ({ after, limit }) => ({ rooms: await local.rooms(after, limit) }), {
        params: adminRpcParams['admin.rooms'],
      }),
      rpc.handle('admin.roomMedia', ({ roomId }) => local.roomMedia(roomId), {
        params: adminRpcParams['admin.roomMedia'],
      }),
      rpc.handle('admin.node', () => local.detail(), { params: adminRpcParams['admin.node'] }),
      rpc.handle('admin.drain', () => local.startDrain(), { params: adminRpcParams['admin.drain'] }),
    ];
    return () => stops.forEach((stop) => stop());
  }

  /** Lets the backend bridge report each room's oldest unacknowledged webhook in the room pages. */
  useWebhookBacklog(backlog: WebhookBacklog): void {
    this.#webhookBacklog = backlog;
  }

  /** A page of the cluster's rooms, by room id. */
  async rooms(page: PageRequest): Promise<AdminPage<AdminRoom>> {
    const answers = await this.#roomsOfLiveNodes(page);
    const merged = mergeRooms(answers.results.flatMap((r) => r.rooms));
    const items = merged.slice(0, page.limit);
    const more = merged.length > page.limit || answers.results.some((r) => r.rooms.length === page.limit);
    const lastItem = items.at(-1);
    if (this.#webhookBacklog && items.length > 0) {
      const backlog = await readBacklog(
        this.#webhookBacklog,
        items.map((r) => r.roomId),
      );
      const now = Date.now();
      for (const room of items) room.webhookBacklog = backlogEntry(backlog.get(room.roomId), now);
    }
    return {
      items,
      nextCursor: more && lastItem ? encodeCursor(lastItem.roomId) : undefined,
      unreachableNodes: answers.unreachable,
    };
  }

  /** One room in detail; undefined when no node knows it. */
  async room(roomId: string): Promise<AdminRoomDetail | undefined> {
    const report = await this.#options.roomReport(roomId);
    if (!report) return undefined;
    const nodeIds = new Set(report.nodes);
    const media = await Promise.allSettled(
      [...nodeIds].map((nodeId) =>
        nodeId === this.#local.nodeId || !this.#cluster
          ? this.#local.roomMedia(roomId)
          : this.#cluster.rpc.call(nodeId, 'admin.roomMedia', { roomId }, { timeoutMs: NODE_TIMEOUT_MS }),
      ),
    );
    const unreachable = [...nodeIds].filter((_, i) => media[i]?.status === 'rejected');
    const answered = media.flatMap((m): NodeRoomMedia[] => (m.status === 'fulfilled' ? [m.value] : []));
    const disconnected = new Set(report.disconnected ?? []);
    const now = Date.now();
    const participantDetails = report.participantList.map((p): AdminParticipant => ({
      participantId: p.participantId,
      userId: p.userId,
      name: p.name,
      role: p.role,
      joinedAt: p.joinedAt,
      nodeId: p.nodeId,
      connectionAgeMs: Math.max(0, now - p.joinedAt),
      connected: unreachable.includes(p.nodeId) ? undefined : !disconnected.has(p.participantId),
    }));
    return {
      ...report,
      participantsByNode: countBy(report.participantList.map((p) => p.nodeId)),
      media: {
        producers: answered.flatMap((m) => m.producers),
        consumers: answered.flatMap((m) => m.consumers),
        timedOut: answered.reduce((sum, m) => sum + m.timedOut, 0),
      },
      participantDetails,
      unreachableNodes: unreachable,
    };
  }

  /** A page of the cluster's nodes (dead ones too, for a while), by node id, with what each reported. */
  async nodes(page: PageRequest): Promise<AdminPage<AdminNode>> {
    const all = this.#cluster ? await this.#cluster.nodes() : [this.#options.selfStatus()];
    const after = page.after;
    const rest = all.filter((n) => after === undefined || n.nodeId > after);
    const onPage = rest.slice(0, page.limit);
    const details = await Promise.allSettled(
      onPage.map((n) => (n.alive ? this.#nodeDetail(n.nodeId) : Promise.resolve(undefined))),
    );
    const now = Date.now();
    const items = onPage.map((n, i): AdminNode => {
      const answer = details[i];
      const detail = answer?.status === 'fulfilled' ? answer.value : undefined;
      const deadline = detail?.drainDeadline ?? n.drainDeadline;
      return {
        ...n,
        drainOverdue: n.alive && n.state === 'draining' && deadline !== undefined && now > deadline,
        detail,
      };
    });
    const lastItem = onPage.at(-1);
    return {
      items,
      nextCursor: rest.length > page.limit && lastItem ? encodeCursor(lastItem.nodeId) : undefined,
      unreachableNodes: onPage.filter((n, i) => n.alive && details[i]?.status === 'rejected').map((n) => n.nodeId),
    };
  }

  /**
   * Drains node `nodeId` (this one, or another over the cluster RPC). `NOT_FOUND` when no live
   * node has that id; `UNAVAILABLE` when it does not answer.
   */
  async drainNode(nodeId: string): Promise<{ nodeId: string; state: string; deadline: number | undefined }> {
    if (nodeId === this.#local.nodeId) return { nodeId, ...this.#local.startDrain() };
    if (!this.#cluster) throw new ProtocolError('NOT_FOUND', `no node ${nodeId}`);
    const node = (await this.#cluster.nodes()).find((n) => n.nodeId === nodeId);
    if (!node?.alive) throw new ProtocolError('NOT_FOUND', `no live node ${nodeId}`);
    try {
      return { nodeId, ...(await this.#cluster.rpc.call(nodeId, 'admin.drain', {}, { timeoutMs: NODE_TIMEOUT_MS })) };
    } catch (error) {
      throw asProtocolError(error, nodeId);
    }
  }

  async #nodeDetail(nodeId: string): Promise<NodeDetail> {
    if (nodeId === this.#local.nodeId || !this.#cluster) return this.#local.detail();
    return this.#cluster.rpc.call(nodeId, 'admin.node', {}, { timeoutMs: NODE_TIMEOUT_MS });
  }

  /** Every live node's page of rooms (this one's directly), and the live nodes that gave none. */
  async #roomsOfLiveNodes(
    page: PageRequest,
  ): Promise<{ results: AdminRpcMethods['admin.rooms']['result'][]; unreachable: string[] }> {
    const params = { after: page.after, limit: page.limit };
    const local = async (): Promise<AdminRpcMethods['admin.rooms']['result']> => ({
      rooms: await this.#local.rooms(page.after, page.limit),
    });
    const cluster = this.#cluster;
    if (!cluster) return { results: [await local()], unreachable: [] };
    const others = (await cluster.nodes()).filter((n) => n.alive && n.nodeId !== this.#local.nodeId);
    const answers = await Promise.allSettled([
      local(),
      ...others.map((n) => cluster.rpc.call(n.nodeId, 'admin.rooms', params, { timeoutMs: NODE_TIMEOUT_MS })),
    ]);
    return {
      results: answers.flatMap((a) => (a.status === 'fulfilled' ? [a.value] : [])),
      unreachable: others.filter((_, i) => answers[i + 1]?.status === 'rejected').map((n) => n.nodeId),
    };
  }
}

/**
 * Reads `?limit=` and `?cursor=`; `BAD_REQUEST` when the limit is not an integer in
 * 1..{@link ADMIN_PAGE_MAX} or the cursor is not one this API gave out.
 */
export function parsePage(params: URLSearchParams): PageRequest {
  const rawLimit = params.get('limit');
  const limit = rawLimit === null ? ADMIN_PAGE_DEFAULT : Number(rawLimit);
  if (!Number.isInteger(limit) || limit < 1 || limit > ADMIN_PAGE_MAX || rawLimit?.trim() === '') {
    throw new ProtocolError('BAD_REQUEST', `limit must be an integer from 1 to ${ADMIN_PAGE_MAX}`);
  }
  const cursor = params.get('cursor');
  if (cursor === null || cursor === '') return { limit, after: undefined };
  const after = decodeCursor(cursor);
  if (after === undefined) throw new ProtocolError('BAD_REQUEST', 'cursor is not one this API gave out');
  return { limit, after };
}

const CURSOR_PREFIX = 'after:';

function encodeCursor(lastId: string): string {
  return Buffer.from(CURSOR_PREFIX + lastId, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): string | undefined {
  if (!/^[A-Za-z0-9_-]{1,400}$/.test(cursor)) return undefined;
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!text.startsWith(CURSOR_PREFIX) || text.length === CURSOR_PREFIX.length) return undefined;
  return text.slice(CURSOR_PREFIX.length);
}

/** The nodes' figures merged per room, in room id order. */
function mergeRooms(rooms: readonly NodeAdminRoom[]): AdminRoom[] {
  const byRoom = new Map<string, AdminRoom>();
  for (const r of rooms) {
    let room = byRoom.get(r.roomId);
    if (!room) {
      room = {
        roomId: r.roomId,
        epoch: r.epoch,
        createdAt: r.createdAt,
        participants: 0,
        participantsByRole: { presenter: 0, moderator: 0, trader: 0 },
        participantsByNode: {},
        connected: 0,
        publishers: [],
        producers: 0,
        publishBitrate: 0,
        eventsPerMinute: 0,
        chatMessagesPerMinute: 0,
        alertsPerMinute: 0,
        lastSeq: r.lastSeq,
        nodes: [],
        webhookBacklog: null,
      };
      byRoom.set(r.roomId, room);
    }
    room.createdAt = Math.min(room.createdAt, r.createdAt);
    room.participants += r.participants;
    for (const role of ROLES) room.participantsByRole[role] += r.participantsByRole[role];
    room.participantsByNode[r.nodeId] = (room.participantsByNode[r.nodeId] ?? 0) + r.participants;
    room.connected += r.connected;
    room.publishers = [...new Set([...room.publishers, ...r.publishers])].sort();
    room.producers += r.producers;
    room.publishBitrate =
      room.publishBitrate === undefined || r.publishBitrate === undefined
        ? undefined
        : room.publishBitrate + r.publishBitrate;
    // Every node delivers every event of the room: the rates are the largest any node saw.
    room.eventsPerMinute = Math.max(room.eventsPerMinute, r.eventsPerMinute);
    room.chatMessagesPerMinute = Math.max(room.chatMessagesPerMinute, r.chatMessagesPerMinute ?? 0);
    room.alertsPerMinute = Math.max(room.alertsPerMinute, r.alertsPerMinute ?? 0);
    if (r.lastSeq > room.lastSeq) {
      room.lastSeq = r.lastSeq;
      room.epoch = r.epoch;
    }
    room.nodes = [...new Set([...room.nodes, r.nodeId])].sort();
  }
  return [...byRoom.values()].sort((a, b) => (a.roomId < b.roomId ? -1 : 1));
}

/** A room's backlog as the page shows it: nothing waiting is `pending: 0`. */
function backlogEntry(backlog: RoomWebhookBacklog | undefined, now: number): WebhookBacklogEntry {
  if (!backlog) return { pending: 0, oldestAgeMs: 0 };
  return {
    pending: backlog.pending,
    oldestAgeMs: Math.max(0, now - backlog.oldestAt),
    oldestPendingAt: backlog.oldestAt,
    oldestWebhookId: backlog.oldestWebhookId,
    oldestEvent: backlog.oldestEvent,
  };
}

/**
 * The rooms' backlogs, or `UNAVAILABLE` when the outbox fails or takes longer than a node may
 * (its Redis is the cluster's: when it does not answer, neither do the rooms' figures).
 */
async function readBacklog(
  backlog: WebhookBacklog,
  roomIds: readonly string[],
): Promise<ReadonlyMap<string, RoomWebhookBacklog>> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${NODE_TIMEOUT_MS} ms`)), NODE_TIMEOUT_MS);
  });
  try {
    return await Promise.race([backlog(roomIds), late]);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new ProtocolError('UNAVAILABLE', `the webhook outbox did not answer: ${reason}`, { retryAfterMs: 1000 });
  } finally {
    clearTimeout(timer);
  }
}

function countBy(keys: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const key of keys) counts[key] = (counts[key] ?? 0) + 1;
  return counts;
}

/** A failed call to another node, as the admin API answers it. */
function asProtocolError(error: unknown, nodeId: string): unknown {
  if (error instanceof RpcRemoteError) return error.toProtocolError();
  if (error instanceof RpcNoListenerError) return new ProtocolError('NOT_FOUND', `no node ${nodeId} listens`);
  if (error instanceof RpcTimeoutError) {
    return new ProtocolError('UNAVAILABLE', `node ${nodeId} did not answer`, { retryAfterMs: 1000 });
  }
  return error; // Redis out of reach (UNAVAILABLE with its retry time) or unexpected (INTERNAL)
}
