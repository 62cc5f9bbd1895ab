/** `chat.*`: room chat, a durable event. */
import { z } from 'zod';
import type { RoomConnection } from '../rooms/room-connection.js';
import { defineMethod } from './method.js';

export const chatSendSchema = z.strictObject({ text: z.string().min(1).max(2000) });
const chatSendResultSchema = z.object({ messageId: z.string(), seq: z.number().int() });

/** What `chat.*` asks of the room service. */
export interface ChatRooms {
  chat(connection: RoomConnection, text: string): Promise<z.input<typeof chatSendResultSchema>>;
}

export const chatMethods = {
  'chat.send': defineMethod({
    description: 'Send a chat message to the room (1-2000 characters).',
    roles: 'all',
    data: chatSendSchema,
    result: chatSendResultSchema,
    handle: (ctx: { session: RoomConnection; rooms: ChatRooms }, data) => ctx.rooms.chat(ctx.session, data.text),
  }),
};
