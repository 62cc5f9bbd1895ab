/**
 * Webhooks of a node that runs alone, end to end: a real node, real clients, the reference
 * receiver as the backend (verifying every signature with the `standardwebhooks` library and
 * de-duplicating by `webhook-id`), going away and failing on purpose.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { webhookInbox, type WebhookInbox } from '../../backend-bridge/src/reference-receiver/webhooks.js';
import { ADMIN_TOKEN, eventually, startTestNode, type TestNode } from '../../test-support/harness.js';
import { TestBackend } from '../../test-support/backend.js';
import {
  GENEROUS_LIMITS,
  durable,
  http,
  joinRaw,
  parsePrometheus,
  sampleValue,
  type JoinedRaw,
} from '../../test-support/room-helpers.js';
import { expectRoomWebhooks, expectedWebhooks, webhookEnv, webhookSecret } from '../../test-support/webhooks.js';

const ROOMS = ['wh-room-1', 'wh-room-2', 'wh-room-3'];

describe('webhooks, node alone', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step();
  });

  async function setUp(
    env: Record<string, string> = {},
  ): Promise<{ t: TestNode; backend: TestBackend; inbox: WebhookInbox }> {
    const secret = webhookSecret();
    const backend = await TestBackend.start({ webhookSecret: secret });
    cleanup.push(() => backend.close());
    const t = await startTestNode({ ...GENEROUS_LIMITS, ...webhookEnv(backend.url, secret), ...env });
    cleanup.push(() => t.close());
    const inbox = webhookInbox(backend.receiver);
    if (!inbox) throw new Error('the test backend has no webhook inbox');
    return { t, backend, inbox };
  }

  /** Every durable event of the room, as a member that joined first saw it (its own join is seq 1). */
  function roomEvents(watcher: JoinedRaw): { event: string; seq: number }[] {
    const seen = durable(watcher.raw).map((m) => ({ event: m.event as string, seq: m.seq as number }));
    return seen.some((e) => e.seq === 1) ? seen : [{ event: 'participant.joined', seq: 1 }, ...seen];
  }

  it('delivers 500 events of 3 rooms that happened while the backend was away: each once, in order, signed', async () => {
    const { t, backend, inbox } = await setUp();
    await backend.goAway();
    const watchers = new Map<string, JoinedRaw>();
    for (const roomId of ROOMS) {
      watchers.set(roomId, await joinRaw(t, `watcher-${roomId}`, { roomId }));
      const presenter = await joinRaw(t, `presenter-${roomId}`, { roomId, role: 'presenter' });
      for (let i = 0; i < 5; i++) {
        const trader = await joinRaw(t, `trader-${roomId}-${i}`, { roomId });
        expect(await trader.raw.request('room.leave', {})).toMatchObject({ ok: true });
      }
      for (let i = 0; i < 160; i++) {
        const answer = await presenter.raw.request('alert.publish', { symbol: 'AAPL', action: 'buy', price: 100 + i });
        expect(answer).toMatchObject({ ok: true });
      }
    }
    const expected = new Map<string, ReturnType<typeof expectedWebhooks>>();
    for (const roomId of ROOMS) {
      const watcher = watchers.get(roomId) as JoinedRaw;
      await eventually(() => durable(watcher.raw, 'alert.published').length === 160, 10_000, `alerts in ${roomId}`);
      expected.set(roomId, expectedWebhooks(roomEvents(watcher)));
    }
    const total = [...expected.values()].reduce((sum, list) => sum + list.length, 0);
    expect(total).toBeGreaterThanOrEqual(500);
    expect(inbox.received).toHaveLength(0);

    await backend.comeBack();
    // Back, but rude at first: a reset connection, an answer past the attempt's timeout, a 500.
    backend.next({ kind: 'reset' }, { kind: 'slow', delayMs: 1500 }, { kind: 'status', status: 500 });
    await eventually(() => inbox.received.length >= total, 60_000, `${total} webhooks`);
    for (const roomId of ROOMS) expectRoomWebhooks(inbox, roomId, expected.get(roomId) ?? []);
    expect(inbox.received).toHaveLength(total);
    // Every request the receiver processed passed the library's verification; none was refused.
    expect(inbox.rejected).toBe(0);

    const { samples } = parsePrometheus((await http(t, '/metrics')).text);
    expect(sampleValue(samples, 'trading_room_webhook_deliveries_total', { outcome: 'delivered' })).toBe(total);
    expect(sampleValue(samples, 'trading_room_webhook_outbox_depth')).toBe(0);
    expect(sampleValue(samples, 'trading_room_webhook_attempts_total', { outcome: 'failed' })).toBeGreaterThan(0);
    for (const outcome of ['network', 'timeout', 'http_5xx']) {
      const attempts = sampleValue(samples, 'trading_room_backend_requests_total', { endpoint: 'webhooks', outcome });
      expect(attempts, outcome).toBeGreaterThan(0);
    }
  }, 120_000);

  it('dead-letters what the backend keeps refusing; the admin API lists and replays the dead letters', async () => {
    const { t, backend, inbox } = await setUp({ BACKEND_WEBHOOK_MAX_ATTEMPTS: '2' });
    backend.misbehave({ kind: 'status', status: 500 });
    const roomId = 'wh-dead';
    const watcher = await joinRaw(t, 'watcher-dead', { roomId });
    const presenter = await joinRaw(t, 'presenter-dead', { roomId, role: 'presenter' });
    for (let i = 0; i < 3; i++) await presenter.raw.request('alert.publish', { symbol: 'MSFT', action: 'sell' });
    await eventually(() => durable(watcher.raw, 'alert.published').length === 3);
    const expected = expectedWebhooks(roomEvents(watcher));
    const admin = { Authorization: `Bearer ${ADMIN_TOKEN}` };

    type Listed = { deadLetters: { deadLetterId: string; webhookId: string; type: string; attempts: number }[] };
    let listed: Listed = { deadLetters: [] };
    await eventually(
      async () => {
        listed = (await http(t, '/admin/webhooks/dead-letters', { headers: admin })).json as Listed;
        return listed.deadLetters.length === expected.length;
      },
      20_000,
      'every webhook dead-lettered',
    );
    expect(listed.deadLetters.every((d) => d.attempts === 2)).toBe(true);
    // Newest first.
    expect(listed.deadLetters.map((d) => d.type).reverse()).toEqual(expected.map((e) => e.type));
    expect((await http(t, '/admin/webhooks/dead-letters')).status).toBe(401);
    expect((await http(t, '/admin/webhooks/dead-letters?limit=0', { headers: admin })).status).toBe(400);
    const badReplay = await http(t, '/admin/webhooks/dead-letters/replay', {
      method: 'POST',
      headers: admin,
      body: '{"ids": 3}',
    });
    expect(badReplay.status).toBe(400);

    backend.misbehave({ kind: 'none' });
    const replay = await http(t, '/admin/webhooks/dead-letters/replay', { method: 'POST', headers: admin, body: '{}' });
    expect(replay.status).toBe(200);
    expect(replay.json).toMatchObject({ failed: [] });
    expect((replay.json as { replayed: string[] }).replayed).toHaveLength(expected.length);
    // Replayed oldest first, each with its original webhook-id.
    expectRoomWebhooks(inbox, roomId, expected);
    expect(new Set(inbox.received.map((w) => w.id))).toEqual(new Set(listed.deadLetters.map((d) => d.webhookId)));
    const after = (await http(t, '/admin/webhooks/dead-letters', { headers: admin })).json as Listed;
    expect(after.deadLetters).toEqual([]);
  }, 60_000);

  it('reports room.finished once the last participant left and the room closed', async () => {
    const { t, inbox } = await setUp();
    const roomId = 'wh-finish';
    const only = await joinRaw(t, 'alone-user', { roomId });
    expect(await only.raw.request('room.leave', {})).toMatchObject({ ok: true });
    await eventually(() => inbox.received.some((w) => w.type === 'room.finished'), 15_000, 'room.finished');
    const types = inbox.received.filter((w) => w.data.roomId === roomId).map((w) => w.type);
    expect(types).toEqual(['room.started', 'participant.joined', 'participant.left', 'room.finished']);
    const epochs = new Set(inbox.received.map((w) => w.data.epoch));
    expect(epochs.size).toBe(1);
  }, 30_000);
});
