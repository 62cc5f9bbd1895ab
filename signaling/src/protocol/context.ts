/**
 * What a handler sees: the calling session and the services it may use, each an interface —
 * the parts every method family names for itself, put together. The gateway's session, the room
 * service and the media gateway implement them. Handlers change room state only through the
 * room service.
 */
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { RoomConnection } from '../rooms/room-connection.js';
import type { AlertRooms } from './alert.js';
import type { ChatRooms } from './chat.js';
import type { HistoryRooms } from './history.js';
import type { ModerationRooms } from './moderation.js';
import type { RoomMembership } from './room.js';
import type { RefreshableSession } from './session.js';
import type { MediaHandlers } from './sfu.js';

/** The connection a request came in on. */
export interface HandlerSession extends RoomConnection, RefreshableSession {}

/** What the room, chat, alert and moderation handlers ask of the room service. */
export interface RoomHandlers extends RoomMembership, HistoryRooms, ChatRooms, AlertRooms, ModerationRooms {}

export type { MediaHandlers };

export interface HandlerContext {
  readonly session: HandlerSession;
  readonly rooms: RoomHandlers;
  /** Undefined when this node runs without media. */
  readonly media: MediaHandlers | undefined;
  readonly config: Config;
  readonly log: Logger;
}
