/**
 * The node's spans, kept off the hot path when tracing is off or a request is not sampled: work
 * that only serves a span (attributes, trace context on the wire) is done only when the span
 * records. Trace context crosses nodes only for sampled traces — an unsampled request leaves no
 * bytes in a bus message and no span anywhere.
 */
import {
  context,
  SpanKind,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Attributes,
  type Context,
  type Span,
  type SpanContext,
} from '@opentelemetry/api';

export const tracer = trace.getTracer('trading-room-signaling');

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The W3C `traceparent` of a span context. */
export function traceparentOf(spanContext: SpanContext): string {
  const flags = spanContext.traceFlags.toString(16).padStart(2, '0');
  return `00-${spanContext.traceId}-${spanContext.spanId}-${flags}`;
}

/**
 * The context with a remote parent from a W3C `traceparent` (the active one when there is none
 * or it is malformed). Parsed here rather than by the global propagator, so the client's trace id
 * is known even with tracing off (an error report still names it).
 */
export function contextFrom(traceparent: string | undefined, base: Context = context.active()): Context {
  const match = traceparent ? TRACEPARENT.exec(traceparent) : null;
  if (!match) return base;
  const spanContext: SpanContext = {
    traceId: match[1] as string,
    spanId: match[2] as string,
    traceFlags: Number.parseInt(match[3] as string, 16) & TraceFlags.SAMPLED,
    isRemote: true,
  };
  return trace.isSpanContextValid(spanContext) ? trace.setSpanContext(base, spanContext) : base;
}

/** The active span when it records (a sampled request), else undefined. */
function recordingSpan(): Span | undefined {
  const span = trace.getActiveSpan();
  return span?.isRecording() ? span : undefined;
}

/**
 * The trace context a message carries to other nodes: the active sampled span's, as 48 hex
 * digits (trace id, span id). Undefined when nothing records.
 */
export function wireTrace(span: Span | undefined = recordingSpan()): string | undefined {
  if (!span) return undefined;
  const spanContext = span.spanContext();
  if ((spanContext.traceFlags & TraceFlags.SAMPLED) === 0) return undefined;
  return spanContext.traceId + spanContext.spanId;
}

/** The sampled remote context of a {@link wireTrace}, or undefined when it is not one. */
function contextOfWireTrace(wire: string | undefined): Context | undefined {
  if (wire === undefined || !/^[0-9a-f]{48}$/.test(wire)) return undefined;
  const spanContext: SpanContext = {
    traceId: wire.slice(0, 32),
    spanId: wire.slice(32),
    traceFlags: TraceFlags.SAMPLED,
    isRemote: true,
  };
  if (!trace.isSpanContextValid(spanContext)) return undefined;
  return trace.setSpanContext(context.active(), spanContext);
}

/** A `traceparent` that names a valid, sampled span, as a wire trace; else undefined. */
function wireTraceOfTraceparent(traceparent: string | undefined): string | undefined {
  const match = traceparent ? TRACEPARENT.exec(traceparent) : null;
  if (!match || (Number.parseInt(match[3] as string, 16) & TraceFlags.SAMPLED) === 0) return undefined;
  return `${match[1]}${match[2]}`;
}

/** Marks a span failed with an error code of the catalogue (or an exception's name). */
export function failSpan(span: Span, code: string, error?: unknown): void {
  span.setAttribute('error.type', code);
  if (error instanceof Error && code === 'INTERNAL') span.recordException(error);
  span.setStatus({ code: SpanStatusCode.ERROR, message: code });
}

/**
 * Runs `run` in a child span of the active recording span; without one (tracing off, request not
 * sampled) runs it as is. The span ends when `run` settles; a rejection marks it failed.
 */
export function inChildSpan<T>(
  name: string,
  kind: SpanKind,
  attributes: () => Attributes,
  run: (span: Span | undefined) => Promise<T>,
): Promise<T> {
  if (!recordingSpan()) return run(undefined);
  return tracer.startActiveSpan(name, { kind, attributes: attributes() }, async (span) => {
    try {
      return await run(span);
    } catch (error) {
      failSpan(span, errorCodeOf(error), error);
      throw error;
    } finally {
      span.end();
    }
  });
}

