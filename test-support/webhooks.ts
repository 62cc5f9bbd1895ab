/**
 * Webhook tests' shared parts: a Standard Webhooks secret, node settings that retry fast and never
 * give up during a test's outage, and the comparison of what the reference receiver got for a room
 * with the room's events (every one exactly once, in `seq` order).
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import { WEBHOOK_TYPE_OF_EVENT } from '../backend-bridge/src/webhooks/webhook-message.js';
import type { ReceivedWebhook, WebhookInbox } from '../backend-bridge/src/reference-receiver/webhooks.js';

/** A fresh `BACKEND_WEBHOOK_SECRET`. */
export function webhookSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

/** Node variables for webhooks to `backendUrl`: quick retries, no dead letters in a test's outage. */
export function webhookEnv(backendUrl: string, secret: string): Record<string, string> {
  return {
    BACKEND_URL: backendUrl,
    BACKEND_WEBHOOK_SECRET: secret,
    BACKEND_WEBHOOK_TIMEOUT_MS: '1000',
    BACKEND_WEBHOOK_RETRY_BASE_MS: '50',
    BACKEND_WEBHOOK_RETRY_MAX_MS: '400',
    BACKEND_WEBHOOK_MAX_ATTEMPTS: '100000',
    BACKEND_ACCESS_TIMEOUT_MS: '300',
  };
}

/** A room event as a webhook should report it: its type and `seq` (none for the room's start). */
export interface ExpectedWebhook {
  readonly type: string;
  readonly seq?: number;
}

/**
 * What a room's webhooks must be, from its durable events (`{event, seq}` in `seq` order, from the
 * room's first): `room.started`, then each event webhooks report.
 */
export function expectedWebhooks(events: readonly { event: string; seq: number }[]): ExpectedWebhook[] {
  const expected: ExpectedWebhook[] = [{ type: 'room.started' }];
  for (const { event, seq } of [...events].sort((a, b) => a.seq - b.seq)) {
    const type = WEBHOOK_TYPE_OF_EVENT.get(event);
    if (type) expected.push({ type, seq });
  }
  return expected;
}

/** The webhooks the inbox processed for `roomId`, in arrival order (each `webhook-id` once). */
export function receivedFor(inbox: WebhookInbox, roomId: string): ReceivedWebhook[] {
  return inbox.received.filter((w) => w.data.roomId === roomId);
}

/** The room's webhooks arrived exactly as expected: each once, in order. */
export function expectRoomWebhooks(inbox: WebhookInbox, roomId: string, expected: readonly ExpectedWebhook[]): void {
  const got = receivedFor(inbox, roomId).map((w) =>
    w.data.seq === undefined ? { type: w.type } : { type: w.type, seq: w.data.seq },
  );
  expect(got, `webhooks of ${roomId}`).toEqual(expected);
}
