/**
 * Joining a room: a fresh join (a new participant, `participant.joined`), or a resume of a
 * session on any node — the durable events the session missed are replayed (never from before
 * it first joined) and the participant is taken over from the node it was on. Either way the
 * user's other participants give way (`4009`, `participant.left {reason: replaced}`).
 */
import { randomUUID } from 'node:crypto';
import type { BusEvent, PresenceEntry, ResumeRecord } from '../bus/room-bus.js';
import { CloseCode, ProtocolError } from '../errors.js';
import { cleanDisplayName, type Participant, type Role } from '../protocol/common.js';
import type { JoinData, JoinResult } from '../protocol/room.js';
import type { Member, Room } from './room.js';
import type { RoomConnection } from './room-connection.js';
import type { RoomMembers } from './room-members.js';
import type { RoomLifecycle } from './room-lifecycle.js';
import { admit, type Admission, type RoomAccess } from './room-access.js';
import { isGone, onOwner, presenceOf, toRoomError, withoutNode, type RoomContext } from './room-context.js';

/** How long a join waits for its own `participant.joined` to come back from the bus. */
const OWN_EVENT_TIMEOUT_MS = 5000;
/** How long a resume waits for this node to deliver what the session's previous node had. */
const CATCH_UP_TIMEOUT_MS = 2000;

/** Joins and resumes: `room.join` as the handlers call it. */
export class RoomJoins {
  readonly #ctx: RoomContext;
  readonly #members: RoomMembers;
  readonly #lifecycle: RoomLifecycle;
  readonly #access: RoomAccess | undefined;

  /** `access`: the backend's access check, when a backend decides who joins. */
  constructor(ctx: RoomContext, members: RoomMembers, lifecycle: RoomLifecycle, access?: RoomAccess) {
    this.#ctx = ctx;
    this.#members = members;
    this.#lifecycle = lifecycle;
    this.#access = access;
  }

