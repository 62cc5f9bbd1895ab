/**
 * The signaling side of media: checks who may do what, calls the SFU's {@link MediaService},
 * maps its errors onto protocol errors and turns its events into room notifications.
 */
import { isIP, type BlockList } from 'node:net';
import type { Logger } from 'pino';
import { SfuError, type MediaService } from '../../../sfu/src/index.js';
import { ProtocolError } from '../errors.js';
import { blockListOf, listed } from '../net/cidr.js';
import { PUBLISHING_ROLES, type Role } from '../protocol/common.js';
import type { RoomConnection } from './room-connection.js';
import type { RoomService } from './room-service.js';
import type { ProducerInfo, RoomMediaHooks } from './media-hooks.js';
import type { DtlsParametersData, MediaHandlers, RtpCapabilitiesData, RtpParametersData } from '../protocol/sfu.js';

type Direction = 'send' | 'recv';

/** Options of {@link MediaGateway}. */
export interface MediaGatewayOptions {
  /**
   * Where `sfu.connectPlainTransport` may point a plain transport: IP addresses and CIDR ranges
   * (`SFU_PLAIN_ALLOWED_CIDRS`). Unspecified, multicast and broadcast addresses are refused even
   * when listed.
   */
  readonly plainAllowedCidrs: readonly string[];
}

/**
 * Never a destination of plain RTP: the unspecified addresses (`0.0.0.0/8` is "this network"),
 * multicast and the limited broadcast. IPv4-mapped IPv6 forms match too (BlockList maps them).
 */
const NEVER_PLAIN_DESTINATIONS = blockListOf(['0.0.0.0/8', '::/128', '224.0.0.0/4', 'ff00::/8', '255.255.255.255']);

export class MediaGateway implements RoomMediaHooks, MediaHandlers {
  readonly #media: MediaService;
  readonly #rooms: RoomService;
  readonly #log: Logger;
  readonly #plainAllowed: BlockList;
  /**
   * Producers whose `producer.added` went out. A producer that closes while `produce` is still
   * setting it up (its owner left or was demoted, its worker died) is never announced, and so
   * gets no `producer.removed` either: clients never see a producer that is already gone.
   */
  readonly #announced = new Set<string>();

