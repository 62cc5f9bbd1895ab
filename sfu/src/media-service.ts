import os from 'node:os';

import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import type { Logger } from 'pino';

import { SfuError } from './errors.js';
import type {
  ConsumeOptions,
  ConsumerInfo,
  MediaServiceEvents,
  MediaStats,
  PipeEnd,
  PipeOffer,
  PipeOrigin,
  PipeSummary,
  PipeTraffic,
  PlainTransportInfo,
  PlainTransportOptions,
  PlainTransportRemote,
  ProduceOptions,
  ProducerCloseReason,
  ProducerSummary,
  RoomMediaCounts,
  TransportDirection,
  TransportTraffic,
  WebRtcTransportInfo,
  WorkerUsage,
} from './media-types.js';
import { RoomMedia } from './room-media.js';
import type { MediaHealthOptions, RoomMediaHealth } from './room-media-health.js';
import { SafeEmitter } from './safe-emitter.js';
import { WorkerPool, type PipeSrtpMode, type PortRange } from './worker-pool.js';

/** Options of {@link MediaService.create}. Unset numbers take the defaults named. */
export type MediaServiceOptions = {
  /** Worker processes. Default `os.availableParallelism()`. */
  numWorkers?: number;
  /** IP to listen on (`0.0.0.0` in containers, with `announcedAddress`). */
  listenIp: string;
  /** IP or hostname clients reach this node at, when it differs from `listenIp`. */
  announcedAddress?: string;
  /**
   * IP or hostname other nodes reach this node's pipes at (`RTC_PIPE_ANNOUNCED_ADDRESS`); default
   * `announcedAddress`, then `listenIp`.
   */
  pipeAnnouncedAddress?: string;
  /** SRTP on the pipes between nodes (`RTC_PIPE_SRTP`, see {@link PipeSrtpMode}). Default `auto`. */
  pipeSrtp?: PipeSrtpMode;
  /** Worker `i` listens on UDP and TCP port `rtcBasePort + i`; 0 picks free ports in `rtcPortRange`. */
  rtcBasePort: number;
  /** Ports of plain and pipe transports (and of WebRtcServers when `rtcBasePort` is 0). Default 10000–59999. */
  rtcPortRange?: PortRange;
  /** Whether `createPlainTransport` is allowed (protocol `SFU_PLAIN_TRANSPORTS`). Default false. */
  plainTransportsEnabled?: boolean;
  /** Soft consumer budget of a router before the room grows onto another worker. Default 400. */
  consumersPerRouter?: number;
  /** Default 4. */
  maxTransportsPerParticipant?: number;
  /** Default 4. */
  maxProducersPerParticipant?: number;
  /**
   * Consumers one participant may hold in a room, on all its transports. Default 16: a trader
   * watching two presenters' camera, screen and their audio, with room to spare.
   */
  maxConsumersPerParticipant?: number;
  /** Initial outgoing bitrate estimate of WebRTC transports, in bps. Default 1 000 000. */
  initialAvailableOutgoingBitrate?: number;
  logger: Logger;
  /** Restart delay of dead workers. Default `{ initialMs: 500, maxMs: 30000, stableAfterMs: 60000 }`. */
  workerRestartBackoff?: { initialMs: number; maxMs: number; stableAfterMs?: number };
  /** mediasoup-worker binary; default mediasoup's lookup (`MEDIASOUP_WORKER_BIN`, then its build dir). */
  workerBin?: string;
  /** Log level of the worker processes. Default 'warn'. */
  workerLogLevel?: types.WorkerLogLevel;
};

/** One live worker, for health pages and tests. */
export type WorkerInfo = {
  workerIndex: number;
  pid: number;
  udpPort: number;
  tcpPort: number;
  routers: number;
  /** Consumers on the worker, pipe consumers included. */
  consumers: number;
};

/** A room's media, for admin pages. */
export type RoomMediaInfo = RoomMediaCounts & {
  /** Worker index of each of the room's routers, primary first. */
  routerWorkers: number[];
};

