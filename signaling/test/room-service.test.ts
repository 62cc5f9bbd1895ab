/**
 * The room service through a real node, real sockets and the SDK: presence, ordered chat and
 * alerts, moderation, resume, replacement by a newer session and the room lifecycle.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startTestNode, type RawSocket, type TestNode } from '../../test-support/harness.js';
import type { JoinResult } from '../client/index.js';
import {
  GENEROUS_LIMITS,
  durable,
  expectJoinResult,
  expectWireValid,
  joinRaw,
  joinRecording,
  lastSeqOf,
  range,
  seqs,
  type Message,
} from '../../test-support/room-helpers.js';

let roomCounter = 0;
const nextRoom = (prefix = 'rs') => `${prefix}-${++roomCounter}`;

function dataOf(message: Message | undefined): Record<string, unknown> {
  return (message?.data ?? {}) as Record<string, unknown>;
}

/** Waits until `raw` has received the durable event numbered `seq`. */
function waitForSeq(raw: RawSocket, seq: number): Promise<Message> {
  return raw.waitFor((m) => m.seq === seq);
}

describe('room service', () => {
  let t: TestNode;

  beforeAll(async () => {
    t = await startTestNode({ ...GENEROUS_LIMITS });
  });

  afterAll(async () => {
    await t?.close();
  });

  describe('join and leave', () => {
    it('returns the contract join result and tells the others with participant.joined', async () => {
      const roomId = nextRoom();
      const alice = await joinRaw(t, 'alice', { roomId, role: 'presenter', name: 'Alice A.' });
      expectJoinResult(alice.join);
      expect(alice.join).toMatchObject({
        roomId,
        role: 'presenter',
        participantCount: 1,
        producers: [],
        routerRtpCapabilities: null,
        resumed: false,
        lastSeq: 1,
      });
      expect(alice.join.participants).toEqual([
        {
          participantId: alice.join.participantId,
          userId: 'alice',
          name: 'Alice A.',
          role: 'presenter',
          joinedAt: expect.any(Number),
        },
      ]);

      const bob = await joinRaw(t, 'bob', { roomId, role: 'trader', data: { displayName: 'Bobby' } });
      expect(bob.join.participantCount).toBe(2);
      expect(bob.join.lastSeq).toBe(2);
      expect(bob.join.participants.map((p) => p.userId).sort()).toEqual(['alice', 'bob']);
      expect(bob.join.participantId).not.toBe(alice.join.participantId);
      expect(bob.join.sessionId).not.toBe(alice.join.sessionId);

      const joined = await alice.raw.waitFor((m) => m.event === 'participant.joined');
      expect(joined).toEqual({
        event: 'participant.joined',
        seq: 2,
        data: {
          participant: {
            participantId: bob.join.participantId,
            userId: 'bob',
            name: 'Bobby',
            role: 'trader',
            joinedAt: expect.any(Number),
          },
        },
      });
      // Nobody is told about their own join.
      expect(bob.raw.events('participant.joined')).toEqual([]);
      expectWireValid(alice.raw.messages);
      expectWireValid(bob.raw.messages);
    });

    it('announces room.leave as participant.left reason left; the socket may join again', async () => {
      const roomId = nextRoom();
      const alice = await joinRaw(t, 'alice', { roomId, role: 'moderator' });
      const bob = await joinRaw(t, 'bob', { roomId });
      expect(await bob.raw.request('room.leave')).toEqual({ id: expect.any(Number), ok: true, data: {} });
      const left = await alice.raw.waitFor((m) => m.event === 'participant.left');
      expect(left).toEqual({
        event: 'participant.left',
        seq: 3,
        data: { participantId: bob.join.participantId, reason: 'left' },
      });
      expect(bob.raw.ws.readyState).toBe(bob.raw.ws.OPEN);
      expect((await bob.raw.request('chat.send', { text: 'still here?' })).error).toMatchObject({ code: 'NOT_JOINED' });

      const again = await bob.raw.request('room.join');
      expect(again.ok).toBe(true);
      const rejoined = again.data as JoinResult;
      expect(rejoined.participantId).not.toBe(bob.join.participantId);
      expect(rejoined.resumed).toBe(false);
      const joinedAgain = await alice.raw.waitFor(
        (m) => m.event === 'participant.joined' && (dataOf(m).participant as Message).userId === 'bob' && m.seq === 4,
      );
      expect(joinedAgain).toBeDefined();
    });

    it('announces a closed socket as participant.left reason disconnected (no resume grace)', async () => {
      const roomId = nextRoom();
      const alice = await joinRaw(t, 'alice', { roomId });
      const carol = await joinRaw(t, 'carol', { roomId });
      carol.raw.ws.close(1000);
      const left = await alice.raw.waitFor((m) => m.event === 'participant.left');
      expect(left.data).toEqual({ participantId: carol.join.participantId, reason: 'disconnected' });
      await eventually(() => t.node.rooms.summary(roomId)?.participants === 1, 2000, 'carol removed');
    });

    it("prefers the token's name and strips bidi, control and zero-width characters from names", async () => {
      const roomId = nextRoom();
      const observer = await joinRaw(t, 'observer', { roomId, role: 'moderator' });
      const spoofs = [
        // userId, token name, displayName asked for, the name everyone sees
        ['spoofer', undefined, 'Presenter (Official)\u202E', 'Presenter (Official)'],
        ['isolate', undefined, '\u2066Pat\u2069\u200B \u200DJ\uFEFF\u2060\u061C\u200E\u200F', 'Pat J'],
        ['control', undefined, 'Bell\u0007 \u0085Tab\tEnd\u2028', 'Bell TabEnd'],
        ['invisible', undefined, '\u202A\u202B\u202C\u202D', 'invisible'],
        ['named', 'Nina \u202Egnp.exe', 'Somebody Else', 'Nina gnp.exe'],
        ['blank-token-name', '\u200B\u200C', 'Fallback', 'Fallback'],
      ] as const;
      for (const [userId, name, displayName, expected] of spoofs) {
        const joined = await joinRaw(t, userId, { roomId, ...(name ? { name } : {}), data: { displayName } });
        const announced = await observer.raw.waitFor(
          (m) => m.event === 'participant.joined' && (dataOf(m).participant as Message).userId === userId,
        );
        expect((dataOf(announced).participant as Message).name, userId).toBe(expected);
        expect(joined.join.participants.find((p) => p.userId === userId)?.name).toBe(expected);
        const chat = await joined.raw.request('chat.send', { text: 'hi' });
        const message = await observer.raw.waitFor((m) => m.seq === dataOf(chat).seq);
        expect(dataOf(message).from).toEqual({
          participantId: joined.join.participantId,
          userId,
          name: expected,
          role: 'trader',
        });
      }
      // No name anyone was sent carries any of the hidden characters the joiners tried.
      const hidden = [0x07, 0x09, 0x85, 0x61c, 0x200b, 0x200c, 0x200d, 0x200e, 0x200f, 0x202a, 0x202b, 0x202c]
        .concat([0x202d, 0x202e, 0x2028, 0x2060, 0x2066, 0x2069, 0xfeff])
        .map((code) => String.fromCodePoint(code));
      const names = observer.raw.messages.flatMap((m) => [
        (dataOf(m).participant as Message | undefined)?.name,
        (dataOf(m).from as Message | undefined)?.name,
      ]);
      const sent = names.filter((name): name is string => typeof name === 'string');
      expect(sent).toHaveLength(spoofs.length * 2);
      expect(sent.filter((name) => hidden.some((c) => name.includes(c)))).toEqual([]);
      expectWireValid(observer.raw.messages);
    });

    it('tells SDK clients the same: joined then left, with seq', async () => {
      const roomId = nextRoom();
      const watcher = await joinRecording(t, 'watcher', { roomId, role: 'moderator' });
      const guest = await joinRecording(t, 'guest', { roomId, name: 'Guest' });
      await eventually(() => watcher.notifications.some((n) => n.event === 'participant.joined'), 2000, 'joined');
      guest.client.close();
      await eventually(() => watcher.notifications.some((n) => n.event === 'participant.left'), 2000, 'left');
      const events = watcher.notifications.map((n) => [n.event, (n as { seq?: number }).seq]);
      expect(events).toEqual([
        ['participant.joined', 2],
        ['participant.left', 3],
      ]);
      expect(watcher.notifications[1]?.data).toMatchObject({ participantId: guest.join.participantId });
      expect(['left', 'disconnected']).toContain((watcher.notifications[1]?.data as { reason: string }).reason);
      expect(watcher.client.lastSeq).toBe(3);
    });
  });

  describe('chat and alerts', () => {
    it('reach every participant in the same order with consecutive seq', async () => {
      const roomId = nextRoom();
      const presenter = await joinRaw(t, 'p1', { roomId, role: 'presenter' });
      const moderator = await joinRaw(t, 'm1', { roomId, role: 'moderator' });
      const trader = await joinRaw(t, 't1', { roomId, role: 'trader' });
      const quiet1 = await joinRaw(t, 't2', { roomId, role: 'trader' });
      const quiet2 = await joinRaw(t, 't3', { roomId, role: 'trader' });
      const everyone = [presenter, moderator, trader, quiet1, quiet2];
      const start = lastSeqOf(quiet2.raw, quiet2.join);
      for (const c of everyone.slice(0, -1)) await waitForSeq(c.raw, start);
      const baseline = everyone.map((c) => c.raw.messages.length);

      // Three senders interleave 30 messages without waiting for each other.
      const senders = [presenter, moderator, trader];
      const requests: Promise<Message>[] = [];
      for (let i = 0; i < 30; i++) {
        const sender = senders[i % 3] as (typeof senders)[number];
        const alert = sender !== trader && i % 2 === 0;
        requests.push(
          alert
            ? sender.raw.request('alert.publish', { symbol: 'AAPL', action: 'buy', price: 100 + i, note: `n${i}` })
            : sender.raw.request('chat.send', { text: `message ${i}` }),
        );
      }
      const responses = await Promise.all(requests);
      for (const r of responses) expect(r.ok, JSON.stringify(r)).toBe(true);
      const assigned = responses.map((r) => dataOf(r).seq as number).sort((a, b) => a - b);
      expect(assigned).toEqual(range(start + 1, start + 30));

      for (const c of everyone) await waitForSeq(c.raw, start + 30);
      const streams = everyone.map((c, i) =>
        c.raw.messages.slice(baseline[i]).filter((m) => typeof m.seq === 'number'),
      );
      const reference = streams[0] as Message[];
      expect(reference.map((m) => m.seq)).toEqual(range(start + 1, start + 30));
      for (const stream of streams) expect(stream).toEqual(reference);

      // Each sender's own messages keep their send order, and each response names its event.
      const ids = new Map(reference.map((m) => [dataOf(m).messageId ?? dataOf(m).alertId, m]));
      for (const r of responses) {
        const event = ids.get(dataOf(r).messageId ?? dataOf(r).alertId);
        expect(event?.seq).toBe(dataOf(r).seq);
      }
      for (const userId of ['p1', 'm1', 't1']) {
        const own = reference.filter((m) => (dataOf(m).from as Message).userId === userId);
        expect(own).toHaveLength(10);
        const order = own.map((m) => Number(/\d+$/.exec(String(dataOf(m).text ?? dataOf(m).note))?.[0]));
        expect(order).toEqual([...order].sort((a, b) => a - b));
      }
      for (const c of everyone) expectWireValid(c.raw.messages);
    });

    it('sends the contract shapes of chat.message and alert.published', async () => {
      const roomId = nextRoom();
      const presenter = await joinRaw(t, 'pres', { roomId, role: 'presenter', name: 'Pat' });
      const trader = await joinRaw(t, 'trad', { roomId });
      const chat = await trader.raw.request('chat.send', { text: 'hello 👋' });
      expect(chat).toMatchObject({ ok: true, data: { messageId: expect.any(String), seq: 3 } });
      const alert = await presenter.raw.request('alert.publish', {
        symbol: 'BTC/USD',
        action: 'sell',
        price: 64000.5,
        note: 'take profit',
      });
      expect(alert).toMatchObject({ ok: true, data: { alertId: expect.any(String), seq: 4 } });
      const bare = await presenter.raw.request('alert.publish', { symbol: 'ES', action: 'watch' });
      expect(bare).toMatchObject({ ok: true, data: { seq: 5 } });

      await waitForSeq(trader.raw, 5);
      const [chatEvent, alertEvent, bareEvent] = durable(trader.raw).slice(-3);
      expect(chatEvent).toEqual({
        event: 'chat.message',
        seq: 3,
        data: {
          messageId: dataOf(chat).messageId,
          from: { participantId: trader.join.participantId, userId: 'trad', name: 'trad', role: 'trader' },
          text: 'hello 👋',
          ts: expect.any(Number),
        },
      });
      expect(alertEvent).toEqual({
        event: 'alert.published',
        seq: 4,
        data: {
          alertId: dataOf(alert).alertId,
          from: { participantId: presenter.join.participantId, userId: 'pres', name: 'Pat', role: 'presenter' },
          symbol: 'BTC/USD',
          action: 'sell',
          price: 64000.5,
          note: 'take profit',
          ts: expect.any(Number),
        },
      });
      expect(Object.keys(dataOf(bareEvent)).sort()).toEqual(['action', 'alertId', 'from', 'symbol', 'ts']);
    });

    it('through the SDK: requests resolve with their seq and every client sees the same events', async () => {
      const roomId = nextRoom();
      const presenter = await joinRecording(t, 'sdk-p', { roomId, role: 'presenter' });
      const moderator = await joinRecording(t, 'sdk-m', { roomId, role: 'moderator' });
      const trader = await joinRecording(t, 'sdk-t', { roomId });
      const results = await Promise.all([
        presenter.client.request('alert.publish', { symbol: 'NQ', action: 'buy', price: 18000 }),
        trader.client.request('chat.send', { text: 'in' }),
        moderator.client.request('chat.send', { text: 'welcome' }),
        presenter.client.request('chat.send', { text: 'entry now' }),
      ]);
      const assigned = results.map((r) => r.seq).sort((a, b) => a - b);
      expect(assigned).toEqual([4, 5, 6, 7]);
      await expect(trader.client.request('alert.publish', { symbol: 'NQ', action: 'sell' })).rejects.toMatchObject({
        code: 'FORBIDDEN',
      });
      const tail = (c: typeof presenter) =>
        c.notifications.filter((n) => n.event === 'chat.message' || n.event === 'alert.published');
      await eventually(() => [presenter, moderator, trader].every((c) => c.client.lastSeq === 7), 2000, 'all seen');
      expect(tail(presenter).map((n) => (n as { seq: number }).seq)).toEqual([4, 5, 6, 7]);
      expect(tail(moderator)).toEqual(tail(presenter));
      expect(tail(trader)).toEqual(tail(presenter));
    });

    it('keeps rooms apart: events and moderation never cross rooms', async () => {
      const roomA = nextRoom();
      const roomB = nextRoom();
      const modA = await joinRaw(t, 'mod-a', { roomId: roomA, role: 'moderator' });
      const inB = await joinRaw(t, 'user-b', { roomId: roomB });
      await modA.raw.request('chat.send', { text: 'only in A' });
      expect(await modA.raw.request('moderation.kick', { participantId: inB.join.participantId })).toMatchObject({
        ok: false,
        error: { code: 'NOT_FOUND' },
      });
      const own = await inB.raw.request('chat.send', { text: 'only in B' });
      expect(dataOf(own).seq).toBe(2);
      expect(inB.raw.events('chat.message').map((m) => dataOf(m).text)).toEqual(['only in B']);
      expect(inB.raw.ws.readyState).toBe(inB.raw.ws.OPEN);
    });

    it("refuses a trader's alert.publish with FORBIDDEN and emits nothing", async () => {
      const roomId = nextRoom();
      const moderator = await joinRaw(t, 'mod', { roomId, role: 'moderator' });
      const trader = await joinRaw(t, 'trader', { roomId });
      const other = await joinRaw(t, 'other', { roomId });
      const before = lastSeqOf(other.raw, other.join);
      await waitForSeq(moderator.raw, before);
      await waitForSeq(trader.raw, before);

      const refused = await trader.raw.request('alert.publish', { symbol: 'AAPL', action: 'buy' });
      expect(refused).toMatchObject({ ok: false, error: { code: 'FORBIDDEN', message: expect.any(String) } });

      // The next durable event anyone sees is the moderator's chat, numbered right after.
      const next = await moderator.raw.request('chat.send', { text: 'after' });
      expect(dataOf(next).seq).toBe(before + 1);
      for (const c of [moderator, trader, other]) {
        await waitForSeq(c.raw, before + 1);
        expect(c.raw.events('alert.published')).toEqual([]);
        expect(durable(c.raw).at(-1)).toMatchObject({ event: 'chat.message', seq: before + 1 });
      }
    });
  });

  describe('moderation', () => {
    it('kick: the target gets session.kicked then 4003, others participant.left kicked, rejoin FORBIDDEN', async () => {
      const roomId = nextRoom();
      const moderator = await joinRaw(t, 'mod', { roomId, role: 'moderator' });
      const target = await joinRaw(t, 'spammer', { roomId });
      const other = await joinRaw(t, 'bystander', { roomId });

      const kicked = await moderator.raw.request('moderation.kick', { participantId: target.join.participantId });
      expect(kicked).toMatchObject({ ok: true, data: {} });
      const closed = await target.raw.closed;
      expect(closed.code).toBe(4003);
      const notice = target.raw.events('session.kicked');
      expect(notice).toEqual([{ event: 'session.kicked', data: { reason: expect.any(String) } }]);
      expect(target.raw.messages.at(-1)).toEqual(notice[0]);

      const left = await other.raw.waitFor((m) => m.event === 'participant.left');
      expect(left.data).toEqual({ participantId: target.join.participantId, reason: 'kicked' });
      await moderator.raw.waitFor((m) => m.event === 'participant.left');

      const again = await t.raw(await t.token('spammer', { roomId }));
      expect(await again.request('room.join')).toMatchObject({ ok: false, error: { code: 'FORBIDDEN' } });
      expect(
        await again.request('room.join', { resume: { sessionId: target.join.sessionId, lastSeq: 0 } }),
      ).toMatchObject({
        ok: false,
        error: { code: 'FORBIDDEN' },
      });
      expect(t.node.rooms.summary(roomId)?.participants).toBe(2);
    });

    it('kick and mute of an unknown participant: NOT_FOUND', async () => {
      const roomId = nextRoom();
      const moderator = await joinRaw(t, 'mod', { roomId, role: 'moderator' });
      for (const method of ['moderation.kick', 'moderation.mute']) {
        expect(await moderator.raw.request(method, { participantId: 'nobody' })).toMatchObject({
          ok: false,
          error: { code: 'NOT_FOUND' },
        });
      }
      expect(
        await moderator.raw.request('moderation.setRole', { participantId: 'nobody', role: 'presenter' }),
      ).toMatchObject({
        ok: false,
        error: { code: 'NOT_FOUND' },
      });
    });

    it('mute of an existing participant answers {} while media is off', async () => {
      const roomId = nextRoom();
      const moderator = await joinRaw(t, 'mod', { roomId, role: 'moderator' });
      const presenter = await joinRaw(t, 'pres', { roomId, role: 'presenter' });
      expect(
        await moderator.raw.request('moderation.mute', { participantId: presenter.join.participantId }),
      ).toMatchObject({
        ok: true,
        data: {},
      });
      expect(
        await moderator.raw.request('moderation.mute', { participantId: moderator.join.participantId }),
      ).toMatchObject({
        ok: true,
        data: {},
      });
      expect(presenter.raw.ws.readyState).toBe(presenter.raw.ws.OPEN);
    });

    it('setRole: participant.updated for everyone; a promoted trader may alert, a demoted presenter may not', async () => {
      const roomId = nextRoom();
      const moderator = await joinRaw(t, 'mod', { roomId, role: 'moderator' });
      const trader = await joinRaw(t, 'rising', { roomId, role: 'trader' });
      const presenter = await joinRaw(t, 'falling', { roomId, role: 'presenter' });

      expect(await trader.raw.request('alert.publish', { symbol: 'TSLA', action: 'buy' })).toMatchObject({
        error: { code: 'FORBIDDEN' },
      });
      expect(
        await moderator.raw.request('moderation.setRole', {
          participantId: trader.join.participantId,
          role: 'presenter',
        }),
      ).toMatchObject({ ok: true, data: {} });
      for (const c of [moderator, trader, presenter]) {
        const updated = await c.raw.waitFor((m) => m.event === 'participant.updated');
        expect(updated.data).toEqual({
          participant: {
            participantId: trader.join.participantId,
            userId: 'rising',
            name: 'rising',
            role: 'presenter',
            joinedAt: trader.join.participants.find((p) => p.userId === 'rising')?.joinedAt,
          },
        });
      }
      expect(await trader.raw.request('alert.publish', { symbol: 'TSLA', action: 'buy' })).toMatchObject({ ok: true });

      expect(await presenter.raw.request('alert.publish', { symbol: 'NVDA', action: 'sell' })).toMatchObject({
        ok: true,
      });
      expect(
        await moderator.raw.request('moderation.setRole', {
          participantId: presenter.join.participantId,
          role: 'trader',
        }),
      ).toMatchObject({ ok: true });
      await presenter.raw.waitFor(
        (m) => m.event === 'participant.updated' && (dataOf(m).participant as Message).role === 'trader',
      );
      expect(await presenter.raw.request('alert.publish', { symbol: 'NVDA', action: 'sell' })).toMatchObject({
        ok: false,
        error: { code: 'FORBIDDEN' },
      });
      expect(t.node.rooms.summary(roomId)?.participantsByRole).toEqual({ presenter: 1, moderator: 1, trader: 1 });
    });

    it('setRole to the same role changes nothing and emits nothing', async () => {
      const roomId = nextRoom();
      const moderator = await joinRaw(t, 'mod', { roomId, role: 'moderator' });
      const trader = await joinRaw(t, 'trader', { roomId });
      const before = lastSeqOf(trader.raw, trader.join);
      expect(
        await moderator.raw.request('moderation.setRole', { participantId: trader.join.participantId, role: 'trader' }),
      ).toMatchObject({ ok: true });
      const next = await moderator.raw.request('chat.send', { text: 'x' });
      expect(dataOf(next).seq).toBe(before + 1);
    });

    it('is FORBIDDEN for presenters and traders, with no effect', async () => {
      const roomId = nextRoom();
      const presenter = await joinRaw(t, 'pres', { roomId, role: 'presenter' });
      const trader = await joinRaw(t, 'trader', { roomId });
      const victim = await joinRaw(t, 'victim', { roomId });
      const before = lastSeqOf(victim.raw, victim.join);
      for (const caller of [presenter, trader]) {
        for (const [method, data] of [
          ['moderation.kick', { participantId: victim.join.participantId }],
          ['moderation.mute', { participantId: victim.join.participantId }],
          ['moderation.setRole', { participantId: victim.join.participantId, role: 'moderator' }],
          ['moderation.setRole', { participantId: caller.join.participantId, role: 'moderator' }],
        ] as const) {
          expect(await caller.raw.request(method, data), `${method} by ${caller.join.role}`).toMatchObject({
            ok: false,
            error: { code: 'FORBIDDEN' },
          });
        }
      }
      expect(victim.raw.ws.readyState).toBe(victim.raw.ws.OPEN);
      const next = await victim.raw.request('chat.send', { text: 'still here' });
      expect(dataOf(next).seq).toBe(before + 1);
      expect(t.node.rooms.summary(roomId)?.participantsByRole).toEqual({ presenter: 1, moderator: 0, trader: 2 });
    });
  });

  describe('a second session of the same user', () => {
    it('replaces the first: the old socket closes with 4009, others see replaced + joined', async () => {
      const roomId = nextRoom();
      const observer = await joinRaw(t, 'observer', { roomId, role: 'moderator' });
      const first = await joinRecording(t, 'dup', { roomId });
      const second = await joinRaw(t, 'dup', { roomId });
      expect((await first.closed).code).toBe(4009);
      expect(first.client.state).toBe('closed');
      expect(second.join.participantId).not.toBe(first.join.participantId);
      expect(second.join.resumed).toBe(false);

      await observer.raw.waitFor(
        (m) =>
          m.event === 'participant.joined' &&
          (dataOf(m).participant as Message).participantId === second.join.participantId,
      );
      const left = observer.raw.events('participant.left');
      expect(left.map((m) => m.data)).toEqual([{ participantId: first.join.participantId, reason: 'replaced' }]);
      expect(t.node.rooms.summary(roomId)?.participants).toBe(2);
      expect(await second.raw.request('chat.send', { text: 'I am the one' })).toMatchObject({ ok: true });
    });

    it('a second join on the same socket is ALREADY_JOINED', async () => {
      const roomId = nextRoom();
      const alice = await joinRaw(t, 'alice', { roomId });
      expect(await alice.raw.request('room.join')).toMatchObject({ ok: false, error: { code: 'ALREADY_JOINED' } });
      expect(
        await alice.raw.request('room.join', { resume: { sessionId: alice.join.sessionId, lastSeq: 0 } }),
      ).toMatchObject({
        ok: false,
        error: { code: 'ALREADY_JOINED' },
      });
      expect(t.node.rooms.summary(roomId)?.participants).toBe(1);
    });
  });
});

