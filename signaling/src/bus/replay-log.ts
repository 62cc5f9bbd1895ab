/**
 * A bounded, in-memory log of one room's durable events: a ring buffer holding at most
 * `maxEvents` entries, none older than `maxAgeMs`. Sequence numbers are assigned here in the
 * local bus; the Redis bus keeps the same bounds in a stream. The buffer starts small and
 * doubles as events arrive, so a quiet room costs a few slots rather than `maxEvents`.
 */

export interface LoggedEvent {
  readonly seq: number;
  readonly ts: number;
  /** The encoded notification frame, exactly as sent to sockets. */
  readonly frame: string;
  /** The event's name, when the appender gave it. */
  readonly event?: string;
}

export interface ReplayLogOptions {
  readonly maxEvents: number;
  readonly maxAgeMs: number;
  /** Clock, injectable for tests. */
  readonly now?: () => number;
}

/** Slots of a new log's buffer (fewer when `maxEvents` is smaller). */
const INITIAL_CAPACITY = 8;

export class ReplayLog {
  #buffer: (LoggedEvent | undefined)[];
  readonly #maxEvents: number;
  readonly #maxAgeMs: number;
  readonly #now: () => number;
  /** Index of the oldest entry in #buffer. */
  #head = 0;
  #size = 0;
  #lastSeq = 0;

  constructor(options: ReplayLogOptions) {
    if (!Number.isInteger(options.maxEvents) || options.maxEvents < 1) throw new RangeError('maxEvents must be >= 1');
    this.#maxEvents = options.maxEvents;
    this.#buffer = new Array<LoggedEvent | undefined>(Math.min(INITIAL_CAPACITY, options.maxEvents));
    this.#maxAgeMs = options.maxAgeMs;
    this.#now = options.now ?? Date.now;
  }

  /** The seq of the newest event ever appended (0 before the first). */
  get lastSeq(): number {
    return this.#lastSeq;
  }

  /** Number of events retained now. */
  get size(): number {
    this.#evictExpired();
    return this.#size;
  }

  /** Slots allocated now: grows by doubling up to `maxEvents`, never beyond. */
  get capacity(): number {
    return this.#buffer.length;
  }

  /** The seq of the oldest retained event (`lastSeq + 1` when none is retained). */
  get oldestSeq(): number {
    this.#evictExpired();
    return this.#lastSeq - this.#size + 1;
  }

  /** Assigns the next seq to an event built by `encode(seq)` and stores it. */
  append(encode: (seq: number) => string, event?: string): LoggedEvent {
    const seq = this.#lastSeq + 1;
    const entry: LoggedEvent =
      event === undefined
        ? { seq, ts: this.#now(), frame: encode(seq) }
        : { seq, ts: this.#now(), frame: encode(seq), event };
    this.#push(entry);
    return entry;
  }

  /**
   * Every retained event with seq > `afterSeq`, oldest first; `null` when some of them were
   * already evicted (or `afterSeq` is ahead of the log), so a resume cannot be complete.
   */
  readAfter(afterSeq: number): LoggedEvent[] | null {
    this.#evictExpired();
    if (!Number.isInteger(afterSeq) || afterSeq < 0 || afterSeq > this.#lastSeq) return null;
    if (afterSeq === this.#lastSeq) return [];
    const oldestSeq = this.#lastSeq - this.#size + 1;
    if (this.#size === 0 || afterSeq + 1 < oldestSeq) return null;
    const out: LoggedEvent[] = [];
    for (let i = afterSeq + 1 - oldestSeq; i < this.#size; i++) out.push(this.#at(i));
    return out;
  }

  /** Retained events with seq < `beforeSeq`, newest first. */
  *newestFirst(beforeSeq: number): Generator<LoggedEvent> {
    this.#evictExpired();
    const oldestSeq = this.#lastSeq - this.#size + 1;
    for (let seq = Math.min(beforeSeq - 1, this.#lastSeq); seq >= oldestSeq; seq--) yield this.#at(seq - oldestSeq);
  }

  /** The i-th oldest retained entry. */
  #at(i: number): LoggedEvent {
    return this.#buffer[(this.#head + i) % this.#buffer.length] as LoggedEvent;
  }

  #push(entry: LoggedEvent): void {
    if (this.#size === this.#buffer.length) {
      if (this.#buffer.length < this.#maxEvents) this.#grow();
      else this.#dropOldest();
    }
    this.#buffer[(this.#head + this.#size) % this.#buffer.length] = entry;
    this.#size++;
    this.#lastSeq = entry.seq;
    this.#evictExpired();
  }

  /** Doubles the buffer (up to `maxEvents`), oldest entry first. */
  #grow(): void {
    const grown = new Array<LoggedEvent | undefined>(Math.min(this.#maxEvents, this.#buffer.length * 2));
    for (let i = 0; i < this.#size; i++) grown[i] = this.#at(i);
    this.#buffer = grown;
    this.#head = 0;
  }

  #dropOldest(): void {
    this.#buffer[this.#head] = undefined;
    this.#head = (this.#head + 1) % this.#buffer.length;
    this.#size--;
  }

  #evictExpired(): void {
    const cutoff = this.#now() - this.#maxAgeMs;
    while (this.#size > 0 && this.#at(0).ts < cutoff) this.#dropOldest();
  }
}
