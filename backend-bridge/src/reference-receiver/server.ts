/**
 * The reference receiver: a small `node:http` server that plays the trading platform's backend
 * as the contract describes it (`PROTOCOL.md`, "Backend"). It answers the access check from a
 * JSON file (`access.ts`) and verifies, de-duplicates and prints webhooks (`webhooks.ts`). The
 * tests and the load tests run it; a backend team starts from it.
 *
 * Routes are registered with {@link ReferenceReceiver.route} (`GET /rooms/:roomId/access`,
 * `POST /webhooks`); each sees the whole raw body, since webhook signatures cover the exact
 * bytes. An interceptor in front of the routes lets tests make the backend slow, failing or
 * rude, and {@link ReferenceReceiver.stop} / {@link ReferenceReceiver.listen} take it away
 * and bring it back on the same port.
 *
 * CLI: `npx tsx backend-bridge/src/reference-receiver/server.ts --access access.json
 * [--port 9090] [--host 127.0.0.1] [--token TOKEN] [--webhook-secret whsec_…] [--latency-ms 5]`.
 */
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { AccessTable, accessRoute } from './access.js';
import { mountWebhooks } from './webhooks.js';

/** A request as a route sees it. */
export interface ReceiverRequest {
  readonly method: string;
  readonly url: URL;
  /** The `:name` parts of the route's pattern. */
  readonly params: Readonly<Record<string, string>>;
  readonly headers: IncomingHttpHeaders;
  /** The raw body, read in full (UTF-8). */
  readonly body: string;
}

/** A route's answer: a JSON body unless `body` is a string. */
export interface ReceiverResponse {
  readonly status: number;
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

export type RouteHandler = (request: ReceiverRequest) => ReceiverResponse | Promise<ReceiverResponse>;

/**
 * Runs before routing; resolves true when it answered (or dropped) the request itself. Tests use
 * it to make the backend misbehave.
 */
export type Interceptor = (request: IncomingMessage, response: ServerResponse) => boolean | Promise<boolean>;

export interface ReferenceReceiverOptions {
  /** Every answer waits this long first (a backend's latency, for load tests). */
  readonly latencyMs?: number;
  /** Where it reports what it does (one line each); default silent. */
  readonly print?: (line: string) => void;
}

interface Route {
  readonly method: string;
  readonly pattern: RegExp;
  readonly names: readonly string[];
  readonly handle: RouteHandler;
}

/** Larger bodies are refused with 413. */
const MAX_BODY_BYTES = 1024 * 1024;

export class ReferenceReceiver {
  readonly #routes: Route[] = [];
  readonly #latencyMs: number;
  readonly print: (line: string) => void;
  #interceptor: Interceptor | undefined;
  #server: Server | undefined;
  #port = 0;
  #host = '127.0.0.1';

  constructor(options: ReferenceReceiverOptions = {}) {
    this.#latencyMs = options.latencyMs ?? 0;
    this.print = options.print ?? (() => {});
  }

  /** Adds a route; `pattern` is a path with `:name` segments (`/rooms/:roomId/access`). */
  route(method: string, pattern: string, handle: RouteHandler): this {
    const names: string[] = [];
    const source = pattern
      .split('/')
      .map((segment) => {
        if (!segment.startsWith(':')) return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
        names.push(segment.slice(1));
        return '([^/]+)';
      })
      .join('/');
    this.#routes.push({ method: method.toUpperCase(), pattern: new RegExp(`^${source}$`), names, handle });
    return this;
  }

  /** Sets (or, with undefined, removes) the hook in front of the routes. */
  intercept(interceptor: Interceptor | undefined): void {
    this.#interceptor = interceptor;
  }

