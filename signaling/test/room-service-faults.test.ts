/**
 * The room service when its bus fails under it: faults injected around the real local bus (the
 * shared store unreachable, a presence count that rejects), through a real node and real
 * sockets. An unreachable store answers UNAVAILABLE with `retryAfterMs` and changes nothing; a
 * departure it refused is announced once it is back; a failed participant count is logged and
 * the next change is counted.
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalRoomBus } from '../src/bus/local-room-bus.js';
import { BusUnavailableError, type BusStatus, type RoomBus } from '../src/bus/room-bus.js';
import { eventually, startTestNode, type TestNode } from '../../test-support/harness.js';
import { GENEROUS_LIMITS, durable, joinRaw, range, seqs, type Message } from '../../test-support/room-helpers.js';

/** The real local bus, with faults to switch on. */
class FaultyBus extends LocalRoomBus {
  /** `presence.count` calls to fail. */
  failCounts = 0;
  #down = false;
  readonly #statusListeners = new Set<(status: BusStatus) => void>();

  constructor() {
    super({ maxEvents: 1000, maxAgeMs: 60_000 });
    const count = this.presence.count;
    this.presence.count = async (roomId) => {
      this.#check();
      if (this.failCounts > 0) {
        this.failCounts--;
        throw new Error('presence unreachable (injected)');
      }
      return count(roomId);
    };
    // Every shared read and write fails while down, as with Redis out of reach.
    for (const store of [this.presence, this.state] as Record<string, unknown>[]) {
      for (const [name, method] of Object.entries(store)) {
        if (name === 'count' && store === this.presence) continue;
        const original = method as (...args: unknown[]) => Promise<unknown>;
        store[name] = async (...args: unknown[]) => {
          this.#check();
          return original(...args);
        };
      }
    }
  }

  /** Takes the shared store away (true) or gives it back, telling the status listeners. */
  setDown(down: boolean): void {
    this.#down = down;
    for (const listener of this.#statusListeners) listener(this.status());
  }

  override status(): BusStatus {
    return { kind: 'local', state: this.#down ? 'degraded' : 'ok' };
  }

  override onStatus(listener: (status: BusStatus) => void): () => void {
    this.#statusListeners.add(listener);
    return () => this.#statusListeners.delete(listener);
  }

  override async publishDurable(...args: Parameters<RoomBus['publishDurable']>): ReturnType<RoomBus['publishDurable']> {
    this.#check();
    return super.publishDurable(...args);
  }

  override async subscribe(...args: Parameters<RoomBus['subscribe']>): ReturnType<RoomBus['subscribe']> {
    this.#check();
    return super.subscribe(...args);
  }

  #check(): void {
    if (this.#down) throw new BusUnavailableError('shared store unreachable (injected)', 750);
  }
}

/** A warn-level logger whose lines the test can read. */
function recordingLogger() {
  const lines: { msg: string; roomId?: string }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as { msg: string });
      done();
    },
  });
  return { logger: pino({ level: 'warn' }, stream), lines };
}

describe('room service on a failing bus', () => {
  const started: TestNode[] = [];
  afterEach(async () => {
    for (const t of started.splice(0)) await t.close();
  });

  async function startFaultyNode(env: Record<string, string> = {}) {
    const bus = new FaultyBus();
    const { logger, lines } = recordingLogger();
    const t = await startTestNode({ ...GENEROUS_LIMITS, ...env }, { bus, logger });
    started.push(t);
    return { t, bus, lines };
  }

  it('an unreachable store answers UNAVAILABLE with retryAfterMs, numbers nothing, and chat goes on after', async () => {
    const { t, bus, lines } = await startFaultyNode();
    const roomId = 'outage';
    const alice = await joinRaw(t, 'alice', { roomId, role: 'presenter' });
    const bob = await joinRaw(t, 'bob', { roomId });
    const before = bob.join.lastSeq;

    bus.setDown(true);
    const refused = [
      await alice.raw.request('chat.send', { text: 'while the store is away' }),
      await alice.raw.request('alert.publish', { symbol: 'ES', action: 'buy' }),
      // A join needs the store too (presence, bans, the room's position).
      await (await t.raw(await t.token('carol', { roomId }))).request('room.join'),
    ];
    for (const response of refused) {
      expect(response).toMatchObject({ ok: false, error: { code: 'UNAVAILABLE', retryAfterMs: 750 } });
    }
    expect(
      lines.filter((l) => l.msg === 'handler failed'),
      'not an internal error',
    ).toEqual([]);
    // Liveness of the connection is untouched.
    expect(await alice.raw.request('ping')).toMatchObject({ ok: true });

    bus.setDown(false);
    const sent = await alice.raw.request('chat.send', { text: 'back' });
    expect((sent.data as { seq: number }).seq, 'no seq was used while away').toBe(before + 1);
    await bob.raw.waitFor((m) => m.seq === before + 1);
    expect(seqs(bob.raw)).toEqual([before + 1]);
    expect(durable(bob.raw, 'chat.message').map((m) => (m.data as Message).text)).toEqual(['back']);
    expect(alice.raw.ws.readyState).toBe(alice.raw.ws.OPEN);
  });

  it('a departure the store refused is announced once it is back', async () => {
    const { t, bus, lines } = await startFaultyNode();
    const roomId = 'late-leave';
    const alice = await joinRaw(t, 'alice', { roomId });
    const bob = await joinRaw(t, 'bob', { roomId });

    bus.setDown(true);
    expect(await bob.raw.request('room.leave')).toMatchObject({ ok: true });
    await eventually(() => lines.some((l) => l.msg === 'a departure waits for the bus to come back'), 5000, 'refused');
    expect(alice.raw.events('participant.left')).toEqual([]);

    bus.setDown(false);
    const left = await alice.raw.waitFor((m) => m.event === 'participant.left');
    expect(left.data).toEqual({ participantId: bob.join.participantId, reason: 'left' });
    const checker = await joinRaw(t, 'checker', { roomId });
    expect(checker.join.participants.map((p) => p.userId).sort()).toEqual(['alice', 'checker']);
    expect(seqs(alice.raw)).toEqual(range(alice.join.lastSeq + 1, checker.join.lastSeq));
  });

  it('a failed participant count is logged, not left unhandled; the next change is counted', async () => {
    const { t, bus, lines } = await startFaultyNode({
      LARGE_ROOM_THRESHOLD: '1',
      PARTICIPANT_COUNT_INTERVAL_MS: '2000',
    });
    const roomId = 'count';
    const counts = (m: Message) => (m.event === 'participant.count' ? (m.data as { count: number }).count : undefined);
    const alice = await joinRaw(t, 'alice', { roomId });
    await joinRaw(t, 'bob', { roomId }); // the room is large now: its first count goes out at once
    await alice.raw.waitFor((m) => counts(m) === 2);

    // Carol's count is due a full interval after the first; it will fail.
    await joinRaw(t, 'carol', { roomId });
    expect(alice.raw.events('participant.count'), 'the count for carol is still pending').toHaveLength(1);
    bus.failCounts = 1;
    await eventually(() => lines.some((l) => l.msg === 'sending participant.count failed'), 5000, 'the failure');
    expect(lines.find((l) => l.msg === 'sending participant.count failed')).toMatchObject({ roomId });

    await joinRaw(t, 'dave', { roomId });
    await alice.raw.waitFor((m) => counts(m) === 4);
    expect(alice.raw.events('participant.count').map(counts)).toEqual([2, 4]);
  });
});
