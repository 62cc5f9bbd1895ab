/**
 * The shape of a protocol method: its zod schema for `data`, the schema of its result, who may
 * call it, and its handler, defined side by side in each family module.
 */
import type { z } from 'zod';
import type { Role } from './common.js';
import type { HandlerContext } from './context.js';

export interface MethodDefinition<D extends z.ZodType, R extends z.ZodType> {
  /** One line for the protocol reference. */
  readonly description: string;
  /** Roles allowed to call the method; `all` for every joined participant. */
  readonly roles: 'all' | readonly Role[];
  readonly data: D;
  readonly result: R;
  readonly handle: (ctx: HandlerContext, data: z.output<D>) => Promise<z.input<R>> | z.input<R>;
}

/** Identity helper that keeps a method's schema and handler types tied together. */
export function defineMethod<D extends z.ZodType, R extends z.ZodType>(
  definition: MethodDefinition<D, R>,
): MethodDefinition<D, R> {
  return definition;
}
