/**
 * The node's drain state machine, `RUNNING → DRAINING → CLOSED`. Entering DRAINING twice does
 * nothing; listeners learn each transition once.
 */
import { EventEmitter } from 'node:events';

export type DrainState = 'RUNNING' | 'DRAINING' | 'CLOSED';

export interface DrainEvents {
  draining: [{ startedAt: number; deadline: number }];
  closed: [];
}

export class DrainController extends EventEmitter<DrainEvents> {
  #state: DrainState = 'RUNNING';
  #startedAt: number | undefined;
  #deadline: number | undefined;
  readonly #timeoutMs: number;

  constructor(timeoutMs: number) {
    super();
    this.#timeoutMs = timeoutMs;
  }

  get state(): DrainState {
    return this.#state;
  }

  get timeoutMs(): number {
    return this.#timeoutMs;
  }

  /** Epoch ms at which remaining sockets are closed; undefined while running. */
  get deadline(): number | undefined {
    return this.#deadline;
  }

  get startedAt(): number | undefined {
    return this.#startedAt;
  }

  /** Starts draining; returns false when the node was already draining or closed. */
  drain(now = Date.now()): boolean {
    if (this.#state !== 'RUNNING') return false;
    this.#state = 'DRAINING';
    this.#startedAt = now;
    this.#deadline = now + this.#timeoutMs;
    this.emit('draining', { startedAt: now, deadline: this.#deadline });
    return true;
  }

  /** Marks the node closed (from any state); safe to call twice. */
  close(): void {
    if (this.#state === 'CLOSED') return;
    this.#state = 'CLOSED';
    this.emit('closed');
  }
}
