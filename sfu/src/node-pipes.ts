import { isIP } from 'node:net';

import type { types } from 'mediasoup';

import { SfuError, toSfuError } from './errors.js';
import type {
  PipeClosedEvent,
  PipeEnd,
  PipeOffer,
  PipeOrigin,
  PipeSummary,
  ProducerCloseReason,
} from './media-types.js';
import type { RoomProducer, RoomProducers } from './room-producers.js';
import type { RoomRouter, RoomRouters } from './room-routers.js';
import type { RoomScope } from './room-scope.js';
import type { PipeSrtpMode, WorkerPool } from './worker-pool.js';

/** A producer of this node piped out to another node: a pipe transport and the consumer feeding it. */
type PipeOut = {
  readonly producerId: string;
  readonly nodeId: string;
  readonly transport: types.PipeTransport;
  readonly consumer: types.Consumer;
  closed: boolean;
};

/** A producer piped in from its origin node: the pipe transport and the room producer made of it. */
type PipeIn = {
  readonly producer: RoomProducer;
  readonly nodeId: string;
  readonly transport: types.PipeTransport;
  closed: boolean;
};

/** Options of {@link NodePipes}. */
export type NodePipesOptions = {
  scope: RoomScope;
  pool: WorkerPool;
  routers: RoomRouters;
  producers: RoomProducers;
};

/**
 * The pipes of one room between this node and other nodes of a cluster: one `PipeTransport` pair
 * per producer and node, whichever number of viewers the node serves.
 *
 * - **In** ({@link pipeIn}): a viewer here consumes a producer published on another node. This
 *   node creates its end on the room's primary router, the origin (through {@link PipeOrigin})
 *   creates its own, connects it and consumes the producer into it; this node connects and
 *   produces it with the same id. The room then treats it like its own producer: its consumers,
 *   on any router of the room (the in-node `pipeToRouter` fan-out), all come from that one pipe.
 *   It goes when its last consumer here closes (`unpiped`), when the origin closes it
 *   (`origin-closed`) or goes away (`origin-lost`), or with its router.
 * - **Out** ({@link pipeOut}): another node asked for a producer published here. Pausing,
 *   resuming and closing the producer here are reported (`pipepaused`, `pipeclosed`) for
 *   signaling to tell that node.
 *
 * Encryption (SRTP) is the asking node's choice, per its `pipeSrtp` mode ({@link PipeSrtpMode}):
 * `auto` encrypts unless its pipe address is a loopback address, `always` always, `never` never.
 * The origin follows, except that an origin set to `always` refuses to pipe a producer out
 * unencrypted. RTX is on, so losses between nodes are repaired; RTCP
 * (receiver reports, NACK, PLI/FIR) flows back through the pipe to the origin producer, and every
 * simulcast layer crosses so that each node selects layers for its own viewers.
 */
export class NodePipes {
  #scope: RoomScope;
  #pool: WorkerPool;
  #routers: RoomRouters;
  #producers: RoomProducers;
  #out = new Map<string, PipeOut>();
  #in = new Map<string, PipeIn>();
  #opening = new Map<string, Promise<RoomProducer>>();
  /** Consumes under way of piped-in producers, by producer id: a pipe is not torn down under them. */
  #holds = new Map<string, number>();

  constructor(options: NodePipesOptions) {
    this.#scope = options.scope;
    this.#pool = options.pool;
    this.#routers = options.routers;
    this.#producers = options.producers;
  }

