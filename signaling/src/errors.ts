/**
 * The error catalogue: every protocol error code with its response shape, the HTTP status used
 * when the same condition refuses an HTTP request or an upgrade, and the close codes of the
 * contract. Nothing else in the code base invents codes or statuses.
 */

export const ERROR_CODES = [
  'BAD_REQUEST',
  'UNKNOWN_METHOD',
  'NOT_JOINED',
  'ALREADY_JOINED',
  'FORBIDDEN',
  'NOT_FOUND',
  'RATE_LIMITED',
  'ROOM_FULL',
  'UNAVAILABLE',
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** Codes that appear only in HTTP refusals (no WebSocket response carries them). */
export type HttpErrorCode = ErrorCode | 'UNAUTHORIZED';

/** HTTP status for each code, used by HTTP endpoints and refused upgrades. */
export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = Object.freeze({
  BAD_REQUEST: 400,
  UNKNOWN_METHOD: 404,
  NOT_JOINED: 409,
  ALREADY_JOINED: 409,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  RATE_LIMITED: 429,
  ROOM_FULL: 409,
  UNAVAILABLE: 503,
  INTERNAL: 500,
});

/** WebSocket close codes of the contract. */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  POLICY: 1008,
  TOO_BIG: 1009,
  INTERNAL: 1011,
  DRAIN_DEADLINE: 1012,
  TRY_AGAIN_LATER: 1013,
  TOKEN_EXPIRED: 4001,
  KICKED: 4003,
  REPLACED: 4009,
});

export type CloseCodeValue = (typeof CloseCode)[keyof typeof CloseCode];

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

  get httpStatus(): number {
    return HTTP_STATUS[this.code];
  }

  toBody(): ErrorBody {
    const body: ErrorBody = { code: this.code, message: this.message };
    if (this.retryAfterMs !== undefined) body.retryAfterMs = Math.max(0, Math.ceil(this.retryAfterMs));
    if (this.details !== undefined) body.details = this.details;
    return body;
  }
}

/** Converts anything thrown by a handler into a wire error; unknown errors become INTERNAL. */
export function toErrorBody(error: unknown): ErrorBody {
  if (error instanceof ProtocolError) return error.toBody();
  return { code: 'INTERNAL', message: 'internal error' };
}

/** Thrown when the configuration in the environment is invalid; names the variable. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Thrown when a lifecycle method is used on something already closed. */
export class InvalidStateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidStateError';
  }
}
