/**
 * The room service: the only way handlers change room state. It keeps this node's rooms, turns
 * every change into room events on the bus, and fans events from the bus out to the node's
 * sockets, encoded once, in `seq` order, repairing gaps from the log.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { CloseCode, ProtocolError } from '../errors.js';
import type { BusEvent, PresenceEntry, RoomBus } from '../bus/room-bus.js';
import { cleanDisplayName, PUBLISHING_ROLES, type Participant, type Role } from '../protocol/common.js';
import type { AlertPublishData } from '../protocol/alert.js';
import type { z } from 'zod';
import type { joinDataSchema, joinResultSchema } from '../protocol/room.js';
import type { DurableEventName, EphemeralEventName, EventData } from '../protocol/notifications.js';
import type { ClientSession } from '../gateway/client-session.js';
import type { NodeMetrics } from '../metrics.js';
import { Room, type Member, type SessionRecord } from './room.js';
import type { RoomMediaHooks } from './media-hooks.js';

type JoinData = z.output<typeof joinDataSchema>;
type JoinResult = z.input<typeof joinResultSchema>;
type LeaveReason = EventData<'participant.left'>['reason'];

/** First retry of a failed seq gap repair; each further one waits twice as long, up to the max. */
const REPAIR_RETRY_FIRST_MS = 100;
const REPAIR_RETRY_MAX_MS = 5000;

export interface RoomServiceOptions {
  readonly bus: RoomBus;
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: NodeMetrics;
}

/** Per-room figures for operators (`/admin/rooms`). */
export interface RoomSummary {
  roomId: string;
  createdAt: number;
  participants: number;
  participantsByRole: Record<Role, number>;
  connected: number;
  publishers: string[];
  eventsPerMinute: number;
  lastSeq: number;
}

export class RoomService {
  readonly #bus: RoomBus;
  readonly #config: Config;
  readonly #log: Logger;
  readonly #metrics: NodeMetrics;
  readonly #rooms = new Map<string, Room>();
  readonly #opening = new Map<string, Promise<Room>>();
  #media: RoomMediaHooks | undefined;
  #closed = false;

  constructor(options: RoomServiceOptions) {
    this.#bus = options.bus;
    this.#config = options.config;
    this.#log = options.log;
    this.#metrics = options.metrics;
  }

  /** Connects media once the SFU is up. */
  useMedia(media: RoomMediaHooks | undefined): void {
    this.#media = media;
  }

  get roomCount(): number {
    return this.#rooms.size;
  }

