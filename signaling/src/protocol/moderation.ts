/** `moderation.*`: kick, mute and role changes, moderators only. */
import { z } from 'zod';
import type { RoomConnection } from '../rooms/room-connection.js';
import { emptySchema, idSchema, roleSchema, type Role } from './common.js';
import { defineMethod } from './method.js';

const target = z.strictObject({ participantId: idSchema });

/** What `moderation.*` asks of the room service; the target may be connected to any node. */
export interface ModerationRooms {
  kick(connection: RoomConnection, participantId: string): Promise<void>;
  mute(connection: RoomConnection, participantId: string): Promise<void>;
  setRole(connection: RoomConnection, participantId: string, role: Role): Promise<void>;
}

type ModerationContext = { session: RoomConnection; rooms: ModerationRooms };

export const moderationMethods = {
  'moderation.kick': defineMethod({
    description: 'Remove a participant (closed with 4003; may not rejoin for KICK_BAN_MS).',
    roles: ['moderator'],
    data: target,
    result: emptySchema,
    handle: async (ctx: ModerationContext, data) => {
      await ctx.rooms.kick(ctx.session, data.participantId);
      return {};
    },
  }),
  'moderation.mute': defineMethod({
    description: "Pause all of a participant's producers.",
    roles: ['moderator'],
    data: target,
    result: emptySchema,
    handle: async (ctx: ModerationContext, data) => {
      await ctx.rooms.mute(ctx.session, data.participantId);
      return {};
    },
  }),
  'moderation.setRole': defineMethod({
    description: "Change a participant's role; takes effect at once (a demoted publisher's producers close).",
    roles: ['moderator'],
    data: z.strictObject({ participantId: idSchema, role: roleSchema }),
    result: emptySchema,
    handle: async (ctx: ModerationContext, data) => {
      await ctx.rooms.setRole(ctx.session, data.participantId, data.role);
      return {};
    },
  }),
};