type ResolvedOptions = Required<
  Pick<
    MediaServiceOptions,
    | 'plainTransportsEnabled'
    | 'consumersPerRouter'
    | 'maxTransportsPerParticipant'
    | 'maxProducersPerParticipant'
    | 'maxConsumersPerParticipant'
    | 'initialAvailableOutgoingBitrate'
  >
>;

/**
 * Everything mediasoup on this node, behind the calls signaling makes for the protocol's `sfu.*`
 * methods. Rooms and participants are plain ids: the service trusts its caller for identity and
 * role, and checks ownership (a participant only touches its own transports, producers and
 * consumers, except producers `asModerator`) and the per-participant limits.
 *
 * Errors are {@link SfuError}s. Events (typed, see {@link MediaServiceEvents}) report every
 * producer, consumer and transport that goes away, whatever the cause, and worker deaths and
 * restarts; a listener that throws is logged and does not stop the others.
 */
export class MediaService extends SafeEmitter<MediaServiceEvents> {
  #pool: WorkerPool;
  #options: ResolvedOptions;
  #logger: Logger;
  #rooms = new Map<string, RoomMedia>();
  #closing: Promise<void> | undefined;

  /** Starts the workers and their WebRtcServers; rejects when one cannot start. */
  static async create(options: MediaServiceOptions): Promise<MediaService> {
    const logger = options.logger.child({ module: 'sfu' });
    // mediasoup's own warnings and errors (Node side and workers') into our logs. The listeners are
    // process-wide: the last service created owns them.
    mediasoup.setLogEventListeners({
      onwarn: (namespace, log) => logger.warn({ namespace }, log),
      onerror: (namespace, log, error) => logger.error({ namespace, err: error }, log),
    });
    const backoff = options.workerRestartBackoff;
    const pool = await WorkerPool.create({
      numWorkers: options.numWorkers ?? os.availableParallelism(),
      listenIp: options.listenIp,
      ...(options.announcedAddress ? { announcedAddress: options.announcedAddress } : {}),
      ...(options.pipeAnnouncedAddress ? { pipeAnnouncedAddress: options.pipeAnnouncedAddress } : {}),
      ...(options.pipeSrtp ? { pipeSrtp: options.pipeSrtp } : {}),
      rtcBasePort: options.rtcBasePort,
      portRange: options.rtcPortRange ?? { min: 10000, max: 59999 },
      restartBackoff: {
        initialMs: backoff?.initialMs ?? 500,
        maxMs: backoff?.maxMs ?? 30_000,
        stableAfterMs: backoff?.stableAfterMs ?? 60_000,
      },
      logger,
      ...(options.workerBin ? { workerBin: options.workerBin } : {}),
      ...(options.workerLogLevel ? { workerLogLevel: options.workerLogLevel } : {}),
    });
    logger.info({ mediasoupVersion: mediasoup.version, workers: pool.size }, 'media service started');
    return new MediaService(pool, logger, {
      plainTransportsEnabled: options.plainTransportsEnabled ?? false,
      consumersPerRouter: options.consumersPerRouter ?? 400,
      maxTransportsPerParticipant: options.maxTransportsPerParticipant ?? 4,
      maxProducersPerParticipant: options.maxProducersPerParticipant ?? 4,
      maxConsumersPerParticipant: options.maxConsumersPerParticipant ?? 16,
      initialAvailableOutgoingBitrate: options.initialAvailableOutgoingBitrate ?? 1_000_000,
    });
  }

  private constructor(pool: WorkerPool, logger: Logger, options: ResolvedOptions) {
    super((eventName, error) => logger.error({ err: error, eventName }, 'media service listener threw'));
    this.#pool = pool;
    this.#logger = logger;
    this.#options = options;
    pool.on('workerdied', ({ workerIndex, pid }) => this.safeEmit('workerdied', { workerIndex, pid }));
    pool.on('workerrestarted', ({ workerIndex, pid }) => this.safeEmit('workerrestarted', { workerIndex, pid }));
  }

