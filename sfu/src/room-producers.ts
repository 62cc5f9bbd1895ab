import type { types } from 'mediasoup';

import type { ActiveSpeaker } from './active-speaker.js';
import { SfuError, toSfuError } from './errors.js';
import type { MediaSource, ProduceOptions, ProducerCloseReason, ProducerSummary } from './media-types.js';
import type { RoomConsumer, RoomConsumers } from './room-consumers.js';
import type { RoomParticipants } from './room-participants.js';
import type { RoomRouter, RoomRouters } from './room-routers.js';
import type { RoomScope } from './room-scope.js';
import { closeReason, type RoomTransport } from './room-transports.js';

/**
 * One producer of a room: on a send transport of its owner, or piped in from the node that holds
 * its owner's transport (same id there and here).
 */
export type RoomProducer = {
  readonly id: string;
  readonly participantId: string;
  readonly kind: types.MediaKind;
  readonly source: MediaSource;
  readonly producer: types.Producer;
  /** The router that holds it under its own id (other routers of the room hold pipes of it). */
  readonly router: RoomRouter;
  /** Its owner's send transport; undefined for a producer piped in from another node. */
  readonly transport: RoomTransport | undefined;
  /** The node it is piped in from; undefined when its owner publishes on this node. */
  readonly originNodeId: string | undefined;
  readonly consumers: Set<RoomConsumer>;
  /** Set once the producer left the room's books. */
  closed: boolean;
};

/** Options of {@link RoomProducers}. */
export type RoomProducersOptions = {
  scope: RoomScope;
  participants: RoomParticipants;
  routers: RoomRouters;
  speaker: ActiveSpeaker;
  consumers: RoomConsumers;
};

const sourceKinds: Record<MediaSource, types.MediaKind> = {
  camera: 'video',
  screen: 'video',
  microphone: 'audio',
  'screen-audio': 'audio',
};

/** Throws `SfuError('BAD_REQUEST')` unless `source` carries media of `kind`. */
export function assertSourceCarries(source: MediaSource, kind: types.MediaKind): void {
  if (sourceKinds[source] !== kind) {
    throw new SfuError('BAD_REQUEST', `source '${source}' carries ${sourceKinds[source] ?? 'nothing'}, not ${kind}`);
  }
}

/**
 * The producers of one room, by id. A producer is piped into every other router of the room as it
 * is created (and into each router added later), and audio goes to the active speaker observer.
 * Closing one closes its consumers first; each is reported once through `producerclosed`.
 */
export class RoomProducers {
  #scope: RoomScope;
  #participants: RoomParticipants;
  #routers: RoomRouters;
  #speaker: ActiveSpeaker;
  #consumers: RoomConsumers;
  #producers = new Map<string, RoomProducer>();

  constructor(options: RoomProducersOptions) {
    this.#scope = options.scope;
    this.#participants = options.participants;
    this.#routers = options.routers;
    this.#speaker = options.speaker;
    this.#consumers = options.consumers;
  }

  /** The room's producers, by id. */
  get all(): ReadonlyMap<string, RoomProducer> {
    return this.#producers;
  }

  /** A producer by id; `SfuError('NOT_FOUND')` when unknown. */
  get(producerId: string): RoomProducer {
    const entry = this.#producers.get(producerId);
    if (!entry) throw new SfuError('NOT_FOUND', `unknown producer ${producerId}`);
    return entry;
  }

  /** A producer its owner, or anyone `asModerator`, may pause, resume or close. */
  controlled(participantId: string, producerId: string, asModerator: boolean): RoomProducer {
    this.#scope.assertOpen();
    const entry = this.get(producerId);
    if (entry.originNodeId !== undefined) {
      throw new SfuError('NOT_FOUND', `producer ${producerId} is controlled on node ${entry.originNodeId}`);
    }
    if (!asModerator && entry.participantId !== participantId) {
      throw new SfuError('FORBIDDEN', 'not the owner of this producer');
    }
    return entry;
  }

