import type { types } from 'mediasoup';

import { SfuError, toSfuError } from './errors.js';
import type { ConsumerCloseReason, ConsumerInfo } from './media-types.js';
import type { RoomParticipants } from './room-participants.js';
import type { RoomProducer } from './room-producers.js';
import type { RoomRouters } from './room-routers.js';
import type { RoomScope } from './room-scope.js';
import { closeReason, type RoomTransport } from './room-transports.js';

/** One consumer of a room producer, on a recv transport of its owner. */
export type RoomConsumer = {
  readonly id: string;
  readonly participantId: string;
  readonly producer: RoomProducer;
  readonly consumer: types.Consumer;
  readonly transport: RoomTransport;
};

/** Options of {@link RoomConsumers}. */
export type RoomConsumersOptions = {
  scope: RoomScope;
  participants: RoomParticipants;
  routers: RoomRouters;
  /** A consumer of `producerId` closed. */
  onConsumerGone?: (producerId: string) => void;
};

/**
 * The consumers of one room, by id.
 *
 * - A producer is consumed at most once per transport: consuming it again on the same transport
 *   (or while the first consume is still under way) answers the existing consumer, paused again
 *   so that the answer is the same as the first one's — a paused consumer the client resumes when
 *   ready. No second consumer is created and the cap is not charged again.
 * - A participant holds at most `consumers` consumers in the room (its limit in
 *   {@link RoomParticipants}), counting those being created.
 * - A consumer is created on its transport's router, the producer piped there first when needed.
 */
export class RoomConsumers {
  #scope: RoomScope;
  #participants: RoomParticipants;
  #routers: RoomRouters;
  #onConsumerGone: (producerId: string) => void;
  #consumers = new Map<string, RoomConsumer>();

  constructor(options: RoomConsumersOptions) {
    this.#scope = options.scope;
    this.#participants = options.participants;
    this.#routers = options.routers;
    this.#onConsumerGone = options.onConsumerGone ?? (() => {});
  }

  /** Number of consumers of the room. */
  get size(): number {
    return this.#consumers.size;
  }

  /** A consumer of `participantId`; `NOT_FOUND` when unknown, `FORBIDDEN` when someone else's. */
  owned(participantId: string, consumerId: string): RoomConsumer {
    this.#scope.assertOpen();
    const entry = this.#consumers.get(consumerId);
    if (!entry) throw new SfuError('NOT_FOUND', `unknown consumer ${consumerId}`);
    if (entry.participantId !== participantId) throw new SfuError('FORBIDDEN', 'not the owner of this consumer');
    return entry;
  }