  /** Whether {@link close} was called. */
  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /** Router RTP capabilities for `room.join`; creates the room's first router when needed. */
  async getRouterRtpCapabilities(roomId: string): Promise<types.RtpCapabilities> {
    return this.#roomOrCreate(roomId).rtpCapabilities();
  }

  /**
   * `sfu.createTransport`: a WebRTC transport through the worker's WebRtcServer. Send transports
   * live on the room's primary router; recv transports on the first router under its consumer
   * budget (the room grows a router on another worker when all are at budget).
   */
  async createWebRtcTransport(
    roomId: string,
    participantId: string,
    direction: TransportDirection,
  ): Promise<WebRtcTransportInfo> {
    return this.#roomOrCreate(roomId).createWebRtcTransport(participantId, direction);
  }

  /** `sfu.connectTransport`: the client's DTLS parameters. Owner only. */
  async connectTransport(
    roomId: string,
    participantId: string,
    transportId: string,
    dtlsParameters: types.DtlsParameters,
  ): Promise<void> {
    return this.#room(roomId).connectWebRtcTransport(participantId, transportId, dtlsParameters);
  }

  /** `sfu.produce` on a send transport (WebRTC or plain). Owner only; limited per participant. */
  async produce(roomId: string, participantId: string, options: ProduceOptions): Promise<{ producerId: string }> {
    return this.#room(roomId).produce(participantId, options);
  }

  /**
   * `sfu.consume` on a recv transport. The consumer starts paused: see {@link resumeConsumer}. A
   * producer is consumed at most once per transport: consuming it again there answers the
   * existing consumer (paused again), creating none. Over `maxConsumersPerParticipant`:
   * `SfuError('FORBIDDEN')` naming the limit.
   */
  async consume(
    roomId: string,
    participantId: string,
    options: ConsumeOptions,
    origin?: PipeOrigin,
  ): Promise<ConsumerInfo> {
    return this.#room(roomId).consume(participantId, options, origin);
  }

  /**
   * Whether the room has the producer on this node now: published here, or piped in already. A
   * producer published on another node is consumed by passing its {@link PipeOrigin} to
   * {@link consume}: the producer is piped in once (one pipe per producer per node) and torn down
   * when its last consumer here closes.
   */
  hasProducer(roomId: string, producerId: string): boolean {
    return this.#rooms.get(roomId)?.hasProducer(producerId) ?? false;
  }

  /**
   * Node `nodeId` asks for a producer published here: this node's end of a pipe connected to
   * `end`, with the producer flowing into it. `SfuError('NOT_FOUND')` for a producer not
   * published here.
   */
  async pipeOut(roomId: string, producerId: string, nodeId: string, end: PipeEnd): Promise<PipeOffer> {
    return this.#room(roomId).pipeOut(producerId, nodeId, end);
  }

  /** Node `nodeId` no longer consumes a producer of this node. No-op when nothing is piped to it. */
  closePipeOut(roomId: string, producerId: string, nodeId: string): void {
    this.#rooms.get(roomId)?.closePipeOut(producerId, nodeId);
  }

  /**
   * The origin of a producer piped in here closed it (`origin-closed`) or went away
   * (`origin-lost`): its consumers here close (`consumerclosed`, reason `producer-closed` or
   * `origin-lost`). No-op when it is not piped in.
   */
  closePipeIn(roomId: string, producerId: string, reason: 'origin-closed' | 'origin-lost'): void {
    this.#rooms.get(roomId)?.closePipeIn(producerId, reason);
  }

  /** The origin of a producer piped in here paused or resumed it. No-op when it is not piped in. */
  async setPipeInPaused(roomId: string, producerId: string, paused: boolean): Promise<void> {
    await this.#rooms.get(roomId)?.setPipeInPaused(producerId, paused);
  }

