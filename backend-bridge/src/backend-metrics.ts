/**
 * The bridge's Prometheus metrics, registered on the node's registry. One set per registry,
 * whichever part of the bridge asks first (the access check and the webhooks share the request
 * metrics). Labels are bounded: the endpoint is `access` or `webhooks`, the outcome one of
 * {@link RequestOutcome}.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** The backend's endpoints the bridge calls. */
export type BackendEndpoint = 'access' | 'webhooks';

/**
 * How one HTTP request to the backend ended: `ok` (a 2xx), `http_4xx`, `http_5xx`, `timeout`,
 * `network` (refused, reset, DNS), or `invalid` (a 2xx whose body is not what the contract says).
 */
export type RequestOutcome = 'ok' | 'http_4xx' | 'http_5xx' | 'timeout' | 'network' | 'invalid';

/** A circuit breaker's state, as `opossum` names them. */
export type CircuitState = 'closed' | 'open' | 'halfOpen';

const CIRCUIT_STATES: readonly CircuitState[] = ['closed', 'open', 'halfOpen'];

export class BackendMetrics {
  /** `trading_room_backend_requests_total{endpoint, outcome}`: every HTTP attempt, retries included. */
  readonly requests: Counter<'endpoint' | 'outcome'>;
  /** `trading_room_backend_request_seconds{endpoint}`: latency of each attempt. */
  readonly requestSeconds: Histogram<'endpoint'>;
  /** `trading_room_backend_circuit_state{endpoint, state}`: 1 for the breaker's current state. */
  readonly circuitState: Gauge<'endpoint' | 'state'>;
  /** `trading_room_backend_access_checks_total{result}`: how joins were decided. */
  readonly accessChecks: Counter<'result'>;
  /** `trading_room_backend_access_cache_hits_total`: checks answered from the cache. */
  readonly accessCacheHits: Counter;
  /** `trading_room_backend_access_fallbacks_total{mode, reason}`: checks the backend could not answer. */
  readonly accessFallbacks: Counter<'mode' | 'reason'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.requests = new Counter({
      name: 'trading_room_backend_requests_total',
      help: 'HTTP requests to the backend (retries included) by endpoint and outcome',
      labelNames: ['endpoint', 'outcome'],
      registers,
    });
    this.requestSeconds = new Histogram({
      name: 'trading_room_backend_request_seconds',
      help: 'Latency of HTTP requests to the backend',
      labelNames: ['endpoint'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.circuitState = new Gauge({
      name: 'trading_room_backend_circuit_state',
      help: "1 for the state the backend endpoint's circuit breaker is in (closed, open, halfOpen)",
      labelNames: ['endpoint', 'state'],
      registers,
    });
    this.accessChecks = new Counter({
      name: 'trading_room_backend_access_checks_total',
      help: 'Access checks of room.join by result: allowed, denied (by the backend), fallback_token, fallback_deny',
      labelNames: ['result'],
      registers,
    });
    this.accessCacheHits = new Counter({
      name: 'trading_room_backend_access_cache_hits_total',
      help: 'Access checks answered from the cache of recent answers',
      registers,
    });
    this.accessFallbacks = new Counter({
      name: 'trading_room_backend_access_fallbacks_total',
      help: 'Access checks the backend did not answer, by BACKEND_FAILURE_MODE and reason (timeout, error, circuit_open)',
      labelNames: ['mode', 'reason'],
      registers,
    });
  }

  /** Sets the circuit gauge of `endpoint` to `state`. */
  setCircuit(endpoint: BackendEndpoint, state: CircuitState): void {
    for (const s of CIRCUIT_STATES) this.circuitState.set({ endpoint, state: s }, s === state ? 1 : 0);
  }
}

const perRegistry = new WeakMap<Registry, BackendMetrics>();

/** The bridge's metrics on `registry`, registered there the first time. */
export function backendMetrics(registry: Registry): BackendMetrics {
  let metrics = perRegistry.get(registry);
  if (!metrics) {
    metrics = new BackendMetrics(registry);
    perRegistry.set(registry, metrics);
  }
  return metrics;
}
