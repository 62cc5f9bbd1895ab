/**
 * The access check a `room.join` passes when the trading platform's backend decides who joins
 * (`BACKEND_URL`). The node plugs the backend bridge in here; without one, the token alone
 * decides. The check answers within its own time budget and never throws.
 */
import { ProtocolError } from '../errors.js';
import type { Role } from '../protocol/common.js';
import type { RoomConnection } from './room-connection.js';

/** The backend's word on one join. */
export type RoomAccessDecision =
  /** Allowed; `role` (when given) replaces the token's, `maxParticipants` limits the room. */
  | { readonly kind: 'allowed'; readonly role: Role | undefined; readonly maxParticipants: number | undefined }
  | { readonly kind: 'denied' }
  /** The backend could not answer; the signed token alone decides (`BACKEND_FAILURE_MODE=token`). */
  | { readonly kind: 'token' }
  /** The backend could not answer; joins are refused (`BACKEND_FAILURE_MODE=deny`). */
  | { readonly kind: 'unavailable'; readonly retryAfterMs: number };

/** Who decides whether a user joins a room. */
export interface RoomAccess {
  check(roomId: string, userId: string): Promise<RoomAccessDecision>;
}

/** What a join may go on with: the role it starts from and the room's participant limit. */
export interface Admission {
  readonly role: Role;
  readonly maxParticipants: number;
}

/**
 * Asks `access` (when there is one) about the connection's user and room.
 * @throws ProtocolError `FORBIDDEN` when the backend refuses, `UNAVAILABLE` when it cannot
 *   answer and the failure mode is `deny`.
 */
export async function admit(
  access: RoomAccess | undefined,
  connection: RoomConnection,
  maxParticipants: number,
): Promise<Admission> {
  const token: Admission = { role: connection.tokenRole, maxParticipants };
  if (!access) return token;
  const decision = await access.check(connection.roomId, connection.userId);
  switch (decision.kind) {
    case 'allowed':
      return {
        role: decision.role ?? connection.tokenRole,
        maxParticipants: Math.min(maxParticipants, decision.maxParticipants ?? maxParticipants),
      };
    case 'denied':
      throw new ProtocolError('FORBIDDEN', 'the platform does not allow you in this room');
    case 'token':
      return token;
    case 'unavailable':
      throw new ProtocolError('UNAVAILABLE', 'room access cannot be checked right now', {
        retryAfterMs: decision.retryAfterMs,
      });
  }
}
