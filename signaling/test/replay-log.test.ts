/**
 * ReplayLog: seq assignment, the ring buffer and its lazy growth, eviction by count and by age,
 * and readAfter.
 */
import { describe, expect, it } from 'vitest';
import { ReplayLog, type ReplayLogOptions } from '../src/bus/replay-log.js';
import { range } from '../../test-support/room-helpers.js';

/** A log with a hand-driven clock. */
function logWithClock(options: Partial<ReplayLogOptions> = {}) {
  const clock = { now: 1_000_000 };
  const log = new ReplayLog({ maxEvents: 100, maxAgeMs: 60_000, now: () => clock.now, ...options });
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

  it('allocates a few slots for an empty room and doubles them as events arrive, up to maxEvents', () => {
    const { log, append } = logWithClock({ maxEvents: 10_000 });
    expect(log.capacity).toBeLessThanOrEqual(8);
    const seen = [log.capacity];
    for (let i = 0; i < 12_000; i++) {
      append(1);
      if (log.capacity !== seen.at(-1)) seen.push(log.capacity);
    }
    expect(seen).toEqual([8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 10_000]);
    expect(log.size).toBe(10_000);
    expect(seqsOf(log.readAfter(2000))).toEqual(range(2001, 12_000));
  });

  it('keeps order across growth after the ring has wrapped (events expired from the front)', () => {
    const { log, clock, append } = logWithClock({ maxEvents: 64, maxAgeMs: 100 });
    append(6); // seq 1..6 at t0
    clock.now += 60;
    append(2); // seq 7, 8; the buffer of 8 is full
    clock.now += 50;
    expect(log.size).toBe(2); // seq 1..6 expired: the oldest entry now sits mid-buffer
    append(6); // seq 9..14 wrap around the front of the buffer and fill it
    expect(log.capacity).toBe(8);
    append(1); // seq 15: the buffer doubles, oldest first
    expect(log.capacity).toBe(16);
    expect(seqsOf(log.readAfter(6))).toEqual(range(7, 15));
    expect(log.readAfter(5)).toBeNull();
  });

  it('never allocates more than maxEvents slots', () => {
    expect(new ReplayLog({ maxEvents: 3, maxAgeMs: 1000 }).capacity).toBe(3);
    const { log, append } = logWithClock({ maxEvents: 20 });
    append(100);
    expect(log.capacity).toBe(20);
    expect(seqsOf(log.readAfter(80))?.length).toBe(20);
  });

  it('refuses a capacity below 1', () => {
    expect(() => new ReplayLog({ maxEvents: 0, maxAgeMs: 1000 })).toThrow(RangeError);
    expect(() => new ReplayLog({ maxEvents: 1.5, maxAgeMs: 1000 })).toThrow(RangeError);
  });
});
