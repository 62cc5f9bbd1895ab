/**
 * The room bus conformance suite: what every `RoomBus` implementation promises. A world is one
 * shared store; `node()` gives the bus one node of it sees (the local bus has a single node, so
 * its world returns the same bus every time). Every case uses a room of its own.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeFrame, type BusEvent, type RetentionOptions, type RoomBus } from '../src/bus/room-bus.js';
import { eventually } from '../../test-support/async.js';

export interface RoomBusWorld {
  /** The bus of one node of the world; nodes of one world share rooms. */
  node(): Promise<RoomBus>;
  close(): Promise<void>;
}

export interface RoomBusWorldOptions extends RetentionOptions {
  readonly onListenerError?: (error: unknown) => void;
}

export type RoomBusFactory = (options: RoomBusWorldOptions) => Promise<RoomBusWorld>;

const RETENTION: RoomBusWorldOptions = { maxEvents: 1000, maxAgeMs: 60_000 };

/** A listener that keeps what it receives. */
class Recorder {
  readonly events: BusEvent[] = [];
  readonly listener = (event: BusEvent): void => {
    this.events.push(event);
  };

  get seqs(): (number | undefined)[] {
    return this.events.map((e) => e.seq);
  }

  get frames(): string[] {
    return this.events.map((e) => e.frame);
  }

  /** Waits until `n` events arrived (never more: every case counts exactly). */
  async received(n: number, what = `${n} events`): Promise<BusEvent[]> {
    await eventually(() => this.events.length >= n, 10_000, what);
    expect(this.events).toHaveLength(n);
    return this.events;
  }
}

