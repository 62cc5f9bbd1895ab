/**
 * The plain HTTP side of the node's port: health probes, Prometheus metrics, the admin API and
 * the browser page. Every answer is JSON except `/metrics` and the page.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { HTTP_STATUS, toErrorBody, type HttpErrorCode } from '../errors.js';
import { BusUnavailableError } from '../bus/room-bus.js';
import { StaticFiles } from './static-files.js';
import type { WebhookOutbox } from '../../../backend-bridge/src/index.js';
import { adminWebhooks } from './admin-webhooks.js';
import { parsePage, type AdminService } from './admin-service.js';

/** The operator console's page (built into `dist/web/ops/`). */
const OPS_PAGE = '/ops/index.html';

/** What the HTTP API reads from the node. */
export interface HttpApiDeps {
  readonly config: Config;
  readonly log: Logger;
  readonly version: string;
  readonly startedAt: number;
  isStarted(): boolean;
  isReady(): boolean;
  health(): Record<string, unknown>;
  metrics(): Promise<{ contentType: string; body: string }>;
  /**
   * The cluster-wide admin views (rooms, nodes, a node's drain); they reject with
   * `BusUnavailableError` when Redis does not answer.
   */
  readonly admin: AdminService;
  /** Closes the room on every node; false when no node knows it. */
  closeRoom(roomId: string): Promise<boolean>;
  drain(): { state: string; deadline: number | undefined };
  /** The webhook outbox, for its dead letters (`admin-webhooks.ts`); undefined when webhooks are off. */
  readonly webhooks?: WebhookOutbox | undefined;
  /** The directory of the browser page's files (it may not exist: then only the API answers). */
  readonly webRoot: string;
}

export class HttpApi {
  readonly #deps: HttpApiDeps;
  readonly #adminDigest: Buffer | undefined;
  readonly #files: StaticFiles;

  constructor(deps: HttpApiDeps) {
    this.#deps = deps;
    this.#files = new StaticFiles(deps.webRoot);
    this.#adminDigest = deps.config.adminToken ? sha256(deps.config.adminToken) : undefined;
  }

