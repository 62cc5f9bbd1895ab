/**
 * The error catalogue's codes: every error code with its HTTP status, the codes only HTTP
 * answers carry, the codes only the SDK produces, and the WebSocket close codes. It imports
 * nothing, so the SDK package gets it as a generated copy (`npm run generate:client`);
 * `signaling/src/errors.ts` re-exports it with the server's error classes. Nothing else in the
 * code base invents codes or statuses.
 */

/** The codes a response's `error.code` carries: the contract's list. */
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

/**
 * Codes only HTTP answers carry (refused upgrades, the admin API): a missing or invalid token,
 * and an admin route called with the wrong method. No WebSocket response has them.
 */
export const HTTP_ONLY_ERROR_CODES = ['UNAUTHORIZED', 'METHOD_NOT_ALLOWED'] as const;

export type HttpErrorCode = ErrorCode | (typeof HTTP_ONLY_ERROR_CODES)[number];

/** HTTP status of every code, for HTTP answers and refused upgrades. */
export const HTTP_STATUS: Readonly<Record<HttpErrorCode, number>> = Object.freeze({
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
  UNAUTHORIZED: 401,
  METHOD_NOT_ALLOWED: 405,
});

/**
 * Codes the SDK gives a request that got no answer, never sent by a server: the connection
 * closed first (`DISCONNECTED`) or no answer came in time (`TIMEOUT`).
 */
export const CLIENT_ERROR_CODES = ['DISCONNECTED', 'TIMEOUT'] as const;

export type ClientErrorCode = (typeof CLIENT_ERROR_CODES)[number];

/** True for a code of the contract's list. */
export function isErrorCode(code: unknown): code is ErrorCode {
  return (ERROR_CODES as readonly unknown[]).includes(code);
}

/** WebSocket close codes the server sends: the contract's list. */
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

/**
 * Close codes only the SDK reports in its `closed` event, never sent on the wire: `1006`
 * (connection lost without a close frame) when it gives up reconnecting.
 */
export const ClientCloseCode = Object.freeze({
  ABNORMAL: 1006,
});
