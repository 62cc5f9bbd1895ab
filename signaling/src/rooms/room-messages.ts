/**
 * Chat and alerts: durable room events from a participant, numbered by the bus and delivered to
 * every participant on every node.
 */
import { randomUUID } from 'node:crypto';
import type { Participant } from '../protocol/common.js';
import type { AlertPublishData } from '../protocol/alert.js';
import type { EventData } from '../protocol/notifications.js';
import type { Membership } from './room-members.js';
import { publish, type RoomContext } from './room-context.js';

/** `chat.send`: publishes a chat message from the member. */
export async function sendChat(
  ctx: RoomContext,
  { room, member }: Membership,
  text: string,
): Promise<{ messageId: string; seq: number }> {
  const messageId = randomUUID();
  const event = await publish(ctx, room.id, 'chat.message', {
    messageId,
    from: fromOf(member.participant),
    text,
    ts: Date.now(),
  });
  return { messageId, seq: event.seq as number };
}

/** `alert.publish`: publishes a trading alert from the member. */
export async function publishAlert(
  ctx: RoomContext,
  { room, member }: Membership,
  data: AlertPublishData,
): Promise<{ alertId: string; seq: number }> {
  const alertId = randomUUID();
  const event: EventData<'alert.published'> = {
    alertId,
    from: fromOf(member.participant),
    symbol: data.symbol,
    action: data.action,
    ts: Date.now(),
  };
  if (data.price !== undefined) event.price = data.price;
  if (data.note !== undefined) event.note = data.note;
  const published = await publish(ctx, room.id, 'alert.published', event);
  return { alertId, seq: published.seq as number };
}

function fromOf(p: Participant): EventData<'chat.message'>['from'] {
  return { participantId: p.participantId, userId: p.userId, name: p.name, role: p.role };
}