  /** The `request` handler of the node's HTTP server. */
  handle(request: IncomingMessage, response: ServerResponse): void {
    this.#route(request, response).catch((error: unknown) => {
      // Redis or another node out of reach (UNAVAILABLE with a retry time), or an expected failure.
      const body = toErrorBody(error);
      if (body.code === 'INTERNAL') this.#deps.log.error({ err: error, url: request.url }, 'HTTP handler failed');
      if (response.headersSent) return response.destroy();
      if (body.retryAfterMs !== undefined) {
        response.setHeader('Retry-After', String(Math.max(1, Math.ceil(body.retryAfterMs / 1000))));
      }
      sendError(response, body.code, body.message);
    });
  }

  async #route(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://localhost');
    const path = url.pathname;
    const method = request.method ?? 'GET';
    const deps = this.#deps;

    if (path === '/health/live') return sendJson(response, 200, { status: 'ok' });
    if (path === '/health/startup') {
      return sendJson(response, deps.isStarted() ? 200 : 503, { status: deps.isStarted() ? 'ok' : 'starting' });
    }
    if (path === '/health/ready') {
      const ready = deps.isReady();
      return sendJson(response, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready' });
    }
    if (path === '/health') return sendJson(response, 200, deps.health());
    if (path === '/metrics') {
      const { contentType, body } = await deps.metrics();
      response.writeHead(200, { 'Content-Type': contentType, 'Cache-Control': 'no-store' });
      response.end(body);
      return;
    }
    if (path.startsWith('/admin/')) return this.#admin(request, response, method, path);
    if (path === '/ws') return sendError(response, 'BAD_REQUEST', 'this endpoint needs a WebSocket upgrade');
    if (method === 'GET' || method === 'HEAD') {
      const file = await this.#files.find(path === '/ops' || path === '/ops/' ? OPS_PAGE : path);
      if (file) {
        response.writeHead(200, { 'Content-Type': file.contentType, 'Cache-Control': 'no-cache' });
        response.end(method === 'HEAD' ? undefined : file.body);
        return;
      }
      // Browsers ask for /favicon.ico whatever the page links; the page links its own icon.
      if (path === '/favicon.ico') {
        response.writeHead(204, { 'Cache-Control': 'max-age=86400' });
        response.end();
        return;
      }
    }
    sendError(response, 'NOT_FOUND', `no route for ${method} ${path}`);
  }

  async #admin(request: IncomingMessage, response: ServerResponse, method: string, path: string): Promise<void> {
    if (!this.#adminDigest) return sendError(response, 'FORBIDDEN', 'admin API disabled: set SIGNALING_ADMIN_TOKEN');
    if (!this.#authorized(request)) {
      response.setHeader('WWW-Authenticate', 'Bearer');
      return sendError(response, 'UNAUTHORIZED', 'admin token required');
    }
    const deps = this.#deps;
    const segments = decodeSegments(path);
    if (!segments) return sendError(response, 'BAD_REQUEST', 'malformed percent-encoding in the path');
    // ['admin', 'rooms'], ['admin', 'rooms', id], ['admin', 'rooms', id, 'close'], ['admin', 'drain'],
    // ['admin', 'nodes'], ['admin', 'nodes', id, 'drain']
    const url = new URL(request.url ?? '/', 'http://localhost');
    if (segments[1] === 'nodes' && segments.length === 2) {
      if (method !== 'GET') return sendMethodNotAllowed(response, 'GET');
      return this.#nodes(response, url.searchParams);
    }
    if (segments[1] === 'nodes' && segments.length === 4 && segments[3] === 'drain') {
      if (method !== 'POST') return sendMethodNotAllowed(response, 'POST');
      return sendJson(response, 202, await deps.admin.drainNode(segments[2] as string));
    }
    if (segments[1] === 'webhooks') {
      const answer = await adminWebhooks(request, url, segments.slice(2), deps.webhooks);
      if (answer.allow) response.setHeader('Allow', answer.allow);
      return sendJson(response, answer.status, answer.body);
    }
    if (segments[1] === 'drain' && segments.length === 2) {
      if (method !== 'POST') return sendMethodNotAllowed(response, 'POST');
      return sendJson(response, 202, deps.drain());
    }
    if (segments[1] === 'rooms') {
      if (segments.length === 2) {
        if (method !== 'GET') return sendMethodNotAllowed(response, 'GET');
        const page = await deps.admin.rooms(parsePage(url.searchParams));
        return sendJson(response, 200, {
          nodeId: deps.config.nodeId,
          rooms: page.items,
          nextCursor: page.nextCursor ?? null,
          unreachableNodes: page.unreachableNodes,
        });
      }
      const roomId = segments[2] as string;
      if (segments.length === 3) {
        if (method !== 'GET') return sendMethodNotAllowed(response, 'GET');
        const room = await deps.admin.room(roomId);
        return room ? sendJson(response, 200, room) : sendError(response, 'NOT_FOUND', `no room ${roomId}`);
      }
      if (segments.length === 4 && segments[3] === 'close') {
        if (method !== 'POST') return sendMethodNotAllowed(response, 'POST');
        return (await deps.closeRoom(roomId))
          ? sendJson(response, 200, { closed: true })
          : sendError(response, 'NOT_FOUND', `no room ${roomId}`);
      }
    }
    sendError(response, 'NOT_FOUND', `no admin route ${method} ${path}`);
  }

  async #nodes(response: ServerResponse, query: URLSearchParams): Promise<void> {
    const request = parsePage(query);
    try {
      const page = await this.#deps.admin.nodes(request);
      return sendJson(response, 200, {
        nodeId: this.#deps.config.nodeId,
        nodes: page.items,
        nextCursor: page.nextCursor ?? null,
        unreachableNodes: page.unreachableNodes,
      });
    } catch (error) {
      if (!(error instanceof BusUnavailableError)) throw error;
      response.setHeader('Retry-After', String(Math.max(1, Math.ceil(error.retryAfterMs / 1000))));
      return sendError(response, 'UNAVAILABLE', "Redis did not answer: the cluster's nodes are unknown");
    }
  }

  /** Constant-time comparison of the bearer token (digests have equal length). */
  #authorized(request: IncomingMessage): boolean {
    const header = request.headers.authorization ?? '';
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match || !this.#adminDigest) return false;
    return timingSafeEqual(sha256(match[1] as string), this.#adminDigest);
  }
}

/** The path's segments, percent-decoded; undefined when the encoding is malformed. */
function decodeSegments(path: string): string[] | undefined {
  try {
    return path.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    return undefined;
  }
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
  });
  response.end(text);
}

function sendError(response: ServerResponse, code: HttpErrorCode, message: string): void {
  sendJson(response, HTTP_STATUS[code], { error: { code, message } });
}

function sendMethodNotAllowed(response: ServerResponse, allow: string): void {
  response.setHeader('Allow', allow);
  sendError(response, 'METHOD_NOT_ALLOWED', `method not allowed; use ${allow}`);
}
