/**
 * Calls every listener with one value; a listener that throws is reported and never stops the
 * others (mediasoup's `safeEmit`).
 */
export function safeDeliver<T>(
  listeners: Iterable<(value: T) => void>,
  value: T,
  onError: (error: unknown) => void,
): void {
  for (const listener of listeners) {
    try {
      listener(value);
    } catch (error) {
      onError(error);
    }
  }
}
