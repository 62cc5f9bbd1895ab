/**
 * Request/response between the nodes of a cluster over Redis pub/sub, addressed to a node id:
 * what one node must ask another (kick, mute or setRole of a participant connected there, closing
 * a room from the admin API, media pipes). Each node listens on its own channel
 * (`{prefix}:{node:ID}:rpc`, a shard channel on a Redis Cluster); a request names its caller's
 * node id, the answer goes to the caller's channel. Messages are JSON, checked with zod where
 * they arrive: a bad message is reported and dropped, never thrown. A call to this node's own id
 * takes the same path without Redis. Design: `docs/cluster.md`.
 */
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { openRedisConnections, type RedisConnections, type RedisTarget } from '../bus/redis-connections.js';
import { BusUnavailableError } from '../bus/room-bus.js';
import { ERROR_CODES, isErrorCode, ProtocolError, type ErrorBody, type ErrorCode } from '../errors.js';
import { traceparentSchema } from '../protocol/common.js';
import { endWhenSettled, inRpcServerSpan, rpcClientSpan, traceparentOf } from '../telemetry/spans.js';

/** One method of a method map: what its caller sends and what its handler answers. */
export interface RpcMethod {
  readonly params: unknown;
  readonly result: unknown;
}

/** What a handler learns about the request besides its params. */
export interface RpcRequestContext {
  /** The node that called. */
  readonly callerNodeId: string;
  /** When the caller stops waiting (epoch ms, the caller's clock): work after it is wasted. */
  readonly deadline: number;
  /** The caller's W3C trace context, to parent the handler's span on. */
  readonly traceparent: string | undefined;
}

/** Answers one method; a thrown {@link ProtocolError} (or any `{code, message}` of the catalogue) reaches the caller. */
export type RpcHandler<M extends RpcMethod> = (
  params: M['params'],
  context: RpcRequestContext,
) => M['result'] | Promise<M['result']>;

export interface RpcHandlerOptions<M extends RpcMethod> {
  /** Checks the params before the handler runs; a mismatch answers `BAD_REQUEST`. */
  readonly params?: z.ZodType<M['params']>;
}

export interface RpcCallOptions {
  /** How long to wait for the answer. Default: the instance's `defaultTimeoutMs`. */
  readonly timeoutMs?: number;
  /** The caller's trace context, handed to the handler. */
  readonly traceparent?: string;
}

export interface ClusterRpcOptions {
  readonly target: RedisTarget;
  /** This node's id: the address other nodes call. No braces (it is a hash tag). */
  readonly nodeId: string;
  /** Prefix of the channels (`REDIS_KEY_PREFIX`); no braces. */
  readonly keyPrefix: string;
  /** Default 5000 ms. */
  readonly defaultTimeoutMs?: number;
  /** Calls waiting for an answer at most; a call beyond it is refused as unavailable. Default 10,000. */
  readonly maxPending?: number;
  /** Name of the connections in `CLIENT LIST`. */
  readonly connectionName?: string;
  /** Unreadable messages, handlers that failed unexpectedly, answers that could not be sent. */
  readonly onError?: (error: unknown, what: string) => void;
}

/** What went wrong with a call to another node. */
export class RpcError extends Error {
  /** The node called. */
  readonly nodeId: string;
  readonly method: string;

  constructor(message: string, nodeId: string, method: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RpcError';
    this.nodeId = nodeId;
    this.method = method;
  }
}

/** No answer came before the deadline: the node is dead, frozen or overloaded. */
export class RpcTimeoutError extends RpcError {
  constructor(nodeId: string, method: string, timeoutMs: number) {
    super(`${method} on node ${nodeId}: no answer within ${timeoutMs} ms`, nodeId, method);
    this.name = 'RpcTimeoutError';
  }
}

/**
 * Nothing listens on the node's channel: the node is gone (or never existed). Known at once from
 * Redis's count of receivers, so a call to a dead node does not wait for its timeout.
 */
export class RpcNoListenerError extends RpcError {
  constructor(nodeId: string, method: string) {
    super(`${method} on node ${nodeId}: no node listens on that id`, nodeId, method);
    this.name = 'RpcNoListenerError';
  }
}

