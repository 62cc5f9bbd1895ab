import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { BackendAccessClient, BackendMetrics, type AccessClientOptions, type CircuitState } from '../src/index.js';
import { TestBackend } from '../../test-support/backend.js';
import { deferred } from '../../test-support/async.js';
import { parsePrometheus, sampleValue } from '../../test-support/room-helpers.js';

const TOKEN = 'backend-token-for-tests';

interface Harness {
  readonly backend: TestBackend;
  readonly client: BackendAccessClient;
  readonly registry: Registry;
  readonly logs: Record<string, unknown>[];
  /** Resolves at the circuit's next change to `state`. */
  nextState(state: CircuitState): Promise<void>;
  sample(name: string, labels?: Record<string, string>): Promise<number | undefined>;
}

const started: { close(): unknown }[] = [];
afterEach(async () => {
  for (const s of started.splice(0).reverse()) await s.close();
});

async function harness(
  options: Partial<Omit<AccessClientOptions, 'metrics' | 'log'>> = {},
  backend?: TestBackend,
): Promise<Harness> {
  const b = backend ?? (await TestBackend.start({ token: TOKEN }));
  if (!backend) started.push(b);
  const registry = new Registry();
  const logs: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line)) });
  const client = new BackendAccessClient({
    baseUrl: b.url,
    token: TOKEN,
    failureMode: 'token',
    timeoutMs: 1000,
    retries: 2,
    cacheTtlMs: 0,
    circuit: { errorThresholdPercentage: 50, volumeThreshold: 1000, rollingWindowMs: 10_000, resetTimeoutMs: 10_000 },
    ...options,
    metrics: new BackendMetrics(registry),
    log,
  });
  started.push(client);
  return {
    backend: b,
    client,
    registry,
    logs,
    nextState(state) {
      const reached = deferred();
      const stop = client.onCircuitState((s) => {
        if (s !== state) return;
        stop();
        reached.resolve();
      });
      return reached.promise;
    },
    async sample(name, labels = {}) {
      return sampleValue(parsePrometheus(await registry.metrics()).samples, name, labels);
    },
  };
}

