/**
 * The reference receiver's access endpoint, answered from a JSON file:
 *
 * ```json
 * {
 *   "rooms": {
 *     "room-1": {
 *       "maxParticipants": 200,
 *       "users": { "alice": { "role": "presenter" }, "mallory": { "allowed": false } },
 *       "others": { "allowed": true }
 *     }
 *   },
 *   "otherRooms": { "allowed": false }
 * }
 * ```
 *
 * A listed user gets its entry (`allowed` defaults to true); anyone else in a listed room gets
 * the room's `others` (default: allowed); a room not listed answers `otherRooms` (default:
 * refused). The room's `maxParticipants` goes with every answer for it.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { BACKEND_ROLES, type AccessAnswer } from '../access/access-answer.js';
import type { RouteHandler } from './server.js';

const entrySchema = z.strictObject({
  allowed: z.boolean().default(true),
  role: z.enum(BACKEND_ROLES).optional(),
});

const roomSchema = z.strictObject({
  maxParticipants: z.number().int().min(0).optional(),
  users: z.record(z.string(), entrySchema).default({}),
  others: entrySchema.default({ allowed: true }),
});

export const accessPolicySchema = z.strictObject({
  rooms: z.record(z.string(), roomSchema).default({}),
  otherRooms: entrySchema.default({ allowed: false }),
});

/** The access file's content (input form: defaults may be left out). */
export type AccessPolicy = z.input<typeof accessPolicySchema>;

/** Who may join which room, with what role and limit; replaceable while the receiver runs. */
export class AccessTable {
  #policy: z.output<typeof accessPolicySchema>;
  readonly #file: string | undefined;

  /** @throws ZodError when the policy does not have the documented form. */
  constructor(policy: AccessPolicy, file?: string) {
    this.#policy = accessPolicySchema.parse(policy);
    this.#file = file;
  }

  /** Reads a policy file. @throws when it is missing, not JSON, or not of the documented form. */
  static async fromFile(path: string): Promise<AccessTable> {
    return new AccessTable(await readPolicy(path), path);
  }

  /** Reads the file again (the CLI does on SIGHUP). */
  async reload(): Promise<void> {
    if (this.#file) this.replace(await readPolicy(this.#file));
  }

  replace(policy: AccessPolicy): void {
    this.#policy = accessPolicySchema.parse(policy);
  }

  /** The answer for `userId` joining `roomId`. */
  decide(roomId: string, userId: string): AccessAnswer {
    const rooms = this.#policy.rooms;
    const room = Object.hasOwn(rooms, roomId) ? rooms[roomId] : undefined;
    if (!room)
      return {
        allowed: this.#policy.otherRooms.allowed,
        role: this.#policy.otherRooms.role,
        maxParticipants: undefined,
      };
    const entry = Object.hasOwn(room.users, userId) ? (room.users[userId] ?? room.others) : room.others;
    return { allowed: entry.allowed, role: entry.role, maxParticipants: room.maxParticipants };
  }
}

async function readPolicy(path: string): Promise<AccessPolicy> {
  return accessPolicySchema.parse(JSON.parse(await readFile(path, 'utf8')));
}

/**
 * `GET /rooms/:roomId/access?userId=…`: 401 without the bearer token (when one is set), 400
 * without a user id, else 200 with the table's answer (absent fields left out).
 */
export function accessRoute(
  table: AccessTable,
  token: string | undefined,
  print: (line: string) => void,
): RouteHandler {
  return ({ params, url, headers }) => {
    if (token !== undefined && !sameSecret(headers.authorization ?? '', `Bearer ${token}`)) {
      return { status: 401, body: { error: 'missing or wrong bearer token' } };
    }
    const userId = url.searchParams.get('userId');
    const roomId = params.roomId ?? '';
    if (!userId) return { status: 400, body: { error: 'userId is required' } };
    const answer = table.decide(roomId, userId);
    print(
      `access ${roomId} ${userId}: ${answer.allowed ? `allowed${answer.role ? ` as ${answer.role}` : ''}` : 'refused'}`,
    );
    return { status: 200, body: JSON.parse(JSON.stringify(answer)) as unknown };
  };
}

/** Constant-time comparison (of digests, so lengths do not leak either). */
function sameSecret(given: string, expected: string): boolean {
  const digest = (value: string): Buffer => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(given), digest(expected));
}