/**
 * The handler failed. `code` and `message` are the ones it threw when it threw an error of the
 * catalogue (`NOT_FOUND`, `FORBIDDEN`, …), so a caller can pass them on; any other failure is
 * `INTERNAL` (the remote node reported the details to its own log).
 */
export class RpcRemoteError extends RpcError {
  readonly code: ErrorCode;
  readonly retryAfterMs: number | undefined;
  readonly details: unknown;

  constructor(nodeId: string, method: string, body: ErrorBody) {
    super(body.message, nodeId, method);
    this.name = 'RpcRemoteError';
    this.code = body.code;
    this.retryAfterMs = body.retryAfterMs;
    this.details = body.details;
  }

  /** The same failure as a protocol error, to answer a client with. */
  toProtocolError(): ProtocolError {
    return new ProtocolError(this.code, this.message, { retryAfterMs: this.retryAfterMs, details: this.details });
  }
}

/** Redis cannot be reached, this instance is closed, or too many calls are in flight. */
export class RpcUnavailableError extends BusUnavailableError {
  constructor(message: string, retryAfterMs?: number, options?: ErrorOptions) {
    super(message, retryAfterMs, options);
    this.name = 'RpcUnavailableError';
  }
}

/** The channel node `nodeId` listens on. */
export function rpcChannel(keyPrefix: string, nodeId: string): string {
  return `${keyPrefix}:{node:${nodeId}}:rpc`;
}

const idSchema = z.string().min(1).max(200);

const errorBodySchema = z.object({
  code: z.enum(ERROR_CODES),
  message: z.string(),
  retryAfterMs: z.number().nonnegative().optional(),
  details: z.unknown().optional(),
});

/** Every message on a node's channel: a request, or the answer to one of its own requests. */
const rpcMessageSchema = z.discriminatedUnion('t', [
  z.object({
    t: z.literal('req'),
    id: idSchema,
    from: idSchema,
    method: idSchema,
    params: z.unknown(),
    deadline: z.number(),
    traceparent: traceparentSchema.optional(),
  }),
  z.object({ t: z.literal('res'), id: idSchema, result: z.unknown() }),
  z.object({ t: z.literal('err'), id: idSchema, error: errorBodySchema }),
]);

type RpcMessage = z.infer<typeof rpcMessageSchema>;
type RpcRequest = Extract<RpcMessage, { t: 'req' }>;
type RpcAnswer = Exclude<RpcMessage, RpcRequest>;

interface PendingCall {
  readonly nodeId: string;
  readonly method: string;
  readonly resolve: (result: unknown) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

interface Registration {
  /** The handler, its params checked by the method's schema when it has one. */
  readonly run: (params: unknown, context: RpcRequestContext) => unknown;
}

const RETRY_AFTER_MS = 1000;

/**
 * Cluster RPC of one node, typed by a method map:
 * `ClusterRpc<{ kick: { params: { participantId: string }; result: { kicked: boolean } } }>`.
 */
export class ClusterRpc<Methods extends { [K in keyof Methods]: RpcMethod }> {
  readonly nodeId: string;
  readonly #connections: RedisConnections;
  readonly #prefix: string;
  readonly #channel: string;
  readonly #defaultTimeoutMs: number;
  readonly #maxPending: number;
  readonly #onError: (error: unknown, what: string) => void;
  readonly #handlers = new Map<string, Registration>();
  readonly #pending = new Map<string, PendingCall>();
  #listening = false;
  #closed = false;

