/**
 * The backend bridge: everything that talks to the trading platform's backend. It never
 * imports `signaling/`; the node wires it in through small interfaces.
 */
export {
  backendMetrics,
  BackendMetrics,
  type BackendEndpoint,
  type CircuitState,
  type RequestOutcome,
} from './backend-metrics.js';
export {
  BackendAccessClient,
  BackendRequestError,
  type AccessClientOptions,
  type AccessDecision,
  type CircuitOptions,
  type FailureMode,
} from './access/access-client.js';
export { accessAnswerSchema, BACKEND_ROLES, type AccessAnswer, type BackendRole } from './access/access-answer.js';
export {
  ROOM_FINISHED,
  ROOM_STARTED,
  WEBHOOK_TYPES,
  WEBHOOK_TYPE_OF_EVENT,
  toWebhook,
  webhookId,
  type OutboxEvent,
  type WebhookMessage,
  type WebhookType,
} from './webhooks/webhook-message.js';
export { WebhookSender, type AttemptResult, type WebhookSenderOptions } from './webhooks/webhook-sender.js';
export {
  deliverWithRetry,
  type DeadLetter,
  type OutboxStats,
  type ReplayResult,
  type RetryPolicy,
  type WebhookOutbox,
} from './webhooks/webhook-outbox.js';
export { MemoryOutbox, type MemoryOutboxOptions } from './webhooks/memory-outbox.js';
export { OUTBOX_GROUP, RedisOutbox, type RedisOutboxOptions } from './webhooks/redis-outbox.js';
export { WebhookMetrics, type DropReason } from './webhooks/webhook-metrics.js';
