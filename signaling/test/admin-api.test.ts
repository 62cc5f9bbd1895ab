/**
 * The admin API on one node: every route behind the admin token, pages of rooms and nodes with
 * their bounds, a room's participants and media health measured by a real mediasoup worker
 * (a presenter publishing opus over plain RTP, a moderator's tap consuming it), the node's
 * workers and drain.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, eventually, nodePerTest, startTestNode, type TestNode } from '../../test-support/harness.js';
import { GENEROUS_LIMITS, http, joinRaw, joinRecording } from '../../test-support/room-helpers.js';
import { consumeToSink, publishOpus, startMediaNode } from '../../test-support/media-flow.js';
import { flowsTo, RtpSender, type RtpSink } from '../../test-support/rtp.js';
import type { AdminNode, AdminRoom, AdminRoomDetail } from '../src/http/admin-service.js';
import { ADMIN_ROUTES } from '../src/http/admin-routes.js';

const ADMIN = { Authorization: `Bearer ${ADMIN_TOKEN}` };

interface RoomsPage {
  nodeId: string;
  rooms: AdminRoom[];
  nextCursor: string | null;
  unreachableNodes: string[];
}

async function roomsPage(t: TestNode, query: string): Promise<RoomsPage> {
  const answer = await http(t, `/admin/rooms${query}`, { headers: ADMIN });
  expect(answer.status, answer.text).toBe(200);
  return answer.json as RoomsPage;
}

describe('admin API routes', () => {
  let t: TestNode;

  beforeAll(async () => {
    t = await startTestNode({ ...GENEROUS_LIMITS });
    await joinRaw(t, 'route-user', { roomId: 'route-room' });
  });

  afterAll(async () => {
    await t?.close();
  });

  /** Every documented route, made concrete, with its answer to the right token (drains are tested below). */
  const concrete: Record<string, [path: string, status: number | undefined]> = {
    'GET /admin/rooms': ['/admin/rooms?limit=1', 200],
    'GET /admin/rooms/:roomId': ['/admin/rooms/route-room', 200],
    'POST /admin/rooms/:roomId/close': ['/admin/rooms/no-such-room/close', 404],
    'GET /admin/nodes': ['/admin/nodes?limit=1', 200],
    'POST /admin/nodes/:nodeId/drain': ['/admin/nodes/no-such-node/drain', 404],
    'POST /admin/drain': ['/admin/drain', undefined],
    // Webhooks are off on this node (their answers with webhooks on: webhooks.test.ts).
    'GET /admin/webhooks/dead-letters': ['/admin/webhooks/dead-letters?limit=10', 404],
    'POST /admin/webhooks/dead-letters/replay': ['/admin/webhooks/dead-letters/replay', 404],
  };
  const routes = ADMIN_ROUTES.map((r) => {
    const route = concrete[`${r.method} ${r.path}`];
    if (!route) throw new Error(`no test for the documented route ${r.method} ${r.path}`);
    return [r.method, ...route] as const;
  });

  it.each(routes)('%s %s wants the admin token (401 without it, 401 when wrong)', async (method, path, status) => {
    const none = await http(t, path, { method });
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer');
    const wrong = await http(t, path, { method, headers: { Authorization: 'Bearer not-the-admin-token-000' } });
    expect(wrong.status).toBe(401);
    expect(wrong.json).toEqual({ error: { code: 'UNAUTHORIZED', message: expect.any(String) } });
    if (status === undefined) return;
    const right = await http(t, path, { method, headers: ADMIN });
    expect(right.status, right.text).toBe(status);
  });

  it('lists the node itself with its state, load and dependencies', async () => {
    const answer = await http(t, '/admin/nodes', { headers: ADMIN });
    const { nodes, nextCursor } = answer.json as { nodes: AdminNode[]; nextCursor: string | null };
    expect(nextCursor).toBeNull();
    expect(nodes).toHaveLength(1);
    expect(nodes[0]).toMatchObject({
      nodeId: t.node.config.nodeId,
      state: 'running',
      alive: true,
      connections: 1,
      rooms: 1,
      drainOverdue: false,
      detail: {
        drainState: 'RUNNING',
        connections: 1,
        rooms: 1,
        participants: 1,
        redis: { state: 'ok' },
        media: { state: 'disabled', workers: [], workerRestarts: 0 },
        openFds: expect.any(Number),
        maxFds: expect.any(Number),
      },
    });
  });

  it('answers a wrong method with 405 and the allowed one', async () => {
    const answer = await http(t, '/admin/nodes/x/drain', { headers: ADMIN });
    expect(answer.status).toBe(405);
    expect(answer.headers.get('allow')).toBe('POST');
  });
});

