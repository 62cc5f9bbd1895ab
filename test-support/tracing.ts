/**
 * Tracing and error reporting under test: the node's OpenTelemetry SDK with an in-memory
 * exporter (in-process nodes), a real OTLP/HTTP receiver that decodes `http/json` exports (node
 * processes), a Sentry ingest server that keeps the envelopes it gets, and client trace contexts.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace';
import type { RedisClient } from '../signaling/src/bus/redis-connections.js';
import { roomKeys } from '../signaling/src/bus/redis-scripts.js';
import { startTracing } from '../signaling/src/telemetry/tracing.js';
import type { RawSocket } from './harness.js';

/** A client's span: a fresh `traceparent` (sampled unless told) and its ids. */
export function clientTrace(sampled = true): { traceparent: string; traceId: string; spanId: string } {
  const traceId = randomBytes(16).toString('hex');
  const spanId = randomBytes(8).toString('hex');
  return { traceparent: `00-${traceId}-${spanId}-${sampled ? '01' : '00'}`, traceId, spanId };
}

/**
 * A real fault for a handler to hit: the room's head (`meta`) in Redis overwritten with a string,
 * so the next publish to the room fails with WRONGTYPE — an `INTERNAL` answer.
 */
export async function breakRoomHead(redis: RedisClient, keyPrefix: string, roomId: string): Promise<void> {
  const { meta } = roomKeys(keyPrefix, roomId);
  await redis.del(meta);
  await redis.set(meta, 'not a hash');
}

/** Sends a `chat.send` under a fresh sampled client trace; resolves with its answer and the trace. */
export async function tracedChat(
  raw: RawSocket,
  id: number,
  text: string,
): Promise<{ answer: Record<string, unknown>; trace: ReturnType<typeof clientTrace> }> {
  const trace = clientTrace();
  raw.send(JSON.stringify({ id, method: 'chat.send', data: { text }, traceparent: trace.traceparent }));
  return { answer: await raw.waitFor((m) => m.id === id), trace };
}

/**
 * Starts this process's tracing (once) with an in-memory exporter and no instrumentations; every
 * span of every in-process node lands in the returned exporter.
 */
export async function startMemoryTracing(nodeId = 'memory-node'): Promise<InMemorySpanExporter> {
  const exporter = new InMemorySpanExporter();
  await startTracing({
    nodeId,
    version: 'test',
    spanProcessors: [new SimpleSpanProcessor({ exporter })],
    instrumentations: [],
  });
  return exporter;
}

/** The finished spans of one trace. */
export function spansOfTrace(exporter: InMemorySpanExporter, traceId: string): ReadableSpan[] {
  return exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId);
}

export function parentSpanId(span: ReadableSpan): string | undefined {
  return span.parentSpanContext?.spanId;
}

/** A span as the OTLP receiver decoded it, with its resource's attributes. */
export interface ReceivedSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string;
  readonly name: string;
  readonly attributes: Record<string, unknown>;
  readonly resource: Record<string, unknown>;
}

interface OtlpKeyValue {
  key: string;
  value: Record<string, unknown>;
}

/** An OTLP/HTTP trace receiver on loopback (`POST /v1/traces`, `http/json`, gzip or not). */
export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  readonly #server: Server;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(): Promise<OtlpReceiver> {
    const server = createServer();
    const receiver = new OtlpReceiver(server);
    server.on('request', (request, response) => {
      void readBody(request).then((body) => {
        if (request.url === '/v1/traces' && request.method === 'POST') receiver.#decode(body);
        response.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return receiver;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  spansOfTrace(traceId: string): ReceivedSpan[] {
    return this.spans.filter((span) => span.traceId === traceId);
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #decode(body: Buffer): void {
    const request = JSON.parse(body.toString('utf8')) as {
      resourceSpans?: {
        resource?: { attributes?: OtlpKeyValue[] };
        scopeSpans?: {
          spans?: {
            traceId: string;
            spanId: string;
            parentSpanId?: string;
            name: string;
            attributes?: OtlpKeyValue[];
          }[];
        }[];
      }[];
    };
    for (const resourceSpans of request.resourceSpans ?? []) {
      const resource = attributesOf(resourceSpans.resource?.attributes);
      for (const scope of resourceSpans.scopeSpans ?? []) {
        for (const span of scope.spans ?? []) {
          this.spans.push({
            traceId: span.traceId,
            spanId: span.spanId,
            parentSpanId: span.parentSpanId ?? '',
            name: span.name,
            attributes: attributesOf(span.attributes),
            resource,
          });
        }
      }
    }
  }
}

function attributesOf(list: OtlpKeyValue[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const { key, value } of list ?? []) out[key] = Object.values(value)[0];
  return out;
}

async function readBody(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  const body = Buffer.concat(chunks);
  return request.headers['content-encoding'] === 'gzip' ? gunzipSync(body) : body;
}

/** What a Sentry ingest server got: each envelope's raw bytes and its parsed items. */
export interface ReceivedEnvelope {
  readonly raw: Buffer;
  readonly header: Record<string, unknown>;
  readonly items: { header: Record<string, unknown>; payload: Record<string, unknown> | string }[];
}

/** A Sentry ingest server on loopback: `SENTRY_DSN` = {@link dsn}; envelopes are kept as sent. */
export class SentryReceiver {
  readonly envelopes: ReceivedEnvelope[] = [];
  readonly #server: Server;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(): Promise<SentryReceiver> {
    const server = createServer();
    const receiver = new SentryReceiver(server);
    server.on('request', (request, response) => {
      void readBody(request).then((raw) => {
        if (request.method === 'POST' && /\/api\/\d+\/envelope\/?/.test(request.url ?? '')) {
          receiver.envelopes.push(parseEnvelope(raw));
        }
        response.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return receiver;
  }

  get dsn(): string {
    return `http://0123456789abcdef0123456789abcdef@127.0.0.1:${(this.#server.address() as AddressInfo).port}/1`;
  }

  /** The error events received, with the raw bytes of the envelope each came in. */
  events(): { event: Record<string, unknown>; raw: Buffer; header: Record<string, unknown> }[] {
    return this.envelopes.flatMap((envelope) =>
      envelope.items
        .filter((item) => item.header.type === 'event' && typeof item.payload === 'object')
        .map((item) => ({
          event: item.payload as Record<string, unknown>,
          raw: envelope.raw,
          header: envelope.header,
        })),
    );
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** Envelope: a JSON header line, then per item a JSON header line and its payload. */
function parseEnvelope(raw: Buffer): ReceivedEnvelope {
  const lines = raw.toString('utf8').split('\n');
  const header = JSON.parse(lines[0] ?? '{}') as Record<string, unknown>;
  const items: ReceivedEnvelope['items'] = [];
  for (let i = 1; i + 1 < lines.length; i += 2) {
    if (!lines[i]) continue;
    const itemHeader = JSON.parse(lines[i] as string) as Record<string, unknown>;
    const payloadText = lines[i + 1] ?? '';
    let payload: Record<string, unknown> | string = payloadText;
    try {
      payload = JSON.parse(payloadText) as Record<string, unknown>;
    } catch {
      /* an attachment, not JSON */
    }
    items.push({ header: itemHeader, payload });
  }
  return { raw, header, items };
}