  /** `room.join`: resumes the session it names when it can, else joins afresh. */
  async join(connection: RoomConnection, data: JoinData): Promise<JoinResult> {
    if (this.#members.find(connection) !== undefined) throw alreadyJoined();
    // The backend's word comes first: a refused join opens no room.
    const admission = await admit(this.#access, connection, this.#ctx.config.rooms.maxParticipants);
    const room = await this.#lifecycle.open(connection.roomId);
    if ((await this.#ctx.bus.state.getBan(room.id, connection.userId)) !== undefined) {
      throw new ProtocolError('FORBIDDEN', 'you were removed from this room');
    }
    if (connection.closed) throw connectionClosed();

    const resumed = data.resume
      ? await this.#tryResume(room, connection, data.resume, data.displayName, admission.role)
      : undefined;
    // A successful resume has attached this connection; anything else must still be unattached.
    if (!resumed && this.#members.find(connection) !== undefined) throw alreadyJoined();
    const member = resumed ?? (await this.#joinFresh(room, connection, data.displayName, admission));
    const { participantId, userId } = member.participant;
    const presence = await this.#ctx.bus.presence.list(room.id);
    // The user's other participants elsewhere give way: older ones to a fresh join, all to a resume.
    await this.#replaceElsewhere(room, member, presence, resumed === undefined);
    const visible = presence.filter((p) => p.userId !== userId || p.participantId === participantId);
    const media = this.#ctx.media();
    // A join still succeeds without media (no live worker right now): chat and alerts work.
    const routerRtpCapabilities = media
      ? await media.routerRtpCapabilities(room.id).catch((error: unknown) => {
          this.#ctx.log.warn(
            { err: error, roomId: room.id },
            'no router for a joining participant; joining without media',
          );
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
   * its events are no longer all retained or exceed the replay bounds. `baseRole`: the role a
   * rejoin starts from unless a moderator set another (the backend's, else the token's).
   */
  async #tryResume(
    room: Room,
    connection: RoomConnection,
    resume: NonNullable<JoinData['resume']>,
    displayName: string | undefined,
    baseRole: Role,
  ): Promise<Member | undefined> {
    const epoch = room.epoch;
    if (epoch === undefined || (resume.epoch !== undefined && resume.epoch !== epoch)) return undefined;
    const record = await this.#ctx.bus.state.getSession(room.id, resume.sessionId);
    if (!record || record.userId !== connection.userId) return undefined;
    const fromSeq = Math.max(resume.lastSeq, record.joinSeq);
    // The node the session was on may be a little ahead of this one: let this one catch up.
    if (fromSeq > room.deliveredSeq && resume.epoch === epoch) {
      await room.delivered(epoch, fromSeq, CATCH_UP_TIMEOUT_MS);
    }
    if (fromSeq > room.deliveredSeq || room.deliveredSeq - fromSeq > this.#ctx.config.rooms.resumeMaxReplayEvents) {
      return undefined;
    }
    let replay = await this.#readReplay(room, epoch, fromSeq, []);
    if (!replay || !this.#withinReplayBounds(replay)) return undefined;

    // Where the participant is now: here, on another node (connected or in its grace), or gone.
    const here = room.members.has(record.participantId);
    const takenOver = here ? undefined : await this.#takeOver(room, resume.sessionId, record);
    // A participant present nowhere rejoins with the role a moderator gave the user, or the token's.
    const role = here || takenOver ? undefined : await this.#ctx.bus.state.getRole(room.id, connection.userId);
    replay = await this.#readReplay(room, epoch, fromSeq, replay);
    if (
      !replay ||
      !this.#withinReplayBounds(replay) ||
      connection.closed ||
      this.#members.find(connection) !== undefined
    ) {
      // Its node let go of a participant taken over: nobody else will say it left.
      if (takenOver) {
        const reason = connection.closed ? 'disconnected' : 'replaced';
        await this.#members.announceLeave(room.id, takenOver, reason);
      }
      return undefined;
    }

    // From here to the attach, nothing awaits: no event can slip between replay and live.
    let member = room.members.get(record.participantId);
    const rejoined = !member && !takenOver;
    let replaced: Member | undefined;
    if (!member) {
      replaced = room.memberByUser.get(connection.userId);
      if (replaced) this.#members.replace(replaced);
      const participant: Participant = takenOver
        ? withoutNode(takenOver)
        : {
            participantId: record.participantId,
            userId: record.userId,
            name: displayNameOf(connection, displayName),
            role: role ?? baseRole,
            joinedAt: record.joinedAt,
          };
      member = this.#members.create(room, participant, resume.sessionId, { ...record, leftAt: undefined });
    } else {
      this.#members.detach(member, CloseCode.REPLACED, 'replaced by a resumed session');
      member.record = { ...record, leftAt: undefined };
    }
    for (const event of replay) connection.sendFrame(event.frame);
    this.#members.attach(room, member, connection, Math.max(fromSeq, room.deliveredSeq));

    // The user's newer participant here gives way to the resumed one, like a fresh join replaces it.
    if (replaced) await this.#members.remove(room, replaced, 'replaced');
    if (rejoined) await this.#members.announceJoin(room, member);
    else if (takenOver) await this.#ctx.bus.presence.set(room.id, presenceOf(this.#ctx, member));
    await this.#members.saveRecord(room, member);
    return member;
  }

  /**
   * Asks the node that holds the participant to let go of it (4009, no `participant.left`).
   * Resolves its presence entry, or undefined when it is present nowhere (it left: the resume
   * rejoins it).
   */
  async #takeOver(room: Room, sessionId: string, record: ResumeRecord): Promise<PresenceEntry | undefined> {
    const entry = (await this.#ctx.bus.presence.list(room.id)).find((p) => p.participantId === record.participantId);
    if (!entry) return undefined;
    if (entry.nodeId !== this.#ctx.nodeId && this.#ctx.cluster) {
      const params = { roomId: room.id, participantId: entry.participantId };
      try {
        await this.#ctx.cluster.rpc.call(entry.nodeId, 'room.handOver', params);
      } catch (error) {
        // Gone there already, or the node is dead: either way the participant is free to take.
        if (!isGone(error)) throw toRoomError(error);
      }
      // Its grace may have ended there meanwhile (then it left, and the resume rejoins it).
      if ((await this.#ctx.bus.state.getSession(room.id, sessionId))?.leftAt !== undefined) return undefined;
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
      const more = await this.#ctx.bus.readAfter(room.id, last, epoch);
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
    const { resumeMaxReplayEvents, resumeMaxReplayBytes } = this.#ctx.config.rooms;
    if (replay.length > resumeMaxReplayEvents) return false;
    const maxBytes = Math.min(resumeMaxReplayBytes, this.#ctx.config.slowConsumer.maxBufferedBytes);
    let bytes = 0;
    for (const event of replay) {
      bytes += Buffer.byteLength(event.frame);
      if (bytes > maxBytes) return false;
    }
    return true;
  }

  async #joinFresh(
    room: Room,
    connection: RoomConnection,
    displayName: string | undefined,
    admission: Admission,
  ): Promise<Member> {
    const existing = room.memberByUser.get(connection.userId);
    // Presence is cluster-wide: the limit holds across every node of the room.
    const count = await this.#ctx.bus.presence.count(room.id);
    if (count - (existing ? 1 : 0) >= admission.maxParticipants) {
      throw new ProtocolError('ROOM_FULL', `the room is full (${admission.maxParticipants} participants)`);
    }
    const role = (await this.#ctx.bus.state.getRole(room.id, connection.userId)) ?? admission.role;
    if (connection.closed || this.#members.find(connection) !== undefined) throw connectionClosed();
    const current = room.memberByUser.get(connection.userId);
    if (current) await this.#members.remove(room, this.#members.replace(current), 'replaced');
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
    const member = this.#members.create(room, participant, randomUUID(), record);
    try {
      const joined = await this.#members.announceJoin(room, member);
      // The join result covers the joiner's own participant.joined: wait until it is delivered here.
      if (joined) await room.delivered(joined.epoch ?? '', joined.seq ?? 0, OWN_EVENT_TIMEOUT_MS);
    } catch (error) {
      this.#members.forget(room, member);
      throw error;
    }
    if (connection.closed) {
      await this.#members.remove(room, member, 'disconnected');
      throw connectionClosed();
    }
    // The join result covers everything up to here; a resume replays only what comes after.
    member.record = { ...record, joinSeq: room.deliveredSeq };
    this.#members.attach(room, member, connection, room.deliveredSeq);
    await this.#members.saveRecord(room, member);
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
        await this.#members.remove(room, this.#members.replace(local), 'replaced');
        continue;
      }
      try {
        await onOwner(
          this.#ctx,
          room.id,
          entry,
          (rpc, target) => rpc.call(entry.nodeId, 'room.replace', target),
          () => this.#members.removeOrphan(room.id, entry, 'replaced'),
        );
      } catch (error) {
        this.#ctx.log.warn({ err: error, roomId: room.id, nodeId: entry.nodeId }, 'replacing an older session failed');
      }
    }
  }

  #truncateParticipants(presence: PresenceEntry[]): Participant[] {
    const limit = this.#ctx.config.rooms.joinParticipantsLimit;
    if (presence.length <= limit) return presence.map(withoutNode);
    const publishersFirst = [...presence].sort((a, b) => rank(a.role) - rank(b.role) || a.joinedAt - b.joinedAt);
    return publishersFirst.slice(0, limit).map(withoutNode);
  }
}

function alreadyJoined(): ProtocolError {
  return new ProtocolError('ALREADY_JOINED', 'this connection already joined the room');
}

function connectionClosed(): ProtocolError {
  return new ProtocolError('UNAVAILABLE', 'connection closed');
}

/** Join order across nodes: earlier `joinedAt` first, the participant id breaking ties. */
function isOlder(a: Participant, b: Participant): boolean {
  return a.joinedAt < b.joinedAt || (a.joinedAt === b.joinedAt && a.participantId < b.participantId);
}

function rank(role: Role): number {
  return role === 'presenter' ? 0 : role === 'moderator' ? 1 : 2;
}

/** The token's name when it has one, else the name asked for, else the user id; never hidden characters. */
function displayNameOf(connection: RoomConnection, requested: string | undefined): string {
  for (const candidate of [connection.tokenName, requested]) {
    const name = candidate === undefined ? '' : cleanDisplayName(candidate);
    if (name !== '') return name;
  }
  return connection.userId;
}
