/** `chat.*`: room chat, a durable event. */
import { z } from 'zod';
import { defineMethod } from './method.js';

export const chatSendSchema = z.strictObject({ text: z.string().min(1).max(2000) });

export const chatMethods = {
  'chat.send': defineMethod({
    description: 'Send a chat message to the room (1-2000 characters).',
    roles: 'all',
    data: chatSendSchema,
    result: z.object({ messageId: z.string(), seq: z.number().int() }),
    handle: (ctx, data) => ctx.rooms.chat(ctx.session, data.text),
  }),
};
