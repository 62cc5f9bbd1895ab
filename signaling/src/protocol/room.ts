/** `room.*`: joining (with resume) and leaving a room. */
import { z } from 'zod';
import type { RoomConnection } from '../rooms/room-connection.js';
import { emptySchema, idSchema, participantSchema, roleSchema } from './common.js';
import { defineMethod } from './method.js';
import { producerInfoSchema } from './sfu.js';

/** The identity of a room's event history; `seq` guarantees hold within one epoch. */
const epochSchema = z.string().min(1).max(64);

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
      epoch: epochSchema
        .optional()
        .describe('the epoch `lastSeq` belongs to; another epoch than the room’s joins afresh (`resumed: false`)'),
    })
    .optional(),
});
export type JoinData = z.output<typeof joinDataSchema>;

export const joinResultSchema = z.object({
  sessionId: z.string(),
  participantId: z.string(),
  roomId: z.string(),
  role: roleSchema,
  participants: z.array(participantSchema).describe('may be truncated in large rooms'),
  participantCount: z.number().int(),
  producers: z.array(producerInfoSchema),
  lastSeq: z.number().int(),
  epoch: z.string().describe('the identity of the room’s event history `lastSeq` belongs to (cluster addition)'),
  routerRtpCapabilities: z.unknown().describe('mediasoup RtpCapabilities; null when media is off'),
  resumed: z.boolean(),
});
export type JoinResult = z.input<typeof joinResultSchema>;

/** What `room.*` asks of the room service. */
export interface RoomMembership {
  join(connection: RoomConnection, data: JoinData): Promise<JoinResult>;
  leave(connection: RoomConnection, reason: 'left' | 'disconnected'): Promise<void>;
}

type RoomContext = { session: RoomConnection; rooms: RoomMembership };

export const roomMethods = {
  'room.join': defineMethod({
    description: 'Join the room named by the token; with `resume`, replay missed durable events first.',
    roles: 'all',
    data: joinDataSchema,
    result: joinResultSchema,
    handle: (ctx: RoomContext, data) => ctx.rooms.join(ctx.session, data),
  }),
  'room.leave': defineMethod({
    description: 'Leave the room; the socket stays open and may join again.',
    roles: 'all',
    data: emptySchema,
    result: emptySchema,
    handle: async (ctx: RoomContext) => {
      await ctx.rooms.leave(ctx.session, 'left');
      return {};
    },
  }),
};
