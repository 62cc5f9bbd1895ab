/** `session.refresh` and `ping`. */
import { z } from 'zod';
import { emptySchema } from './common.js';
import { defineMethod } from './method.js';

/** The connection as `session.refresh` needs it. */
export interface RefreshableSession {
  /** Replaces the token; resolves the new expiry (epoch ms). */
  refresh(token: string): Promise<number>;
}

export const sessionMethods = {
  'session.refresh': defineMethod({
    description:
      "Replace the access token before it expires (same user and room); a new role in it applies as moderation.setRole would, unless a moderator changed this user's role in the room.",
    roles: 'all',
    data: z.strictObject({ token: z.string().min(1).max(8192) }),
    result: z.object({ expiresAt: z.number().describe('epoch ms') }),
    handle: async (ctx: { session: RefreshableSession }, data) => ({
      expiresAt: await ctx.session.refresh(data.token),
    }),
  }),
  ping: defineMethod({
    description: 'Round trip; returns the server clock.',
    roles: 'all',
    data: emptySchema,
    result: z.object({ now: z.number().describe('server epoch ms') }),
    handle: () => ({ now: Date.now() }),
  }),
};
