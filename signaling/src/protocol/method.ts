/**
 * The shape of a protocol method: its zod schema for `data`, the schema of its result, who may
 * call it, and its handler, defined side by side in each family module. Each family names the
 * part of the handler context it uses (`C`), so no family depends on the context as a whole;
 * `context.ts` puts the parts together and the registry checks that it satisfies every family.
 */
import type { z } from 'zod';
import type { Role } from './common.js';

export interface MethodDefinition<D extends z.ZodType, R extends z.ZodType, C = unknown> {
  /** One line for the protocol reference. */
  readonly description: string;
  /** Roles allowed to call the method; `all` for every joined participant. */
  readonly roles: 'all' | readonly Role[];
  readonly data: D;
  readonly result: R;
  readonly handle: (ctx: C, data: z.output<D>) => Promise<z.input<R>> | z.input<R>;
}

/** Identity helper that keeps a method's schema and handler types tied together. */
export function defineMethod<D extends z.ZodType, R extends z.ZodType, C = unknown>(
  definition: MethodDefinition<D, R, C>,
): MethodDefinition<D, R, C> {
  return definition;
}
