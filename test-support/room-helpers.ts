/**
 * Helpers shared by the signaling tests: joined raw sockets, SDK clients that record every
 * notification from the first frame, wire-contract checks for what a socket received, HTTP
 * requests and a Prometheus exposition parser.
 */
import { expect } from 'vitest';
import type { z } from 'zod';
import { durableEventSchemas, ephemeralEventSchemas } from '../signaling/src/protocol/notifications.js';
import { joinResultSchema } from '../signaling/src/protocol/room.js';
import type { TradingRoomClient, JoinResult, Notification } from '../signaling/client/index.js';
import type { RawSocket, TestNode, TokenOptions } from './harness.js';

export type Message = Record<string, unknown>;

/** Options for a node where no rate limit or connection cap gets in the way of a test. */
export const GENEROUS_LIMITS: Readonly<Record<string, string>> = Object.freeze({
  RATE_LIMIT_IP_CONNECTIONS: '100000',
  RATE_LIMIT_CONNECTION_MESSAGES: '100000',
  RATE_LIMIT_USER_MESSAGES: '100000',
  RATE_LIMIT_CHAT_MESSAGES: '100000',
  RATE_LIMIT_ALERT_MESSAGES: '100000',
  RATE_LIMIT_JOIN_MESSAGES: '100000',
  MAX_CONNECTIONS_PER_USER: '1000',
});

/** A raw socket that has joined its room, with the join result. */
export interface JoinedRaw {
  readonly raw: RawSocket;
  readonly join: JoinResult;
}

/** Opens a raw socket for `userId` and joins; fails the test when the join is refused. */
export async function joinRaw(
  t: TestNode,
  userId: string,
  options: TokenOptions & { data?: Record<string, unknown> } = {},
): Promise<JoinedRaw> {
  const raw = await t.raw(await t.token(userId, options));
  const response = await raw.request('room.join', options.data ?? {});
  expect(response, `join of ${userId}`).toMatchObject({ ok: true });
  return { raw, join: response.data as JoinResult };
}

/** Durable notifications received so far, in arrival order. */
export function durable(raw: RawSocket, event?: string): Message[] {
  return raw.messages.filter((m) => typeof m.seq === 'number' && (event === undefined || m.event === event));
}

/** The `seq` values of the durable notifications received so far. */
export function seqs(raw: RawSocket, event?: string): number[] {
  return durable(raw, event).map((m) => m.seq as number);
}

/** Highest `seq` a raw socket knows: from its join result and every durable event since. */
export function lastSeqOf(raw: RawSocket, join: JoinResult): number {
  return Math.max(join.lastSeq, ...seqs(raw));
}

/** Numbers from `from` to `to`, inclusive. */
export function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
}

/**
 * Checks the wire contract on everything a socket received: each frame is a response (id, ok,
 * data or error) or a notification of a known event whose data matches its schema; durable
 * events carry an integer `seq`, ephemeral ones none; seq only grows (from `room.resync`'s `lastSeq`
 * after one).
 */
export function expectWireValid(messages: readonly Message[]): void {
  let previousSeq = 0;
  for (const m of messages) {
    if ('event' in m) {
      const name = m.event as string;
      const durableSchema = (durableEventSchemas as Record<string, z.ZodType>)[name];
      const ephemeralSchema = (ephemeralEventSchemas as Record<string, z.ZodType>)[name];
      expect(durableSchema ?? ephemeralSchema, `known event ${name}`).toBeDefined();
      const schema = (durableSchema ?? ephemeralSchema) as z.ZodType;
      expect(schema.safeParse(m.data).success, `data of ${JSON.stringify(m)}`).toBe(true);
      if (durableSchema) {
        expect(Number.isInteger(m.seq), `seq on ${name}`).toBe(true);
        expect(m.seq as number, 'seq grows').toBeGreaterThan(previousSeq);
        previousSeq = m.seq as number;
      } else {
        expect('seq' in m, `no seq on ephemeral ${name}`).toBe(false);
        // The numbering restarts under a new epoch.
        if (name === 'room.resync') previousSeq = (m.data as { lastSeq: number }).lastSeq;
      }
      expect(Object.keys(m).sort()).toEqual(durableSchema ? ['data', 'event', 'seq'] : ['data', 'event']);
    } else {
      expect('id' in m, `response has id: ${JSON.stringify(m)}`).toBe(true);
      expect(typeof m.ok).toBe('boolean');
      if (m.ok) expect(Object.keys(m).sort()).toEqual(['data', 'id', 'ok']);
      else {
        expect(Object.keys(m).sort()).toEqual(['error', 'id', 'ok']);
        const error = m.error as Message;
        expect(typeof error.code).toBe('string');
        expect(typeof error.message).toBe('string');
      }
    }
  }
}

/** Checks a join result against the contract's schema. */
export function expectJoinResult(join: unknown): void {
  const parsed = joinResultSchema.safeParse(join);
  expect(parsed.success, JSON.stringify(join)).toBe(true);
}

/** An SDK client that recorded every notification from its first frame on. */
export interface RecordingClient {
  readonly client: TradingRoomClient;
  readonly join: JoinResult;
  readonly notifications: Notification[];
  readonly closed: Promise<{ code: number; reason: string }>;
}

/** Creates an SDK client, starts recording, connects and joins. */
export async function joinRecording(
  t: TestNode,
  userId: string,
  options: TokenOptions & { displayName?: string } = {},
): Promise<RecordingClient> {
  const client = await t.client(userId, options);
  const notifications: Notification[] = [];
  client.on('notification', (n) => notifications.push(n));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => client.on('closed', resolve));
  const join = await client.connect();
  return { client, join, notifications, closed };
}

/** A plain HTTP request to the node; the body is parsed as JSON when it is JSON. */
export async function http(
  t: TestNode,
  path: string,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; headers: Headers; text: string; json: unknown }> {
  const response = await fetch(`${t.httpUrl}${path}`, { ...init, redirect: 'manual' });
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

/** One sample of a Prometheus text exposition. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Parses the Prometheus text format (0.0.4): `# TYPE` lines and samples. */
export function parsePrometheus(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const type = /^# TYPE (\S+) (\S+)$/.exec(line);
      if (type) types.set(type[1] as string, type[2] as string);
      continue;
    }
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$/.exec(line);
    if (!match) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    const labelText = match[2] ?? '';
    const labelPattern = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g;
    let consumed = 0;
    for (let l = labelPattern.exec(labelText); l; l = labelPattern.exec(labelText)) {
      labels[l[1] as string] = (l[2] as string).replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
      consumed += l[0].length;
    }
    if (consumed !== labelText.length) throw new Error(`bad labels in: ${line}`);
    const raw = match[3] as string;
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw);
    if (Number.isNaN(value) && raw.toLowerCase() !== 'nan') throw new Error(`bad value in: ${line}`);
    samples.push({ name: match[1] as string, labels, value });
  }
  return { samples, types };
}

/** The value of the one sample named `name` whose labels include `labels`; undefined when none. */
export function sampleValue(
  samples: readonly Sample[],
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length > 1) throw new Error(`${found.length} samples match ${name} ${JSON.stringify(labels)}`);
  return found[0]?.value;
}