  /** Creates a producer on one of the participant's send transports; limited per participant. */
  async produce(participantId: string, transport: RoomTransport, options: ProduceOptions): Promise<RoomProducer> {
    const { kind, rtpParameters, source } = options;
    const participant = this.#participants.reserve(participantId, 'producers');
    let producer: types.Producer;
    try {
      producer = await transport.transport.produce({ kind, rtpParameters, appData: { participantId, source } });
    } catch (error) {
      throw toSfuError(error, 'BAD_REQUEST');
    } finally {
      this.#participants.release(participant, 'producers');
    }
    if (transport.closed) {
      producer.close();
      throw new SfuError('UNAVAILABLE', 'transport closed while producing');
    }

    const entry: RoomProducer = {
      id: producer.id,
      participantId,
      kind,
      source,
      producer,
      router: transport.router,
      transport,
      originNodeId: undefined,
      consumers: new Set(),
      closed: false,
    };
    this.#producers.set(entry.id, entry);
    transport.producers.add(entry);
    this.#participants.get(participantId).producers.add(entry);
    this.#routers.addOrigin(entry);
    producer.on('transportclose', () => this.remove(entry, closeReason(transport, 'transport-closed')));

    await this.#routers.pipeEverywhere(entry);
    if (kind === 'audio') await this.#speaker.add(entry);
    this.#scope.logger.debug(
      { roomId: this.#scope.roomId, participantId, producerId: entry.id, kind, source },
      'producer created',
    );
    return entry;
  }

  /**
   * Takes a producer piped in from another node into the room's books: consumable by its id, piped
   * into the room's other routers like a local one. Not listed, not controlled here, and never fed
   * to the active speaker observer (its own node observes it).
   */
  async adopt(entry: RoomProducer): Promise<void> {
    this.#producers.set(entry.id, entry);
    this.#routers.addOrigin(entry);
    await this.#routers.pipeEverywhere(entry);
  }

  /** Pauses a producer. */
  async pause(entry: RoomProducer): Promise<void> {
    try {
      await entry.producer.pause();
    } catch (error) {
      throw toSfuError(error);
    }
  }

  /** Resumes a producer. */
  async resume(entry: RoomProducer): Promise<void> {
    try {
      await entry.producer.resume();
    } catch (error) {
      throw toSfuError(error);
    }
  }

  /** Pauses every unpaused producer of a participant (moderation mute); returns the ids it paused. */
  async pauseParticipant(participantId: string): Promise<string[]> {
    const producers = [...(this.#participants.find(participantId)?.producers ?? [])].filter((p) => !p.producer.paused);
    const results = await Promise.allSettled(producers.map((p) => p.producer.pause()));
    return producers.filter((_, i) => results[i]?.status === 'fulfilled').map((p) => p.id);
  }

  /** Closes every producer of a participant; returns their ids. */
  closeParticipant(participantId: string, reason: ProducerCloseReason): string[] {
    const producers = [...(this.#participants.find(participantId)?.producers ?? [])];
    for (const producer of producers) this.remove(producer, reason);
    return producers.map((p) => p.id);
  }

  /** The room's producers published on this node, as listed to clients (piped-in ones left out). */
  list(): ProducerSummary[] {
    return [...this.#producers.values()]
      .filter((p) => p.originNodeId === undefined)
      .map((p) => ({
        producerId: p.id,
        participantId: p.participantId,
        kind: p.kind,
        source: p.source,
        paused: p.producer.paused,
      }));
  }

  /** Closes a producer, its consumers first and its pipes after; reports it once (`producerclosed`). */
  remove(entry: RoomProducer, reason: ProducerCloseReason): void {
    if (entry.closed) return;
    entry.closed = true;
    this.#producers.delete(entry.id);
    entry.transport?.producers.delete(entry);
    this.#participants.find(entry.participantId)?.producers.delete(entry);
    for (const consumer of [...entry.consumers]) {
      this.#consumers.remove(
        consumer,
        closeReason(consumer.transport, reason === 'origin-lost' ? 'origin-lost' : 'producer-closed'),
      );
    }
    entry.producer.close();
    this.#routers.forgetProducer(entry);
    this.#speaker.producerClosed(entry);
    this.#scope.emit('producerclosed', {
      roomId: this.#scope.roomId,
      participantId: entry.participantId,
      producerId: entry.id,
      reason,
    });
  }
}
