/** `alert.*`: trade alerts from presenters and moderators, durable events. */
import { z } from 'zod';
import type { RoomConnection } from '../rooms/room-connection.js';
import { ALERT_ACTIONS, PUBLISHING_ROLES } from './common.js';
import { defineMethod } from './method.js';

export const alertPublishSchema = z.strictObject({
  symbol: z.string().regex(/^[A-Z0-9.:/-]{1,15}$/, 'symbol must match ^[A-Z0-9.:/-]{1,15}$'),
  action: z.enum(ALERT_ACTIONS),
  price: z.number().positive().finite().optional(),
  note: z.string().max(500).optional(),
});
export type AlertPublishData = z.infer<typeof alertPublishSchema>;
const alertPublishResultSchema = z.object({ alertId: z.string(), seq: z.number().int() });

/** What `alert.*` asks of the room service. */
export interface AlertRooms {
  alert(connection: RoomConnection, data: AlertPublishData): Promise<z.input<typeof alertPublishResultSchema>>;
}

export const alertMethods = {
  'alert.publish': defineMethod({
    description: 'Publish a trade alert to the room.',
    roles: PUBLISHING_ROLES,
    data: alertPublishSchema,
    result: alertPublishResultSchema,
    handle: (ctx: { session: RoomConnection; rooms: AlertRooms }, data) => ctx.rooms.alert(ctx.session, data),
  }),
};
