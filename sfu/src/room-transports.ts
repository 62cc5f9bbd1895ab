import type { types } from 'mediasoup';

import { SfuError, toSfuError } from './errors.js';
import type {
  PlainTransportInfo,
  PlainTransportOptions,
  PlainTransportRemote,
  TransportCloseReason,
  TransportDirection,
  WebRtcTransportInfo,
} from './media-types.js';
import type { RoomConsumer, RoomConsumers } from './room-consumers.js';
import type { RoomParticipants } from './room-participants.js';
import type { RoomProducer, RoomProducers } from './room-producers.js';
import type { RoomRouter, RoomRouters } from './room-routers.js';
import type { RoomScope } from './room-scope.js';
import type { WorkerPool } from './worker-pool.js';

type TransportHandle =
  { type: 'webrtc'; transport: types.WebRtcTransport } | { type: 'plain'; transport: types.PlainTransport };

/** One transport of a participant, on a router of the room. */
export type RoomTransport = TransportHandle & {
  readonly id: string;
  readonly participantId: string;
  readonly direction: TransportDirection;
  readonly router: RoomRouter;
  readonly producers: Set<RoomProducer>;
  /** Consumers on this transport by room producer id: a producer is consumed at most once per transport. */
  readonly consumers: Map<string, RoomConsumer>;
  /** Consumers being created on this transport, by room producer id. */
  readonly consuming: Map<string, Promise<RoomConsumer>>;
  /** Set once the transport left the room's books. */
  closed: boolean;
};

/** Options of {@link RoomTransports}. */
export type RoomTransportsOptions = {
  scope: RoomScope;
  pool: WorkerPool;
  participants: RoomParticipants;
  routers: RoomRouters;
  producers: RoomProducers;
  consumers: RoomConsumers;
  /** Initial outgoing bitrate estimate of WebRTC transports, in bps. */
  initialAvailableOutgoingBitrate: number;
};

/**
 * `worker-died` when the worker under `transport` is gone (died, or closed under the room), else
 * `otherwise`: what closed underneath a room is reported as lost with its worker.
 */
export function closeReason<R extends string>(transport: RoomTransport, otherwise: R): R | 'worker-died' {
  return transport.router.pooled.alive ? otherwise : 'worker-died';
}

/**
 * The transports of one room, by id, each owned by a participant and limited per participant.
 * Send transports live on the primary router, recv transports on the router the consumer budget
 * picks. A transport that goes away takes its producers and consumers with it; each is reported
 * once (`transportclosed`).
 */
export class RoomTransports {
  #options: RoomTransportsOptions;
  #scope: RoomScope;
  #participants: RoomParticipants;
  #transports = new Map<string, RoomTransport>();

  constructor(options: RoomTransportsOptions) {
    this.#options = options;
    this.#scope = options.scope;
    this.#participants = options.participants;
  }

  /** Number of transports of the room. */
  get size(): number {
    return this.#transports.size;
  }

  /**
   * A transport of `participantId`: `NOT_FOUND` when unknown, `FORBIDDEN` when someone else's,
   * `BAD_REQUEST` when not of `direction` (when given).
   */
  owned(participantId: string, transportId: string, direction?: TransportDirection): RoomTransport {
    this.#scope.assertOpen();
    const entry = this.#transports.get(transportId);
    if (!entry) throw new SfuError('NOT_FOUND', `unknown transport ${transportId}`);
    if (entry.participantId !== participantId) throw new SfuError('FORBIDDEN', 'not the owner of this transport');
    if (direction !== undefined && entry.direction !== direction) {
      throw new SfuError('BAD_REQUEST', `not a ${direction} transport`);
    }
    return entry;
  }