  get participantCount(): number {
    let n = 0;
    for (const room of this.#rooms.values()) n += room.members.size;
    return n;
  }

  /** Every session connected to a room on this node. */
  *connectedSessions(): Iterable<ClientSession> {
    for (const room of this.#rooms.values()) {
      for (const member of room.members.values()) if (member.connection) yield member.connection;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Join and leave

  async join(session: ClientSession, data: JoinData): Promise<JoinResult> {
    if (session.membership) throw new ProtocolError('ALREADY_JOINED', 'this connection already joined the room');
    const roomId = session.roomId;
    const room = await this.#open(roomId);
    if (room.isBanned(session.userId)) throw new ProtocolError('FORBIDDEN', 'you were removed from this room');
    if (session.closed) throw new ProtocolError('UNAVAILABLE', 'connection closed');
    room.pruneSessions(this.#config.rooms.replayMaxAgeMs);

    const resumed = data.resume ? await this.#tryResume(room, session, data.resume, data.displayName) : undefined;
    // A successful resume has attached this session; anything else must still be unattached.
    if (!resumed && session.membership)
      throw new ProtocolError('ALREADY_JOINED', 'this connection already joined the room');
    const member = resumed ?? (await this.#joinFresh(room, session, data.displayName));
    const [presence, count] = await Promise.all([this.#bus.presence.list(roomId), this.#bus.presence.count(roomId)]);
    const media = this.#media;
    // A join still succeeds without media (no live worker right now): chat and alerts work.
    const routerRtpCapabilities = media
      ? await media.routerRtpCapabilities(roomId).catch((error: unknown) => {
          this.#log.warn({ err: error, roomId }, 'no router for a joining participant; joining without media');
          return null;
        })
      : null;
    return {
      sessionId: member.sessionId,
      participantId: member.participant.participantId,
      roomId,
      role: member.participant.role,
      participants: this.#truncateParticipants(presence),
      participantCount: count,
      producers: media ? media.listProducers(roomId) : [],
      lastSeq: member.cursor,
      routerRtpCapabilities,
      resumed: resumed !== undefined,
    };
  }

  /**
   * Resumes a session: replays the durable events after `lastSeq` (never from before the session
   * first joined) and attaches the socket. Undefined, for a fresh join, when the session is
   * unknown, the events are no longer all retained, or they exceed the replay bounds.
   */
  async #tryResume(
    room: Room,
    session: ClientSession,
    resume: NonNullable<JoinData['resume']>,
    displayName: string | undefined,
  ): Promise<Member | undefined> {
    const record = room.sessions.get(resume.sessionId);
    if (!record || record.userId !== session.userId) return undefined;
    if (room.isBanned(session.userId)) return undefined;
    const fromSeq = Math.max(resume.lastSeq, record.joinSeq);
    if (room.deliveredSeq - fromSeq > this.#config.rooms.resumeMaxReplayEvents) return undefined;
    let events = await this.#bus.readAfter(room.id, fromSeq);
    if (events === null) return undefined;
    // Catch up with what the node delivered while the log was being read.
    while ((events.at(-1)?.seq ?? fromSeq) < room.deliveredSeq) {
      const more = await this.#bus.readAfter(room.id, events.at(-1)?.seq ?? fromSeq);
      if (more === null) return undefined;
      events = events.concat(more);
    }
    if (session.closed || session.membership) return undefined;

    // From here to the attach, nothing awaits: no event can slip between replay and live.
    const replay = events.filter((e) => e.seq !== undefined && e.seq > fromSeq && e.seq <= room.deliveredSeq);
    if (!this.#withinReplayBounds(replay)) return undefined;
    let member = room.members.get(record.participantId);
    let rejoined = false;
    let replaced: Member | undefined;
    if (!member) {
      replaced = room.memberByUser.get(session.userId);
      if (replaced) this.#replace(replaced);
      member = this.#createMember(room, session, resume.sessionId, record, displayName);
      rejoined = true;
    } else {
      this.#detach(member, CloseCode.REPLACED, 'replaced by a resumed session');
    }
    record.leftAt = undefined;
    for (const event of replay) session.sendFrame(event.frame);
    this.#attach(room, member, session, Math.max(fromSeq, room.deliveredSeq));
    // The user's newer participant gives way to the resumed one, like a fresh join replaces it.
    if (replaced) await this.#remove(room, replaced, 'replaced');
    if (rejoined) await this.#announceJoin(room, member);
    return member;
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

  async #joinFresh(room: Room, session: ClientSession, displayName: string | undefined): Promise<Member> {
    const existing = room.memberByUser.get(session.userId);
    const count = await this.#bus.presence.count(room.id);
    if (count - (existing ? 1 : 0) >= this.#config.rooms.maxParticipants) {
      throw new ProtocolError('ROOM_FULL', `the room is full (${this.#config.rooms.maxParticipants} participants)`);
    }
    if (session.closed || session.membership) throw new ProtocolError('UNAVAILABLE', 'connection closed');
    const current = room.memberByUser.get(session.userId);
    if (current) await this.#remove(room, this.#replace(current), 'replaced');
    const record: SessionRecord = {
      participantId: randomUUID(),
      userId: session.userId,
      joinedAt: Date.now(),
      joinSeq: 0,
      leftAt: undefined,
    };
    const member = this.#createMember(room, session, randomUUID(), record, displayName);
    await this.#announceJoin(room, member);
    if (session.closed) {
      await this.#remove(room, member, 'disconnected');
      throw new ProtocolError('UNAVAILABLE', 'connection closed');
    }
    // The join result covers everything up to here; a resume replays only what comes after.
    record.joinSeq = room.deliveredSeq;
    this.#attach(room, member, session, room.deliveredSeq);
    return member;
  }

  #createMember(
    room: Room,
    session: ClientSession,
    sessionId: string,
    record: SessionRecord,
    displayName: string | undefined,
  ): Member {
    const participant: Participant = {
      participantId: record.participantId,
      userId: session.userId,
      name: displayNameOf(session, displayName),
      role: room.roleOverrides.get(session.userId) ?? session.tokenRole,
      joinedAt: record.joinedAt,
    };
    const member: Member = { participant, sessionId, connection: undefined, cursor: 0, graceTimer: undefined };
    room.members.set(record.participantId, member);
    room.memberByUser.set(session.userId, member);
    room.sessions.set(sessionId, record);
    if (room.emptyTimer) {
      clearTimeout(room.emptyTimer);
      room.emptyTimer = undefined;
    }
    return member;
  }

  async #announceJoin(room: Room, member: Member): Promise<void> {
    await this.#bus.presence.set(room.id, { ...member.participant, nodeId: this.#config.nodeId });
    if (this.#isPresenceDurable(member.participant.role, await this.#bus.presence.count(room.id))) {
      await this.#publishDurable(room.id, 'participant.joined', { participant: { ...member.participant } });
    }
    this.#scheduleCount(room);
  }

  #attach(room: Room, member: Member, session: ClientSession, cursor: number): void {
    if (member.graceTimer) {
      clearTimeout(member.graceTimer);
      member.graceTimer = undefined;
    }
    member.connection = session;
    member.cursor = cursor;
    session.membership = { room: room.id, member };
  }

  /** Closes the member's current socket with `code`; the member itself stays. */
  #detach(member: Member, code: number, reason: string): void {
    const old = member.connection;
    if (!old) return;
    member.connection = undefined;
    old.membership = undefined;
    old.close(code, reason);
  }

  /** A newer session of the same user takes over: the old socket closes with 4009. */
  #replace(member: Member): Member {
    this.#detach(member, CloseCode.REPLACED, 'replaced by a newer session');
    return member;
  }

  /** `room.leave`, or the socket closed: leave now, or after the resume grace. */
  async leave(session: ClientSession, reason: 'left' | 'disconnected'): Promise<void> {
    const membership = session.membership;
    if (!membership) return;
    const room = this.#rooms.get(membership.room);
    const member = membership.member;
    session.membership = undefined;
    if (!room || member.connection !== session) return;
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

  async #remove(room: Room, member: Member, reason: LeaveReason): Promise<void> {
    const { participantId, userId, role } = member.participant;
    if (room.members.get(participantId) !== member) return;
    if (member.graceTimer) clearTimeout(member.graceTimer);
    this.#detach(member, reason === 'kicked' ? CloseCode.KICKED : CloseCode.NORMAL, reason);
    room.members.delete(participantId);
    if (room.memberByUser.get(userId) === member) room.memberByUser.delete(userId);
    const record = room.sessions.get(member.sessionId);
    if (record) record.leftAt = Date.now();
    if (reason === 'kicked') room.sessions.delete(member.sessionId);
    try {
      await this.#media?.participantLeft(room.id, participantId);
    } catch (error) {
      this.#log.warn({ err: error, roomId: room.id, participantId }, 'closing media of a leaving participant failed');
    }
    const countBefore = await this.#bus.presence.count(room.id);
    await this.#bus.presence.remove(room.id, participantId);
    if (this.#isPresenceDurable(role, countBefore)) {
      await this.#publishDurable(room.id, 'participant.left', { participantId, reason });
    }
    this.#scheduleCount(room);
    if (room.members.size === 0) this.#scheduleEmptyClose(room);
  }

  /** Large rooms: traders' joins and leaves are not durable; `participant.count` tells. */
  #isPresenceDurable(role: Role, count: number): boolean {
    return role !== 'trader' || count <= this.#config.rooms.largeRoomThreshold;
  }

  #truncateParticipants(presence: PresenceEntry[]): Participant[] {
    const limit = this.#config.rooms.joinParticipantsLimit;
    const strip = ({ nodeId: _nodeId, ...p }: PresenceEntry): Participant => p;
    if (presence.length <= limit) return presence.map(strip);
    const publishersFirst = [...presence].sort((a, b) => rank(a.role) - rank(b.role) || a.joinedAt - b.joinedAt);
    return publishersFirst.slice(0, limit).map(strip);
  }

  // ---------------------------------------------------------------------------------------------
  // Chat, alerts, moderation

  async chat(session: ClientSession, text: string): Promise<{ messageId: string; seq: number }> {
    const { room, member } = this.#membership(session);
    const messageId = randomUUID();
    const seq = await this.#publishDurable(room.id, 'chat.message', {
      messageId,
      from: fromOf(member.participant),
      text,
      ts: Date.now(),
    });
    return { messageId, seq };
  }

  async alert(session: ClientSession, data: AlertPublishData): Promise<{ alertId: string; seq: number }> {
    const { room, member } = this.#membership(session);
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
    const seq = await this.#publishDurable(room.id, 'alert.published', event);
    return { alertId, seq };
  }

  async kick(session: ClientSession, participantId: string): Promise<void> {
    const { room } = this.#membership(session);
    const target = this.#target(room, participantId);
    room.bans.set(target.participant.userId, Date.now() + this.#config.rooms.kickBanMs);
    target.connection?.sendEvent('session.kicked', { reason: 'kicked by a moderator' });
    await this.#remove(room, target, 'kicked');
  }

  async mute(session: ClientSession, participantId: string): Promise<void> {
    const { room } = this.#membership(session);
    const target = this.#target(room, participantId);
    await this.#media?.mute(room.id, target.participant.participantId);
  }

  /** `moderation.setRole`: recorded for the user, so a rejoin or a refreshed token does not undo it. */
  async setRole(session: ClientSession, participantId: string, role: Role): Promise<void> {
    const { room } = this.#membership(session);
    const target = this.#target(room, participantId);
    room.roleOverrides.set(target.participant.userId, role);
    await this.#applyRole(room, target, role);
  }

  /**
   * `session.refresh` brought a token with another role: it applies like `moderation.setRole`,
   * unless a moderator set this user's role in the room (the moderator wins).
   */
  async tokenRoleChanged(session: ClientSession): Promise<void> {
    const membership = session.membership;
    const room = membership && this.#rooms.get(membership.room);
    if (!membership || !room || room.roleOverrides.has(session.userId)) return;
    await this.#applyRole(room, membership.member, session.tokenRole);
  }

  /** Gives a member a role: `participant.updated` for everyone; a demoted publisher's producers close. */
  async #applyRole(room: Room, target: Member, role: Role): Promise<void> {
    const participant = target.participant;
    const previous = participant.role;
    if (previous === role) return;
    participant.role = role;
    await this.#bus.presence.set(room.id, { ...participant, nodeId: this.#config.nodeId });
    await this.#publishDurable(room.id, 'participant.updated', { participant: { ...participant } });
    if (PUBLISHING_ROLES.includes(previous) && !PUBLISHING_ROLES.includes(role)) {
      await this.#media?.publishingRevoked(room.id, participant.participantId);
    }
  }

  #membership(session: ClientSession): { room: Room; member: Member } {
    const membership = session.membership;
    const room = membership && this.#rooms.get(membership.room);
    if (!membership || !room) throw new ProtocolError('NOT_JOINED', 'join the room first');
    return { room, member: membership.member };
  }

  #target(room: Room, participantId: string): Member {
    const target = room.members.get(participantId);
    if (!target) throw new ProtocolError('NOT_FOUND', `no participant ${participantId} in this room`);
    return target;
  }

  // ---------------------------------------------------------------------------------------------
  // Events

  /** Publishes a durable room event; resolves with its `seq`. */
  async publishDurable<E extends DurableEventName>(roomId: string, event: E, data: EventData<E>): Promise<number> {
    return this.#publishDurable(roomId, event, data);
  }

  async #publishDurable(roomId: string, event: string, data: unknown): Promise<number> {
    const published = await this.#bus.publishDurable(roomId, event, data);
    this.#metrics.durableEvents.inc();
    this.#rooms.get(roomId)?.countEvent();
    return published.seq as number;
  }

  /** Sends an ephemeral event to every participant of a room. */
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

  /** The role a participant holds now (undefined when it is not in the room on this node). */
  roleOf(roomId: string, participantId: string): Role | undefined {
    return this.#rooms.get(roomId)?.members.get(participantId)?.participant.role;
  }

  #onBusEvent(room: Room, event: BusEvent): void {
    if (room.pendingRepair) {
      room.pendingRepair.push({ seq: event.seq, frame: event.frame });
      return;
    }
    if (event.seq !== undefined) {
      if (event.seq <= room.deliveredSeq) return;
      if (event.seq > room.deliveredSeq + 1) {
        room.pendingRepair = [{ seq: event.seq, frame: event.frame }];
        this.#startRepair(room);
        return;
      }
      room.deliveredSeq = event.seq;
    }
    this.#fanOut(room, event.seq, event.frame);
  }

  #startRepair(room: Room): void {
    room.repairTimer = undefined;
    this.#repair(room).catch((error: unknown) => {
      this.#log.error({ err: error, roomId: room.id }, 'delivering after a seq gap repair failed');
    });
  }

  /**
   * Fills a seq gap from the log, then delivers what queued meanwhile. A failed read keeps the
   * queue (new frames join it) and retries with backoff, so nothing is lost and order holds.
   */
  async #repair(room: Room): Promise<void> {
    let missing: BusEvent[] | null;
    try {
      missing = await this.#bus.readAfter(room.id, room.deliveredSeq);
    } catch (error) {
      if (room.closed) return;
      const retryInMs = Math.min(REPAIR_RETRY_MAX_MS, REPAIR_RETRY_FIRST_MS * 2 ** room.repairFailures++);
      this.#log.error({ err: error, roomId: room.id, retryInMs }, 'seq gap repair failed; retrying');
      room.repairTimer = setTimeout(() => this.#startRepair(room), retryInMs);
      return;
    }
    room.repairFailures = 0;
    if (missing === null) this.#log.warn({ roomId: room.id }, 'events of a seq gap left the log before repair');
    const queued = room.pendingRepair ?? [];
    room.pendingRepair = undefined;
    for (const e of [...(missing ?? []), ...queued]) {
      if (e.seq !== undefined) {
        if (e.seq <= room.deliveredSeq) continue;
        room.deliveredSeq = e.seq;
      }
      this.#fanOut(room, e.seq, e.frame);
    }
  }

  /** Encode once, write to every connected socket of the room. */
  #fanOut(room: Room, seq: number | undefined, frame: string): void {
    const payload = Buffer.from(frame);
    let deliveries = 0;
    for (const member of room.members.values()) {
      const connection = member.connection;
      if (!connection) continue;
      if (seq !== undefined) {
        if (seq <= member.cursor) continue;
        member.cursor = seq;
      }
      connection.sendFrame(payload);
      deliveries++;
    }
    this.#metrics.fanoutDeliveries.inc(deliveries);
  }

  #scheduleCount(room: Room): void {
    const interval = this.#config.rooms.participantCountIntervalMs;
    const large = room.members.size > this.#config.rooms.largeRoomThreshold;
    if (!large && room.lastCountSent < 0) return;
    if (room.countTimer) return;
    const delay = Math.max(0, room.lastCountSentAt + interval - Date.now());
    room.countTimer = setTimeout(() => {
      room.countTimer = undefined;
      if (room.closed) return;
      this.#bus.presence
        .count(room.id)
        .then((count) => {
          if (count === room.lastCountSent) return;
          room.lastCountSent = count;
          room.lastCountSentAt = Date.now();
          return this.#bus.publishEphemeral(room.id, 'participant.count', { count });
        })
        .catch((error: unknown) => {
          this.#log.warn({ err: error, roomId: room.id }, 'sending participant.count failed');
        });
    }, delay);
    room.countTimer.unref();
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
        room.deliveredSeq = await this.#bus.lastSeq(roomId);
        this.#rooms.set(roomId, room);
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
      if (room.members.size === 0) void this.#dispose(room);
    }, this.#config.rooms.emptyGraceMs);
    room.emptyTimer.unref();
  }

  async #dispose(room: Room): Promise<void> {
    if (room.closed) return;
    room.closed = true;
    clearTimeout(room.emptyTimer);
    clearTimeout(room.countTimer);
    clearTimeout(room.repairTimer);
    room.unsubscribe?.();
    this.#rooms.delete(room.id);
    await this.#media?.roomClosed(room.id).catch((error: unknown) => {
      this.#log.warn({ err: error, roomId: room.id }, 'closing room media failed');
    });
    await this.#bus.dropRoom(room.id);
    this.#log.info({ roomId: room.id }, 'room closed');
  }

  /** Admin: closes a room, telling every participant (closed with 4003). */
  async closeRoom(roomId: string): Promise<boolean> {
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

  summaries(): RoomSummary[] {
    return [...this.#rooms.values()].map((room) => this.#summary(room));
  }

  summary(roomId: string): (RoomSummary & { participantList: Participant[] }) | undefined {
    const room = this.#rooms.get(roomId);
    if (!room) return undefined;
    return { ...this.#summary(room), participantList: [...room.members.values()].map((m) => ({ ...m.participant })) };
  }

  #summary(room: Room): RoomSummary {
    const byRole: Record<Role, number> = { presenter: 0, moderator: 0, trader: 0 };
    let connected = 0;
    for (const member of room.members.values()) {
      byRole[member.participant.role]++;
      if (member.connection) connected++;
    }
    return {
      roomId: room.id,
      createdAt: room.createdAt,
      participants: room.members.size,
      participantsByRole: byRole,
      connected,
      publishers: [...(this.#media?.publisherIds(room.id) ?? [])],
      eventsPerMinute: room.eventsPerMinute(),
      lastSeq: room.deliveredSeq,
    };
  }

  /** Closes every room (node shutdown); sockets are closed by the gateway. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const room of [...this.#rooms.values()]) {
      for (const member of room.members.values()) if (member.graceTimer) clearTimeout(member.graceTimer);
      await this.#dispose(room);
    }
  }
}

function rank(role: Role): number {
  return role === 'presenter' ? 0 : role === 'moderator' ? 1 : 2;
}

function fromOf(p: Participant): EventData<'chat.message'>['from'] {
  return { participantId: p.participantId, userId: p.userId, name: p.name, role: p.role };
}

/** The token's name when it has one, else the name asked for, else the user id; never hidden characters. */
function displayNameOf(session: ClientSession, requested: string | undefined): string {
  for (const candidate of [session.tokenName, requested]) {
    const name = candidate === undefined ? '' : cleanDisplayName(candidate);
    if (name !== '') return name;
  }
  return session.userId;
}
