/**
 * The SDK's copy of the protocol: generated from the server's schemas and catalogue, never
 * stale, and the same types the server's schemas infer (checked by the compiler below).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { renderClientProtocol } from '../../scripts/client-protocol.js';
import type * as Client from '../client/protocol.generated.js';
import type * as Server from '../src/protocol/index.js';

describe("the SDK's protocol types", () => {
  it('match the schemas and the catalogue (run `npm run generate:client` when this fails)', async () => {
    for (const [file, source] of Object.entries(await renderClientProtocol())) {
      expect(readFileSync(new URL(`../../${file}`, import.meta.url), 'utf8'), file).toBe(source);
    }
  });
});

/** True when each type is assignable to the other. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
/** The names on which the SDK's types and the schemas' disagree; `never` when none. */
type MethodMismatch = {
  [M in Server.MethodName]: M extends Client.MethodName
    ? Same<Client.MethodData<M>, Server.MethodData<M>> extends true
      ? Same<Client.MethodResult<M>, Server.MethodResult<M>> extends true
        ? never
        : M
      : M
    : M;
}[Server.MethodName];
type EventMismatch = {
  [E in Server.EventName]: E extends Client.EventName
    ? Same<Client.Notification<E>, Server.Notification<E>> extends true
      ? never
      : E
    : E;
}[Server.EventName];
type Mismatch =
  | MethodMismatch
  | EventMismatch
  | (Same<Client.MethodName, Server.MethodName> extends true ? never : 'method names')
  | (Same<Client.EventName, Server.EventName> extends true ? never : 'event names')
  | (Same<Client.Participant, Server.Participant> extends true ? never : 'Participant')
  | (Same<Client.Role, Server.Role> extends true ? never : 'Role');
/** Compiles only while the generated types equal the schemas' (`npm run typecheck`). */
const generatedTypesMatch: [Mismatch] extends [never] ? true : Mismatch = true;
void generatedTypesMatch;
