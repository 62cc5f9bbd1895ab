/**
 * Log lines name the trace they were written in: the error line of a request that failed (a
 * real fault: the room's head in Redis overwritten with a value of the wrong type) carries the
 * trace id and span id of that request's span, as the in-memory exporter has it — and neither
 * the chat text nor the token.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { eventually, startTestNode, type TestNode } from '../../test-support/harness.js';
import { useTestRedis } from '../../test-support/redis.js';
import { GENEROUS_LIMITS } from '../../test-support/room-helpers.js';
import { breakRoomHead, spansOfTrace, startMemoryTracing, tracedChat } from '../../test-support/tracing.js';
import { createLogger } from '../src/logger.js';

const CHAT_TEXT = 'a private note about the fill';

describe('trace ids in log lines', () => {
  const redis = useTestRedis();
  const lines: Record<string, unknown>[] = [];
  let exporter: InMemorySpanExporter;
  let t: TestNode;

  beforeAll(async () => {
    exporter = await startMemoryTracing();
    const logger = createLogger(
      { level: 'info', nodeId: 'log-node' },
      { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
    );
    t = await startTestNode(
      { ...GENEROUS_LIMITS, REDIS_URL: redis.server().url, REDIS_KEY_PREFIX: 'logtrace', NODE_ID: 'log-node' },
      { logger },
    );
  });

  afterAll(async () => {
    await t?.close();
  });

  it("writes a request's log line with its span's trace id and span id", async () => {
    const token = await t.token('logger-1', { roomId: 'log-room' });
    const raw = await t.raw(token);
    expect(await raw.request('room.join', {})).toMatchObject({ ok: true });
    await breakRoomHead(redis.client(), 'logtrace', 'log-room');

    const { answer, trace: client } = await tracedChat(raw, 100, CHAT_TEXT);
    expect(answer).toMatchObject({ ok: false, error: { code: 'INTERNAL' } });

    const failed = lines.find((line) => line.msg === 'handler failed');
    expect(failed).toBeDefined();
    await eventually(
      () => spansOfTrace(exporter, client.traceId).some((s) => s.name === 'signaling chat.send'),
      10_000,
      'the request span',
    );
    const span = spansOfTrace(exporter, client.traceId).find((s) => s.name === 'signaling chat.send');
    expect(failed).toMatchObject({
      level: 50,
      method: 'chat.send',
      trace_id: client.traceId,
      span_id: span?.spanContext().spanId,
    });
    const everything = JSON.stringify(lines);
    expect(everything).not.toContain(CHAT_TEXT);
    expect(everything).not.toContain(token);
    // Lines outside any request carry no trace fields.
    expect(lines.find((line) => line.msg === 'node started')).not.toHaveProperty('trace_id');
  });
});
