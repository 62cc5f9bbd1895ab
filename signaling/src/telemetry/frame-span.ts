/**
 * The span of one inbound WebSocket frame, `signaling <method>`: from the frame's arrival to its
 * answer, rejected frames included. It starts once the frame's `traceparent` is known (the
 * client's span is its parent) — or, for a frame that never got that far (binary, not JSON), when
 * something needs it — with the arrival as its start time. Children (refusing rate-limit
 * decisions, the handler, bus publishes, Redis commands) attach to it while it records.
 */
import { context, trace, type Attributes, type Context, type Span, type SpanContext } from '@opentelemetry/api';
import type { RateLimitRejection } from '../rate-limits.js';
import { contextFrom, failSpan, SpanKind, SpanStatusCode, tracer } from './spans.js';

export class FrameSpan {
  /** `performance.now()` at the frame's arrival. */
  readonly startedAt: number;
  #span: Span | undefined;
  #context: Context | undefined;

  constructor(startedAt: number) {
    this.startedAt = startedAt;
  }

  /** Starts the span under `traceparent` (the client's span); a second call returns the first span. */
  start(traceparent: string | undefined): Span {
    if (this.#span) return this.#span;
    const parent = contextFrom(traceparent);
    this.#span = tracer.startSpan('signaling', { kind: SpanKind.SERVER, startTime: this.startedAt }, parent);
    this.#context = trace.setSpan(parent, this.#span);
    return this.#span;
  }

  /** Runs `fn` with the span active when it records; as is otherwise (no context switch). */
  run<T>(fn: () => T): T {
    return this.#context && this.#span?.isRecording() ? context.with(this.#context, fn) : fn();
  }

  /** Runs `fn` with the span active even when it does not record (error logs and reports name its trace). */
  runAlways<T>(fn: () => T): T {
    const span = this.start(undefined);
    return context.with(this.#context ?? trace.setSpan(context.active(), span), fn);
  }

  /** The span's ids when they are valid: the client's trace even when this node does not record. */
  get spanContext(): SpanContext | undefined {
    const spanContext = this.#span?.spanContext();
    return spanContext && trace.isSpanContextValid(spanContext) ? spanContext : undefined;
  }

  /** A rate-limit decision that refused the frame, as a child span over the time it took. */
  refused(rejection: RateLimitRejection, from: number, to: number): void {
    const span = this.start(undefined);
    if (!span.isRecording()) return;
    tracer
      .startSpan(
        `rate-limit ${rejection.kind}`,
        {
          startTime: from,
          attributes: { 'trading_room.limit': rejection.kind, 'trading_room.retry_after_ms': rejection.retryAfterMs },
        },
        this.#context,
      )
      .setStatus({ code: SpanStatusCode.ERROR, message: 'RATE_LIMITED' })
      .end(to);
  }

  /** Names the span by method, sets its attributes (only when it records) and ends it. */
  end(method: string, outcome: string, attributes: () => Attributes, error?: unknown): void {
    const span = this.start(undefined);
    span.updateName(`signaling ${method}`);
    if (span.isRecording()) {
      span.setAttributes(attributes());
      if (outcome !== 'ok') failSpan(span, outcome, error);
    }
    span.end();
  }
}
