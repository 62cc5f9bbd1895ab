/**
 * The webhook backlog of each room in `GET /admin/rooms`: while the backend is away a room's
 * unacknowledged webhooks show there — how many, and the oldest (its `webhook-id`, its age, which
 * grows) — and once the backend is back and has them, the backlog is gone. A node alone reads its
 * in-memory outbox; a cluster of two node processes on a real Redis reads the room's outbox stream,
 * so either node shows the room's backlog whichever node delivers it. Webhooks off: `null`.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { webhookInbox, type WebhookInbox } from '../../backend-bridge/src/reference-receiver/webhooks.js';
import { ADMIN_TOKEN, eventually, startTestNode } from '../../test-support/harness.js';
import { TestBackend } from '../../test-support/backend.js';
import { TestCluster } from '../../test-support/cluster.js';
import { GENEROUS_LIMITS, durable, http, joinRaw } from '../../test-support/room-helpers.js';
import { expectRoomWebhooks, expectedWebhooks, webhookEnv, webhookSecret } from '../../test-support/webhooks.js';
import type { AdminRoom, WebhookBacklogEntry } from '../src/http/admin-service.js';

const ADMIN = { Authorization: `Bearer ${ADMIN_TOKEN}` };

/** `GET /admin/rooms` answered by one node. */
type RoomsOf = () => Promise<AdminRoom[]>;

async function backlogOf(rooms: RoomsOf, roomId: string): Promise<WebhookBacklogEntry | null | undefined> {
  return (await rooms()).find((r) => r.roomId === roomId)?.webhookBacklog;
}

/**
 * The room's backlog as `rooms` shows it, once it holds `pending` webhooks; then again once the
 * oldest has visibly aged (the same oldest webhook, its age grown by more than a second).
 */
async function growingBacklog(
  rooms: RoomsOf,
  roomId: string,
  pending: number,
): Promise<{ first: WebhookBacklogEntry; later: WebhookBacklogEntry }> {
  let first: WebhookBacklogEntry | null | undefined;
  await eventually(
    async () => (first = await backlogOf(rooms, roomId))?.pending === pending,
    20_000,
    `${pending} webhooks of ${roomId} in the backlog`,
  );
  if (!first) throw new Error('no backlog');
  const since = first;
  let later: WebhookBacklogEntry | null | undefined;
  await eventually(
    async () => ((later = await backlogOf(rooms, roomId))?.oldestAgeMs ?? 0) > since.oldestAgeMs + 1000,
    20_000,
    `the backlog of ${roomId} ageing`,
  );
  if (!later) throw new Error('no backlog');
  return { first: since, later };
}

/** The checks both outboxes pass while the backend is away: the oldest is the room's start. */
function expectWaiting(
  backlog: { first: WebhookBacklogEntry; later: WebhookBacklogEntry },
  roomStartedAt: number,
): void {
  const { first, later } = backlog;
  expect(first).toMatchObject({ oldestEvent: 'room.started', oldestWebhookId: expect.stringMatching(/^msg_/) });
  expect(first.oldestPendingAt).toBeGreaterThanOrEqual(roomStartedAt - 1000);
  expect(first.oldestAgeMs).toBeGreaterThanOrEqual(0);
  // The same webhook waits, only longer.
  expect(later.pending).toBe(first.pending);
  expect(later.oldestWebhookId).toBe(first.oldestWebhookId);
  expect(later.oldestPendingAt).toBe(first.oldestPendingAt);
}

