/**
 * The room service: the only way handlers change room state. It keeps this node's members of
 * each room (and which connection is which member), turns every change into room events on the
 * bus, and hands the bus's events to the fan-out. Everything the nodes of a cluster share lives
 * on the bus — presence (who is in the room, on which node), resume records, bans and role
 * overrides — so any number of nodes serve one room with the guarantees of one. With a cluster,
 * what only another node can do (kick, mute or setRole of its participant, 4009 of its socket,
 * closing the room there) goes to that node over the cluster RPC, and a dead node's participants
 * are reported gone by one survivor. Design: `docs/cluster.md`.
 *
 * This class is the facade the handlers and the node use; each concern lives in its own module:
 * joins and resumes (`room-joins.ts`), members, leaving and the resume grace (`room-members.ts`),
 * chat and alerts (`room-messages.ts`) and their history (`room-history.ts`), moderation
 * (`room-moderation.ts`), a room's life
 * (`room-lifecycle.ts`), large-room counts (`participant-counts.ts`), presence repair
 * (`presence-repair.ts`) and the cluster's requests and dead nodes (`room-cluster.ts`).
 */
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { RoomBus } from '../bus/room-bus.js';
import type { Participant, Role } from '../protocol/common.js';
import type { AlertPublishData } from '../protocol/alert.js';
import type { JoinData, JoinResult } from '../protocol/room.js';
import type { HistoryData, HistoryResult } from '../protocol/history.js';
import type { EncodedResult } from '../protocol/method.js';
import type { DurableEventName, EphemeralEventName, EventData } from '../protocol/notifications.js';
import type { RoomHandlers } from '../protocol/context.js';
import type { NodeMetrics } from '../metrics.js';
import type { Room } from './room.js';
import { RoomFanout } from './room-fanout.js';
import type { RoomConnection } from './room-connection.js';
import type { RoomMediaHooks } from './media-hooks.js';
import { clusterDetail, clusterReports, localSummaries, localSummary } from './room-reports.js';
import type { RoomDetail, RoomReport } from './room-reports.js';
import { ADMIN_ROOMS_PER_NODE, type NodeRoomSummary, type RoomCluster } from './room-rpc.js';
import { publish, type RoomContext } from './room-context.js';
import { ParticipantCounts } from './participant-counts.js';
import { RoomMembers } from './room-members.js';
import { PresenceRepair } from './presence-repair.js';
import { RoomLifecycle } from './room-lifecycle.js';
import { RoomJoins } from './room-joins.js';
import type { RoomAccess } from './room-access.js';
import { publishAlert, sendChat } from './room-messages.js';
import { readHistory } from './room-history.js';
import { RoomModeration } from './room-moderation.js';
import { RoomClusterHandlers } from './room-cluster.js';

/** How long a closing node waits for its participants within the resume grace to resume elsewhere. */
const CLOSE_HANDOVER_WAIT_MS = 2000;

/** What the room service is built from. */
export interface RoomServiceOptions {
  readonly bus: RoomBus;
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: NodeMetrics;
  /** The other nodes, when this one is part of a cluster. */
  readonly cluster?: RoomCluster | undefined;
  /** The backend's access check of every `room.join` (with `BACKEND_URL`); unset: the token decides. */
  readonly access?: RoomAccess | undefined;
}

/** Per-room figures of this node for operators (`/admin/rooms` merges the nodes' figures). */
export type RoomSummary = Omit<NodeRoomSummary, 'participantList'>;

/** The rooms of this node, as the protocol handlers, the media gateway and the node use them. */
export class RoomService implements RoomHandlers {
  readonly #ctx: RoomContext;
  readonly #rooms = new Map<string, Room>();
  readonly #members: RoomMembers;
  readonly #lifecycle: RoomLifecycle;
  readonly #joins: RoomJoins;
  readonly #moderation: RoomModeration;
  readonly #cluster: RoomClusterHandlers | undefined;
  readonly #stops: (() => void)[] = [];
  #media: RoomMediaHooks | undefined;
  #closed = false;

