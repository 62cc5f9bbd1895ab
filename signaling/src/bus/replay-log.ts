/**
 * A bounded, in-memory log of one room's durable events: a ring buffer holding at most
 * `maxEvents` entries, none older than `maxAgeMs`. Sequence numbers are assigned here in the
 * local bus; the Redis bus keeps the same bounds in a stream.
 */

export interface LoggedEvent {
  readonly seq: number;
  readonly ts: number;
  /** The encoded notification frame, exactly as sent to sockets. */
  readonly frame: string;
}

export interface ReplayLogOptions {
  readonly maxEvents: number;
  readonly maxAgeMs: number;
  /** Clock, injectable for tests. */
  readonly now?: () => number;
}

export class ReplayLog {
  readonly #buffer: (LoggedEvent | undefined)[];
  readonly #maxAgeMs: number;
  readonly #now: () => number;
  /** Index of the oldest entry in #buffer. */
  #head = 0;
  #size = 0;
  #lastSeq: number;

  constructor(options: ReplayLogOptions, startSeq = 0) {
    if (!Number.isInteger(options.maxEvents) || options.maxEvents < 1) throw new RangeError('maxEvents must be >= 1');
    this.#buffer = new Array<LoggedEvent | undefined>(options.maxEvents);
    this.#maxAgeMs = options.maxAgeMs;
    this.#now = options.now ?? Date.now;
    this.#lastSeq = startSeq;
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

  /** Assigns the next seq to an event built by `encode(seq)` and stores it. */
  append(encode: (seq: number) => string): LoggedEvent {
    const entry: LoggedEvent = { seq: this.#lastSeq + 1, ts: this.#now(), frame: '' };
    (entry as { frame: string }).frame = encode(entry.seq);
    this.#push(entry);
    return entry;
  }

  /** Stores an event whose seq was assigned elsewhere (must be exactly lastSeq + 1). */
  insert(entry: LoggedEvent): void {
    if (entry.seq !== this.#lastSeq + 1) throw new RangeError(`expected seq ${this.#lastSeq + 1}, got ${entry.seq}`);
    this.#push(entry);
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
    const capacity = this.#buffer.length;
    for (let i = afterSeq + 1 - oldestSeq; i < this.#size; i++) {
      out.push(this.#buffer[(this.#head + i) % capacity] as LoggedEvent);
    }
    return out;
  }

  #push(entry: LoggedEvent): void {
    const capacity = this.#buffer.length;
    if (this.#size === capacity) {
      this.#buffer[this.#head] = undefined;
      this.#head = (this.#head + 1) % capacity;
      this.#size--;
    }
    this.#buffer[(this.#head + this.#size) % capacity] = entry;
    this.#size++;
    this.#lastSeq = entry.seq;
    this.#evictExpired();
  }

  #evictExpired(): void {
    const cutoff = this.#now() - this.#maxAgeMs;
    const capacity = this.#buffer.length;
    while (this.#size > 0) {
      const oldest = this.#buffer[this.#head] as LoggedEvent;
      if (oldest.ts >= cutoff) break;
      this.#buffer[this.#head] = undefined;
      this.#head = (this.#head + 1) % capacity;
      this.#size--;
    }
  }
}
