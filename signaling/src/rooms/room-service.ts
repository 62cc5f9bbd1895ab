/**
 * The room service: the only way handlers change room state. It keeps this node's members of
 * each room (and which connection is which member), turns every change into room events on the
 * bus, and hands the bus's events to the fan-out. Everything the nodes of a cluster share lives
 * on the bus — presence (who is in the room, on which node), resume records, bans and role
 * overrides — so any number of nodes serve one room with the guarantees of one. With a cluster,
 * what only another node can do (kick, mute or setRole of its participant, 4009 of its socket,
 * closing the room there) goes to that node over the cluster RPC, and a dead node's participants
 * are reported gone by one survivor. Design: `docs/cluster.md`.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { CloseCode, ProtocolError } from '../errors.js';
import {
  BusUnavailableError,
  type BusEvent,
  type BusStatus,
  type PresenceEntry,
  type ResumeRecord,
  type RoomBus,
} from '../bus/room-bus.js';
import { RpcNoListenerError, RpcRemoteError, RpcTimeoutError } from '../cluster/cluster-rpc.js';
import type { NodeDeadEvent } from '../cluster/node-registry.js';
import { cleanDisplayName, PUBLISHING_ROLES, type Participant, type Role } from '../protocol/common.js';
import type { AlertPublishData } from '../protocol/alert.js';
import type { JoinData, JoinResult } from '../protocol/room.js';
import type { DurableEventName, EphemeralEventName, EventData } from '../protocol/notifications.js';
import type { RoomHandlers } from '../protocol/context.js';
import type { NodeMetrics } from '../metrics.js';
import { Room, type Member } from './room.js';
import { CONTROL_EVENT_PREFIX, RoomFanout } from './room-fanout.js';
import type { RoomConnection } from './room-connection.js';
import type { RoomMediaHooks } from './media-hooks.js';
import { clusterDetail, clusterReports, nodeSummaryOf, type RoomDetail, type RoomReport } from './room-reports.js';
import {
  ADMIN_ROOMS_PER_NODE,
  roomRpcParams,
  type NodeRoomSummary,
  type RoomCluster,
  type RoomRpc,
} from './room-rpc.js';

type LeaveReason = EventData<'participant.left'>['reason'];

/**
 * A trader joined or left a large room without a durable event: every node of the room counts
 * again (`participant.count` goes to each node's own sockets, never through the bus).
 */
const PRESENCE_CHANGED = `${CONTROL_EVENT_PREFIX}presence`;
/** How long a join waits for its own `participant.joined` to come back from the bus. */
const OWN_EVENT_TIMEOUT_MS = 5000;
/** How long a resume waits for this node to deliver what the session's previous node had. */
const CATCH_UP_TIMEOUT_MS = 2000;
/** How long a closing node waits for its participants within the resume grace to resume elsewhere. */
const CLOSE_HANDOVER_WAIT_MS = 2000;

export interface RoomServiceOptions {
  readonly bus: RoomBus;
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: NodeMetrics;
  /** The other nodes, when this one is part of a cluster. */
  readonly cluster?: RoomCluster | undefined;
}

/** Per-room figures of this node for operators (`/admin/rooms` merges the nodes' figures). */
export type RoomSummary = Omit<NodeRoomSummary, 'participantList'>;

export class RoomService implements RoomHandlers {
  readonly #bus: RoomBus;
  readonly #config: Config;
  readonly #log: Logger;
  readonly #metrics: NodeMetrics;
  readonly #cluster: RoomCluster | undefined;
  readonly #nodeId: string;
  readonly #fanout: RoomFanout;
  readonly #rooms = new Map<string, Room>();
  readonly #opening = new Map<string, Promise<Room>>();
  /** Which member each connection is; the room service's own record, never written into the connection. */
  readonly #memberships = new Map<RoomConnection, { readonly room: Room; readonly member: Member }>();
  /** Rooms whose presence is being (or must again be) brought in line with this node's members. */
  readonly #reconciling = new Map<Room, { again: boolean; epochChanged: boolean }>();
  readonly #reapTimers = new Set<NodeJS.Timeout>();
  readonly #stops: (() => void)[] = [];
  #media: RoomMediaHooks | undefined;
  /** While closing: called when the last participant here was handed over to another node. */
  #allHandedOver: (() => void) | undefined;
  #closed = false;

