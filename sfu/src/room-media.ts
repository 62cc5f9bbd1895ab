import type { types } from 'mediasoup';
import type { Logger } from 'pino';

import { ActiveSpeaker } from './active-speaker.js';
import { SfuError } from './errors.js';
import type {
  ConsumeOptions,
  ConsumerInfo,
  PipeEnd,
  PipeOffer,
  PipeOrigin,
  PipeSummary,
  PlainTransportInfo,
  PlainTransportOptions,
  PlainTransportRemote,
  ProduceOptions,
  ProducerCloseReason,
  ProducerSummary,
  RoomMediaCounts,
  RoomMediaEvents,
  TransportDirection,
  WebRtcTransportInfo,
} from './media-types.js';
import { NodePipes } from './node-pipes.js';
import { consumerInfo, RoomConsumers } from './room-consumers.js';
import { RoomParticipants } from './room-participants.js';
import { assertSourceCarries, RoomProducers, type RoomProducer } from './room-producers.js';
import { RoomRouters, type RoomRouter, type RouterLossReason } from './room-routers.js';
import { collectRoomMediaHealth, type MediaHealthOptions, type RoomMediaHealth } from './room-media-health.js';
import type { RoomScope } from './room-scope.js';
import { RoomTransports } from './room-transports.js';
import { SafeEmitter } from './safe-emitter.js';
import type { WorkerPool } from './worker-pool.js';

/** Options of {@link RoomMedia}. */
export type RoomMediaOptions = {
  roomId: string;
  pool: WorkerPool;
  /** Soft budget of consumers per router before the room grows a router on another worker. */
  consumersPerRouter: number;
  maxTransportsPerParticipant: number;
  maxProducersPerParticipant: number;
  maxConsumersPerParticipant: number;
  /** Initial outgoing bitrate estimate of WebRTC transports, in bps. */
  initialAvailableOutgoingBitrate: number;
  logger: Logger;
};

/**
 * One room's media on this node: its routers, and the participants' transports, producers and
 * consumers, each owned by a participant id. Each concern has its own part, which this class
 * ties together and exposes by participant and id:
 *
 * - {@link RoomRouters}: the routers on the pool's workers, the consumer budget and the pipes;
 * - {@link RoomTransports}, {@link RoomProducers}, {@link RoomConsumers}: the clients' objects,
 *   with the ownership checks and the per-participant limits of {@link RoomParticipants};
 * - {@link ActiveSpeaker}: the dominant speaker.
 *
 * When a worker dies, everything on its routers is reported closed (`worker-died`), producers
 * first; routers on other workers keep working. The next request that needs a router creates one
 * on a live worker. Every producer, consumer and transport that goes away is reported exactly
 * once through the events, whatever the cause.
 */
export class RoomMedia extends SafeEmitter<RoomMediaEvents> {
  readonly roomId: string;
  #closed = false;
  #silent = false;
  #participants: RoomParticipants;
  #routers: RoomRouters;
  #transports: RoomTransports;
  #producers: RoomProducers;
  #consumers: RoomConsumers;
  #pipes: NodePipes;

