/** `moderation.*`: kick, mute and role changes, moderators only. */
import { z } from 'zod';
import { emptySchema, idSchema, roleSchema } from './common.js';
import { defineMethod } from './method.js';

const target = z.strictObject({ participantId: idSchema });

export const moderationMethods = {
  'moderation.kick': defineMethod({
    description: 'Remove a participant (closed with 4003; may not rejoin for KICK_BAN_MS).',
    roles: ['moderator'],
    data: target,
    result: emptySchema,
    handle: async (ctx, data) => {
      await ctx.rooms.kick(ctx.session, data.participantId);
      return {};
    },
  }),
  'moderation.mute': defineMethod({
    description: "Pause all of a participant's producers.",
    roles: ['moderator'],
    data: target,
    result: emptySchema,
    handle: async (ctx, data) => {
      await ctx.rooms.mute(ctx.session, data.participantId);
      return {};
    },
  }),
  'moderation.setRole': defineMethod({
    description: "Change a participant's role; takes effect at once (a demoted publisher's producers close).",
    roles: ['moderator'],
    data: z.strictObject({ participantId: idSchema, role: roleSchema }),
    result: emptySchema,
    handle: async (ctx, data) => {
      await ctx.rooms.setRole(ctx.session, data.participantId, data.role);
      return {};
    },
  }),
};