  /** The pipes open now. */
  list(): PipeSummary[] {
    const roomId = this.#scope.roomId;
    return [
      ...[...this.#in.values()].map((p) => ({
        roomId,
        producerId: p.producer.id,
        nodeId: p.nodeId,
        direction: 'in' as const,
        consumers: p.producer.consumers.size,
      })),
      ...[...this.#out.values()].map((p) => ({
        roomId,
        producerId: p.producerId,
        nodeId: p.nodeId,
        direction: 'out' as const,
      })),
    ];
  }

  /** Stats requests of every pipe transport, with its direction. */
  stats(): { direction: 'in' | 'out'; stats: Promise<types.PipeTransportStat[]> }[] {
    return [
      ...[...this.#in.values()].map((p) => ({ direction: 'in' as const, stats: p.transport.getStats() })),
      ...[...this.#out.values()].map((p) => ({ direction: 'out' as const, stats: p.transport.getStats() })),
    ];
  }

  /**
   * The room producer of `producerId`, piped in from `origin` unless it is here already (one pipe
   * per producer, shared by every consume). Hold the producer ({@link hold}) while consuming it.
   */
  async pipeIn(producerId: string, origin: PipeOrigin): Promise<RoomProducer> {
    this.#scope.assertOpen();
    const known = this.#producers.all.get(producerId);
    if (known) return known;
    let opening = this.#opening.get(producerId);
    if (!opening) {
      opening = this.#open(producerId, origin).finally(() => this.#opening.delete(producerId));
      this.#opening.set(producerId, opening);
    }
    return opening;
  }

  /** Counts a consume of a piped-in producer under way; the returned function ends it. */
  hold(producerId: string): () => void {
    this.#holds.set(producerId, (this.#holds.get(producerId) ?? 0) + 1);
    return () => {
      const left = (this.#holds.get(producerId) ?? 1) - 1;
      if (left > 0) this.#holds.set(producerId, left);
      else this.#holds.delete(producerId);
      this.consumerGone(producerId);
    };
  }

  /** A consumer of a producer closed (or a consume ended): a piped-in producer nobody consumes goes. */
  consumerGone(producerId: string): void {
    const pipe = this.#in.get(producerId);
    if (!pipe || pipe.closed || pipe.producer.consumers.size > 0 || this.#holds.has(producerId)) return;
    this.#closeIn(pipe, 'unpiped');
  }

  /** The origin closed a producer piped in here. No-op when it is not piped in. */
  closeIn(producerId: string, reason: 'origin-closed' | 'origin-lost'): void {
    const pipe = this.#in.get(producerId);
    if (pipe) this.#closeIn(pipe, reason);
  }

  /** The origin paused or resumed a producer piped in here. No-op when it is not piped in. */
  async setInPaused(producerId: string, paused: boolean): Promise<void> {
    const pipe = this.#in.get(producerId);
    if (!pipe || pipe.closed) return;
    try {
      await (paused ? pipe.producer.producer.pause() : pipe.producer.producer.resume());
    } catch (error) {
      throw toSfuError(error);
    }
  }

  /**
   * Node `nodeId` asks for a producer published here: this node's end of the pipe, connected to
   * `end`, with the producer consumed into it. A pipe already open to that node for the producer
   * is replaced (the node lost its end).
   */
  async pipeOut(producerId: string, nodeId: string, end: PipeEnd): Promise<PipeOffer> {
    this.#scope.assertOpen();
    if (end.srtpParameters === undefined && this.#pool.nodePipeSrtp() === 'always') {
      throw new SfuError('FORBIDDEN', `node ${nodeId} asked for a pipe without SRTP; this node pipes with SRTP only`);
    }
    const producer = this.#producers.get(producerId);
    if (producer.originNodeId !== undefined) {
      throw new SfuError('NOT_FOUND', `producer ${producerId} is published on node ${producer.originNodeId}`);
    }
    this.closeOut(producerId, nodeId);
    const router = producer.router;
    let transport: types.PipeTransport | undefined;
    try {
      transport = await router.router.createPipeTransport({
        listenInfo: this.#pool.nodePipeListenInfo(),
        enableSrtp: end.srtpParameters !== undefined,
        enableRtx: true,
        appData: { roomId: this.#scope.roomId, producerId, nodeId, direction: 'out' },
      });
      await transport.connect({
        ip: end.ip,
        port: end.port,
        ...(end.srtpParameters ? { srtpParameters: end.srtpParameters } : {}),
      });
      const consumer = await transport.consume({ producerId });
      if (producer.closed || this.#scope.closed) throw new SfuError('NOT_FOUND', `producer ${producerId} closed`);
      const pipe: PipeOut = { producerId, nodeId, transport, consumer, closed: false };
      this.#out.set(outKey(producerId, nodeId), pipe);
      consumer.on('producerclose', () => this.#closeOut(pipe, 'producer-closed'));
      consumer.on('transportclose', () => this.#closeOut(pipe, closedUnder(router)));
      consumer.on('producerpause', () => this.#emitPaused(pipe, true));
      consumer.on('producerresume', () => this.#emitPaused(pipe, false));
      this.#scope.logger.info(
        { roomId: this.#scope.roomId, producerId, nodeId, srtp: transport.srtpParameters !== undefined },
        'producer piped out to a node',
      );
      return {
        ...endOf(transport),
        participantId: producer.participantId,
        kind: producer.kind,
        source: producer.source,
        rtpParameters: consumer.rtpParameters,
        paused: consumer.producerPaused,
      };
    } catch (error) {
      transport?.close();
      throw toSfuError(error, 'UNAVAILABLE');
    }
  }

  /** Node `nodeId` no longer wants a producer piped out to it. No-op when no such pipe is open. */
  closeOut(producerId: string, nodeId: string): void {
    const pipe = this.#out.get(outKey(producerId, nodeId));
    if (!pipe) return;
    // The node asked: nothing to tell it.
    pipe.closed = true;
    this.#out.delete(outKey(producerId, nodeId));
    pipe.transport.close();
  }

  /** Node `nodeId` went away: every pipe with it closes (its viewers' consumers with `origin-lost`). */
  nodeLost(nodeId: string): void {
    for (const pipe of [...this.#out.values()]) {
      if (pipe.nodeId === nodeId) this.closeOut(pipe.producerId, nodeId);
    }
    for (const pipe of [...this.#in.values()]) {
      if (pipe.nodeId === nodeId) this.#closeIn(pipe, 'origin-lost');
    }
  }

  async #open(producerId: string, origin: PipeOrigin): Promise<RoomProducer> {
    const router = await this.#routers.primary();
    const listenInfo = this.#pool.nodePipeListenInfo();
    let transport: types.PipeTransport | undefined;
    let asked = false;
    try {
      transport = await router.router.createPipeTransport({
        listenInfo,
        enableSrtp: encrypts(this.#pool.nodePipeSrtp(), listenInfo.announcedAddress ?? listenInfo.ip),
        enableRtx: true,
        appData: { roomId: this.#scope.roomId, producerId, nodeId: origin.nodeId, direction: 'in' },
      });
      asked = true;
      const offer = await origin.open(endOf(transport));
      await transport.connect({
        ip: offer.ip,
        port: offer.port,
        ...(offer.srtpParameters ? { srtpParameters: offer.srtpParameters } : {}),
      });
      const producer = await transport.produce({
        id: producerId,
        kind: offer.kind,
        rtpParameters: offer.rtpParameters,
        paused: offer.paused,
        appData: { participantId: offer.participantId, source: offer.source, originNodeId: origin.nodeId },
      });
      if (this.#scope.closed || !this.#routers.includes(router)) {
        throw new SfuError('UNAVAILABLE', 'the room’s router closed while piping');
      }
      const entry: RoomProducer = {
        id: producerId,
        participantId: offer.participantId,
        kind: offer.kind,
        source: offer.source,
        producer,
        router,
        transport: undefined,
        originNodeId: origin.nodeId,
        consumers: new Set(),
        closed: false,
      };
      const pipe: PipeIn = { producer: entry, nodeId: origin.nodeId, transport, closed: false };
      this.#in.set(producerId, pipe);
      transport.on('routerclose', () => this.#closeIn(pipe, closedUnder(router)));
      await this.#producers.adopt(entry);
      this.#scope.logger.info(
        { roomId: this.#scope.roomId, producerId, nodeId: origin.nodeId, srtp: transport.srtpParameters !== undefined },
        'producer piped in from a node',
      );
      return entry;
    } catch (error) {
      transport?.close();
      // The origin may have opened its end after all (an answer too late): let it close it.
      if (asked) this.#emitClosed(producerId, origin.nodeId, 'in', 'unpiped');
      throw toSfuError(error, 'UNAVAILABLE');
    }
  }

  #closeIn(pipe: PipeIn, reason: ProducerCloseReason): void {
    if (pipe.closed) return;
    pipe.closed = true;
    this.#in.delete(pipe.producer.id);
    this.#producers.remove(pipe.producer, reason);
    pipe.transport.close();
    this.#scope.logger.info(
      { roomId: this.#scope.roomId, producerId: pipe.producer.id, nodeId: pipe.nodeId, reason },
      'pipe from a node closed',
    );
    if (reason !== 'origin-closed' && reason !== 'origin-lost') {
      this.#emitClosed(pipe.producer.id, pipe.nodeId, 'in', reason);
    }
  }

  #closeOut(pipe: PipeOut, reason: PipeClosedEvent['reason']): void {
    if (pipe.closed) return;
    pipe.closed = true;
    this.#out.delete(outKey(pipe.producerId, pipe.nodeId));
    pipe.transport.close();
    this.#emitClosed(pipe.producerId, pipe.nodeId, 'out', reason);
  }

  #emitClosed(producerId: string, nodeId: string, direction: 'in' | 'out', reason: PipeClosedEvent['reason']): void {
    this.#scope.emit('pipeclosed', { roomId: this.#scope.roomId, producerId, nodeId, direction, reason });
  }

  #emitPaused(pipe: PipeOut, paused: boolean): void {
    if (pipe.closed) return;
    this.#scope.emit('pipepaused', {
      roomId: this.#scope.roomId,
      producerId: pipe.producerId,
      nodeId: pipe.nodeId,
      paused,
    });
  }
}

/** `worker-died` when the router's worker is gone, else `room-closed`: what closes a router under a pipe. */
function closedUnder(router: RoomRouter): 'worker-died' | 'room-closed' {
  return router.pooled.alive ? 'room-closed' : 'worker-died';
}

function outKey(producerId: string, nodeId: string): string {
  return `${producerId}\n${nodeId}`;
}

function endOf(transport: types.PipeTransport): PipeEnd {
  const { tuple, srtpParameters } = transport;
  return {
    ip: tuple.localAddress,
    port: tuple.localPort,
    ...(srtpParameters ? { srtpParameters } : {}),
  };
}

/** Whether a node asking for a pipe from its pipe address `address` encrypts it. */
function encrypts(mode: PipeSrtpMode, address: string): boolean {
  if (mode === 'auto') return !isLoopback(address);
  return mode === 'always';
}

/** Whether `address` is an IP of the loopback network (a host name never is). */
function isLoopback(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return address.startsWith('127.');
  if (family === 6) return address === '::1' || address.toLowerCase().startsWith('::ffff:127.');
  return false;
}