describe('webhook backlog in /admin/rooms, node alone', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step();
  });

  it('shows a room’s unacknowledged webhooks while the backend is away, ageing, and none once delivered', async () => {
    const secret = webhookSecret();
    const backend = await TestBackend.start({ webhookSecret: secret });
    cleanup.push(() => backend.close());
    const inbox = webhookInbox(backend.receiver) as WebhookInbox;
    const t = await startTestNode({ ...GENEROUS_LIMITS, ...webhookEnv(backend.url, secret) });
    cleanup.push(() => t.close());
    const rooms: RoomsOf = async () => {
      const answer = await http(t, '/admin/rooms', { headers: ADMIN });
      expect(answer.status, answer.text).toBe(200);
      return (answer.json as { rooms: AdminRoom[] }).rooms;
    };

    await backend.goAway();
    const roomId = 'backlog-alone';
    const startedAt = Date.now();
    const watcher = await joinRaw(t, 'backlog-watcher', { roomId });
    const presenter = await joinRaw(t, 'backlog-presenter', { roomId, role: 'presenter' });
    for (let i = 0; i < 3; i++) {
      expect(await presenter.raw.request('alert.publish', { symbol: 'EURUSD', action: 'buy' })).toMatchObject({
        ok: true,
      });
    }
    await eventually(() => durable(watcher.raw, 'alert.published').length === 3, 10_000, 'the alerts');
    // The watcher's own join (seq 1) may come only as its join answer.
    const seen = durable(watcher.raw).map((m) => ({ event: m.event as string, seq: m.seq as number }));
    const events = seen.some((e) => e.seq === 1) ? seen : [{ event: 'participant.joined', seq: 1 }, ...seen];
    const expected = expectedWebhooks(events);

    const backlog = await growingBacklog(rooms, roomId, expected.length);
    expectWaiting(backlog, startedAt);
    expect(inbox.received).toHaveLength(0);

    await backend.comeBack();
    await eventually(async () => (await backlogOf(rooms, roomId))?.pending === 0, 30_000, 'the backlog delivered');
    expect(await backlogOf(rooms, roomId)).toEqual({ pending: 0, oldestAgeMs: 0 });
    expectRoomWebhooks(inbox, roomId, expected);
    // What the backlog named as the oldest is the first webhook the backend got.
    expect(inbox.received[0]?.id).toBe(backlog.first.oldestWebhookId);
  }, 60_000);

  it('shows null when webhooks are off', async () => {
    const t = await startTestNode({ ...GENEROUS_LIMITS });
    cleanup.push(() => t.close());
    await joinRaw(t, 'no-webhooks-user', { roomId: 'no-webhooks' });
    const answer = await http(t, '/admin/rooms', { headers: ADMIN });
    const room = (answer.json as { rooms: AdminRoom[] }).rooms.find((r) => r.roomId === 'no-webhooks');
    expect(room).toMatchObject({ participants: 1, webhookBacklog: null });
  });
});

describe('webhook backlog in /admin/rooms, cluster on Redis', () => {
  let backend: TestBackend;
  let inbox: WebhookInbox;
  let cluster: TestCluster;

  beforeAll(async () => {
    const secret = webhookSecret();
    backend = await TestBackend.start({ webhookSecret: secret });
    inbox = webhookInbox(backend.receiver) as WebhookInbox;
    cluster = await TestCluster.start({
      nodes: 2,
      env: { ...GENEROUS_LIMITS, ...webhookEnv(backend.url, secret), BACKEND_WEBHOOK_PARTITIONS: '4' },
    });
  }, 90_000);
  afterAll(async () => {
    await cluster?.close();
    await backend?.close();
  });

  function roomsOn(node: number): RoomsOf {
    return async () => {
      const response = await cluster.node(node).http('/admin/rooms', { admin: true });
      const text = await response.text();
      expect(response.status, `node ${node + 1}: ${text}`).toBe(200);
      return (JSON.parse(text) as { rooms: AdminRoom[] }).rooms;
    };
  }

  it('shows the room’s backlog from its outbox stream on either node, ageing, and none once delivered', async () => {
    await backend.goAway();
    const roomId = 'backlog-cluster';
    const startedAt = Date.now();
    const watcher = await cluster.raw(0, await cluster.token('cb-watcher', { roomId }));
    expect(await watcher.request('room.join', {})).toMatchObject({ ok: true });
    const presenter = await cluster.raw(1, await cluster.token('cb-presenter', { roomId, role: 'presenter' }));
    expect(await presenter.request('room.join', {})).toMatchObject({ ok: true });
    for (let i = 0; i < 3; i++) {
      expect(await presenter.request('alert.publish', { symbol: 'GBPUSD', action: 'sell' })).toMatchObject({
        ok: true,
      });
    }
    await eventually(() => durable(watcher, 'alert.published').length === 3, 10_000, 'the alerts');
    const expected = expectedWebhooks(await cluster.roomLog(roomId));

    // Both nodes see the room's members on both nodes and the same backlog, whoever delivers it.
    const onFirst = await growingBacklog(roomsOn(0), roomId, expected.length);
    expectWaiting(onFirst, startedAt);
    const onSecond = await growingBacklog(roomsOn(1), roomId, expected.length);
    expectWaiting(onSecond, startedAt);
    expect(onSecond.first.oldestWebhookId).toBe(onFirst.first.oldestWebhookId);
    expect((await roomsOn(1)()).find((r) => r.roomId === roomId)?.participantsByNode).toEqual({
      'node-1': 1,
      'node-2': 1,
    });
    expect(inbox.received).toHaveLength(0);

    await backend.comeBack();
    for (const node of [0, 1]) {
      await eventually(
        async () => (await backlogOf(roomsOn(node), roomId))?.pending === 0,
        30_000,
        `the backlog delivered, seen from node ${node + 1}`,
      );
      expect(await backlogOf(roomsOn(node), roomId)).toEqual({ pending: 0, oldestAgeMs: 0 });
    }
    expectRoomWebhooks(inbox, roomId, expected);
    expect(inbox.received[0]?.id).toBe(onFirst.first.oldestWebhookId);
  }, 120_000);
});
