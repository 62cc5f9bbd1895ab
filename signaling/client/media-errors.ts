/**
 * Errors of the media layer an application can act on: each says what went wrong and what to
 * do about it, so no failure ends as a silent black video.
 */

/** What kind of media failure an error is. */
export type MediaErrorCode = 'permission-denied' | 'device' | 'unavailable' | 'codec-mismatch' | 'transport-failed';

/** The base of every media error; `code` tells them apart without `instanceof`. */
export class MediaError extends Error {
  readonly code: MediaErrorCode;
  override readonly cause: unknown;

  constructor(code: MediaErrorCode, message: string, cause?: unknown) {
    super(message);
    this.name = 'MediaError';
    this.code = code;
    this.cause = cause;
  }
}

/** The user (or the browser's policy) refused the camera, microphone or screen. Ask again from a click. */
export class PermissionDeniedError extends MediaError {
  readonly source: string;

  constructor(source: string, cause?: unknown) {
    super('permission-denied', `permission to capture the ${source} was denied`, cause);
    this.name = 'PermissionDeniedError';
    this.source = source;
  }
}

/** No capture device (none plugged in, or it is busy elsewhere). */
export class MediaDeviceError extends MediaError {
  readonly source: string;

  constructor(source: string, cause?: unknown) {
    const why = cause instanceof Error ? `: ${cause.name} ${cause.message}` : '';
    super('device', `the ${source} could not be captured${why}`, cause);
    this.name = 'MediaDeviceError';
    this.source = source;
  }
}

/**
 * The node this client joined has no media (its join answered `routerRtpCapabilities: null`,
 * or an `sfu.*` request answered `UNAVAILABLE`): chat and alerts work, audio and video do not
 * until a reconnect lands on a node with media.
 */
export class MediaUnavailableError extends MediaError {
  constructor(detail = 'media is not available on this node', cause?: unknown) {
    super('unavailable', detail, cause);
    this.name = 'MediaUnavailableError';
  }
}

/** The browser and the server share no codec for this track (it cannot send or decode it). */
export class CodecMismatchError extends MediaError {
  readonly kind: string;

  constructor(kind: string, detail: string, cause?: unknown) {
    super('codec-mismatch', `no common ${kind} codec between this browser and the server: ${detail}`, cause);
    this.name = 'CodecMismatchError';
    this.kind = kind;
  }
}

/**
 * A WebRTC transport could not connect: the browser declared ICE failed, or it did not connect
 * within the session's `connectTimeoutMs`. Almost always the network: the server's announced
 * address (`RTC_ANNOUNCED_ADDRESS`) is not reachable from this browser, or UDP (and TCP) to the
 * server's RTC port range is blocked. `candidates` are the server's addresses the browser tried.
 * The session keeps trying (ICE restarts) and reports `recovering` until the transport connects.
 */
export class TransportFailedError extends MediaError {
  readonly direction: 'send' | 'recv';
  readonly hint: string;
  /** The server's ICE candidates the browser tried, as `address:port/protocol`. */
  readonly candidates: readonly string[];

  constructor(direction: 'send' | 'recv', candidates: readonly string[] = [], cause?: unknown) {
    const hint =
      'check that the server announces an address this browser can reach (RTC_ANNOUNCED_ADDRESS) and that ' +
      'UDP (or TCP) to its RTC ports is not blocked by a firewall or proxy';
    const tried = candidates.length > 0 ? `; tried ${candidates.join(', ')}` : '';
    super('transport-failed', `the ${direction} transport could not connect (ICE failed${tried}): ${hint}`, cause);
    this.name = 'TransportFailedError';
    this.direction = direction;
    this.hint = hint;
    this.candidates = candidates;
  }
}
