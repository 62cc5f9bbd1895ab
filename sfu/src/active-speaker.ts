import type { types } from 'mediasoup';

import type { RoomProducer } from './room-producers.js';
import type { RoomRouter, RoomRouters } from './room-routers.js';
import type { RoomScope } from './room-scope.js';

/** Interval of the observer's dominant speaker decisions, in milliseconds. */
const SPEAKER_INTERVAL_MS = 300;

/** Options of {@link ActiveSpeaker}. */
export type ActiveSpeakerOptions = {
  scope: RoomScope;
  routers: RoomRouters;
  /** The room's producers now, by room producer id. */
  producers: () => ReadonlyMap<string, RoomProducer>;
};

/**
 * The dominant speaker of one room: an `ActiveSpeakerObserver` on the room's primary router with
 * every audio producer added (piped ones by their id inside that router). Emits `activespeaker`
 * when the speaker changes, with `participantId: null` when the speaker's last audio producer
 * closes or the primary router is lost (the observer then starts over on the new primary).
 */
export class ActiveSpeaker {
  #scope: RoomScope;
  #routers: RoomRouters;
  #producers: () => ReadonlyMap<string, RoomProducer>;
  /** The observer of each router that got one (only ever the primary of its time). */
  #observers = new WeakMap<RoomRouter, Promise<types.ActiveSpeakerObserver>>();
  #participantId: string | null = null;

  constructor(options: ActiveSpeakerOptions) {
    this.#scope = options.scope;
    this.#routers = options.routers;
    this.#producers = options.producers;
  }

  /** Adds an audio producer to the observer of the primary router (no-op for video). Never throws. */
  async add(producer: RoomProducer): Promise<void> {
    const primary = this.#routers.all[0];
    if (!primary || producer.kind !== 'audio' || producer.originNodeId !== undefined) return;
    try {
      const localId = await this.#routers.localProducerId(producer, primary);
      let observing = this.#observers.get(primary);
      if (!observing) {
        observing = this.#observe(primary);
        this.#observers.set(primary, observing);
      }
      const observer = await observing;
      if (!observer.closed && !producer.closed) await observer.addProducer({ producerId: localId });
    } catch (error) {
      this.#scope.logger.warn(
        { roomId: this.#scope.roomId, producerId: producer.id, err: error },
        'active speaker observer: cannot add producer',
      );
    }
  }

  /** A producer closed: nobody speaks any more when it was the speaker's last audio producer. */
  producerClosed(producer: RoomProducer): void {
    if (producer.kind !== 'audio' || this.#participantId !== producer.participantId) return;
    const stillSpeaking = [...this.#producers().values()].some(
      (p) => p.kind === 'audio' && p.participantId === producer.participantId,
    );
    if (!stillSpeaking) this.#set(null);
  }

  /** The observer went with the primary router: start over on the new primary. */
  primaryLost(): void {
    this.#set(null);
    for (const producer of this.#producers().values()) {
      if (producer.kind === 'audio') void this.add(producer);
    }
  }

  async #observe(router: RoomRouter): Promise<types.ActiveSpeakerObserver> {
    const observer = await router.router.createActiveSpeakerObserver({ interval: SPEAKER_INTERVAL_MS });
    observer.on('dominantspeaker', ({ producer }) => {
      const originId = router.originProducerIds.get(producer.id) ?? producer.id;
      const participantId = this.#producers().get(originId)?.participantId;
      if (participantId !== undefined) this.#set(participantId);
    });
    return observer;
  }

  #set(participantId: string | null): void {
    if (this.#participantId === participantId) return;
    this.#participantId = participantId;
    this.#scope.emit('activespeaker', { roomId: this.#scope.roomId, participantId });
  }
}
