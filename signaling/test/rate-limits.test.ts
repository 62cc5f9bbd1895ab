/**
 * The contract's four rate limits on a real node over real sockets: under, at and over each
 * limit, honest `retryAfterMs`, no side effect of a limited request, 429 + Retry-After on the
 * upgrade, 1008 for a client that keeps going, the per-user connection cap and the Origin
 * allow-list. Every number comes from the environment.
 *
 * Windows pass on a stopped clock: only `Date` is faked, and the limiters' memory store reads
 * `Date.now()` to decide whether a window is over (its timers only delete expired keys), so a
 * test moves the clock to 1 ms before `retryAfterMs` (still refused) and to `retryAfterMs`
 * (admitted) without waiting.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../src/config.js';
import { RateLimits } from '../src/rate-limits.js';
import { eventually, nodePerTest, type RawSocket, type TestNode } from '../../test-support/harness.js';
import { refusal } from '../../test-support/sockets.js';

/** High limits everywhere except those a test sets. */
const RELAXED = {
  RATE_LIMIT_IP_CONNECTIONS: '1000',
  RATE_LIMIT_CONNECTION_MESSAGES: '1000',
  RATE_LIMIT_USER_MESSAGES: '1000',
  RATE_LIMIT_CHAT_MESSAGES: '1000',
  RATE_LIMIT_ALERT_MESSAGES: '1000',
  RATE_LIMIT_JOIN_MESSAGES: '1000',
};

const node = nodePerTest(RELAXED);
// Registered after nodePerTest's hook: "after" hooks run in reverse, so nodes close on the real clock.
afterEach(() => {
  vi.useRealTimers();
});

/** Stops the clock (`Date` only; timers stay real); `at(ms)` moves it to `ms` after the stop. */
function stoppedClock(): { at(ms: number): void } {
  vi.useFakeTimers({ toFake: ['Date'], now: Date.now() });
  const start = Date.now();
  return { at: (ms) => vi.setSystemTime(start + ms) };
}

async function joinedRaw(
  n: TestNode,
  userId: string,
  role: 'trader' | 'presenter' | 'moderator' = 'trader',
): Promise<RawSocket> {
  const raw = await n.raw(await n.token(userId, { role }));
  const join = await raw.request('room.join', {});
  expect(join.ok, JSON.stringify(join)).toBe(true);
  return raw;
}

function errorOf(response: Record<string, unknown>): { code: string; retryAfterMs?: number; message: string } {
  expect(response.ok, JSON.stringify(response)).toBe(false);
  return response.error as { code: string; retryAfterMs?: number; message: string };
}

function expectLimited(response: Record<string, unknown>, windowMs: number): number {
  const error = errorOf(response);
  expect(error.code).toBe('RATE_LIMITED');
  expect(error.retryAfterMs).toBeGreaterThan(0);
  expect(error.retryAfterMs).toBeLessThanOrEqual(windowMs);
  return error.retryAfterMs as number;
}

type Clock = ReturnType<typeof stoppedClock>;

/**
 * Proves `retryAfterMs` honest on a stopped clock: 1 ms before it `request` is still refused
 * (with 1 ms to go), at it the answer of `request` is returned.
 */
async function retryWhenAllowed(
  clock: Clock,
  retryAfterMs: number,
  request: () => Promise<Record<string, unknown>>,
): Promise<Record<string, unknown>> {
  clock.at(retryAfterMs - 1);
  expect(expectLimited(await request(), retryAfterMs)).toBe(1);
  clock.at(retryAfterMs);
  return request();
}

