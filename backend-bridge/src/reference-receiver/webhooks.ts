/**
 * The reference receiver's `POST /webhooks`: what a backend does with the nodes' webhooks.
 *
 * 1. Verify with the `standardwebhooks` library (`Webhook(secret).verify(body, headers)`) over the
 *    exact bytes received: a bad signature, a tampered body, or a `webhook-timestamp` more than
 *    five minutes off (a replayed old request) is refused with `400` and never processed.
 * 2. De-duplicate by `webhook-id`: delivery is at least once, so the same event may come again
 *    (a retry whose first answer was lost, a node that died before it recorded the delivery). A
 *    duplicate is acknowledged (`204`) and not processed twice.
 * 3. Process: here, print one line and keep the event ({@link WebhookInbox.received}).
 *
 * Within a room, webhooks arrive in `seq` order; `data.epoch` changes when the room's history
 * restarted (then `seq` counts from 1 again).
 */
import { Webhook, WebhookVerificationError } from 'standardwebhooks';
import type { ReceiverRequest, ReceiverResponse, ReferenceReceiver } from './server.js';

/** A webhook as the receiver processed it. */
export interface ReceivedWebhook {
  /** `webhook-id`. */
  readonly id: string;
  readonly type: string;
  /** The event's time (ISO 8601), from the body. */
  readonly timestamp: string;
  readonly data: {
    readonly roomId: string;
    readonly epoch?: string;
    readonly seq?: number;
    readonly [field: string]: unknown;
  };
  /** When it was processed (epoch ms). */
  readonly receivedAt: number;
}

export class WebhookInbox {
  /** Every webhook processed, once each, in the order they came. */
  readonly received: ReceivedWebhook[] = [];
  /** Requests refused (bad signature, tampered body, old timestamp, not a webhook). */
  rejected = 0;
  /** Requests for a `webhook-id` already processed. */
  duplicates = 0;
  readonly #verifier: Webhook;
  readonly #seen = new Set<string>();
  readonly #print: (line: string) => void;

  /** `secret`: `BACKEND_WEBHOOK_SECRET` of the nodes (`whsec_…`). */
  constructor(secret: string, print: (line: string) => void = () => {}) {
    this.#verifier = new Webhook(secret);
    this.#print = print;
  }

  /** The route handler of `POST /webhooks`. */
  readonly handle = (request: ReceiverRequest): ReceiverResponse => {
    const headers = {
      'webhook-id': header(request, 'webhook-id'),
      'webhook-timestamp': header(request, 'webhook-timestamp'),
      'webhook-signature': header(request, 'webhook-signature'),
    };
    let payload: unknown;
    try {
      payload = this.#verifier.verify(request.body, headers);
    } catch (error) {
      this.rejected++;
      const reason = error instanceof WebhookVerificationError ? error.message : 'the body is not JSON';
      this.#print(`webhook refused (${headers['webhook-id'] || 'no id'}): ${reason}`);
      return { status: 400, body: { error: reason } };
    }
    const webhook = readWebhook(headers['webhook-id'], payload);
    if (!webhook) {
      this.rejected++;
      this.#print(`webhook refused (${headers['webhook-id']}): not {type, timestamp, data: {roomId}}`);
      return { status: 400, body: { error: 'expected {type, timestamp, data: {roomId, …}}' } };
    }
    if (this.#seen.has(webhook.id)) {
      this.duplicates++;
      return { status: 204 };
    }
    this.#seen.add(webhook.id);
    this.received.push(webhook);
    const seq = webhook.data.seq === undefined ? '' : ` seq=${webhook.data.seq}`;
    this.#print(`webhook ${webhook.type} room=${webhook.data.roomId}${seq} id=${webhook.id}`);
    return { status: 204 };
  };
}

const inboxes = new WeakMap<ReferenceReceiver, WebhookInbox>();

/** Adds `POST /webhooks` to a receiver; returns the inbox that keeps what it received. */
export function mountWebhooks(receiver: ReferenceReceiver, secret: string): WebhookInbox {
  const inbox = new WebhookInbox(secret, receiver.print);
  receiver.route('POST', '/webhooks', inbox.handle);
  inboxes.set(receiver, inbox);
  return inbox;
}

/** The inbox {@link mountWebhooks} gave `receiver` (undefined when it has no `POST /webhooks`). */
export function webhookInbox(receiver: ReferenceReceiver): WebhookInbox | undefined {
  return inboxes.get(receiver);
}

function header(request: ReceiverRequest, name: string): string {
  const value = request.headers[name];
  return (Array.isArray(value) ? value[0] : value) ?? '';
}

function readWebhook(id: string, payload: unknown): ReceivedWebhook | undefined {
  if (typeof payload !== 'object' || payload === null) return undefined;
  const { type, timestamp, data } = payload as { type?: unknown; timestamp?: unknown; data?: unknown };
  if (typeof type !== 'string' || typeof timestamp !== 'string') return undefined;
  if (typeof data !== 'object' || data === null || typeof (data as { roomId?: unknown }).roomId !== 'string') {
    return undefined;
  }
  return { id, type, timestamp, data: data as ReceivedWebhook['data'], receivedAt: Date.now() };
}
