import { SfuError } from './errors.js';
import type { RoomConsumer } from './room-consumers.js';
import type { RoomProducer } from './room-producers.js';
import type { RoomTransport } from './room-transports.js';

/** How many transports, producers and consumers one participant may hold at once in a room. */
export type ParticipantLimits = { transports: number; producers: number; consumers: number };

/** What a participant holds, and is limited in. */
export type Holding = keyof ParticipantLimits;

/** One participant's media in a room, and its creations in flight (counted against its limits). */
export type RoomParticipant = {
  readonly transports: Set<RoomTransport>;
  readonly producers: Set<RoomProducer>;
  readonly consumers: Set<RoomConsumer>;
  /** Creations in flight, by what they create. */
  readonly pending: Record<Holding, number>;
  /** Bumped when the participant leaves: creations in flight from before are then discarded. */
  generation: number;
};

const singular: Record<Holding, string> = { transports: 'transport', producers: 'producer', consumers: 'consumer' };

/**
 * The participants of one room's media, by id: what each holds and creates, against the
 * per-participant limits. A limit counts creations in flight, so a burst of requests cannot
 * overshoot it.
 */
export class RoomParticipants {
  #limits: ParticipantLimits;
  #participants = new Map<string, RoomParticipant>();

  constructor(limits: ParticipantLimits) {
    this.#limits = limits;
  }

  /** The participant, created on first use. */
  get(participantId: string): RoomParticipant {
    let participant = this.#participants.get(participantId);
    if (!participant) {
      participant = {
        transports: new Set(),
        producers: new Set(),
        consumers: new Set(),
        pending: { transports: 0, producers: 0, consumers: 0 },
        generation: 0,
      };
      this.#participants.set(participantId, participant);
    }
    return participant;
  }

  /** The participant, when it holds or creates anything. */
  find(participantId: string): RoomParticipant | undefined {
    return this.#participants.get(participantId);
  }

  /**
   * Counts one creation of `what` in flight for the participant, or throws `SfuError('FORBIDDEN')`
   * naming the limit when it already holds and creates as many as allowed. {@link release} it once
   * the creation ended, whatever the outcome.
   */
  reserve(participantId: string, what: Holding): RoomParticipant {
    const participant = this.get(participantId);
    const limit = this.#limits[what];
    if (participant[what].size + participant.pending[what] >= limit) {
      throw new SfuError('FORBIDDEN', `${singular[what]} limit reached: at most ${limit} ${what} per participant`);
    }
    participant.pending[what] += 1;
    return participant;
  }

  /** Ends a creation counted by {@link reserve}. */
  release(participant: RoomParticipant, what: Holding): void {
    participant.pending[what] -= 1;
  }

  /**
   * The participant left (its transports closed): creations still in flight are discarded when
   * they complete, and the participant is forgotten once none is.
   */
  left(participantId: string): void {
    const participant = this.#participants.get(participantId);
    if (!participant) return;
    participant.generation += 1;
    if (Object.values(participant.pending).every((n) => n === 0)) this.#participants.delete(participantId);
  }
}
