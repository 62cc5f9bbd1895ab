/**
 * The signaling side of media: checks who may do what, calls the SFU's {@link MediaService},
 * maps its errors onto protocol errors and turns its events into room notifications.
 */
import { isIP, type BlockList } from 'node:net';
import type { Logger } from 'pino';
import { SfuError, type MediaService, type PipeMetrics } from '../../../sfu/src/index.js';
import type { RedisTarget } from '../bus/redis-connections.js';
import { ProtocolError } from '../errors.js';
import { blockListOf, listed } from '../net/cidr.js';
import { PUBLISHING_ROLES, type Role } from '../protocol/common.js';
import type { RoomConnection } from './room-connection.js';
import type { RoomService } from './room-service.js';
import type { ProducerInfo, RoomMediaHooks } from './media-hooks.js';
import type { DtlsParametersData, MediaHandlers, RtpCapabilitiesData, RtpParametersData } from '../protocol/sfu.js';
import { MediaCluster, type RemoteProducerControl } from './media-cluster.js';
import { ProducerDirectory } from './media-directory.js';
import type { RoomCluster } from './room-rpc.js';

type Direction = 'send' | 'recv';

/** Options of {@link MediaGateway}. */
export interface MediaGatewayOptions {
  /**
   * Where `sfu.connectPlainTransport` may point a plain transport: IP addresses and CIDR ranges
   * (`SFU_PLAIN_ALLOWED_CIDRS`). Unspecified, multicast and broadcast addresses are refused even
   * when listed.
   */
  readonly plainAllowedCidrs: readonly string[];
  /** The node's cluster: producers become room-wide and are piped between nodes. Absent when alone. */
  readonly cluster?: MediaGatewayCluster | undefined;
  /** Whether the node drains now: its producers that go with their participants are `migrating`. */
  readonly draining?: () => boolean;
  /** Where cross-node consumes are measured. */
  readonly pipeMetrics?: PipeMetrics;
}

/** The cluster as media uses it: the room RPC and registry, and the Redis the directory lives in. */
export interface MediaGatewayCluster extends RoomCluster {
  /** This node's process in the registry (`NodeRegistry.instanceId`). */
  readonly instanceId: string;
  readonly target: RedisTarget;
  /** `REDIS_KEY_PREFIX`. */
  readonly keyPrefix: string;
  /** `NODE_TTL_MS`. */
  readonly nodeTtlMs: number;
}

