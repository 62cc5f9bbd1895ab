/**
 * Server → client notifications. Durable events carry `seq` and are replayed on resume;
 * ephemeral ones do not.
 */
import { z } from 'zod';
import { ALERT_ACTIONS, mediaKindSchema, mediaSourceSchema, participantSchema, roleSchema } from './common.js';

/** Who sent a chat message or an alert; `role` as of sending, so clients can mark presenters. */
const participantRef = z.object({ participantId: z.string(), userId: z.string(), name: z.string(), role: roleSchema });

/** Durable room events: every participant gets each, in `seq` order. */
export const durableEventSchemas = {
  'participant.joined': z.object({ participant: participantSchema }),
  'participant.left': z.object({
    participantId: z.string(),
    reason: z.enum(['left', 'disconnected', 'kicked', 'replaced', 'room-closed']),
  }),
  'participant.updated': z.object({ participant: participantSchema }),
  'producer.added': z.object({
    producerId: z.string(),
    participantId: z.string(),
    kind: mediaKindSchema,
    source: mediaSourceSchema,
    nodeId: z
      .string()
      .optional()
      .describe('the node the producer is published on (in a cluster; added to the contract)'),
  }),
  'producer.removed': z.object({
    producerId: z.string(),
    reason: z
      .string()
      .optional()
      .describe(
        'why (added to the contract): `closed`, `participant-left`, `role-revoked`, `transport-closed`, `worker-died`; `migrating` when its publisher is moving to another node (its node drains): a `producer.added` of its new producer follows, consume that one; `node-lost` when the node it was published on died',
      ),
  }),
  'producer.paused': z.object({ producerId: z.string() }),
  'producer.resumed': z.object({ producerId: z.string() }),
  'chat.message': z.object({ messageId: z.string(), from: participantRef, text: z.string(), ts: z.number() }),
  'alert.published': z.object({
    alertId: z.string(),
    from: participantRef,
    symbol: z.string(),
    action: z.enum(ALERT_ACTIONS),
    price: z.number().optional(),
    note: z.string().optional(),
    ts: z.number(),
  }),
};

/** Ephemeral events: no `seq`, not replayed. */
export const ephemeralEventSchemas = {
  'participant.count': z.object({ count: z.number().int() }),
  'consumer.closed': z.object({
    consumerId: z.string(),
    reason: z
      .string()
      .describe(
        '`producer-closed`, `transport-closed`, `worker-died`; `origin-lost` when the producer was published on another node that went away (died or left the cluster)',
      ),
  }),
  'transport.closed': z
    .object({ transportId: z.string(), reason: z.string() })
    .describe('one of your transports died with its worker: create a new one, then produce/consume again'),
  'consumer.layersChanged': z.object({
    consumerId: z.string(),
    spatialLayer: z.number().int(),
    temporalLayer: z.number().int(),
  }),
  activeSpeaker: z.object({ participantId: z.string().nullable() }),
  'server.draining': z.object({
    deadline: z.number().describe('epoch ms when remaining sockets are closed with 1012'),
    reconnectAfterMs: z.number().int(),
  }),
  'session.kicked': z.object({ reason: z.string() }),
  'room.resync': z
    .object({ epoch: z.string(), lastSeq: z.number().int() })
    .describe(
      'the room’s history restarted (lost by the shared store) or skipped events this node could no longer read: durable events continue under `epoch`, the next with `seq` lastSeq + 1; events of the old numbering that did not arrive are lost, reload state if it matters',
    ),
};

export type DurableEventName = keyof typeof durableEventSchemas;
export type EphemeralEventName = keyof typeof ephemeralEventSchemas;
export type EventName = DurableEventName | EphemeralEventName;
export type EventData<E extends EventName> = E extends DurableEventName
  ? z.infer<(typeof durableEventSchemas)[E]>
  : E extends EphemeralEventName
    ? z.infer<(typeof ephemeralEventSchemas)[E]>
    : never;

/** A notification as it travels on the wire. */
export type Notification<E extends EventName = EventName> = E extends DurableEventName
  ? { event: E; data: EventData<E>; seq: number }
  : { event: E; data: EventData<E> };

export function isDurableEvent(name: string): name is DurableEventName {
  return Object.hasOwn(durableEventSchemas, name);
}
