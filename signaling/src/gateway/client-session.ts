/**
 * One WebSocket connection: authenticated at the upgrade, it runs each frame through the
 * message path (size limit → JSON → envelope → rate limits → NOT_JOINED → role → schema →
 * handler) one at a time, each frame in a span of its own (rejected ones too, under the client's
 * `traceparent`), answers every request exactly once, and watches its own liveness, backlog and
 * token expiry.
 */
import { randomUUID } from 'node:crypto';
import type { Attributes, SpanContext } from '@opentelemetry/api';
import type { z } from 'zod';
import type { Logger } from 'pino';
import type { RawData, WebSocket } from 'ws';
import type { Config } from '../config.js';
import { CloseCode, ProtocolError, toErrorBody, type ErrorBody } from '../errors.js';
import type { NodeMetrics } from '../metrics.js';
import type { RateLimits, RateLimitRejection } from '../rate-limits.js';
import type { AccessClaims, TokenVerifier } from '../auth/tokens.js';
import { requestEnvelopeSchema, traceparentSchema, type RequestId, type Role } from '../protocol/common.js';
import { findMethod } from '../protocol/index.js';
import { EncodedResult } from '../protocol/method.js';
import type { EphemeralEventName, EventData } from '../protocol/notifications.js';
import type { HandlerContext, HandlerSession } from '../protocol/context.js';
import type { RoomService } from '../rooms/room-service.js';
import type { MediaGateway } from '../rooms/media-gateway.js';
import type { DrainController } from '../drain.js';
import { encodeFrame } from '../bus/room-bus.js';
import { FrameSpan } from '../telemetry/frame-span.js';
import { inChildSpan, SpanKind } from '../telemetry/spans.js';
import { FrameWriter, PreparedFrame } from './prepared-frame.js';

/** Frames queued for processing before the socket stops reading (TCP back-pressure). */
const MAX_QUEUED_FRAMES = 64;
/** How long a closing socket may take before it is destroyed. */
const CLOSE_GRACE_MS = 2000;
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Send options of every notification (shared: the fan-out loop calls this per socket). */
const TEXT_FRAME = { binary: false } as const;

export interface SessionServices {
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: NodeMetrics;
  readonly rooms: RoomService;
  readonly rateLimits: RateLimits;
  readonly verifier: TokenVerifier;
  readonly drain: DrainController;
  media(): MediaGateway | undefined;
  /** An unexpected failure, for Sentry: tags, and the trace of the request it broke. */
  reportError(error: unknown, context: Record<string, string | undefined>, trace?: SpanContext): void;
}

/** What is known of a request so far: the answer's id and the method, as metrics and spans name it. */
interface InboundRequest {
  id: RequestId | null;
  method: string;
}

type RequestEnvelope = z.output<typeof requestEnvelopeSchema>;

/** The gateway's side of a connection; the room service sees it as a `RoomConnection`. */
export class ClientSession implements HandlerSession {
  readonly connectionId = randomUUID();
  readonly userId: string;
  readonly roomId: string;
  readonly ip: string;
  readonly tokenName: string | undefined;
  #expiresAtMs: number;
  #tokenRole: Role;
  readonly #ws: WebSocket;
  readonly #writer: FrameWriter;
  readonly #services: SessionServices;
  readonly #maxBufferedBytes: number;
  /** A direct write that finds the socket below its high-water mark is below the backlog bound too. */
  readonly #highWaterMarkWithinBound: boolean;
  #childLog: Logger | undefined;
  #queue: Promise<void> = Promise.resolve();
  #queued = 0;
  #paused = false;
  #closed = false;
  #missedPongs = 0;
  #slowSince: number | undefined;
  #expiryTimer: NodeJS.Timeout | undefined;

  constructor(ws: WebSocket, claims: AccessClaims, ip: string, services: SessionServices) {
    this.#ws = ws;
    this.#writer = new FrameWriter(ws);
    this.#services = services;
    this.#maxBufferedBytes = services.config.slowConsumer.maxBufferedBytes;
    this.#highWaterMarkWithinBound = this.#writer.highWaterMark <= this.#maxBufferedBytes;
    this.userId = claims.userId;
    this.roomId = claims.roomId;
    this.#tokenRole = claims.role;
    this.tokenName = claims.name;
    this.ip = ip;
    this.#expiresAtMs = claims.expiresAtMs;
    this.#armExpiry();
    ws.on('message', (data, isBinary) => this.#enqueue(data, isBinary));
    ws.on('pong', () => {
      this.#missedPongs = 0;
    });
    ws.on('error', (error) => this.#log.debug({ err: error }, 'socket error'));
    ws.on('close', (code) => this.#onClose(code));
  }

  /** Made on first use: most connections never log, and a child logger per socket costs memory. */
  get #log(): Logger {
    this.#childLog ??= this.#services.log.child({
      connectionId: this.connectionId,
      userId: this.userId,
      roomId: this.roomId,
    });
    return this.#childLog;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get expiresAtMs(): number {
    return this.#expiresAtMs;
  }