describe('admin API pages', () => {
  let t: TestNode;
  const roomIds = ['page-a', 'page-b', 'page-c', 'page-d', 'page-e', 'page-f', 'page-g'];

  beforeAll(async () => {
    t = await startTestNode({ ...GENEROUS_LIMITS });
    // Joined in an order unlike the id order: pages come in id order whatever the join order.
    for (const roomId of [...roomIds].reverse()) await joinRaw(t, `user-${roomId}`, { roomId });
  });

  afterAll(async () => {
    await t?.close();
  });

  it('pages through every room once, in id order, limit at a time', async () => {
    const seen: string[] = [];
    let query = '?limit=3';
    const sizes: number[] = [];
    for (let pages = 0; pages < 10; pages++) {
      const page = await roomsPage(t, query);
      sizes.push(page.rooms.length);
      seen.push(...page.rooms.map((r) => r.roomId));
      if (page.nextCursor === null) break;
      query = `?limit=3&cursor=${encodeURIComponent(page.nextCursor)}`;
    }
    expect(seen).toEqual(roomIds);
    expect(sizes).toEqual([3, 3, 1]);
  });

  it('takes 50 rooms when no limit is given and up to 100 when asked', async () => {
    expect((await roomsPage(t, '')).rooms).toHaveLength(roomIds.length);
    expect((await roomsPage(t, '?limit=100')).rooms).toHaveLength(roomIds.length);
  });

  it.each(['0', '101', '-1', '1.5', 'ten', ''])('refuses limit=%j with 400', async (limit) => {
    const answer = await http(t, `/admin/rooms?limit=${limit}`, { headers: ADMIN });
    expect(answer.status).toBe(400);
    expect(answer.json).toEqual({ error: { code: 'BAD_REQUEST', message: expect.stringMatching(/limit/) } });
    expect((await http(t, `/admin/nodes?limit=${limit}`, { headers: ADMIN })).status).toBe(400);
  });

  it.each(['not a cursor', 'cGFnZS1h', '%00'])('refuses a cursor it did not give out (%j) with 400', async (cursor) => {
    const answer = await http(t, `/admin/rooms?cursor=${encodeURIComponent(cursor)}`, { headers: ADMIN });
    expect(answer.status).toBe(400);
    expect(answer.json).toEqual({ error: { code: 'BAD_REQUEST', message: expect.stringMatching(/cursor/) } });
  });
});

describe('admin API room detail with media', () => {
  const ROOM = 'admin-media-room';
  let t: TestNode;
  let sender: RtpSender;
  const sinks: RtpSink[] = [];

  beforeAll(async () => {
    t = await startMediaNode();
    sender = new RtpSender(0x51a7);
  });

  afterAll(async () => {
    sender?.close();
    for (const sink of sinks) sink.close();
    await t?.close();
  });

  it('shows participants with node, role and age, producers and consumers with bitrate and loss', async () => {
    const presenter = await joinRecording(t, 'media-presenter', { roomId: ROOM, role: 'presenter' });
    const moderator = await joinRecording(t, 'media-moderator', { roomId: ROOM, role: 'moderator' });
    await joinRecording(t, 'media-trader', { roomId: ROOM });
    const { producerId } = await publishOpus(presenter, sender);
    const { consumerId, sink } = await consumeToSink(moderator, producerId, sinks);
    await flowsTo([sink], 20, 'RTP at the tap', 10_000);

    let detail: AdminRoomDetail | undefined;
    await eventually(
      async () => {
        const answer = await http(t, `/admin/rooms/${ROOM}`, { headers: ADMIN });
        detail = answer.json as AdminRoomDetail;
        return (
          answer.status === 200 &&
          (detail.media.producers[0]?.bitrate ?? 0) > 0 &&
          (detail.media.consumers[0]?.bitrate ?? 0) > 0
        );
      },
      15_000,
      'measured bitrate of the producer and the consumer',
    );
    if (!detail) throw new Error('no room detail');
    const nodeId = t.node.config.nodeId;
    expect(detail.participantsByNode).toEqual({ [nodeId]: 3 });
    expect(detail.participantDetails.map((p) => `${p.userId}:${p.role}:${p.nodeId}:${p.connected}`).sort()).toEqual([
      `media-moderator:moderator:${nodeId}:true`,
      `media-presenter:presenter:${nodeId}:true`,
      `media-trader:trader:${nodeId}:true`,
    ]);
    for (const p of detail.participantDetails) expect(p.connectionAgeMs).toBeGreaterThanOrEqual(0);
    expect(detail.media.producers).toEqual([
      expect.objectContaining({
        producerId,
        participantId: presenter.join.participantId,
        nodeId,
        kind: 'audio',
        source: 'microphone',
        paused: false,
        packetsLost: expect.any(Number),
        fractionLost: expect.any(Number),
        score: expect.any(Number),
      }),
    ]);
    expect(detail.media.consumers).toEqual([
      expect.objectContaining({
        consumerId,
        producerId,
        participantId: moderator.join.participantId,
        nodeId,
        fractionLost: expect.any(Number),
      }),
    ]);

    const { rooms } = await roomsPage(t, '');
    expect(rooms.find((r) => r.roomId === ROOM)).toMatchObject({
      producers: 1,
      publishers: [presenter.join.participantId],
      publishBitrate: expect.any(Number),
    });
    expect(rooms.find((r) => r.roomId === ROOM)?.publishBitrate ?? 0).toBeGreaterThan(0);

    const nodes = (await http(t, '/admin/nodes', { headers: ADMIN })).json as { nodes: AdminNode[] };
    expect(nodes.nodes[0]?.detail?.media).toMatchObject({ state: 'ok', producers: 1, consumers: 1 });
    expect(nodes.nodes[0]?.detail?.media.workers).toHaveLength(2);
  });
});

describe('admin API drain of this node', () => {
  const startNode = nodePerTest({ ...GENEROUS_LIMITS, DRAIN_TIMEOUT_MS: '60000' });

  it('POST /admin/nodes/:ownId/drain drains the node it is sent to', async () => {
    const t = await startNode();
    await joinRaw(t, 'drain-user', { roomId: 'drain-room' });
    const answer = await http(t, `/admin/nodes/${t.node.config.nodeId}/drain`, { method: 'POST', headers: ADMIN });
    expect(answer.status).toBe(202);
    expect(answer.json).toEqual({ nodeId: t.node.config.nodeId, state: 'DRAINING', deadline: expect.any(Number) });
    expect(t.node.drainController.state).toBe('DRAINING');
    const nodes = (await http(t, '/admin/nodes', { headers: ADMIN })).json as { nodes: AdminNode[] };
    expect(nodes.nodes[0]).toMatchObject({
      state: 'draining',
      drainOverdue: false,
      detail: { drainState: 'DRAINING' },
    });
  });
});
