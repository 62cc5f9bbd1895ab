import type { types } from 'mediasoup';
import type { Logger } from 'pino';

import { SfuError, toSfuError } from './errors.js';
import { mediaCodecs } from './media-codecs.js';
import type {
  ConsumeOptions,
  ConsumerCloseReason,
  ConsumerInfo,
  MediaSource,
  PlainTransportInfo,
  PlainTransportOptions,
  PlainTransportRemote,
  ProduceOptions,
  ProducerCloseReason,
  ProducerSummary,
  RoomMediaCounts,
  RoomMediaEvents,
  TransportCloseReason,
  TransportDirection,
  WebRtcTransportInfo,
} from './media-types.js';
import { SafeEmitter } from './safe-emitter.js';
import type { PooledWorker, WorkerPool } from './worker-pool.js';

/** Options of {@link RoomMedia}. */
export type RoomMediaOptions = {
  roomId: string;
  pool: WorkerPool;
  /** Soft budget of consumers per router before the room grows a router on another worker. */
  consumersPerRouter: number;
  maxTransportsPerParticipant: number;
  maxProducersPerParticipant: number;
  /** Initial outgoing bitrate estimate of WebRTC transports, in bps. */
  initialAvailableOutgoingBitrate: number;
  logger: Logger;
};

type RouterEntry = {
  router: types.Router;
  pooled: PooledWorker;
  /** Room producer id → id of that producer inside this router (itself, or its pipe producer). */
  localProducerIds: Map<string, string>;
  /** Inverse of `localProducerIds`. */
  originProducerIds: Map<string, string>;
  /** Pipe producers inside this router, by room producer id. */
  pipeProducers: Map<string, types.Producer>;
  /** Pipes being set up into this router, by room producer id. */
  piping: Map<string, Promise<string>>;
  transports: Set<TransportEntry>;
  /** Recv transports being created on this router (counted in its load). */
  reservedRecv: number;
  speakerObserver: Promise<types.ActiveSpeakerObserver> | undefined;
};

type TransportHandle =
  { type: 'webrtc'; transport: types.WebRtcTransport } | { type: 'plain'; transport: types.PlainTransport };

type TransportEntry = TransportHandle & {
  id: string;
  participantId: string;
  direction: TransportDirection;
  routerEntry: RouterEntry;
  producers: Set<ProducerEntry>;
  consumers: Set<ConsumerEntry>;
};

type ProducerEntry = {
  id: string;
  participantId: string;
  kind: types.MediaKind;
  source: MediaSource;
  producer: types.Producer;
  transportEntry: TransportEntry;
  consumers: Set<ConsumerEntry>;
};

type ConsumerEntry = {
  id: string;
  participantId: string;
  producerEntry: ProducerEntry;
  consumer: types.Consumer;
  transportEntry: TransportEntry;
};

type ParticipantEntry = {
  transports: Set<TransportEntry>;
  producers: Set<ProducerEntry>;
  pendingTransports: number;
  pendingProducers: number;
  /** Bumped when the participant leaves: creations in flight from before are then discarded. */
  generation: number;
};

const sourceKinds: Record<MediaSource, types.MediaKind> = {
  camera: 'video',
  screen: 'video',
  microphone: 'audio',
  'screen-audio': 'audio',
};

/**
 * One room's media on this node: its routers, and the participants' transports, producers and
 * consumers, each owned by a participant id.
 *
 * - The first router (the *primary*) sits on the least-loaded worker; every send transport lives
 *   there, and so does the room's `ActiveSpeakerObserver`.
 * - A recv transport goes to the first router under its consumer budget; when all are at budget
 *   the room grows a router on another worker (one without a router of this room when possible)
 *   and pipes every producer of the room into it (`pipeToRouter`). A producer created later is
 *   piped into every router of the room.
 * - When a worker dies, everything on its routers is reported closed (`worker-died`), producers
 *   first; routers on other workers keep working. The next request that needs a router creates
 *   one on a live worker.
 *
 * Every producer, consumer and transport that goes away is reported exactly once through the
 * events, whatever the cause.
 */
