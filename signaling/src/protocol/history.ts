/** `room.history`: the room's recent chat and alerts, for participants who joined late. */
import { z } from 'zod';
import type { RoomConnection } from '../rooms/room-connection.js';
import { defineMethod, type EncodedResult } from './method.js';
import { durableEventSchemas } from './notifications.js';

/** The kinds of history a participant can ask for, and the event each stands for. */
export const HISTORY_KINDS = { chat: 'chat.message', alert: 'alert.published' } as const;
export type HistoryKind = keyof typeof HISTORY_KINDS;

/** Most events one `room.history` answers with. */
export const HISTORY_LIMIT_MAX = 100;

export const historyDataSchema = z.strictObject({
  kinds: z
    .array(z.enum(['chat', 'alert']))
    .min(1)
    .max(2)
    .optional()
    .describe('default: both'),
  beforeSeq: z
    .number()
    .int()
    .min(1)
    .max(Number.MAX_SAFE_INTEGER)
    .optional()
    .describe('only events older than this `seq`; default: the newest'),
  limit: z.number().int().min(1).max(HISTORY_LIMIT_MAX).optional().describe('default 50'),
});
export type HistoryData = z.output<typeof historyDataSchema>;

const historyEventSchema = z.discriminatedUnion('event', [
  z.object({ event: z.literal('chat.message'), data: durableEventSchemas['chat.message'], seq: z.number().int() }),
  z.object({
    event: z.literal('alert.published'),
    data: durableEventSchemas['alert.published'],
    seq: z.number().int(),
  }),
]);

export const historyResultSchema = z.object({
  events: z.array(historyEventSchema).describe('oldest first, exactly the notifications delivered live'),
  hasMore: z.boolean().describe('older matching events are still retained: ask again with `beforeSeq`'),
  nextBeforeSeq: z.number().int().optional().describe('with `hasMore`: the `beforeSeq` of the next (older) page'),
  truncated: z.boolean().describe('retention already dropped events of this epoch'),
  epoch: z.string().describe('the epoch the events belong to: only the current epoch is served'),
});
export type HistoryResult = z.input<typeof historyResultSchema>;

/** What `room.history` asks of the room service. */
export interface HistoryRooms {
  history(connection: RoomConnection, data: HistoryData): Promise<EncodedResult<HistoryResult>>;
}

export const historyMethods = {
  'room.history': defineMethod({
    description: 'The newest retained chat messages and alerts before `beforeSeq`, oldest first (page backwards).',
    roles: 'all',
    data: historyDataSchema,
    result: historyResultSchema,
    handle: (ctx: { session: RoomConnection; rooms: HistoryRooms }, data) => ctx.rooms.history(ctx.session, data),
  }),
};
