/**
 * The trading-room client SDK, for Node (22+) and the browser: typed requests derived from the
 * protocol's schemas, typed notifications, join and resume, and a connection that never gets
 * lost — it reconnects with exponential backoff and full jitter, honours `server.draining`,
 * close codes and `Retry-After`, and resumes so the application sees every durable event
 * exactly once, in order. It remembers the room's epoch (the identity of its event history)
 * and follows `room.resync` when the room's history restarted under a new one.
 *
 * Browser-safe: it uses only the standard WebSocket API and imports nothing from Node.
 */
import type { EventData, EventName, MethodData, MethodName, MethodResult, Notification } from './protocol.generated.js';
import {
  ClientCloseCode,
  CloseCode,
  HTTP_STATUS,
  isErrorCode,
  type ClientErrorCode,
  type ErrorCode,
} from './error-codes.generated.js';
import { historyPages, type HistoryOptions, type HistoryPage } from './history.js';

/** The protocol's types (methods, notifications, participants), generated from the server's schemas. */
export type * from './protocol.generated.js';
export { ClientCloseCode, CloseCode, type ClientErrorCode, type ErrorCode };
export { RoomTimeline, historyPages } from './history.js';
export type { HistoryEvent, HistoryOptions, HistoryPage, TimelineEntry } from './history.js';

/**
 * A new W3C trace context (`00-<trace id>-<span id>-01`, sampled) for `request(…, { traceparent })`:
 * the server's span of that request, and every node's delivery of what it published, join this
 * trace. Give one to the requests worth following end to end (an alert, say).
 */
export function newTraceparent(): string {
  const hex = (bytes: number): string =>
    Array.from(globalThis.crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, '0')).join(
      '',
    );
  let traceId = hex(16);
  while (/^0+$/.test(traceId)) traceId = hex(16);
  let spanId = hex(8);
  while (/^0+$/.test(spanId)) spanId = hex(8);
  return `00-${traceId}-${spanId}-01`;
}

/**
 * The version of the wire protocol this SDK speaks. Servers of one protocol version only add
 * (methods, events, optional fields), so an SDK works with every server of its version.
 */
export const PROTOCOL_VERSION = 'v1';

/** What a {@link RequestError} carries: a code of the server's catalogue or one of the SDK's own. */
export type RequestErrorCode = ErrorCode | ClientErrorCode;
export type JoinResult = MethodResult<'room.join'>;

/** The connection's state, for a UI. */
export type ConnectionState = 'idle' | 'connecting' | 'joined' | 'reconnecting' | 'closed';

/** The subset of the standard WebSocket the SDK uses (browser `WebSocket`, Node's, or `ws`). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  /** Set by adapters that can see a refused upgrade (status, Retry-After) before `onclose`. */
  upgradeRefusal?: { status: number; retryAfterMs: number | undefined } | undefined;
}

export type SocketFactory = (url: string) => WebSocketLike;

export interface ClientOptions {
  /** `ws://host:port/ws` (the token is added as `?token=`). */
  readonly url: string;
  /** The access token, or a function that returns a fresh one (called on every connect). */
  readonly token: string | (() => string | Promise<string>);
  readonly displayName?: string;
  /** Creates sockets; defaults to `new globalThis.WebSocket(url)`. */
  readonly createSocket?: SocketFactory;
  /** Called when the server closes with 4001 (token expired); returns a fresh token, or undefined to stop. */
  readonly onTokenExpired?: () => Promise<string | undefined>;
  readonly reconnect?: {
    readonly enabled?: boolean;
    readonly initialDelayMs?: number;
    readonly maxDelayMs?: number;
    /** Give up after this many attempts in a row (default: never). */
    readonly maxAttempts?: number;
  };
  /** A request without a response after this long fails (default 15 s). */
  readonly requestTimeoutMs?: number;
}

/**
 * A request answered with an error, or one that could not be answered (`DISCONNECTED`,
 * `TIMEOUT`). A code this SDK does not know (from a newer server) arrives as `INTERNAL`.
 */
