import { NotFoundError, UnsupportedError, WorkerClosedError } from 'mediasoup/errors';

/**
 * Codes of {@link SfuError}; signaling maps each to the protocol error code of the same name.
 *
 * - `BAD_REQUEST`: parameters mediasoup rejected (rtpParameters, rtpCapabilities, dtlsParameters),
 *   or an operation that does not fit the object (producing on a recv transport).
 * - `NOT_FOUND`: unknown room, transport, producer or consumer.
 * - `FORBIDDEN`: not the owner, a per-participant limit reached, plain transports disabled.
 * - `UNAVAILABLE`: no live worker, the service is closed, or a worker died mid-request.
 */
export type SfuErrorCode = 'BAD_REQUEST' | 'NOT_FOUND' | 'FORBIDDEN' | 'UNAVAILABLE';

/**
 * The one error type the sfu module throws at its callers. Anything else escaping it is a bug.
 */
export class SfuError extends Error {
  override readonly name = 'SfuError';

  /** What kind of failure; see {@link SfuErrorCode}. */
  readonly code: SfuErrorCode;

  constructor(code: SfuErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/**
 * Turns an error thrown by mediasoup into an {@link SfuError}.
 *
 * A closed worker or channel becomes `UNAVAILABLE`; mediasoup's `NotFoundError` becomes
 * `NOT_FOUND`; a `TypeError` or `UnsupportedError` (mediasoup's validation of parameters, in
 * Node or in the worker) becomes `BAD_REQUEST`. Any other error becomes `fallback` when given,
 * else is returned unchanged.
 */
export function toSfuError(error: unknown, fallback?: SfuErrorCode): Error {
  if (error instanceof SfuError) return error;
  if (error instanceof WorkerClosedError) {
    return new SfuError('UNAVAILABLE', `media worker unavailable: ${error.message}`, { cause: error });
  }
  if (error instanceof NotFoundError) return new SfuError('NOT_FOUND', error.message, { cause: error });
  if (error instanceof TypeError || error instanceof UnsupportedError) {
    return new SfuError('BAD_REQUEST', error.message, { cause: error });
  }
  if (fallback !== undefined) {
    return new SfuError(fallback, error instanceof Error ? error.message : String(error), { cause: error });
  }
  return error instanceof Error ? error : new Error(String(error));
}
