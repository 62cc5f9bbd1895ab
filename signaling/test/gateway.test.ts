/**
 * The WebSocket gateway's admission: every refusal is an HTTP status with a JSON body (never
 * an accepted socket closed at once), and accepted tokens come by query or by header.
 */
import { SignJWT } from 'jose';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  RawSocket,
  TEST_SECRET,
  type UpgradeRefused,
  nodePerTest,
  startTestNode,
  type TestNode,
} from '../../test-support/harness.js';
import { GENEROUS_LIMITS, http, joinRaw, parsePrometheus, sampleValue } from '../../test-support/room-helpers.js';
import { refusal } from '../../test-support/sockets.js';

function expectJsonError(refused: UpgradeRefused, status: number, code: string): void {
  expect(refused.status).toBe(status);
  expect(refused.headers['content-type']).toMatch(/^application\/json/);
  expect(JSON.parse(refused.body)).toEqual({ error: { code, message: expect.any(String) } });
}

/** A raw socket on any path of the node. */
function rawAt(t: TestNode, pathAndQuery: string, headers: Record<string, string> = {}): Promise<void> {
  const raw = new RawSocket(new WebSocket(`ws://127.0.0.1:${t.port}${pathAndQuery}`, { headers }));
  raw.closed.catch(() => {});
  return raw.opened.finally(() => raw.ws.terminate());
}

/** Signs a token with arbitrary claims. */
function sign(
  claims: Record<string, unknown>,
  options: { secret?: string; exp?: number | null } = {},
): Promise<string> {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256' });
  if (options.exp !== null) jwt.setExpirationTime(options.exp ?? Math.floor(Date.now() / 1000) + 600);
  return jwt.sign(new TextEncoder().encode(options.secret ?? TEST_SECRET));
}

describe('upgrade admission', () => {
  let t: TestNode;

  beforeAll(async () => {
    t = await startTestNode({ ...GENEROUS_LIMITS, MAX_CONNECTIONS_PER_USER: '2' });
  });

  afterAll(async () => {
    await t?.close();
  });

  it('accepts a token in the query string', async () => {
    const { join } = await joinRaw(t, 'query-user', { roomId: 'gw-1' });
    expect(join.roomId).toBe('gw-1');
  });

  it('accepts a token in an Authorization: Bearer header', async () => {
    const raw = await t.raw(undefined, { Authorization: `Bearer ${await t.token('header-user', { roomId: 'gw-2' })}` });
    expect(await raw.request('room.join')).toMatchObject({ ok: true, data: { roomId: 'gw-2' } });
  });

  it('refuses a missing token with 401', async () => {
    expectJsonError(await refusal(t.raw(undefined)), 401, 'UNAUTHORIZED');
  });

  it.each([
    ['garbage', async () => 'not-a-jwt'],
    [
      'a token signed with another secret',
      () => sign({ sub: 'u', room: 'r', role: 'trader' }, { secret: 'x'.repeat(40) }),
    ],
    ['a token without exp', () => sign({ sub: 'u', room: 'r', role: 'trader' }, { exp: null })],
    ['a token without sub', () => sign({ room: 'r', role: 'trader' })],
    ['a token without room', () => sign({ sub: 'u', role: 'trader' })],
    ['a token with an unknown role', () => sign({ sub: 'u', room: 'r', role: 'admin' })],
    ['a token with a bad room id', () => sign({ sub: 'u', room: 'r/../x', role: 'trader' })],
  ])('refuses %s with 401', async (_what, token) => {
    expectJsonError(await refusal(t.raw(await token())), 401, 'UNAUTHORIZED');
  });

  it('refuses an expired token with 401 and says so', async () => {
    const refused = await refusal(t.raw(await t.token('late', { ttlSeconds: -10 })));
    expectJsonError(refused, 401, 'UNAUTHORIZED');
    expect(JSON.parse(refused.body).error.message).toMatch(/expired/);
  });

  it('refuses a bad Authorization header with 401', async () => {
    expectJsonError(await refusal(t.raw(undefined, { Authorization: 'Bearer nope' })), 401, 'UNAUTHORIZED');
    expectJsonError(await refusal(t.raw(undefined, { Authorization: 'Basic dTpw' })), 401, 'UNAUTHORIZED');
  });

  it('refuses a path other than /ws with 404', async () => {
    const token = await t.token('lost');
    expectJsonError(await refusal(rawAt(t, `/socket?token=${token}`)), 404, 'NOT_FOUND');
    expectJsonError(await refusal(rawAt(t, `/ws/extra?token=${token}`)), 404, 'NOT_FOUND');
  });

  it('refuses more than MAX_CONNECTIONS_PER_USER sockets of one user with 429 + Retry-After', async () => {
    const token = await t.token('greedy', { roomId: 'gw-3' });
    await t.raw(token);
    await t.raw(token);
    const refused = await refusal(t.raw(token));
    expectJsonError(refused, 429, 'RATE_LIMITED');
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
  });

  it('lets any Origin in when no allow-list is configured', async () => {
    const raw = await t.raw(await t.token('anywhere'), { Origin: 'https://whatever.example' });
    expect(raw.ws.readyState).toBe(WebSocket.OPEN);
  });
});

