/**
 * The backend's access check on `room.join`, through a real node and the reference receiver as
 * the backend (misbehaving on command): refusal, role override, the room's limit across the
 * nodes of a cluster, and what the failure modes do when the backend is slow, failing or away.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { nodePerTest, startTestNode, type TestNode } from '../../test-support/harness.js';
import { deferred } from '../../test-support/async.js';
import { TestBackend } from '../../test-support/backend.js';
import { TestRedis } from '../../test-support/redis.js';
import { GENEROUS_LIMITS, http, joinRaw, parsePrometheus, sampleValue } from '../../test-support/room-helpers.js';
import { loadConfig } from '../src/config.js';
import { ConfigError } from '../src/errors.js';
import type { CircuitState } from '../../backend-bridge/src/index.js';

const BACKEND_TOKEN = 'backend-token-for-node-tests';

const backends: TestBackend[] = [];
afterEach(async () => {
  for (const b of backends.splice(0)) await b.close();
});

async function backend(options: Parameters<typeof TestBackend.start>[0] = {}): Promise<TestBackend> {
  const b = await TestBackend.start({ token: BACKEND_TOKEN, ...options });
  backends.push(b);
  return b;
}

function backendEnv(b: TestBackend, env: Record<string, string> = {}): Record<string, string> {
  return { ...GENEROUS_LIMITS, BACKEND_URL: b.url, BACKEND_TOKEN, ...env };
}

async function metric(t: TestNode, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  return sampleValue(parsePrometheus((await http(t, '/metrics')).text).samples, name, labels);
}

/** Resolves at the node's circuit's next change to `state`. */
function circuitReaches(t: TestNode, state: CircuitState): Promise<void> {
  const access = t.node.backendAccess;
  if (!access) throw new Error('the node has no backend access check');
  const reached = deferred();
  const stop = access.onCircuitState((s) => {
    if (s !== state) return;
    stop();
    reached.resolve();
  });
  return reached.promise;
}

describe('room.join asks the backend', () => {
  const start = nodePerTest();

  it('refuses with FORBIDDEN when the backend says no, and the user never reaches the room', async () => {
    const b = await backend({ policy: { rooms: { 'room-1': { users: { mallory: { allowed: false } } } } } });
    const t = await start(backendEnv(b));
    const watcher = await joinRaw(t, 'watcher');
    const raw = await t.raw(await t.token('mallory'));
    const refused = await raw.request('room.join');
    expect(refused).toMatchObject({ ok: false, error: { code: 'FORBIDDEN' } });
    // The watcher's own join went first; mallory's never shows.
    await joinRaw(t, 'late-comer');
    await watcher.raw.waitFor((m) => m.event === 'participant.joined' && hasUser(m, 'late-comer'));
    expect(watcher.raw.events('participant.joined').filter((m) => hasUser(m, 'mallory'))).toEqual([]);
    expect(t.node.rooms.participantCount).toBe(2);
    expect(b.accessRequests().map((r) => r.query.get('userId'))).toEqual(['watcher', 'mallory', 'late-comer']);
    expect(b.accessRequests()[0]?.authorization).toBe(`Bearer ${BACKEND_TOKEN}`);
  });

  it("gives the backend's role precedence over the token's", async () => {
    const b = await backend({ policy: { rooms: { 'room-1': { users: { alice: { role: 'presenter' } } } } } });
    const t = await start(backendEnv(b));
    const { join } = await joinRaw(t, 'alice', { role: 'trader' });
    expect(join.role).toBe('presenter');
    const other = await joinRaw(t, 'bob', { role: 'moderator' });
    expect(other.join.role).toBe('moderator');
    expect(other.join.participants).toEqual(
      expect.arrayContaining([expect.objectContaining({ userId: 'alice', role: 'presenter' })]),
    );
  });

  it('reuses a recent answer for the same user and room', async () => {
    const b = await backend();
    const t = await start(backendEnv(b, { BACKEND_ACCESS_CACHE_TTL_MS: '60000' }));
    const first = await joinRaw(t, 'alice');
    await first.raw.request('room.leave');
    await first.raw.request('room.join');
    expect(b.accessRequests()).toHaveLength(1);
    expect(await metric(t, 'trading_room_backend_access_cache_hits_total')).toBe(1);
  });

  it('leaves joins to the token alone without BACKEND_URL', async () => {
    const b = await backend({ policy: { otherRooms: { allowed: false } } });
    const t = await start(GENEROUS_LIMITS);
    await joinRaw(t, 'alice');
    expect(t.node.backendAccess).toBeUndefined();
    expect(b.requests).toEqual([]);
  });
});

