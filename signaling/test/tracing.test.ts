/**
 * Spans of inbound frames with an in-memory exporter: a `chat.send` under a client's
 * `traceparent` yields receive → handle → bus publish → delivery in that trace (once per node,
 * however many sockets); rejected frames (rate-limited, malformed, NOT_JOINED, forbidden) get
 * their spans with the error code; an unsampled client trace leaves no span. Once on the local
 * bus, once with two nodes on a real Redis.
 */
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { InMemorySpanExporter, ReadableSpan } from '@opentelemetry/sdk-trace';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newTraceparent } from '../client/index.js';
import { loadConfig } from '../src/config.js';
import { tracingWanted } from '../src/telemetry/tracing-settings.js';
import { eventually, startTestNode, type RawSocket, type TestNode } from '../../test-support/harness.js';
import { useTestRedis } from '../../test-support/redis.js';
import { GENEROUS_LIMITS, joinRaw } from '../../test-support/room-helpers.js';
import { clientTrace, parentSpanId, spansOfTrace, startMemoryTracing } from '../../test-support/tracing.js';

let exporter: InMemorySpanExporter;
let roomCounter = 0;
const nextRoom = (): string => `trace-${++roomCounter}`;

beforeAll(async () => {
  exporter = await startMemoryTracing();
});

/** Sends a frame with the given fields and waits for its answer. */
async function send(raw: RawSocket, frame: Record<string, unknown>): Promise<Record<string, unknown>> {
  raw.send(JSON.stringify(frame));
  return raw.waitFor((m) => m.id === frame.id);
}

function one(spans: readonly ReadableSpan[], name: string): ReadableSpan {
  const found = spans.filter((span) => span.name === name);
  expect(
    found.map((s) => s.name),
    `exactly one span ${name} in ${spans.map((s) => s.name).join(', ')}`,
  ).toEqual([name]);
  return found[0] as ReadableSpan;
}

async function traceSpans(traceId: string, names: readonly string[]): Promise<ReadableSpan[]> {
  let spans: ReadableSpan[] = [];
  await eventually(
    () => {
      spans = spansOfTrace(exporter, traceId);
      return names.every((name) => spans.some((span) => span.name === name));
    },
    10_000,
    `spans ${names.join(', ')}`,
  );
  return spans;
}

