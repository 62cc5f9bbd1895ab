import { describe, expect, it } from 'vitest';

import { SafeEmitter } from '../src/safe-emitter.js';

type Events = { ping: [number]; done: [] };

class Pinger extends SafeEmitter<Events> {
  ping(n: number): boolean {
    return this.safeEmit('ping', n);
  }
}

describe('SafeEmitter', () => {
  it('runs every listener even when one throws or rejects, and reports the errors', async () => {
    const errors: [string, unknown][] = [];
    const pinger = new Pinger((eventName, error) => errors.push([eventName, error]));
    const seen: string[] = [];
    pinger.on('ping', () => {
      throw new Error('first');
    });
    pinger.on('ping', async () => {
      await Promise.resolve();
      throw new Error('second');
    });
    pinger.on('ping', (n) => seen.push(`third ${n}`));

    expect(pinger.ping(7)).toBe(true);
    await new Promise((resolve) => setImmediate(resolve));

    expect(seen).toEqual(['third 7']);
    expect(errors.map(([name, error]) => [name, (error as Error).message])).toEqual([
      ['ping', 'first'],
      ['ping', 'second'],
    ]);
  });

  it('supports once, off and removeAllListeners', () => {
    const pinger = new Pinger(() => {});
    const calls: number[] = [];
    const listener = (n: number): void => void calls.push(n);
    pinger.once('ping', (n) => calls.push(n * 10));
    pinger.on('ping', listener);
    pinger.ping(1);
    pinger.ping(2);
    pinger.off('ping', listener);
    expect(pinger.ping(3)).toBe(false);
    expect(calls).toEqual([10, 1, 2]);

    pinger.on('ping', listener);
    expect(pinger.listenerCount('ping')).toBe(1);
    pinger.removeAllListeners();
    expect(pinger.listenerCount('ping')).toBe(0);
  });

  it('survives an error handler that throws', () => {
    const pinger = new Pinger(() => {
      throw new Error('handler');
    });
    let reached = false;
    pinger.on('ping', () => {
      throw new Error('listener');
    });
    pinger.on('ping', () => (reached = true));
    expect(() => pinger.ping(1)).not.toThrow();
    expect(reached).toBe(true);
  });
});
