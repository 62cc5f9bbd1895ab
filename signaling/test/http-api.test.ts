/** The HTTP side of the node's port: health probes, the admin API and /favicon.ico. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, eventually, nodePerTest, startTestNode, type TestNode } from '../../test-support/harness.js';
import { GENEROUS_LIMITS, http, joinRaw } from '../../test-support/room-helpers.js';

const ADMIN = { Authorization: `Bearer ${ADMIN_TOKEN}` };

describe('health', () => {
  let t: TestNode;

  beforeAll(async () => {
    t = await startTestNode({ ...GENEROUS_LIMITS });
  });

  afterAll(async () => {
    await t?.close();
  });

  it('GET /health/live answers 200', async () => {
    const live = await http(t, '/health/live');
    expect(live.status).toBe(200);
    expect(live.headers.get('content-type')).toMatch(/^application\/json/);
    expect(live.json).toEqual({ status: 'ok' });
  });

  it('GET /health/startup answers 200 once started', async () => {
    const startup = await http(t, '/health/startup');
    expect(startup.status).toBe(200);
    expect(startup.json).toEqual({ status: 'ok' });
  });

  it('GET /health/ready answers 200 while running', async () => {
    const ready = await http(t, '/health/ready');
    expect(ready.status).toBe(200);
    expect(ready.json).toEqual({ status: 'ready' });
  });

  it('GET /health gives the node detail as JSON', async () => {
    await joinRaw(t, 'health-user', { roomId: 'health-room' });
    const health = await http(t, '/health');
    expect(health.status).toBe(200);
    expect(health.headers.get('cache-control')).toBe('no-store');
    expect(health.json).toEqual({
      status: 'ok',
      nodeId: t.node.config.nodeId,
      version: expect.stringMatching(/^\d+\.\d+\.\d+/),
      uptimeSeconds: expect.any(Number),
      connections: 1,
      rooms: 1,
      participants: 1,
      bus: { kind: 'local', state: 'ok' },
      cluster: { aliveNodes: 1 },
      media: { state: 'disabled' },
      drain: { state: 'RUNNING', remainingConnections: 1 },
    });
  });

  it('answers unknown paths with a JSON 404 and /ws without an upgrade with 400', async () => {
    const missing = await http(t, '/nope');
    expect(missing.status).toBe(404);
    expect(missing.json).toEqual({ error: { code: 'NOT_FOUND', message: expect.any(String) } });
    const ws = await http(t, '/ws');
    expect(ws.status).toBe(400);
    expect(ws.json).toMatchObject({ error: { code: 'BAD_REQUEST' } });
  });

  it('answers GET /favicon.ico with 204, not 404, when the page has no such file', async () => {
    for (const method of ['GET', 'HEAD']) {
      const favicon = await http(t, '/favicon.ico', { method });
      expect(favicon.status, method).toBe(204);
      expect(favicon.text).toBe('');
    }
  });
});

describe('health while draining', () => {
  const startNode = nodePerTest();

  it('GET /health/ready turns 503 at once; live and startup stay 200', async () => {
    const t = await startNode({ ...GENEROUS_LIMITS, DRAIN_TIMEOUT_MS: '10000' });
    await joinRaw(t, 'stayer', { roomId: 'drain-health' }); // keeps the drain from finishing
    expect((await http(t, '/health/ready')).status).toBe(200);
    void t.node.drain();
    const ready = await http(t, '/health/ready');
    expect(ready.status).toBe(503);
    expect(ready.json).toEqual({ status: 'not ready' });
    expect((await http(t, '/health/live')).status).toBe(200);
    expect((await http(t, '/health/startup')).status).toBe(200);
    const health = await http(t, '/health');
    expect(health.json).toMatchObject({
      status: 'draining',
      drain: {
        state: 'DRAINING',
        startedAt: expect.any(Number),
        deadline: expect.any(Number),
        remainingConnections: 1,
      },
    });
  });
});

describe('admin API', () => {
  let t: TestNode;

  beforeAll(async () => {
    t = await startTestNode({ ...GENEROUS_LIMITS });
  });

  afterAll(async () => {
    await t?.close();
  });

  it('wants the admin token: none → 401 with WWW-Authenticate, wrong → 401, right → 200', async () => {
    const none = await http(t, '/admin/rooms');
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer');
    expect(none.json).toEqual({ error: { code: 'UNAUTHORIZED', message: expect.any(String) } });

    for (const authorization of [`Bearer ${ADMIN_TOKEN}x`, 'Bearer wrong', ADMIN_TOKEN, `Basic ${ADMIN_TOKEN}`]) {
      const wrong = await http(t, '/admin/rooms', { headers: { Authorization: authorization } });
      expect(wrong.status, authorization).toBe(401);
      expect(wrong.headers.get('www-authenticate')).toBe('Bearer');
    }
    expect((await http(t, '/admin/rooms/x/close', { method: 'POST' })).status).toBe(401);
    expect((await http(t, '/admin/drain', { method: 'POST' })).status).toBe(401);
    expect(t.node.drainController.state).toBe('RUNNING');

    const right = await http(t, '/admin/rooms', { headers: ADMIN });
    expect(right.status).toBe(200);
    expect(right.json).toMatchObject({ nodeId: t.node.config.nodeId, rooms: expect.any(Array) });
  });

  it('GET /admin/rooms shows participants by role, lastSeq and eventsPerMinute', async () => {
    const roomId = 'admin-room';
    const presenter = await joinRaw(t, 'admin-p', { roomId, role: 'presenter' });
    await joinRaw(t, 'admin-m', { roomId, role: 'moderator' });
    await joinRaw(t, 'admin-t1', { roomId });
    await joinRaw(t, 'admin-t2', { roomId });
    for (let i = 0; i < 3; i++) await presenter.raw.request('chat.send', { text: `${i}` });

    const list = await http(t, '/admin/rooms', { headers: ADMIN });
    const room = (list.json as { rooms: Record<string, unknown>[] }).rooms.find((r) => r.roomId === roomId);
    expect(room).toEqual({
      roomId,
      createdAt: expect.any(Number),
      participants: 4,
      participantsByRole: { presenter: 1, moderator: 1, trader: 2 },
      participantsByNode: { [t.node.config.nodeId]: 4 },
      connected: 4,
      publishers: [],
      producers: 0,
      eventsPerMinute: expect.any(Number),
      chatMessagesPerMinute: expect.any(Number),
      alertsPerMinute: 0,
      lastSeq: 7,
      epoch: expect.any(String),
      nodes: [t.node.config.nodeId],
      // Webhooks are off on this node: no backlog to show (null, not an empty one).
      webhookBacklog: null,
    });
    expect(room?.eventsPerMinute as number).toBeGreaterThan(0);
    expect(room?.eventsPerMinute as number).toBeLessThanOrEqual(7);
    expect(room?.chatMessagesPerMinute as number).toBeGreaterThan(0);
    expect(room?.chatMessagesPerMinute as number).toBeLessThanOrEqual(3);

    const detail = await http(t, `/admin/rooms/${roomId}`, { headers: ADMIN });
    expect(detail.status).toBe(200);
    const body = detail.json as { participantList: { userId: string; role: string }[]; lastSeq: number };
    expect(body.lastSeq).toBe(7);
    expect(body.participantList.map((p) => `${p.userId}:${p.role}`).sort()).toEqual([
      'admin-m:moderator',
      'admin-p:presenter',
      'admin-t1:trader',
      'admin-t2:trader',
    ]);
  });

  it('GET /admin/rooms/:roomId answers 404 for an unknown room', async () => {
    const missing = await http(t, '/admin/rooms/no-such-room', { headers: ADMIN });
    expect(missing.status).toBe(404);
    expect(missing.json).toEqual({ error: { code: 'NOT_FOUND', message: expect.any(String) } });
    expect((await http(t, '/admin/rooms/no-such-room/close', { method: 'POST', headers: ADMIN })).status).toBe(404);
    expect((await http(t, '/admin/whatever', { headers: ADMIN })).status).toBe(404);
  });

  it('answers a malformed room id in the path with 400, not 500', async () => {
    const bad = await http(t, '/admin/rooms/%E0%A4%A', { headers: ADMIN });
    expect(bad.status).toBe(400);
    expect(bad.json).toMatchObject({ error: { code: 'BAD_REQUEST' } });
  });

  it('POST /admin/rooms/:roomId/close tells everyone and closes their sockets with 4003', async () => {
    const roomId = 'closing-room';
    const a = await joinRaw(t, 'close-a', { roomId, role: 'moderator' });
    const b = await joinRaw(t, 'close-b', { roomId });
    const closed = await http(t, `/admin/rooms/${roomId}/close`, { method: 'POST', headers: ADMIN });
    expect(closed.status).toBe(200);
    expect(closed.json).toEqual({ closed: true });
    for (const c of [a, b]) {
      expect((await c.raw.closed).code).toBe(4003);
      expect(c.raw.events('session.kicked')).toEqual([
        { event: 'session.kicked', data: { reason: expect.any(String) } },
      ]);
    }
    expect((await http(t, `/admin/rooms/${roomId}`, { headers: ADMIN })).status).toBe(404);
    await eventually(() => t.node.rooms.summary(roomId) === undefined, 1000, 'room gone');

    // The room may start again, from seq 1.
    const again = await joinRaw(t, 'close-b', { roomId });
    expect(again.join.lastSeq).toBe(1);
  });

  it.each([
    ['POST', '/admin/rooms', 'GET'],
    ['DELETE', '/admin/rooms/admin-room', 'GET'],
    ['GET', '/admin/rooms/admin-room/close', 'POST'],
    ['GET', '/admin/drain', 'POST'],
  ])('answers %s %s with 405 and Allow: %s', async (method, path, allow) => {
    const response = await http(t, path, { method, headers: ADMIN });
    expect(response.status).toBe(405);
    expect(response.headers.get('allow')).toBe(allow);
    expect(response.json).toEqual({ error: { code: 'METHOD_NOT_ALLOWED', message: expect.any(String) } });
    expect(t.node.drainController.state).toBe('RUNNING');
  });
});

describe('admin API without a token', () => {
  let t: TestNode;

  beforeAll(async () => {
    t = await startTestNode({ NODE_ENV: 'production', SIGNALING_ADMIN_TOKEN: '' });
  });

  afterAll(async () => {
    await t?.close();
  });

  it('is switched off (403) when production has no SIGNALING_ADMIN_TOKEN', async () => {
    expect(t.node.config.adminToken).toBeUndefined();
    const response = await http(t, '/admin/rooms', { headers: { Authorization: 'Bearer anything-at-all-123' } });
    expect(response.status).toBe(403);
    expect(response.json).toMatchObject({ error: { code: 'FORBIDDEN' } });
  });
});