export function describeRoomBus(name: string, factory: RoomBusFactory): void {
  describe(`RoomBus conformance: ${name}`, () => {
    const worlds: RoomBusWorld[] = [];

    afterEach(async () => {
      await Promise.all(worlds.splice(0).map((w) => w.close()));
    });

    async function world(options: RoomBusWorldOptions = RETENTION): Promise<RoomBusWorld> {
      const w = await factory(options);
      worlds.push(w);
      return w;
    }

    async function twoNodes(options?: RoomBusWorldOptions): Promise<[RoomBus, RoomBus]> {
      const w = await world(options);
      return [await w.node(), await w.node()];
    }

    const newRoom = (): string => `room-${randomUUID()}`;

    async function subscribed(bus: RoomBus, roomId: string): Promise<Recorder> {
      const recorder = new Recorder();
      await bus.subscribe(roomId, recorder.listener);
      return recorder;
    }

    it('numbers durable events from 1 without gaps and delivers each once, in order', async () => {
      const [bus] = await twoNodes();
      const roomId = newRoom();
      const recorder = await subscribed(bus, roomId);
      const published: BusEvent[] = [];
      for (let i = 0; i < 5; i++) published.push(await bus.publishDurable(roomId, 'chat.message', { i }));

      expect(published.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
      const events = await recorder.received(5);
      const { epoch } = await bus.head(roomId);
      expect(epoch).not.toBe('');
      events.forEach((event, i) => {
        expect(event).toEqual({
          roomId,
          event: 'chat.message',
          seq: i + 1,
          epoch,
          frame: encodeFrame('chat.message', { i }, i + 1),
        });
        expect(published[i]).toEqual(event);
      });
      expect(await bus.lastSeq(roomId)).toBe(5);
      expect(await bus.head(roomId)).toEqual({ epoch, lastSeq: 5 });
    });

    it('gives two nodes every event once, in the same order, under concurrent publishers', async () => {
      const [a, b] = await twoNodes();
      const roomId = newRoom();
      const [onA, onB] = [await subscribed(a, roomId), await subscribed(b, roomId)];

      const published = await Promise.all(
        Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? a : b).publishDurable(roomId, 'chat.message', { i })),
      );

      const expectedSeqs = Array.from({ length: 40 }, (_, i) => i + 1);
      expect(published.map((e) => e.seq).sort((x, y) => (x ?? 0) - (y ?? 0))).toEqual(expectedSeqs);
      await onA.received(40);
      await onB.received(40);
      expect(onA.seqs).toEqual(expectedSeqs);
      expect(onB.frames).toEqual(onA.frames);
      expect((await b.readAfter(roomId, 0))?.map((e) => e.frame)).toEqual(onA.frames);
    });

    it('reads exactly the durable events after a seq', async () => {
      const [a, b] = await twoNodes();
      const roomId = newRoom();
      const published: BusEvent[] = [];
      for (let i = 1; i <= 5; i++) published.push(await a.publishDurable(roomId, 'alert.published', { i }));

      expect(await b.readAfter(roomId, 0)).toEqual(published);
      expect(await b.readAfter(roomId, 3)).toEqual(published.slice(3));
      expect(await b.readAfter(roomId, 5)).toEqual([]);
      expect(await b.readAfter(roomId, 6)).toBeNull();
      expect(await b.readAfter(newRoom(), 0)).toEqual([]);
      expect(await b.readAfter(newRoom(), 1)).toBeNull();
    });

    it('retains at most maxEvents events and answers null for anything older', async () => {
      const [a, b] = await twoNodes({ ...RETENTION, maxEvents: 3 });
      const roomId = newRoom();
      for (let i = 1; i <= 5; i++) await a.publishDurable(roomId, 'chat.message', { i });

      expect(await b.readAfter(roomId, 0)).toBeNull();
      expect(await b.readAfter(roomId, 1)).toBeNull();
      expect((await b.readAfter(roomId, 2))?.map((e) => e.seq)).toEqual([3, 4, 5]);
      expect(await b.lastSeq(roomId)).toBe(5);
    });

    it('retains no event older than maxAgeMs, without resetting seq', async () => {
      const [a, b] = await twoNodes({ ...RETENTION, maxAgeMs: 1000 });
      const roomId = newRoom();
      await a.publishDurable(roomId, 'chat.message', { i: 1 });
      expect((await b.readAfter(roomId, 0))?.map((e) => e.seq)).toEqual([1]);

      await eventually(async () => (await b.readAfter(roomId, 0)) === null, 10_000, 'the event to age out');
      await a.publishDurable(roomId, 'chat.message', { i: 2 });
      expect((await b.readAfter(roomId, 1))?.map((e) => e.seq)).toEqual([2]);
      expect(await b.readAfter(roomId, 0)).toBeNull();
      expect(await b.lastSeq(roomId)).toBe(2);
    });

    it('reads history backwards: the wanted events before a seq, oldest first, frames as delivered', async () => {
      const [a, b] = await twoNodes();
      const roomId = newRoom();
      const wanted = new Set(['chat.message', 'alert.published']);
      expect(await b.readBefore(newRoom(), { limit: 10, events: wanted })).toMatchObject({
        events: [],
        hasMore: false,
        truncated: false,
      });
      const published: BusEvent[] = [];
      for (let i = 1; i <= 12; i++) {
        const name = i % 3 === 0 ? 'participant.joined' : i % 3 === 1 ? 'chat.message' : 'alert.published';
        published.push(await a.publishDurable(roomId, name, { i }));
      }
      const { epoch } = await a.head(roomId);
      const chats = published.filter((e) => e.event === 'chat.message');

      const newest = await b.readBefore(roomId, { limit: 3, events: new Set(['chat.message']) });
      expect(newest).toMatchObject({ epoch, hasMore: true, truncated: false });
      expect(newest.events).toEqual(chats.slice(1));
      const older = await b.readBefore(roomId, { beforeSeq: newest.nextBeforeSeq, limit: 3, events: wanted });
      expect(older.events).toEqual([published[0]]);
      expect(older.hasMore).toBe(false);

      const both = await b.readBefore(roomId, { beforeSeq: 9, limit: 100, events: wanted });
      expect(both.events.map((e) => e.seq)).toEqual([1, 2, 4, 5, 7, 8]);
      expect(both.events.map((e) => e.frame)).toEqual([1, 2, 4, 5, 7, 8].map((seq) => published[seq - 1]?.frame));
      expect(both.hasMore).toBe(false);
    });

    it('says history is truncated once retention dropped events of the epoch', async () => {
      const [a, b] = await twoNodes({ ...RETENTION, maxEvents: 3 });
      const roomId = newRoom();
      for (let i = 1; i <= 5; i++) await a.publishDurable(roomId, 'chat.message', { i });

      const page = await b.readBefore(roomId, { limit: 10, events: new Set(['chat.message']) });
      expect(page.events.map((e) => e.seq)).toEqual([3, 4, 5]);
      expect(page).toMatchObject({ hasMore: false, truncated: true });
    });

    it('shares presence: set, update, list, count and remove', async () => {
      const [a, b] = await twoNodes();
      const roomId = newRoom();
      const alice = { participantId: 'p-1', userId: 'u-1', name: 'Alice', role: 'trader', joinedAt: 1, nodeId: 'a' };
      const bob = { participantId: 'p-2', userId: 'u-2', name: 'Bob', role: 'presenter', joinedAt: 2, nodeId: 'b' };
      expect(await b.presence.count(roomId)).toBe(0);
      expect(await b.presence.list(roomId)).toEqual([]);

      await a.presence.set(roomId, { ...alice, role: 'trader' });
      await b.presence.set(roomId, { ...bob, role: 'presenter' });
      await b.presence.set(roomId, { ...alice, role: 'moderator' });
      expect(await a.presence.count(roomId)).toBe(2);
      const list = await a.presence.list(roomId);
      expect(list.sort((x, y) => x.joinedAt - y.joinedAt)).toEqual([
        { ...alice, role: 'moderator' },
        { ...bob, role: 'presenter' },
      ]);

      await a.presence.remove(roomId, 'p-1');
      await a.presence.remove(roomId, 'p-unknown');
      expect(await b.presence.list(roomId)).toEqual([{ ...bob, role: 'presenter' }]);
      expect(await b.presence.count(roomId)).toBe(1);
    });

    it('keeps delivering to every listener when one of them throws', async () => {
      const errors: unknown[] = [];
      const [a, b] = await twoNodes({ ...RETENTION, onListenerError: (error) => errors.push(error) });
      const roomId = newRoom();
      let calls = 0;
      await b.subscribe(roomId, () => {
        calls++;
        throw new Error('listener failed');
      });
      const witness = await subscribed(b, roomId);

      for (let i = 0; i < 3; i++) await a.publishDurable(roomId, 'chat.message', { i });
      await witness.received(3);
      expect(witness.seqs).toEqual([1, 2, 3]);
      expect(calls).toBe(3);
      expect(errors).toHaveLength(3);
      expect((errors[0] as Error).message).toBe('listener failed');
    });

    it('stops delivering to a listener once it unsubscribed; unsubscribing twice is harmless', async () => {
      const [a, b] = await twoNodes();
      const roomId = newRoom();
      const leaving = new Recorder();
      const unsubscribe = await b.subscribe(roomId, leaving.listener);
      const witness = await subscribed(b, roomId);
      await a.publishDurable(roomId, 'chat.message', { i: 1 });
      await leaving.received(1);

      await unsubscribe();
      await unsubscribe();
      await a.publishDurable(roomId, 'chat.message', { i: 2 });
      await witness.received(2);
      expect(leaving.seqs).toEqual([1]);
    });

    it('subscribes while the last subscription of the room is being removed', async () => {
      const [a, b] = await twoNodes();
      const roomId = newRoom();
      const first = new Recorder();
      const unsubscribe = await b.subscribe(roomId, first.listener);
      const removing = unsubscribe();
      const second = new Recorder();
      const subscribing = b.subscribe(roomId, second.listener);
      await removing;
      await subscribing;

      await a.publishDurable(roomId, 'chat.message', { i: 1 });
      await second.received(1);
      expect(first.events).toEqual([]);
    });

    it('keeps a subscription in flight when another listener of the room leaves', async () => {
      const [a, b] = await twoNodes();
      const roomId = newRoom();
      const unsubscribeFirst = await b.subscribe(roomId, () => {});
      const second = new Recorder();
      const subscribing = b.subscribe(roomId, second.listener);
      await unsubscribeFirst();
      await subscribing;

      await a.publishDurable(roomId, 'chat.message', { i: 1 });
      await second.received(1);
    });

    it('delivers each event once to a listener that subscribed again', async () => {
      const [a, b] = await twoNodes();
      const roomId = newRoom();
      const recorder = new Recorder();
      await (
        await b.subscribe(roomId, recorder.listener)
      )();
      await b.subscribe(roomId, recorder.listener);

      await a.publishDurable(roomId, 'chat.message', { i: 1 });
      await a.publishDurable(roomId, 'chat.message', { i: 2 });
      await recorder.received(2);
      expect(recorder.seqs).toEqual([1, 2]);
    });

    it('delivers ephemeral events to other nodes without seq, in order with durable ones', async () => {
      const [a, b] = await twoNodes();
      const roomId = newRoom();
      const recorder = await subscribed(b, roomId);
      await a.publishEphemeral(newRoom(), 'participant.count', { count: 1 }); // nobody listens: fine

      await a.publishDurable(roomId, 'chat.message', { i: 1 });
      await a.publishEphemeral(roomId, 'participant.count', { count: 7 });
      await a.publishDurable(roomId, 'chat.message', { i: 2 });
      const events = await recorder.received(3);
      expect(events[1]).toEqual({
        roomId,
        event: 'participant.count',
        frame: encodeFrame('participant.count', { count: 7 }),
      });
      expect(recorder.seqs).toEqual([1, undefined, 2]);
      expect(await a.readAfter(roomId, 0)).toHaveLength(2);
    });

    it('keeps one epoch per history; readAfter naming another epoch answers null', async () => {
      const [a, b] = await twoNodes();
      const roomId = newRoom();
      const head = await a.head(roomId);
      expect(head.lastSeq).toBe(0);
      expect(head.epoch).toMatch(/.+/);
      expect(await b.head(roomId)).toEqual(head);

      const published = await b.publishDurable(roomId, 'chat.message', { i: 1 });
      expect(published.epoch).toBe(head.epoch);
      expect(await a.readAfter(roomId, 0, head.epoch)).toEqual([published]);
      expect(await a.readAfter(roomId, 0, 'another-epoch')).toBeNull();
      expect(await a.readAfter(roomId, 1, 'another-epoch')).toBeNull();
    });

    it('drops a room only when nobody is present; the next event starts a new epoch', async () => {
      const [a, b] = await twoNodes();
      const roomId = newRoom();
      const recorder = await subscribed(a, roomId);
      await b.publishDurable(roomId, 'chat.message', { i: 1 });
      await b.publishDurable(roomId, 'chat.message', { i: 2 });
      await recorder.received(2);
      const before = await b.head(roomId);
      const entry = { participantId: 'p-1', userId: 'u-1', name: 'A', role: 'trader' as const, joinedAt: 1 };
      await a.presence.set(roomId, { ...entry, nodeId: 'a' });
      await b.state.putRole(roomId, 'u-1', 'moderator');

      expect(await b.dropRoom(roomId)).toBe(false);
      expect(await a.head(roomId)).toEqual(before);
      expect(await a.state.getRole(roomId, 'u-1')).toBe('moderator');

      await a.presence.remove(roomId, 'p-1');
      expect(await b.dropRoom(roomId)).toBe(true);
      expect(await a.readAfter(roomId, 2, before.epoch)).toBeNull();
      expect(await a.state.getRole(roomId, 'u-1')).toBeUndefined();
      const after = await a.head(roomId);
      expect(after.lastSeq).toBe(0);
      expect(after.epoch).not.toBe(before.epoch);

      // The subscription outlives the drop; the listener notices the new epoch.
      const next = await b.publishDurable(roomId, 'chat.message', { i: 3 });
      expect(next).toMatchObject({ seq: 1, epoch: after.epoch });
      const events = await recorder.received(3);
      expect(events[2]).toEqual(next);
    });

    it('shares resume records, bans and role overrides, each with its lifetime', async () => {
      const [a, b] = await twoNodes({ ...RETENTION, maxAgeMs: 60_000 });
      const roomId = newRoom();
      const now = Date.now();
      const record = { participantId: 'p-1', userId: 'u-1', joinedAt: now - 5000, joinSeq: 7 };

      expect(await b.state.getSession(roomId, 's-1')).toBeUndefined();
      await a.state.putSession(roomId, 's-1', record);
      expect(await b.state.getSession(roomId, 's-1')).toEqual(record);
      await a.state.putSession(roomId, 's-1', { ...record, leftAt: now - 1000 });
      expect(await b.state.getSession(roomId, 's-1')).toEqual({ ...record, leftAt: now - 1000 });
      await a.state.putSession(roomId, 's-2', { ...record, leftAt: now - 61_000 });
      expect(await b.state.getSession(roomId, 's-2')).toBeUndefined();
      await b.state.deleteSession(roomId, 's-1');
      expect(await a.state.getSession(roomId, 's-1')).toBeUndefined();

      expect(await b.state.getBan(roomId, 'u-1')).toBeUndefined();
      await a.state.putBan(roomId, 'u-1', now + 60_000);
      await a.state.putBan(roomId, 'u-2', now - 1);
      expect(await b.state.getBan(roomId, 'u-1')).toBe(now + 60_000);
      expect(await b.state.getBan(roomId, 'u-2')).toBeUndefined();

      expect(await b.state.getRole(roomId, 'u-1')).toBeUndefined();
      await a.state.putRole(roomId, 'u-1', 'trader');
      await b.state.putRole(roomId, 'u-1', 'moderator');
      expect(await a.state.getRole(roomId, 'u-1')).toBe('moderator');
      expect(await a.state.getRole(newRoom(), 'u-1')).toBeUndefined();
    });

    it('reports a healthy status', async () => {
      const [a] = await twoNodes();
      expect(a.status().state).toBe('ok');
      const stop = a.onStatus(() => {});
      stop();
    });
  });
}
