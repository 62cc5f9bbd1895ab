/**
 * The media session's state machine, kept apart from WebRTC so it can be tested alone:
 * `idle` → `connecting` (device and transports being set up) → `live` (media flows or can flow)
 * → `recovering` (the connection dropped or a transport failed; media is being rebuilt) →
 * `live` again, and `closed` for good from anywhere.
 */

/** Where a media session is. */
export type MediaState = 'idle' | 'connecting' | 'live' | 'recovering' | 'closed';

/** What moves a media session from one state to another. */
export type MediaStateEvent =
  /** The client joined a room with media: set up the device. */
  | 'start'
  /** The device is loaded and the transports needed so far are connected or connecting. */
  | 'ready'
  /** The signaling connection dropped or a transport failed. */
  | 'lost'
  /** The node answered without media (`routerRtpCapabilities` null): nothing to set up. */
  | 'unavailable'
  /** The application closed the session, or the client stopped for good. */
  | 'close';

const TRANSITIONS: Readonly<Record<MediaState, Partial<Record<MediaStateEvent, MediaState>>>> = {
  idle: { start: 'connecting', lost: 'idle', unavailable: 'idle', close: 'closed' },
  connecting: { ready: 'live', lost: 'recovering', unavailable: 'idle', close: 'closed' },
  live: { lost: 'recovering', start: 'recovering', unavailable: 'idle', close: 'closed' },
  recovering: { ready: 'live', lost: 'recovering', start: 'recovering', unavailable: 'idle', close: 'closed' },
  closed: {},
};

/**
 * The transition table with a listener: `fire(event)` moves to the next state and tells the
 * listener when the state changed; an event the current state does not take is ignored and
 * reported as `false`.
 */
export class MediaStateMachine {
  #state: MediaState = 'idle';
  readonly #onChange: (state: MediaState, previous: MediaState) => void;

  constructor(onChange: (state: MediaState, previous: MediaState) => void = () => {}) {
    this.#onChange = onChange;
  }

  get state(): MediaState {
    return this.#state;
  }

  /** Applies `event`; false when the current state does not take it. */
  fire(event: MediaStateEvent): boolean {
    const next = TRANSITIONS[this.#state][event];
    if (next === undefined) return false;
    const previous = this.#state;
    this.#state = next;
    if (next !== previous) this.#onChange(next, previous);
    return true;
  }
}