describe('access check against the backend', () => {
  it('asks the contract URL with the bearer token and passes on allowed, role and limit', async () => {
    const backend = await TestBackend.start({
      token: TOKEN,
      policy: {
        rooms: {
          'desk:fx': { maxParticipants: 3, users: { 'al ice': { role: 'presenter' }, mallory: { allowed: false } } },
        },
      },
    });
    started.push(backend);
    const { client, sample } = await harness({}, backend);
    expect(await client.check('desk:fx', 'al ice')).toEqual({ kind: 'allowed', role: 'presenter', maxParticipants: 3 });
    expect(await client.check('desk:fx', 'bob')).toEqual({ kind: 'allowed', role: undefined, maxParticipants: 3 });
    expect(await client.check('desk:fx', 'mallory')).toEqual({ kind: 'denied' });
    expect(await client.check('another-room', 'bob')).toEqual({ kind: 'denied' });

    const first = backend.accessRequests()[0];
    expect(first?.path).toBe('/rooms/desk%3Afx/access');
    expect(first?.query.get('userId')).toBe('al ice');
    expect(first?.authorization).toBe(`Bearer ${TOKEN}`);
    expect(await sample('trading_room_backend_requests_total', { endpoint: 'access', outcome: 'ok' })).toBe(4);
    expect(await sample('trading_room_backend_access_checks_total', { result: 'denied' })).toBe(2);
  });

  it('keeps a path in BACKEND_URL and treats a wrong bearer token as the backend failing', async () => {
    const backend = await TestBackend.start({ token: 'another-token' });
    started.push(backend);
    const { client, sample } = await harness({}, backend);
    expect(await client.check('room-1', 'bob')).toEqual({ kind: 'token' });
    // A 4xx is not retried.
    expect(backend.accessRequests()).toHaveLength(1);
    expect(await sample('trading_room_backend_requests_total', { endpoint: 'access', outcome: 'http_4xx' })).toBe(1);

    const prefixed = new BackendAccessClient({
      ...clientDefaults(),
      baseUrl: `${backend.url}/api/`,
      metrics: new BackendMetrics(new Registry()),
      log: pino({ level: 'silent' }),
    });
    started.push(prefixed);
    await prefixed.check('room-1', 'bob');
    expect(backend.requests.at(-1)?.path).toBe('/api/rooms/room-1/access');
  });

  it('caches answers per user and room, and shares one request among concurrent checks', async () => {
    const { backend, client, sample } = await harness({ cacheTtlMs: 60_000 });
    const answers = await Promise.all(Array.from({ length: 5 }, () => client.check('room-1', 'bob')));
    expect(new Set(answers.map((a) => a.kind))).toEqual(new Set(['allowed']));
    expect(backend.accessRequests()).toHaveLength(1);
    await client.check('room-1', 'bob');
    await client.check('room-1', 'carol');
    await client.check('room-2', 'bob');
    expect(backend.accessRequests()).toHaveLength(3);
    expect(await sample('trading_room_backend_access_cache_hits_total')).toBe(1);
  });

  it('does not reuse answers with a zero cache time', async () => {
    const { backend, client } = await harness({ cacheTtlMs: 0 });
    await client.check('room-1', 'bob');
    await client.check('room-1', 'bob');
    expect(backend.accessRequests()).toHaveLength(2);
  });

  it('retries 5xx and connection resets, then takes the answer', async () => {
    const { backend, client, sample } = await harness({ retries: 2 });
    backend.next({ kind: 'status', status: 503 }, { kind: 'reset' });
    expect(await client.check('room-1', 'bob')).toMatchObject({ kind: 'allowed' });
    expect(backend.accessRequests()).toHaveLength(3);
    expect(await sample('trading_room_backend_requests_total', { endpoint: 'access', outcome: 'http_5xx' })).toBe(1);
    expect(await sample('trading_room_backend_requests_total', { endpoint: 'access', outcome: 'network' })).toBe(1);
    expect(await sample('trading_room_backend_requests_total', { endpoint: 'access', outcome: 'ok' })).toBe(1);
  });

  it('falls back after its retries: token mode lets the token decide, deny mode is unavailable', async () => {
    const tokenMode = await harness({ retries: 2 });
    tokenMode.backend.misbehave({ kind: 'status', status: 500 });
    expect(await tokenMode.client.check('room-1', 'bob')).toEqual({ kind: 'token' });
    expect(tokenMode.backend.accessRequests()).toHaveLength(3);
    expect(
      await tokenMode.sample('trading_room_backend_access_fallbacks_total', { mode: 'token', reason: 'error' }),
    ).toBe(1);

    const denyMode = await harness({ retries: 1, failureMode: 'deny' }, tokenMode.backend);
    expect(await denyMode.client.check('room-1', 'bob')).toMatchObject({ kind: 'unavailable' });
    expect(await denyMode.sample('trading_room_backend_access_checks_total', { result: 'fallback_deny' })).toBe(1);
  });

  it('does not retry a malformed answer', async () => {
    const { backend, client, sample } = await harness({ retries: 3 });
    backend.next({ kind: 'body', body: '{"allowed": "yes"}' });
    expect(await client.check('room-1', 'bob')).toEqual({ kind: 'token' });
    backend.next({ kind: 'body', body: 'not json' });
    expect(await client.check('room-1', 'carol')).toEqual({ kind: 'token' });
    expect(backend.accessRequests()).toHaveLength(2);
    expect(await sample('trading_room_backend_requests_total', { endpoint: 'access', outcome: 'invalid' })).toBe(2);
  });

  it('never waits past its budget for a slow backend, retries included', async () => {
    const { backend, client, sample } = await harness({ timeoutMs: 300, retries: 5 });
    backend.misbehave({ kind: 'slow', delayMs: 60_000 });
    const startedAt = performance.now();
    expect(await client.check('room-1', 'bob')).toEqual({ kind: 'token' });
    const elapsed = performance.now() - startedAt;
    expect(elapsed).toBeGreaterThanOrEqual(290);
    // Far below the backend's minute: the budget, plus slack for a loaded machine.
    expect(elapsed).toBeLessThan(5000);
    expect(backend.accessRequests()).toHaveLength(1);
    expect(await sample('trading_room_backend_access_fallbacks_total', { mode: 'token', reason: 'timeout' })).toBe(1);
    expect(await sample('trading_room_backend_requests_total', { endpoint: 'access', outcome: 'timeout' })).toBe(1);
  });

  it('falls back while the backend is away and asks it again when it is back', async () => {
    const { backend, client, sample } = await harness({ timeoutMs: 2000, retries: 2 });
    await backend.goAway();
    expect(await client.check('room-1', 'bob')).toEqual({ kind: 'token' });
    expect(await sample('trading_room_backend_requests_total', { endpoint: 'access', outcome: 'network' })).toBe(3);
    await backend.comeBack();
    expect(await client.check('room-1', 'bob')).toMatchObject({ kind: 'allowed' });
  });
});

