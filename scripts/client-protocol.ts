/**
 * Renders the client SDK's copy of the protocol (`signaling/client/*.generated.ts`) from the
 * server's zod schemas and error catalogue, so the SDK package imports no server code and its
 * types cannot drift from what the server accepts and sends. Types go through
 * `z.toJSONSchema` (`input` for a method's data, `output` for results and notifications) and a
 * small JSON Schema → TypeScript emitter; the catalogue, which imports nothing, is copied as is.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as prettier from 'prettier';
import { z } from 'zod';
import { METHODS } from '../signaling/src/protocol/index.js';
import { durableEventSchemas, ephemeralEventSchemas } from '../signaling/src/protocol/notifications.js';
import { participantSchema, roleSchema } from '../signaling/src/protocol/common.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Where the generated files live, relative to the repository root. */
export const CLIENT_DIR = 'signaling/client';
const CATALOGUE = 'signaling/src/protocol/error-codes.ts';
const REGENERATE = 'npm run generate:client';

/** The subset of JSON Schema `z.toJSONSchema` produces for the protocol's schemas. */
interface JsonSchema {
  type?: string | string[];
  description?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  propertyNames?: JsonSchema;
  items?: JsonSchema;
  prefixItems?: JsonSchema[];
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
  enum?: unknown[];
  const?: unknown;
}

/** Keywords that only constrain values, with no counterpart in a TypeScript type. */
const CONSTRAINTS = new Set([
  '$schema',
  'description',
  'minLength',
  'maxLength',
  'pattern',
  'format',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
  'multipleOf',
  'minItems',
  'maxItems',
  'default',
]);
const HANDLED = new Set([
  ...CONSTRAINTS,
  'type',
  'properties',
  'required',
  'additionalProperties',
  'propertyNames',
  'items',
  'prefixItems',
  'anyOf',
  'oneOf',
  'allOf',
  'enum',
  'const',
]);

function toJsonSchema(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  return z.toJSONSchema(schema, { io, unrepresentable: 'any', target: 'draft-2020-12' }) as JsonSchema;
}

function docComment(text: string | undefined): string {
  return text ? `/** ${text.replaceAll('*/', '*\\/')} */\n` : '';
}

function propertyKey(name: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(name) ? name : JSON.stringify(name);
}