describe('resume', () => {
  let t: TestNode;

  beforeAll(async () => {
    t = await startTestNode({ ...GENEROUS_LIMITS, SESSION_RESUME_GRACE_MS: '10000' });
  });

  afterAll(async () => {
    await t?.close();
  });

  /** Joins `userId`, drops its socket, waits until the node has seen it go. */
  async function joinAndDrop(roomId: string, userId: string, sender: RawSocket) {
    const first = await joinRaw(t, userId, { roomId });
    const warmup = await sender.request('chat.send', { text: 'before the drop' });
    await waitForSeq(first.raw, dataOf(warmup).seq as number);
    const lastSeq = lastSeqOf(first.raw, first.join);
    first.raw.ws.close();
    await first.raw.closed;
    await eventually(
      () => t.node.rooms.summary(roomId)?.connected === t.node.rooms.summary(roomId)!.participants - 1,
      2000,
      'disconnect seen',
    );
    return { first, lastSeq };
  }

  it('replays exactly the missed events before the response, keeping the participant', async () => {
    const roomId = nextRoom('resume');
    const sender = await joinRaw(t, 'sender', { roomId, role: 'presenter' });
    const { first, lastSeq } = await joinAndDrop(roomId, 'mobile', sender.raw);
    const presenceBefore = sender.raw.messages.filter((m) => String(m.event).startsWith('participant.')).length;

    const sent: Message[] = [];
    for (let i = 0; i < 7; i++) {
      sent.push(
        await (i % 2
          ? sender.raw.request('alert.publish', { symbol: 'SPY', action: 'watch', note: `a${i}` })
          : sender.raw.request('chat.send', { text: `missed ${i}` })),
      );
    }
    expect(sent.map((r) => dataOf(r).seq)).toEqual(range(lastSeq + 1, lastSeq + 7));

    const second = await t.raw(await t.token('mobile', { roomId }));
    const response = await second.request('room.join', { resume: { sessionId: first.join.sessionId, lastSeq } });
    expect(response, JSON.stringify(response)).toMatchObject({ ok: true });
    const join = response.data as JoinResult;
    expectJoinResult(join);
    expect(join.resumed).toBe(true);
    expect(join.participantId).toBe(first.join.participantId);
    expect(join.sessionId).toBe(first.join.sessionId);
    expect(join.lastSeq).toBe(lastSeq + 7);

    const responseIndex = second.messages.indexOf(response);
    const replayed = second.messages.slice(0, responseIndex);
    expect(replayed.map((m) => m.seq)).toEqual(range(lastSeq + 1, lastSeq + 7));
    expect(replayed.map((m) => dataOf(m).messageId ?? dataOf(m).alertId)).toEqual(
      sent.map((r) => dataOf(r).messageId ?? dataOf(r).alertId),
    );
    // Exactly the sender's copies, byte for byte.
    expect(replayed).toEqual(durable(sender.raw).filter((m) => (m.seq as number) > lastSeq));

    // Presence survived: nobody saw the participant leave or join again.
    expect(sender.raw.messages.filter((m) => String(m.event).startsWith('participant.')).length).toBe(presenceBefore);

    // Live delivery continues right after, without duplicates.
    const live = await sender.raw.request('chat.send', { text: 'live' });
    await waitForSeq(second, dataOf(live).seq as number);
    expect(seqs(second)).toEqual(range(lastSeq + 1, lastSeq + 8));
    expectWireValid(second.messages);
  });

  it('through the SDK: a dropped client resumes by itself and sees every event once, in order', async () => {
    const roomId = nextRoom('resume');
    const sender = await joinRaw(t, 'sender', { roomId, role: 'presenter' });
    const app = await joinRecording(t, 'app', { roomId });
    const first = await sender.raw.request('chat.send', { text: 'one' });
    await eventually(() => app.client.lastSeq === dataOf(first).seq, 2000, 'first chat');
    // Cut the SDK's connection from the server side.
    const session = [...t.node.rooms.connectedSessions()].find((s) => s.userId === 'app');
    session?.close(1011, 'test cut');
    for (let i = 0; i < 4; i++) await sender.raw.request('chat.send', { text: `while away ${i}` });
    const last = await sender.raw.request('chat.send', { text: 'last' });
    await eventually(() => app.client.lastSeq === dataOf(last).seq, 5000, 'resumed and caught up');
    expect(app.client.joined?.resumed).toBe(true);
    expect(app.client.joined?.participantId).toBe(app.join.participantId);
    const chatSeqs = app.notifications.filter((n) => n.event === 'chat.message').map((n) => (n as { seq: number }).seq);
    expect(chatSeqs).toEqual(range(dataOf(first).seq as number, dataOf(last).seq as number));
  });

  it('replaces a still-open old socket with 4009 when the session resumes elsewhere', async () => {
    const roomId = nextRoom('resume');
    const sender = await joinRaw(t, 'sender', { roomId, role: 'presenter' });
    const old = await joinRaw(t, 'phone', { roomId });
    const lastSeq = lastSeqOf(old.raw, old.join);
    const fresh = await t.raw(await t.token('phone', { roomId }));
    const response = await fresh.request('room.join', { resume: { sessionId: old.join.sessionId, lastSeq } });
    expect(response).toMatchObject({ ok: true, data: { resumed: true, participantId: old.join.participantId } });
    expect((await old.raw.closed).code).toBe(4009);
    const chat = await sender.raw.request('chat.send', { text: 'to the new socket' });
    await waitForSeq(fresh, dataOf(chat).seq as number);
    expect(sender.raw.events('participant.left')).toEqual([]);
  });

  it('resuming an older session of a user who joined again since removes the newer one (no ghost)', async () => {
    const roomId = nextRoom('resume');
    const observer = await joinRaw(t, 'observer', { roomId, role: 'moderator' });
    const s1 = await joinRaw(t, 'tabs', { roomId });
    const s1LastSeq = lastSeqOf(s1.raw, s1.join);
    s1.raw.ws.close();
    await s1.raw.closed;
    await eventually(() => t.node.rooms.summary(roomId)?.connected === 1, 2000, 'disconnect seen');
    const s2 = await joinRaw(t, 'tabs', { roomId }); // replaces the participant of s1
    await observer.raw.waitFor((m) => m.event === 'participant.left');

    const s3 = await t.raw(await t.token('tabs', { roomId }));
    const response = await s3.request('room.join', { resume: { sessionId: s1.join.sessionId, lastSeq: s1LastSeq } });
    expect(response).toMatchObject({ ok: true });
    const join = response.data as JoinResult;
    expect((await s2.raw.closed).code).toBe(4009);

    // Exactly one participant for the user, in the room and in presence.
    expect(t.node.rooms.summary(roomId)?.participants).toBe(2);
    await observer.raw.waitFor(
      (m) => m.event === 'participant.left' && dataOf(m).participantId === s2.join.participantId,
    );
    const check = await t.raw(await t.token('checker', { roomId }));
    const seen = await check.request('room.join');
    expect((seen.data as JoinResult).participants.filter((p) => p.userId === 'tabs')).toEqual([
      expect.objectContaining({ participantId: join.participantId }),
    ]);
    expect((seen.data as JoinResult).participantCount).toBe(3);
  });

  it('joins afresh (resumed false) for an unknown session or another user’s session', async () => {
    const roomId = nextRoom('resume');
    const victim = await joinRaw(t, 'victim', { roomId });
    const thief = await t.raw(await t.token('thief', { roomId }));
    const stolen = await thief.request('room.join', { resume: { sessionId: victim.join.sessionId, lastSeq: 0 } });
    expect(stolen).toMatchObject({ ok: true, data: { resumed: false } });
    expect((stolen.data as JoinResult).participantId).not.toBe(victim.join.participantId);
    expect(victim.raw.ws.readyState).toBe(victim.raw.ws.OPEN);

    const stranger = await t.raw(await t.token('stranger', { roomId }));
    const unknown = await stranger.request('room.join', { resume: { sessionId: 'no-such-session', lastSeq: 0 } });
    expect(unknown).toMatchObject({ ok: true, data: { resumed: false } });
  });

  it('never replays what came before the session joined: a late joiner resuming from lastSeq 0', async () => {
    const roomId = nextRoom('resume');
    const sender = await joinRaw(t, 'sender', { roomId, role: 'presenter' });
    for (let i = 0; i < 5; i++) await sender.raw.request('chat.send', { text: `history ${i}` });
    const late = await joinRaw(t, 'late', { roomId });
    const joinSeq = late.join.lastSeq;
    const after = [];
    for (let i = 0; i < 2; i++) after.push(await sender.raw.request('chat.send', { text: `after the join ${i}` }));
    await waitForSeq(late.raw, joinSeq + 2);
    late.raw.ws.close();
    await late.raw.closed;
    await eventually(() => t.node.rooms.summary(roomId)?.connected === 1, 2000, 'disconnect seen');

    const again = await t.raw(await t.token('late', { roomId }));
    const response = await again.request('room.join', { resume: { sessionId: late.join.sessionId, lastSeq: 0 } });
    expect(response).toMatchObject({
      ok: true,
      data: { resumed: true, participantId: late.join.participantId, lastSeq: joinSeq + 2 },
    });
    const replayed = again.messages.slice(0, again.messages.indexOf(response));
    expect(replayed.map((m) => m.seq)).toEqual([joinSeq + 1, joinSeq + 2]);
    expect(replayed.map((m) => dataOf(m).messageId)).toEqual(after.map((r) => dataOf(r).messageId));
  });
});

