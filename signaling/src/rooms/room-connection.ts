/**
 * How the room service reaches a client: a narrow view of one connection that the gateway's
 * session implements. The room service keeps membership itself (keyed by connection) and never
 * writes into the connection.
 */
import type { PreparedFrame } from '../gateway/prepared-frame.js';
import type { Role } from '../protocol/common.js';
import type { EphemeralEventName, EventData } from '../protocol/notifications.js';

export interface RoomConnection {
  /** Unique per connection. */
  readonly connectionId: string;
  /** From the access token: who connects, and the only room it may join. */
  readonly userId: string;
  readonly roomId: string;
  /** The role in the current token (a moderator's role change for the room wins over it). */
  readonly tokenRole: Role;
  /** The token's display name, when it has one. */
  readonly tokenName: string | undefined;
  /** True once the connection closed or is closing: nothing more reaches it. */
  readonly closed: boolean;
  /** Writes an encoded notification frame (built once, shared by every connection of the room). */
  sendFrame(payload: string | Buffer | PreparedFrame): void;
  /** Encodes and writes one ephemeral notification. */
  sendEvent<E extends EphemeralEventName>(event: E, data: EventData<E>): void;
  /** Closes the connection with a contract close code; safe to call twice. */
  close(code: number, reason?: string): void;
}