export class RequestError extends Error {
  readonly code: RequestErrorCode;
  readonly retryAfterMs: number | undefined;
  readonly details: unknown;

  constructor(code: RequestErrorCode, message: string, retryAfterMs?: number, details?: unknown) {
    super(message);
    this.name = 'RequestError';
    this.code = code;
    this.retryAfterMs = retryAfterMs;
    this.details = details;
  }
}

/** Close codes after which the client stops instead of reconnecting. */
const FINAL_CLOSE_CODES: ReadonlySet<number> = new Set([
  CloseCode.NORMAL,
  CloseCode.POLICY,
  CloseCode.KICKED,
  CloseCode.REPLACED,
]);
const OPEN = 1;

/** Why a `resync` event came. */
export type ResyncCause =
  /** A reconnect could not resume: the join result is a fresh join, reload state from it. */
  | { readonly reason: 'resume-failed' }
  /**
   * `room.resync`: the room's history restarted (the cluster's shared store lost it) or this
   * node skipped events it could no longer read. The connection and participant stay; durable
   * events continue under `epoch` after `lastSeq`. Events of the old numbering that had not
   * arrived are lost: the join result given is the last one with the new `epoch` and `lastSeq`,
   * its participants and producers as they were then — reconnect (close and connect) when the
   * application needs them exact.
   */
  | { readonly reason: 'epoch-changed'; readonly epoch: string; readonly lastSeq: number };

type ClientEvents = {
  state: [ConnectionState];
  /** Every notification, after de-duplication of durable events. */
  notification: [Notification];
  /** The application's view of the room may be stale: see {@link ResyncCause}. */
  resync: [JoinResult, ResyncCause];
  /** The client stopped for good (kicked, replaced, policy, closed by the app, gave up). */
  closed: [{ code: number; reason: string }];
};

type Listener<A extends unknown[]> = (...args: A) => void;

interface Pending {
  resolve(value: unknown): void;
  reject(error: RequestError): void;
  timer: ReturnType<typeof setTimeout>;
}

export class TradingRoomClient {
  readonly #options: ClientOptions;
  readonly #listeners = new Map<string, Set<Listener<never[]>>>();
  readonly #eventListeners = new Map<string, Set<(data: never, seq: number | undefined) => void>>();
  readonly #pending = new Map<number, Pending>();
  #socket: WebSocketLike | undefined;
  #state: ConnectionState = 'idle';
  #nextId = 1;
  #sessionId: string | undefined;
  #lastSeq = 0;
  /** The epoch `#lastSeq` belongs to. */
  #epoch: string | undefined;
  #attempt = 0;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #drainTimer: ReturnType<typeof setTimeout> | undefined;
  #token: string | undefined;
  #joined: JoinResult | undefined;
  #firstJoin: { resolve(r: JoinResult): void; reject(e: Error): void } | undefined;

