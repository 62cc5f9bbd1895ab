/** `alert.*`: trade alerts from presenters and moderators, durable events. */
import { z } from 'zod';
import { PUBLISHING_ROLES } from './common.js';
import { defineMethod } from './method.js';

export const ALERT_ACTIONS = ['buy', 'sell', 'close', 'watch'] as const;

export const alertPublishSchema = z.strictObject({
  symbol: z.string().regex(/^[A-Z0-9.:/-]{1,15}$/, 'symbol must match ^[A-Z0-9.:/-]{1,15}$'),
  action: z.enum(ALERT_ACTIONS),
  price: z.number().positive().finite().optional(),
  note: z.string().max(500).optional(),
});
export type AlertPublishData = z.infer<typeof alertPublishSchema>;

export const alertMethods = {
  'alert.publish': defineMethod({
    description: 'Publish a trade alert to the room.',
    roles: PUBLISHING_ROLES,
    data: alertPublishSchema,
    result: z.object({ alertId: z.string(), seq: z.number().int() }),
    handle: (ctx, data) => ctx.rooms.alert(ctx.session, data),
  }),
};