  /** Creates a WebRTC transport through the router's worker's WebRtcServer. */
  async createWebRtc(participantId: string, direction: TransportDirection): Promise<WebRtcTransportInfo> {
    const { transport, id } = await this.#create(participantId, direction, async (router) => ({
      type: 'webrtc' as const,
      transport: await router.router.createWebRtcTransport({
        webRtcServer: router.pooled.webRtcServer,
        enableUdp: true,
        enableTcp: true,
        preferUdp: true,
        initialAvailableOutgoingBitrate: this.#options.initialAvailableOutgoingBitrate,
        appData: { roomId: this.#scope.roomId, participantId, direction },
      }),
    }));
    return {
      transportId: id,
      iceParameters: transport.iceParameters,
      iceCandidates: transport.iceCandidates,
      dtlsParameters: transport.dtlsParameters,
    };
  }

  /** Creates a plain RTP transport (encoder ingest, recording taps). */
  async createPlain(participantId: string, options: PlainTransportOptions): Promise<PlainTransportInfo> {
    const { direction } = options;
    const { transport, id } = await this.#create(participantId, direction, async (router) => ({
      type: 'plain' as const,
      transport: await router.router.createPlainTransport({
        listenInfo: this.#options.pool.transportListenInfo(),
        rtcpMux: options.rtcpMux ?? true,
        comedia: options.comedia ?? false,
        appData: { roomId: this.#scope.roomId, participantId, direction },
      }),
    }));
    const { tuple, rtcpTuple } = transport;
    return {
      transportId: id,
      ip: tuple.localAddress,
      port: tuple.localPort,
      ...(rtcpTuple ? { rtcpPort: rtcpTuple.localPort } : {}),
    };
  }

  /** Gives a WebRTC transport of `participantId` the client's DTLS parameters. */
  async connectWebRtc(participantId: string, transportId: string, dtlsParameters: types.DtlsParameters): Promise<void> {
    const entry = this.owned(participantId, transportId);
    if (entry.type !== 'webrtc') throw new SfuError('BAD_REQUEST', 'not a WebRTC transport: use connectPlainTransport');
    try {
      await entry.transport.connect({ dtlsParameters });
    } catch (error) {
      throw toSfuError(error, 'BAD_REQUEST');
    }
  }

  /** Tells a plain transport of `participantId` where the remote end is (not needed with `comedia`). */
  async connectPlain(participantId: string, remote: PlainTransportRemote): Promise<void> {
    const entry = this.owned(participantId, remote.transportId);
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

  /** Restarts ICE of a WebRTC transport of `participantId`; returns its new ICE parameters. */
  async restartIce(participantId: string, transportId: string): Promise<types.IceParameters> {
    const entry = this.owned(participantId, transportId);
    if (entry.type !== 'webrtc') throw new SfuError('BAD_REQUEST', 'not a WebRTC transport');
    try {
      return await entry.transport.restartIce();
    } catch (error) {
      throw toSfuError(error);
    }
  }

  /** Stats requests of every transport of the room, one promise each. */
  stats(): Promise<types.BaseTransportStats[]>[] {
    return [...this.#transports.values()].map((t) => t.transport.getStats());
  }

  /**
   * Closes a transport, its producers and consumers first, and reports it once
   * (`transportclosed`).
   */
  remove(entry: RoomTransport, reason: TransportCloseReason): void {
    if (entry.closed) return;
    entry.closed = true;
    this.#transports.delete(entry.id);
    entry.router.transports.delete(entry);
    this.#participants.find(entry.participantId)?.transports.delete(entry);
    for (const producer of [...entry.producers]) this.#options.producers.remove(producer, reason);
    for (const consumer of [...entry.consumers.values()]) this.#options.consumers.remove(consumer, reason);
    entry.transport.close();
    this.#scope.emit('transportclosed', {
      roomId: this.#scope.roomId,
      participantId: entry.participantId,
      transportId: entry.id,
      reason,
    });
  }

  async #create<H extends TransportHandle>(
    participantId: string,
    direction: TransportDirection,
    create: (router: RoomRouter) => Promise<H>,
  ): Promise<RoomTransport & H> {
    this.#scope.assertOpen();
    const participant = this.#participants.reserve(participantId, 'transports');
    const generation = participant.generation;
    const routers = this.#options.routers;
    let router: RoomRouter | undefined;
    try {
      router = direction === 'send' ? await routers.primary() : await routers.reserveRecv();
      let created: H;
      try {
        created = await create(router);
      } catch (error) {
        throw toSfuError(error, 'UNAVAILABLE');
      }
      if (this.#scope.closed || !routers.includes(router)) {
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
        router,
        producers: new Set(),
        consumers: new Map(),
        consuming: new Map(),
        closed: false,
      } as RoomTransport & H;
      this.#transports.set(entry.id, entry);
      router.transports.add(entry);
      participant.transports.add(entry);
      const closedUnderneath = (): void => this.remove(entry, closeReason(entry, 'room-closed'));
      if (entry.type === 'webrtc') {
        entry.transport.on('routerclose', closedUnderneath);
        entry.transport.on('listenserverclose', closedUnderneath);
      } else {
        entry.transport.on('routerclose', closedUnderneath);
      }
      return entry;
    } finally {
      this.#participants.release(participant, 'transports');
      if (direction === 'recv' && router) routers.releaseRecv(router);
    }
  }
}
