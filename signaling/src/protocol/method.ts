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
  readonly handle: (
    ctx: C,
    data: z.output<D>,
  ) => Promise<z.input<R> | EncodedResult<z.input<R>>> | z.input<R> | EncodedResult<z.input<R>>;
}

/**
 * A result already encoded as JSON, written into the response as is: a handler that serves
 * stored frames (`room.history`) builds it from them instead of encoding them again. `T` is the
 * result it encodes.
 */
export class EncodedResult<T> {
  readonly json: string;
  /** Never set: ties the encoded text to the type it encodes. */
  declare readonly encodes?: T;

  constructor(json: string) {
    this.json = json;
  }
}

/** Identity helper that keeps a method's schema and handler types tied together. */
export function defineMethod<D extends z.ZodType, R extends z.ZodType, C = unknown>(
  definition: MethodDefinition<D, R, C>,
): MethodDefinition<D, R, C> {
  return definition;
}