  constructor(options: RoomMediaOptions) {
    super((eventName, error) => options.logger.error({ err: error, eventName }, 'room media listener threw'));
    this.roomId = options.roomId;
    const scope = this.#scope(options.logger);
    this.#participants = new RoomParticipants({
      transports: options.maxTransportsPerParticipant,
      producers: options.maxProducersPerParticipant,
      consumers: options.maxConsumersPerParticipant,
    });
    const producers = (): ReadonlyMap<string, RoomProducer> => this.#producers.all;
    this.#routers = new RoomRouters({
      scope,
      pool: options.pool,
      consumersPerRouter: options.consumersPerRouter,
      producers,
      onRouterLost: (router, reason) => this.#routerLost(router, reason),
      onPrimaryLost: () => speaker.primaryLost(),
    });
    const speaker = new ActiveSpeaker({ scope, routers: this.#routers, producers });
    const base = { scope, participants: this.#participants, routers: this.#routers };
    this.#consumers = new RoomConsumers({
      ...base,
      onConsumerGone: (producerId) => this.#pipes.consumerGone(producerId),
    });
    this.#producers = new RoomProducers({ ...base, speaker, consumers: this.#consumers });
    this.#pipes = new NodePipes({ scope, pool: options.pool, routers: this.#routers, producers: this.#producers });
    this.#transports = new RoomTransports({
      ...base,
      pool: options.pool,
      producers: this.#producers,
      consumers: this.#consumers,
      initialAvailableOutgoingBitrate: options.initialAvailableOutgoingBitrate,
    });
  }

  /** Whether {@link close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Number of media objects of the room's clients. */
  counts(): RoomMediaCounts {
    return {
      routers: this.#routers.all.length,
      transports: this.#transports.size,
      producers: this.#producers.list().length,
      consumers: this.#consumers.size,
    };
  }

  /** Worker index of each router of the room, primary first. */
  routerWorkers(): number[] {
    return this.#routers.all.map((r) => r.pooled.index);
  }

  /** RTP capabilities of the room's routers (all identical); creates the primary router if needed. */
  async rtpCapabilities(): Promise<types.RtpCapabilities> {
    this.#assertOpen();
    return (await this.#routers.primary()).router.rtpCapabilities;
  }

  /** Creates a WebRTC transport through the router's worker's WebRtcServer. */
  createWebRtcTransport(participantId: string, direction: TransportDirection): Promise<WebRtcTransportInfo> {
    return this.#transports.createWebRtc(participantId, direction);
  }

  /** Creates a plain RTP transport (encoder ingest, recording taps). */
  createPlainTransport(participantId: string, options: PlainTransportOptions): Promise<PlainTransportInfo> {
    return this.#transports.createPlain(participantId, options);
  }

  /** Gives a WebRTC transport the client's DTLS parameters. */
  async connectWebRtcTransport(
    participantId: string,
    transportId: string,
    dtlsParameters: types.DtlsParameters,
  ): Promise<void> {
    return this.#transports.connectWebRtc(participantId, transportId, dtlsParameters);
  }

  /** Tells a plain transport where the remote end is (not needed with `comedia`). */
  async connectPlainTransport(participantId: string, remote: PlainTransportRemote): Promise<void> {
    return this.#transports.connectPlain(participantId, remote);
  }

  /** Restarts ICE of a WebRTC transport; returns its new ICE parameters. */
  async restartIce(participantId: string, transportId: string): Promise<types.IceParameters> {
    return this.#transports.restartIce(participantId, transportId);
  }

  /** Creates a producer on a send transport and pipes it into every other router of the room. */
  async produce(participantId: string, options: ProduceOptions): Promise<{ producerId: string }> {
    assertSourceCarries(options.source, options.kind);
    const transport = this.#transports.owned(participantId, options.transportId, 'send');
    const producer = await this.#producers.produce(participantId, transport, options);
    return { producerId: producer.id };
  }

  /**
   * A paused consumer of a room producer on a recv transport, piping the producer into the
   * transport's router first when needed. A producer is consumed at most once per transport: a
   * second consume answers the existing consumer (see {@link RoomConsumers}).
   */
  async consume(participantId: string, options: ConsumeOptions, origin?: PipeOrigin): Promise<ConsumerInfo> {
    const transport = this.#transports.owned(participantId, options.transportId, 'recv');
    if (!origin || this.#producers.all.has(options.producerId)) {
      const producer = this.#producers.get(options.producerId);
      return consumerInfo(await this.#consumers.consume(participantId, transport, producer, options.rtpCapabilities));
    }
    // Published on another node: piped in once, the pipe held while this consumer is created.
    const release = this.#pipes.hold(options.producerId);
    try {
      const producer = await this.#pipes.pipeIn(options.producerId, origin);
      return consumerInfo(await this.#consumers.consume(participantId, transport, producer, options.rtpCapabilities));
    } finally {
      release();
    }
  }

  /** Whether the room knows the producer now (published here, or piped in). */
  hasProducer(producerId: string): boolean {
    return this.#producers.all.has(producerId);
  }

  /** Another node asks for a producer published here: see {@link NodePipes.pipeOut}. */
  pipeOut(producerId: string, nodeId: string, end: PipeEnd): Promise<PipeOffer> {
    return this.#pipes.pipeOut(producerId, nodeId, end);
  }

  /** Another node no longer wants a producer piped out to it. */
  closePipeOut(producerId: string, nodeId: string): void {
    this.#pipes.closeOut(producerId, nodeId);
  }

  /** The origin of a piped-in producer closed it, or went away. */
  closePipeIn(producerId: string, reason: 'origin-closed' | 'origin-lost'): void {
    this.#pipes.closeIn(producerId, reason);
  }

  /** The origin of a piped-in producer paused or resumed it. */
  setPipeInPaused(producerId: string, paused: boolean): Promise<void> {
    return this.#pipes.setInPaused(producerId, paused);
  }

  /** Node `nodeId` went away: every pipe of the room with it closes. */
  nodeLost(nodeId: string): void {
    this.#pipes.nodeLost(nodeId);
  }

  /** The room's pipes with other nodes. */
  pipes(): PipeSummary[] {
    return this.#pipes.list();
  }

  /** Stats requests of the room's pipe transports between nodes, with their direction. */
  pipeStats(): ReturnType<NodePipes['stats']> {
    return this.#pipes.stats();
  }

  /** Resumes a consumer (consumers start paused). */
  async resumeConsumer(participantId: string, consumerId: string): Promise<void> {
    return this.#consumers.resume(participantId, consumerId);
  }

  /** Sets the preferred simulcast/SVC layers of a consumer. */
  async setConsumerLayers(
    participantId: string,
    consumerId: string,
    spatialLayer: number,
    temporalLayer?: number,
  ): Promise<void> {
    return this.#consumers.setLayers(participantId, consumerId, spatialLayer, temporalLayer);
  }

  /** Pauses a producer (its owner's, or anyone's when `asModerator`). */
  async pauseProducer(participantId: string, producerId: string, asModerator = false): Promise<void> {
    return this.#producers.pause(this.#producers.controlled(participantId, producerId, asModerator));
  }

  /** Resumes a producer (its owner's, or anyone's when `asModerator`). */
  async resumeProducer(participantId: string, producerId: string, asModerator = false): Promise<void> {
    return this.#producers.resume(this.#producers.controlled(participantId, producerId, asModerator));
  }

  /** Closes a producer (its owner's, or anyone's when `asModerator`); its consumers close too. */
  closeProducer(participantId: string, producerId: string, asModerator = false): void {
    this.#producers.remove(this.#producers.controlled(participantId, producerId, asModerator), 'closed');
  }

  /** Pauses every unpaused producer of a participant (moderation mute); returns the ids it paused. */
  pauseParticipantProducers(participantId: string): Promise<string[]> {
    return this.#producers.pauseParticipant(participantId);
  }

  /** Closes every producer of a participant (role revoked); returns their ids. */
  closeParticipantProducers(participantId: string, reason: ProducerCloseReason): string[] {
    return this.#producers.closeParticipant(participantId, reason);
  }

  /** Closes every transport of a participant, and with them its producers and consumers. */
  closeParticipant(participantId: string): void {
    for (const transport of [...(this.#participants.find(participantId)?.transports ?? [])]) {
      this.#transports.remove(transport, 'participant-left');
    }
    this.#participants.left(participantId);
  }

  /** The room's producers. */
  listProducers(): ProducerSummary[] {
    return this.#producers.list();
  }

  /** The room's producers and consumers with their measured bitrate and loss (admin pages). */
  mediaHealth(timeoutMs: number, options?: MediaHealthOptions): Promise<RoomMediaHealth> {
    return collectRoomMediaHealth(this.#producers.all.values(), timeoutMs, options);
  }

  /** Stats requests of every client transport of the room, one promise each. */
  transportStats(): Promise<types.BaseTransportStats[]>[] {
    return this.#transports.stats();
  }

  /**
   * Closes the room's routers and everything on them. Events report each closed object with
   * reason `room-closed`, unless `silent` (service shutdown). Safe to call twice.
   */
  close({ silent = false }: { silent?: boolean } = {}): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#silent = silent;
    for (const router of [...this.#routers.all]) this.#routers.remove(router, 'room-closed');
    this.removeAllListeners();
  }

  #routerLost(router: RoomRouter, reason: RouterLossReason): void {
    for (const transport of [...router.transports]) this.#transports.remove(transport, reason);
  }

  #assertOpen(): void {
    if (this.#closed) throw new SfuError('NOT_FOUND', `room ${this.roomId} closed`);
  }

  /** What the room's parts share with it. */
  #scope(logger: Logger): RoomScope {
    const isClosed = (): boolean => this.#closed;
    return {
      roomId: this.roomId,
      logger,
      get closed() {
        return isClosed();
      },
      assertOpen: () => this.#assertOpen(),
      emit: (eventName, ...args) => {
        if (!this.#silent) this.safeEmit(eventName, ...args);
      },
    };
  }
}
