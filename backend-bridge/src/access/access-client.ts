/**
 * The access check of `room.join`: `GET {BACKEND_URL}/rooms/{roomId}/access?userId={sub}` with
 * `Authorization: Bearer {BACKEND_TOKEN}`, answered `200 {allowed, role?, maxParticipants?}`.
 *
 * - One check has one time budget (`timeoutMs`), retries included: a join never waits longer.
 * - A GET is safe to repeat: connection failures and 5xx are retried with exponential backoff
 *   and full jitter while the budget lasts; a 4xx or a malformed answer is not.
 * - An `opossum` circuit breaker stands around the whole check: when it is open, checks fail at
 *   once; after its reset timeout one trial check goes through (half-open).
 * - Answers (allowed or not) are cached briefly per user and room, and concurrent checks of the
 *   same user and room share one request.
 * - When the backend does not answer (timeout, 5xx, unreachable, malformed, circuit open), the
 *   failure mode decides: `token` (the signed token alone decides) or `deny` (unavailable).
 *   Such checks are counted; the breaker's state changes are logged, never single requests.
 */
import CircuitBreaker from 'opossum';
import type { Logger } from 'pino';
import type { BackendMetrics, CircuitState, RequestOutcome } from '../backend-metrics.js';
import { backoffDelayMs, sleepUnlessAborted, type BackoffOptions } from '../retry.js';
import { accessAnswerSchema, type AccessAnswer, type BackendRole } from './access-answer.js';

/** What the bridge decides for one join. */
export type AccessDecision =
  /** The backend allows it; `role` (when given) replaces the token's, `maxParticipants` limits the room. */
  | {
      readonly kind: 'allowed';
      readonly role: BackendRole | undefined;
      readonly maxParticipants: number | undefined;
    }
  /** The backend refuses it. */
  | { readonly kind: 'denied' }
  /** The backend could not answer and the failure mode is `token`: the signed token alone decides. */
  | { readonly kind: 'token' }
  /** The backend could not answer and the failure mode is `deny`. */
  | { readonly kind: 'unavailable'; readonly retryAfterMs: number };

/** What decides when the backend cannot: the token alone, or refuse. */
export type FailureMode = 'token' | 'deny';

export interface CircuitOptions {
  /** Opens when more than this percentage of checks in the window failed... */
  readonly errorThresholdPercentage: number;
  /** ...and at least this many checks ran in it. */
  readonly volumeThreshold: number;
  /** The rolling window the percentages are taken over. */
  readonly rollingWindowMs: number;
  /** How long it stays open before one trial check (half-open). */
  readonly resetTimeoutMs: number;
}

export interface AccessClientOptions {
  /** `BACKEND_URL` (a path in it is kept). */
  readonly baseUrl: string;
  /** `BACKEND_TOKEN`: sent as `Authorization: Bearer …` when set. */
  readonly token?: string | undefined;
  readonly failureMode: FailureMode;
  /** The budget of one check, retries included. */
  readonly timeoutMs: number;
  /** Retries after the first attempt (connection failures and 5xx only). */
  readonly retries: number;
  /** How long an answer is reused; 0: never. */
  readonly cacheTtlMs: number;
  /** Most answers kept (the oldest go first); default 10 000. */
  readonly cacheMaxEntries?: number;
  /** Default: 20 ms growing to at most 200 ms. */
  readonly backoff?: BackoffOptions;
  readonly circuit: CircuitOptions;
  readonly metrics: BackendMetrics;
  readonly log: Logger;
}

/** Why a check got no answer (the `reason` label of the fallback metric). */
export type UnansweredReason = 'timeout' | 'error' | 'circuit_open';

/** The backend did not answer usefully; `retryable` when asking again may help. */
export class BackendRequestError extends Error {
  constructor(
    message: string,
    readonly outcome: RequestOutcome,
    readonly retryable: boolean,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'BackendRequestError';
  }
}

const DEFAULT_BACKOFF: BackoffOptions = { baseDelayMs: 20, maxDelayMs: 200 };
/** How long `deny` mode tells clients to wait before joining again. */
const UNAVAILABLE_RETRY_AFTER_MS = 1000;

interface CacheEntry {
  readonly answer: AccessAnswer;
  readonly expiresAt: number;
}