describe('when the backend does not answer', () => {
  const start = nodePerTest();
  const TIMEOUT_MS = 400;

  it('token mode: a slow backend does not hold the join past the timeout; the token decides', async () => {
    const b = await backend({ policy: { rooms: { 'room-1': { users: { alice: { role: 'presenter' } } } } } });
    const t = await start(backendEnv(b, { BACKEND_ACCESS_TIMEOUT_MS: String(TIMEOUT_MS) }));
    b.misbehave({ kind: 'slow', delayMs: 60_000 });
    const raw = await t.raw(await t.token('alice', { role: 'trader' }));
    const startedAt = performance.now();
    const answer = await raw.request('room.join');
    const waited = performance.now() - startedAt;
    expect(answer).toMatchObject({ ok: true, data: { role: 'trader' } });
    expect(waited).toBeGreaterThanOrEqual(TIMEOUT_MS - 10);
    // The backend would take a minute; the join took its budget and slack for a loaded machine.
    expect(waited).toBeLessThan(TIMEOUT_MS + 5000);
    expect(await metric(t, 'trading_room_backend_access_fallbacks_total', { mode: 'token', reason: 'timeout' })).toBe(
      1,
    );
  });

  it('deny mode: 500s, resets and a backend gone are UNAVAILABLE, and it is asked again once back', async () => {
    const b = await backend();
    const t = await start(
      backendEnv(b, { BACKEND_FAILURE_MODE: 'deny', BACKEND_ACCESS_TIMEOUT_MS: '2000', BACKEND_ACCESS_RETRIES: '1' }),
    );
    const raw = await t.raw(await t.token('alice'));
    b.misbehave({ kind: 'status', status: 500 });
    expect(await raw.request('room.join')).toMatchObject({
      ok: false,
      error: { code: 'UNAVAILABLE', retryAfterMs: expect.any(Number) as number },
    });
    b.misbehave({ kind: 'reset' });
    expect(await raw.request('room.join')).toMatchObject({ ok: false, error: { code: 'UNAVAILABLE' } });
    b.misbehave({ kind: 'none' });
    await b.goAway();
    expect(await raw.request('room.join')).toMatchObject({ ok: false, error: { code: 'UNAVAILABLE' } });
    expect(t.node.rooms.participantCount).toBe(0);
    await b.comeBack();
    expect(await raw.request('room.join')).toMatchObject({ ok: true });

    expect(await metric(t, 'trading_room_backend_access_fallbacks_total', { mode: 'deny', reason: 'error' })).toBe(3);
    expect(await metric(t, 'trading_room_backend_requests_total', { endpoint: 'access', outcome: 'http_5xx' })).toBe(2);
    expect(await metric(t, 'trading_room_backend_requests_total', { endpoint: 'access', outcome: 'network' })).toBe(4);
  });

  it('deny mode: a slow backend is UNAVAILABLE within the timeout', async () => {
    const b = await backend();
    const t = await start(
      backendEnv(b, { BACKEND_FAILURE_MODE: 'deny', BACKEND_ACCESS_TIMEOUT_MS: String(TIMEOUT_MS) }),
    );
    b.misbehave({ kind: 'slow', delayMs: 60_000 });
    const raw = await t.raw(await t.token('alice'));
    const startedAt = performance.now();
    expect(await raw.request('room.join')).toMatchObject({ ok: false, error: { code: 'UNAVAILABLE' } });
    expect(performance.now() - startedAt).toBeLessThan(TIMEOUT_MS + 5000);
  });

  it('opens the circuit after the threshold, answers joins without the backend, and closes once it is back', async () => {
    const b = await backend();
    const t = await start(
      backendEnv(b, {
        BACKEND_ACCESS_RETRIES: '0',
        BACKEND_CIRCUIT_VOLUME_THRESHOLD: '3',
        BACKEND_CIRCUIT_ERROR_PERCENT: '50',
        BACKEND_CIRCUIT_RESET_MS: '1500',
      }),
    );
    b.misbehave({ kind: 'status', status: 503 });
    const opened = circuitReaches(t, 'open');
    const halfOpen = circuitReaches(t, 'halfOpen');
    for (let i = 0; i < 3; i++) await joinRaw(t, `early-${i}`);
    await opened;
    expect(await metric(t, 'trading_room_backend_circuit_state', { endpoint: 'access', state: 'open' })).toBe(1);

    const asked = b.accessRequests().length;
    const during = await joinRaw(t, 'during', { role: 'moderator' });
    expect(during.join.role).toBe('moderator');
    expect(b.accessRequests()).toHaveLength(asked);
    expect(
      await metric(t, 'trading_room_backend_access_fallbacks_total', { mode: 'token', reason: 'circuit_open' }),
    ).toBe(1);

    await halfOpen;
    b.misbehave({ kind: 'none' });
    const closed = circuitReaches(t, 'closed');
    await joinRaw(t, 'after');
    await closed;
    expect(b.accessRequests()).toHaveLength(asked + 1);
    expect(await metric(t, 'trading_room_backend_circuit_state', { endpoint: 'access', state: 'closed' })).toBe(1);
  });
});

