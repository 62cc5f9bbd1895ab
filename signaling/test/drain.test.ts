/**
 * Draining one node, as a real child process with a real SIGTERM: readiness turns 503 at once,
 * new upgrades get 503 + Retry-After, every client is told `server.draining` with its own
 * jittered `reconnectAfterMs` and acts on it spread over the window, stragglers are closed with
 * 1012 at the deadline, a second SIGTERM does not restart the drain, and the process exits 0
 * well before DRAIN_TIMEOUT_MS + 5 s. `POST /admin/drain` starts the same drain.
 */
import { afterAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { RawSocket } from '../../test-support/harness.js';
import { TradingRoomClient, type SocketFactory } from '../client/index.js';
import { nodeSocketFactory } from '../client/node.js';
import { spawnNode, type ChildNode } from '../../test-support/child-node.js';
import { consecutiveBreak, refusal } from '../../test-support/sockets.js';

const CLIENTS = 300;
const DRAIN_TIMEOUT_MS = 6000;

const nodes: ChildNode[] = [];
const clients: TradingRoomClient[] = [];
const raws: WebSocket[] = [];
afterAll(async () => {
  for (const c of clients) c.close();
  for (const ws of raws) ws.terminate();
  await Promise.all(nodes.map((n) => n.kill()));
});

interface Tracked {
  client: TradingRoomClient;
  joinLastSeq: number;
  seqs: number[];
  draining?: { at: number; deadline: number; reconnectAfterMs: number };
  /** When the client acted on the notice: it dropped the socket to reconnect elsewhere. */
  actedAt?: number;
  refusals: { status: number; retryAfterS: number }[];
}

async function sdkClient(node: ChildNode, userId: string, role: 'trader' | 'presenter' = 'trader'): Promise<Tracked> {
  const tracked: Tracked = {
    client: undefined as unknown as TradingRoomClient,
    joinLastSeq: 0,
    seqs: [],
    refusals: [],
  };
  const factory: SocketFactory = (url) => {
    const like = nodeSocketFactory(url);
    (like as unknown as WebSocket).on('unexpected-response', (_req, res) => {
      tracked.refusals.push({ status: res.statusCode ?? 0, retryAfterS: Number(res.headers['retry-after']) });
    });
    return like;
  };
  const client = new TradingRoomClient({
    url: node.wsUrl,
    token: await node.token(userId, { role }),
    createSocket: factory,
    reconnect: { initialDelayMs: 200, maxDelayMs: 2000 },
  });
  tracked.client = client;
  clients.push(client);
  client.on('notification', (n) => {
    const seq = (n as { seq?: number }).seq;
    if (seq !== undefined) tracked.seqs.push(seq);
  });
  client.onEvent('server.draining', (d) => (tracked.draining = { ...d, at: Date.now() }));
  client.on('state', (s) => {
    if (s === 'reconnecting' && tracked.draining && tracked.actedAt === undefined) tracked.actedAt = Date.now();
  });
  tracked.joinLastSeq = (await client.connect()).lastSeq;
  return tracked;
}

async function straggler(
  node: ChildNode,
  userId: string,
): Promise<{ raw: RawSocket; closed: Promise<{ code: number; at: number }> }> {
  const ws = new WebSocket(`${node.wsUrl}?token=${await node.token(userId)}`, { perMessageDeflate: false });
  raws.push(ws);
  const raw = new RawSocket(ws);
  const closed = raw.closed.then(({ code }) => ({ code, at: Date.now() }));
  await raw.opened;
  expect((await raw.request('room.join', {})).ok).toBe(true);
  return { raw, closed };
}

async function until(predicate: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('drain on SIGTERM', () => {
  it(
    `tells ${CLIENTS} clients, spreads their reconnects, closes stragglers with 1012 and exits 0`,
    { timeout: 60_000 },
    async () => {
      const node = await spawnNode({
        DRAIN_TIMEOUT_MS: String(DRAIN_TIMEOUT_MS),
        RATE_LIMIT_IP_CONNECTIONS: '100000',
        RATE_LIMIT_CHAT_MESSAGES: '100000',
        MAX_PARTICIPANTS_PER_ROOM: '1000',
      });
      nodes.push(node);

      const tracked: Tracked[] = [];
      for (let i = 0; i < CLIENTS; i += 50) {
        tracked.push(...(await Promise.all(Array.from({ length: 50 }, (_, k) => sdkClient(node, `viewer-${i + k}`)))));
      }
      const stragglers = await Promise.all([1, 2, 3].map((i) => straggler(node, `straggler-${i}`)));
      expect((await node.health()).connections).toBe(CLIENTS + 3);

      // A presenter keeps a chat stream going.
      const presenter = await sdkClient(node, 'presenter', 'presenter');
      let chats = 0;
      let streaming = true;
      const stream = (async () => {
        while (streaming) {
          try {
            await presenter.client.request('chat.send', { text: `tick ${chats++}` });
          } catch {
            return; // the presenter left the draining node
          }
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      await until(() => chats >= 20, 10_000, 'the chat stream to start');

      // SIGTERM: readiness and new upgrades refuse at once.
      const sigtermAt = Date.now();
      node.signal('SIGTERM');
      await until(async () => (await node.http('/health/ready')).status === 503, 2000, 'readiness to turn 503');
      expect(Date.now() - sigtermAt).toBeLessThan(1000);
      expect((await node.http('/health/live')).status).toBe(200);
      const refused = await refusal(
        new RawSocket(new WebSocket(`${node.wsUrl}?token=${await node.token('late')}`)).opened,
      );
      expect(refused.status).toBe(503);
      const retryAfterS = Number(refused.headers['retry-after']);
      expect(retryAfterS).toBeGreaterThanOrEqual(1);
      expect(retryAfterS).toBeLessThanOrEqual(Math.ceil(DRAIN_TIMEOUT_MS / 1000));
      const health = await node.health();
      const drain = health.drain as { state: string; deadline: number };
      expect(drain.state).toBe('DRAINING');
      expect(Math.abs(drain.deadline - (sigtermAt + DRAIN_TIMEOUT_MS))).toBeLessThan(500);

      // Every client is told, with the node's deadline.
      await until(
        () => tracked.every((t) => t.draining) && presenter.draining !== undefined,
        5000,
        'every client to be told',
      );
      for (const t of tracked) expect(t.draining?.deadline).toBe(drain.deadline);
      for (const s of stragglers) expect(s.raw.events('server.draining')).toHaveLength(1);

      // A second SIGTERM during the drain does not restart it.
      await until(() => Date.now() - sigtermAt > 1500, 2000, 'a moment into the drain');
      node.signal('SIGTERM');
      await until(
        () => node.logs().some((l) => l.msg === 'signal received: already draining'),
        2000,
        'the second signal to be logged',
      );
      expect(((await node.health()).drain as { deadline: number }).deadline).toBe(drain.deadline);

      // Stragglers are closed with 1012 at the deadline, then the process exits 0.
      const closes = await Promise.all(stragglers.map((s) => s.closed));
      for (const c of closes) {
        expect(c.code).toBe(1012);
        expect(c.at).toBeGreaterThanOrEqual(drain.deadline - 50);
        expect(c.at).toBeLessThan(drain.deadline + 1500);
      }
      const exit = await node.exited;
      streaming = false;
      await stream;
      expect(exit.code).toBe(0);
      expect(exit.at - sigtermAt).toBeLessThan(DRAIN_TIMEOUT_MS + 5000);
      expect(node.crashLines()).toEqual([]);
      expect(node.logs().filter((l) => l.msg === 'draining')).toHaveLength(1);

      // The clients acted on the notice when told, spread over the window, not as a storm.
      const acted = tracked.map((t) => {
        expect(t.actedAt, 'every client left the draining node').toBeDefined();
        const d = t.draining as NonNullable<Tracked['draining']>;
        expect((t.actedAt as number) - d.at).toBeGreaterThanOrEqual(d.reconnectAfterMs - 20);
        expect((t.actedAt as number) - d.at).toBeLessThan(d.reconnectAfterMs + 1000);
        expect(t.actedAt as number).toBeLessThan(drain.deadline);
        return (t.actedAt as number) - sigtermAt;
      });
      acted.sort((a, b) => a - b);
      const inFirstSecond = acted.filter((ms) => ms < 1000).length;
      expect(inFirstSecond).toBeLessThan(CLIENTS * 0.6);
      expect(acted.filter((ms) => ms >= 2000).length).toBeGreaterThan(CLIENTS * 0.15);
      const perSecond = [0, 1, 2, 3, 4, 5].map(
        (s) => acted.filter((ms) => ms >= s * 1000 && ms < (s + 1) * 1000).length,
      );
      expect(Math.max(...perSecond)).toBeLessThan(CLIENTS * 0.6);

      // Their reconnects to this node were refused with 503 + Retry-After, as expected here.
      const refusals = tracked.flatMap((t) => t.refusals);
      expect(refusals.length).toBeGreaterThan(0);
      for (const r of refusals) {
        expect(r.status).toBe(503);
        expect(r.retryAfterS).toBeGreaterThanOrEqual(1);
      }
      // And what they saw before leaving was complete and in order.
      for (const t of tracked) {
        expect(t.seqs[0]).toBe(t.joinLastSeq + 1);
        expect(consecutiveBreak(t.seqs)).toBeUndefined();
      }
      expect(chats).toBeGreaterThan(20);
    },
  );
});

describe('drain on POST /admin/drain', () => {
  it('starts the same drain; a later SIGTERM keeps its deadline', { timeout: 30_000 }, async () => {
    const node = await spawnNode({ DRAIN_TIMEOUT_MS: '2000' });
    nodes.push(node);
    const viewers = await Promise.all([1, 2, 3].map((i) => sdkClient(node, `v-${i}`)));
    const holdout = await straggler(node, 'holdout');

    expect((await node.http('/admin/drain', { method: 'POST' })).status).toBe(401);
    expect((await node.http('/health/ready')).status).toBe(200);

    const startedAt = Date.now();
    const response = await node.http('/admin/drain', { method: 'POST', admin: true });
    expect(response.status).toBe(202);
    const body = (await response.json()) as { state: string; deadline: number };
    expect(body.state).toBe('DRAINING');
    expect(Math.abs(body.deadline - (startedAt + 2000))).toBeLessThan(500);
    expect((await node.http('/health/ready')).status).toBe(503);
    expect(
      (await refusal(new RawSocket(new WebSocket(`${node.wsUrl}?token=${await node.token('late')}`)).opened)).status,
    ).toBe(503);
    // Asked again, it reports the drain under way.
    const again = (await (await node.http('/admin/drain', { method: 'POST', admin: true })).json()) as {
      deadline: number;
    };
    expect(again.deadline).toBe(body.deadline);

    await until(() => viewers.every((v) => v.draining), 3000, 'every client to be told');
    node.signal('SIGTERM');
    const closed = await holdout.closed;
    expect(closed.code).toBe(1012);
    expect(closed.at).toBeGreaterThanOrEqual(body.deadline - 50);
    const exit = await node.exited;
    expect(exit.code).toBe(0);
    expect(exit.at - startedAt).toBeLessThan(2000 + 5000);
    for (const v of viewers) expect(v.actedAt).toBeDefined();
    expect(node.logs().filter((l) => l.msg === 'draining')).toHaveLength(1);
    expect(node.crashLines()).toEqual([]);
  });
});