describe('configuration', () => {
  it('defaults to the numbers of the contract and reads every limit from the environment', () => {
    const d = loadConfig({}).rateLimits;
    expect(d.enabled).toBe(true);
    expect(d.ip).toEqual({ points: 20, durationMs: 60_000 });
    expect(d.connection).toEqual({ points: 100, durationMs: 10_000 });
    expect(d.user).toEqual({ points: 500, durationMs: 60_000 });
    expect(d.methods['chat.send']).toEqual({ points: 5, durationMs: 5_000 });
    expect(d.methods['alert.publish']).toEqual({ points: 10, durationMs: 60_000 });
    expect(d.methods['room.join']).toEqual({ points: 10, durationMs: 60_000 });
    expect(d.methods['room.history']).toEqual({ points: 10, durationMs: 60_000 });

    const c = loadConfig({
      RATE_LIMITS_ENABLED: 'false',
      RATE_LIMIT_IP_CONNECTIONS: '1',
      RATE_LIMIT_IP_WINDOW_MS: '1001',
      RATE_LIMIT_CONNECTION_MESSAGES: '2',
      RATE_LIMIT_CONNECTION_WINDOW_MS: '1002',
      RATE_LIMIT_USER_MESSAGES: '3',
      RATE_LIMIT_USER_WINDOW_MS: '1003',
      RATE_LIMIT_CHAT_MESSAGES: '4',
      RATE_LIMIT_CHAT_WINDOW_MS: '1004',
      RATE_LIMIT_ALERT_MESSAGES: '5',
      RATE_LIMIT_ALERT_WINDOW_MS: '1005',
      RATE_LIMIT_JOIN_MESSAGES: '6',
      RATE_LIMIT_JOIN_WINDOW_MS: '1006',
      RATE_LIMIT_HISTORY_MESSAGES: '9',
      RATE_LIMIT_HISTORY_WINDOW_MS: '1009',
      ABUSE_CLOSE_AFTER_REJECTIONS: '7',
      MAX_CONNECTIONS_PER_USER: '8',
    });
    expect(c.rateLimits).toEqual({
      enabled: false,
      ip: { points: 1, durationMs: 1001 },
      connection: { points: 2, durationMs: 1002 },
      user: { points: 3, durationMs: 1003 },
      methods: {
        'chat.send': { points: 4, durationMs: 1004 },
        'alert.publish': { points: 5, durationMs: 1005 },
        'room.join': { points: 6, durationMs: 1006 },
        'room.history': { points: 9, durationMs: 1009 },
      },
      abuseCloseAfterRejections: 7,
    });
    expect(c.maxConnectionsPerUser).toBe(8);
    expect(() => loadConfig({ RATE_LIMIT_CHAT_MESSAGES: '0' })).toThrow(/RATE_LIMIT_CHAT_MESSAGES/);
  });

  it('honours windows that are not whole seconds', async () => {
    const clock = stoppedClock();
    const limits = new RateLimits({ ...loadConfig({}).rateLimits, connection: { points: 1, durationMs: 1200 } });
    expect(await limits.consumeMessage('c', 'u')).toBeUndefined();
    expect(await limits.consumeMessage('c', 'u')).toEqual({ kind: 'connection', retryAfterMs: 1200 });
    clock.at(1199);
    expect(await limits.consumeMessage('c', 'u')).toEqual({ kind: 'connection', retryAfterMs: 1 });
    clock.at(1200);
    expect(await limits.consumeMessage('c', 'u')).toBeUndefined();
  });
});

describe('per connection', () => {
  it('allows up to the limit, refuses the next with an honest retryAfterMs', async () => {
    const n = await node({ RATE_LIMIT_CONNECTION_MESSAGES: '5', RATE_LIMIT_CONNECTION_WINDOW_MS: '2000' });
    const clock = stoppedClock();
    const raw = await joinedRaw(n, 'alice'); // 1
    for (let i = 2; i <= 4; i++) expect((await raw.request('ping')).ok).toBe(true); // under
    expect((await raw.request('ping')).ok).toBe(true); // at: the 5th message
    const retryAfterMs = expectLimited(await raw.request('ping'), 2000); // over
    expect(retryAfterMs).toBe(2000); // the window opened with the first message
    // Another connection of the same user has its own budget.
    const other = await n.raw(await n.token('alice'));
    expect(errorOf(await other.request('ping')).code).toBe('NOT_JOINED');
    expect((await retryWhenAllowed(clock, retryAfterMs, () => raw.request('ping'))).ok).toBe(true);
  });

  it('counts invalid frames too (a junk flood cannot bypass the limit)', async () => {
    const n = await node({ RATE_LIMIT_CONNECTION_MESSAGES: '3', RATE_LIMIT_CONNECTION_WINDOW_MS: '2000' });
    const raw = await n.raw(await n.token('alice'));
    raw.send('not json');
    raw.send(Buffer.from([1, 2, 3]), true);
    raw.send('{"id":"x"}');
    raw.send('{');
    await eventually(() => raw.messages.length === 4);
    expect(raw.messages.slice(0, 3).map((m) => (m.error as { code: string }).code)).toEqual([
      'BAD_REQUEST',
      'BAD_REQUEST',
      'BAD_REQUEST',
    ]);
    expect(raw.messages[1]?.id).toBeNull();
    expect(raw.messages[2]?.id).toBe('x');
    expectLimited(raw.messages[3] as Record<string, unknown>, 2000);
    expect(raw.messages[3]?.id).toBeNull();
  });
});

