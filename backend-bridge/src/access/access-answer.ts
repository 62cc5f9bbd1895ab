/**
 * The backend's answer to the access check, as the contract gives it: `200 {"allowed": boolean,
 * "role"?: role, "maxParticipants"?: integer}`. Other fields are ignored; a `null` limit or role
 * counts as absent.
 */
import { z } from 'zod';

/** The contract's roles (the bridge never imports `signaling/`; the same three names). */
export const BACKEND_ROLES = ['presenter', 'moderator', 'trader'] as const;
export type BackendRole = (typeof BACKEND_ROLES)[number];

export const accessAnswerSchema = z.object({
  allowed: z.boolean(),
  role: z
    .enum(BACKEND_ROLES)
    .nullish()
    .transform((v) => v ?? undefined),
  maxParticipants: z
    .number()
    .int()
    .min(0)
    .nullish()
    .transform((v) => v ?? undefined),
});

/** A validated answer. */
export type AccessAnswer = z.output<typeof accessAnswerSchema>;
