/**
 * Test harness: a real node on a free loopback port, tokens for it, SDK clients and raw
 * WebSocket clients. Everything started here is closed by `closeAll()`.
 */
import { afterEach } from 'vitest';
import WebSocket from 'ws';
import { loadConfig } from '../signaling/src/config.js';
import { TradingRoomNode, type NodeOptions } from '../signaling/src/node.js';
import { signAccessToken } from '../signaling/src/auth/tokens.js';
import type { Role } from '../signaling/src/protocol/common.js';
import { TradingRoomClient, type ClientOptions, type JoinResult } from '../signaling/client/index.js';
import { nodeSocketFactory } from '../signaling/client/node.js';

export const TEST_SECRET = 'test-secret-test-secret-test-secret-0123456789';
export const ADMIN_TOKEN = 'admin-token-for-tests-0123456789';

export interface TokenOptions {
  readonly roomId?: string;
  readonly role?: Role;
  readonly name?: string;
  readonly ttlSeconds?: number;
}

/** An access token signed with {@link TEST_SECRET} (room `room-1`, role `trader` unless given). */
export function testToken(userId: string, options: TokenOptions = {}): Promise<string> {
  return signAccessToken(TEST_SECRET, {
    userId,
    roomId: options.roomId ?? 'room-1',
    role: options.role ?? 'trader',
    ...(options.name ? { name: options.name } : {}),
    ...(options.ttlSeconds ? { ttlSeconds: options.ttlSeconds } : {}),
  });
}

export class TestNode {
  readonly node: TradingRoomNode;
  readonly #clients = new Set<{ close(): void }>();

  constructor(node: TradingRoomNode) {
    this.node = node;
  }

  get port(): number {
    return this.node.port;
  }

  get httpUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  token(userId: string, options: TokenOptions = {}): Promise<string> {
    return testToken(userId, options);
  }

  /** An SDK client (not yet connected). */
  async client(userId: string, options: TokenOptions & Partial<ClientOptions> = {}): Promise<TradingRoomClient> {
    const token = await this.token(userId, options);
    const client = new TradingRoomClient({
      url: this.wsUrl,
      token,
      createSocket: nodeSocketFactory,
      reconnect: { initialDelayMs: 50, maxDelayMs: 500 },
      ...options,
    });
    this.#clients.add(client);
    return client;
  }

  /** An SDK client, connected and joined. */
  async joined(
    userId: string,
    options: TokenOptions & Partial<ClientOptions> = {},
  ): Promise<{ client: TradingRoomClient; join: JoinResult }> {
    const client = await this.client(userId, options);
    const join = await client.connect();
    return { client, join };
  }

  /** A raw socket, open (rejects with the HTTP status when the upgrade is refused). */
  async raw(token: string | undefined, headers: Record<string, string> = {}): Promise<RawSocket> {
    const url = token === undefined ? this.wsUrl : `${this.wsUrl}?token=${encodeURIComponent(token)}`;
    const ws = new WebSocket(url, { headers, perMessageDeflate: false });
    const raw = new RawSocket(ws);
    this.#clients.add({ close: () => ws.terminate() });
    await raw.opened;
    return raw;
  }

  async close(): Promise<void> {
    for (const client of this.#clients) client.close();
    await this.node.close();
  }
}

/** A plain `ws` client that records what it receives. */
export class RawSocket {
  readonly ws: WebSocket;
  readonly messages: Record<string, unknown>[] = [];
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;
  #nextId = 1;
  #waiters: (() => void)[] = [];

  constructor(ws: WebSocket) {
    this.ws = ws;
    this.opened = new Promise((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('unexpected-response', (_req, res) => {
        const status = res.statusCode ?? 0;
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => reject(new UpgradeRefused(status, res.headers, body)));
      });
      ws.once('error', reject);
    });
    this.closed = new Promise((resolve) =>
      ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    );
    ws.on('message', (data) => {
      this.messages.push(JSON.parse(data.toString()) as Record<string, unknown>);
      for (const w of this.#waiters.splice(0)) w();
    });
  }

  send(frame: string | Buffer, binary = false): void {
    this.ws.send(frame, { binary });
  }

  /** Sends a request and waits for its response. */
  async request(method: string, data: unknown = {}): Promise<Record<string, unknown>> {
    const id = this.#nextId++;
    this.send(JSON.stringify({ id, method, data }));
    return this.waitFor((m) => m.id === id);
  }

  /** Waits until a received message matches (checks what already arrived first). */
  async waitFor(match: (m: Record<string, unknown>) => boolean, timeoutMs = 5000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.find(match);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`timed out; got ${JSON.stringify(this.messages.slice(-5))}`);
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  events(name: string): Record<string, unknown>[] {
    return this.messages.filter((m) => m.event === name);
  }
}

export class UpgradeRefused extends Error {
  constructor(
    readonly status: number,
    readonly headers: Record<string, string | string[] | undefined>,
    readonly body: string,
  ) {
    super(`upgrade refused with ${status}`);
  }
}

/** Starts a node on a free port with test defaults; `env` overrides; `options` (a bus, a logger) as given. */
export async function startTestNode(env: Record<string, string> = {}, options: NodeOptions = {}): Promise<TestNode> {
  const config = loadConfig({
    NODE_ENV: 'test',
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'silent',
    SIGNALING_JWT_SECRET: TEST_SECRET,
    SIGNALING_ADMIN_TOKEN: ADMIN_TOKEN,
    MEDIA_ENABLED: 'false',
    ROOM_EMPTY_GRACE_MS: '1000',
    SESSION_RESUME_GRACE_MS: '0',
    ...env,
  });
  const node = new TradingRoomNode(config, options);
  await node.start();
  return new TestNode(node);
}

/**
 * For tests that each start their own node: registers an `afterEach` that closes every node the
 * test started, and returns the function that starts one (`defaults`, overridden by `env`).
 */
export function nodePerTest(
  defaults: Record<string, string> = {},
): (env?: Record<string, string>) => Promise<TestNode> {
  const started: TestNode[] = [];
  afterEach(async () => {
    for (const t of started.splice(0)) await t.close();
  });
  return async (env = {}) => {
    const t = await startTestNode({ ...defaults, ...env });
    started.push(t);
    return t;
  };
}

export { eventually } from './async.js';
