/**
 * One connection's message path over a real socket: envelopes and ids, error codes in the
 * order the contract fixes, frame limits, exactly one response per request, token refresh
 * (a new role in it included) and expiry.
 */
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_SECRET, startTestNode, type RawSocket, type TestNode } from '../../test-support/harness.js';
import { GENEROUS_LIMITS, expectWireValid, joinRaw, type Message } from '../../test-support/room-helpers.js';

let roomCounter = 0;
const nextRoom = () => `cs-${++roomCounter}`;

/** Sends a raw frame and waits for the next response that was not there before. */
async function sendRaw(raw: RawSocket, frame: string | Buffer, binary = false): Promise<Message> {
  const seen = new Set(raw.messages);
  raw.send(frame, binary);
  return raw.waitFor((m) => !seen.has(m) && 'id' in m);
}

function tokenExpiringAt(userId: string, roomId: string, expSeconds: number): Promise<string> {
  return new SignJWT({ room: roomId, role: 'trader' })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(userId)
    .setExpirationTime(expSeconds)
    .sign(new TextEncoder().encode(TEST_SECRET));
}

describe('client session', () => {
  let t: TestNode;

  beforeAll(async () => {
    t = await startTestNode({ ...GENEROUS_LIMITS });
  });

  afterAll(async () => {
    await t?.close();
  });

  async function openRaw(userId = 'u'): Promise<RawSocket> {
    return t.raw(await t.token(userId, { roomId: nextRoom() }));
  }

  describe('envelopes', () => {
    it.each([
      ['not JSON', '{"id": 1, "method": '],
      ['empty', ''],
      ['a JSON array', '[1, 2]'],
      ['a JSON string', '"ping"'],
      ['JSON null', 'null'],
      ['a JSON number', '42'],
    ])('answers %s with {id: null, BAD_REQUEST}', async (_what, frame) => {
      const raw = await openRaw();
      const response = await sendRaw(raw, frame);
      expect(response).toMatchObject({
        id: null,
        ok: false,
        error: { code: 'BAD_REQUEST', message: expect.any(String) },
      });
      expectWireValid([response]);
    });

    it.each([
      ['no id', { method: 'ping', data: {} }],
      ['a null id', { id: null, method: 'ping' }],
      ['a fractional id', { id: 1.5, method: 'ping' }],
      ['an object id', { id: { n: 1 }, method: 'ping' }],
      ['an id of 129 characters', { id: 'i'.repeat(129), method: 'ping' }],
    ])('answers a request with %s with id null', async (_what, envelope) => {
      const raw = await openRaw();
      const response = await sendRaw(raw, JSON.stringify(envelope));
      expect(response).toMatchObject({ id: null, ok: false, error: { code: 'BAD_REQUEST' } });
    });

    it.each([
      ['a numeric method', { id: 5, method: 42 }, 5],
      ['no method', { id: 'abc' }, 'abc'],
      ['array data', { id: 6, method: 'ping', data: [1] }, 6],
      ['null data', { id: 7, method: 'ping', data: null }, 7],
      ['a malformed traceparent', { id: 8, method: 'ping', traceparent: 'x' }, 8],
    ])('answers a bad envelope with %s under its usable id', async (_what, envelope, id) => {
      const raw = await openRaw();
      const response = await sendRaw(raw, JSON.stringify(envelope));
      expect(response).toMatchObject({ id, ok: false, error: { code: 'BAD_REQUEST', details: expect.any(Array) } });
    });

    it('answers an unknown method with UNKNOWN_METHOD, before or after joining', async () => {
      const raw = await openRaw();
      expect(await raw.request('chat.shout', { text: 'x' })).toMatchObject({
        ok: false,
        error: { code: 'UNKNOWN_METHOD' },
      });
      expect(await raw.request('__proto__')).toMatchObject({ ok: false, error: { code: 'UNKNOWN_METHOD' } });
      await raw.request('room.join');
      expect(await raw.request('room.destroy')).toMatchObject({ ok: false, error: { code: 'UNKNOWN_METHOD' } });
    });

    it('keeps string ids and accepts a missing data and a traceparent', async () => {
      const raw = await openRaw();
      expect(await sendRaw(raw, JSON.stringify({ id: 'join-1', method: 'room.join' }))).toMatchObject({
        id: 'join-1',
        ok: true,
      });
      const before = Date.now();
      const pong = await sendRaw(
        raw,
        JSON.stringify({
          id: 'p',
          method: 'ping',
          traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
        }),
      );
      expect(pong).toEqual({ id: 'p', ok: true, data: { now: expect.any(Number) } });
      expect((pong.data as { now: number }).now).toBeGreaterThanOrEqual(before - 5);
      expect((pong.data as { now: number }).now).toBeLessThanOrEqual(Date.now() + 5);
    });

    it('answers invalid data with BAD_REQUEST and details naming the field', async () => {
      const raw = await openRaw();
      await raw.request('room.join');
      const response = await raw.request('chat.send', { text: 'x'.repeat(2001) });
      expect(response).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST' } });
      const details = (response.error as { details: { path: string; message: string }[] }).details;
      expect(details.map((d) => d.path)).toEqual(['text']);
      const extra = await raw.request('chat.send', { text: 'ok', color: 'red' });
      expect(extra).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST' } });
    });
  });

  describe('order of checks', () => {
    it.each([
      'ping',
      'chat.send',
      'room.leave',
      'alert.publish',
      'moderation.kick',
      'session.refresh',
      'sfu.createTransport',
    ])('answers %s before room.join with NOT_JOINED', async (method) => {
      const raw = await openRaw();
      expect(await raw.request(method, {})).toMatchObject({ ok: false, error: { code: 'NOT_JOINED' } });
    });

    it('answers a second room.join with ALREADY_JOINED', async () => {
      const raw = await openRaw();
      expect(await raw.request('room.join')).toMatchObject({ ok: true });
      expect(await raw.request('room.join', { displayName: 'Again' })).toMatchObject({
        ok: false,
        error: { code: 'ALREADY_JOINED' },
      });
    });

    it('answers sfu.* with UNAVAILABLE when the node has no media', async () => {
      const raw = await t.raw(await t.token('presenter', { roomId: nextRoom(), role: 'presenter' }));
      await raw.request('room.join');
      expect(await raw.request('sfu.createTransport', { direction: 'recv' })).toMatchObject({
        ok: false,
        error: { code: 'UNAVAILABLE' },
      });
      expect(await raw.request('sfu.restartIce', { transportId: 't' })).toMatchObject({
        error: { code: 'UNAVAILABLE' },
      });
    });
  });

  describe('frames', () => {
    it('answers a binary frame with BAD_REQUEST and keeps the connection', async () => {
      const raw = await openRaw();
      const response = await sendRaw(raw, Buffer.from(JSON.stringify({ id: 1, method: 'room.join' })), true);
      expect(response).toMatchObject({ id: null, ok: false, error: { code: 'BAD_REQUEST' } });
      expect(await raw.request('room.join')).toMatchObject({ ok: true });
    });

    it('closes the connection with 1009 on a frame over 64 KiB', async () => {
      const raw = await openRaw();
      await raw.request('room.join');
      raw.send(JSON.stringify({ id: 99, method: 'chat.send', data: { text: 'x'.repeat(64 * 1024) } }));
      expect((await raw.closed).code).toBe(1009);
      expect(raw.messages.some((m) => m.id === 99)).toBe(false);
    });

    it('reads a frame just under 64 KiB (and refuses its data)', async () => {
      const raw = await openRaw();
      await raw.request('room.join');
      const frame = JSON.stringify({ id: 98, method: 'chat.send', data: { text: '' } }).replace(
        '"text":""',
        `"text":"${'x'.repeat(64 * 1024 - 60)}"`,
      );
      expect(Buffer.byteLength(frame)).toBeLessThanOrEqual(64 * 1024);
      expect(await sendRaw(raw, frame)).toMatchObject({ id: 98, ok: false, error: { code: 'BAD_REQUEST' } });
    });

    it('answers every request exactly once, in order, whatever it is', async () => {
      const raw = await openRaw('busy');
      const frames: { id: number | string; frame: string }[] = [];
      const add = (id: number | string, method: string, data?: unknown) =>
        frames.push({ id, frame: JSON.stringify({ id, method, ...(data === undefined ? {} : { data }) }) });
      add(1, 'ping'); // NOT_JOINED
      add(2, 'room.join');
      for (let i = 3; i < 60; i++) {
        switch (i % 6) {
          case 0:
            add(i, 'chat.send', { text: `m${i}` });
            break;
          case 1:
            add(i, 'chat.send', { text: '' });
            break;
          case 2:
            add(i, 'nope');
            break;
          case 3:
            add(`s${i}`, 'ping', {});
            break;
          case 4:
            add(i, 'alert.publish', { symbol: 'AAPL', action: 'buy' });
            break;
          default:
            add(i, 'room.join');
        }
      }
      for (const { frame } of frames) raw.send(frame);
      raw.send('{"id": 1000, "method": ');
      raw.send(JSON.stringify({ id: 'sentinel', method: 'ping' }));
      await raw.waitFor((m) => m.id === 'sentinel');

      const responses = raw.messages.filter((m) => 'id' in m);
      const ids = responses.map((m) => m.id);
      expect(ids).toEqual([...frames.map((f) => f.id), null, 'sentinel']);
      expectWireValid(raw.messages);
      const byId = new Map(responses.map((m) => [m.id, m]));
      expect(byId.get(1)).toMatchObject({ ok: false, error: { code: 'NOT_JOINED' } });
      expect(byId.get(2)).toMatchObject({ ok: true });
      expect(byId.get(6)).toMatchObject({ ok: true });
      expect(byId.get(7)).toMatchObject({ error: { code: 'BAD_REQUEST' } });
      expect(byId.get(8)).toMatchObject({ error: { code: 'UNKNOWN_METHOD' } });
      expect(byId.get('s9')).toMatchObject({ ok: true });
      expect(byId.get(10)).toMatchObject({ error: { code: 'FORBIDDEN' } });
      expect(byId.get(11)).toMatchObject({ error: { code: 'ALREADY_JOINED' } });
    });
  });

  describe('token lifetime', () => {
    it('closes with 4001 at token expiry unless session.refresh brought a fresh token', async () => {
      const roomId = nextRoom();
      const exp = Math.floor(Date.now() / 1000) + 2;
      const refreshed = await t.raw(await tokenExpiringAt('refresher', roomId, exp));
      const control = await t.raw(await tokenExpiringAt('control', roomId, exp));
      await refreshed.request('room.join');
      await control.request('room.join');

      const response = await refreshed.request('session.refresh', { token: await t.token('refresher', { roomId }) });
      expect(response).toMatchObject({ ok: true, data: { expiresAt: expect.any(Number) } });
      expect((response.data as { expiresAt: number }).expiresAt).toBeGreaterThan(Date.now() + 3600_000);

      expect((await control.closed).code).toBe(4001);
      expect(await refreshed.request('ping')).toMatchObject({ ok: true });
    });

    it('session.refresh refuses a token of another user or room, and garbage', async () => {
      const roomId = nextRoom();
      const raw = await t.raw(await t.token('owner', { roomId }));
      await raw.request('room.join');
      for (const token of [
        await t.token('someone-else', { roomId }),
        await t.token('owner', { roomId: 'another-room' }),
        'garbage',
        await t.token('owner', { roomId, ttlSeconds: -10 }),
      ]) {
        expect(await raw.request('session.refresh', { token })).toMatchObject({
          ok: false,
          error: { code: 'FORBIDDEN' },
        });
      }
      expect(raw.ws.readyState).toBe(raw.ws.OPEN);
    });
  });

  describe('session.refresh with another role', () => {
    it('a lower role takes effect like moderation.setRole: participant.updated, publishing rights gone', async () => {
      const roomId = nextRoom();
      const moderator = await joinRaw(t, 'mod', { roomId, role: 'moderator' });
      const presenter = await joinRaw(t, 'pres', { roomId, role: 'presenter' });
      expect(await presenter.raw.request('alert.publish', { symbol: 'AAPL', action: 'buy' })).toMatchObject({
        ok: true,
      });

      const refreshed = await presenter.raw.request('session.refresh', {
        token: await t.token('pres', { roomId, role: 'trader' }),
      });
      expect(refreshed).toMatchObject({ ok: true, data: { expiresAt: expect.any(Number) } });
      for (const c of [moderator, presenter]) {
        const updated = await c.raw.waitFor((m) => m.event === 'participant.updated');
        expect(updated.data).toEqual({
          participant: { ...presenter.join.participants.find((p) => p.userId === 'pres'), role: 'trader' },
        });
      }
      expect(await presenter.raw.request('alert.publish', { symbol: 'AAPL', action: 'sell' })).toMatchObject({
        ok: false,
        error: { code: 'FORBIDDEN' },
      });
      expect(t.node.rooms.summary(roomId)?.participantsByRole).toEqual({ presenter: 0, moderator: 1, trader: 1 });

      // A higher role takes effect the same way.
      await presenter.raw.request('session.refresh', { token: await t.token('pres', { roomId, role: 'presenter' }) });
      await moderator.raw.waitFor(
        (m) =>
          m.event === 'participant.updated' && (m.data as { participant: Message }).participant.role === 'presenter',
      );
      expect(await presenter.raw.request('alert.publish', { symbol: 'AAPL', action: 'buy' })).toMatchObject({
        ok: true,
      });
      expectWireValid(moderator.raw.messages);
    });

    it("a moderator's role change wins over the refreshed token", async () => {
      const roomId = nextRoom();
      const moderator = await joinRaw(t, 'mod', { roomId, role: 'moderator' });
      const demoted = await joinRaw(t, 'demoted', { roomId, role: 'presenter' });
      const untouched = await joinRaw(t, 'untouched', { roomId, role: 'trader' });
      await moderator.raw.request('moderation.setRole', { participantId: demoted.join.participantId, role: 'trader' });
      await moderator.raw.waitFor((m) => m.event === 'participant.updated');

      // Both refresh with a moderator token: only the one no moderator touched gets the role.
      for (const c of [demoted, untouched]) {
        const token = await t.token(c === demoted ? 'demoted' : 'untouched', { roomId, role: 'moderator' });
        expect(await c.raw.request('session.refresh', { token })).toMatchObject({ ok: true });
      }
      const promoted = await moderator.raw.waitFor(
        (m) =>
          m.event === 'participant.updated' && (m.data as { participant: Message }).participant.role === 'moderator',
      );
      expect((promoted.data as { participant: Message }).participant.participantId).toBe(untouched.join.participantId);
      expect(await demoted.raw.request('alert.publish', { symbol: 'AAPL', action: 'buy' })).toMatchObject({
        ok: false,
        error: { code: 'FORBIDDEN' },
      });
      const next = await moderator.raw.request('chat.send', { text: 'nothing else changed' });
      expect((next.data as { seq: number }).seq).toBe((promoted.seq as number) + 1);
      expect(moderator.raw.events('participant.updated')).toHaveLength(2);
      expect(t.node.rooms.summary(roomId)?.participantsByRole).toEqual({ presenter: 0, moderator: 2, trader: 1 });
    });
  });
});
