/**
 * A rolling deploy through real nginx, as Kubernetes runs one. Redis and three node processes
 * stand behind Debian's nginx running the repository's load balancer config (rendered with
 * loopback ports); 300 SDK clients in two rooms connect through nginx (`?room=` picks the node by
 * consistent hash) while each room's presenter keeps publishing chat and alerts. Then, one node at
 * a time, as the Deployment's rolling update (maxSurge 1, maxUnavailable 0) does it: a replacement
 * starts on a new port; once it is ready, nginx's upstream list is re-rendered with it and without
 * the old node (`nginx -s reload`, as endpoints add the new pod and drop the terminating one); once
 * nginx's old workers stopped accepting, the old node gets SIGTERM (the end of preStop): readiness
 * turns 503, its clients are told to move and reconnect through nginx to the others.
 *
 * Afterwards every client is joined again through nginx in its room, as the same participant; each
 * got every durable event of its room's log in Redis once, in order, in the log's frames; nobody
 * waited longer than the drain window; nginx's access log shows no new connection sent to a node
 * after it left the list and no failed upstream attempt at all, and its error log no upstream
 * error. Prints the reconnect-time distribution.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { TradingRoomClient, type ConnectionState, type ResyncCause } from '../../signaling/client/index.js';
import { nodeSocketFactory } from '../../signaling/client/node.js';
import { eventually } from '../../test-support/async.js';
import { spawnNode, type ChildNode } from '../../test-support/child-node.js';
import {
  clientLogMismatch,
  repeatedOnWire,
  tappedSocketFactory,
  type LoggedEvent,
  type ReceivedNotification,
  type RecordedClient,
} from '../../test-support/cluster.js';
import { testToken } from '../../test-support/harness.js';
import { TestNginx } from '../../test-support/nginx.js';
import { TestRedis } from '../../test-support/redis.js';
import { GENEROUS_LIMITS, range } from '../../test-support/room-helpers.js';

const ROOMS = ['desk-a', 'desk-b'] as const;
const CLIENTS_PER_ROOM = 150;
const DRAIN_TIMEOUT_MS = 10_000;
const KEY_PREFIX = 'trading-room';

/** A recorded client that also notes when it was told a node drains. */
interface DrillClient extends RecordedClient {
  readonly roomId: string;
  /** `Date.now()` of every `server.draining` frame. */
  readonly drainingAt: number[];
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

function distribution(values: number[]): string {
  const sorted = [...values].sort((a, b) => a - b);
  return `p50 ${percentile(sorted, 50)} ms, p95 ${percentile(sorted, 95)} ms, max ${sorted.at(-1)} ms (n=${sorted.length})`;
}

describe('rolling deploy through nginx', { timeout: 240_000 }, () => {
  const started: { close(): Promise<void> | void }[] = [];
  afterAll(async () => {
    for (const s of started.reverse()) await s.close();
  }, 60_000);

  it('300 clients in two rooms ride out a rolling deploy of all three nodes: nothing lost, nothing twice', async () => {
    const t0 = Date.now();
    const redis = await TestRedis.start();
    started.push(redis);
    const env = (id: number): Record<string, string> => ({
      ...GENEROUS_LIMITS,
      REDIS_URL: redis.url,
      NODE_ID: `node-${id}`,
      NODE_TTL_MS: '2000',
      DRAIN_TIMEOUT_MS: String(DRAIN_TIMEOUT_MS),
      TRUSTED_PROXIES: '127.0.0.1',
      // Trading rooms of this size count traders (`participant.count`) rather than announce each
      // join: 300 joins are not 22,000 durable deliveries on two shared cores.
      LARGE_ROOM_THRESHOLD: '20',
      LOG_LEVEL: 'info', // the drain's own lines (no per-connection lines at info)
    });
    // One after the other: on a busy two-core machine three start-ups at once can each take long.
    const nodes: ChildNode[] = [];
    const nodeIds = new Map<ChildNode, string>();
    started.push({ close: () => Promise.all([...nodeIds.keys()].map((n) => n.kill())).then(() => {}) });
    for (const id of [1, 2, 3]) {
      const node = await spawnNode(env(id));
      nodes.push(node);
      nodeIds.set(node, `node-${id}`);
    }
    const nodesAt = Date.now();
    const nginx = await TestNginx.start(nodes.map((n) => ({ port: n.port })));
    started.push(nginx);
    const clients: DrillClient[] = [];
    started.push({ close: () => clients.forEach((c) => c.client.close()) });

    // --- 300 SDK clients through nginx, in batches -------------------------------------------
    const connect = async (roomId: string, userId: string, role: 'presenter' | 'trader'): Promise<DrillClient> => {
      const received: ReceivedNotification[] = [];
      const frames: string[] = [];
      const states: { state: ConnectionState; at: number }[] = [];
      const resyncs: ResyncCause[] = [];
      const drainingAt: number[] = [];
      let frame = '';
      const client = new TradingRoomClient({
        url: nginx.wsUrl(roomId),
        token: await testToken(userId, { roomId, role }),
        createSocket: tappedSocketFactory(nodeSocketFactory, (data) => {
          frames.push(data);
          frame = data;
          if (data.startsWith('{"event":"server.draining"')) drainingAt.push(Date.now());
        }),
      });
      client.on('notification', (notification) =>
        received.push({ notification, frame, seq: (notification as { seq?: number }).seq }),
      );
      client.on('resync', (_join, cause) => resyncs.push(cause));
      const closed = new Promise<{ code: number; reason: string }>((resolve) => client.on('closed', resolve));
      const join = await client.connect();
      client.on('state', (state) => states.push({ state, at: Date.now() }));
      return { userId, roomId, client, join, received, frames, states, resyncs, closed, drainingAt };
    };
    const plan = ROOMS.flatMap((roomId) =>
      range(0, CLIENTS_PER_ROOM - 1).map((i) => ({
        roomId,
        userId: `${roomId}-${i}`,
        role: i === 0 ? ('presenter' as const) : ('trader' as const),
      })),
    );
    for (let first = 0; first < plan.length; first += 25) {
      const batch = plan.slice(first, first + 25);
      clients.push(...(await Promise.all(batch.map((p) => connect(p.roomId, p.userId, p.role)))));
    }
    const connectedAt = Date.now();

    // --- chat and alerts flow in both rooms all along ---------------------------------------
    let flowing = true;
    const sent = new Map<string, number>(ROOMS.map((r) => [r, 0]));
    const refused: string[] = [];
    const flows = ROOMS.map(async (roomId) => {
      const presenter = clients.find((c) => c.roomId === roomId && c.join.role === 'presenter') as DrillClient;
      const trader = clients.find((c) => c.roomId === roomId && c.join.role === 'trader') as DrillClient;
      for (let i = 0; flowing; i++) {
        try {
          if (i % 3 === 0)
            await presenter.client.request('alert.publish', { symbol: 'ES', action: 'buy', price: 5000 + i });
          else await (i % 3 === 1 ? presenter : trader).client.request('chat.send', { text: `${roomId} ${i}` });
          sent.set(roomId, (sent.get(roomId) ?? 0) + 1);
        } catch (error) {
          // Only while the sender itself moves: the request was cut off with its socket.
          const code = (error as { code?: string }).code;
          if (code !== 'DISCONNECTED') refused.push(`${roomId} ${i}: ${String(error)}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    });
    await eventually(() => ROOMS.every((r) => (sent.get(r) ?? 0) >= 5), 10_000, 'chat and alerts flowing');

    // --- the rolling deploy -------------------------------------------------------------------
    const redisClient = new Redis(redis.port, '127.0.0.1');
    started.push({ close: () => void redisClient.disconnect() });
    /** participantId → nodeId, from the rooms' presence in Redis. */
    const presence = async (): Promise<Map<string, string>> => {
      const out = new Map<string, string>();
      for (const roomId of ROOMS) {
        for (const value of await redisClient.hvals(`${KEY_PREFIX}:{room:${roomId}}:presence`)) {
          const p = JSON.parse(value) as { participantId: string; nodeId: string };
          out.set(p.participantId, p.nodeId);
        }
      }
      return out;
    };
    const rolls: {
      nodeId: string;
      port: number;
      leftAt: number;
      sigtermAt: number;
      exitedAt: number;
      moved: number;
    }[] = [];
    for (let i = 0; i < 3; i++) {
      const old = nodes[i] as ChildNode;
      const oldId = nodeIds.get(old) as string;
      // maxSurge 1, maxUnavailable 0 (deployment.yaml): the new pod is ready first, on a new port.
      // (Not overlapped with the previous drain, as Kubernetes could: on two shared cores a start-up
      // would slow the moving clients down.)
      const replacement = await spawnNode(env(4 + i));
      nodeIds.set(replacement, `node-${4 + i}`);
      nodes[i] = replacement;
      // Endpoints update: the replacement is in, the old node is out; nginx's old workers stop
      // accepting before the reload counts as done.
      await nginx.setUpstreams(nodes.map((n) => ({ port: n.port })));
      const leftAt = Date.now();
      const onOld = [...(await presence()).entries()].filter(([, nodeId]) => nodeId === oldId).map(([id]) => id);
      // preStop is over: SIGTERM. Readiness flips to 503 at once (while it still has clients).
      const sigtermAt = Date.now();
      old.signal('SIGTERM');
      if (onOld.length > 0) {
        await eventually(async () => (await old.http('/health/ready')).status === 503, 5000, `${oldId} not ready`);
      }
      const exit = await old.waitForExit(DRAIN_TIMEOUT_MS + 15_000);
      expect(exit, `${oldId} exits 0 after its drain`).toMatchObject({ code: 0, signal: null });
      expect(old.stdout, `${oldId} logged its drain`).toMatch(/"msg":"draining"/);
      expect(old.stdout, `${oldId}: every client left before the deadline`).not.toMatch(/drain deadline reached/);
      // Its clients are back, through nginx, on the other nodes.
      const movedIds = new Set(onOld);
      const moved = clients.filter((c) => movedIds.has(c.join.participantId));
      await eventually(() => moved.every((c) => c.client.state === 'joined'), 20_000, `clients of ${oldId} rejoined`);
      rolls.push({ nodeId: oldId, port: old.port, leftAt, sigtermAt, exitedAt: exit.at, moved: moved.length });
    }
    const rolledAt = Date.now();
    const sentBefore = ROOMS.map((r) => sent.get(r) ?? 0);
    await eventually(
      () => ROOMS.every((r, k) => (sent.get(r) ?? 0) >= (sentBefore[k] ?? 0) + 3),
      10_000,
      'chat and alerts flowing after the deploy',
    );
    flowing = false;
    await Promise.all(flows);

    // --- everything arrived, once ----------------------------------------------------------
    const markers = new Map<string, number>();
    for (const roomId of ROOMS) {
      const presenter = clients.find((c) => c.roomId === roomId && c.join.role === 'presenter') as DrillClient;
      markers.set(roomId, (await presenter.client.request('chat.send', { text: 'deploy done' })).seq);
    }
    await eventually(
      () => clients.every((c) => c.client.lastSeq >= (markers.get(c.roomId) ?? Infinity)),
      20_000,
      'every client to get the last chat of its room',
    );
    const logs = new Map<string, LoggedEvent[]>();
    for (const roomId of ROOMS) {
      const entries = await redisClient.xrange(`${KEY_PREFIX}:{room:${roomId}}:log`, '-', '+');
      logs.set(
        roomId,
        entries.map(([id, fields]) => ({
          seq: Number(id.split('-')[0]),
          event: fields[fields.indexOf('e') + 1] ?? '',
          frame: fields[fields.indexOf('f') + 1] ?? '',
        })),
      );
    }
    expect(refused).toEqual([]);
    for (const c of clients) {
      expect(c.client.state, c.userId).toBe('joined');
      expect(c.client.joined, `${c.userId} is the same participant`).toMatchObject({
        resumed: true,
        participantId: c.join.participantId,
      });
      expect(c.resyncs, c.userId).toEqual([]);
      expect(clientLogMismatch(c, logs.get(c.roomId) ?? []), `${c.userId} against the log`).toBeUndefined();
      expect(repeatedOnWire(c.frames), `${c.userId}: seqs sent twice`).toEqual([]);
    }
    // Every participant is in its room on the new nodes.
    const finalPresence = await presence();
    expect(finalPresence.size).toBe(clients.length);
    for (const c of clients) expect(['node-4', 'node-5', 'node-6']).toContain(finalPresence.get(c.join.participantId));
    // Every client started on a node that was rolled, so each moved at least once.
    expect(
      rolls.reduce((n, r) => n + r.moved, 0),
      'clients moved during the deploy',
    ).toBeGreaterThanOrEqual(clients.length);

    // --- nobody waited longer than the drain window ------------------------------------------
    const reconnectMs: number[] = [];
    const sinceSigtermMs: number[] = [];
    let worst = { ms: 0, detail: '' };
    for (const c of clients) {
      for (const [k, s] of c.states.entries()) {
        if (s.state !== 'reconnecting') continue;
        const back = c.states.slice(k + 1).find((x) => x.state === 'joined');
        expect(back, `${c.userId} came back`).toBeDefined();
        reconnectMs.push((back?.at ?? Infinity) - s.at);
      }
      for (const at of c.drainingAt) {
        const roll = rolls.find((r) => at >= r.sigtermAt && at <= r.exitedAt);
        expect(roll, `${c.userId}: server.draining during a roll`).toBeDefined();
        const back = c.states.find((x) => x.state === 'joined' && x.at >= at);
        const ms = (back?.at ?? Infinity) - (roll?.sigtermAt ?? 0);
        sinceSigtermMs.push(ms);
        if (ms > worst.ms) {
          const t = (x: number): number => x - (roll?.sigtermAt ?? 0);
          worst = {
            ms,
            detail:
              `${c.userId}: draining at +${t(at)} ms; states ${c.states.map((x) => `${x.state}@+${t(x.at)}`).join(' ')}; ` +
              `frames after: ${c.frames
                .slice(c.frames.findIndex((f) => f.startsWith('{"event":"server.draining"')) + 1)
                .filter((f) => !f.includes('"chat.message"') && !f.includes('"alert.published"'))
                .slice(0, 4)
                .map((f) => f.slice(0, 160))
                .join(' | ')}`,
          };
        }
      }
    }
    expect(
      Math.max(...sinceSigtermMs),
      `SIGTERM → joined elsewhere, worst client: ${worst.detail}`,
    ).toBeLessThanOrEqual(DRAIN_TIMEOUT_MS);

    // --- nginx: every socket went through it; no new connection to a node after it left, no
    // failed upstream attempt. (A WebSocket's line is written when it closes: close them all.)
    const sockets = clients.reduce((n, c) => n + 1 + c.states.filter((s) => s.state === 'joined').length, 0);
    for (const c of clients) c.client.close();
    await eventually(
      () => nginx.accessLog().filter((e) => e.request.startsWith('GET /ws')).length >= sockets,
      20_000,
      `${sockets} WebSockets in nginx's access log`,
    );
    const entries = nginx.accessLog().filter((e) => e.request.startsWith('GET /ws'));
    for (const roll of rolls) {
      const address = `127.0.0.1:${roll.port}`;
      const late = entries.filter((e) => e.startedAt >= roll.leftAt && e.upstreams.includes(address));
      expect(late, `new connections sent to ${roll.nodeId} after it left`).toEqual([]);
    }
    expect(entries).toHaveLength(sockets);
    const failedAttempts = entries.filter(
      (e) => e.upstreams.length !== 1 || e.upstreamStatuses.some((s) => s !== '101'),
    );
    expect(failedAttempts, 'upstream attempts that failed').toEqual([]);
    expect(
      nginx
        .errorLog()
        .split('\n')
        .filter((l) => /\[(error|crit|alert|emerg)\]/.test(l)),
    ).toEqual([]);

    console.log(
      `deploy drill: ${clients.length} clients, ${rolls.map((r) => `${r.nodeId} moved ${r.moved} (drain ${r.exitedAt - r.sigtermAt} ms)`).join(', ')}; ` +
        `reconnecting → joined ${distribution(reconnectMs)}; SIGTERM → joined elsewhere ${distribution(sinceSigtermMs)}; ` +
        `${ROOMS.map((r) => `${r}: ${sent.get(r)} chat/alerts, log to seq ${markers.get(r)}`).join('; ')}; ` +
        `nodes ${nodesAt - t0} ms, ${clients.length} clients ${connectedAt - nodesAt} ms, deploy ${rolledAt - connectedAt} ms, total ${Date.now() - t0} ms`,
    );
  });
});