  /**
   * The participant's consumer of `producer` on its recv `transport`: created paused, or the one
   * the transport already has.
   */
  async consume(
    participantId: string,
    transport: RoomTransport,
    producer: RoomProducer,
    rtpCapabilities: types.RtpCapabilities,
  ): Promise<RoomConsumer> {
    for (;;) {
      const existing = transport.consumers.get(producer.id);
      if (existing) return this.#again(existing);
      const creating = transport.consuming.get(producer.id);
      if (!creating) break;
      // The consume under way decides: its consumer is answered again, or (when it failed) this
      // request tries on its own.
      await creating.catch(() => undefined);
      if (transport.closed) throw new SfuError('NOT_FOUND', `transport ${transport.id} closed`);
      if (producer.closed) throw new SfuError('NOT_FOUND', `producer ${producer.id} closed`);
    }
    const participant = this.#participants.reserve(participantId, 'consumers');
    const creating = this.#create(participantId, transport, producer, rtpCapabilities).finally(() => {
      transport.consuming.delete(producer.id);
      this.#participants.release(participant, 'consumers');
    });
    transport.consuming.set(producer.id, creating);
    return creating;
  }

  /** Resumes a consumer of `participantId` (consumers start paused). */
  async resume(participantId: string, consumerId: string): Promise<void> {
    const entry = this.owned(participantId, consumerId);
    try {
      await entry.consumer.resume();
    } catch (error) {
      throw toSfuError(error);
    }
  }

  /** Sets the preferred simulcast/SVC layers of a consumer of `participantId`. */
  async setLayers(
    participantId: string,
    consumerId: string,
    spatialLayer: number,
    temporalLayer?: number,
  ): Promise<void> {
    const entry = this.owned(participantId, consumerId);
    try {
      await entry.consumer.setPreferredLayers(
        temporalLayer === undefined ? { spatialLayer } : { spatialLayer, temporalLayer },
      );
    } catch (error) {
      throw toSfuError(error, 'BAD_REQUEST');
    }
  }

  /** Closes a consumer and reports it once (`consumerclosed`). */
  remove(entry: RoomConsumer, reason: ConsumerCloseReason): void {
    if (this.#consumers.get(entry.id) !== entry) return;
    this.#consumers.delete(entry.id);
    entry.transport.consumers.delete(entry.producer.id);
    entry.producer.consumers.delete(entry);
    this.#participants.find(entry.participantId)?.consumers.delete(entry);
    entry.consumer.close();
    this.#scope.emit('consumerclosed', {
      roomId: this.#scope.roomId,
      participantId: entry.participantId,
      consumerId: entry.id,
      producerId: entry.producer.id,
      reason,
    });
    this.#onConsumerGone(entry.producer.id);
  }

  async #create(
    participantId: string,
    transport: RoomTransport,
    producer: RoomProducer,
    rtpCapabilities: types.RtpCapabilities,
  ): Promise<RoomConsumer> {
    const router = transport.router;
    let localProducerId: string;
    try {
      localProducerId = await this.#routers.localProducerId(producer, router);
    } catch (error) {
      throw toSfuError(error, 'UNAVAILABLE');
    }
    let canConsume: boolean;
    try {
      canConsume = router.router.canConsume({ producerId: localProducerId, rtpCapabilities });
    } catch {
      canConsume = false;
    }
    if (!canConsume)
      throw new SfuError('BAD_REQUEST', `cannot consume producer ${producer.id} with these rtpCapabilities`);

    let consumer: types.Consumer;
    try {
      consumer = await transport.transport.consume({
        producerId: localProducerId,
        rtpCapabilities,
        paused: true,
        appData: { participantId, producerId: producer.id },
      });
    } catch (error) {
      throw toSfuError(error, 'BAD_REQUEST');
    }
    if (transport.closed || producer.closed) {
      consumer.close();
      throw new SfuError('NOT_FOUND', `producer ${producer.id} closed`);
    }

    const entry: RoomConsumer = { id: consumer.id, participantId, producer, consumer, transport };
    this.#consumers.set(entry.id, entry);
    transport.consumers.set(producer.id, entry);
    producer.consumers.add(entry);
    this.#participants.get(participantId).consumers.add(entry);
    consumer.on('producerclose', () => this.remove(entry, 'producer-closed'));
    consumer.on('transportclose', () => this.remove(entry, closeReason(entry.transport, 'transport-closed')));
    consumer.on('layerschange', (layers) => {
      // No layers means nothing is forwarded (producer paused or gone quiet): not a layer change.
      if (!layers) return;
      this.#scope.emit('consumerlayerschanged', {
        roomId: this.#scope.roomId,
        participantId,
        consumerId: entry.id,
        spatialLayer: layers.spatialLayer,
        temporalLayer: layers.temporalLayer ?? 0,
      });
    });
    return entry;
  }

  /** The transport's consumer of a producer, asked for again: paused again, as a new one would be. */
  async #again(entry: RoomConsumer): Promise<RoomConsumer> {
    if (entry.consumer.paused) return entry;
    try {
      await entry.consumer.pause();
    } catch (error) {
      throw toSfuError(error);
    }
    return entry;
  }
}

/** What `consume` answers about a consumer. The consumer is paused (see {@link RoomConsumers}). */
export function consumerInfo(entry: RoomConsumer): ConsumerInfo {
  return {
    consumerId: entry.id,
    producerId: entry.producer.id,
    kind: entry.consumer.kind,
    rtpParameters: entry.consumer.rtpParameters,
    paused: true,
    producerPaused: entry.consumer.producerPaused,
  };
}