describe("the backend's participant limit across a cluster", () => {
  let redis: TestRedis;
  const nodes: TestNode[] = [];

  beforeAll(async () => {
    redis = await TestRedis.start();
  });

  afterAll(async () => {
    for (const t of nodes) await t.close();
    await redis.close();
  });

  it('answers ROOM_FULL when the room holds maxParticipants on all nodes together', async () => {
    const b = await backend({ policy: { rooms: { 'room-1': { maxParticipants: 2 } } } });
    for (const nodeId of ['limit-a', 'limit-b']) {
      nodes.push(
        await startTestNode(
          backendEnv(b, {
            REDIS_URL: redis.url,
            NODE_ID: nodeId,
            REDIS_KEY_PREFIX: 'backend-limit',
            NODE_TTL_MS: '2000',
          }),
        ),
      );
    }
    const [a, bNode] = nodes as [TestNode, TestNode];
    await joinRaw(a, 'alice');
    await joinRaw(bNode, 'bob');
    const third = await a.raw(await a.token('carol'));
    expect(await third.request('room.join')).toMatchObject({ ok: false, error: { code: 'ROOM_FULL' } });
    const fourth = await bNode.raw(await bNode.token('dave'));
    expect(await fourth.request('room.join')).toMatchObject({ ok: false, error: { code: 'ROOM_FULL' } });
  });
});

describe('backend configuration', () => {
  it('names a bad failure mode, timeout or circuit setting', () => {
    expect(() => loadConfig({ BACKEND_FAILURE_MODE: 'maybe' })).toThrow(
      /BACKEND_FAILURE_MODE="maybe": expected token or deny/,
    );
    expect(() => loadConfig({ BACKEND_ACCESS_TIMEOUT_MS: '10' })).toThrow(/BACKEND_ACCESS_TIMEOUT_MS/);
    expect(() => loadConfig({ BACKEND_CIRCUIT_ERROR_PERCENT: '0' })).toThrow(ConfigError);
    const config = loadConfig({ BACKEND_URL: 'http://backend.test/api', BACKEND_TOKEN: 'secret-token' });
    expect(config.backendAccess).toMatchObject({ token: 'secret-token', failureMode: 'token', timeoutMs: 1000 });
  });
});

function hasUser(message: Record<string, unknown>, userId: string): boolean {
  return (message.data as { participant?: { userId?: string } } | undefined)?.participant?.userId === userId;
}