describe('per user', () => {
  it('sums messages over all connections of the user', async () => {
    const n = await node({ RATE_LIMIT_USER_MESSAGES: '6', RATE_LIMIT_USER_WINDOW_MS: '2000' });
    const clock = stoppedClock();
    const a = await joinedRaw(n, 'bob'); // 1
    expect((await a.request('ping')).ok).toBe(true); // 2
    expect((await a.request('ping')).ok).toBe(true); // 3
    const b = await n.raw(await n.token('bob')); // second connection, same user, not joined
    for (let i = 4; i <= 6; i++) expect(errorOf(await b.request('ping')).code).toBe('NOT_JOINED');
    expectLimited(await b.request('ping'), 2000); // 7th of the user
    const retryAfterMs = expectLimited(await a.request('ping'), 2000); // the first connection too
    // Another user is unaffected.
    const carol = await joinedRaw(n, 'carol');
    expect((await carol.request('ping')).ok).toBe(true);
    expect((await retryWhenAllowed(clock, retryAfterMs, () => a.request('ping'))).ok).toBe(true);
  });

  it('retryAfterMs covers every limit that would refuse the retry', async () => {
    // The connection window ends first, but the user budget is spent too: waiting only for
    // the connection window would be refused again.
    const n = await node({
      RATE_LIMIT_CONNECTION_MESSAGES: '3',
      RATE_LIMIT_CONNECTION_WINDOW_MS: '1000',
      RATE_LIMIT_USER_MESSAGES: '3',
      RATE_LIMIT_USER_WINDOW_MS: '3000',
    });
    const clock = stoppedClock();
    const raw = await joinedRaw(n, 'dave');
    await raw.request('ping');
    await raw.request('ping');
    const retryAfterMs = expectLimited(await raw.request('ping'), 3000);
    expect(retryAfterMs).toBe(3000);
    // When the connection window is over, the user's still refuses.
    clock.at(1000);
    expect(expectLimited(await raw.request('ping'), 3000)).toBe(2000);
    expect((await retryWhenAllowed(clock, retryAfterMs, () => raw.request('ping'))).ok).toBe(true);
  });
});

