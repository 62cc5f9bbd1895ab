/**
 * The reference receiver's `POST /webhooks` over real HTTP: it accepts what the bridge's sender
 * signs (with the `standardwebhooks` library), de-duplicates by `webhook-id`, and refuses a
 * tampered body, a replayed old timestamp, a wrong secret and missing headers.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Webhook } from 'standardwebhooks';
import { ReferenceReceiver } from '../src/reference-receiver/server.js';
import { mountWebhooks, type WebhookInbox } from '../src/reference-receiver/webhooks.js';
import { toWebhook, type WebhookMessage } from '../src/webhooks/webhook-message.js';
import { WebhookSender } from '../src/webhooks/webhook-sender.js';

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;

describe('reference receiver: POST /webhooks', () => {
  const receiver = new ReferenceReceiver();
  let inbox: WebhookInbox;
  let sender: WebhookSender;

  beforeAll(async () => {
    inbox = mountWebhooks(receiver, SECRET);
    await receiver.listen(0, '127.0.0.1');
    sender = new WebhookSender({ backendUrl: receiver.url, secret: SECRET, timeoutMs: 2000 });
  });
  afterAll(() => receiver.stop());

  function alert(seq: number): WebhookMessage {
    const frame = JSON.stringify({
      event: 'alert.published',
      data: { alertId: `a${seq}`, symbol: 'AAPL', action: 'buy', ts: 1 },
      seq,
    });
    const message = toWebhook({ roomId: 'room-r', event: 'alert.published', epoch: 'e1', seq, timestampMs: 1, frame });
    if (!message) throw new Error('no webhook');
    return message;
  }

  function post(body: string, headers: Record<string, string>): Promise<Response> {
    return fetch(`${receiver.url}/webhooks`, { method: 'POST', body, headers });
  }

  it('accepts a signed webhook once and acknowledges a duplicate without processing it again', async () => {
    const message = alert(1);
    expect((await sender.send(message)).status).toBe(204);
    expect((await sender.send(message)).status).toBe(204);
    const mine = inbox.received.filter((w) => w.id === message.id);
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({
      type: 'alert.published',
      data: { roomId: 'room-r', epoch: 'e1', seq: 1, alertId: 'a1', symbol: 'AAPL', action: 'buy' },
    });
    expect(inbox.duplicates).toBeGreaterThanOrEqual(1);
  });

  it('refuses a tampered body, an old timestamp, another secret and missing headers', async () => {
    const rejectedBefore = inbox.rejected;
    const message = alert(2);
    const headers = sender.headers(message);

    const tampered = message.body.replace('"buy"', '"sell"');
    expect(tampered).not.toBe(message.body);
    expect((await post(tampered, headers)).status).toBe(400);

    // Correctly signed, but ten minutes ago: a replay of a captured request.
    const old = sender.headers(message, new Date(Date.now() - 10 * 60_000));
    expect(new Webhook(SECRET).sign(message.id, new Date(Number(old['webhook-timestamp']) * 1000), message.body)).toBe(
      old['webhook-signature'],
    );
    expect((await post(message.body, old)).status).toBe(400);

    const otherSecret = new WebhookSender({
      backendUrl: receiver.url,
      secret: `whsec_${randomBytes(32).toString('base64')}`,
      timeoutMs: 2000,
    });
    expect((await post(message.body, otherSecret.headers(message))).status).toBe(400);
    expect((await post(message.body, { 'content-type': 'application/json' })).status).toBe(400);

    expect(inbox.rejected - rejectedBefore).toBe(4);
    expect(inbox.received.some((w) => w.id === message.id)).toBe(false);
    // The untampered original still goes through.
    expect((await post(message.body, headers)).status).toBe(204);
    expect(inbox.received.some((w) => w.id === message.id)).toBe(true);
  });
});