describe('resume bounds', () => {
  let t: TestNode;

  beforeAll(async () => {
    t = await startTestNode({
      ...GENEROUS_LIMITS,
      SESSION_RESUME_GRACE_MS: '10000',
      RESUME_MAX_REPLAY_EVENTS: '5',
      RESUME_MAX_REPLAY_BYTES: '4096',
    });
  });

  afterAll(async () => {
    await t?.close();
  });

  /** Joins `userId` as a trader next to a presenter, drops its socket, and lets the presenter chat `texts`. */
  async function missWhileAway(userId: string, texts: readonly string[]) {
    const roomId = nextRoom('bounds');
    const sender = await joinRaw(t, 'sender', { roomId, role: 'presenter' });
    const away = await joinRaw(t, userId, { roomId });
    away.raw.ws.close();
    await away.raw.closed;
    await eventually(() => t.node.rooms.summary(roomId)?.connected === 1, 2000, 'disconnect seen');
    for (const text of texts) expect(await sender.raw.request('chat.send', { text })).toMatchObject({ ok: true });
    const back = await t.raw(await t.token(userId, { roomId }));
    const lastSeq = away.join.lastSeq;
    const response = await back.request('room.join', { resume: { sessionId: away.join.sessionId, lastSeq } });
    return { roomId, sender, away, back, response };
  }

  it('resumes when the replay fits both bounds', async () => {
    const { away, back, response } = await missWhileAway('fits', ['one', 'two', 'three', 'four', 'five']);
    expect(response).toMatchObject({ ok: true, data: { resumed: true, participantId: away.join.participantId } });
    expect(seqs(back)).toEqual(range(away.join.lastSeq + 1, away.join.lastSeq + 5));
  });

  it.each([
    ['more events than RESUME_MAX_REPLAY_EVENTS', ['1', '2', '3', '4', '5', '6']],
    ['more bytes than RESUME_MAX_REPLAY_BYTES', ['x'.repeat(1500), 'y'.repeat(1500), 'z'.repeat(1500)]],
  ])('answers resumed: false with the current state for %s', async (_, texts) => {
    const userId = `over-${texts.length}`;
    const { roomId, sender, away, back, response } = await missWhileAway(userId, texts);
    expect(response, JSON.stringify(response).slice(0, 300)).toMatchObject({ ok: true, data: { resumed: false } });
    expect(back.messages.indexOf(response)).toBe(0); // nothing replayed
    const join = response.data as JoinResult;
    expectJoinResult(join);
    expect(join.participantId).not.toBe(away.join.participantId);
    expect(join.participantCount).toBe(2);
    expect(join.participants.map((p) => p.userId).sort()).toEqual([userId, 'sender']);
    // Its own fresh participant.joined is the newest event: lastSeq is the room's current seq.
    const joined = await sender.raw.waitFor(
      (m) =>
        m.event === 'participant.joined' && (dataOf(m).participant as Message).participantId === join.participantId,
    );
    expect(joined.seq).toBe(join.lastSeq);
    expect(t.node.rooms.summary(roomId)?.lastSeq).toBe(join.lastSeq);
  });
});