export class RoomMedia extends SafeEmitter<RoomMediaEvents> {
  readonly roomId: string;
  #options: RoomMediaOptions;
  #logger: Logger;
  #routers: RouterEntry[] = [];
  #growing: Promise<RouterEntry> | undefined;
  #transports = new Map<string, TransportEntry>();
  #producers = new Map<string, ProducerEntry>();
  #consumers = new Map<string, ConsumerEntry>();
  #participants = new Map<string, ParticipantEntry>();
  #activeSpeaker: string | null = null;
  #closed = false;
  #silent = false;

  constructor(options: RoomMediaOptions) {
    super((eventName, error) => options.logger.error({ err: error, eventName }, 'room media listener threw'));
    this.roomId = options.roomId;
    this.#options = options;
    this.#logger = options.logger;
  }

  /** Whether {@link close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Number of media objects of the room's clients. */
  counts(): RoomMediaCounts {
    return {
      routers: this.#routers.length,
      transports: this.#transports.size,
      producers: this.#producers.size,
      consumers: this.#consumers.size,
    };
  }

  /** Worker index of each router of the room, primary first. */
  routerWorkers(): number[] {
    return this.#routers.map((r) => r.pooled.index);
  }

  /** RTP capabilities of the room's routers (all identical); creates the primary router if needed. */
  async rtpCapabilities(): Promise<types.RtpCapabilities> {
    this.#assertOpen();
    return (await this.#primary()).router.rtpCapabilities;
  }

  /** Creates a WebRTC transport through the router's worker's WebRtcServer. */
  async createWebRtcTransport(participantId: string, direction: TransportDirection): Promise<WebRtcTransportInfo> {
    const entry = await this.#createTransport(participantId, direction, async (routerEntry) => {
      const transport = await routerEntry.router.createWebRtcTransport({
        webRtcServer: routerEntry.pooled.webRtcServer,
        enableUdp: true,
        enableTcp: true,
        preferUdp: true,
        initialAvailableOutgoingBitrate: this.#options.initialAvailableOutgoingBitrate,
        appData: { roomId: this.roomId, participantId, direction },
      });
      return { type: 'webrtc', transport };
    });
    if (entry.type !== 'webrtc') throw new Error('unreachable');
    return {
      transportId: entry.id,
      iceParameters: entry.transport.iceParameters,
      iceCandidates: entry.transport.iceCandidates,
      dtlsParameters: entry.transport.dtlsParameters,
    };
  }

  /** Creates a plain RTP transport (encoder ingest, recording taps). */
  async createPlainTransport(participantId: string, options: PlainTransportOptions): Promise<PlainTransportInfo> {
    const entry = await this.#createTransport(participantId, options.direction, async (routerEntry) => {
      const transport = await routerEntry.router.createPlainTransport({
        listenInfo: this.#options.pool.transportListenInfo(),
        rtcpMux: options.rtcpMux ?? true,
        comedia: options.comedia ?? false,
        appData: { roomId: this.roomId, participantId, direction: options.direction },
      });
      return { type: 'plain', transport };
    });
    if (entry.type !== 'plain') throw new Error('unreachable');
    const { tuple, rtcpTuple } = entry.transport;
    return {
      transportId: entry.id,
      ip: tuple.localAddress,
      port: tuple.localPort,
      ...(rtcpTuple ? { rtcpPort: rtcpTuple.localPort } : {}),
    };
  }

  /** Gives a WebRTC transport the client's DTLS parameters. */
  async connectWebRtcTransport(
    participantId: string,
    transportId: string,
    dtlsParameters: types.DtlsParameters,
  ): Promise<void> {
    const entry = this.#ownedTransport(participantId, transportId);
    if (entry.type !== 'webrtc') throw new SfuError('BAD_REQUEST', 'not a WebRTC transport: use connectPlainTransport');
    try {
      await entry.transport.connect({ dtlsParameters });
    } catch (error) {
      throw toSfuError(error, 'BAD_REQUEST');
    }
  }

  /** Tells a plain transport where the remote end is (not needed with `comedia`). */
  async connectPlainTransport(participantId: string, remote: PlainTransportRemote): Promise<void> {
    const entry = this.#ownedTransport(participantId, remote.transportId);
    if (entry.type !== 'plain') throw new SfuError('BAD_REQUEST', 'not a plain transport: use connectTransport');
    try {
      await entry.transport.connect({
        ip: remote.ip,
        port: remote.port,
        ...(remote.rtcpPort !== undefined ? { rtcpPort: remote.rtcpPort } : {}),
      });
    } catch (error) {
      throw toSfuError(error, 'BAD_REQUEST');
    }
  }

  /** Restarts ICE of a WebRTC transport; returns its new ICE parameters. */
  async restartIce(participantId: string, transportId: string): Promise<types.IceParameters> {
    const entry = this.#ownedTransport(participantId, transportId);
    if (entry.type !== 'webrtc') throw new SfuError('BAD_REQUEST', 'not a WebRTC transport');
    try {
      return await entry.transport.restartIce();
    } catch (error) {
      throw toSfuError(error);
    }
  }

  /** Creates a producer on a send transport and pipes it into every other router of the room. */
  async produce(participantId: string, options: ProduceOptions): Promise<{ producerId: string }> {
    const { transportId, kind, rtpParameters, source } = options;
    if (sourceKinds[source] !== kind) {
      throw new SfuError('BAD_REQUEST', `source '${source}' carries ${sourceKinds[source] ?? 'nothing'}, not ${kind}`);
    }
    const transportEntry = this.#ownedTransport(participantId, transportId);
    if (transportEntry.direction !== 'send') throw new SfuError('BAD_REQUEST', 'not a send transport');
    const participant = this.#participant(participantId);
    if (participant.producers.size + participant.pendingProducers >= this.#options.maxProducersPerParticipant) {
      throw new SfuError(
        'FORBIDDEN',
        `producer limit reached: at most ${this.#options.maxProducersPerParticipant} producers per participant`,
      );
    }
    participant.pendingProducers += 1;
    let producer: types.Producer;
    try {
      producer = await transportEntry.transport.produce({ kind, rtpParameters, appData: { participantId, source } });
    } catch (error) {
      throw toSfuError(error, 'BAD_REQUEST');
    } finally {
      participant.pendingProducers -= 1;
    }
    if (!this.#transports.has(transportEntry.id)) {
      producer.close();
      throw new SfuError('UNAVAILABLE', 'transport closed while producing');
    }

    const entry: ProducerEntry = {
      id: producer.id,
      participantId,
      kind,
      source,
      producer,
      transportEntry,
      consumers: new Set(),
    };
    this.#producers.set(entry.id, entry);
    transportEntry.producers.add(entry);
    this.#participant(participantId).producers.add(entry);
    const origin = transportEntry.routerEntry;
    origin.localProducerIds.set(entry.id, entry.id);
    origin.originProducerIds.set(entry.id, entry.id);
    producer.on('transportclose', () =>
      this.#removeProducer(entry, this.#diedOr(entry.transportEntry, 'transport-closed')),
    );

    await Promise.allSettled(this.#routers.filter((r) => r !== origin).map((r) => this.#localProducerId(entry, r)));
    if (kind === 'audio') await this.#observeSpeaker(entry);
    this.#logger.debug({ roomId: this.roomId, participantId, producerId: entry.id, kind, source }, 'producer created');
    return { producerId: entry.id };
  }

  /**
   * Creates a paused consumer of a room producer on a recv transport, piping the producer into
   * the transport's router first when needed.
   */
  async consume(participantId: string, options: ConsumeOptions): Promise<ConsumerInfo> {
    const transportEntry = this.#ownedTransport(participantId, options.transportId);
    if (transportEntry.direction !== 'recv') throw new SfuError('BAD_REQUEST', 'not a recv transport');
    const producerEntry = this.#producers.get(options.producerId);
    if (!producerEntry) throw new SfuError('NOT_FOUND', `unknown producer ${options.producerId}`);
    const routerEntry = transportEntry.routerEntry;

    let localProducerId: string;
    try {
      localProducerId = await this.#localProducerId(producerEntry, routerEntry);
    } catch (error) {
      throw toSfuError(error, 'UNAVAILABLE');
    }
    let canConsume: boolean;
    try {
      canConsume = routerEntry.router.canConsume({
        producerId: localProducerId,
        rtpCapabilities: options.rtpCapabilities,
      });
    } catch {
      canConsume = false;
    }
    if (!canConsume)
      throw new SfuError('BAD_REQUEST', `cannot consume producer ${producerEntry.id} with these rtpCapabilities`);

    let consumer: types.Consumer;
    try {
      consumer = await transportEntry.transport.consume({
        producerId: localProducerId,
        rtpCapabilities: options.rtpCapabilities,
        paused: true,
        appData: { participantId, producerId: producerEntry.id },
      });
    } catch (error) {
      throw toSfuError(error, 'BAD_REQUEST');
    }
    if (!this.#transports.has(transportEntry.id) || !this.#producers.has(producerEntry.id)) {
      consumer.close();
      throw new SfuError('NOT_FOUND', `producer ${producerEntry.id} closed`);
    }

    const entry: ConsumerEntry = { id: consumer.id, participantId, producerEntry, consumer, transportEntry };
    this.#consumers.set(entry.id, entry);
    transportEntry.consumers.add(entry);
    producerEntry.consumers.add(entry);
    consumer.on('producerclose', () => this.#removeConsumer(entry, 'producer-closed'));
    consumer.on('transportclose', () =>
      this.#removeConsumer(entry, this.#diedOr(entry.transportEntry, 'transport-closed')),
    );
    consumer.on('layerschange', (layers) => {
      // No layers means nothing is forwarded (producer paused or gone quiet): not a layer change.
      if (!layers) return;
      this.#emit('consumerlayerschanged', {
        roomId: this.roomId,
        participantId,
        consumerId: entry.id,
        spatialLayer: layers.spatialLayer,
        temporalLayer: layers.temporalLayer ?? 0,
      });
    });
    return {
      consumerId: entry.id,
      producerId: producerEntry.id,
      kind: consumer.kind,
      rtpParameters: consumer.rtpParameters,
      paused: true,
      producerPaused: consumer.producerPaused,
    };
  }

  /** Resumes a consumer (consumers start paused). */
  async resumeConsumer(participantId: string, consumerId: string): Promise<void> {
    const entry = this.#ownedConsumer(participantId, consumerId);
    try {
      await entry.consumer.resume();
    } catch (error) {
      throw toSfuError(error);
    }
  }

  /** Sets the preferred simulcast/SVC layers of a consumer. */
  async setConsumerLayers(
    participantId: string,
    consumerId: string,
    spatialLayer: number,
    temporalLayer?: number,
  ): Promise<void> {
    const entry = this.#ownedConsumer(participantId, consumerId);
    try {
      await entry.consumer.setPreferredLayers(
        temporalLayer === undefined ? { spatialLayer } : { spatialLayer, temporalLayer },
      );
    } catch (error) {
      throw toSfuError(error, 'BAD_REQUEST');
    }
  }

  /** Pauses a producer (its owner's, or anyone's when `asModerator`). */
  async pauseProducer(participantId: string, producerId: string, asModerator = false): Promise<void> {
    const entry = this.#controlledProducer(participantId, producerId, asModerator);
    try {
      await entry.producer.pause();
    } catch (error) {
      throw toSfuError(error);
    }
  }

  /** Resumes a producer (its owner's, or anyone's when `asModerator`). */
  async resumeProducer(participantId: string, producerId: string, asModerator = false): Promise<void> {
    const entry = this.#controlledProducer(participantId, producerId, asModerator);
    try {
      await entry.producer.resume();
    } catch (error) {
      throw toSfuError(error);
    }
  }

  /** Closes a producer (its owner's, or anyone's when `asModerator`); its consumers close too. */
  closeProducer(participantId: string, producerId: string, asModerator = false): void {
    this.#removeProducer(this.#controlledProducer(participantId, producerId, asModerator), 'closed');
  }

  /** Pauses every unpaused producer of a participant (moderation mute); returns the ids it paused. */
  async pauseParticipantProducers(participantId: string): Promise<string[]> {
    const producers = [...(this.#participants.get(participantId)?.producers ?? [])].filter((p) => !p.producer.paused);
    const results = await Promise.allSettled(producers.map((p) => p.producer.pause()));
    return producers.filter((_, i) => results[i]?.status === 'fulfilled').map((p) => p.id);
  }

  /** Closes every producer of a participant (role revoked); returns their ids. */
  closeParticipantProducers(participantId: string, reason: ProducerCloseReason): string[] {
    const producers = [...(this.#participants.get(participantId)?.producers ?? [])];
    for (const producer of producers) this.#removeProducer(producer, reason);
    return producers.map((p) => p.id);
  }

  /** Closes every transport of a participant, and with them its producers and consumers. */
  closeParticipant(participantId: string): void {
    const participant = this.#participants.get(participantId);
    if (!participant) return;
    for (const transport of [...participant.transports]) this.#removeTransport(transport, 'participant-left');
    participant.generation += 1;
    if (participant.pendingTransports === 0 && participant.pendingProducers === 0) {
      this.#participants.delete(participantId);
    }
  }

  /** The room's producers. */
  listProducers(): ProducerSummary[] {
    return [...this.#producers.values()].map((p) => ({
      producerId: p.id,
      participantId: p.participantId,
      kind: p.kind,
      source: p.source,
      paused: p.producer.paused,
    }));
  }

  /** Stats requests of every client transport of the room, one promise each. */
  transportStats(): Promise<types.BaseTransportStats[]>[] {
    return [...this.#transports.values()].map((t) => t.transport.getStats());
  }

  /**
   * Closes the room's routers and everything on them. Events report each closed object with
   * reason `room-closed`, unless `silent` (service shutdown). Safe to call twice.
   */
  close({ silent = false }: { silent?: boolean } = {}): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#silent = silent;
    for (const routerEntry of [...this.#routers]) this.#removeRouter(routerEntry, 'room-closed');
    this.removeAllListeners();
  }

  // ---- routers -------------------------------------------------------------------------------

  async #primary(): Promise<RouterEntry> {
    return this.#routers[0] ?? (await this.#grow());
  }

  /** The first router under budget for one more recv transport, growing the room when none is. */
  async #routerForRecv(): Promise<RouterEntry> {
    for (;;) {
      this.#assertOpen();
      const perViewer = Math.max(1, this.#producers.size);
      const entry = this.#routers.find((r) => {
        const load = this.#recvLoad(r, perViewer);
        // An empty router takes a viewer even when one viewer alone exceeds the budget.
        return load === 0 || load + perViewer <= this.#options.consumersPerRouter;
      });
      if (entry) {
        entry.reservedRecv += 1;
        return entry;
      }
      await this.#grow();
    }
  }

  /** Consumers a router carries or is expected to: each recv transport counts at least `perViewer`. */
  #recvLoad(entry: RouterEntry, perViewer: number): number {
    let load = entry.reservedRecv * perViewer;
    for (const transport of entry.transports) {
      if (transport.direction === 'recv') load += Math.max(transport.consumers.size, perViewer);
    }
    return load;
  }

  /** Adds one router to the room (one creation at a time). */
  #grow(): Promise<RouterEntry> {
    this.#growing ??= this.#createRouter().finally(() => {
      this.#growing = undefined;
    });
    return this.#growing;
  }

  async #createRouter(): Promise<RouterEntry> {
    const pooled = this.#options.pool.pick(new Set(this.#routers.map((r) => r.pooled.index)));
    let router: types.Router;
    try {
      router = await pooled.worker.createRouter({ mediaCodecs: [...mediaCodecs], appData: { roomId: this.roomId } });
    } catch (error) {
      throw toSfuError(error, 'UNAVAILABLE');
    }
    if (this.#closed) {
      router.close();
      throw new SfuError('NOT_FOUND', `room ${this.roomId} closed`);
    }
    const entry: RouterEntry = {
      router,
      pooled,
      localProducerIds: new Map(),
      originProducerIds: new Map(),
      pipeProducers: new Map(),
      piping: new Map(),
      transports: new Set(),
      reservedRecv: 0,
      speakerObserver: undefined,
    };
    this.#routers.push(entry);
    router.on('workerclose', () => this.#removeRouter(entry, 'worker-died'));
    this.#logger.info(
      { roomId: this.roomId, routerId: router.id, workerIndex: pooled.index, routers: this.#routers.length },
      'room router created',
    );
    await Promise.allSettled([...this.#producers.values()].map((p) => this.#localProducerId(p, entry)));
    return entry;
  }

  #removeRouter(entry: RouterEntry, reason: 'worker-died' | 'room-closed'): void {
    const index = this.#routers.indexOf(entry);
    if (index < 0) return;
    this.#routers.splice(index, 1);
    for (const transport of [...entry.transports]) this.#removeTransport(transport, reason);
    entry.router.close();
    if (reason === 'worker-died') {
      this.#logger.warn(
        { roomId: this.roomId, routerId: entry.router.id, workerIndex: entry.pooled.index },
        'room router lost with its worker',
      );
    }
    if (index === 0 && !this.#closed) {
      // The speaker observer went with the primary router: start over on the new primary.
      this.#setActiveSpeaker(null);
      for (const producer of this.#producers.values()) {
        if (producer.kind === 'audio') void this.#observeSpeaker(producer);
      }
    }
  }

  // ---- pipes ---------------------------------------------------------------------------------

  /** Id of a room producer inside `target`, piping it there first when needed. */
  #localProducerId(producer: ProducerEntry, target: RouterEntry): Promise<string> {
    const known = target.localProducerIds.get(producer.id);
    if (known !== undefined) return Promise.resolve(known);
    let pending = target.piping.get(producer.id);
    if (!pending) {
      pending = this.#pipe(producer, target).finally(() => target.piping.delete(producer.id));
      target.piping.set(producer.id, pending);
      pending.catch((error: unknown) =>
        this.#logger.warn({ roomId: this.roomId, producerId: producer.id, err: error }, 'pipeToRouter failed'),
      );
    }
    return pending;
  }

  async #pipe(producer: ProducerEntry, target: RouterEntry): Promise<string> {
    const origin = producer.transportEntry.routerEntry;
    const { pipeProducer } = await origin.router.pipeToRouter({
      producerId: producer.id,
      router: target.router,
      // A fresh id: with the original one, a second router of the room on the same worker (the
      // origin's, or one already holding a pipe of this producer) would collide in that worker.
      keepId: false,
      listenInfo: this.#options.pool.pipeListenInfo(),
      enableSctp: false,
    });
    if (!pipeProducer) throw new Error('pipeToRouter returned no producer');
    if (!this.#producers.has(producer.id) || !this.#routers.includes(target)) {
      pipeProducer.close();
      throw new SfuError('NOT_FOUND', `producer ${producer.id} closed`);
    }
    target.localProducerIds.set(producer.id, pipeProducer.id);
    target.originProducerIds.set(pipeProducer.id, producer.id);
    target.pipeProducers.set(producer.id, pipeProducer);
    pipeProducer.observer.once('close', () => {
      if (target.pipeProducers.get(producer.id) !== pipeProducer) return;
      target.pipeProducers.delete(producer.id);
      target.localProducerIds.delete(producer.id);
      target.originProducerIds.delete(pipeProducer.id);
    });
    this.#logger.debug(
      { roomId: this.roomId, producerId: producer.id, from: origin.pooled.index, to: target.pooled.index },
      'producer piped',
    );
    return pipeProducer.id;
  }

  // ---- active speaker ------------------------------------------------------------------------

  async #observeSpeaker(producer: ProducerEntry): Promise<void> {
    const primary = this.#routers[0];
    if (!primary || producer.kind !== 'audio') return;
    try {
      const localId = await this.#localProducerId(producer, primary);
      primary.speakerObserver ??= this.#createSpeakerObserver(primary);
      const observer = await primary.speakerObserver;
      if (!observer.closed && this.#producers.has(producer.id)) await observer.addProducer({ producerId: localId });
    } catch (error) {
      this.#logger.warn(
        { roomId: this.roomId, producerId: producer.id, err: error },
        'active speaker observer: cannot add producer',
      );
    }
  }

  async #createSpeakerObserver(entry: RouterEntry): Promise<types.ActiveSpeakerObserver> {
    const observer = await entry.router.createActiveSpeakerObserver({ interval: 300 });
    observer.on('dominantspeaker', ({ producer }) => {
      const originId = entry.originProducerIds.get(producer.id) ?? producer.id;
      const participantId = this.#producers.get(originId)?.participantId;
      if (participantId !== undefined) this.#setActiveSpeaker(participantId);
    });
    return observer;
  }

  #setActiveSpeaker(participantId: string | null): void {
    if (this.#activeSpeaker === participantId) return;
    this.#activeSpeaker = participantId;
    this.#emit('activespeaker', { roomId: this.roomId, participantId });
  }

  // ---- transports ----------------------------------------------------------------------------

  async #createTransport(
    participantId: string,
    direction: TransportDirection,
    create: (routerEntry: RouterEntry) => Promise<TransportHandle>,
  ): Promise<TransportEntry> {
    this.#assertOpen();
    const participant = this.#participant(participantId);
    if (participant.transports.size + participant.pendingTransports >= this.#options.maxTransportsPerParticipant) {
      throw new SfuError(
        'FORBIDDEN',
        `transport limit reached: at most ${this.#options.maxTransportsPerParticipant} transports per participant`,
      );
    }
    participant.pendingTransports += 1;
    const generation = participant.generation;
    let routerEntry: RouterEntry | undefined;
    try {
      routerEntry = direction === 'send' ? await this.#primary() : await this.#routerForRecv();
      let created: TransportHandle;
      try {
        created = await create(routerEntry);
      } catch (error) {
        throw toSfuError(error, 'UNAVAILABLE');
      }
      if (this.#closed || !this.#routers.includes(routerEntry)) {
        created.transport.close();
        throw new SfuError('UNAVAILABLE', 'router closed while creating the transport');
      }
      if (participant.generation !== generation) {
        created.transport.close();
        throw new SfuError('NOT_FOUND', `participant ${participantId} left`);
      }
      const entry = {
        ...created,
        id: created.transport.id,
        participantId,
        direction,
        routerEntry,
        producers: new Set(),
        consumers: new Set(),
      } as TransportEntry;
      this.#transports.set(entry.id, entry);
      routerEntry.transports.add(entry);
      participant.transports.add(entry);
      const onClosedUnderneath = (): void => this.#removeTransport(entry, this.#diedOr(entry, 'room-closed'));
      if (entry.type === 'webrtc') {
        entry.transport.on('routerclose', onClosedUnderneath);
        entry.transport.on('listenserverclose', onClosedUnderneath);
      } else {
        entry.transport.on('routerclose', onClosedUnderneath);
      }
      return entry;
    } finally {
      participant.pendingTransports -= 1;
      if (direction === 'recv' && routerEntry) routerEntry.reservedRecv -= 1;
    }
  }

  #removeTransport(entry: TransportEntry, reason: TransportCloseReason): void {
    if (this.#transports.get(entry.id) !== entry) return;
    this.#transports.delete(entry.id);
    entry.routerEntry.transports.delete(entry);
    this.#participants.get(entry.participantId)?.transports.delete(entry);
    for (const producer of [...entry.producers]) this.#removeProducer(producer, reason);
    for (const consumer of [...entry.consumers]) this.#removeConsumer(consumer, reason);
    entry.transport.close();
    this.#emit('transportclosed', {
      roomId: this.roomId,
      participantId: entry.participantId,
      transportId: entry.id,
      reason,
    });
  }

  // ---- producers and consumers ---------------------------------------------------------------

  #removeProducer(entry: ProducerEntry, reason: ProducerCloseReason): void {
    if (this.#producers.get(entry.id) !== entry) return;
    this.#producers.delete(entry.id);
    entry.transportEntry.producers.delete(entry);
    this.#participants.get(entry.participantId)?.producers.delete(entry);
    for (const consumer of [...entry.consumers]) {
      this.#removeConsumer(consumer, this.#diedOr(consumer.transportEntry, 'producer-closed'));
    }
    entry.producer.close();
    for (const routerEntry of this.#routers) {
      const localId = routerEntry.localProducerIds.get(entry.id);
      routerEntry.localProducerIds.delete(entry.id);
      if (localId !== undefined) routerEntry.originProducerIds.delete(localId);
      routerEntry.pipeProducers.get(entry.id)?.close();
      routerEntry.pipeProducers.delete(entry.id);
    }
    if (entry.kind === 'audio' && this.#activeSpeaker === entry.participantId) {
      const stillSpeaking = [...this.#producers.values()].some(
        (p) => p.kind === 'audio' && p.participantId === entry.participantId,
      );
      if (!stillSpeaking) this.#setActiveSpeaker(null);
    }
    this.#emit('producerclosed', {
      roomId: this.roomId,
      participantId: entry.participantId,
      producerId: entry.id,
      reason,
    });
  }

  #removeConsumer(entry: ConsumerEntry, reason: ConsumerCloseReason): void {
    if (this.#consumers.get(entry.id) !== entry) return;
    this.#consumers.delete(entry.id);
    entry.transportEntry.consumers.delete(entry);
    entry.producerEntry.consumers.delete(entry);
    entry.consumer.close();
    this.#emit('consumerclosed', {
      roomId: this.roomId,
      participantId: entry.participantId,
      consumerId: entry.id,
      producerId: entry.producerEntry.id,
      reason,
    });
  }

  // ---- lookups -------------------------------------------------------------------------------

  #participant(participantId: string): ParticipantEntry {
    let participant = this.#participants.get(participantId);
    if (!participant) {
      participant = {
        transports: new Set(),
        producers: new Set(),
        pendingTransports: 0,
        pendingProducers: 0,
        generation: 0,
      };
      this.#participants.set(participantId, participant);
    }
    return participant;
  }

  #ownedTransport(participantId: string, transportId: string): TransportEntry {
    this.#assertOpen();
    const entry = this.#transports.get(transportId);
    if (!entry) throw new SfuError('NOT_FOUND', `unknown transport ${transportId}`);
    if (entry.participantId !== participantId) throw new SfuError('FORBIDDEN', 'not the owner of this transport');
    return entry;
  }

  #ownedConsumer(participantId: string, consumerId: string): ConsumerEntry {
    this.#assertOpen();
    const entry = this.#consumers.get(consumerId);
    if (!entry) throw new SfuError('NOT_FOUND', `unknown consumer ${consumerId}`);
    if (entry.participantId !== participantId) throw new SfuError('FORBIDDEN', 'not the owner of this consumer');
    return entry;
  }

  #controlledProducer(participantId: string, producerId: string, asModerator: boolean): ProducerEntry {
    this.#assertOpen();
    const entry = this.#producers.get(producerId);
    if (!entry) throw new SfuError('NOT_FOUND', `unknown producer ${producerId}`);
    if (!asModerator && entry.participantId !== participantId) {
      throw new SfuError('FORBIDDEN', 'not the owner of this producer');
    }
    return entry;
  }

  /** `worker-died` when the transport's worker died, else `otherwise`. */
  #diedOr<R extends string>(transport: TransportEntry, otherwise: R): R | 'worker-died' {
    return transport.routerEntry.pooled.worker.died ? 'worker-died' : otherwise;
  }

  #assertOpen(): void {
    if (this.#closed) throw new SfuError('NOT_FOUND', `room ${this.roomId} closed`);
  }

  #emit<K extends keyof RoomMediaEvents & string>(eventName: K, ...args: RoomMediaEvents[K]): void {
    if (!this.#silent) this.safeEmit(eventName, ...args);
  }
}