/** Parenthesises a union or intersection used where a tighter-binding type is expected. */
function group(type: string): string {
  return /[|&]/.test(type) && !/^[{(]/.test(type) ? `(${type})` : type;
}

/** The TypeScript type of a JSON Schema; throws on a keyword it cannot render faithfully. */
export function emitType(schema: JsonSchema | boolean): string {
  if (schema === true) return 'unknown';
  if (schema === false) return 'never';
  const unknownKeys = Object.keys(schema).filter((key) => !HANDLED.has(key));
  if (unknownKeys.length > 0) throw new Error(`cannot render JSON Schema keywords ${unknownKeys.join(', ')}`);
  if ('const' in schema) return JSON.stringify(schema.const);
  if (schema.enum) return schema.enum.map((value) => JSON.stringify(value)).join(' | ');
  const union = schema.anyOf ?? schema.oneOf;
  if (union) return union.map((member) => group(emitType(member))).join(' | ');
  if (schema.allOf) return schema.allOf.map((member) => group(emitType(member))).join(' & ');
  if (Array.isArray(schema.type)) return schema.type.map((type) => emitType({ ...schema, type })).join(' | ');
  switch (schema.type) {
    case undefined:
      return 'unknown';
    case 'string':
      return 'string';
    case 'number':
    case 'integer':
      return 'number';
    case 'boolean':
      return 'boolean';
    case 'null':
      return 'null';
    case 'array':
      if (schema.prefixItems) return `[${schema.prefixItems.map(emitType).join(', ')}]`;
      // A union of objects starts with `{` yet needs its parentheses.
      if (typeof schema.items === 'object' && (schema.items.anyOf ?? schema.items.oneOf))
        return `(${emitType(schema.items)})[]`;
      return `${group(emitType(schema.items ?? true))}[]`;
    case 'object':
      return emitObject(schema);
    default:
      throw new Error(`cannot render JSON Schema type ${schema.type}`);
  }
}

function emitObject(schema: JsonSchema): string {
  if (schema.propertyNames && Object.keys(schema.propertyNames).some((key) => !CONSTRAINTS.has(key) && key !== 'type'))
    throw new Error('cannot render a record with restricted keys');
  const required = new Set(schema.required ?? []);
  const lines = Object.entries(schema.properties ?? {}).map(
    ([name, property]) =>
      `${docComment(property.description)}${propertyKey(name)}${required.has(name) ? '' : '?'}: ${emitType(property)};`,
  );
  const rest = schema.additionalProperties;
  if (rest !== undefined && rest !== false)
    lines.push(`[key: string]: ${lines.length > 0 ? 'unknown' : emitType(rest)};`);
  if (lines.length === 0) return rest === false ? 'Record<string, never>' : '{}';
  return `{\n${lines.join('\n')}\n}`;
}

function emitInterface(name: string, doc: string, members: [string, string, string | undefined][]): string {
  const body = members.map(([key, type, description]) => `${docComment(description)}${propertyKey(key)}: ${type};`);
  return `${docComment(doc)}export interface ${name} {\n${body.join('\n')}\n}`;
}

function header(what: string, from: string): string {
  return `/**\n * ${what}\n * Generated from \`${from}\` by \`${REGENERATE}\`: do not edit; a test fails when it is stale.\n */\n`;
}

function renderTypes(): string {
  const methods = Object.entries(METHODS).map(([name, definition]): [string, string, string] => [
    name,
    `{\ndata: ${emitType(toJsonSchema(definition.data, 'input'))};\nresult: ${emitType(toJsonSchema(definition.result, 'output'))};\n}`,
    `${definition.description} Who: ${definition.roles === 'all' ? 'every joined participant' : definition.roles.join(', ')}.`,
  ]);
  const events = (schemas: Record<string, z.ZodType>): [string, string, string | undefined][] =>
    Object.entries(schemas).map(([name, schema]) => {
      const json = toJsonSchema(schema, 'output');
      return [name, emitType(json), json.description];
    });
  return [
    header(
      "The protocol's types: every method's `data` and result, every notification's `data`.",
      'signaling/src/protocol/',
    ),
    `${docComment('A role in a room.')}export type Role = ${emitType(toJsonSchema(roleSchema, 'output'))};`,
    `${docComment('A participant as the server describes it.')}export interface Participant ${emitType(toJsonSchema(participantSchema, 'output'))}`,
    emitInterface('Methods', 'Every client → server method: what `data` it takes and what it answers.', methods),
    `export type MethodName = keyof Methods;`,
    `export type MethodData<M extends MethodName> = Methods[M]['data'];`,
    `export type MethodResult<M extends MethodName> = Methods[M]['result'];`,
    emitInterface(
      'DurableEvents',
      'Durable room events: carry `seq`, every participant gets each in order, replayed on resume.',
      events(durableEventSchemas),
    ),
    emitInterface('EphemeralEvents', 'Ephemeral events: no `seq`, not replayed.', events(ephemeralEventSchemas)),
    `export type DurableEventName = keyof DurableEvents;`,
    `export type EphemeralEventName = keyof EphemeralEvents;`,
    `export type EventName = DurableEventName | EphemeralEventName;`,
    `export type EventData<E extends EventName> = E extends DurableEventName ? DurableEvents[E] : E extends EphemeralEventName ? EphemeralEvents[E] : never;`,
    `${docComment('A notification as it travels on the wire.')}export type Notification<E extends EventName = EventName> = E extends DurableEventName ? { event: E; data: EventData<E>; seq: number } : { event: E; data: EventData<E> };`,
  ].join('\n\n');
}

function renderCatalogue(): string {
  const source = readFileSync(`${ROOT}${CATALOGUE}`, 'utf8');
  return header('A copy of the error catalogue (codes, HTTP statuses, close codes).', CATALOGUE) + '\n' + source;
}

async function format(source: string, file: string): Promise<string> {
  const options = await prettier.resolveConfig(`${ROOT}${file}`);
  return prettier.format(source, { ...options, filepath: file });
}

/** The generated files, by path relative to the repository root, as they must be on disk. */
export async function renderClientProtocol(): Promise<Record<string, string>> {
  const files: Record<string, string> = {
    [`${CLIENT_DIR}/protocol.generated.ts`]: renderTypes(),
    [`${CLIENT_DIR}/error-codes.generated.ts`]: renderCatalogue(),
  };
  for (const [file, source] of Object.entries(files)) files[file] = await format(source, file);
  return files;
}