describe('resume beyond the replay log', () => {
  let t: TestNode;

  beforeAll(async () => {
    t = await startTestNode({ ...GENEROUS_LIMITS, SESSION_RESUME_GRACE_MS: '10000', REPLAY_LOG_MAX_EVENTS: '5' });
  });

  afterAll(async () => {
    await t?.close();
  });

  it('joins afresh with a new participantId when lastSeq is too old', async () => {
    const roomId = nextRoom('old');
    const sender = await joinRaw(t, 'sender', { roomId, role: 'presenter' });
    const first = await joinRaw(t, 'laggard', { roomId });
    const lastSeq = lastSeqOf(first.raw, first.join);
    first.raw.ws.close();
    await first.raw.closed;
    await eventually(() => t.node.rooms.summary(roomId)?.connected === 1, 2000, 'disconnect seen');
    for (let i = 0; i < 8; i++) await sender.raw.request('chat.send', { text: `flood ${i}` });

    const second = await t.raw(await t.token('laggard', { roomId }));
    const response = await second.request('room.join', { resume: { sessionId: first.join.sessionId, lastSeq } });
    expect(response).toMatchObject({ ok: true, data: { resumed: false } });
    const join = response.data as JoinResult;
    expect(join.participantId).not.toBe(first.join.participantId);
    expect(join.sessionId).not.toBe(first.join.sessionId);
    expect(second.messages.indexOf(response)).toBe(0); // nothing replayed
    expect(join.participants.filter((p) => p.userId === 'laggard')).toHaveLength(1);

    const left = await sender.raw.waitFor((m) => m.event === 'participant.left');
    expect(left.data).toEqual({ participantId: first.join.participantId, reason: 'replaced' });
    const joined = await sender.raw.waitFor(
      (m) =>
        m.event === 'participant.joined' && (dataOf(m).participant as Message).participantId === join.participantId,
    );
    expect(joined.seq).toBe(join.lastSeq);
  });
});