  /** Node `nodeId` went away (died, or left the cluster): every pipe with it closes, in every room. */
  nodeLost(nodeId: string): void {
    for (const room of this.#rooms.values()) room.nodeLost(nodeId);
  }

  /** The pipes between this node and others, in every room. */
  pipes(): PipeSummary[] {
    return [...this.#rooms.values()].flatMap((room) => room.pipes());
  }

  /**
   * Bitrate of the pipes between nodes open now, by direction (in: received, out: sent), from
   * their stats; pipes that do not answer within `timeoutMs` are left out (and counted).
   */
  async pipeTraffic(timeoutMs = 1000): Promise<PipeTraffic> {
    const requests = [...this.#rooms.values()].flatMap((room) => room.pipeStats());
    const traffic: PipeTraffic = { in: 0, out: 0, pipesTimedOut: 0 };
    const results = await withTimeout(
      requests.map((r) => r.stats),
      timeoutMs,
    );
    results.forEach((result, i) => {
      const direction = requests[i]?.direction ?? 'in';
      if (result === undefined) {
        traffic.pipesTimedOut += 1;
        return;
      }
      for (const stat of result) traffic[direction] += direction === 'in' ? stat.recvBitrate : stat.sendBitrate;
    });
    return traffic;
  }

  /** `sfu.resumeConsumer`. Owner only. */
  async resumeConsumer(roomId: string, participantId: string, consumerId: string): Promise<void> {
    return this.#room(roomId).resumeConsumer(participantId, consumerId);
  }

  /** `sfu.pauseProducer`: owner, or anyone `asModerator`. */
  async pauseProducer(
    roomId: string,
    participantId: string,
    producerId: string,
    { asModerator = false }: { asModerator?: boolean } = {},
  ): Promise<void> {
    return this.#room(roomId).pauseProducer(participantId, producerId, asModerator);
  }

  /** `sfu.resumeProducer`: owner, or anyone `asModerator`. */
  async resumeProducer(
    roomId: string,
    participantId: string,
    producerId: string,
    { asModerator = false }: { asModerator?: boolean } = {},
  ): Promise<void> {
    return this.#room(roomId).resumeProducer(participantId, producerId, asModerator);
  }

  /**
   * `sfu.closeProducer`: owner, or anyone `asModerator`. Emits `producerclosed` (reason `closed`)
   * and `consumerclosed` for each of its consumers.
   */
  async closeProducer(
    roomId: string,
    participantId: string,
    producerId: string,
    { asModerator = false }: { asModerator?: boolean } = {},
  ): Promise<void> {
    this.#room(roomId).closeProducer(participantId, producerId, asModerator);
  }

  /** `sfu.setConsumerLayers`: preferred simulcast/SVC layers. Owner only. */
  async setConsumerLayers(
    roomId: string,
    participantId: string,
    consumerId: string,
    spatialLayer: number,
    temporalLayer?: number,
  ): Promise<void> {
    return this.#room(roomId).setConsumerLayers(participantId, consumerId, spatialLayer, temporalLayer);
  }

  /** `sfu.restartIce`. Owner only. */
  async restartIce(
    roomId: string,
    participantId: string,
    transportId: string,
  ): Promise<{ iceParameters: types.IceParameters }> {
    return { iceParameters: await this.#room(roomId).restartIce(participantId, transportId) };
  }

  /**
   * `sfu.createPlainTransport`: plain RTP for encoder ingest (`send`, usually with `comedia`) or
   * taps (`recv`). `SfuError('FORBIDDEN')` unless `plainTransportsEnabled`.
   */
  async createPlainTransport(
    roomId: string,
    participantId: string,
    options: PlainTransportOptions,
  ): Promise<PlainTransportInfo> {
    if (!this.#options.plainTransportsEnabled) throw new SfuError('FORBIDDEN', 'plain RTP transports are disabled');
    return this.#roomOrCreate(roomId).createPlainTransport(participantId, options);
  }

  /** `sfu.connectPlainTransport`: the remote RTP (and RTCP) address. Owner only. */
  async connectPlainTransport(roomId: string, participantId: string, remote: PlainTransportRemote): Promise<void> {
    if (!this.#options.plainTransportsEnabled) throw new SfuError('FORBIDDEN', 'plain RTP transports are disabled');
    return this.#room(roomId).connectPlainTransport(participantId, remote);
  }

  /**
   * Closes every producer of a participant at once (role demotion); returns their ids. Emits
   * `producerclosed` with `reason` for each. Unknown room: `[]`.
   */
  closeParticipantProducers(roomId: string, participantId: string, reason: ProducerCloseReason): string[] {
    return this.#rooms.get(roomId)?.closeParticipantProducers(participantId, reason) ?? [];
  }

  /** Pauses every unpaused producer of a participant (`moderation.mute`); returns the ids it paused. */
  async pauseParticipantProducers(roomId: string, participantId: string): Promise<string[]> {
    return (await this.#rooms.get(roomId)?.pauseParticipantProducers(participantId)) ?? [];
  }

  /**
   * A participant left: closes its transports, and with them its producers (`producerclosed`,
   * reason `participant-left`) and consumers. Unknown room or participant: no-op.
   */
  closeParticipant(roomId: string, participantId: string): void {
    this.#rooms.get(roomId)?.closeParticipant(participantId);
  }

  /** Closes a room's media (routers, and everything on them; reason `room-closed`). No-op when unknown. */
  closeRoom(roomId: string): void {
    const room = this.#rooms.get(roomId);
    if (!room) return;
    this.#rooms.delete(roomId);
    room.close();
  }

  /** Producers of a room (`producers` of `room.join`). Unknown room: `[]`. */
  listProducers(roomId: string): ProducerSummary[] {
    return this.#rooms.get(roomId)?.listProducers() ?? [];
  }

  /** Ids of the rooms with media on this node. */
  roomIds(): string[] {
    return [...this.#rooms.keys()];
  }

  /** Whether the room has media on this node. */
  hasRoom(roomId: string): boolean {
    return this.#rooms.has(roomId);
  }

  /** A room's media counts and where its routers are; `undefined` when unknown. */
  roomInfo(roomId: string): RoomMediaInfo | undefined {
    const room = this.#rooms.get(roomId);
    return room ? { ...room.counts(), routerWorkers: room.routerWorkers() } : undefined;
  }

  /**
   * A room's producers and consumers with their bitrate and loss, measured now (one stats request
   * each, `timeoutMs` at most); `undefined` when the room has no media here.
   */
  roomMediaHealth(
    roomId: string,
    timeoutMs = 1000,
    options?: MediaHealthOptions,
  ): Promise<RoomMediaHealth> | undefined {
    return this.#rooms.get(roomId)?.mediaHealth(timeoutMs, options);
  }

  /** Live workers. */
  workers(): WorkerInfo[] {
    return this.#pool.alive.map((w) => ({
      workerIndex: w.index,
      pid: w.pid,
      udpPort: w.udpPort,
      tcpPort: w.tcpPort,
      routers: w.routerCount,
      consumers: w.consumerCount,
    }));
  }

  /** Counts for metrics and health: workers, restarts, and the clients' media objects. */
  stats(): MediaStats {
    const stats: MediaStats = {
      workers: this.#pool.size,
      workersAlive: this.#pool.alive.length,
      workerRestarts: this.#pool.restarts,
      rooms: this.#rooms.size,
      routers: 0,
      transports: 0,
      producers: 0,
      consumers: 0,
      pipesIn: 0,
      pipesOut: 0,
    };
    for (const room of this.#rooms.values()) {
      for (const pipe of room.pipes()) stats[pipe.direction === 'in' ? 'pipesIn' : 'pipesOut'] += 1;
      const counts = room.counts();
      stats.routers += counts.routers;
      stats.transports += counts.transports;
      stats.producers += counts.producers;
      stats.consumers += counts.consumers;
    }
    return stats;
  }

  /** CPU time and peak memory of each live worker (those that answer). */
  async workerUsage(): Promise<WorkerUsage[]> {
    const workers = this.#pool.alive;
    const results = await Promise.allSettled(workers.map((w) => w.worker.getResourceUsage()));
    return workers.flatMap((w, i) => {
      const result = results[i];
      if (result?.status !== 'fulfilled') return [];
      const usage = result.value;
      return [
        { workerIndex: w.index, pid: w.pid, cpuTimeMs: usage.ru_utime + usage.ru_stime, maxRssKb: usage.ru_maxrss },
      ];
    });
  }

  /**
   * Bytes received and sent by the clients' transports open now, from their stats; transports
   * that do not answer within `timeoutMs` are left out (and counted).
   */
  async transportTraffic(timeoutMs = 1000): Promise<TransportTraffic> {
    const requests = [...this.#rooms.values()].flatMap((room) => room.transportStats());
    const traffic: TransportTraffic = { bytesReceived: 0, bytesSent: 0, transportsTimedOut: 0 };
    const timedOut = Symbol('timeout');
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<typeof timedOut>((resolve) => {
      timer = setTimeout(() => resolve(timedOut), timeoutMs);
    });
    try {
      const results = await Promise.all(
        requests.map((request) => Promise.race([request.catch(() => [] as types.BaseTransportStats[]), deadline])),
      );
      for (const result of results) {
        if (result === timedOut) {
          traffic.transportsTimedOut += 1;
          continue;
        }
        for (const stat of result) {
          traffic.bytesReceived += stat.bytesReceived;
          traffic.bytesSent += stat.bytesSent;
        }
      }
    } finally {
      clearTimeout(timer);
    }
    return traffic;
  }

  /**
   * Closes every room (without events) and the workers; resolves once the worker processes
   * exited. Safe to call twice. Every other method then fails with `UNAVAILABLE`.
   */
  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    for (const room of this.#rooms.values()) room.close({ silent: true });
    this.#rooms.clear();
    this.#closing = this.#pool.close().then(() => {
      this.#logger.info('media service closed');
      this.removeAllListeners();
    });
    return this.#closing;
  }

  #room(roomId: string): RoomMedia {
    this.#assertOpen();
    const room = this.#rooms.get(roomId);
    if (!room) throw new SfuError('NOT_FOUND', `no media for room ${roomId}`);
    return room;
  }

  #roomOrCreate(roomId: string): RoomMedia {
    this.#assertOpen();
    let room = this.#rooms.get(roomId);
    if (room) return room;
    room = new RoomMedia({
      roomId,
      pool: this.#pool,
      consumersPerRouter: this.#options.consumersPerRouter,
      maxTransportsPerParticipant: this.#options.maxTransportsPerParticipant,
      maxProducersPerParticipant: this.#options.maxProducersPerParticipant,
      maxConsumersPerParticipant: this.#options.maxConsumersPerParticipant,
      initialAvailableOutgoingBitrate: this.#options.initialAvailableOutgoingBitrate,
      logger: this.#logger,
    });
    room.on('producerclosed', (event) => this.safeEmit('producerclosed', event));
    room.on('consumerclosed', (event) => this.safeEmit('consumerclosed', event));
    room.on('transportclosed', (event) => this.safeEmit('transportclosed', event));
    room.on('consumerlayerschanged', (event) => this.safeEmit('consumerlayerschanged', event));
    room.on('activespeaker', (event) => this.safeEmit('activespeaker', event));
    room.on('pipepaused', (event) => this.safeEmit('pipepaused', event));
    room.on('pipeclosed', (event) => this.safeEmit('pipeclosed', event));
    this.#rooms.set(roomId, room);
    return room;
  }

  #assertOpen(): void {
    if (this.#closing) throw new SfuError('UNAVAILABLE', 'media service closed');
  }
}

/**
 * Settles every request within `timeoutMs`: each result, or `undefined` for a request that failed
 * or did not answer in time.
 */
async function withTimeout<T>(requests: Promise<T>[], timeoutMs: number): Promise<(T | undefined)[]> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), timeoutMs);
  });
  try {
    return await Promise.all(requests.map((request) => Promise.race([request.catch(() => undefined), deadline])));
  } finally {
    clearTimeout(timer);
  }
}