describe('circuit breaker of the access check', () => {
  // Long enough that the test sees the open state before the breaker half-opens, even on a busy machine.
  const circuit = { errorThresholdPercentage: 50, volumeThreshold: 3, rollingWindowMs: 10_000, resetTimeoutMs: 1500 };

  it('opens after the threshold, fails fast while open, half-opens after its timeout and closes on success', async () => {
    const h = await harness({ retries: 0, circuit });
    h.backend.misbehave({ kind: 'status', status: 500 });
    const opened = h.nextState('open');
    const halfOpen = h.nextState('halfOpen');
    for (let i = 0; i < 3; i++) expect(await h.client.check('room-1', `user-${i}`)).toEqual({ kind: 'token' });
    await opened;
    expect(h.client.circuitState).toBe('open');
    expect(await h.sample('trading_room_backend_circuit_state', { endpoint: 'access', state: 'open' })).toBe(1);

    // Open: answered at once, without asking the backend.
    const asked = h.backend.accessRequests().length;
    expect(await h.client.check('room-1', 'dave')).toEqual({ kind: 'token' });
    expect(h.backend.accessRequests()).toHaveLength(asked);
    expect(
      await h.sample('trading_room_backend_access_fallbacks_total', { mode: 'token', reason: 'circuit_open' }),
    ).toBe(1);

    await halfOpen;
    h.backend.misbehave({ kind: 'none' });
    const closed = h.nextState('closed');
    expect(await h.client.check('room-1', 'erin')).toMatchObject({ kind: 'allowed' });
    await closed;
    expect(h.backend.accessRequests()).toHaveLength(asked + 1);
    expect(await h.sample('trading_room_backend_circuit_state', { endpoint: 'access', state: 'closed' })).toBe(1);
  });

  it('opens again when the half-open trial fails, and logs each state change once, never each request', async () => {
    const h = await harness({ retries: 0, circuit, failureMode: 'deny' });
    await h.backend.goAway();
    const opened = h.nextState('open');
    const halfOpen = h.nextState('halfOpen');
    for (let i = 0; i < 3; i++) await h.client.check('room-1', `user-${i}`);
    await opened;
    for (let i = 0; i < 20; i++)
      expect(await h.client.check('room-1', `more-${i}`)).toMatchObject({ kind: 'unavailable' });

    await halfOpen;
    const reopened = h.nextState('open');
    expect(await h.client.check('room-1', 'trial')).toMatchObject({ kind: 'unavailable' });
    await reopened;

    const messages = h.logs.map((l) => String(l.msg));
    expect(messages.filter((m) => m.includes('circuit open'))).toHaveLength(2);
    expect(messages.filter((m) => m.includes('half-open'))).toHaveLength(1);
    expect(messages).toHaveLength(3);
  });

  it('lets only the trial check through while half-open', async () => {
    const h = await harness({ retries: 0, circuit });
    h.backend.misbehave({ kind: 'status', status: 500 });
    const opened = h.nextState('open');
    const halfOpen = h.nextState('halfOpen');
    for (let i = 0; i < 3; i++) await h.client.check('room-1', `user-${i}`);
    await opened;
    await halfOpen;
    h.backend.misbehave({ kind: 'slow', delayMs: 200 });
    const asked = h.backend.accessRequests().length;
    const [trial, ...others] = await Promise.all(['a', 'b', 'c'].map((u) => h.client.check('room-1', u)));
    expect(trial).toMatchObject({ kind: 'allowed' });
    expect(others).toEqual([{ kind: 'token' }, { kind: 'token' }]);
    expect(h.backend.accessRequests()).toHaveLength(asked + 1);
  });
});

function clientDefaults(): Omit<AccessClientOptions, 'metrics' | 'log' | 'baseUrl'> {
  return {
    failureMode: 'token',
    timeoutMs: 1000,
    retries: 0,
    cacheTtlMs: 0,
    circuit: { errorThresholdPercentage: 50, volumeThreshold: 1000, rollingWindowMs: 10_000, resetTimeoutMs: 10_000 },
  };
}
