/**
 * The in-memory outbox against the real reference receiver: what waits while the backend is away
 * is delivered in order once it is back; a full queue drops new webhooks and counts them; attempts
 * exhausted become dead letters, which a replay delivers.
 */
import { randomBytes } from 'node:crypto';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually } from '../../test-support/async.js';
import { ReferenceReceiver } from '../src/reference-receiver/server.js';
import { mountWebhooks } from '../src/reference-receiver/webhooks.js';
import { MemoryOutbox } from '../src/webhooks/memory-outbox.js';
import type { OutboxEvent } from '../src/webhooks/webhook-message.js';
import { WebhookMetrics } from '../src/webhooks/webhook-metrics.js';
import { WebhookSender } from '../src/webhooks/webhook-sender.js';

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;

function alertEvent(roomId: string, seq: number): OutboxEvent {
  const frame = JSON.stringify({
    event: 'alert.published',
    data: { alertId: `a${seq}`, symbol: 'X', action: 'buy' },
    seq,
  });
  return { roomId, event: 'alert.published', epoch: 'e', seq, timestampMs: Date.now(), frame };
}

async function metric(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const found = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  const value = found?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l));
  return Number(value?.value ?? 0);
}

describe('MemoryOutbox', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step();
  });

  async function setUp(maxQueued: number, maxAttempts = 1000) {
    const receiver = new ReferenceReceiver();
    const inbox = mountWebhooks(receiver, SECRET);
    await receiver.listen(0, '127.0.0.1');
    const registry = new Registry();
    const metrics: WebhookMetrics = new WebhookMetrics(registry, () => outbox.stats());
    const outbox = new MemoryOutbox({
      sender: new WebhookSender({ backendUrl: receiver.url, secret: SECRET, timeoutMs: 1000 }),
      retry: { maxAttempts, baseDelayMs: 20, maxDelayMs: 200 },
      maxQueued,
      metrics,
    });
    outbox.start();
    const started = outbox;
    cleanup.push(
      () => receiver.stop(),
      () => started.close(Date.now()),
    );
    return { receiver, inbox, registry, outbox: started };
  }

  it('holds webhooks while the backend is away, drops and counts what overflows, then delivers in order', async () => {
    const { receiver, inbox, registry, outbox } = await setUp(5);
    await receiver.stop();
    for (let seq = 1; seq <= 20; seq++) outbox.enqueue(alertEvent('room-a', seq));

    expect(await metric(registry, 'trading_room_webhook_dropped_total', { reason: 'queue_full' })).toBe(15);
    expect(await metric(registry, 'trading_room_webhook_outbox_depth')).toBe(5);
    await eventually(async () => (await metric(registry, 'trading_room_webhook_outbox_oldest_pending_seconds')) > 0);

    await receiver.listen();
    await eventually(() => inbox.received.length === 5, 10_000, 'the five queued webhooks');
    expect(inbox.received.map((w) => w.data.seq)).toEqual([1, 2, 3, 4, 5]);
    await eventually(async () => (await metric(registry, 'trading_room_webhook_outbox_depth')) === 0);
    expect(await metric(registry, 'trading_room_webhook_deliveries_total', { outcome: 'delivered' })).toBe(5);
    expect(inbox.rejected).toBe(0);
  });

  it('delivers what waits when it closes (a drain) until the deadline; later webhooks count as shutdown drops', async () => {
    const { receiver, inbox, registry, outbox } = await setUp(100);
    await receiver.stop();
    for (let seq = 1; seq <= 3; seq++) outbox.enqueue(alertEvent('room-c', seq));
    const closed = outbox.close(Date.now() + 20_000);
    await receiver.listen();
    await closed;
    expect(inbox.received.map((w) => w.data.seq)).toEqual([1, 2, 3]);
    outbox.enqueue(alertEvent('room-c', 4));
    expect(await metric(registry, 'trading_room_webhook_dropped_total', { reason: 'shutdown' })).toBe(1);
  });

  it('dead-letters a webhook after its attempts, goes on with the room, and replays the dead letter', async () => {
    const { receiver, inbox, registry, outbox } = await setUp(100, 3);
    let refused = 0;
    receiver.intercept((request, response) => {
      if (!(request.headers['webhook-id'] && refused < 3)) return false;
      refused++;
      response.writeHead(503).end();
      return true;
    });
    outbox.enqueue(alertEvent('room-d', 1));
    outbox.enqueue(alertEvent('room-d', 2));
    await eventually(() => inbox.received.length === 1, 10_000, 'the second webhook');
    expect(inbox.received[0]?.data.seq).toBe(2);

    const [letter, ...others] = await outbox.deadLetters(10);
    expect(others).toHaveLength(0);
    expect(letter).toMatchObject({ roomId: 'room-d', type: 'alert.published', attempts: 3 });
    expect(await metric(registry, 'trading_room_webhook_dead_letters')).toBe(1);
    expect(await metric(registry, 'trading_room_webhook_deliveries_total', { outcome: 'dead_lettered' })).toBe(1);

    const replay = await outbox.replayDeadLetters([letter?.deadLetterId ?? '']);
    expect(replay).toEqual({ replayed: [letter?.deadLetterId], failed: [] });
    expect(inbox.received.map((w) => w.data.seq)).toEqual([2, 1]);
    expect(inbox.received[1]?.id).toBe(letter?.webhookId);
    expect(await outbox.deadLetters(10)).toEqual([]);
  });
});
