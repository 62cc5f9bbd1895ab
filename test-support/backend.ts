/**
 * The trading platform's backend in tests: the reference receiver on a free loopback port,
 * with faults on command — answering slowly, with 500s, resetting connections, or going away
 * altogether (and coming back on the same port). Every request it sees is recorded.
 */
import type { IncomingMessage } from 'node:http';
import { AccessTable, type AccessPolicy } from '../backend-bridge/src/reference-receiver/access.js';
import { createReferenceReceiver, type ReferenceReceiver } from '../backend-bridge/src/reference-receiver/server.js';

/** How the backend treats the next requests. */
export type Fault =
  /** Answers normally. */
  | { readonly kind: 'none' }
  /** Answers normally after `delayMs`. */
  | { readonly kind: 'slow'; readonly delayMs: number }
  /** Answers `status` (default 500) with no body. */
  | { readonly kind: 'status'; readonly status?: number }
  /** Resets the TCP connection without answering. */
  | { readonly kind: 'reset' }
  /** Answers 200 with this body (a malformed answer). */
  | { readonly kind: 'body'; readonly body: string };

/** A request the backend saw. */
export interface SeenRequest {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly authorization: string | undefined;
  readonly at: number;
}

export interface TestBackendOptions {
  readonly policy?: AccessPolicy;
  /** The bearer token it requires (`BACKEND_TOKEN`). */
  readonly token?: string;
  /** `BACKEND_WEBHOOK_SECRET`, when webhooks are mounted. */
  readonly webhookSecret?: string;
  /** Latency of every answer (the load test's "backend answering in 5 ms"). */
  readonly latencyMs?: number;
}

export class TestBackend {
  readonly receiver: ReferenceReceiver;
  readonly access: AccessTable;
  readonly requests: SeenRequest[] = [];
  #fault: Fault = { kind: 'none' };
  /** Faults for the next requests, before {@link #fault} applies again. */
  #queued: Fault[] = [];

  private constructor(receiver: ReferenceReceiver, access: AccessTable) {
    this.receiver = receiver;
    this.access = access;
    receiver.intercept((request, response) => {
      this.requests.push(seen(request));
      const fault = this.#queued.shift() ?? this.#fault;
      switch (fault.kind) {
        case 'none':
          return false;
        case 'slow':
          return new Promise((resolve) => {
            const timer = setTimeout(() => resolve(false), fault.delayMs);
            // A client that gave up gets no answer: nothing to wait for.
            request.socket.once('close', () => {
              clearTimeout(timer);
              resolve(true);
            });
          });
        case 'status':
          response.writeHead(fault.status ?? 500).end();
          return true;
        case 'reset':
          request.socket.resetAndDestroy();
          return true;
        case 'body':
          response.writeHead(200, { 'Content-Type': 'application/json' }).end(fault.body);
          return true;
      }
    });
  }

  /** Starts a backend on a free loopback port (everyone allowed unless `policy` says otherwise). */
  static async start(options: TestBackendOptions = {}): Promise<TestBackend> {
    const access = new AccessTable(options.policy ?? { otherRooms: { allowed: true } });
    const receiver = createReferenceReceiver({
      access,
      token: options.token,
      webhookSecret: options.webhookSecret,
      latencyMs: options.latencyMs,
    });
    await receiver.listen(0, '127.0.0.1');
    return new TestBackend(receiver, access);
  }

  get url(): string {
    return this.receiver.url;
  }

  /** Access requests seen so far. */
  accessRequests(): SeenRequest[] {
    return this.requests.filter((r) => r.method === 'GET' && /^\/rooms\/[^/]+\/access$/.test(r.path));
  }

  /** From now on, every request meets `fault` (`{kind: 'none'}` heals it). */
  misbehave(fault: Fault): void {
    this.#fault = fault;
    this.#queued = [];
  }

  /** The next `faults.length` requests meet these, in order; then the standing fault applies again. */
  next(...faults: Fault[]): void {
    this.#queued.push(...faults);
  }

  /** Goes away: stops listening and cuts every connection. */
  goAway(): Promise<void> {
    return this.receiver.stop();
  }

  /** Comes back on the same port. */
  async comeBack(): Promise<void> {
    await this.receiver.listen();
  }

  close(): Promise<void> {
    return this.receiver.stop();
  }
}

function seen(request: IncomingMessage): SeenRequest {
  const url = new URL(request.url ?? '/', 'http://backend');
  return {
    method: request.method ?? 'GET',
    path: url.pathname,
    query: url.searchParams,
    authorization: request.headers.authorization,
    at: Date.now(),
  };
}