describe('tracing on the local bus', () => {
  let t: TestNode;

  beforeAll(async () => {
    t = await startTestNode({ ...GENEROUS_LIMITS, RATE_LIMIT_ALERT_MESSAGES: '1' });
  });

  afterAll(async () => {
    await t?.close();
  });

  it('puts a chat.send under the client span: receive → handle → bus publish → one delivery for every socket', async () => {
    const roomId = nextRoom();
    const { raw: sender } = await joinRaw(t, 'sender', { roomId });
    const receivers = await Promise.all(['r1', 'r2', 'r3'].map((u) => joinRaw(t, u, { roomId })));
    const client = clientTrace();

    const answer = await send(sender, {
      id: 7,
      method: 'chat.send',
      data: { text: 'buy the dip' },
      traceparent: client.traceparent,
    });
    expect(answer).toMatchObject({ ok: true });
    for (const { raw } of receivers) {
      const message = await raw.waitFor((m) => m.event === 'chat.message');
      // The frame is what it always was: no trace context reaches a client.
      expect(Object.keys(message).sort()).toEqual(['data', 'event', 'seq']);
    }

    const spans = await traceSpans(client.traceId, ['signaling chat.send', 'deliver chat.message']);
    const receive = one(spans, 'signaling chat.send');
    const handle = one(spans, 'handle chat.send');
    const publish = one(spans, 'bus publish chat.message');
    const deliver = one(spans, 'deliver chat.message'); // one for the node, not one per socket

    expect(parentSpanId(receive)).toBe(client.spanId);
    expect(receive.kind).toBe(SpanKind.SERVER);
    expect(parentSpanId(handle)).toBe(receive.spanContext().spanId);
    expect(parentSpanId(publish)).toBe(handle.spanContext().spanId);
    expect(publish.kind).toBe(SpanKind.PRODUCER);
    expect(parentSpanId(deliver)).toBe(publish.spanContext().spanId);
    expect(deliver.kind).toBe(SpanKind.CONSUMER);
    expect(deliver.attributes['messaging.destination.name']).toBe(roomId);

    expect(receive.attributes).toMatchObject({
      'rpc.method': 'chat.send',
      'trading_room.room_id': roomId,
      'trading_room.user_id': 'sender',
      'trading_room.role': 'trader',
      'trading_room.outcome': 'ok',
    });
    expect(receive.attributes['trading_room.participant_id']).toMatch(/.+/);
    expect(receive.status.code).not.toBe(SpanStatusCode.ERROR);
  });

  it('gives a rate-limited frame its span, the code, and a child for the refusing decision', async () => {
    const { raw } = await joinRaw(t, 'presenter', { roomId: nextRoom(), role: 'presenter' });
    const alert = { symbol: 'ACME', action: 'buy' };
    expect(await send(raw, { id: 101, method: 'alert.publish', data: alert })).toMatchObject({ ok: true });
    const client = clientTrace();
    const answer = await send(raw, { id: 102, method: 'alert.publish', data: alert, traceparent: client.traceparent });
    expect(answer).toMatchObject({ ok: false, error: { code: 'RATE_LIMITED' } });

    const spans = await traceSpans(client.traceId, ['signaling alert.publish', 'rate-limit method']);
    const receive = one(spans, 'signaling alert.publish');
    const limit = one(spans, 'rate-limit method');
    expect(parentSpanId(receive)).toBe(client.spanId);
    expect(receive.attributes).toMatchObject({ 'error.type': 'RATE_LIMITED', 'trading_room.outcome': 'RATE_LIMITED' });
    expect(receive.status.code).toBe(SpanStatusCode.ERROR);
    expect(parentSpanId(limit)).toBe(receive.spanContext().spanId);
    expect(limit.status.code).toBe(SpanStatusCode.ERROR);
    expect(spans.map((s) => s.name)).not.toContain('handle alert.publish');
  });

  it('gives malformed, NOT_JOINED and forbidden frames spans with their codes', async () => {
    const roomId = nextRoom();
    const raw = await t.raw(await t.token('early', { roomId }));

    const notJoined = clientTrace();
    expect(
      await send(raw, { id: 101, method: 'chat.send', data: { text: 'hi' }, traceparent: notJoined.traceparent }),
    ).toMatchObject({ error: { code: 'NOT_JOINED' } });

    const badEnvelope = clientTrace();
    expect(await send(raw, { id: 102, method: 42, traceparent: badEnvelope.traceparent })).toMatchObject({
      error: { code: 'BAD_REQUEST' },
    });

    expect(await raw.request('room.join', {})).toMatchObject({ ok: true });
    const forbidden = clientTrace();
    expect(
      await send(raw, {
        id: 3,
        method: 'alert.publish',
        data: { symbol: 'X', action: 'buy' },
        traceparent: forbidden.traceparent,
      }),
    ).toMatchObject({ error: { code: 'FORBIDDEN' } });

    const before = exporter.getFinishedSpans().length;
    raw.send('{"id": 104, "method": ');
    await raw.waitFor((m) => m.id === null);

    for (const [trace, name, code] of [
      [notJoined, 'signaling chat.send', 'NOT_JOINED'],
      [badEnvelope, 'signaling invalid', 'BAD_REQUEST'],
      [forbidden, 'signaling alert.publish', 'FORBIDDEN'],
    ] as const) {
      const span = one(await traceSpans(trace.traceId, [name]), name);
      expect(parentSpanId(span)).toBe(trace.spanId);
      expect(span.attributes['error.type']).toBe(code);
      expect(span.status.code).toBe(SpanStatusCode.ERROR);
    }
    // Not JSON: no trace context to follow, still a span of its own with the code.
    const notJson = (): ReadableSpan[] =>
      exporter
        .getFinishedSpans()
        .slice(before)
        .filter((s) => s.name === 'signaling invalid' && s.attributes['trading_room.user_id'] === 'early');
    await eventually(() => notJson().length > 0, 10_000, 'the span of a frame that is not JSON');
    expect(notJson().map((s) => s.attributes['error.type'])).toEqual(['BAD_REQUEST']);
    expect(parentSpanId(notJson()[0] as ReadableSpan)).toBeUndefined();
  });

  it("follows the SDK's traceparent: request(…, { traceparent: newTraceparent() })", async () => {
    const roomId = nextRoom();
    const { client } = await t.joined('sdk-presenter', { roomId, role: 'presenter' });
    const traceparent = newTraceparent();
    const [, traceId, spanId] = traceparent.split('-') as [string, string, string];
    await client.request('alert.publish', { symbol: 'ACME', action: 'sell' }, { traceparent });
    const spans = await traceSpans(traceId, ['signaling alert.publish', 'deliver alert.published']);
    expect(parentSpanId(one(spans, 'signaling alert.publish'))).toBe(spanId);
  });

  it('records nothing for a client trace that is not sampled', async () => {
    const roomId = nextRoom();
    const { raw } = await joinRaw(t, 'quiet', { roomId });
    const { raw: other } = await joinRaw(t, 'listener', { roomId });
    const client = clientTrace(false);
    expect(
      await send(raw, { id: 109, method: 'chat.send', data: { text: 'x' }, traceparent: client.traceparent }),
    ).toMatchObject({
      ok: true,
    });
    await other.waitFor((m) => m.event === 'chat.message');
    // A later sampled request ends after this one: once it is exported, this one would be too.
    const marker = clientTrace();
    await send(raw, { id: 110, method: 'ping', traceparent: marker.traceparent });
    await traceSpans(marker.traceId, ['signaling ping']);
    expect(spansOfTrace(exporter, client.traceId)).toEqual([]);
  });
});