/** Why a producer went, as `producer.removed` tells it (the SFU's reason, or `migrating`). */
type RemovalReason = string;

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
  readonly #cluster: MediaCluster | undefined;
  readonly #draining: () => boolean;
  readonly #pipeMetrics: PipeMetrics | undefined;
  /** The room-wide producers read for the latest join of each room (cluster only), by room id. */
  readonly #joinListing = new Map<string, ProducerInfo[]>();
  /** Announcements of producers removed, under way (a leaving participant's are awaited). */
  readonly #removals = new Set<Promise<void>>();

  constructor(media: MediaService, rooms: RoomService, log: Logger, options: MediaGatewayOptions) {
    this.#media = media;
    this.#rooms = rooms;
    this.#log = log;
    this.#plainAllowed = blockListOf(options.plainAllowedCidrs);
    this.#draining = options.draining ?? (() => false);
    this.#pipeMetrics = options.pipeMetrics;
    const cluster = options.cluster;
    this.#cluster = cluster
      ? new MediaCluster({
          media,
          rpc: cluster.rpc,
          registry: cluster.registry,
          nodeId: cluster.nodeId,
          instanceId: cluster.instanceId,
          directory: new ProducerDirectory({
            target: cluster.target,
            keyPrefix: cluster.keyPrefix,
            connectionName: `trading-room-media-${cluster.nodeId}`,
          }),
          nodeTtlMs: cluster.nodeTtlMs,
          publishRemoved: (roomId, data) => this.#rooms.publishDurable(roomId, 'producer.removed', data),
          control: (control) => this.#controlHere(control),
          log,
        })
      : undefined;
    this.#cluster?.start();
    media.on('producerclosed', ({ roomId, producerId, reason }) => {
      if (!this.#announced.delete(producerId)) return;
      const removal = this.#producerRemoved(roomId, producerId, this.#removalReason(reason));
      this.#removals.add(removal);
      void removal.finally(() => this.#removals.delete(removal));
      this.#background(removal);
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
    const added = { producerId, participantId, kind: data.kind, source: data.source };
    if (this.#cluster) {
      // In the directory before anyone hears of it: a viewer elsewhere finds where to pipe it from.
      try {
        await this.#cluster.announce(roomId, { ...added, paused: false });
      } catch (error) {
        this.#log.warn({ err: error, roomId, producerId }, 'a producer cannot join the room’s list; closing it');
        await sfu(() => this.#media.closeProducer(roomId, participantId, producerId));
        throw new ProtocolError('UNAVAILABLE', 'the room’s producer list cannot be written now');
      }
      // Closed while it was written (its owner left, its worker died): never announced.
      if (!this.#isLocalProducer(roomId, producerId)) {
        await this.#cluster.withdraw(roomId, producerId).catch(() => undefined);
        throw new ProtocolError('UNAVAILABLE', 'the producer closed while it was being created');
      }
    }
    this.#announced.add(producerId);
    await this.#rooms.publishDurable(roomId, 'producer.added', {
      ...added,
      ...(this.#cluster ? { nodeId: this.#cluster.nodeId } : {}),
    });
    return { producerId };
  }

  async consume(
    session: RoomConnection,
    data: { transportId: string; producerId: string; rtpCapabilities: RtpCapabilitiesData },
  ) {
    const { roomId, participantId } = this.#ids(session);
    const started = performance.now();
    const piped = this.#media.hasProducer(roomId, data.producerId);
    // Published on another node: piped from there (once per producer for this whole node).
    const origin =
      this.#cluster && !piped ? await this.#cluster.origin(roomId, data.producerId).catch(() => undefined) : undefined;
    const result = await sfu(() =>
      this.#media.consume(
        roomId,
        participantId,
        {
          transportId: data.transportId,
          producerId: data.producerId,
          rtpCapabilities: data.rtpCapabilities as never,
        },
        origin,
      ),
    );
    if (origin) this.#pipeMetrics?.crossNodeConsume('opened', (performance.now() - started) / 1000);
    else if (piped && !this.#isLocalProducer(roomId, data.producerId)) {
      this.#pipeMetrics?.crossNodeConsume('shared', (performance.now() - started) / 1000);
    }
    return result;
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
    await this.#control(session, producerId, paused ? 'pause' : 'resume');
    return {};
  }

  async closeProducer(session: RoomConnection, producerId: string) {
    await this.#control(session, producerId, 'close');
    return {};
  }

  /** Pauses, resumes or closes a producer: here when published here, else on its node. */
  async #control(session: RoomConnection, producerId: string, action: RemoteProducerControl['action']) {
    const { roomId, participantId } = this.#ids(session);
    const control = { roomId, producerId, participantId, action, asModerator: this.#isModerator(session) };
    if (this.#cluster && !this.#isLocalProducer(roomId, producerId)) {
      const nodeId = await this.#cluster.originNodeOf(roomId, producerId).catch(() => undefined);
      if (nodeId !== undefined && nodeId !== this.#cluster.nodeId) {
        await this.#cluster.controlRemote(nodeId, control);
        return;
      }
    }
    await this.#controlHere(control);
  }

  /** A control of a producer published here (asked by a participant here or on another node). */
  async #controlHere({ roomId, producerId, participantId, action, asModerator }: RemoteProducerControl) {
    const options = { asModerator };
    if (action === 'close') {
      await sfu(() => this.#media.closeProducer(roomId, participantId, producerId, options));
      return;
    }
    const paused = action === 'pause';
    await sfu(() =>
      paused
        ? this.#media.pauseProducer(roomId, participantId, producerId, options)
        : this.#media.resumeProducer(roomId, participantId, producerId, options),
    );
    // Not after its producer.removed, should it have closed meanwhile.
    if (this.#announced.has(producerId)) {
      await this.#cluster?.setPaused(roomId, producerId, paused).catch((error: unknown) => {
        this.#log.warn({ err: error, roomId, producerId }, 'marking a producer paused in the room’s list failed');
      });
      await this.#rooms.publishDurable(roomId, paused ? 'producer.paused' : 'producer.resumed', { producerId });
    }
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

  async routerRtpCapabilities(roomId: string): Promise<unknown> {
    const [capabilities] = await Promise.all([
      this.#media.getRouterRtpCapabilities(roomId),
      this.#readRoomProducers(roomId),
    ]);
    return capabilities;
  }

  listProducers(roomId: string): ProducerInfo[] {
    const here = this.#media.listProducers(roomId);
    const room = this.#joinListing.get(roomId);
    if (!this.#cluster || !room) return here;
    // The room's list as read for this join, with this node's own producers as they are now.
    const nodeId = this.#cluster.nodeId;
    const others = room.filter((p) => p.nodeId !== nodeId);
    return [...here.map((p) => ({ ...p, nodeId })), ...others];
  }

  /** Cluster: reads the room-wide producers for {@link listProducers} (a join asks right after). */
  async #readRoomProducers(roomId: string): Promise<void> {
    if (!this.#cluster) return;
    try {
      const producers = await this.#cluster.producers(roomId);
      this.#joinListing.set(
        roomId,
        producers.map(({ producerId, participantId, kind, source, paused, nodeId }) => ({
          producerId,
          participantId,
          kind,
          source,
          paused,
          nodeId,
        })),
      );
    } catch (error) {
      this.#joinListing.delete(roomId);
      this.#log.warn({ err: error, roomId }, 'the room’s producers cannot be read; listing this node’s only');
    }
  }

  /** Stops the cluster side and closes the SFU (its workers). Safe to call twice. */
  async close(): Promise<void> {
    this.#cluster?.close();
    await this.#media.close();
  }

  publisherIds(roomId: string): Set<string> {
    return new Set(this.#media.listProducers(roomId).map((p) => p.participantId));
  }

  async participantLeft(roomId: string, participantId: string): Promise<void> {
    await this.#media.closeParticipant(roomId, participantId);
    // Its producers' removal is announced before it is said to have left (and before a drain ends).
    await Promise.allSettled([...this.#removals]);
  }

  async publishingRevoked(roomId: string, participantId: string): Promise<void> {
    await this.#media.closeParticipantProducers(roomId, participantId, 'role-revoked');
  }

  async mute(roomId: string, participantId: string): Promise<void> {
    const paused = await this.#media.pauseParticipantProducers(roomId, participantId);
    for (const producerId of paused) {
      if (!this.#announced.has(producerId)) continue;
      await this.#cluster?.setPaused(roomId, producerId, true).catch(() => undefined);
      await this.#rooms.publishDurable(roomId, 'producer.paused', { producerId });
    }
  }

  async roomClosed(roomId: string): Promise<void> {
    this.#joinListing.delete(roomId);
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

  /** Whether the producer is published on this node (not piped in). */
  #isLocalProducer(roomId: string, producerId: string): boolean {
    return this.#media.listProducers(roomId).some((p) => p.producerId === producerId);
  }

  /**
   * `migrating` for a producer that goes with its participant (it left the node, or its transport
   * closed) while the node drains: its participant is moving to another node, where it publishes
   * again. Otherwise the SFU's reason.
   */
  #removalReason(reason: string): RemovalReason {
    const withParticipant = reason === 'participant-left' || reason === 'transport-closed';
    return withParticipant && this.#draining() ? 'migrating' : reason;
  }

  /**
   * An announced producer of this node went: out of the room's list, and `producer.removed` —
   * except when the room itself closed here (nobody is left to tell).
   */
  async #producerRemoved(roomId: string, producerId: string, reason: RemovalReason): Promise<void> {
    await this.#cluster?.withdraw(roomId, producerId);
    if (reason === 'room-closed') return;
    await this.#rooms.publishDurable(roomId, 'producer.removed', { producerId, reason });
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