  constructor(media: MediaService, rooms: RoomService, log: Logger, options: MediaGatewayOptions) {
    this.#media = media;
    this.#rooms = rooms;
    this.#log = log;
    this.#plainAllowed = blockListOf(options.plainAllowedCidrs);
    // Room closure removes everything at once: nobody is left to tell.
    media.on('producerclosed', ({ roomId, producerId, reason }) => {
      if (!this.#announced.delete(producerId) || reason === 'room-closed') return;
      this.#background(this.#rooms.publishDurable(roomId, 'producer.removed', { producerId, reason }));
    });
    media.on('consumerclosed', ({ roomId, participantId, consumerId, reason }) => {
      if (reason === 'room-closed' || reason === 'participant-left') return;
      this.#rooms.sendToParticipant(roomId, participantId, 'consumer.closed', { consumerId, reason });
    });
    media.on('transportclosed', ({ roomId, participantId, transportId, reason }) => {
      if (reason !== 'worker-died') return;
      this.#rooms.sendToParticipant(roomId, participantId, 'transport.closed', { transportId, reason });
    });
    media.on('consumerlayerschanged', ({ roomId, participantId, consumerId, spatialLayer, temporalLayer }) => {
      this.#rooms.sendToParticipant(roomId, participantId, 'consumer.layersChanged', {
        consumerId,
        spatialLayer,
        temporalLayer,
      });
    });
    media.on('activespeaker', ({ roomId, participantId }) => {
      this.#background(this.#rooms.publishEphemeral(roomId, 'activeSpeaker', { participantId }));
    });
  }

  get service(): MediaService {
    return this.#media;
  }

  // ---- sfu.* methods ---------------------------------------------------------------------------

  async createTransport(session: RoomConnection, direction: Direction) {
    if (direction === 'send') this.#requirePublisher(session);
    const { roomId, participantId } = this.#ids(session);
    return sfu(() => this.#media.createWebRtcTransport(roomId, participantId, direction));
  }

  async connectTransport(session: RoomConnection, transportId: string, dtlsParameters: DtlsParametersData) {
    const { roomId, participantId } = this.#ids(session);
    await sfu(() => this.#media.connectTransport(roomId, participantId, transportId, dtlsParameters as never));
    return {};
  }

  async produce(
    session: RoomConnection,
    data: {
      transportId: string;
      kind: 'audio' | 'video';
      rtpParameters: RtpParametersData;
      source: ProducerInfo['source'];
    },
  ) {
    this.#requirePublisher(session);
    const { roomId, participantId } = this.#ids(session);
    const { producerId } = await sfu(() =>
      this.#media.produce(roomId, participantId, {
        transportId: data.transportId,
        kind: data.kind,
        rtpParameters: data.rtpParameters as never,
        source: data.source,
      }),
    );
    // Checked and announced in one go (nothing awaits before the bus numbers the event): a close
    // after this point is announced after producer.added. A demotion while the SFU worked closed
    // only the producers that existed then: this one goes too.
    const live = this.#media.listProducers(roomId).some((p) => p.producerId === producerId);
    if (!this.#mayPublish(roomId, participantId)) {
      if (live) await sfu(() => this.#media.closeProducer(roomId, participantId, producerId));
      throw new ProtocolError('FORBIDDEN', 'the right to publish was revoked while the producer was being created');
    }
    if (!live) throw new ProtocolError('UNAVAILABLE', 'the producer closed while it was being created');
    this.#announced.add(producerId);
    await this.#rooms.publishDurable(roomId, 'producer.added', {
      producerId,
      participantId,
      kind: data.kind,
      source: data.source,
    });
    return { producerId };
  }

  async consume(
    session: RoomConnection,
    data: { transportId: string; producerId: string; rtpCapabilities: RtpCapabilitiesData },
  ) {
    const { roomId, participantId } = this.#ids(session);
    return sfu(() =>
      this.#media.consume(roomId, participantId, {
        transportId: data.transportId,
        producerId: data.producerId,
        rtpCapabilities: data.rtpCapabilities as never,
      }),
    );
  }

  async resumeConsumer(session: RoomConnection, consumerId: string) {
    const { roomId, participantId } = this.#ids(session);
    await sfu(() => this.#media.resumeConsumer(roomId, participantId, consumerId));
    return {};
  }

  pauseProducer(session: RoomConnection, producerId: string) {
    return this.#setProducerPaused(session, producerId, true);
  }

  resumeProducer(session: RoomConnection, producerId: string) {
    return this.#setProducerPaused(session, producerId, false);
  }

  async #setProducerPaused(session: RoomConnection, producerId: string, paused: boolean) {
    const { roomId, participantId } = this.#ids(session);
    const options = { asModerator: this.#isModerator(session) };
    await sfu(() =>
      paused
        ? this.#media.pauseProducer(roomId, participantId, producerId, options)
        : this.#media.resumeProducer(roomId, participantId, producerId, options),
    );
    // Not after its producer.removed, should it have closed meanwhile.
    if (this.#announced.has(producerId)) {
      await this.#rooms.publishDurable(roomId, paused ? 'producer.paused' : 'producer.resumed', { producerId });
    }
    return {};
  }

  async closeProducer(session: RoomConnection, producerId: string) {
    const { roomId, participantId } = this.#ids(session);
    await sfu(() =>
      this.#media.closeProducer(roomId, participantId, producerId, { asModerator: this.#isModerator(session) }),
    );
    return {};
  }

  async setConsumerLayers(session: RoomConnection, consumerId: string, spatialLayer: number, temporalLayer?: number) {
    const { roomId, participantId } = this.#ids(session);
    await sfu(() => this.#media.setConsumerLayers(roomId, participantId, consumerId, spatialLayer, temporalLayer));
    return {};
  }

  async restartIce(session: RoomConnection, transportId: string) {
    const { roomId, participantId } = this.#ids(session);
    return sfu(() => this.#media.restartIce(roomId, participantId, transportId));
  }

  async createPlainTransport(
    session: RoomConnection,
    data: { direction: Direction; comedia?: boolean | undefined; rtcpMux?: boolean | undefined },
  ) {
    if (data.direction === 'send') this.#requirePublisher(session);
    else if (!this.#isModerator(session)) {
      throw new ProtocolError('FORBIDDEN', 'plain recv transports (recording and monitoring taps) are for moderators');
    }
    const { roomId, participantId } = this.#ids(session);
    return sfu(() => this.#media.createPlainTransport(roomId, participantId, data));
  }

  async connectPlainTransport(
    session: RoomConnection,
    data: { transportId: string; ip: string; port: number; rtcpPort?: number | undefined },
  ) {
    const { roomId, participantId } = this.#ids(session);
    this.#checkPlainDestination(data.ip);
    await sfu(() => this.#media.connectPlainTransport(roomId, participantId, data));
    return {};
  }

  // ---- hooks of the room service -----------------------------------------------------------------

  routerRtpCapabilities(roomId: string): Promise<unknown> {
    return this.#media.getRouterRtpCapabilities(roomId);
  }

  listProducers(roomId: string): ProducerInfo[] {
    return this.#media.listProducers(roomId);
  }

  publisherIds(roomId: string): Set<string> {
    return new Set(this.#media.listProducers(roomId).map((p) => p.participantId));
  }

  async participantLeft(roomId: string, participantId: string): Promise<void> {
    await this.#media.closeParticipant(roomId, participantId);
  }

  async publishingRevoked(roomId: string, participantId: string): Promise<void> {
    await this.#media.closeParticipantProducers(roomId, participantId, 'role-revoked');
  }

  async mute(roomId: string, participantId: string): Promise<void> {
    const paused = await this.#media.pauseParticipantProducers(roomId, participantId);
    for (const producerId of paused) {
      if (this.#announced.has(producerId)) await this.#rooms.publishDurable(roomId, 'producer.paused', { producerId });
    }
  }

  async roomClosed(roomId: string): Promise<void> {
    await this.#media.closeRoom(roomId);
  }

  #requirePublisher(session: RoomConnection): void {
    const role = this.#roleOf(session);
    if (!PUBLISHING_ROLES.includes(role)) throw new ProtocolError('FORBIDDEN', `role ${role} may not publish media`);
  }

  /** The participant's current role (the token's until it joins). */
  #roleOf(session: RoomConnection): Role {
    return this.#rooms.participantOf(session)?.role ?? session.tokenRole;
  }

  #isModerator(session: RoomConnection): boolean {
    return this.#roleOf(session) === 'moderator';
  }

  #ids(session: RoomConnection): { roomId: string; participantId: string } {
    const participantId = this.#rooms.participantOf(session)?.participantId;
    if (!participantId) throw new ProtocolError('NOT_JOINED', 'join the room first');
    return { roomId: session.roomId, participantId };
  }

  /** Whether the participant is in the room now with a role that may publish. */
  #mayPublish(roomId: string, participantId: string): boolean {
    const role = this.#rooms.roleOf(roomId, participantId);
    return role !== undefined && PUBLISHING_ROLES.includes(role);
  }

  /** BAD_REQUEST for an address that is never a destination, FORBIDDEN outside the allow-list. */
  #checkPlainDestination(ip: string): void {
    if (isIP(ip) === 0 || listed(NEVER_PLAIN_DESTINATIONS, ip)) {
      throw new ProtocolError('BAD_REQUEST', `${ip} is not a unicast destination`);
    }
    if (!listed(this.#plainAllowed, ip)) {
      throw new ProtocolError('FORBIDDEN', `plain RTP may not be sent to ${ip} from this node`);
    }
  }

  #background(work: Promise<unknown>): void {
    work.catch((error: unknown) => this.#log.error({ err: error }, 'media notification failed'));
  }
}

/** Runs an SFU call, turning its {@link SfuError}s into protocol errors. */
async function sfu<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof SfuError) throw new ProtocolError(error.code, error.message);
    throw error;
  }
}
