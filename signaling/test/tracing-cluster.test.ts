/**
 * Two node processes on a real Redis, each started with the OpenTelemetry preload and exporting
 * OTLP/HTTP (`http/json`) to a receiver in the test: a chat sent on node A under a client's
 * `traceparent` comes back as spans from both nodes in that one trace — A's receive, handle and
 * publish (with the Redis command under it, so ioredis was patched before the node loaded it),
 * B's delivery as a child of A's publish — each under its own resource (service name, instance).
 */
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnNode, type ChildNode } from '../../test-support/child-node.js';
import { eventually } from '../../test-support/async.js';
import { RawSocket } from '../../test-support/harness.js';
import { useTestRedis } from '../../test-support/redis.js';
import { clientTrace, OtlpReceiver, type ReceivedSpan } from '../../test-support/tracing.js';

describe('traces across node processes', () => {
  const redis = useTestRedis();
  let receiver: OtlpReceiver;
  const nodes: ChildNode[] = [];
  const sockets: RawSocket[] = [];

  beforeAll(async () => {
    receiver = await OtlpReceiver.start();
    const env = (nodeId: string): Record<string, string> => ({
      NODE_ID: nodeId,
      REDIS_URL: redis.server().url,
      REDIS_KEY_PREFIX: 'traced',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
      OTEL_TRACES_SAMPLER_ARG: '0',
      OTEL_BSP_SCHEDULE_DELAY: '100',
    });
    // One after the other: loading the OpenTelemetry SDK takes a second or two of CPU each.
    nodes.push(await spawnNode(env('trace-a')));
    nodes.push(await spawnNode(env('trace-b')));
  });

  afterAll(async () => {
    for (const socket of sockets) socket.ws.terminate();
    await Promise.all(nodes.map((node) => node.kill()));
    await receiver?.close();
  });

  async function joined(node: ChildNode, userId: string): Promise<RawSocket> {
    const token = await node.token(userId, { roomId: 'traced-room' });
    const raw = new RawSocket(new WebSocket(`${node.wsUrl}?token=${token}`, { perMessageDeflate: false }));
    sockets.push(raw);
    await raw.opened;
    expect(await raw.request('room.join', {})).toMatchObject({ ok: true });
    return raw;
  }

  it('shows a chat sent on A and delivered on B as one trace, with each node as its own resource', async () => {
    const [a, b] = nodes as [ChildNode, ChildNode];
    const sender = await joined(a, 'sender');
    const listener = await joined(b, 'listener');
    const client = clientTrace();
    sender.send(
      JSON.stringify({ id: 100, method: 'chat.send', data: { text: 'from A' }, traceparent: client.traceparent }),
    );
    expect(await sender.waitFor((m) => m.id === 100)).toMatchObject({ ok: true });
    await listener.waitFor((m) => m.event === 'chat.message');

    const named = (name: string): ReceivedSpan | undefined =>
      receiver.spansOfTrace(client.traceId).find((span) => span.name === name);
    const deliveredOn = (nodeId: string): ReceivedSpan | undefined =>
      receiver
        .spansOfTrace(client.traceId)
        .find((span) => span.name === 'deliver chat.message' && span.resource['service.instance.id'] === nodeId);
    await eventually(() => deliveredOn('trace-b') !== undefined, 20_000, "B's delivery span at the receiver");
    await eventually(() => named('signaling chat.send') !== undefined, 20_000, "A's request span");

    const spans = receiver.spansOfTrace(client.traceId);
    const receive = named('signaling chat.send') as ReceivedSpan;
    const publish = named('bus publish chat.message') as ReceivedSpan;
    const onB = deliveredOn('trace-b') as ReceivedSpan;
    expect(receive.parentSpanId).toBe(client.spanId);
    expect(receive.resource).toMatchObject({
      'service.name': 'trading-room-signaling',
      'service.instance.id': 'trace-a',
    });
    expect(receive.resource['service.version']).toMatch(/^\d+\.\d+\.\d+/);
    expect(publish.resource['service.instance.id']).toBe('trace-a');
    expect(onB.resource).toMatchObject({ 'service.name': 'trading-room-signaling', 'service.instance.id': 'trace-b' });
    expect(onB.parentSpanId).toBe(publish.spanId);
    // ioredis was instrumented before the node imported it: the publish script is a child span.
    expect(
      spans.some(
        (span) =>
          span.parentSpanId === publish.spanId &&
          span.resource['service.instance.id'] === 'trace-a' &&
          /evalsha|eval/i.test(span.name),
      ),
    ).toBe(true);
    expect(new Set(spans.map((span) => span.resource['service.instance.id']))).toEqual(new Set(['trace-a', 'trace-b']));
    // What people wrote never becomes a span attribute (the Redis spans name the command only).
    expect(JSON.stringify(receiver.spans)).not.toContain('from A');
  });

  it('samples nothing of its own at ratio 0, and exports nothing for an unsampled client trace', async () => {
    const [a] = nodes as [ChildNode];
    const sender = await joined(a, 'quiet');
    const client = clientTrace(false);
    sender.send(JSON.stringify({ id: 200, method: 'ping', traceparent: client.traceparent }));
    await sender.waitFor((m) => m.id === 200);
    const marker = clientTrace();
    sender.send(JSON.stringify({ id: 201, method: 'ping', traceparent: marker.traceparent }));
    await sender.waitFor((m) => m.id === 201);
    await eventually(() => receiver.spansOfTrace(marker.traceId).length > 0, 20_000, 'the sampled ping');
    expect(receiver.spansOfTrace(client.traceId)).toEqual([]);
    // Ratio 0: the join (no client trace) left no trace of its own either.
    expect(receiver.spans.filter((span) => span.name === 'signaling room.join')).toEqual([]);
  });

  it('flushes on the drain: the drain span and what was pending leave before the process exits', async () => {
    // Exports would otherwise wait a minute: only the drain's flushes can deliver these.
    const node = await spawnNode({
      NODE_ID: 'trace-drained',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_BSP_SCHEDULE_DELAY: '60000',
      DRAIN_TIMEOUT_MS: '2000',
    });
    nodes.push(node);
    const raw = await joined(node, 'drained');
    const client = clientTrace();
    raw.send(JSON.stringify({ id: 300, method: 'ping', traceparent: client.traceparent }));
    await raw.waitFor((m) => m.id === 300);
    raw.ws.close();
    expect(await node.terminate()).toMatchObject({ code: 0 });
    const ofNode = receiver.spans.filter((span) => span.resource['service.instance.id'] === 'trace-drained');
    expect(ofNode.map((span) => span.name)).toEqual(expect.arrayContaining(['signaling ping', 'signaling drain']));
    expect(receiver.spansOfTrace(client.traceId).map((span) => span.name)).toContain('signaling ping');
  });
});
