/**
 * The webhook outbox's Prometheus metrics, on the node's registry (its default labels, such as
 * `node`, apply). The HTTP attempts themselves are in the bridge's request metrics
 * (`trading_room_backend_requests_total{endpoint="webhooks"}`); these say how the outbox fares.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { OutboxStats } from './webhook-outbox.js';

/** Why a webhook was given up without a dead letter. */
export type DropReason = 'queue_full' | 'shutdown' | 'unreadable' | 'redis_unavailable';

export class WebhookMetrics {
  /** `trading_room_webhook_attempts_total{outcome}`: attempts, `delivered` or `failed`. */
  readonly attempts: Counter<'outcome'>;
  /** `trading_room_webhook_deliveries_total{outcome}`: webhooks done, `delivered` or `dead_lettered`. */
  readonly deliveries: Counter<'outcome'>;
  /** `trading_room_webhook_dropped_total{reason}`: webhooks lost without a dead letter. */
  readonly dropped: Counter<'reason'>;
  /** `trading_room_webhook_replays_total{outcome}`: dead letters replayed, `delivered` or `failed`. */
  readonly replays: Counter<'outcome'>;

  constructor(registry: Registry, stats: () => OutboxStats) {
    const registers = [registry];
    this.attempts = new Counter({
      name: 'trading_room_webhook_attempts_total',
      help: 'Webhook delivery attempts by outcome (delivered, failed)',
      labelNames: ['outcome'],
      registers,
    });
    this.deliveries = new Counter({
      name: 'trading_room_webhook_deliveries_total',
      help: 'Webhooks done by outcome: delivered (acknowledged with a 2xx) or dead_lettered (attempts exhausted)',
      labelNames: ['outcome'],
      registers,
    });
    this.dropped = new Counter({
      name: 'trading_room_webhook_dropped_total',
      help: 'Webhooks given up without a dead letter: queue_full (in-memory queue full), shutdown (undelivered at the end of a drain), unreadable, redis_unavailable (not enqueued)',
      labelNames: ['reason'],
      registers,
    });
    this.replays = new Counter({
      name: 'trading_room_webhook_replays_total',
      help: 'Dead letters replayed through the admin API, by outcome (delivered, failed)',
      labelNames: ['outcome'],
      registers,
    });
    new Gauge({
      name: 'trading_room_webhook_outbox_depth',
      help: 'Webhooks waiting in the outbox (in a cluster: in the partitions this node holds)',
      registers,
      collect() {
        this.set(stats().depth);
      },
    });
    new Gauge({
      name: 'trading_room_webhook_outbox_oldest_pending_seconds',
      help: 'Age of the oldest webhook waiting in the outbox (0 when none wait)',
      registers,
      collect() {
        this.set(stats().oldestPendingMs / 1000);
      },
    });
    new Gauge({
      name: 'trading_room_webhook_dead_letters',
      help: 'Dead letters kept for an operator to list and replay',
      registers,
      collect() {
        this.set(stats().deadLetters);
      },
    });
  }
}