export class BackendAccessClient {
  readonly #options: AccessClientOptions;
  readonly #baseUrl: string;
  readonly #headers: Record<string, string>;
  readonly #breaker: CircuitBreaker<[string, string], AccessAnswer>;
  readonly #cache = new Map<string, CacheEntry>();
  readonly #inFlight = new Map<string, Promise<AccessDecision>>();
  readonly #stateListeners = new Set<(state: CircuitState) => void>();
  #state: CircuitState = 'closed';

  constructor(options: AccessClientOptions) {
    this.#options = options;
    this.#baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.#headers = { accept: 'application/json' };
    if (options.token !== undefined) this.#headers.authorization = `Bearer ${options.token}`;
    const { circuit } = options;
    this.#breaker = new CircuitBreaker(
      (roomId: string, userId: string) => this.fetchAccess(roomId, userId, performance.now() + options.timeoutMs),
      {
        name: 'backend-access',
        // The check bounds itself (its budget aborts the request); the breaker adds no timer.
        timeout: false,
        errorThresholdPercentage: circuit.errorThresholdPercentage,
        volumeThreshold: circuit.volumeThreshold,
        rollingCountTimeout: circuit.rollingWindowMs,
        resetTimeout: circuit.resetTimeoutMs,
      },
    );
    this.#breaker.on('open', () => this.#changeState('open'));
    this.#breaker.on('halfOpen', () => this.#changeState('halfOpen'));
    this.#breaker.on('close', () => this.#changeState('closed'));
    options.metrics.setCircuit('access', 'closed');
  }

  /** The circuit breaker's state. */
  get circuitState(): CircuitState {
    return this.#state;
  }

  /** Calls `listener` at each change of the circuit's state; returns the function that stops it. */
  onCircuitState(listener: (state: CircuitState) => void): () => void {
    this.#stateListeners.add(listener);
    return () => this.#stateListeners.delete(listener);
  }

  /** Decides whether `userId` may join `roomId`; resolves within the budget, never rejects. */
  check(roomId: string, userId: string): Promise<AccessDecision> {
    const key = `${roomId} ${userId}`;
    const cached = this.#cached(key);
    if (cached) {
      this.#options.metrics.accessCacheHits.inc();
      return Promise.resolve(this.#decided(cached));
    }
    let pending = this.#inFlight.get(key);
    if (!pending) {
      pending = this.#breaker.fire(roomId, userId).then(
        (answer) => {
          this.#remember(key, answer);
          return this.#decided(answer);
        },
        (error: unknown) => this.#unanswered(error),
      );
      const settled = pending.finally(() => this.#inFlight.delete(key));
      this.#inFlight.set(key, settled);
      pending = settled;
    }
    return pending;
  }

  /**
   * One access request to the backend, retried (connection failures and 5xx) with backoff and
   * jitter until it succeeds or `deadline` (a `performance.now()` time) comes.
   * @throws BackendRequestError when the backend did not give a valid answer in time.
   */
  async fetchAccess(roomId: string, userId: string, deadline: number): Promise<AccessAnswer> {
    const url = `${this.#baseUrl}/rooms/${encodeURIComponent(roomId)}/access?userId=${encodeURIComponent(userId)}`;
    const signal = AbortSignal.timeout(Math.max(1, Math.ceil(deadline - performance.now())));
    for (let attempt = 1; ; attempt++) {
      const result = await this.#attempt(url, signal);
      if (!(result instanceof BackendRequestError)) return result;
      if (!result.retryable || attempt > this.#options.retries) throw result;
      const delay = backoffDelayMs(attempt, this.#options.backoff ?? DEFAULT_BACKOFF);
      // A retry that could not even start before the deadline is not worth the wait.
      if (performance.now() + delay >= deadline) throw result;
      try {
        await sleepUnlessAborted(delay, signal);
      } catch {
        throw new BackendRequestError('the backend did not answer in time', 'timeout', false, { cause: result });
      }
    }
  }

  /** Forgets cached answers and stops the breaker; checks after this fall back. Safe to call twice. */
  close(): void {
    this.#cache.clear();
    this.#breaker.shutdown();
  }

  /** One HTTP attempt: the answer, or the error it ended with (counted and timed either way). */
  async #attempt(url: string, signal: AbortSignal): Promise<AccessAnswer | BackendRequestError> {
    const { metrics } = this.#options;
    const stopTimer = metrics.requestSeconds.startTimer({ endpoint: 'access' });
    const result = await this.#request(url, signal);
    stopTimer();
    metrics.requests.inc({
      endpoint: 'access',
      outcome: result instanceof BackendRequestError ? result.outcome : 'ok',
    });
    return result;
  }

  async #request(url: string, signal: AbortSignal): Promise<AccessAnswer | BackendRequestError> {
    try {
      const response = await fetch(url, { headers: this.#headers, signal });
      if (!response.ok) {
        await response.body?.cancel();
        const server = response.status >= 500;
        return new BackendRequestError(
          `the backend answered ${response.status}`,
          server ? 'http_5xx' : 'http_4xx',
          server,
        );
      }
      const parsed = accessAnswerSchema.safeParse(await response.json());
      if (parsed.success) return parsed.data;
      return new BackendRequestError('the backend answered what the contract does not allow', 'invalid', false);
    } catch (error) {
      if (signal.aborted) return new BackendRequestError('the backend did not answer in time', 'timeout', false);
      if (error instanceof SyntaxError)
        return new BackendRequestError('the backend answered no JSON', 'invalid', false);
      return new BackendRequestError('the backend is unreachable', 'network', true, { cause: error });
    }
  }

  #cached(key: string): AccessAnswer | undefined {
    const entry = this.#cache.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt > performance.now()) return entry.answer;
    this.#cache.delete(key);
    return undefined;
  }

  #remember(key: string, answer: AccessAnswer): void {
    const ttl = this.#options.cacheTtlMs;
    if (ttl <= 0) return;
    this.#cache.delete(key);
    this.#cache.set(key, { answer, expiresAt: performance.now() + ttl });
    const max = this.#options.cacheMaxEntries ?? 10_000;
    while (this.#cache.size > max) {
      const oldest = this.#cache.keys().next();
      if (oldest.done) break;
      this.#cache.delete(oldest.value);
    }
  }

  #decided(answer: AccessAnswer): AccessDecision {
    this.#options.metrics.accessChecks.inc({ result: answer.allowed ? 'allowed' : 'denied' });
    if (!answer.allowed) return { kind: 'denied' };
    return { kind: 'allowed', role: answer.role, maxParticipants: answer.maxParticipants };
  }

  #unanswered(error: unknown): AccessDecision {
    const { metrics, failureMode } = this.#options;
    const reason = unansweredReason(error);
    if (reason === 'error' && !(error instanceof BackendRequestError)) {
      this.#options.log.error({ err: error }, 'backend access check failed unexpectedly');
    }
    metrics.accessFallbacks.inc({ mode: failureMode, reason });
    metrics.accessChecks.inc({ result: failureMode === 'token' ? 'fallback_token' : 'fallback_deny' });
    return failureMode === 'token'
      ? { kind: 'token' }
      : { kind: 'unavailable', retryAfterMs: UNAVAILABLE_RETRY_AFTER_MS };
  }

  #changeState(state: CircuitState): void {
    if (state === this.#state) return;
    this.#state = state;
    this.#options.metrics.setCircuit('access', state);
    const { log, failureMode, circuit } = this.#options;
    if (state === 'open') {
      log.warn(
        { endpoint: 'access', failureMode, resetTimeoutMs: circuit.resetTimeoutMs },
        `backend access circuit open: joins are decided by ${failureMode === 'token' ? 'the token alone' : 'refusing them (UNAVAILABLE)'}`,
      );
    } else if (state === 'halfOpen') {
      log.info({ endpoint: 'access' }, 'backend access circuit half-open: trying the backend again');
    } else {
      log.info({ endpoint: 'access' }, 'backend access circuit closed: the backend decides again');
    }
    for (const listener of this.#stateListeners) {
      try {
        listener(state);
      } catch (error) {
        log.error({ err: error }, 'a circuit state listener failed');
      }
    }
  }
}

/** opossum's own rejections: the circuit is open (EOPENBREAKER) or shut down (ESHUTDOWN). */
function unansweredReason(error: unknown): UnansweredReason {
  if (error instanceof BackendRequestError) return error.outcome === 'timeout' ? 'timeout' : 'error';
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'EOPENBREAKER' || code === 'ESHUTDOWN' ? 'circuit_open' : 'error';
}
