/**
 * Large-room mode of the room service: above LARGE_ROOM_THRESHOLD (200) traders' joins and
 * leaves are not durable events, `participant.count` arrives throttled with the exact count,
 * join results carry an exact count and a truncated participant list.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startTestNode, type TestNode } from '../../test-support/harness.js';
import {
  GENEROUS_LIMITS,
  durable,
  expectWireValid,
  joinRaw,
  range,
  type JoinedRaw,
  type Message,
} from '../../test-support/room-helpers.js';

const ROOM = 'large-room';
const THRESHOLD = 200;
const TRADERS = 250;

describe('a room of 250 participants', () => {
  let t: TestNode;
  let observer: JoinedRaw;
  const counts: { count: number; at: number }[] = [];
  const traders: JoinedRaw[] = [];

  beforeAll(async () => {
    t = await startTestNode({ ...GENEROUS_LIMITS });
    observer = await joinRaw(t, 'trader-0', { roomId: ROOM });
    observer.raw.ws.on('message', (data) => {
      const message = JSON.parse(data.toString()) as Message;
      if (message.event === 'participant.count') {
        counts.push({ count: (message.data as { count: number }).count, at: Date.now() });
      }
    });
    traders.push(observer);
    for (let batch = 1; batch < TRADERS - 1; batch += 50) {
      const ids = range(batch, Math.min(batch + 49, TRADERS - 2));
      traders.push(...(await Promise.all(ids.map((i) => joinRaw(t, `trader-${i}`, { roomId: ROOM })))));
    }
    traders.push(await joinRaw(t, `trader-${TRADERS - 1}`, { roomId: ROOM }));
  }, 20_000);

  afterAll(async () => {
    await t?.close();
  });

  it('answers each join with the exact count and at most JOIN_PARTICIPANTS_LIMIT participants', () => {
    const last = traders.at(-1) as JoinedRaw;
    expect(traders).toHaveLength(TRADERS);
    expect(last.join.participantCount).toBe(TRADERS);
    expect(last.join.participants).toHaveLength(100);
    expect(new Set(last.join.participants.map((p) => p.participantId)).size).toBe(100);
    expect(t.node.rooms.summary(ROOM)?.participants).toBe(TRADERS);
  });

  it("makes only the first 200 joins durable; traders' joins above the threshold are not events", async () => {
    // The observer sees joins 2..200 (its own was seq 1); nothing for traders 201..250.
    await eventually(() => durable(observer.raw).length >= THRESHOLD - 1, 5000, 'durable joins');
    const joined = durable(observer.raw, 'participant.joined');
    expect(joined.map((m) => m.seq)).toEqual(range(2, THRESHOLD));
    expect(durable(observer.raw)).toHaveLength(THRESHOLD - 1);
    expect(t.node.rooms.summary(ROOM)?.lastSeq).toBe(THRESHOLD);
    const last = traders.at(-1) as JoinedRaw;
    expect(last.join.lastSeq).toBe(THRESHOLD);
  });

  it('sends participant.count with the exact count, at most once a second', async () => {
    await eventually(() => counts.at(-1)?.count === TRADERS, 5000, `participant.count ${TRADERS}`);
    expect(counts.length).toBeGreaterThanOrEqual(1);
    for (let i = 1; i < counts.length; i++) {
      // 1 s apart on the server; allow for delivery jitter on a busy machine.
      expect((counts[i] as { at: number }).at - (counts[i - 1] as { at: number }).at).toBeGreaterThanOrEqual(900);
    }
    // Every participant gets the count, not only the observer.
    const someone = traders[123] as JoinedRaw;
    await someone.raw.waitFor(
      (m) => m.event === 'participant.count' && (m.data as { count: number }).count === TRADERS,
    );
    expectWireValid(observer.raw.messages);
  });

  it('fans a chat message out to all 250 with the same seq', async () => {
    const sender = traders[200] as JoinedRaw;
    const response = await sender.raw.request('chat.send', { text: 'hello, large room' });
    const seq = (response.data as { seq: number }).seq;
    expect(seq).toBe(THRESHOLD + 1);
    await Promise.all(traders.map((c) => c.raw.waitFor((m) => m.seq === seq && m.event === 'chat.message')));
  });

  it("keeps a presenter's join and leave durable above the threshold; a trader's leave is not", async () => {
    const presenter = await joinRaw(t, 'presenter-1', { roomId: ROOM, role: 'presenter' });
    expect(presenter.join.participantCount).toBe(TRADERS + 1);
    expect(presenter.join.participants).toHaveLength(100);
    expect(presenter.join.participants[0]).toMatchObject({ userId: 'presenter-1', role: 'presenter' });
    const joined = await observer.raw.waitFor(
      (m) =>
        m.event === 'participant.joined' &&
        (m.data as { participant: { userId: string } }).participant.userId === 'presenter-1',
    );
    expect(joined.seq).toBe(THRESHOLD + 2);

    await eventually(() => counts.at(-1)?.count === TRADERS + 1, 5000, 'count with the presenter');

    const leaver = traders.pop() as JoinedRaw;
    leaver.raw.ws.close();
    presenter.raw.ws.close();
    const left = await observer.raw.waitFor((m) => m.event === 'participant.left');
    expect(left).toMatchObject({
      seq: THRESHOLD + 3,
      data: { participantId: presenter.join.participantId, reason: 'disconnected' },
    });
    await eventually(() => t.node.rooms.summary(ROOM)?.participants === TRADERS - 1, 5000, 'both gone');
    await eventually(() => counts.at(-1)?.count === TRADERS - 1, 5000, 'count after both left');
    expect(observer.raw.events('participant.left')).toHaveLength(1);
    expect(durable(observer.raw).at(-1)?.seq).toBe(THRESHOLD + 3);
  });
});