describe('tracing across two nodes on Redis', () => {
  const redis = useTestRedis();
  let a: TestNode;
  let b: TestNode;

  beforeAll(async () => {
    const env = { ...GENEROUS_LIMITS, REDIS_URL: redis.server().url, REDIS_KEY_PREFIX: 'tracing' };
    a = await startTestNode({ ...env, NODE_ID: 'node-a' });
    b = await startTestNode({ ...env, NODE_ID: 'node-b' });
  });

  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  it('delivers a chat on each node in a span of the publisher trace, one per node', async () => {
    const roomId = nextRoom();
    const { raw: sender } = await joinRaw(a, 'sender', { roomId });
    const onB = await Promise.all(['b1', 'b2'].map((u) => joinRaw(b, u, { roomId })));
    const client = clientTrace();
    expect(
      await send(sender, { id: 101, method: 'chat.send', data: { text: 'across' }, traceparent: client.traceparent }),
    ).toMatchObject({ ok: true });
    for (const { raw } of onB) await raw.waitFor((m) => m.event === 'chat.message');

    const delivered = (): ReadableSpan[] =>
      spansOfTrace(exporter, client.traceId).filter((s) => s.name === 'deliver chat.message');
    await eventually(() => delivered().length >= 2, 10_000, 'a delivery span on each node');
    expect(delivered()).toHaveLength(2); // node A's listeners and node B's: never one per socket
    const publish = one(spansOfTrace(exporter, client.traceId), 'bus publish chat.message');
    for (const span of delivered()) expect(parentSpanId(span)).toBe(publish.spanContext().spanId);
  });
});

describe('whether tracing starts', () => {
  const wanted = (env: Record<string, string>): boolean => tracingWanted((name) => env[name]);

  it('starts with an OTLP endpoint or an exporter asked for, and not otherwise', () => {
    expect(wanted({})).toBe(false);
    expect(wanted({ OTEL_SERVICE_NAME: 'x', OTEL_TRACES_SAMPLER: 'parentbased_traceidratio' })).toBe(false);
    expect(wanted({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toBe(true);
    expect(wanted({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces' })).toBe(true);
    expect(wanted({ OTEL_TRACES_EXPORTER: 'console' })).toBe(true);
    expect(wanted({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toBe(false);
    expect(wanted({ OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toBe(false);
  });

  it('names the variable of a bad tracing setting', () => {
    for (const [name, value] of [
      ['OTEL_TRACES_SAMPLER_ARG', '1.5'],
      ['OTEL_TRACES_SAMPLER', 'sometimes'],
      ['OTEL_EXPORTER_OTLP_ENDPOINT', 'collector:4318'],
      ['OTEL_TRACES_EXPORTER', 'jaeger'],
    ] as const) {
      expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(name));
    }
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }).telemetry).toMatchObject({
      enabled: true,
      serviceName: 'trading-room-signaling',
    });
  });
});
