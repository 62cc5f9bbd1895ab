/**
 * The error catalogue: the codes, HTTP statuses and close codes (from the dependency-free
 * `protocol/error-codes.ts`, which the SDK imports too), the wire shape of an error, and the
 * server's error classes.
 */
import type { ErrorCode } from './protocol/error-codes.js';
import { BusUnavailableError } from './bus/room-bus.js';

export * from './protocol/error-codes.js';

/** Wire shape of an error inside a response envelope. */
export interface ErrorBody {
  code: ErrorCode;
  message: string;
  retryAfterMs?: number;
  details?: unknown;
}

/**
 * An expected, client-caused or dependency-caused failure that maps onto a protocol error.
 * Handlers throw it; the gateway turns it into the response envelope.
 */
export class ProtocolError extends Error {
  readonly code: ErrorCode;
  readonly retryAfterMs: number | undefined;
  readonly details: unknown;

  constructor(code: ErrorCode, message: string, options: { retryAfterMs?: number; details?: unknown } = {}) {
    // An expected outcome, answered to the client: no stack trace (capturing one was a fifth of
    // the node's CPU under a flood of rejected frames).
    const stackTraceLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = stackTraceLimit;
    this.name = 'ProtocolError';
    this.code = code;
    this.retryAfterMs = options.retryAfterMs;
    this.details = options.details;
  }

  toBody(): ErrorBody {
    const body: ErrorBody = { code: this.code, message: this.message };
    if (this.retryAfterMs !== undefined) body.retryAfterMs = Math.max(0, Math.ceil(this.retryAfterMs));
    if (this.details !== undefined) body.details = this.details;
    return body;
  }
}

/**
 * Converts anything thrown by a handler into a wire error. The shared store (Redis) or another
 * node out of reach is `UNAVAILABLE` with its `retryAfterMs`: nothing happened, try again. Any
 * other unknown error becomes INTERNAL.
 */
export function toErrorBody(error: unknown): ErrorBody {
  if (error instanceof ProtocolError) return error.toBody();
  if (error instanceof BusUnavailableError) {
    return {
      code: 'UNAVAILABLE',
      message: 'the cluster’s shared store is unreachable; try again',
      retryAfterMs: Math.max(0, Math.ceil(error.retryAfterMs)),
    };
  }
  return { code: 'INTERNAL', message: 'internal error' };
}

/** Thrown when the configuration in the environment is invalid; names the variable. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}