  constructor(options: RoomServiceOptions) {
    this.#bus = options.bus;
    this.#config = options.config;
    this.#log = options.log;
    this.#metrics = options.metrics;
    this.#cluster = options.cluster;
    this.#nodeId = options.cluster?.nodeId ?? options.config.nodeId;
    this.#fanout = new RoomFanout({
      metrics: options.metrics,
      onResync: (room) => this.#reconcileSoon(room, true),
    });
    this.#stops.push(this.#bus.onStatus((status) => this.#onBusStatus(status)));
    if (this.#cluster) this.#joinCluster(this.#cluster);
  }

  /** Connects media once the SFU is up. */
  useMedia(media: RoomMediaHooks | undefined): void {
    this.#media = media;
  }

  get roomCount(): number {
    return this.#rooms.size;
  }

  /** Participants whose sessions live on this node (connected or within the resume grace). */
  get participantCount(): number {
    let n = 0;
    for (const room of this.#rooms.values()) n += room.members.size;
    return n;
  }

  /** Every connection that is a member of a room on this node. */
  *connectedSessions(): Iterable<RoomConnection> {
    for (const room of this.#rooms.values()) {
      for (const member of room.members.values()) if (member.connection) yield member.connection;
    }
  }

  /** The participant a connection is, while it is a member of its room. */
  participantOf(connection: RoomConnection): Readonly<Participant> | undefined {
    return this.#memberships.get(connection)?.member.participant;
  }

  /** The role a participant holds now (undefined when it is not in the room on this node). */
  roleOf(roomId: string, participantId: string): Role | undefined {
    return this.#rooms.get(roomId)?.members.get(participantId)?.participant.role;
  }

  // ---------------------------------------------------------------------------------------------
  // Join and leave

  async join(connection: RoomConnection, data: JoinData): Promise<JoinResult> {
    if (this.#memberships.has(connection)) throw alreadyJoined();
    const room = await this.#open(connection.roomId);
    if ((await this.#bus.state.getBan(room.id, connection.userId)) !== undefined) {
      throw new ProtocolError('FORBIDDEN', 'you were removed from this room');
    }
    if (connection.closed) throw connectionClosed();

    const resumed = data.resume ? await this.#tryResume(room, connection, data.resume, data.displayName) : undefined;
    // A successful resume has attached this connection; anything else must still be unattached.
    if (!resumed && this.#memberships.has(connection)) throw alreadyJoined();
    const member = resumed ?? (await this.#joinFresh(room, connection, data.displayName));
    const { participantId, userId } = member.participant;
    const presence = await this.#bus.presence.list(room.id);
    // The user's other participants elsewhere give way: older ones to a fresh join, all to a resume.
    await this.#replaceElsewhere(room, member, presence, resumed === undefined);
    const visible = presence.filter((p) => p.userId !== userId || p.participantId === participantId);
    const media = this.#media;
    // A join still succeeds without media (no live worker right now): chat and alerts work.
    const routerRtpCapabilities = media
      ? await media.routerRtpCapabilities(room.id).catch((error: unknown) => {
          this.#log.warn({ err: error, roomId: room.id }, 'no router for a joining participant; joining without media');
          return null;
        })
      : null;
    return {
      sessionId: member.sessionId,
      participantId,
      roomId: room.id,
      role: member.participant.role,
      participants: this.#truncateParticipants(visible),
      participantCount: visible.length,
      producers: media ? media.listProducers(room.id) : [],
      lastSeq: member.cursor,
      epoch: room.epoch ?? '',
      routerRtpCapabilities,
      resumed: resumed !== undefined,
    };
  }

  /**
   * Resumes a session on this node, wherever it was: replays the durable events after `lastSeq`
   * (never from before the session first joined), takes the participant over from the node it
   * was on (that node closes its socket with 4009 and forgets it, silently) and attaches the
   * connection. Undefined, for a fresh join, when the session is unknown, of another epoch, or
   * its events are no longer all retained or exceed the replay bounds.
   */
  async #tryResume(
    room: Room,
    connection: RoomConnection,
    resume: NonNullable<JoinData['resume']>,
    displayName: string | undefined,
  ): Promise<Member | undefined> {
    const epoch = room.epoch;
    if (epoch === undefined || (resume.epoch !== undefined && resume.epoch !== epoch)) return undefined;
    const record = await this.#bus.state.getSession(room.id, resume.sessionId);
    if (!record || record.userId !== connection.userId) return undefined;
    const fromSeq = Math.max(resume.lastSeq, record.joinSeq);
    // The node the session was on may be a little ahead of this one: let this one catch up.
    if (fromSeq > room.deliveredSeq && resume.epoch === epoch) {
      await room.delivered(epoch, fromSeq, CATCH_UP_TIMEOUT_MS);
    }
    if (fromSeq > room.deliveredSeq || room.deliveredSeq - fromSeq > this.#config.rooms.resumeMaxReplayEvents) {
      return undefined;
    }
    let replay = await this.#readReplay(room, epoch, fromSeq, []);
    if (!replay || !this.#withinReplayBounds(replay)) return undefined;

    // Where the participant is now: here, on another node (connected or in its grace), or gone.
    const here = room.members.has(record.participantId);
    const takenOver = here ? undefined : await this.#takeOver(room, resume.sessionId, record);
    // A participant present nowhere rejoins with the role a moderator gave the user, or the token's.
    const role = here || takenOver ? undefined : await this.#bus.state.getRole(room.id, connection.userId);
    replay = await this.#readReplay(room, epoch, fromSeq, replay);
    if (!replay || !this.#withinReplayBounds(replay) || connection.closed || this.#memberships.has(connection)) {
      // Its node let go of a participant taken over: nobody else will say it left.
      if (takenOver) {
        const reason = connection.closed ? 'disconnected' : 'replaced';
        await this.#announceLeave(room.id, takenOver, reason);
      }
      return undefined;
    }

    // From here to the attach, nothing awaits: no event can slip between replay and live.
    let member = room.members.get(record.participantId);
    const rejoined = !member && !takenOver;
    let replaced: Member | undefined;
    if (!member) {
      replaced = room.memberByUser.get(connection.userId);
      if (replaced) this.#replace(replaced);
      const participant: Participant = takenOver
        ? withoutNode(takenOver)
        : {
            participantId: record.participantId,
            userId: record.userId,
            name: displayNameOf(connection, displayName),
            role: role ?? connection.tokenRole,
            joinedAt: record.joinedAt,
          };
      member = this.#createMember(room, participant, resume.sessionId, { ...record, leftAt: undefined });
    } else {
      this.#detach(member, CloseCode.REPLACED, 'replaced by a resumed session');
      member.record = { ...record, leftAt: undefined };
    }
    for (const event of replay) connection.sendFrame(event.frame);
    this.#attach(room, member, connection, Math.max(fromSeq, room.deliveredSeq));

    // The user's newer participant here gives way to the resumed one, like a fresh join replaces it.
    if (replaced) await this.#remove(room, replaced, 'replaced');
    if (rejoined) await this.#announceJoin(room, member);
    else if (takenOver) await this.#bus.presence.set(room.id, this.#presenceOf(member));
    await this.#saveRecord(room, member);
    return member;
  }

  /**
   * Asks the node that holds the participant to let go of it (4009, no `participant.left`).
   * Resolves its presence entry, or undefined when it is present nowhere (it left: the resume
   * rejoins it).
   */
  async #takeOver(room: Room, sessionId: string, record: ResumeRecord): Promise<PresenceEntry | undefined> {
    const entry = (await this.#bus.presence.list(room.id)).find((p) => p.participantId === record.participantId);
    if (!entry) return undefined;
    if (entry.nodeId !== this.#nodeId && this.#cluster) {
      const params = { roomId: room.id, participantId: entry.participantId };
      try {
        await this.#cluster.rpc.call(entry.nodeId, 'room.handOver', params);
      } catch (error) {
        // Gone there already, or the node is dead: either way the participant is free to take.
        if (!isGone(error)) throw toRoomError(error);
      }
      // Its grace may have ended there meanwhile (then it left, and the resume rejoins it).
      if ((await this.#bus.state.getSession(room.id, sessionId))?.leftAt !== undefined) return undefined;
    }
    return entry;
  }

  /**
   * The durable events of `epoch` after `fromSeq` up to what this node delivered, `known` first;
   * reads on until it reaches the delivered position (checked right before resolving, so the
   * caller attaches in the same tick). Null when they are no longer all retained or the room
   * moved to another epoch.
   */
  async #readReplay(room: Room, epoch: string, fromSeq: number, known: BusEvent[]): Promise<BusEvent[] | null> {
    let events = known;
    for (;;) {
      const last = events.at(-1)?.seq ?? fromSeq;
      if (room.epoch !== epoch) return null;
      if (last >= room.deliveredSeq) break;
      const more = await this.#bus.readAfter(room.id, last, epoch);
      if (more === null) return null;
      if (more.length === 0 && room.epoch === epoch && last < room.deliveredSeq) return null;
      events = events.concat(more);
    }
    return events.filter((e) => e.seq !== undefined && e.seq > fromSeq && e.seq <= room.deliveredSeq);
  }

  /**
   * Whether a replay fits `RESUME_MAX_REPLAY_EVENTS` and `RESUME_MAX_REPLAY_BYTES`. The bytes
   * never exceed the slow-consumer backlog, so a replay written at once cannot get the socket
   * closed as a slow consumer.
   */
  #withinReplayBounds(replay: readonly BusEvent[]): boolean {
    const { resumeMaxReplayEvents, resumeMaxReplayBytes } = this.#config.rooms;
    if (replay.length > resumeMaxReplayEvents) return false;
    const maxBytes = Math.min(resumeMaxReplayBytes, this.#config.slowConsumer.maxBufferedBytes);
    let bytes = 0;
    for (const event of replay) {
      bytes += Buffer.byteLength(event.frame);
      if (bytes > maxBytes) return false;
    }
    return true;
  }

  async #joinFresh(room: Room, connection: RoomConnection, displayName: string | undefined): Promise<Member> {
    const existing = room.memberByUser.get(connection.userId);
    const count = await this.#bus.presence.count(room.id);
    if (count - (existing ? 1 : 0) >= this.#config.rooms.maxParticipants) {
      throw new ProtocolError('ROOM_FULL', `the room is full (${this.#config.rooms.maxParticipants} participants)`);
    }
    const role = (await this.#bus.state.getRole(room.id, connection.userId)) ?? connection.tokenRole;
    if (connection.closed || this.#memberships.has(connection)) throw connectionClosed();
    const current = room.memberByUser.get(connection.userId);
    if (current) await this.#remove(room, this.#replace(current), 'replaced');
    const record: ResumeRecord = {
      participantId: randomUUID(),
      userId: connection.userId,
      joinedAt: Date.now(),
      joinSeq: 0,
    };
    const participant: Participant = {
      participantId: record.participantId,
      userId: connection.userId,
      name: displayNameOf(connection, displayName),
      role,
      joinedAt: record.joinedAt,
    };
    const member = this.#createMember(room, participant, randomUUID(), record);
    try {
      const joined = await this.#announceJoin(room, member);
      // The join result covers the joiner's own participant.joined: wait until it is delivered here.
      if (joined) await room.delivered(joined.epoch ?? '', joined.seq ?? 0, OWN_EVENT_TIMEOUT_MS);
    } catch (error) {
      this.#forget(room, member);
      throw error;
    }
    if (connection.closed) {
      await this.#remove(room, member, 'disconnected');
      throw connectionClosed();
    }
    // The join result covers everything up to here; a resume replays only what comes after.
    member.record = { ...record, joinSeq: room.deliveredSeq };
    this.#attach(room, member, connection, room.deliveredSeq);
    await this.#saveRecord(room, member);
    return member;
  }

  #createMember(room: Room, participant: Participant, sessionId: string, record: ResumeRecord): Member {
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
  #forget(room: Room, member: Member): void {
    const { participantId, userId } = member.participant;
    if (room.members.get(participantId) === member) room.members.delete(participantId);
    if (room.memberByUser.get(userId) === member) room.memberByUser.delete(userId);
    if (room.members.size === 0) this.#scheduleEmptyClose(room);
  }

  /** Writes presence and, unless the room is large and this a trader, `participant.joined`. */
  async #announceJoin(room: Room, member: Member): Promise<BusEvent | undefined> {
    await this.#bus.presence.set(room.id, this.#presenceOf(member));
    const count = await this.#bus.presence.count(room.id);
    if (this.#isPresenceDurable(member.participant.role, count)) {
      return this.#publish(room.id, 'participant.joined', { participant: { ...member.participant } });
    }
    await this.#bus.publishEphemeral(room.id, PRESENCE_CHANGED, {});
    return undefined;
  }

  /** Writes the member's resume record; a failure costs only a later resume (it joins afresh). */
  async #saveRecord(room: Room, member: Member): Promise<void> {
    try {
      await this.#bus.state.putSession(room.id, member.sessionId, member.record);
    } catch (error) {
      this.#log.warn(
        { err: error, roomId: room.id },
        'the resume record could not be written; a resume will join afresh',
      );
    }
  }

  #attach(room: Room, member: Member, connection: RoomConnection, cursor: number): void {
    if (member.graceTimer) {
      clearTimeout(member.graceTimer);
      member.graceTimer = undefined;
    }
    member.connection = connection;
    member.cursor = cursor;
    this.#memberships.set(connection, { room, member });
  }

  /** Closes the member's current socket with `code`; the member itself stays. */
  #detach(member: Member, code: number, reason: string): void {
    const old = member.connection;
    if (!old) return;
    member.connection = undefined;
    this.#memberships.delete(old);
    old.close(code, reason);
  }

  /** A newer session of the same user takes over: the old socket closes with 4009. */
  #replace(member: Member): Member {
    this.#detach(member, CloseCode.REPLACED, 'replaced by a newer session');
    return member;
  }

  /**
   * The user's other participants in presence give way to `member`: all of them (a resume), or
   * those that joined before it (a fresh join: of two joins racing on two nodes, the newer wins).
   * Each leaves with reason `replaced`, announced by the node that holds it.
   */
  async #replaceElsewhere(room: Room, member: Member, presence: PresenceEntry[], olderOnly: boolean): Promise<void> {
    const self = member.participant;
    for (const entry of presence) {
      if (entry.userId !== self.userId || entry.participantId === self.participantId) continue;
      if (olderOnly && !isOlder(entry, self)) continue;
      const local = room.members.get(entry.participantId);
      if (local) {
        await this.#remove(room, this.#replace(local), 'replaced');
        continue;
      }
      try {
        await this.#onOwner(
          room.id,
          entry,
          (rpc, target) => rpc.call(entry.nodeId, 'room.replace', target),
          () => this.#removeOrphan(room.id, entry, 'replaced'),
        );
      } catch (error) {
        this.#log.warn({ err: error, roomId: room.id, nodeId: entry.nodeId }, 'replacing an older session failed');
      }
    }
  }

  /** `room.leave`, or the socket closed: leave now, or after the resume grace. */
  async leave(connection: RoomConnection, reason: 'left' | 'disconnected'): Promise<void> {
    const membership = this.#memberships.get(connection);
    if (!membership) return;
    this.#memberships.delete(connection);
    const { room, member } = membership;
    if (member.connection !== connection) return;
    member.connection = undefined;
    const graceMs = this.#config.rooms.resumeGraceMs;
    if (reason === 'left' || graceMs === 0) {
      await this.#remove(room, member, reason);
      return;
    }
    member.graceTimer = setTimeout(() => {
      member.graceTimer = undefined;
      if (!member.connection) {
        this.#remove(room, member, 'disconnected').catch((error: unknown) => {
          this.#log.error({ err: error, roomId: room.id }, 'removing a disconnected participant failed');
        });
      }
    }, graceMs);
    member.graceTimer.unref();
  }

  /** The member leaves the room: gone here, then from presence, with `participant.left`. */
  async #remove(room: Room, member: Member, reason: LeaveReason): Promise<void> {
    const { participantId, userId } = member.participant;
    if (room.members.get(participantId) !== member) return;
    if (member.graceTimer) clearTimeout(member.graceTimer);
    this.#detach(member, reason === 'kicked' ? CloseCode.KICKED : CloseCode.NORMAL, reason);
    room.members.delete(participantId);
    if (room.memberByUser.get(userId) === member) room.memberByUser.delete(userId);
    try {
      await this.#media?.participantLeft(room.id, participantId);
    } catch (error) {
      this.#log.warn({ err: error, roomId: room.id, participantId }, 'closing media of a leaving participant failed');
    }
    try {
      await this.#announceDeparture(room, member, reason);
    } catch (error) {
      if (!(error instanceof BusUnavailableError)) throw error;
      // Presence still names this node for it: announced when the bus is back (reconcile).
      room.departed.set(participantId, { member, reason });
      this.#log.warn({ roomId: room.id, participantId }, 'a departure waits for the bus to come back');
    }
    if (room.members.size === 0) this.#scheduleEmptyClose(room);
  }

  /** The shared side of a departure: the resume record (gone after a kick), presence, `participant.left`. */
  async #announceDeparture(room: Room, member: Member, reason: LeaveReason): Promise<void> {
    if (reason === 'kicked') await this.#bus.state.deleteSession(room.id, member.sessionId);
    else await this.#bus.state.putSession(room.id, member.sessionId, { ...member.record, leftAt: Date.now() });
    await this.#announceLeave(room.id, member.participant, reason);
  }

  /** Removes the participant from presence and tells the room (durably unless large and a trader). */
  async #announceLeave(roomId: string, participant: Pick<Participant, 'participantId' | 'role'>, reason: LeaveReason) {
    const countBefore = await this.#bus.presence.count(roomId);
    await this.#bus.presence.remove(roomId, participant.participantId);
    if (this.#isPresenceDurable(participant.role, countBefore)) {
      await this.#publish(roomId, 'participant.left', { participantId: participant.participantId, reason });
    } else {
      await this.#bus.publishEphemeral(roomId, PRESENCE_CHANGED, {});
    }
  }

  /** A participant in presence that no node holds any more (its node forgot it, or died). */
  async #removeOrphan(roomId: string, entry: PresenceEntry, reason: LeaveReason): Promise<void> {
    await this.#announceLeave(roomId, entry, reason);
  }

  /** Large rooms: traders' joins and leaves are not durable; `participant.count` tells. */
  #isPresenceDurable(role: Role, count: number): boolean {
    return role !== 'trader' || count <= this.#config.rooms.largeRoomThreshold;
  }

  #truncateParticipants(presence: PresenceEntry[]): Participant[] {
    const limit = this.#config.rooms.joinParticipantsLimit;
    if (presence.length <= limit) return presence.map(withoutNode);
    const publishersFirst = [...presence].sort((a, b) => rank(a.role) - rank(b.role) || a.joinedAt - b.joinedAt);
    return publishersFirst.slice(0, limit).map(withoutNode);
  }

  #presenceOf(member: Member): PresenceEntry {
    return { ...member.participant, nodeId: this.#nodeId };
  }

  // ---------------------------------------------------------------------------------------------
  // Chat, alerts, moderation

  async chat(connection: RoomConnection, text: string): Promise<{ messageId: string; seq: number }> {
    const { room, member } = this.#membership(connection);
    const messageId = randomUUID();
    const event = await this.#publish(room.id, 'chat.message', {
      messageId,
      from: fromOf(member.participant),
      text,
      ts: Date.now(),
    });
    return { messageId, seq: event.seq as number };
  }

  async alert(connection: RoomConnection, data: AlertPublishData): Promise<{ alertId: string; seq: number }> {
    const { room, member } = this.#membership(connection);
    const alertId = randomUUID();
    const event: EventData<'alert.published'> = {
      alertId,
      from: fromOf(member.participant),
      symbol: data.symbol,
      action: data.action,
      ts: Date.now(),
    };
    if (data.price !== undefined) event.price = data.price;
    if (data.note !== undefined) event.note = data.note;
    const published = await this.#publish(room.id, 'alert.published', event);
    return { alertId, seq: published.seq as number };
  }

  /** `moderation.kick`: the target may be on any node; it is barred from the room on every node. */
  async kick(connection: RoomConnection, participantId: string): Promise<void> {
    const { room } = this.#membership(connection);
    const local = room.members.get(participantId);
    if (local) return this.#kickHere(room, local);
    const entry = await this.#findPresence(room, participantId);
    await this.#onOwner(
      room.id,
      entry,
      (rpc, target) => rpc.call(entry.nodeId, 'room.kick', target),
      async () => {
        await this.#ban(room.id, entry.userId);
        await this.#removeOrphan(room.id, entry, 'kicked');
      },
    );
  }

  async #kickHere(room: Room, target: Member): Promise<void> {
    await this.#ban(room.id, target.participant.userId);
    target.connection?.sendEvent('session.kicked', { reason: 'kicked by a moderator' });
    await this.#remove(room, target, 'kicked');
  }

  async #ban(roomId: string, userId: string): Promise<void> {
    await this.#bus.state.putBan(roomId, userId, Date.now() + this.#config.rooms.kickBanMs);
  }

  /** `moderation.mute`: pauses the target's producers on the node where its media lives. */
  async mute(connection: RoomConnection, participantId: string): Promise<void> {
    const { room } = this.#membership(connection);
    if (room.members.has(participantId)) return this.#media?.mute(room.id, participantId);
    // A participant of a dead node has no media left to pause.
    const entry = await this.#findPresence(room, participantId);
    await this.#onOwner(
      room.id,
      entry,
      (rpc, target) => rpc.call(entry.nodeId, 'room.mute', target),
      async () => {},
    );
  }

  /** `moderation.setRole`: recorded for the user, so a rejoin or a refreshed token does not undo it. */
  async setRole(connection: RoomConnection, participantId: string, role: Role): Promise<void> {
    const { room } = this.#membership(connection);
    const local = room.members.get(participantId);
    if (local) return this.#setRoleHere(room, local, role);
    const entry = await this.#findPresence(room, participantId);
    const setThere = (rpc: RoomRpc, target: { roomId: string; participantId: string }) =>
      rpc.call(entry.nodeId, 'room.setRole', { ...target, role });
    await this.#onOwner(room.id, entry, setThere, async () => {
      // Its node is dead: the participant keeps the role if it resumes elsewhere.
      await this.#bus.state.putRole(room.id, entry.userId, role);
      if (entry.role === role) return;
      await this.#bus.presence.set(room.id, { ...entry, role });
      await this.#publish(room.id, 'participant.updated', { participant: { ...withoutNode(entry), role } });
    });
  }

  async #setRoleHere(room: Room, target: Member, role: Role): Promise<void> {
    await this.#bus.state.putRole(room.id, target.participant.userId, role);
    await this.#applyRole(room, target, role);
  }

  /**
   * `session.refresh` brought a token with another role: it applies like `moderation.setRole`,
   * unless a moderator set this user's role in the room (the moderator wins).
   */
  async tokenRoleChanged(connection: RoomConnection): Promise<void> {
    const membership = this.#memberships.get(connection);
    if (!membership) return;
    const { room, member } = membership;
    if ((await this.#bus.state.getRole(room.id, connection.userId)) !== undefined) return;
    await this.#applyRole(room, member, connection.tokenRole);
  }

  /** Gives a member a role: `participant.updated` for everyone; a demoted publisher's producers close. */
  async #applyRole(room: Room, target: Member, role: Role): Promise<void> {
    const participant = target.participant;
    const previous = participant.role;
    if (previous === role) return;
    participant.role = role;
    await this.#bus.presence.set(room.id, this.#presenceOf(target));
    await this.#publish(room.id, 'participant.updated', { participant: { ...participant } });
    if (PUBLISHING_ROLES.includes(previous) && !PUBLISHING_ROLES.includes(role)) {
      await this.#media?.publishingRevoked(room.id, participant.participantId);
    }
  }

  #membership(connection: RoomConnection): { room: Room; member: Member } {
    const membership = this.#memberships.get(connection);
    if (!membership || membership.room.closed) throw new ProtocolError('NOT_JOINED', 'join the room first');
    return membership;
  }

  /** The participant's presence entry, wherever it is connected; NOT_FOUND when it is not in the room. */
  async #findPresence(room: Room, participantId: string): Promise<PresenceEntry> {
    const entry = (await this.#bus.presence.list(room.id)).find((p) => p.participantId === participantId);
    if (!entry) throw new ProtocolError('NOT_FOUND', `no participant ${participantId} in this room`);
    return entry;
  }

  /**
   * Asks the node that holds a participant to act on it. Its protocol errors (`NOT_FOUND`, …)
   * pass through; when no node holds the participant any more (its node is dead, or it is an
   * orphan of this one), `whenGone` acts in its place.
   */
  async #onOwner(
    roomId: string,
    entry: PresenceEntry,
    call: (rpc: RoomRpc, target: { roomId: string; participantId: string }) => Promise<unknown>,
    whenGone: () => Promise<void>,
  ): Promise<void> {
    const cluster = this.#cluster;
    if (entry.nodeId === this.#nodeId || !cluster) return whenGone();
    try {
      await call(cluster.rpc, { roomId, participantId: entry.participantId });
    } catch (error) {
      if (!(error instanceof RpcNoListenerError)) throw toRoomError(error);
      await whenGone();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Events

  /** Publishes a durable room event; resolves with its `seq`. */
  async publishDurable<E extends DurableEventName>(roomId: string, event: E, data: EventData<E>): Promise<number> {
    return (await this.#publish(roomId, event, data)).seq as number;
  }

  async #publish(roomId: string, event: DurableEventName, data: unknown): Promise<BusEvent> {
    const published = await this.#bus.publishDurable(roomId, event, data);
    this.#metrics.durableEvents.inc();
    return published;
  }

  /** Sends an ephemeral event to every participant of a room, on every node. */
  async publishEphemeral<E extends EphemeralEventName>(roomId: string, event: E, data: EventData<E>): Promise<void> {
    await this.#bus.publishEphemeral(roomId, event, data);
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

  #onBusEvent(room: Room, event: BusEvent): void {
    if (room.closed) return;
    if (event.event === PRESENCE_CHANGED) {
      this.#scheduleCount(room);
      return;
    }
    this.#fanout.deliver(room, event);
    if (room.lastCountSent >= 0 && (event.event === 'participant.joined' || event.event === 'participant.left')) {
      this.#scheduleCount(room);
    }
  }

  /**
   * `participant.count` once a room is large, at most once per interval, trailing, when the
   * cluster-wide count changed. Each node sends it to its own sockets only.
   */
  #scheduleCount(room: Room): void {
    if (room.countTimer || room.closed) return;
    const interval = this.#config.rooms.participantCountIntervalMs;
    const delay = Math.max(0, room.lastCountSentAt + interval - Date.now());
    room.countTimer = setTimeout(() => {
      room.countTimer = undefined;
      if (room.closed) return;
      this.#bus.presence
        .count(room.id)
        .then((count) => {
          const large = count > this.#config.rooms.largeRoomThreshold;
          if (room.closed || count === room.lastCountSent || (!large && room.lastCountSent < 0)) return;
          room.lastCountSent = count;
          room.lastCountSentAt = Date.now();
          this.#fanout.sendHere(room, 'participant.count', { count });
        })
        .catch((error: unknown) => {
          this.#log.warn({ err: error, roomId: room.id }, 'sending participant.count failed');
        });
    }, delay);
    room.countTimer.unref();
  }

  // ---------------------------------------------------------------------------------------------
  // Presence in line with this node's members

  /**
   * Brings the room's presence in line with this node's members: members missing from it (the
   * shared store lost it, or a survivor reaped this node while it was cut off) are written back
   * and announced again; entries naming this node that it no longer holds (a departure the bus
   * refused) are removed and announced. After an epoch change every member's resume record is
   * written again, counting from the new numbering.
   */
  #reconcileSoon(room: Room, epochChanged = false): void {
    const running = this.#reconciling.get(room);
    if (running) {
      running.again = true;
      running.epochChanged ||= epochChanged;
      return;
    }
    const state = { again: false, epochChanged };
    this.#reconciling.set(room, state);
    void (async () => {
      do {
        const changed = state.epochChanged;
        state.again = false;
        state.epochChanged = false;
        try {
          await this.#reconcile(room, changed);
        } catch (error) {
          this.#log.warn(
            { err: error, roomId: room.id },
            'bringing presence in line failed; retried when the bus is back',
          );
          room.unreconciled = true;
          break;
        }
      } while (state.again && !room.closed);
      this.#reconciling.delete(room);
    })();
  }

  async #reconcile(room: Room, epochChanged: boolean): Promise<void> {
    if (room.closed) return;
    room.unreconciled = false;
    const presence = await this.#bus.presence.list(room.id);
    const present = new Map(presence.map((p) => [p.participantId, p]));
    for (const member of [...room.members.values()]) {
      if (room.members.get(member.participant.participantId) !== member) continue;
      if (epochChanged) member.record = { ...member.record, joinSeq: Math.min(member.cursor, room.deliveredSeq) };
      const entry = present.get(member.participant.participantId);
      if (!entry) {
        await this.#announceJoin(room, member);
        await this.#saveRecord(room, member);
      } else if (epochChanged) await this.#saveRecord(room, member);
    }
    for (const entry of presence) {
      if (entry.nodeId !== this.#nodeId || room.members.has(entry.participantId)) continue;
      const departed = room.departed.get(entry.participantId);
      if (departed) await this.#announceDeparture(room, departed.member, departed.reason);
      else await this.#removeOrphan(room.id, entry, 'disconnected');
      room.departed.delete(entry.participantId);
    }
    room.departed.clear();
  }

  #onBusStatus(status: BusStatus): void {
    if (status.state !== 'ok') return;
    for (const room of this.#rooms.values()) if (room.departed.size > 0 || room.unreconciled) this.#reconcileSoon(room);
  }

  // ---------------------------------------------------------------------------------------------
  // The cluster

  #joinCluster({ rpc, registry }: RoomCluster): void {
    /** What a participant's own node does for another node, answered `{}` (NOT_FOUND when it is not here). */
    const onHere =
      <P extends { roomId: string; participantId: string }>(act: (room: Room, member: Member, params: P) => unknown) =>
      async (params: P): Promise<Record<string, never>> => {
        const room = this.#rooms.get(params.roomId);
        const member = room?.members.get(params.participantId);
        if (!room || !member)
          throw new ProtocolError('NOT_FOUND', `no participant ${params.participantId} in this room`);
        await act(room, member, params);
        return {};
      };
    const p = roomRpcParams;
    this.#stops.push(
      rpc.handle(
        'room.kick',
        onHere((room, member) => this.#kickHere(room, member)),
        { params: p['room.kick'] },
      ),
      rpc.handle(
        'room.mute',
        onHere((room, member) => this.#media?.mute(room.id, member.participant.participantId)),
        {
          params: p['room.mute'],
        },
      ),
      rpc.handle(
        'room.setRole',
        onHere((room, member, { role }) => this.#setRoleHere(room, member, role)),
        {
          params: p['room.setRole'],
        },
      ),
      rpc.handle(
        'room.replace',
        onHere((room, member) => this.#remove(room, this.#replace(member), 'replaced')),
        {
          params: p['room.replace'],
        },
      ),
      rpc.handle(
        'room.handOver',
        onHere((room, member) => this.#handOver(room, member)),
        { params: p['room.handOver'] },
      ),
    );
    this.#stops.push(
      rpc.handle('room.close', async ({ roomId }) => ({ closed: await this.#closeHere(roomId) }), {
        params: roomRpcParams['room.close'],
      }),
      rpc.handle('room.summaries', () => this.#summaries().slice(0, ADMIN_ROOMS_PER_NODE), {
        params: roomRpcParams['room.summaries'],
      }),
      rpc.handle('room.summary', ({ roomId }) => this.#summaryOf(roomId) ?? null, {
        params: roomRpcParams['room.summary'],
      }),
    );
    const onNodeDead = (event: NodeDeadEvent): void => void this.#reapNode(event);
    const onReregistered = (): void => {
      for (const room of this.#rooms.values()) this.#reconcileSoon(room);
    };
    registry.on('nodedead', onNodeDead);
    registry.on('reregistered', onReregistered);
    this.#stops.push(() => {
      registry.off('nodedead', onNodeDead);
      registry.off('reregistered', onReregistered);
    });
  }

  /** The session resumes on another node: close its socket with 4009 and forget it, silently. */
  async #handOver(room: Room, member: Member): Promise<void> {
    const { participantId, userId } = member.participant;
    if (member.graceTimer) clearTimeout(member.graceTimer);
    this.#detach(member, CloseCode.REPLACED, 'resumed on another node');
    room.members.delete(participantId);
    if (room.memberByUser.get(userId) === member) room.memberByUser.delete(userId);
    if (room.members.size === 0) this.#scheduleEmptyClose(room);
    if (this.participantCount === 0) this.#allHandedOver?.();
    try {
      await this.#media?.participantLeft(room.id, participantId);
    } catch (error) {
      this.#log.warn(
        { err: error, roomId: room.id, participantId },
        'closing media of a participant resumed elsewhere failed',
      );
    }
  }

  /**
   * A node stopped heartbeating and this one holds its lock: its participants get the resume
   * grace (they may resume on any node), then those still present under its id leave with
   * reason `disconnected`.
   */
  async #reapNode({ nodeId, rooms, fencingToken }: NodeDeadEvent): Promise<void> {
    const registry = this.#cluster?.registry;
    if (!registry) return;
    this.#log.info({ deadNodeId: nodeId, rooms: rooms.length }, 'a node died; its participants get the resume grace');
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#reapTimers.delete(timer);
        resolve();
      }, this.#config.rooms.resumeGraceMs);
      this.#reapTimers.add(timer);
    });
    if (this.#closed) return; // another survivor claims the node again once the lock expires
    try {
      let left = 0;
      for (const roomId of rooms) {
        for (const entry of await this.#bus.presence.list(roomId)) {
          if (entry.nodeId !== nodeId) continue;
          await this.#removeOrphan(roomId, entry, 'disconnected');
          left++;
        }
      }
      const done = await registry.reaped(nodeId, fencingToken);
      this.#log.info({ deadNodeId: nodeId, left, done }, 'reaped a dead node');
    } catch (error) {
      this.#log.warn({ err: error, deadNodeId: nodeId }, 'reaping a dead node failed; another pass claims it later');
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Room lifecycle

  async #open(roomId: string): Promise<Room> {
    const existing = this.#rooms.get(roomId);
    if (existing) return existing;
    if (this.#closed) throw new ProtocolError('UNAVAILABLE', 'the node is shutting down');
    let opening = this.#opening.get(roomId);
    if (!opening) {
      opening = (async () => {
        const room = new Room(roomId);
        room.unsubscribe = await this.#bus.subscribe(roomId, (event) => this.#onBusEvent(room, event));
        try {
          // Taken right after the subscription is live: every newer event reaches the listener.
          room.open(await this.#bus.head(roomId));
        } catch (error) {
          await room.unsubscribe();
          throw error;
        }
        this.#rooms.set(roomId, room);
        void this.#cluster?.registry.trackRoom(roomId);
        return room;
      })().finally(() => this.#opening.delete(roomId));
      this.#opening.set(roomId, opening);
    }
    return opening;
  }

  #scheduleEmptyClose(room: Room): void {
    if (room.emptyTimer || room.closed) return;
    room.emptyTimer = setTimeout(() => {
      room.emptyTimer = undefined;
      if (room.members.size === 0) void this.#closeEmpty(room);
    }, this.#config.rooms.emptyGraceMs);
    room.emptyTimer.unref();
  }

  /** Closes a room nobody is in here; a departure the bus refused is settled first. */
  async #closeEmpty(room: Room): Promise<void> {
    if (room.departed.size > 0 || room.unreconciled) {
      try {
        await this.#reconcile(room, false);
      } catch {
        this.#scheduleEmptyClose(room);
        return;
      }
    }
    if (room.members.size === 0) await this.#dispose(room);
  }

  async #dispose(room: Room): Promise<void> {
    if (room.closed) return;
    room.closed = true;
    clearTimeout(room.emptyTimer);
    clearTimeout(room.countTimer);
    room.settleWaiters();
    this.#rooms.delete(room.id);
    void this.#cluster?.registry.untrackRoom(room.id);
    await Promise.resolve(room.unsubscribe?.()).catch((error: unknown) => {
      this.#log.warn({ err: error, roomId: room.id }, 'unsubscribing from a room failed');
    });
    await this.#media?.roomClosed(room.id).catch((error: unknown) => {
      this.#log.warn({ err: error, roomId: room.id }, 'closing room media failed');
    });
    await this.#bus.dropRoom(room.id).catch((error: unknown) => {
      this.#log.warn({ err: error, roomId: room.id }, 'forgetting a closed room failed; its keys expire');
    });
    this.#log.info({ roomId: room.id }, 'room closed');
  }

  /**
   * Admin: closes a room on every node that has members in it (each tells its participants with
   * `session.kicked` and closes them with 4003). False when no node knows the room.
   */
  async closeRoom(roomId: string): Promise<boolean> {
    const presence = await this.#bus.presence.list(roomId);
    const nodes = new Set(presence.map((p) => p.nodeId));
    if (this.#rooms.has(roomId)) nodes.add(this.#nodeId);
    let closed = false;
    for (const nodeId of nodes) {
      if (nodeId === this.#nodeId || !this.#cluster) {
        closed = (await this.#closeHere(roomId)) || closed;
        continue;
      }
      try {
        closed = (await this.#cluster.rpc.call(nodeId, 'room.close', { roomId })).closed || closed;
      } catch (error) {
        if (!(error instanceof RpcNoListenerError)) throw toRoomError(error);
      }
    }
    // What is left names dead nodes (or none): nobody to tell.
    for (const entry of await this.#bus.presence.list(roomId))
      await this.#bus.presence.remove(roomId, entry.participantId);
    await this.#bus.dropRoom(roomId).catch(() => false);
    return closed || nodes.size > 0;
  }

  /** Closes the room on this node: `session.kicked` and 4003 for each member here. */
  async #closeHere(roomId: string): Promise<boolean> {
    const room = this.#rooms.get(roomId);
    if (!room) return false;
    for (const member of [...room.members.values()]) {
      member.connection?.sendEvent('session.kicked', { reason: 'room closed' });
      if (member.graceTimer) clearTimeout(member.graceTimer);
      this.#detach(member, CloseCode.KICKED, 'room closed');
      await this.#bus.presence.remove(room.id, member.participant.participantId);
    }
    room.members.clear();
    room.memberByUser.clear();
    await this.#dispose(room);
    return true;
  }

  // ---------------------------------------------------------------------------------------------
  // Figures for operators

  /** This node's figures of its rooms (its own members only). */
  summaries(): RoomSummary[] {
    return this.#summaries().map(({ participantList: _list, ...summary }) => summary);
  }

  /** This node's figures of one room, with its members here; undefined when it is not open here. */
  summary(roomId: string): NodeRoomSummary | undefined {
    return this.#summaryOf(roomId);
  }

  #summaries(): NodeRoomSummary[] {
    return [...this.#rooms.keys()].map((roomId) => this.#summaryOf(roomId) as NodeRoomSummary);
  }

  #summaryOf(roomId: string): NodeRoomSummary | undefined {
    const room = this.#rooms.get(roomId);
    return room && nodeSummaryOf(room, this.#nodeId, this.#media?.publisherIds(room.id));
  }

  /**
   * `/admin/rooms`: every room with members on a live node of the cluster (each node reports at
   * most {@link ADMIN_ROOMS_PER_NODE} of its rooms; a node that does not answer in time is left out).
   */
  async roomReports(): Promise<RoomReport[]> {
    return clusterReports(this.#summaries().slice(0, ADMIN_ROOMS_PER_NODE), this.#nodeId, this.#cluster);
  }

  /** `/admin/rooms/:roomId`: the room across the cluster; undefined when no node knows it. */
  async roomReport(roomId: string): Promise<RoomDetail | undefined> {
    return clusterDetail(roomId, this.#summaryOf(roomId), this.#bus, this.#nodeId, this.#cluster);
  }

  /** Resolves once no participant is left here (all handed over to other nodes), or after `timeoutMs`. */
  async #handOversDone(timeoutMs: number): Promise<void> {
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

  /**
   * Closes every room here (node shutdown; sockets are closed by the gateway). In a cluster,
   * participants within their resume grace get up to 2 s to resume on another node (a drain
   * sends them there); those still here then leave with `disconnected` — a later resume on
   * another node still finds their session and rejoins them.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const timer of this.#reapTimers) clearTimeout(timer);
    // The RPC handlers stay until the end: a session resuming elsewhere meanwhile is handed over.
    // Sessions that just left this node (a drain) are usually resuming elsewhere: give them a moment.
    if (this.#cluster) await this.#handOversDone(Math.min(this.#config.rooms.resumeGraceMs, CLOSE_HANDOVER_WAIT_MS));
    for (const room of [...this.#rooms.values()]) {
      for (const member of [...room.members.values()]) {
        if (member.graceTimer) clearTimeout(member.graceTimer);
        if (this.#cluster) await this.#remove(room, member, 'disconnected').catch(() => {});
      }
      await this.#dispose(room);
    }
    for (const stop of this.#stops.splice(0)) stop();
  }
}

function alreadyJoined(): ProtocolError {
  return new ProtocolError('ALREADY_JOINED', 'this connection already joined the room');
}

function connectionClosed(): ProtocolError {
  return new ProtocolError('UNAVAILABLE', 'connection closed');
}

/** A failure of a call to another node, as the client is answered. */
function toRoomError(error: unknown): unknown {
  if (error instanceof RpcRemoteError) return error.toProtocolError();
  if (error instanceof RpcTimeoutError) {
    return new ProtocolError('UNAVAILABLE', 'the node of that participant did not answer', { retryAfterMs: 1000 });
  }
  return error;
}

/** The node called no longer holds the participant (NOT_FOUND), is shutting down, or is gone. */
function isGone(error: unknown): boolean {
  return (
    error instanceof RpcNoListenerError ||
    error instanceof RpcTimeoutError ||
    (error instanceof RpcRemoteError && (error.code === 'NOT_FOUND' || error.code === 'UNKNOWN_METHOD'))
  );
}

/** Join order across nodes: earlier `joinedAt` first, the participant id breaking ties. */
function isOlder(a: Participant, b: Participant): boolean {
  return a.joinedAt < b.joinedAt || (a.joinedAt === b.joinedAt && a.participantId < b.participantId);
}

function withoutNode({ nodeId: _nodeId, ...participant }: PresenceEntry): Participant {
  return participant;
}

function rank(role: Role): number {
  return role === 'presenter' ? 0 : role === 'moderator' ? 1 : 2;
}

function fromOf(p: Participant): EventData<'chat.message'>['from'] {
  return { participantId: p.participantId, userId: p.userId, name: p.name, role: p.role };
}

/** The token's name when it has one, else the name asked for, else the user id; never hidden characters. */
function displayNameOf(connection: RoomConnection, requested: string | undefined): string {
  for (const candidate of [connection.tokenName, requested]) {
    const name = candidate === undefined ? '' : cleanDisplayName(candidate);
    if (name !== '') return name;
  }
  return connection.userId;
}
