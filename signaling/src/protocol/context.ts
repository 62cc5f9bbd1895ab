/**
 * What a handler sees: the calling session and the services it may use. Handlers change room
 * state only through the room service.
 */
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { RoomService } from '../rooms/room-service.js';
import type { MediaGateway } from '../rooms/media-gateway.js';
import type { ClientSession } from '../gateway/client-session.js';

export interface HandlerContext {
  readonly session: ClientSession;
  readonly rooms: RoomService;
  /** Undefined when this node runs without media. */
  readonly media: MediaGateway | undefined;
  readonly config: Config;
  readonly log: Logger;
}
