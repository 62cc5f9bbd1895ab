/**
 * The WebSocket gateway: authenticates and admits upgrades on `/ws` (refusing with an HTTP
 * status and a JSON body, never by accepting and closing), creates a {@link ClientSession} per
 * socket, runs the heartbeat, and tells every client when the node drains.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { STATUS_CODES } from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Logger } from 'pino';
import { CloseCode, HTTP_STATUS, type HttpErrorCode } from '../errors.js';
import { TokenError, type AccessClaims } from '../auth/tokens.js';
import { ClientSession, type SessionServices } from './client-session.js';
import { ClientIpResolver } from './client-ip.js';
import { LocalUserConnectionCap, type UserConnectionCap } from './user-connection-cap.js';
import { UpgradeSpan } from '../telemetry/upgrade-span.js';

/** A listener that captures nothing: the socket outlives the upgrade request it came with. */
const ignore = (): void => {};

/** Refuses the upgrade with the code's HTTP status and a JSON body. */
type Refuse = (code: HttpErrorCode, message: string, retryAfterS?: number) => void;

export class Gateway {
  readonly #services: SessionServices;
  readonly #log: Logger;
  readonly #wss: WebSocketServer;
  readonly #ips: ClientIpResolver;
  readonly #sessions = new Set<ClientSession>();
  readonly #perUser: UserConnectionCap;
  readonly #heartbeat: NodeJS.Timeout;

  /** `perUser`: the `MAX_CONNECTIONS_PER_USER` count, cluster-wide in a cluster; default this node's. */
  constructor(services: SessionServices, perUser?: UserConnectionCap) {
    this.#services = services;
    this.#perUser = perUser ?? new LocalUserConnectionCap(services.config.maxConnectionsPerUser);
    this.#log = services.log;
    this.#ips = new ClientIpResolver(services.config.trustedProxies);
    this.#wss = new WebSocketServer({
      noServer: true,
      maxPayload: services.config.maxPayloadBytes,
      perMessageDeflate: false,
      clientTracking: false,
    });
    this.#heartbeat = setInterval(() => {
      for (const session of this.#sessions) session.heartbeat();
    }, services.config.heartbeatIntervalMs);
    this.#heartbeat.unref();
  }

  get connectionCount(): number {
    return this.#sessions.size;
  }

  sessions(): Iterable<ClientSession> {
    return this.#sessions;
  }

  /** The `upgrade` handler of the node's HTTP server. */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', ignore);
    const span = new UpgradeSpan(request.headers.traceparent);
    const refuse: Refuse = (code, message, retryAfterS) => {
      span.end(code);
      this.#refuse(socket, code, message, retryAfterS);
    };
    const ip = this.#ips.resolve(request);
    this.#admit(request, socket, ip, refuse).then(
      (claims) => {
        if (!claims || socket.destroyed) {
          span.end('ABORTED');
          return;
        }
        this.#wss.handleUpgrade(request, socket, head, (ws) => {
          this.#accept(ws, claims, ip);
          span.end('ok', claims);
        });
      },
      (error: unknown) => {
        span.runIn(() => this.#log.error({ err: error }, 'upgrade failed'));
        refuse('INTERNAL', 'internal error');
      },
    );
  }

  #accept(ws: WebSocket, claims: AccessClaims, ip: string): void {
    const session = new ClientSession(ws, claims, ip, this.#services);
    this.#sessions.add(session);
    ws.once('close', () => this.#sessions.delete(session));
  }

  async #admit(
    request: IncomingMessage,
    socket: Duplex,
    ip: string,
    refuse: Refuse,
  ): Promise<AccessClaims | undefined> {
    const { config, drain, rateLimits, metrics, verifier } = this.#services;
    const url = new URL(request.url ?? '/', 'http://localhost');
    if (url.pathname !== '/ws') {
      refuse('NOT_FOUND', 'WebSocket endpoint is /ws');
      return undefined;
    }
    if (drain.state !== 'RUNNING') {
      refuse('UNAVAILABLE', 'this node is draining; connect to another node', drainRetryAfterSeconds());
      return undefined;
    }
    const origin = request.headers.origin;
    if (config.allowedOrigins && origin !== undefined && !config.allowedOrigins.includes(origin)) {
      refuse('FORBIDDEN', 'origin not allowed');
      return undefined;
    }
    const limited = await rateLimits.consumeUpgrade(ip);
    if (limited) {
      metrics.rateLimited.inc({ kind: 'ip' });
      refuse('RATE_LIMITED', 'too many connection attempts', Math.ceil(limited.retryAfterMs / 1000));
      return undefined;
    }
    let claims: AccessClaims;
    try {
      claims = await verifier.verify(tokenOf(request, url));
    } catch (error) {
      refuse('UNAUTHORIZED', error instanceof TokenError ? error.message : 'invalid token');
      return undefined;
    }
    const release = await this.#perUser.acquire(claims.userId);
    if (!release) {
      metrics.rateLimited.inc({ kind: 'user' });
      refuse('RATE_LIMITED', `at most ${config.maxConnectionsPerUser} connections per user`, 5);
      return undefined;
    }
    // The socket counts until it closes, whether it is upgraded, refused below or dropped.
    socket.once('close', release);
    if (socket.destroyed) release();
    if (drain.state !== 'RUNNING') {
      refuse('UNAVAILABLE', 'this node is draining; connect to another node', drainRetryAfterSeconds());
      return undefined;
    }
    return claims;
  }

  #refuse(socket: Duplex, code: HttpErrorCode, message: string, retryAfterS?: number): void {
    if (socket.destroyed) return;
    const status = HTTP_STATUS[code];
    this.#services.metrics.upgradesRefused.inc({ status: String(status) });
    const body = JSON.stringify({ error: { code, message } });
    const headers = [
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}`,
      'Content-Type: application/json',
      `Content-Length: ${Buffer.byteLength(body)}`,
      'Connection: close',
    ];
    if (retryAfterS !== undefined) headers.push(`Retry-After: ${Math.max(1, Math.ceil(retryAfterS))}`);
    socket.end(`${headers.join('\r\n')}\r\n\r\n${body}`);
  }

  /**
   * Tells every client the node drains: each gets its own `reconnectAfterMs`, spread uniformly
   * over the first half of the window so reconnects do not arrive as a storm.
   */
  announceDrain(deadline: number): void {
    const windowMs = Math.max(0, deadline - Date.now());
    const spreadMs = Math.floor(windowMs / 2);
    for (const session of this.#sessions) {
      session.sendEvent('server.draining', { deadline, reconnectAfterMs: Math.floor(Math.random() * spreadMs) });
    }
  }

  /** Closes every socket still open (`1012` at the drain deadline, `1001` on shutdown). */
  closeAll(code: number = CloseCode.DRAIN_DEADLINE, reason = 'drain deadline reached'): void {
    for (const session of this.#sessions) session.close(code, reason);
  }

  /** Resolves when every socket has closed, or after `timeoutMs`. */
  async waitForSockets(timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (this.#sessions.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  }

  close(): void {
    clearInterval(this.#heartbeat);
    this.#wss.close();
  }
}

function tokenOf(request: IncomingMessage, url: URL): string | undefined {
  const fromQuery = url.searchParams.get('token');
  if (fromQuery) return fromQuery;
  const header = request.headers.authorization;
  const match = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
  return match?.[1];
}

/**
 * `Retry-After` for an upgrade refused while draining: short and jittered (1-3 s), because the
 * client should try again through the load balancer, which sends it to another node.
 */
function drainRetryAfterSeconds(): number {
  return 1 + Math.floor(Math.random() * 3);
}
