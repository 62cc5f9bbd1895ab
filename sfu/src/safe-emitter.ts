/**
 * Events of an emitter as a tuple map, the way mediasoup's `enhancedEvents` types them:
 * `{ producerclosed: [ProducerClosedEvent]; close: [] }`.
 */
export type EventMap = { [eventName: string]: unknown[] };

type Listener<Args extends unknown[]> = (...args: Args) => unknown;

type Registration = { listener: (...args: never) => unknown; once: boolean };

/** Called when a listener throws or returns a rejected promise. */
export type ListenerErrorHandler = (eventName: string, error: unknown) => void;

/**
 * A typed event emitter whose fan-out never breaks: every listener of an event runs even when an
 * earlier one throws (or its promise rejects); the error goes to the `onListenerError` handler
 * given to the constructor. Listeners run synchronously, in the order they were added.
 */
export class SafeEmitter<E extends { [K in keyof E]: unknown[] }> {
  #registrations = new Map<keyof E, Registration[]>();
  #onListenerError: ListenerErrorHandler;

  constructor(onListenerError: ListenerErrorHandler) {
    this.#onListenerError = onListenerError;
  }

  /** Adds a listener for `eventName`. */
  on<K extends keyof E & string>(eventName: K, listener: Listener<E[K]>): this {
    return this.#add(eventName, listener, false);
  }

  /** Adds a listener removed after its first call. */
  once<K extends keyof E & string>(eventName: K, listener: Listener<E[K]>): this {
    return this.#add(eventName, listener, true);
  }

  /** Removes one registration of `listener` for `eventName` (no-op when absent). */
  off<K extends keyof E & string>(eventName: K, listener: Listener<E[K]>): this {
    const registrations = this.#registrations.get(eventName);
    const index = registrations?.findIndex((r) => r.listener === listener) ?? -1;
    if (registrations && index >= 0) registrations.splice(index, 1);
    return this;
  }

  /** Removes every listener of `eventName`, or of every event when omitted. */
  removeAllListeners(eventName?: keyof E & string): this {
    if (eventName === undefined) this.#registrations.clear();
    else this.#registrations.delete(eventName);
    return this;
  }

  /** Number of listeners of `eventName`. */
  listenerCount(eventName: keyof E & string): number {
    return this.#registrations.get(eventName)?.length ?? 0;
  }

  /**
   * Calls every listener of `eventName` with `args`; returns whether there was any. A listener
   * that throws or rejects is reported to the error handler and the others still run.
   */
  protected safeEmit<K extends keyof E & string>(eventName: K, ...args: E[K]): boolean {
    const registrations = this.#registrations.get(eventName);
    if (!registrations || registrations.length === 0) return false;
    for (const registration of [...registrations]) {
      if (registration.once) {
        const index = registrations.indexOf(registration);
        if (index < 0) continue;
        registrations.splice(index, 1);
      }
      try {
        const result = (registration.listener as Listener<E[K]>)(...args);
        if (result instanceof Promise) {
          result.catch((error: unknown) => this.#reportListenerError(eventName, error));
        }
      } catch (error) {
        this.#reportListenerError(eventName, error);
      }
    }
    return true;
  }

  #add(eventName: keyof E, listener: (...args: never) => unknown, once: boolean): this {
    const registrations = this.#registrations.get(eventName);
    if (registrations) registrations.push({ listener, once });
    else this.#registrations.set(eventName, [{ listener, once }]);
    return this;
  }

  #reportListenerError(eventName: string, error: unknown): void {
    try {
      this.#onListenerError(eventName, error);
    } catch {
      // The error handler itself failed: nothing sensible is left to do with the error.
    }
  }
}