  /** The role in the current token (a moderator's role change for the room wins over it). */
  get tokenRole(): Role {
    return this.#tokenRole;
  }

  /** The participant's current role, as the room service knows it (the token's until it joins). */
  get role(): Role {
    return this.#services.rooms.participantOf(this)?.role ?? this.tokenRole;
  }

  /** Writes an encoded frame (a prepared one as built, once for every socket); watches the socket's backlog. */
  sendFrame(payload: string | Buffer | PreparedFrame): void {
    if (this.#closed) return;
    if (payload instanceof PreparedFrame) {
      // The fan-out's path, per socket per event: skip reading the backlog when the write
      // itself says it is small and the socket is not being watched as slow.
      const belowMark = this.#writer.write(payload);
      if (belowMark && this.#highWaterMarkWithinBound && this.#slowSince === undefined) return;
    } else {
      this.#ws.send(payload, TEXT_FRAME);
    }
    this.#checkBacklog();
  }

  sendEvent<E extends EphemeralEventName>(event: E, data: EventData<E>): void {
    this.sendFrame(encodeFrame(event, data));
  }

  /** Closes the connection with a contract close code; safe to call twice. */
  close(code: number, reason = ''): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#services.metrics.closedConnections.inc({ code: String(code) });
    this.#ws.close(code, reason.slice(0, 120));
    // Read again (frames are dropped from now on) so the peer's close frame completes the handshake.
    if (this.#paused) {
      this.#paused = false;
      this.#ws.resume();
    }
    setTimeout(() => this.#ws.terminate(), CLOSE_GRACE_MS).unref();
  }

  /**
   * Replaces the token (`session.refresh`); returns the new expiry. A new role in it applies as
   * `moderation.setRole` would, unless a moderator set this user's role in the room.
   */
  async refresh(token: string): Promise<number> {
    let claims: AccessClaims;
    try {
      claims = await this.#services.verifier.verify(token);
    } catch (error) {
      throw new ProtocolError('FORBIDDEN', error instanceof Error ? error.message : 'invalid token');
    }
    if (claims.userId !== this.userId || claims.roomId !== this.roomId) {
      throw new ProtocolError('FORBIDDEN', 'the new token is for another user or room');
    }
    this.#expiresAtMs = claims.expiresAtMs;
    this.#armExpiry();
    if (claims.role !== this.#tokenRole) {
      this.#tokenRole = claims.role;
      await this.#services.rooms.tokenRoleChanged(this);
    }
    return this.#expiresAtMs;
  }

  /** Called on every heartbeat tick: pings, and ends peers that missed two pongs. */
  heartbeat(): void {
    if (this.#closed) return;
    if (this.#missedPongs >= 2) {
      this.#log.info('peer missed two pongs; terminating');
      this.#services.metrics.closedConnections.inc({ code: '1006' });
      this.#closed = true;
      this.#ws.terminate();
      return;
    }
    this.#missedPongs++;
    this.#ws.ping();
    this.#checkBacklog();
  }

  #checkBacklog(): void {
    if (this.#ws.bufferedAmount <= this.#maxBufferedBytes) {
      this.#slowSince = undefined;
      return;
    }
    const { graceMs } = this.#services.config.slowConsumer;
    const now = Date.now();
    this.#slowSince ??= now;
    if (now - this.#slowSince >= graceMs) {
      this.#log.warn({ bufferedAmount: this.#ws.bufferedAmount }, 'slow consumer closed');
      this.#services.metrics.slowConsumers.inc();
      this.close(CloseCode.TRY_AGAIN_LATER, 'slow consumer');
    }
  }

  #armExpiry(): void {
    clearTimeout(this.#expiryTimer);
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, this.#expiresAtMs - Date.now()));
    this.#expiryTimer = setTimeout(() => {
      if (Date.now() >= this.#expiresAtMs) this.close(CloseCode.TOKEN_EXPIRED, 'token expired');
      else this.#armExpiry();
    }, delay);
    this.#expiryTimer.unref();
  }

  #enqueue(data: RawData, isBinary: boolean): void {
    if (this.#closed) return;
    this.#queued++;
    if (this.#queued >= MAX_QUEUED_FRAMES && !this.#paused) {
      this.#paused = true;
      this.#ws.pause();
    }
    this.#queue = this.#queue
      // With more frames queued behind this one, let other sockets take their turn first: one
      // connection's burst must not hold the event loop for everyone else.
      .then(() => (this.#queued > 1 ? yieldTurn() : undefined))
      .then(() => this.#process(data, isBinary))
      .catch((error: unknown) => this.#log.error({ err: error }, 'frame processing failed'))
      .finally(() => {
        this.#queued--;
        if (this.#paused && this.#queued < MAX_QUEUED_FRAMES / 2) {
          this.#paused = false;
          if (!this.#closed) this.#ws.resume();
        }
      });
  }

  async #process(data: RawData, isBinary: boolean): Promise<void> {
    if (this.#closed) return;
    const frame = new FrameSpan(performance.now());
    const request: InboundRequest = { id: null, method: 'invalid' };
    let outcome = 'ok';
    let failure: unknown;
    try {
      await this.#receive(data, isBinary, frame, request);
    } catch (error) {
      const body = toErrorBody(error);
      outcome = body.code;
      failure = error;
      if (body.code === 'INTERNAL') {
        // In the frame's span, so the log line and the report name its trace.
        frame.runAlways(() => {
          this.#log.error({ err: error, method: request.method }, 'handler failed');
          this.#services.reportError(
            error,
            { method: request.method, userId: this.userId, roomId: this.roomId },
            frame.spanContext,
          );
        });
      }
      this.#services.metrics.errors.inc({ code: body.code });
      this.#respond(errorFrame(request.id, body));
    } finally {
      this.#services.metrics.messagesReceived.inc({ method: request.method, outcome });
      this.#services.metrics.messageSeconds.observe(
        { method: request.method },
        (performance.now() - frame.startedAt) / 1000,
      );
      frame.end(request.method, outcome, () => this.#spanAttributes(request.method, outcome), failure);
    }
  }

  /** Size limit → JSON → envelope; the rest runs in the frame's span, parented on the client's. */
  async #receive(data: RawData, isBinary: boolean, frame: FrameSpan, request: InboundRequest): Promise<void> {
    // Every frame counts against the connection's and the user's limits, valid or not.
    const rejection = await this.#services.rateLimits.consumeMessage(this.connectionId, this.userId);
    const decidedAt = performance.now();
    if (isBinary) {
      await this.#limit(rejection, frame, decidedAt);
      throw new ProtocolError('BAD_REQUEST', 'binary frames are not accepted: send UTF-8 JSON text');
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(rawText(data));
    } catch {
      await this.#limit(rejection, frame, decidedAt);
      throw new ProtocolError('BAD_REQUEST', 'frame is not valid JSON');
    }
    const envelope = requestEnvelopeSchema.safeParse(parsed);
    if (!envelope.success) {
      request.id = usableId(parsed);
      frame.start(usableTraceparent(parsed));
      await this.#limit(rejection, frame, decidedAt);
      throw new ProtocolError('BAD_REQUEST', 'invalid request envelope', {
        details: issuesOf(envelope.error.issues),
      });
    }
    request.id = envelope.data.id;
    frame.start(envelope.data.traceparent);
    await frame.run(() => this.#dispatch(envelope.data, rejection, decidedAt, frame, request));
  }

  /** Rate limits → NOT_JOINED → drain → method limit → role → schema → handler. */
  async #dispatch(
    envelope: RequestEnvelope,
    rejection: RateLimitRejection | undefined,
    decidedAt: number,
    frame: FrameSpan,
    request: InboundRequest,
  ): Promise<void> {
    await this.#limit(rejection, frame, decidedAt);
    const definition = findMethod(envelope.method);
    const method = definition ? envelope.method : 'unknown';
    request.method = method;
    if (!definition) throw new ProtocolError('UNKNOWN_METHOD', `unknown method ${envelope.method.slice(0, 64)}`);
    if (method !== 'room.join' && !this.#services.rooms.participantOf(this)) {
      throw new ProtocolError('NOT_JOINED', 'join the room first');
    }
    if (method === 'room.join' && this.#services.drain.state !== 'RUNNING') {
      throw new ProtocolError('UNAVAILABLE', 'this node is draining; reconnect to another node', {
        retryAfterMs: 1000,
      });
    }
    const limitFrom = performance.now();
    const methodRejection = await this.#services.rateLimits.consumeMethod(
      method,
      this.userId,
      this.connectionId,
      this.role,
    );
    await this.#limit(methodRejection, frame, performance.now(), limitFrom);
    if (definition.roles !== 'all' && !definition.roles.includes(this.role)) {
      throw new ProtocolError('FORBIDDEN', `${method} is not allowed for role ${this.role}`);
    }
    const input = definition.data.safeParse(envelope.data ?? {});
    if (!input.success)
      throw new ProtocolError('BAD_REQUEST', 'invalid data', { details: issuesOf(input.error.issues) });
    const result = await inChildSpan(
      handlerSpanName(method),
      SpanKind.INTERNAL,
      () => ({ 'rpc.method': method }),
      async () => definition.handle(this.#context(), input.data),
    );
    const encoded = result instanceof EncodedResult ? result.json : JSON.stringify(result ?? {});
    this.#respond(`{"id":${JSON.stringify(request.id)},"ok":true,"data":${encoded}}`);
  }

  /** Refuses the frame when a limit did (a child span over the decision), closing an abusive connection. */
  async #limit(
    rejection: RateLimitRejection | undefined,
    frame: FrameSpan,
    decidedAt: number,
    askedAt = frame.startedAt,
  ): Promise<void> {
    if (!rejection) return;
    this.#services.metrics.rateLimited.inc({ kind: rejection.kind });
    frame.refused(rejection, askedAt, decidedAt);
    if (await this.#services.rateLimits.isAbusive(this.connectionId)) {
      this.#log.warn('closing a connection that kept sending far past its rate limits');
      this.close(CloseCode.POLICY, 'rate limits exceeded repeatedly');
    }
    throw new ProtocolError('RATE_LIMITED', `rate limit exceeded (${rejection.kind})`, {
      retryAfterMs: rejection.retryAfterMs,
    });
  }

  /** The frame span's attributes (built only when it records). */
  #spanAttributes(method: string, outcome: string): Attributes {
    const participant = this.#services.rooms.participantOf(this);
    return {
      'rpc.system': 'trading-room',
      'rpc.method': method,
      'trading_room.room_id': this.roomId,
      'trading_room.user_id': this.userId,
      'trading_room.participant_id': participant?.participantId ?? '',
      'trading_room.role': participant?.role ?? this.tokenRole,
      'trading_room.outcome': outcome,
    };
  }

  #context(): HandlerContext {
    return {
      session: this,
      rooms: this.#services.rooms,
      media: this.#services.media(),
      config: this.#services.config,
      log: this.#log,
    };
  }

  #respond(frame: string): void {
    if (this.#ws.readyState === this.#ws.OPEN) this.#ws.send(frame);
  }

  #onClose(code: number): void {
    this.#closed = true;
    clearTimeout(this.#expiryTimer);
    this.#services.rateLimits.forgetConnection(this.connectionId);
    this.#services.rooms.leave(this, 'disconnected').catch((error: unknown) => {
      this.#log.error({ err: error }, 'leaving after disconnect failed');
    });
    this.#log.debug({ code }, 'connection closed');
  }
}

function yieldTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function rawText(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString();
  return Array.isArray(data) ? Buffer.concat(data).toString() : Buffer.from(data).toString();
}

/** The handler's span: `sfu <operation>` for the SFU's methods, `handle <method>` for the others. */
function handlerSpanName(method: string): string {
  return method.startsWith('sfu.') ? `sfu ${method.slice(4)}` : `handle ${method}`;
}

/** The `traceparent` of a request whose envelope is otherwise invalid, when it is well-formed. */
function usableTraceparent(parsed: unknown): string | undefined {
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return undefined;
  const traceparent = (parsed as { traceparent?: unknown }).traceparent;
  return traceparentSchema.safeParse(traceparent).success ? (traceparent as string) : undefined;
}

/** The `id` of a request whose envelope is otherwise invalid, when it is usable. */
function usableId(parsed: unknown): RequestId | null {
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return null;
  const id = (parsed as { id?: unknown }).id;
  if (typeof id === 'string' && id.length <= 128) return id;
  if (typeof id === 'number' && Number.isSafeInteger(id)) return id;
  return null;
}

function issuesOf(
  issues: readonly { path: readonly PropertyKey[]; message: string }[],
): { path: string; message: string }[] {
  return issues.slice(0, 10).map((issue) => ({ path: issue.path.map(String).join('.'), message: issue.message }));
}

function errorFrame(id: RequestId | null, body: ErrorBody): string {
  return `{"id":${JSON.stringify(id)},"ok":false,"error":${JSON.stringify(body)}}`;
}
