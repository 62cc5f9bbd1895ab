/** `room.*`: joining (with resume) and leaving a room. */
import { z } from 'zod';
import { emptySchema, idSchema, participantSchema, roleSchema } from './common.js';
import { defineMethod } from './method.js';
import { producerInfoSchema } from './sfu.js';

export const joinDataSchema = z.strictObject({
  displayName: z
    .string()
    .trim()
    .min(1)
    .max(64)
    .optional()
    .describe(
      'used when the token carries no `name`; control, bidi and zero-width characters are removed, and a name left empty becomes the user id',
    ),
  resume: z
    .strictObject({
      sessionId: idSchema,
      lastSeq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
    })
    .optional(),
});

export const joinResultSchema = z.object({
  sessionId: z.string(),
  participantId: z.string(),
  roomId: z.string(),
  role: roleSchema,
  participants: z.array(participantSchema).describe('may be truncated in large rooms'),
  participantCount: z.number().int(),
  producers: z.array(producerInfoSchema),
  lastSeq: z.number().int(),
  routerRtpCapabilities: z.unknown().describe('mediasoup RtpCapabilities; null when media is off'),
  resumed: z.boolean(),
});

export const roomMethods = {
  'room.join': defineMethod({
    description: 'Join the room named by the token; with `resume`, replay missed durable events first.',
    roles: 'all',
    data: joinDataSchema,
    result: joinResultSchema,
    handle: (ctx, data) => ctx.rooms.join(ctx.session, data),
  }),
  'room.leave': defineMethod({
    description: 'Leave the room; the socket stays open and may join again.',
    roles: 'all',
    data: emptySchema,
    result: emptySchema,
    handle: async (ctx) => {
      await ctx.rooms.leave(ctx.session, 'left');
      return {};
    },
  }),
};
