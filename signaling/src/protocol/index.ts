/**
 * The method registry: every client → server method of the contract, built from the family
 * modules. The protocol reference and the client SDK's types derive from it.
 */
import type { z } from 'zod';
import { alertMethods } from './alert.js';
import { chatMethods } from './chat.js';
import type { HandlerContext } from './context.js';
import { historyMethods } from './history.js';
import { moderationMethods } from './moderation.js';
import { roomMethods } from './room.js';
import { sessionMethods } from './session.js';
import { sfuMethods } from './sfu.js';
import type { MethodDefinition } from './method.js';

export const METHODS = {
  ...roomMethods,
  ...historyMethods,
  ...sessionMethods,
  ...chatMethods,
  ...alertMethods,
  ...moderationMethods,
  ...sfuMethods,
} as const;

export type MethodName = keyof typeof METHODS;
export type MethodData<M extends MethodName> = z.input<(typeof METHODS)[M]['data']>;
export type MethodResult<M extends MethodName> = z.output<(typeof METHODS)[M]['result']>;

/** The part of the context a method's handler names. */
type ContextOf<M> = M extends { handle: (ctx: infer C, ...rest: never[]) => unknown } ? C : never;
/** The methods whose handlers use something the handler context lacks (none). */
type UnservedMethod = {
  [M in MethodName]: HandlerContext extends ContextOf<(typeof METHODS)[M]> ? never : M;
}[MethodName];
/** Compiles only while the handler context gives every family what its handlers use. */
const everyFamilyServed: [UnservedMethod] extends [never] ? true : UnservedMethod = true;
void everyFamilyServed;

/** Looks up a method by its wire name; undefined for unknown names (and `__proto__` & co.). */
export function findMethod(name: string): MethodDefinition<z.ZodType, z.ZodType, HandlerContext> | undefined {
  return Object.hasOwn(METHODS, name)
    ? (METHODS[name as MethodName] as unknown as MethodDefinition<z.ZodType, z.ZodType, HandlerContext>)
    : undefined;
}

export { durableEventSchemas, ephemeralEventSchemas, isDurableEvent } from './notifications.js';
export type { DurableEventName, EphemeralEventName, EventName, EventData, Notification } from './notifications.js';
export type { Participant, Role, RequestId } from './common.js';