  constructor(options: RoomServiceOptions) {
    const ctx: RoomContext = {
      bus: options.bus,
      config: options.config,
      log: options.log,
      metrics: options.metrics,
      cluster: options.cluster,
      nodeId: options.cluster?.nodeId ?? options.config.nodeId,
      rooms: this.#rooms,
      media: () => this.#media,
      closing: () => this.#closed,
    };
    this.#ctx = ctx;
    const fanout = new RoomFanout({
      metrics: options.metrics,
      onResync: (room) => repair.reconcileSoon(room, true),
    });
    const counts = new ParticipantCounts(ctx, fanout);
    const members = new RoomMembers(ctx, counts, (room) => lifecycle.scheduleEmptyClose(room));
    const repair = new PresenceRepair(ctx, members);
    const lifecycle = new RoomLifecycle(ctx, { fanout, counts, members, repair });
    const moderation = new RoomModeration(ctx, members);
    this.#members = members;
    this.#lifecycle = lifecycle;
    this.#joins = new RoomJoins(ctx, members, lifecycle, options.access);
    this.#moderation = moderation;
    this.#stops.push(ctx.bus.onStatus((status) => repair.onBusStatus(status)));
    if (options.cluster) {
      this.#cluster = new RoomClusterHandlers(ctx, { members, moderation, lifecycle, repair });
      this.#stops.push(...this.#cluster.start(options.cluster));
    }
  }

  /** Connects media once the SFU is up. */
  useMedia(media: RoomMediaHooks | undefined): void {
    this.#media = media;
  }

  /** Rooms open on this node. */
  get roomCount(): number {
    return this.#rooms.size;
  }

  /** Participants whose sessions live on this node (connected or within the resume grace). */
  get participantCount(): number {
    return this.#members.participantCount;
  }

  /** Every connection that is a member of a room on this node. */
  *connectedSessions(): Iterable<RoomConnection> {
    for (const room of this.#rooms.values()) {
      for (const member of room.members.values()) if (member.connection) yield member.connection;
    }
  }

  /** The participant a connection is, while it is a member of its room. */
  participantOf(connection: RoomConnection): Readonly<Participant> | undefined {
    return this.#members.find(connection)?.member.participant;
  }

  /** The role a participant holds now (undefined when it is not in the room on this node). */
  roleOf(roomId: string, participantId: string): Role | undefined {
    return this.#rooms.get(roomId)?.members.get(participantId)?.participant.role;
  }

  /** `room.join`: resumes the session it names when it can, else joins afresh. */
  join(connection: RoomConnection, data: JoinData): Promise<JoinResult> {
    return this.#joins.join(connection, data);
  }

  /** `room.leave`, or the socket closed: leave now, or after the resume grace. */
  leave(connection: RoomConnection, reason: 'left' | 'disconnected'): Promise<void> {
    return this.#members.leave(connection, reason);
  }