describe('per method, per user', () => {
  it('chat.send: over the limit is refused and publishes nothing', async () => {
    const n = await node({ RATE_LIMIT_CHAT_MESSAGES: '3', RATE_LIMIT_CHAT_WINDOW_MS: '2000' });
    const clock = stoppedClock();
    const sender = await joinedRaw(n, 'erin');
    const observer = await joinedRaw(n, 'frank');
    const seqs: number[] = [];
    for (let i = 1; i <= 3; i++) {
      const r = await sender.request('chat.send', { text: `m${i}` });
      expect(r.ok, JSON.stringify(r)).toBe(true);
      seqs.push((r.data as { seq: number }).seq);
    }
    const retryAfterMs = expectLimited(await sender.request('chat.send', { text: 'limited' }), 2000);
    // Other methods still pass; the limit is per method.
    expect((await sender.request('ping')).ok).toBe(true);
    const after = await retryWhenAllowed(clock, retryAfterMs, () => sender.request('chat.send', { text: 'after' }));
    expect(after.ok, JSON.stringify(after)).toBe(true);
    const afterSeq = (after.data as { seq: number }).seq;
    expect(afterSeq).toBe((seqs.at(-1) as number) + 1); // the refused message took no seq
    await observer.waitFor((m) => m.seq === afterSeq);
    const texts = observer.events('chat.message').map((m) => (m.data as { text: string }).text);
    expect(texts).toEqual(['m1', 'm2', 'm3', 'after']);
  });

  it('chat.send: the budget is per user, across connections', async () => {
    const n = await node({
      RATE_LIMIT_CHAT_MESSAGES: '2',
      RATE_LIMIT_CHAT_WINDOW_MS: '2000',
      SESSION_RESUME_GRACE_MS: '0',
    });
    const first = await joinedRaw(n, 'gina');
    expect((await first.request('chat.send', { text: 'a' })).ok).toBe(true);
    expect((await first.request('chat.send', { text: 'b' })).ok).toBe(true);
    // A new connection of the same user (it replaces the first) has no fresh budget.
    const second = await joinedRaw(n, 'gina');
    expect((await first.closed).code).toBe(4009);
    expectLimited(await second.request('chat.send', { text: 'c' }), 2000);
  });

  it('alert.publish: over the limit is refused and publishes nothing', async () => {
    const n = await node({ RATE_LIMIT_ALERT_MESSAGES: '2', RATE_LIMIT_ALERT_WINDOW_MS: '2000' });
    const clock = stoppedClock();
    const presenter = await joinedRaw(n, 'pres', 'presenter');
    const observer = await joinedRaw(n, 'obs');
    const alert = { symbol: 'AAPL', action: 'buy', price: 190.5 };
    const first = await presenter.request('alert.publish', alert);
    expect(first.ok, JSON.stringify(first)).toBe(true);
    expect((await presenter.request('alert.publish', alert)).ok).toBe(true);
    const retryAfterMs = expectLimited(await presenter.request('alert.publish', { ...alert, note: 'limited' }), 2000);
    const after = await retryWhenAllowed(clock, retryAfterMs, () =>
      presenter.request('alert.publish', { ...alert, note: 'after' }),
    );
    expect(after.ok, JSON.stringify(after)).toBe(true);
    expect((after.data as { seq: number }).seq).toBe((first.data as { seq: number }).seq + 2);
    await observer.waitFor((m) => m.seq === (after.data as { seq: number }).seq);
    expect(observer.events('alert.published').map((m) => (m.data as { note?: string }).note)).toEqual([
      undefined,
      undefined,
      'after',
    ]);
  });

  it('room.join: over the limit is refused and joins nothing', async () => {
    const n = await node({ RATE_LIMIT_JOIN_MESSAGES: '2', RATE_LIMIT_JOIN_WINDOW_MS: '2000' });
    const clock = stoppedClock();
    const observer = await joinedRaw(n, 'obs-join');
    const raw = await joinedRaw(n, 'hank'); // join 1
    expect((await raw.request('room.leave')).ok).toBe(true);
    expect((await raw.request('room.join', {})).ok).toBe(true); // join 2: at the limit
    expect((await raw.request('room.leave')).ok).toBe(true);
    const joinedBefore = observer.events('participant.joined').length;
    const retryAfterMs = expectLimited(await raw.request('room.join', {}), 2000);
    expect(errorOf(await raw.request('ping')).code).toBe('NOT_JOINED'); // not a member
    const again = await retryWhenAllowed(clock, retryAfterMs, () => raw.request('room.join', {}));
    expect(again.ok, JSON.stringify(again)).toBe(true);
    await observer.waitFor(
      (m) => m.event === 'participant.joined' && observer.events('participant.joined').length > joinedBefore,
    );
    expect(observer.events('participant.joined').length).toBe(joinedBefore + 1);
  });
});

describe('per IP, on the upgrade', () => {
  it('answers 429 with Retry-After over the limit, and admits again after it', async () => {
    const n = await node({ RATE_LIMIT_IP_CONNECTIONS: '3', RATE_LIMIT_IP_WINDOW_MS: '2000' });
    const clock = stoppedClock();
    for (let i = 0; i < 3; i++) await n.raw(await n.token(`ip-${i}`));
    const refused = await refusal(n.raw(await n.token('ip-3')));
    expect(refused.status).toBe(429);
    const retryAfterS = Number(refused.headers['retry-after']);
    expect(retryAfterS).toBe(2);
    expect(JSON.parse(refused.body)).toMatchObject({ error: { code: 'RATE_LIMITED' } });
    clock.at(retryAfterS * 1000 - 1);
    expect((await refusal(n.raw(await n.token('ip-3')))).status).toBe(429);
    clock.at(retryAfterS * 1000);
    await n.raw(await n.token('ip-3'));
  });

  it('counts attempts with a bad token too', async () => {
    const n = await node({ RATE_LIMIT_IP_CONNECTIONS: '2', RATE_LIMIT_IP_WINDOW_MS: '60000' });
    expect((await refusal(n.raw('garbage'))).status).toBe(401);
    expect((await refusal(n.raw(undefined))).status).toBe(401);
    expect((await refusal(n.raw(await n.token('ok')))).status).toBe(429);
  });
});

