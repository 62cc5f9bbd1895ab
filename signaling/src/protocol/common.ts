/**
 * Schemas shared by several message families: roles, ids, the participant shape and the
 * request envelope.
 */
import { z } from 'zod';

export const ROLES = ['presenter', 'moderator', 'trader'] as const;
export const roleSchema = z.enum(ROLES);
export type Role = z.infer<typeof roleSchema>;

/** Roles that may publish media and trade alerts. */
export const PUBLISHING_ROLES: readonly Role[] = ['presenter', 'moderator'];

/** Opaque server-issued id (participant, session, message, transport, producer, consumer). */
export const idSchema = z.string().min(1).max(128);

/**
 * Characters no display name keeps: controls and line breaks, bidi marks, embeddings, overrides
 * and isolates (which make "Presenter (Official)" out of other text), and zero-width characters.
 */
const HIDDEN_CHARACTERS = /[\p{Cc}\p{Zl}\p{Zp}\u061C\u200B-\u200F\u202A-\u202E\u2060\u2066-\u2069\uFEFF]/gu;

/** A display name as others see it: without {@link HIDDEN_CHARACTERS}, trimmed ('' when nothing is left). */
export function cleanDisplayName(name: string): string {
  return name.replace(HIDDEN_CHARACTERS, '').trim();
}

/** Trade alert actions (`alert.publish`, `alert.published`). */
export const ALERT_ACTIONS = ['buy', 'sell', 'close', 'watch'] as const;

/** What a producer carries (`sfu.produce`, `producer.added`). */
export const MEDIA_SOURCES = ['camera', 'microphone', 'screen', 'screen-audio'] as const;
export const mediaSourceSchema = z.enum(MEDIA_SOURCES);
export const mediaKindSchema = z.enum(['audio', 'video']);

export const participantSchema = z.object({
  participantId: z.string(),
  userId: z.string(),
  name: z.string(),
  role: roleSchema,
  joinedAt: z.number().describe('epoch ms'),
});
export type Participant = z.infer<typeof participantSchema>;

/** A request id: an integer or a string, unique among the client's requests in flight. */
export const requestIdSchema = z.union([
  z
    .number()
    .int()
    .min(-(2 ** 53) + 1)
    .max(2 ** 53 - 1),
  z.string().max(128),
]);
export type RequestId = z.infer<typeof requestIdSchema>;

/** W3C trace context header value. */
export const traceparentSchema = z.string().regex(/^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/);

export const requestEnvelopeSchema = z.object({
  id: requestIdSchema,
  method: z.string().min(1).max(64),
  data: z.record(z.string(), z.unknown()).optional(),
  traceparent: traceparentSchema.optional(),
});

export const emptySchema = z.strictObject({});
export type Empty = z.infer<typeof emptySchema>;