describe('per-IP connection limit', () => {
  let t: TestNode;

  beforeAll(async () => {
    t = await startTestNode({ RATE_LIMIT_IP_CONNECTIONS: '2' });
  });

  afterAll(async () => {
    await t?.close();
  });

  it('answers the attempt past the limit with 429 + Retry-After in seconds', async () => {
    await t.raw(await t.token('a'));
    // Failed attempts count too.
    expect((await refusal(t.raw('bad-token'))).status).toBe(401);
    const refused = await refusal(t.raw(await t.token('b')));
    expectJsonError(refused, 429, 'RATE_LIMITED');
    const retryAfter = Number(refused.headers['retry-after']);
    expect(Number.isInteger(retryAfter)).toBe(true);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
  });
});

describe('Origin allow-list', () => {
  let t: TestNode;

  beforeAll(async () => {
    t = await startTestNode({
      ...GENEROUS_LIMITS,
      SIGNALING_ALLOWED_ORIGINS: 'https://app.example, https://desk.example',
    });
  });

  afterAll(async () => {
    await t?.close();
  });

  it('refuses a disallowed Origin with 403', async () => {
    const token = await t.token('browser');
    expectJsonError(await refusal(t.raw(token, { Origin: 'https://evil.example' })), 403, 'FORBIDDEN');
    expectJsonError(await refusal(t.raw(token, { Origin: 'https://app.example.evil.example' })), 403, 'FORBIDDEN');
  });

  it('accepts a listed Origin, and clients that send none', async () => {
    const token = await t.token('browser');
    expect((await t.raw(token, { Origin: 'https://desk.example' })).ws.readyState).toBe(WebSocket.OPEN);
    expect((await t.raw(token)).ws.readyState).toBe(WebSocket.OPEN);
  });
});

describe('refusals', () => {
  const startNode = nodePerTest();

  it('are all counted by status, a wrong path too', async () => {
    const t = await startNode({ ...GENEROUS_LIMITS });
    const token = await t.token('counted');
    await refusal(rawAt(t, `/socket?token=${token}`));
    await refusal(rawAt(t, `/ws/extra?token=${token}`));
    await refusal(t.raw(undefined));
    const { samples } = parsePrometheus((await http(t, '/metrics')).text);
    const refused = (status: string): number | undefined =>
      sampleValue(samples, 'trading_room_upgrades_refused_total', { status });
    expect(refused('404')).toBe(2);
    expect(refused('401')).toBe(1);
  });
});

describe('while the node drains', () => {
  const startNode = nodePerTest();

  it('refuses new upgrades with 503 + Retry-After and tells connected clients', async () => {
    const t = await startNode({ ...GENEROUS_LIMITS, DRAIN_TIMEOUT_MS: '10000' });
    const { raw } = await joinRaw(t, 'stayer', { roomId: 'gw-drain' });
    void t.node.drain();
    const refused = await refusal(t.raw(await t.token('newcomer', { roomId: 'gw-drain' })));
    expectJsonError(refused, 503, 'UNAVAILABLE');
    const retryAfter = Number(refused.headers['retry-after']);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(3);
    const notice = await raw.waitFor((m) => m.event === 'server.draining');
    expect(notice.data).toEqual({ deadline: expect.any(Number), reconnectAfterMs: expect.any(Number) });
  });
});