describe('abuse', () => {
  it('closes with 1008 a client that keeps sending far past its limits', async () => {
    const n = await node({
      RATE_LIMIT_CONNECTION_MESSAGES: '10',
      RATE_LIMIT_CONNECTION_WINDOW_MS: '5000',
      ABUSE_CLOSE_AFTER_REJECTIONS: '20',
    });
    const observer = await joinedRaw(n, 'calm');
    const raw = await joinedRaw(n, 'abuser');
    const started = Date.now();
    for (let i = 0; i < 500; i++) raw.send(JSON.stringify({ id: i, method: 'ping', data: {} }));
    const closed = await raw.closed;
    expect(closed.code).toBe(1008);
    expect(Date.now() - started).toBeLessThan(1500); // the closing handshake completes at once
    const limited = raw.messages.filter((m) => (m.error as { code?: string } | undefined)?.code === 'RATE_LIMITED');
    expect(limited.length).toBeGreaterThanOrEqual(20);
    expect(limited.length).toBeLessThanOrEqual(25);
    expect((await observer.request('ping')).ok).toBe(true);
  });

  it('does not close a client that backs off as told', async () => {
    const n = await node({
      RATE_LIMIT_CONNECTION_MESSAGES: '5',
      RATE_LIMIT_CONNECTION_WINDOW_MS: '1000',
      ABUSE_CLOSE_AFTER_REJECTIONS: '5',
    });
    const clock = stoppedClock();
    const raw = await joinedRaw(n, 'polite');
    let elapsedMs = 0;
    for (let round = 0; round < 3; round++) {
      let retryAfterMs = 0;
      for (let i = 0; i < 8 && retryAfterMs === 0; i++) {
        const r = await raw.request('ping');
        if (!r.ok) retryAfterMs = expectLimited(r, 1000);
      }
      expect(retryAfterMs).toBeGreaterThan(0);
      elapsedMs += retryAfterMs;
      clock.at(elapsedMs);
    }
    expect((await raw.request('ping')).ok).toBe(true);
  });
});

describe('connections per user', () => {
  it('caps MAX_CONNECTIONS_PER_USER with 429 and frees the slot on close', async () => {
    const n = await node({ MAX_CONNECTIONS_PER_USER: '2' });
    const token = await n.token('ivy');
    const first = await n.raw(token);
    await n.raw(token);
    const refused = await refusal(n.raw(token));
    expect(refused.status).toBe(429);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    await n.raw(await n.token('other-user')); // others are unaffected
    first.ws.close();
    await first.closed;
    await eventually(async () => {
      try {
        await n.raw(token);
        return true;
      } catch {
        return false;
      }
    });
  });

  it('holds the cap against simultaneous upgrades', async () => {
    const n = await node({ MAX_CONNECTIONS_PER_USER: '2' });
    const token = await n.token('jack');
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => n.raw(token)));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(2);
  });
});

describe('allowed origins', () => {
  it('refuses a disallowed Origin with 403 and admits allowed ones and non-browser clients', async () => {
    const n = await node({ SIGNALING_ALLOWED_ORIGINS: 'https://app.example.com, https://admin.example.com' });
    expect((await refusal(n.raw(await n.token('o1'), { Origin: 'https://evil.example.com' }))).status).toBe(403);
    expect((await refusal(n.raw(await n.token('o1'), { Origin: 'https://app.example.com.evil.net' }))).status).toBe(
      403,
    );
    await n.raw(await n.token('o2'), { Origin: 'https://app.example.com' });
    await n.raw(await n.token('o3'), { Origin: 'https://admin.example.com' });
    await n.raw(await n.token('o4')); // no Origin: not a browser
  });
});

describe('RATE_LIMITS_ENABLED=false', () => {
  it('turns every limit off', async () => {
    const n = await node({
      RATE_LIMITS_ENABLED: 'false',
      RATE_LIMIT_IP_CONNECTIONS: '1',
      RATE_LIMIT_CONNECTION_MESSAGES: '1',
      RATE_LIMIT_CHAT_MESSAGES: '1',
    });
    const raw = await joinedRaw(n, 'kim');
    await joinedRaw(n, 'lee');
    for (let i = 0; i < 20; i++) expect((await raw.request('chat.send', { text: `x${i}` })).ok).toBe(true);
  });
});