  /** The base URL, once listening (`http://127.0.0.1:PORT`). */
  get url(): string {
    return `http://${this.#host.includes(':') ? `[${this.#host}]` : this.#host}:${this.#port}`;
  }

  get listening(): boolean {
    return this.#server !== undefined;
  }

  /**
   * Starts listening; by default on a free loopback port the first time and on the same port
   * again after {@link stop}. Resolves the base URL.
   */
  async listen(port: number = this.#port, host: string = this.#host): Promise<string> {
    if (this.#server) return this.url;
    const server = createServer({ keepAliveTimeout: 5000 }, (request, response) => {
      void this.#handle(request, response);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.#server = server;
    this.#host = host;
    this.#port = (server.address() as AddressInfo).port;
    return this.url;
  }

  /** Goes away: stops listening and cuts every open connection. Safe to call twice. */
  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    try {
      if (this.#interceptor && (await this.#interceptor(request, response))) return;
      const url = new URL(request.url ?? '/', 'http://receiver');
      const method = request.method ?? 'GET';
      const match = this.#match(method, url.pathname);
      if (match === 'method') return send(response, { status: 405, body: { error: 'method not allowed' } });
      if (!match) return send(response, { status: 404, body: { error: 'not found' } });
      const body = await readBody(request);
      if (body === undefined) return send(response, { status: 413, body: { error: 'body too large' } });
      const answer = await match.route.handle({ method, url, params: match.params, headers: request.headers, body });
      if (this.#latencyMs > 0) await new Promise((resolve) => setTimeout(resolve, this.#latencyMs));
      send(response, answer);
    } catch (error) {
      this.print(`error: ${error instanceof Error ? error.message : String(error)}`);
      if (!response.headersSent) send(response, { status: 500, body: { error: 'internal error' } });
      else response.destroy();
    }
  }

  #match(method: string, path: string): { route: Route; params: Record<string, string> } | 'method' | undefined {
    let pathMatched = false;
    for (const route of this.#routes) {
      const found = route.pattern.exec(path);
      if (!found) continue;
      pathMatched = true;
      if (route.method !== method) continue;
      const params: Record<string, string> = {};
      route.names.forEach((name, i) => (params[name] = decodeURIComponent(found[i + 1] ?? '')));
      return { route, params };
    }
    return pathMatched ? 'method' : undefined;
  }
}

function send(response: ServerResponse, answer: ReceiverResponse): void {
  if (response.destroyed) return;
  const text =
    typeof answer.body === 'string' ? answer.body : answer.body === undefined ? '' : JSON.stringify(answer.body);
  const type = typeof answer.body === 'string' ? 'text/plain; charset=utf-8' : 'application/json';
  response.writeHead(answer.status, {
    ...(text === '' ? {} : { 'Content-Type': type }),
    'Content-Length': Buffer.byteLength(text),
    ...answer.headers,
  });
  response.end(text);
}

/** The whole body as UTF-8, or undefined past {@link MAX_BODY_BYTES}. */
async function readBody(request: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** What the CLI builds the receiver from. */
export interface ReceiverSetup extends ReferenceReceiverOptions {
  /** Answers the access check (`GET /rooms/:roomId/access`). */
  readonly access: AccessTable;
  /** The bearer token the access check must carry (`BACKEND_TOKEN` of the nodes); unset: none. */
  readonly token?: string | undefined;
  /** `BACKEND_WEBHOOK_SECRET` of the nodes (`whsec_…`), for `POST /webhooks`. */
  readonly webhookSecret?: string | undefined;
}

/** A receiver with every route of the contract. */
export function createReferenceReceiver(setup: ReceiverSetup): ReferenceReceiver {
  const receiver = new ReferenceReceiver(setup);
  receiver.route('GET', '/rooms/:roomId/access', accessRoute(setup.access, setup.token, receiver.print));
  if (setup.webhookSecret) mountWebhooks(receiver, setup.webhookSecret);
  return receiver;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      access: { type: 'string' },
      port: { type: 'string', default: '9090' },
      host: { type: 'string', default: '127.0.0.1' },
      token: { type: 'string' },
      'webhook-secret': { type: 'string' },
      'latency-ms': { type: 'string', default: '0' },
    },
  });
  if (!values.access) throw new Error('--access <file.json> is required (see backend-bridge/README.md)');
  const access = await AccessTable.fromFile(values.access);
  const receiver = createReferenceReceiver({
    access,
    token: values.token,
    webhookSecret: values['webhook-secret'],
    latencyMs: Number(values['latency-ms']),
    print: (line) => console.log(line),
  });
  const url = await receiver.listen(Number(values.port), values.host);
  console.log(`reference receiver listening on ${url} (access from ${values.access})`);
  process.on('SIGHUP', () => {
    void access.reload().then(
      () => console.log('access file reloaded'),
      (error: unknown) => console.error(`access file not reloaded: ${String(error)}`),
    );
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void receiver.stop());
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  });
}