  constructor(options: ClientOptions) {
    this.#options = options;
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** The newest durable `seq` the application has seen. */
  get lastSeq(): number {
    return this.#lastSeq;
  }

  get sessionId(): string | undefined {
    return this.#sessionId;
  }

  /** The epoch of the room's event history `lastSeq` belongs to (from the join, then `room.resync`). */
  get epoch(): string | undefined {
    return this.#epoch;
  }

  /** The latest join (or resume) result. */
  get joined(): JoinResult | undefined {
    return this.#joined;
  }

  on<K extends keyof ClientEvents>(event: K, listener: Listener<ClientEvents[K]>): () => void {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(listener as unknown as Listener<never[]>);
    return () => set.delete(listener as unknown as Listener<never[]>);
  }

  /** Listens to one notification type; `seq` is set for durable events. */
  onEvent<E extends EventName>(event: E, listener: (data: EventData<E>, seq: number | undefined) => void): () => void {
    let set = this.#eventListeners.get(event);
    if (!set) this.#eventListeners.set(event, (set = new Set()));
    set.add(listener as (data: never, seq: number | undefined) => void);
    return () => set.delete(listener as (data: never, seq: number | undefined) => void);
  }

  /** Connects and joins; resolves with the first join result. Reconnects after that by itself. */
  connect(): Promise<JoinResult> {
    if (this.#state !== 'idle' && this.#state !== 'closed') throw new Error('already connected');
    return new Promise<JoinResult>((resolve, reject) => {
      this.#firstJoin = { resolve, reject };
      this.#attempt = 0;
      void this.#open();
    });
  }

  /**
   * Sends a request; resolves with its result or rejects with a {@link RequestError}. With
   * `traceparent` (see {@link newTraceparent}) the server traces the request under that span.
   */
  request<M extends MethodName>(
    method: M,
    data: MethodData<M>,
    options: { traceparent?: string } = {},
  ): Promise<MethodResult<M>> {
    const socket = this.#socket;
    if (!socket || socket.readyState !== OPEN || (this.#state !== 'joined' && method !== 'room.join')) {
      return Promise.reject(new RequestError('DISCONNECTED', `not connected (state ${this.#state})`));
    }
    return this.#send(socket, method, data, options.traceparent) as Promise<MethodResult<M>>;
  }

  /** `room.history`: one page of the room's retained chat and alerts, oldest first. */
  history(options: HistoryOptions = {}): Promise<HistoryPage> {
    return this.request('room.history', options);
  }

  /** Every page of the room's retained history, newest page first: `for await (const page of …)`. */
  historyPages(options: HistoryOptions = {}): AsyncGenerator<HistoryPage, void, undefined> {
    return historyPages((data) => this.history(data), options);
  }

  /** Leaves and closes for good. */
  close(): void {
    this.#stop(CloseCode.NORMAL, 'closed by the application');
  }

  // ---------------------------------------------------------------------------------------------

  async #open(): Promise<void> {
    this.#setState(this.#sessionId ? 'reconnecting' : 'connecting');
    let token: string;
    try {
      token =
        this.#token ?? (typeof this.#options.token === 'function' ? await this.#options.token() : this.#options.token);
    } catch (error) {
      this.#stop(CloseCode.TOKEN_EXPIRED, `no token: ${error instanceof Error ? error.message : String(error)}`);
      return;
    }
    if (this.#state === 'closed') return;
    this.#token = token;
    const url = `${this.#options.url}${this.#options.url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
    const create =
      this.#options.createSocket ?? ((u: string) => new globalThis.WebSocket(u) as unknown as WebSocketLike);
    let socket: WebSocketLike;
    try {
      socket = create(url);
    } catch (error) {
      this.#scheduleReconnect(undefined, error instanceof Error ? error.message : 'socket failed');
      return;
    }
    this.#socket = socket;
    socket.onopen = () => void this.#join(socket);
    socket.onmessage = (event) => this.#onMessage(event.data);
    socket.onerror = () => {};
    socket.onclose = (event) => this.#onClose(socket, event.code, event.reason);
  }

  async #join(socket: WebSocketLike): Promise<void> {
    const resume = this.#sessionId
      ? { sessionId: this.#sessionId, lastSeq: this.#lastSeq, ...(this.#epoch ? { epoch: this.#epoch } : {}) }
      : undefined;
    const data: MethodData<'room.join'> = {};
    if (this.#options.displayName) data.displayName = this.#options.displayName;
    if (resume) data.resume = resume;
    let result: JoinResult;
    try {
      result = (await this.#send(socket, 'room.join', data)) as JoinResult;
    } catch (error) {
      const requestError = error as RequestError;
      if (requestError.code === 'DISCONNECTED') return; // onclose handles it
      if (requestError.code === 'FORBIDDEN' || requestError.code === 'BAD_REQUEST') {
        this.#stop(CloseCode.KICKED, requestError.message);
        return;
      }
      // Detach first: this socket's own 1000 close must not read as a final close.
      this.#detach(socket, requestError.message);
      socket.close(CloseCode.NORMAL, 'join failed');
      this.#scheduleReconnect(requestError.retryAfterMs, requestError.message);
      return;
    }
    const resyncNeeded = resume !== undefined && !result.resumed;
    this.#sessionId = result.sessionId;
    this.#joined = result;
    // Replayed events arrived before this response and advanced lastSeq; a fresh join restarts.
    if (!result.resumed) this.#lastSeq = result.lastSeq;
    this.#epoch = result.epoch;
    this.#attempt = 0;
    this.#setState('joined');
    if (this.#firstJoin) {
      this.#firstJoin.resolve(result);
      this.#firstJoin = undefined;
    } else if (resyncNeeded) {
      this.#emit('resync', result, { reason: 'resume-failed' });
    }
  }

  #send(socket: WebSocketLike, method: string, data: unknown, traceparent?: string): Promise<unknown> {
    const id = this.#nextId++;
    const envelope: Record<string, unknown> = { id, method, data };
    if (traceparent) envelope.traceparent = traceparent;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new RequestError('TIMEOUT', `${method} got no response in time`));
      }, this.#options.requestTimeoutMs ?? 15_000);
      this.#pending.set(id, { resolve, reject, timer });
      try {
        socket.send(JSON.stringify(envelope));
      } catch {
        clearTimeout(timer);
        this.#pending.delete(id);
        reject(new RequestError('DISCONNECTED', 'the connection is closed'));
      }
    });
  }

  #onMessage(raw: unknown): void {
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(typeof raw === 'string' ? raw : String(raw)) as Record<string, unknown>;
    } catch {
      return;
    }
    if (typeof message.event === 'string') {
      this.#onNotification(message as unknown as Notification);
      return;
    }
    const pending = typeof message.id === 'number' ? this.#pending.get(message.id) : undefined;
    if (!pending) return;
    this.#pending.delete(message.id as number);
    clearTimeout(pending.timer);
    if (message.ok === true) pending.resolve(message.data);
    else {
      const error = (message.error ?? {}) as {
        code?: string;
        message?: string;
        retryAfterMs?: number;
        details?: unknown;
      };
      pending.reject(
        new RequestError(
          isErrorCode(error.code) ? error.code : 'INTERNAL',
          error.message ?? 'request failed',
          error.retryAfterMs,
          error.details,
        ),
      );
    }
  }

  #onNotification(notification: Notification): void {
    const seq = (notification as { seq?: number }).seq;
    if (seq !== undefined) {
      if (seq <= this.#lastSeq) return; // already seen (replay overlap)
      this.#lastSeq = seq;
    } else if (notification.event === 'room.resync') {
      this.#onResync(notification.data as EventData<'room.resync'>);
    }
    if (notification.event === 'server.draining') {
      const { reconnectAfterMs } = notification.data as EventData<'server.draining'>;
      clearTimeout(this.#drainTimer);
      this.#drainTimer = setTimeout(() => {
        const socket = this.#socket;
        if (socket && this.#state === 'joined') {
          this.#detach(socket, 'node draining');
          socket.close(CloseCode.NORMAL, 'reconnecting elsewhere (drain)');
          void this.#open();
        }
      }, reconnectAfterMs);
    }
    this.#emit('notification', notification);
    const listeners = this.#eventListeners.get(notification.event);
    if (listeners) for (const listener of listeners) listener(notification.data as never, seq);
  }

  /** The room's numbering restarts: follow it, and tell the application its view may be stale. */
  #onResync({ epoch, lastSeq }: EventData<'room.resync'>): void {
    this.#epoch = epoch;
    this.#lastSeq = lastSeq;
    if (!this.#joined) return;
    this.#joined = { ...this.#joined, epoch, lastSeq };
    this.#emit('resync', this.#joined, { reason: 'epoch-changed', epoch, lastSeq });
  }

  #onClose(socket: WebSocketLike, code: number, reason: string): void {
    if (socket !== this.#socket) return;
    this.#detach(socket, `connection closed (${code})`);
    if (this.#state === 'closed') return;
    const refusal = socket.upgradeRefusal;
    if (refusal) {
      if (refusal.status === HTTP_STATUS.UNAUTHORIZED) {
        void this.#renewToken(code, reason);
        return;
      }
      if (refusal.status === HTTP_STATUS.FORBIDDEN) {
        this.#stop(CloseCode.KICKED, 'upgrade refused (403)');
        return;
      }
      this.#scheduleReconnect(refusal.retryAfterMs, `upgrade refused (${refusal.status})`);
      return;
    }
    if (code === CloseCode.TOKEN_EXPIRED) {
      void this.#renewToken(code, reason);
      return;
    }
    if (FINAL_CLOSE_CODES.has(code)) {
      this.#stop(code, reason);
      return;
    }
    this.#scheduleReconnect(undefined, reason);
  }

  async #renewToken(code: number, reason: string): Promise<void> {
    this.#token = undefined;
    const renew = this.#options.onTokenExpired;
    const fresh = renew ? await renew().catch(() => undefined) : undefined;
    if (fresh) this.#token = fresh;
    else if (typeof this.#options.token !== 'function') {
      this.#stop(code, reason || 'token expired');
      return;
    }
    this.#scheduleReconnect(0, 'token renewed');
  }

  /** Stops using a socket: fails its requests in flight. */
  #detach(socket: WebSocketLike, why: string): void {
    socket.onopen = socket.onmessage = socket.onclose = null;
    socket.onerror = () => {};
    if (this.#socket === socket) this.#socket = undefined;
    clearTimeout(this.#drainTimer);
    for (const [id, pending] of this.#pending) {
      clearTimeout(pending.timer);
      pending.reject(new RequestError('DISCONNECTED', why));
      this.#pending.delete(id);
    }
  }

  /** Exponential backoff with full jitter; `minDelayMs` (Retry-After, draining) is honoured. */
  #scheduleReconnect(minDelayMs: number | undefined, why: string): void {
    const policy = this.#options.reconnect ?? {};
    if (policy.enabled === false || this.#attempt >= (policy.maxAttempts ?? Infinity)) {
      this.#stop(ClientCloseCode.ABNORMAL, `gave up reconnecting: ${why}`);
      return;
    }
    const initial = policy.initialDelayMs ?? 500;
    const max = policy.maxDelayMs ?? 15_000;
    const ceiling = Math.min(max, initial * 2 ** this.#attempt);
    const delay = Math.max(minDelayMs ?? 0, Math.random() * ceiling);
    this.#attempt++;
    this.#setState('reconnecting');
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = setTimeout(() => void this.#open(), delay);
  }

  #stop(code: number, reason: string): void {
    if (this.#state === 'closed') return;
    clearTimeout(this.#reconnectTimer);
    clearTimeout(this.#drainTimer);
    const socket = this.#socket;
    if (socket) {
      this.#detach(socket, reason);
      try {
        socket.close(CloseCode.NORMAL, 'bye');
      } catch {
        /* already closed */
      }
    }
    this.#setState('closed');
    if (this.#firstJoin) {
      this.#firstJoin.reject(new RequestError('DISCONNECTED', reason));
      this.#firstJoin = undefined;
    }
    this.#emit('closed', { code, reason });
  }

  #setState(state: ConnectionState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#emit('state', state);
  }

  #emit<K extends keyof ClientEvents>(event: K, ...args: ClientEvents[K]): void {
    const set = this.#listeners.get(event);
    if (!set) return;
    for (const listener of set) {
      try {
        (listener as unknown as Listener<ClientEvents[K]>)(...args);
      } catch (error) {
        setTimeout(() => {
          throw error;
        });
      }
    }
  }
}