  /** `room.history`: a page of the room's retained chat and alerts. */
  async history(connection: RoomConnection, data: HistoryData): Promise<EncodedResult<HistoryResult>> {
    return readHistory(this.#ctx, this.#members.membershipOf(connection), data);
  }

  /** `chat.send`: a chat message from the connection's participant. */
  async chat(connection: RoomConnection, text: string): Promise<{ messageId: string; seq: number }> {
    return sendChat(this.#ctx, this.#members.membershipOf(connection), text);
  }

  /** `alert.publish`: a trading alert from the connection's participant. */
  async alert(connection: RoomConnection, data: AlertPublishData): Promise<{ alertId: string; seq: number }> {
    return publishAlert(this.#ctx, this.#members.membershipOf(connection), data);
  }

  /** `moderation.kick`: the target may be on any node; it is barred from the room on every node. */
  kick(connection: RoomConnection, participantId: string): Promise<void> {
    return this.#moderation.kick(connection, participantId);
  }

  /** `moderation.mute`: pauses the target's producers on the node where its media lives. */
  mute(connection: RoomConnection, participantId: string): Promise<void> {
    return this.#moderation.mute(connection, participantId);
  }

  /** `moderation.setRole`: recorded for the user, so a rejoin or a refreshed token does not undo it. */
  setRole(connection: RoomConnection, participantId: string, role: Role): Promise<void> {
    return this.#moderation.setRole(connection, participantId, role);
  }

  /**
   * `session.refresh` brought a token with another role: it applies like `moderation.setRole`,
   * unless a moderator set this user's role in the room (the moderator wins).
   */
  tokenRoleChanged(connection: RoomConnection): Promise<void> {
    return this.#moderation.tokenRoleChanged(connection);
  }

  /** Publishes a durable room event; resolves with its `seq`. */
  async publishDurable<E extends DurableEventName>(roomId: string, event: E, data: EventData<E>): Promise<number> {
    return (await publish(this.#ctx, roomId, event, data)).seq as number;
  }

  /** Sends an ephemeral event to every participant of a room, on every node. */
  async publishEphemeral<E extends EphemeralEventName>(roomId: string, event: E, data: EventData<E>): Promise<void> {
    await this.#ctx.bus.publishEphemeral(roomId, event, data);
  }

  /** Sends an ephemeral event to one participant, when its session lives on this node. */
  sendToParticipant<E extends EphemeralEventName>(
    roomId: string,
    participantId: string,
    event: E,
    data: EventData<E>,
  ): void {
    this.#rooms.get(roomId)?.members.get(participantId)?.connection?.sendEvent(event, data);
  }

  /**
   * Admin: closes a room on every node that has members in it (each tells its participants with
   * `session.kicked` and closes them with 4003). False when no node knows the room.
   */
  closeRoom(roomId: string): Promise<boolean> {
    return this.#lifecycle.closeRoom(roomId);
  }

  /** This node's figures of its rooms (its own members only). */
  summaries(): RoomSummary[] {
    return localSummaries(this.#ctx).map(({ participantList: _list, ...summary }) => summary);
  }

  /** This node's figures of one room, with its members here; undefined when it is not open here. */
  summary(roomId: string): NodeRoomSummary | undefined {
    return localSummary(this.#ctx, roomId);
  }

  /**
   * `/admin/rooms`: every room with members on a live node of the cluster (each node reports at
   * most {@link ADMIN_ROOMS_PER_NODE} of its rooms; a node that does not answer in time is left out).
   */
  async roomReports(): Promise<RoomReport[]> {
    const { nodeId, cluster } = this.#ctx;
    return clusterReports(localSummaries(this.#ctx).slice(0, ADMIN_ROOMS_PER_NODE), nodeId, cluster);
  }

  /** `/admin/rooms/:roomId`: the room across the cluster; undefined when no node knows it. */
  async roomReport(roomId: string): Promise<RoomDetail | undefined> {
    const { bus, nodeId, cluster } = this.#ctx;
    return clusterDetail(roomId, localSummary(this.#ctx, roomId), bus, nodeId, cluster);
  }

  /**
   * Closes every room here (node shutdown; sockets are closed by the gateway). In a cluster,
   * participants within their resume grace get up to 2 s to resume on another node (a drain
   * sends them there); those still here then leave with `disconnected` — a later resume on
   * another node still finds their session and rejoins them.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#cluster?.stopReaping();
    // The RPC handlers stay until the end: a session resuming elsewhere meanwhile is handed over.
    // Sessions that just left this node (a drain) are usually resuming elsewhere: give them a moment.
    if (this.#cluster) {
      const waitMs = Math.min(this.#ctx.config.rooms.resumeGraceMs, CLOSE_HANDOVER_WAIT_MS);
      await this.#members.handOversDone(waitMs);
    }
    await this.#lifecycle.closeAll();
    for (const stop of this.#stops.splice(0)) stop();
  }
}
