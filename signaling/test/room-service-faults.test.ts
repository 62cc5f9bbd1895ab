/**
 * The room service when its bus fails under it: faults injected around the real local bus (a
 * durable delivery lost on the way to the node, a log read or a presence count that rejects),
 * through a real node and real sockets. A failed gap repair keeps its queue and retries; a
 * failed participant count is logged and the next change is counted.
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalRoomBus } from '../src/bus/local-room-bus.js';
import type { BusEvent, BusListener } from '../src/bus/room-bus.js';
import { deferred } from '../../test-support/async.js';
import { eventually, startTestNode, type TestNode } from '../../test-support/harness.js';
import { GENEROUS_LIMITS, durable, joinRaw, range, seqs, type Message } from '../../test-support/room-helpers.js';

/** The real local bus, with faults to switch on. */
class FaultyBus extends LocalRoomBus {
  /** Durable events not delivered to the node, as a lost cluster message would be. */
  dropDeliveries = 0;
  /** When set, the next log read waits for it and fails if it rejects. */
  holdNextRead: Promise<void> | undefined;
  /** `presence.count` calls to fail. */
  failCounts = 0;

  constructor() {
    super({ maxEvents: 1000, maxAgeMs: 60_000 });
    const count = this.presence.count;
    this.presence.count = async (roomId) => {
      if (this.failCounts > 0) {
        this.failCounts--;
        throw new Error('presence unreachable (injected)');
      }
      return count(roomId);
    };
  }

  override subscribe(roomId: string, listener: BusListener): ReturnType<LocalRoomBus['subscribe']> {
    return super.subscribe(roomId, (event) => {
      if (event.seq !== undefined && this.dropDeliveries > 0) {
        this.dropDeliveries--;
        return;
      }
      listener(event);
    });
  }

  override async readAfter(...args: Parameters<LocalRoomBus['readAfter']>): Promise<BusEvent[] | null> {
    const hold = this.holdNextRead;
    this.holdNextRead = undefined;
    if (hold) await hold;
    return super.readAfter(...args);
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

  it('a failed gap repair keeps the queued events and retries: all arrive, in order', async () => {
    const { t, bus, lines } = await startFaultyNode();
    const roomId = 'repair';
    const alice = await joinRaw(t, 'alice', { roomId, role: 'presenter' });
    const bob = await joinRaw(t, 'bob', { roomId });
    const before = bob.join.lastSeq;

    bus.dropDeliveries = 1;
    const texts = ['lost on the way', 'opens the gap', 'queued behind it'];
    await alice.raw.request('chat.send', { text: texts[0] });
    // The next event reveals the gap; the log read of its repair hangs until we fail it.
    const read = deferred();
    bus.holdNextRead = read.promise;
    await alice.raw.request('chat.send', { text: texts[1] });
    await alice.raw.request('chat.send', { text: texts[2] });
    read.reject(new Error('log unreachable (injected)'));

    await eventually(() => lines.some((l) => l.msg === 'seq gap repair failed; retrying'), 5000, 'the failure');
    for (const c of [alice, bob]) await c.raw.waitFor((m) => m.seq === before + 3);
    for (const c of [alice, bob]) {
      expect(seqs(c.raw).filter((seq) => seq > before)).toEqual(range(before + 1, before + 3));
      const chats = durable(c.raw, 'chat.message').map((m) => (m.data as Message).text);
      expect(chats).toEqual(texts);
    }
    expect(lines.filter((l) => l.msg === 'seq gap repair failed; retrying')).toHaveLength(1);
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
