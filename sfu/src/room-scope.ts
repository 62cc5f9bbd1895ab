import type { Logger } from 'pino';

import type { RoomMediaEvents } from './media-types.js';

/**
 * What the parts of one room's media (routers, transports, producers, consumers, active speaker)
 * share with the `RoomMedia` that ties them: the room's id and logger, whether it closed, and the
 * outlet of its events.
 */
export interface RoomScope {
  readonly roomId: string;
  readonly logger: Logger;
  /** Whether the room's media closed. */
  readonly closed: boolean;
  /** Throws `SfuError('NOT_FOUND')` once the room closed. */
  assertOpen(): void;
  /** Emits one of the room's events (nothing after a silent close). */
  emit<K extends keyof RoomMediaEvents & string>(eventName: K, ...args: RoomMediaEvents[K]): void;
}