  constructor(options: ClusterRpcOptions) {
    if (/[{}]/.test(options.keyPrefix)) throw new RangeError('the Redis key prefix must not contain braces');
    if (/[{}]/.test(options.nodeId)) throw new RangeError('the node id must not contain braces');
    this.nodeId = options.nodeId;
    this.#prefix = options.keyPrefix;
    this.#channel = rpcChannel(options.keyPrefix, options.nodeId);
    this.#defaultTimeoutMs = options.defaultTimeoutMs ?? 5000;
    this.#maxPending = options.maxPending ?? 10_000;
    this.#onError = options.onError ?? (() => {});
    this.#connections = openRedisConnections(options.target, options.connectionName ?? 'trading-room-rpc');

    const { commands, subscriber, sharded } = this.#connections;
    // Connection errors show as failed calls; without a listener ioredis would throw them.
    commands.on('error', () => {});
    if (subscriber !== commands) subscriber.on('error', () => {});
    subscriber.on(sharded ? 'smessage' : 'message', (channel: string, payload: string) => {
      if (channel === this.#channel) this.#receive(payload);
    });
    // The connections restore no subscription by themselves: listen again after every reconnect.
    subscriber.on(sharded ? 'subscribersReady' : 'ready', () => {
      if (this.#listening) this.#listen().catch((error: unknown) => this.#onError(error, 'listening for RPC again'));
    });
  }

  /** Starts listening on this node's channel; resolves once subscribed and able to call (it waits for Redis). */
  async start(): Promise<void> {
    if (this.#closed) throw new RpcUnavailableError('the cluster RPC is closed');
    this.#listening = true;
    const { commands } = this.#connections;
    // Not events.once: it would reject on the connection errors emitted while Redis is still down.
    const commandsReady =
      commands.status === 'ready' ? undefined : new Promise((resolve) => commands.once('ready', resolve));
    await Promise.all([this.#listen(), commandsReady]);
  }

  /**
   * Answers `method` with `handler` from now on; returns the function that stops it. One handler
   * per method.
   */
  handle<M extends keyof Methods & string>(
    method: M,
    handler: RpcHandler<Methods[M]>,
    options: RpcHandlerOptions<Methods[M]> = {},
  ): () => void {
    if (this.#handlers.has(method)) throw new Error(`an RPC handler for ${method} is registered already`);
    const schema = options.params;
    const registration: Registration = {
      run: (params, context) => {
        if (!schema) return handler(params as Methods[M]['params'], context);
        const parsed = schema.safeParse(params);
        if (!parsed.success) throw new ProtocolError('BAD_REQUEST', `invalid params for ${method}`);
        return handler(parsed.data, context);
      },
    };
    this.#handlers.set(method, registration);
    return () => {
      if (this.#handlers.get(method) === registration) this.#handlers.delete(method);
    };
  }

  /**
   * Calls `method` on node `nodeId` and resolves with its handler's result. Rejects with
   * {@link RpcRemoteError} (the handler threw), {@link RpcTimeoutError} (no answer in time),
   * {@link RpcNoListenerError} (no such node listening) or {@link RpcUnavailableError} (Redis
   * down, closed, too many calls in flight). A call to this node's own id never touches Redis.
   */
  async call<M extends keyof Methods & string>(
    nodeId: string,
    method: M,
    params: Methods[M]['params'],
    options: RpcCallOptions = {},
  ): Promise<Methods[M]['result']> {
    if (this.#closed) throw new RpcUnavailableError('the cluster RPC is closed');
    if (this.#pending.size >= this.#maxPending) {
      throw new RpcUnavailableError('too many cluster RPC calls in flight', RETRY_AFTER_MS);
    }
    const timeoutMs = options.timeoutMs ?? this.#defaultTimeoutMs;
    // The active request's trace goes along (a client span of its own) unless the caller gave one.
    const span = options.traceparent === undefined ? rpcClientSpan(nodeId, method) : undefined;
    const traceparent = options.traceparent ?? (span && traceparentOf(span.spanContext()));
    const request: RpcRequest = {
      t: 'req',
      id: randomUUID(),
      from: this.nodeId,
      method,
      params,
      deadline: Date.now() + timeoutMs,
      // Tracing is best effort: a malformed trace context is left out rather than failing the call.
      traceparent: traceparentSchema.safeParse(traceparent).success ? traceparent : undefined,
    };
    const payload = JSON.stringify(request);
    const answered = new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(request.id);
        reject(new RpcTimeoutError(nodeId, method, timeoutMs));
      }, timeoutMs);
      timer.unref();
      this.#pending.set(request.id, { nodeId, method, resolve, reject, timer });
    });
    if (span) endWhenSettled(span, answered);
    // The answer may come before the publish returns: the call waits in the map first.
    let receivers: number;
    try {
      receivers = await this.#send(nodeId, payload);
    } catch (error) {
      this.#fail(
        request.id,
        new RpcUnavailableError('Redis did not take the RPC request', RETRY_AFTER_MS, { cause: error }),
      );
      return answered;
    }
    if (receivers === 0) this.#fail(request.id, new RpcNoListenerError(nodeId, method));
    return answered;
  }

  /** Stops listening and rejects every call still waiting. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listening = false;
    for (const id of [...this.#pending.keys()]) this.#fail(id, new RpcUnavailableError('the cluster RPC is closed'));
    this.#handlers.clear();
    this.#connections.disconnect();
  }

  async #listen(): Promise<void> {
    const { subscriber, sharded } = this.#connections;
    await (sharded ? subscriber.ssubscribe(this.#channel) : subscriber.subscribe(this.#channel));
  }

  /** Publishes to a node's channel; to this node, delivers directly. Resolves the receivers' count. */
  async #send(nodeId: string, payload: string): Promise<number> {
    if (nodeId === this.nodeId) {
      queueMicrotask(() => this.#receive(payload));
      return 1;
    }
    const { commands, sharded } = this.#connections;
    const channel = rpcChannel(this.#prefix, nodeId);
    return Number(await (sharded ? commands.spublish(channel, payload) : commands.publish(channel, payload)));
  }

  #receive(payload: string): void {
    if (this.#closed) return;
    let message: RpcMessage;
    try {
      message = rpcMessageSchema.parse(JSON.parse(payload));
    } catch (error) {
      this.#onError(error, 'reading an RPC message');
      return;
    }
    if (message.t === 'req') void this.#serve(message);
    else this.#settle(message);
  }

  async #serve(request: RpcRequest): Promise<void> {
    // The caller gave up already (node clocks are assumed in sync, as NTP keeps them).
    if (Date.now() > request.deadline) return;
    let answer: RpcAnswer;
    try {
      answer = { t: 'res', id: request.id, result: await this.#run(request) };
    } catch (error) {
      answer = { t: 'err', id: request.id, error: this.#errorBody(error, request.method) };
    }
    if (this.#closed) return;
    let payload: string;
    try {
      payload = JSON.stringify(answer);
    } catch (error) {
      this.#onError(error, `encoding the result of RPC ${request.method}`);
      payload = JSON.stringify({ t: 'err', id: request.id, error: { code: 'INTERNAL', message: 'internal error' } });
    }
    try {
      await this.#send(request.from, payload);
    } catch (error) {
      this.#onError(error, `answering RPC ${request.method}`);
    }
  }

  async #run(request: RpcRequest): Promise<unknown> {
    const registration = this.#handlers.get(request.method);
    if (!registration) throw new ProtocolError('UNKNOWN_METHOD', `no RPC handler for ${request.method}`);
    return await inRpcServerSpan(request.method, request.from, request.traceparent, async () =>
      registration.run(request.params, {
        callerNodeId: request.from,
        deadline: request.deadline,
        traceparent: request.traceparent,
      }),
    );
  }

  /** The wire form of what a handler threw: catalogue errors as they are, anything else INTERNAL. */
  #errorBody(error: unknown, method: string): ErrorBody {
    if (error instanceof ProtocolError) return error.toBody();
    if (isCatalogueError(error)) return { code: error.code, message: error.message };
    this.#onError(error, `RPC handler ${method}`);
    return { code: 'INTERNAL', message: 'internal error' };
  }

  #settle(answer: RpcAnswer): void {
    const call = this.#pending.get(answer.id);
    if (!call) return; // timed out already, or an answer meant for an earlier life of this node id
    this.#pending.delete(answer.id);
    clearTimeout(call.timer);
    if (answer.t === 'res') call.resolve(answer.result);
    else call.reject(new RpcRemoteError(call.nodeId, call.method, answer.error));
  }

  #fail(id: string, error: Error): void {
    const call = this.#pending.get(id);
    if (!call) return;
    this.#pending.delete(id);
    clearTimeout(call.timer);
    call.reject(error);
  }
}

/** A `{code, message}` whose code is in the catalogue (a ProtocolError from another copy of the module, say). */
function isCatalogueError(error: unknown): error is { code: ErrorCode; message: string } {
  if (typeof error !== 'object' || error === null) return false;
  const { code, message } = error as { code?: unknown; message?: unknown };
  return isErrorCode(code) && typeof message === 'string';
}