/** A bus publish: a producer span under the request's span; its context rides in the message. */
export function publishSpan<T>(roomId: string, event: string, run: (span: Span | undefined) => Promise<T>): Promise<T> {
  return inChildSpan(
    `bus publish ${event}`,
    SpanKind.PRODUCER,
    () => ({
      'messaging.system': 'trading-room-bus',
      'messaging.operation.type': 'send',
      'messaging.destination.name': roomId,
    }),
    run,
  );
}

/** The catalogue code of an error (`code` of a protocol error), else its name. */
function errorCodeOf(error: unknown): string {
  if (typeof error === 'object' && error !== null) {
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    if (error instanceof Error) return error.name;
  }
  return 'Error';
}

/**
 * Delivers one bus event to this node's listeners for the room — one span per node per event
 * (never per socket), a child of the publisher's span when the event carries a sampled trace.
 */
export function deliverInSpan<T extends { readonly roomId: string; readonly event: string; readonly seq?: number }>(
  event: T,
  wire: string | undefined,
  deliver: () => void,
): void {
  const parent = contextOfWireTrace(wire);
  if (!parent) {
    deliver();
    return;
  }
  const span = tracer.startSpan(
    `deliver ${event.event}`,
    {
      kind: SpanKind.CONSUMER,
      attributes: {
        'messaging.system': 'trading-room-bus',
        'messaging.operation.type': 'process',
        'messaging.destination.name': event.roomId,
        ...(event.seq === undefined ? {} : { 'trading_room.seq': event.seq }),
      },
    },
    parent,
  );
  try {
    context.with(trace.setSpan(parent, span), deliver);
  } finally {
    span.end();
  }
}

/** A call to another node (a client span), when the active request records; else undefined. */
export function rpcClientSpan(nodeId: string, method: string): Span | undefined {
  if (!recordingSpan()) return undefined;
  return tracer.startSpan(`rpc ${method}`, {
    kind: SpanKind.CLIENT,
    attributes: { 'rpc.system': 'trading-room-cluster', 'rpc.method': method, 'trading_room.peer_node_id': nodeId },
  });
}

/** Ends a client span when the call settles (failed with the error's code). */
export function endWhenSettled(span: Span, call: Promise<unknown>): void {
  call.then(
    () => span.end(),
    (error: unknown) => {
      failSpan(span, errorCodeOf(error));
      span.end();
    },
  );
}

/**
 * Serves a call from another node in a server span under the caller's span — only when the
 * caller's trace is sampled (an unsampled or absent one: no span).
 */
export async function inRpcServerSpan<T>(
  method: string,
  callerNodeId: string,
  traceparent: string | undefined,
  run: () => Promise<T>,
): Promise<T> {
  const parent = contextOfWireTrace(wireTraceOfTraceparent(traceparent));
  if (!parent) return run();
  const span = tracer.startSpan(
    `rpc ${method}`,
    {
      kind: SpanKind.SERVER,
      attributes: {
        'rpc.system': 'trading-room-cluster',
        'rpc.method': method,
        'trading_room.peer_node_id': callerNodeId,
      },
    },
    parent,
  );
  try {
    return await context.with(trace.setSpan(parent, span), run);
  } catch (error) {
    failSpan(span, errorCodeOf(error), error);
    throw error;
  } finally {
    span.end();
  }
}

/** The drain of a node: from SIGTERM (or the admin call) to the last socket gone; a root span. */
export function drainSpan(nodeId: string, connections: number, deadline: number): Span {
  return tracer.startSpan('signaling drain', {
    root: true,
    attributes: {
      'trading_room.node_id': nodeId,
      'trading_room.connections': connections,
      'trading_room.drain_deadline': deadline,
    },
  });
}

export { SpanKind, SpanStatusCode };
