/**
 * The span of a WebSocket upgrade, `signaling upgrade`: admission (origin, rate limit, token,
 * per-user cap, drain) until the socket is accepted or refused with its error code. A client
 * that can set headers may send `traceparent` with the upgrade request; browsers cannot.
 */
import { context, trace, type Span } from '@opentelemetry/api';
import type { AccessClaims } from '../auth/tokens.js';
import { contextFrom, failSpan, SpanKind, tracer } from './spans.js';

export class UpgradeSpan {
  readonly #span: Span;
  #ended = false;

  constructor(traceparent: string | string[] | undefined) {
    const parent = contextFrom(typeof traceparent === 'string' ? traceparent : undefined);
    this.#span = tracer.startSpan('signaling upgrade', { kind: SpanKind.SERVER }, parent);
  }

  /** Runs `fn` with the span active (a log line names its trace). */
  runIn<T>(fn: () => T): T {
    return context.with(trace.setSpan(context.active(), this.#span), fn);
  }

  /** Ends the span once: `ok` with the admitted claims, or the error code it was refused with. */
  end(outcome: string, claims?: AccessClaims): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#span.isRecording()) {
      this.#span.setAttribute('trading_room.outcome', outcome);
      if (claims) {
        this.#span.setAttributes({
          'trading_room.room_id': claims.roomId,
          'trading_room.user_id': claims.userId,
          'trading_room.role': claims.role,
        });
      }
      if (outcome !== 'ok') failSpan(this.#span, outcome);
    }
    this.#span.end();
  }
}
