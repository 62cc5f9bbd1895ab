/**
 * Room figures for operators (`/admin/rooms`, `/admin/rooms/:roomId`): what each node reports
 * of its own participants, merged into one view of the room across the cluster. A participant is
 * local to exactly one node, so counts add up; every node delivers every durable event, so the
 * event rate and `lastSeq` are the largest any node reports.
 */
import type { PresenceEntry, RoomBus } from '../bus/room-bus.js';
import { ROLES, type Role } from '../protocol/common.js';
import type { Room } from './room.js';
import type { NodeRoomSummary, RoomCluster } from './room-rpc.js';
import type { RoomContext } from './room-context.js';

/** How long an admin request waits for each node's figures. */
const ADMIN_RPC_TIMEOUT_MS = 2000;

/** One room across the cluster, as `/admin/rooms` lists it: the nodes' figures merged. */
export type RoomReport = Omit<NodeRoomSummary, 'nodeId' | 'participantList'> & {
  /** The nodes that have members in the room. */
  nodes: string[];
};

/** One room in detail (`/admin/rooms/:roomId`): presence is the participant list. */
export type RoomDetail = RoomReport & { participantList: PresenceEntry[] };

/** This node's figures of one of its rooms (its own members). */
export function nodeSummaryOf(room: Room, nodeId: string, publishers: Iterable<string> = []): NodeRoomSummary {
  const disconnected: string[] = [];
  for (const member of room.members.values())
    if (!member.connection) disconnected.push(member.participant.participantId);
  const connected = room.members.size - disconnected.length;
  const participantList = [...room.members.values()].map((m) => ({ ...m.participant }));
  return {
    roomId: room.id,
    nodeId,
    epoch: room.epoch ?? '',
    createdAt: room.createdAt,
    participants: room.members.size,
    participantsByRole: countByRole(participantList),
    connected,
    publishers: [...publishers],
    eventsPerMinute: room.eventsPerMinute(),
    chatMessagesPerMinute: room.chatMessagesPerMinute(),
    alertsPerMinute: room.alertsPerMinute(),
    disconnected,
    lastSeq: room.deliveredSeq,
    participantList,
  };
}

/** This node's figures of every room open here. */
export function localSummaries(ctx: RoomContext): NodeRoomSummary[] {
  return [...ctx.rooms.keys()].map((roomId) => localSummary(ctx, roomId) as NodeRoomSummary);
}

/** This node's figures of one room, with its members here; undefined when it is not open here. */
export function localSummary(ctx: RoomContext, roomId: string): NodeRoomSummary | undefined {
  const room = ctx.rooms.get(roomId);
  return room && nodeSummaryOf(room, ctx.nodeId, ctx.media()?.publisherIds(room.id));
}

/** Every room of every live node: this node's figures and the others' (over RPC), merged. */
export async function clusterReports(
  local: readonly NodeRoomSummary[],
  nodeId: string,
  cluster: RoomCluster | undefined,
): Promise<RoomReport[]> {
  if (!cluster) return mergeReports(local);
  const others = (await cluster.registry.list()).filter((n) => n.alive && n.nodeId !== nodeId);
  const answers = await Promise.allSettled(
    others.map((n) => cluster.rpc.call(n.nodeId, 'room.summaries', {}, { timeoutMs: ADMIN_RPC_TIMEOUT_MS })),
  );
  return mergeReports([...local, ...answers.flatMap((a) => (a.status === 'fulfilled' ? a.value : []))]);
}

/** One room across the cluster; undefined when neither presence nor this node knows it. */
export async function clusterDetail(
  roomId: string,
  local: NodeRoomSummary | undefined,
  bus: RoomBus,
  nodeId: string,
  cluster: RoomCluster | undefined,
): Promise<RoomDetail | undefined> {
  const presence = await bus.presence.list(roomId);
  if (!local && presence.length === 0) return undefined;
  const others = new Set(presence.map((p) => p.nodeId).filter((n) => n !== nodeId));
  const answers = cluster
    ? await Promise.allSettled(
        [...others].map((n) => cluster.rpc.call(n, 'room.summary', { roomId }, { timeoutMs: ADMIN_RPC_TIMEOUT_MS })),
      )
    : [];
  const summaries = answers.flatMap((a) => (a.status === 'fulfilled' && a.value ? [a.value] : []));
  if (local) summaries.unshift(local);
  return detailOf(roomId, presence, summaries, await bus.head(roomId));
}

/** Merges the nodes' figures per room, rooms in the order first seen. */
function mergeReports(summaries: readonly NodeRoomSummary[]): RoomReport[] {
  const byRoom = new Map<string, RoomReport>();
  for (const summary of summaries) {
    const report = byRoom.get(summary.roomId);
    if (!report) {
      byRoom.set(summary.roomId, reportOf(summary));
      continue;
    }
    report.createdAt = Math.min(report.createdAt, summary.createdAt);
    report.participants += summary.participants;
    for (const role of ROLES) report.participantsByRole[role] += summary.participantsByRole[role];
    report.connected += summary.connected;
    report.publishers = [...new Set([...report.publishers, ...summary.publishers])];
    report.eventsPerMinute = Math.max(report.eventsPerMinute, summary.eventsPerMinute);
    report.chatMessagesPerMinute = Math.max(report.chatMessagesPerMinute ?? 0, summary.chatMessagesPerMinute ?? 0);
    report.alertsPerMinute = Math.max(report.alertsPerMinute ?? 0, summary.alertsPerMinute ?? 0);
    report.disconnected = [...(report.disconnected ?? []), ...(summary.disconnected ?? [])];
    if (summary.lastSeq > report.lastSeq) {
      report.lastSeq = summary.lastSeq;
      report.epoch = summary.epoch;
    }
    report.nodes.push(summary.nodeId);
  }
  return [...byRoom.values()];
}

/** One room in detail: presence (the cluster's truth) for participants, the nodes' figures for the rest. */
function detailOf(
  roomId: string,
  presence: readonly PresenceEntry[],
  summaries: readonly NodeRoomSummary[],
  head: { epoch: string; lastSeq: number },
): RoomDetail {
  const [merged] = mergeReports(summaries);
  const participantsByRole = countByRole(presence);
  const nodes = new Set([...(merged?.nodes ?? []), ...presence.map((p) => p.nodeId)]);
  return {
    roomId,
    createdAt: merged?.createdAt ?? Math.min(Date.now(), ...presence.map((p) => p.joinedAt)),
    participants: presence.length,
    participantsByRole,
    connected: merged?.connected ?? 0,
    publishers: merged?.publishers ?? [],
    eventsPerMinute: merged?.eventsPerMinute ?? 0,
    chatMessagesPerMinute: merged?.chatMessagesPerMinute ?? 0,
    alertsPerMinute: merged?.alertsPerMinute ?? 0,
    disconnected: merged?.disconnected ?? [],
    lastSeq: head.lastSeq,
    epoch: head.epoch,
    nodes: [...nodes].sort(),
    participantList: [...presence],
  };
}

function reportOf({ nodeId, participantList: _list, ...summary }: NodeRoomSummary): RoomReport {
  return {
    ...summary,
    participantsByRole: { ...summary.participantsByRole },
    publishers: [...summary.publishers],
    disconnected: [...(summary.disconnected ?? [])],
    nodes: [nodeId],
  };
}

function countByRole(participants: readonly { role: Role }[]): Record<Role, number> {
  const byRole = { presenter: 0, moderator: 0, trader: 0 };
  for (const p of participants) byRole[p.role]++;
  return byRole;
}
