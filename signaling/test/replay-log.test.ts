/** ReplayLog: seq assignment, the ring buffer, eviction by count and by age, and readAfter. */
import { describe, expect, it } from 'vitest';
import { ReplayLog, type ReplayLogOptions } from '../src/bus/replay-log.js';

/** A log with a hand-driven clock. */
function logWithClock(options: Partial<ReplayLogOptions> = {}, startSeq?: number) {
  const clock = { now: 1_000_000 };
  const log = new ReplayLog({ maxEvents: 100, maxAgeMs: 60_000, now: () => clock.now, ...options }, startSeq);
  const append = (n: number) => {
    for (let i = 0; i < n; i++) log.append((seq) => `frame-${seq}`);
  };
  return { clock, log, append };
}

const seqsOf = (entries: readonly { seq: number }[] | null) => entries && entries.map((e) => e.seq);

describe('ReplayLog', () => {
  it('starts empty at seq 0', () => {
    const { log } = logWithClock();
    expect(log.lastSeq).toBe(0);
    expect(log.size).toBe(0);
    expect(log.readAfter(0)).toEqual([]);
  });

  it('numbers events from 1, consecutively, and encodes each with its own seq', () => {
    const { log, clock } = logWithClock();
    const seen: number[] = [];
    for (let i = 0; i < 5; i++) {
      clock.now += 10;
      const entry = log.append((seq) => {
        seen.push(seq);
        return `{"seq":${seq}}`;
      });
      expect(entry).toEqual({ seq: i + 1, ts: clock.now, frame: `{"seq":${i + 1}}` });
    }
    expect(seen).toEqual([1, 2, 3, 4, 5]);
    expect(log.lastSeq).toBe(5);
    expect(seqsOf(log.readAfter(0))).toEqual([1, 2, 3, 4, 5]);
    expect(seqsOf(log.readAfter(3))).toEqual([4, 5]);
    expect(log.readAfter(2)?.map((e) => e.frame)).toEqual(['{"seq":3}', '{"seq":4}', '{"seq":5}']);
  });

  it('continues from a start seq', () => {
    const { log, append } = logWithClock({}, 41);
    expect(log.lastSeq).toBe(41);
    expect(log.readAfter(41)).toEqual([]);
    expect(log.readAfter(40)).toBeNull();
    append(2);
    expect(seqsOf(log.readAfter(41))).toEqual([42, 43]);
  });

  it('returns [] when asked after the newest seq it has', () => {
    const { log, append } = logWithClock();
    append(7);
    expect(log.readAfter(7)).toEqual([]);
  });

  it('returns null for a seq ahead of the log', () => {
    const { log, append } = logWithClock();
    expect(log.readAfter(1)).toBeNull();
    append(3);
    expect(log.readAfter(4)).toBeNull();
    expect(log.readAfter(1000)).toBeNull();
  });

  it('returns null for a negative or fractional seq', () => {
    const { log, append } = logWithClock();
    append(3);
    expect(log.readAfter(-1)).toBeNull();
    expect(log.readAfter(1.5)).toBeNull();
    expect(log.readAfter(Number.NaN)).toBeNull();
  });

  it('wraps around past its capacity, keeping the newest maxEvents in order', () => {
    const { log, append } = logWithClock({ maxEvents: 3 });
    append(3);
    expect(seqsOf(log.readAfter(0))).toEqual([1, 2, 3]);
    append(4); // seq 4..7; the ring wraps more than once
    expect(log.size).toBe(3);
    expect(log.lastSeq).toBe(7);
    expect(seqsOf(log.readAfter(4))).toEqual([5, 6, 7]);
    expect(log.readAfter(5)?.map((e) => e.frame)).toEqual(['frame-6', 'frame-7']);
    append(100);
    expect(log.size).toBe(3);
    expect(seqsOf(log.readAfter(104))).toEqual([105, 106, 107]);
  });

  it('evicts by count: a resume from before the oldest retained event is impossible (null)', () => {
    const { log, append } = logWithClock({ maxEvents: 5 });
    append(8); // retains 4..8
    expect(seqsOf(log.readAfter(3))).toEqual([4, 5, 6, 7, 8]);
    expect(log.readAfter(2)).toBeNull();
    expect(log.readAfter(0)).toBeNull();
  });

  it('evicts by age with the injected clock', () => {
    const { log, clock, append } = logWithClock({ maxAgeMs: 1000 });
    append(2); // seq 1, 2 at t0
    clock.now += 600;
    append(2); // seq 3, 4 at t0 + 600
    clock.now += 400; // seq 1, 2 are exactly maxAgeMs old: still kept
    expect(log.size).toBe(4);
    expect(seqsOf(log.readAfter(0))).toEqual([1, 2, 3, 4]);
    clock.now += 1; // now 1001 ms old: gone
    expect(log.size).toBe(2);
    expect(log.readAfter(0)).toBeNull();
    expect(log.readAfter(1)).toBeNull();
    expect(seqsOf(log.readAfter(2))).toEqual([3, 4]);
    clock.now += 10_000; // everything expired
    expect(log.size).toBe(0);
    expect(log.lastSeq).toBe(4);
    expect(log.readAfter(4)).toEqual([]);
    expect(log.readAfter(3)).toBeNull();
    append(1);
    expect(seqsOf(log.readAfter(4))).toEqual([5]);
  });

  it('evicts expired events on append too (no unbounded growth while nobody reads)', () => {
    const { log, clock, append } = logWithClock({ maxEvents: 1000, maxAgeMs: 100 });
    for (let i = 0; i < 50; i++) {
      append(1);
      clock.now += 10;
    }
    expect(log.size).toBeLessThanOrEqual(11);
  });

  it('inserts events numbered elsewhere only in order', () => {
    const { log } = logWithClock();
    log.insert({ seq: 1, ts: 1, frame: 'a' });
    log.insert({ seq: 2, ts: 2, frame: 'b' });
    expect(() => log.insert({ seq: 4, ts: 3, frame: 'd' })).toThrow(RangeError);
    expect(() => log.insert({ seq: 2, ts: 3, frame: 'b' })).toThrow(RangeError);
    expect(log.lastSeq).toBe(2);
  });

  it('refuses a capacity below 1', () => {
    expect(() => new ReplayLog({ maxEvents: 0, maxAgeMs: 1000 })).toThrow(RangeError);
    expect(() => new ReplayLog({ maxEvents: 1.5, maxAgeMs: 1000 })).toThrow(RangeError);
  });
});