describe('room lifecycle', () => {
  let t: TestNode;

  beforeAll(async () => {
    t = await startTestNode({ ...GENEROUS_LIMITS, ROOM_EMPTY_GRACE_MS: '200' });
  });

  afterAll(async () => {
    await t?.close();
  });

  it('closes a room after the grace once empty; seq restarts at 1', async () => {
    const roomId = nextRoom('life');
    const alice = await joinRaw(t, 'alice', { roomId });
    for (let i = 0; i < 3; i++) await alice.raw.request('chat.send', { text: `${i}` });
    expect(t.node.rooms.summary(roomId)?.lastSeq).toBe(4);
    await alice.raw.request('room.leave');
    expect(t.node.rooms.summary(roomId)).toBeDefined(); // still within the grace
    await eventually(() => t.node.rooms.summary(roomId) === undefined, 3000, 'room closed');

    const back = await alice.raw.request('room.join', { resume: { sessionId: alice.join.sessionId, lastSeq: 4 } });
    expect(back).toMatchObject({ ok: true, data: { resumed: false, lastSeq: 1, participantCount: 1 } });
    const chat = await alice.raw.request('chat.send', { text: 'fresh start' });
    expect(dataOf(chat).seq).toBe(2);
  });

  it('keeps a room whose participant returns within the grace', async () => {
    const roomId = nextRoom('life');
    const alice = await joinRaw(t, 'alice', { roomId });
    await alice.raw.request('room.leave');
    const again = await alice.raw.request('room.join');
    expect(again).toMatchObject({ ok: true, data: { lastSeq: 3 } });
    // A control room emptied after alice's room was: once its grace closed it, alice's would have
    // closed too (timers of equal duration fire in the order they were set).
    const control = nextRoom('life');
    const bob = await joinRaw(t, 'bob', { roomId: control });
    await bob.raw.request('room.leave');
    await eventually(() => t.node.rooms.summary(control) === undefined, 3000, 'control room closed');
    expect(t.node.rooms.summary(roomId)?.participants).toBe(1);
    expect(dataOf(await alice.raw.request('chat.send', { text: 'x' })).seq).toBe(4);
  });
});
