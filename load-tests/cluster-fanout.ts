/**
 * Cluster fan-out benchmark: two trading-room nodes sharing rooms through Redis, against two
 * Socket.IO servers with @socket.io/redis-adapter on the same Redis. Two questions, each on a
 * single Redis and on a 3-master Redis Cluster (sharded pub/sub; Socket.IO's sharded adapter):
 *
 * S2 — one room, its subscribers split evenly over the two nodes, one presenter (on the first
 *   node) sending chat as fast as acknowledged (the window and pump of fanout.ts). Deliveries per
 *   server CPU-second (CPU of both server processes together) and p99 send → receive latency.
 *   Both sides are up at once and take turns in short windows, round after round; a ratio is the
 *   median of the per-round ratios. Target: trading-room ÷ Socket.IO ≥ 1.5 at a p99 ≤ Socket.IO's.
 *
 * S3 — 2,000 rooms × 4 members over the two nodes, one chat to each room in turn, twice: bytes
 *   Redis wrote to its clients (`INFO stats` total_net_output_bytes; over all masters of the
 *   Cluster) per message delivered to its room. Two layouts: "placed" — each room's four members
 *   on one node, rooms alternating between the nodes, as a load balancer hashing on the room puts
 *   them (the documented deployment); "split" — each room's members 2 + 2 over the nodes, the
 *   sender alternating (the worst case: every node has members in every room). The two sides run
 *   one after the other on the same Redis. Target: trading-room ÷ Socket.IO ≤ 0.5.
 *
 * Pinning as in fanout.ts: every server process on the server core, the load generator and Redis
 * (every master) on the other.
 *
 *   scripts/with-node.sh npx tsx load-tests/cluster-fanout.ts [--quick] [--only=s2-redis,s2-cluster,s3-redis,s3-cluster]
 *     [--nice] [--cpu-prof]
 *
 * `--quick` (small sizes, under a minute) is for debugging the harness; its ratios mean little.
 * `--layout=placed,split` (default both) picks S3's layouts.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { signAccessToken } from '../signaling/src/auth/tokens.js';
import { closeAll, connectAll, stats, StampLatency, type BenchClient, type Identity } from './lib/clients.js';
import {
  freePort,
  pinSelf,
  ROOT,
  sleep,
  startRedis,
  startRedisCluster,
  type RedisClusterProcess,
  type RedisProcess,
  type ServerProcess,
} from './lib/processes.js';
import { RedisStatsReader } from './lib/redis-stats.js';
import { fmt, median, table, verdict, writeReport } from './lib/report.js';
import {
  BENCH_SECRET,
  chatText,
  identities,
  interleavedRounds,
  loopbackSource,
  measureThroughput,
  publicEnv,
  serverGroup,
  socketIoShardedTarget,
  socketIoTarget,
  start,
  tradingRoomTarget,
  type Target,
  type Throughput,
} from './lib/scenario.js';

const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
const PARTS = ['s2-redis', 's2-cluster', 's3-redis', 's3-cluster'] as const;
type Part = (typeof PARTS)[number];
const only = args
  .find((a) => a.startsWith('--only='))
  ?.slice('--only='.length)
  .split(',');
for (const name of only ?? []) {
  if (!(PARTS as readonly string[]).includes(name))
    throw new Error(`--only: unknown part ${name} (${PARTS.join(', ')})`);
}

/** S2: participants of the one room, both nodes together. */
const S2_PARTICIPANTS = QUICK ? 100 : 1000;
const S2_ROUNDS = QUICK ? 1 : 5;
const S2_MAX_EXTRA_ROUNDS = QUICK ? 0 : 3;
/** No extra S2 rounds once a part has run this long. */
const S2_BUDGET_MS = QUICK ? 20_000 : 150_000;
/** Rounds in which other processes used more than this many cores are re-run (within the budget). */
const MAX_FOREIGN_CPU = 0.25;
/** Every this many participants one records latency (offset 1 so both nodes are sampled). */
const LATENCY_SAMPLE_EVERY = 5;
const S2_WINDOW = {
  window: 16,
  maxInFlightDeliveries: 32 * S2_PARTICIPANTS,
  maxMessages: 20_000,
  text: chatText(80),
};
/** One window per side before the rounds, so the first round does not measure the JIT (skipped with --quick). */
const S2_JIT_WARMUP = { ...S2_WINDOW, warmupMs: 1500, measureMs: 500 };
const S2_MEASURE = QUICK
  ? { ...S2_WINDOW, warmupMs: 300, measureMs: 700 }
  : { ...S2_WINDOW, warmupMs: 500, measureMs: 2500 };
const TARGET_EFFICIENCY_RATIO = 1.5;
const TARGET_P99_RATIO = 1.0;

/** S3: rooms of four members, placed on one node or split 2 + 2 over both. */
const S3_ROOMS = QUICK ? 100 : 2000;
const S3_LAYOUTS = ['placed', 'split'] as const;
type S3Layout = (typeof S3_LAYOUTS)[number];
const layouts = (args
  .find((a) => a.startsWith('--layout='))
  ?.slice('--layout='.length)
  .split(',') ?? S3_LAYOUTS) as S3Layout[];
for (const name of layouts) {
  if (!(S3_LAYOUTS as readonly string[]).includes(name))
    throw new Error(`--layout: unknown layout ${name} (${S3_LAYOUTS.join(', ')})`);
}
const LAYOUT_TEXT: Record<S3Layout, string> = {
  placed: 'each room on one node, rooms alternating (placed by the load balancer)',
  split: 'each room 2 + 2 over both nodes (worst case)',
};
const S3_MEMBERS = 4;
/** Measured messages per room (one more, not measured, checks that every room works first). */
const S3_PASSES = 2;
/** Chat requests not yet acknowledged, all senders together. */
const S3_WINDOW = 64;
/** The messages go out in this many bursts, each its own `INFO` interval (see `medianBurstBytesPerMessage`). */
const S3_BURSTS = 8;
const S3_SEND_TIMEOUT_MS = 60_000;
/**
 * Idle Redis traffic (heartbeats, periodic per-room checks) is measured over this long, after a
 * second to settle: longer than the 10 s period of trading-room's per-room position check, so
 * each node's check lands in the window once.
 */
const S3_IDLE_MS = QUICK ? 500 : 10_500;
/** Wait after joining before anything is measured: subscriptions Socket.IO's adapters make without waiting settle. */
const SETTLE_MS = QUICK ? 500 : 1000;
const TARGET_BYTES_RATIO = 0.5;

const CONNECT_CONCURRENCY = 16;
/** Wait for one chat to reach every member of a room (or of every room) at most this long. */
const SHARING_TIMEOUT_MS = 10_000;

/** trading-room's limits off (as in fanout.ts): one sender must not be rate-limited. */
const TRADING_ROOM_ENV = {
  RATE_LIMITS_ENABLED: 'false',
  MAX_CONNECTIONS_PER_USER: '100000',
  RATE_LIMIT_IP_CONNECTIONS: '1000000',
};

interface RedisUnderTest {
  readonly kind: 'redis' | 'cluster';
  readonly label: string;
  /** trading-room's variables naming this Redis. */
  readonly tradingRoomEnv: Record<string, string>;
  /** The Socket.IO reference on this Redis. */
  readonly socketIo: Target;
  readonly ports: readonly number[];
  /** CPU seconds of every Redis process together. */
  cpu(): number;
  stop(): Promise<void>;
}

async function startRedisUnderTest(kind: 'redis' | 'cluster'): Promise<RedisUnderTest> {
  if (kind === 'redis') {
    const redis: RedisProcess = await startRedis();
    return {
      kind,
      label: 'single Redis',
      tradingRoomEnv: { REDIS_URL: redis.url },
      socketIo: { ...socketIoTarget(redis.url), name: 'socket.io (redis-adapter)' },
      ports: [redis.port],
      cpu: () => redis.cpu(),
      stop: () => redis.stop(),
    };
  }
  const cluster: RedisClusterProcess = await startRedisCluster(3);
  return {
    kind,
    label: 'Redis Cluster, 3 masters',
    tradingRoomEnv: { REDIS_CLUSTER_NODES: cluster.seeds },
    socketIo: socketIoShardedTarget('socket.io (sharded adapter)', cluster.seeds),
    ports: cluster.masters.map((m) => m.port),
    cpu: () => cluster.masters.reduce((a, m) => a + m.cpu(), 0),
    stop: () => cluster.stop(),
  };
}

/** The two nodes of one side: trading-room nodes A and B, or two Socket.IO servers. */
function nodeTargets(side: 'trading-room' | 'socket.io', redis: RedisUnderTest): [Target, Target] {
  if (side === 'socket.io') {
    return [
      { ...redis.socketIo, name: `${redis.socketIo.name} A` },
      { ...redis.socketIo, name: `${redis.socketIo.name} B` },
    ];
  }
  const node = (letter: string): Target =>
    tradingRoomTarget(`trading-room ${letter}`, {
      ...TRADING_ROOM_ENV,
      ...redis.tradingRoomEnv,
      NODE_ID: `bench-${letter.toLowerCase()}`,
    });
  return [node('A'), node('B')];
}

function sideName(side: 'trading-room' | 'socket.io', redis: RedisUnderTest): string {
  return side === 'trading-room' ? 'trading-room ×2' : `${redis.socketIo.name} ×2`;
}

interface NodePair {
  readonly name: string;
  readonly targets: readonly [Target, Target];
  readonly servers: readonly ServerProcess[];
  /** Both servers as one: CPU summed. */
  readonly group: ServerProcess;
}

/** With `--cpu-prof`: where the servers of S2 write their V8 CPU profiles. */
const PROFILE_DIR = args.includes('--cpu-prof')
  ? join(ROOT, 'load-tests', 'reports', `profiles-${Date.now()}`)
  : undefined;

/** `node` flags for a server: a CPU profile per process with `--cpu-prof` (S2 only: S3 measures bytes). */
function profileArgs(target: Target, part: string): string[] {
  if (!PROFILE_DIR) return [];
  const file = `${part}-${target.name.replace(/\W+/g, '_')}.cpuprofile`;
  return ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`, `--cpu-prof-name=${file}`];
}

async function startPair(name: string, targets: [Target, Target], profilePart?: string): Promise<NodePair> {
  const started = await Promise.allSettled(
    targets.map((target) => start(target, profilePart ? profileArgs(target, profilePart) : [])),
  );
  const servers = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) {
    await Promise.all(servers.map((s) => s.stop()));
    throw failed.reason;
  }
  return { name, targets, servers, group: serverGroup(name, servers) };
}

/** Connects `ids[i]` to node `nodeOf(i)`; clients come back in the order of `ids`. */
async function connectSplit(
  pair: NodePair,
  ids: readonly Identity[],
  nodeOf: (i: number) => 0 | 1,
): Promise<BenchClient[]> {
  const byNode: [number[], number[]] = [[], []];
  ids.forEach((_, i) => byNode[nodeOf(i)].push(i));
  const connected = await Promise.all(
    byNode.map((indexes, n) => {
      const target = pair.targets[n] as Target;
      const server = pair.servers[n] as ServerProcess;
      return connectAll(
        { dialect: target.dialect, port: server.port, path: target.path },
        indexes.map((i) => ids[i] as Identity),
        { concurrency: CONNECT_CONCURRENCY, timeoutMs: 150_000 },
      ).catch((error: unknown) => {
        throw new Error(`${target.name}: ${error instanceof Error ? error.message : String(error)}`, {
          cause: error,
        });
      });
    }),
  );
  const clients = new Array<BenchClient>(ids.length);
  byNode.forEach((indexes, n) =>
    indexes.forEach((i, k) => (clients[i] = (connected[n] as BenchClient[])[k] as BenchClient)),
  );
  return clients;
}

interface SharingCheck {
  readonly ok: boolean;
  /** Per node: members that received the chat / members on that node. */
  readonly received: readonly [number, number];
  readonly members: readonly [number, number];
  readonly reply: string;
  readonly text: string;
}

/**
 * Whether chat crosses the nodes: `sends` (sender, room members) each send one chat; waits
 * (bounded) until every member got its room's chat. Members are counted per node.
 */
async function checkSharing(
  sends: readonly { sender: BenchClient; members: readonly BenchClient[] }[],
  nodeOfClient: (client: BenchClient) => 0 | 1,
): Promise<SharingCheck> {
  const before = new Map<BenchClient, number>();
  for (const { members } of sends) for (const m of members) before.set(m, m.chats);
  let firstRefusal = '';
  const replies = await Promise.all(sends.map(({ sender }) => sender.request('chat.send', { text: 'sharing check' })));
  for (const r of replies) if (!r.ok && !firstRefusal) firstRefusal = r.body.slice(0, 200);
  const until = Date.now() + SHARING_TIMEOUT_MS;
  const reached = (): boolean => [...before].every(([m, n]) => m.chats > n);
  while (!reached() && Date.now() < until) await sleep(50);
  const received: [number, number] = [0, 0];
  const members: [number, number] = [0, 0];
  for (const [m, n] of before) {
    const node = nodeOfClient(m);
    members[node]++;
    if (m.chats > n) received[node]++;
  }
  const ok = reached();
  return {
    ok,
    received,
    members,
    reply: firstRefusal || 'every chat.send acknowledged',
    text:
      `node A: ${received[0]} of ${members[0]} members received, node B: ${received[1]} of ${members[1]} ` +
      `(within ${SHARING_TIMEOUT_MS / 1000} s); ${firstRefusal ? `a chat.send was refused: ${firstRefusal}` : 'every chat.send acknowledged'}`,
  };
}

// ---------------------------------------------------------------------------------------------
// S2: one room over two nodes, throughput per server CPU-second and p99

interface S2Live {
  readonly pair: NodePair;
  readonly clients: BenchClient[];
  readonly sender: BenchClient;
  readonly latency: StampLatency;
  readonly sharing: SharingCheck;
  readonly connectSeconds: number;
  /**
   * Per measured call (warm-up and drain included): Redis CPU seconds and messages, for Redis'
   * own cost per message, and each node's CPU seconds, for how the work splits between them.
   */
  readonly redisCost: { cpu: number; messages: number; nodeCpu: [number, number] }[];
}

interface S2Summary {
  readonly server: string;
  readonly deliveriesPerSecond: number;
  readonly deliveriesPerServerCpuSecond: number;
  readonly serverCpu: number;
  readonly latencyP50Ms: number;
  readonly latencyP99Ms: number;
  readonly latencySamples: number;
  readonly messagesPerSecond: number;
  readonly loadGeneratorCore: number;
  readonly redisCpuMsPerThousandMessages: number;
  /** Node A's (the sender's node) share of both nodes' CPU. */
  readonly senderNodeCpuShare: number;
  readonly missing: number;
  readonly refused: number;
  readonly lastRefusal: string;
  readonly clientsClosed: number;
  readonly serverWarnings: number;
  readonly ratioEfficiency: number;
  readonly ratioP99: number;
  readonly ratioDeliveries: number;
}

async function s2SetUp(
  side: 'trading-room' | 'socket.io',
  redis: RedisUnderTest,
  ids: readonly Identity[],
): Promise<S2Live> {
  const pair = await startPair(sideName(side, redis), nodeTargets(side, redis), `s2-${redis.kind}`);
  try {
    const t0 = performance.now();
    const nodeOf = (i: number): 0 | 1 => (i % 2 === 0 ? 0 : 1);
    const clients = await connectSplit(pair, ids, nodeOf);
    const connectSeconds = (performance.now() - t0) / 1000;
    await sleep(SETTLE_MS);
    const sender = clients[0] as BenchClient;
    const index = new Map(clients.map((c, i) => [c, i]));
    const sharing = await checkSharing([{ sender, members: clients }], (c) => nodeOf(index.get(c) ?? 0));
    const latency = new StampLatency(400_000);
    latency.attach(clients.filter((_, i) => i % LATENCY_SAMPLE_EVERY === 1));
    return { pair, clients, sender, latency, sharing, connectSeconds, redisCost: [] };
  } catch (error) {
    process.stderr.write(`${pair.name} failed; server output:\n${pair.group.tail()}\n`);
    await pair.group.stop();
    throw error;
  }
}

async function s2Part(kind: 'redis' | 'cluster'): Promise<Record<string, unknown>> {
  const started = Date.now();
  const redis = await startRedisUnderTest(kind);
  const lives: S2Live[] = [];
  try {
    process.stdout.write(
      `S2 on ${redis.label}: one room of ${S2_PARTICIPANTS} over two nodes, one sender as fast as acknowledged\n`,
    );
    const ids = await identities({
      count: S2_PARTICIPANTS,
      room: 'bench',
      prefix: 'user-',
      presenterIndex: 0,
      spreadSources: true,
      sourceBlock: kind === 'redis' ? 2 : 3,
    });
    for (const side of ['trading-room', 'socket.io'] as const) {
      const live = await s2SetUp(side, redis, ids);
      lives.push(live);
      process.stdout.write(
        `  ${live.pair.name}: ${S2_PARTICIPANTS} joined (half on each node) in ${live.connectSeconds.toFixed(1)} s; ` +
          `chat crosses the nodes: ${live.sharing.ok ? 'yes' : 'NO'} — ${live.sharing.text}\n`,
      );
    }
    const broken = lives.filter((l) => !l.sharing.ok);
    if (broken.length > 0) {
      return {
        redis: redis.label,
        notMeasured: broken.map(
          (l) => `${l.pair.name}: chat does not reach every member across the nodes: ${l.sharing.text}`,
        ),
        sharing: Object.fromEntries(lives.map((l) => [l.pair.name, l.sharing])),
        serverOutput: Object.fromEntries(broken.map((l) => [l.pair.name, l.pair.group.tail()])),
      };
    }
    const measure = async (live: S2Live, options: typeof S2_MEASURE): Promise<Throughput> => {
      const r0 = redis.cpu();
      const n0 = live.pair.servers.map((server) => server.cpu());
      const t = await measureThroughput(live.pair.group, live.clients, live.sender, {
        ...options,
        latency: live.latency,
      });
      const [a = 0, b = 0] = live.pair.servers.map((server, i) => server.cpu() - (n0[i] ?? 0));
      live.redisCost.push({ cpu: redis.cpu() - r0, messages: t.acked, nodeCpu: [a, b] });
      return t;
    };
    if (!QUICK) for (const live of lives) await measure(live, S2_JIT_WARMUP);
    for (const live of lives) live.redisCost.length = 0;
    const measured = await interleavedRounds({
      targets: lives,
      name: (l) => l.pair.name,
      order: 'alternate',
      measure: (l) => measure(l, S2_MEASURE),
      rounds: S2_ROUNDS,
      maxExtraRounds: S2_MAX_EXTRA_ROUNDS,
      maxForeignCpu: MAX_FOREIGN_CPU,
      extraRoundsUntil: started + S2_BUDGET_MS,
    });
    const [tr, sio] = lives as [S2Live, S2Live];
    const trRounds = measured.counted(tr);
    const sioRounds = measured.counted(sio);
    const paired = (pick: (t: Throughput) => number): number =>
      median(trRounds.map((t, i) => pick(t) / pick(sioRounds[i] as Throughput)));
    const summaries: S2Summary[] = lives.map((live) => {
      const r = measured.counted(live);
      const counted = live.redisCost.filter((_, i) => measured.roundsCounted[i]);
      const redisCpu = counted.reduce((a, c) => a + c.cpu, 0);
      const redisMessages = counted.reduce((a, c) => a + c.messages, 0);
      const nodeA = counted.reduce((a, c) => a + c.nodeCpu[0], 0);
      const nodeB = counted.reduce((a, c) => a + c.nodeCpu[1], 0);
      const isTr = live === tr;
      return {
        server: live.pair.name,
        deliveriesPerSecond: median(r.map((t) => t.deliveriesPerSecond)),
        deliveriesPerServerCpuSecond: median(r.map((t) => t.deliveriesPerServerCpuSecond)),
        serverCpu: median(r.map((t) => t.serverCpu)),
        latencyP50Ms: median(r.map((t) => t.latencyP50Ms)),
        latencyP99Ms: median(r.map((t) => t.latencyP99Ms)),
        latencySamples: r.reduce((a, t) => a + t.latencySamples, 0),
        messagesPerSecond: median(r.map((t) => t.messagesPerSecond)),
        loadGeneratorCore: median(r.map((t) => t.loadGeneratorCore)),
        redisCpuMsPerThousandMessages: redisMessages > 0 ? (redisCpu * 1000 * 1000) / redisMessages : Number.NaN,
        senderNodeCpuShare: nodeA + nodeB > 0 ? nodeA / (nodeA + nodeB) : Number.NaN,
        missing: measured.all(live).reduce((a, t) => a + t.missing, 0),
        refused: measured.all(live).reduce((a, t) => a + t.refused, 0),
        lastRefusal: measured.all(live).find((t) => t.lastRefusal)?.lastRefusal ?? '',
        clientsClosed: Math.max(...measured.all(live).map((t) => t.clientsClosed)),
        serverWarnings: live.pair.group.count(/"level":(40|50|60)/),
        ratioEfficiency: isTr ? paired((t) => t.deliveriesPerServerCpuSecond) : 1,
        ratioP99: isTr ? paired((t) => t.latencyP99Ms) : 1,
        ratioDeliveries: isTr ? paired((t) => t.deliveriesPerSecond) : 1,
      };
    });
    const trSummary = summaries[0] as S2Summary;
    process.stdout.write(
      '\n' +
        table(
          [
            'servers',
            'deliv/s',
            'ratio',
            'deliv/CPU-s',
            'ratio',
            'srv CPU',
            'p50 ms',
            'p99 ms',
            'ratio',
            'msg/s',
            'gen core',
            'node A share',
            'Redis CPU ms/1k msg',
            'missing',
          ],
          summaries.map((s) => [
            s.server,
            s.deliveriesPerSecond,
            s.ratioDeliveries,
            s.deliveriesPerServerCpuSecond,
            s.ratioEfficiency,
            s.serverCpu,
            s.latencyP50Ms,
            s.latencyP99Ms,
            s.ratioP99,
            s.messagesPerSecond,
            s.loadGeneratorCore,
            s.senderNodeCpuShare,
            s.redisCpuMsPerThousandMessages,
            String(s.missing),
          ]),
        ) +
        '\n',
    );
    const problems = s2Problems(summaries);
    for (const p of problems) process.stdout.write(`  PROBLEM: ${p}\n`);
    if (measured.contended) {
      process.stdout.write('  warning: other processes kept the machine busy (fewer than 3 undisturbed rounds)\n');
    }
    const verdicts = {
      deliveriesPerServerCpuSecond: verdict(trSummary.ratioEfficiency, TARGET_EFFICIENCY_RATIO, '>='),
      p99: verdict(trSummary.ratioP99, TARGET_P99_RATIO, '<='),
    };
    const roundsCounted = measured.roundsCounted.filter(Boolean).length;
    process.stdout.write(
      `  trading-room / ${sio.pair.name}, deliveries per server CPU-second (median of ${roundsCounted} paired rounds): ` +
        `${verdicts.deliveriesPerServerCpuSecond}\n` +
        `  trading-room / ${sio.pair.name}, p99 delivery latency: ${verdicts.p99}\n\n`,
    );
    return {
      redis: redis.label,
      verdicts,
      problems,
      summaries,
      contended: measured.contended,
      roundsCounted: measured.roundsCounted,
      rounds: Object.fromEntries(lives.map((l) => [l.pair.name, measured.all(l)])),
      connectSeconds: Object.fromEntries(lives.map((l) => [l.pair.name, l.connectSeconds])),
      env: Object.fromEntries(lives.flatMap((l) => l.pair.targets.map((t) => [t.name, publicEnv(t)]))),
      durationSeconds: Math.round((Date.now() - started) / 1000),
    };
  } finally {
    for (const live of lives) {
      await closeAll(live.clients);
      await live.pair.group.stop();
    }
    await redis.stop();
  }
}

function s2Problems(summaries: readonly S2Summary[]): string[] {
  const problems: string[] = [];
  for (const s of summaries) {
    if (s.missing > 0) problems.push(`${s.server}: ${s.missing} deliveries acknowledged but never received`);
    if (s.refused > 0) problems.push(`${s.server}: ${s.refused} chat.send refused (last: ${s.lastRefusal})`);
    if (s.clientsClosed > 0) problems.push(`${s.server}: ${s.clientsClosed} clients were closed by the server`);
    if (s.serverWarnings > 0)
      problems.push(`${s.server}: ${s.serverWarnings} warning/error log lines (see the report)`);
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------
// S3: many small rooms over two nodes, Redis bytes out per delivered message

interface S3Result {
  readonly server: string;
  readonly layout: S3Layout;
  readonly rooms: number;
  readonly messages: number;
  readonly deliveries: number;
  readonly expectedDeliveries: number;
  readonly refused: number;
  readonly lastRefusal: string;
  /** Members whose chat count is not what their room was sent (lost or duplicated deliveries). */
  readonly membersOff: number;
  readonly redisOutputBytes: number;
  readonly bytesPerMessage: number;
  /**
   * Median over the bursts of each burst's bytes per message: the messages' own cost, periodic
   * background work (which lands in one or two bursts) left out.
   */
  readonly medianBurstBytesPerMessage: number;
  readonly burstBytesPerMessage: readonly number[];
  readonly bytesPerDelivery: number;
  readonly redisInputBytesPerMessage: number;
  readonly redisCpuMsPerThousandMessages: number;
  /** Redis commands per message while the messages were sent (≥ 0.01 per message; `info` left out). */
  readonly commandsPerMessage: Record<string, number>;
  /** Redis commands per second while nothing is sent (≥ 0.01/s; `info` left out). */
  readonly idleCommandsPerSecond: Record<string, number>;
  /** Redis output while nothing is sent (heartbeats, slot refreshes), bytes per second. */
  readonly idleBytesPerSecond: number;
  readonly sendSeconds: number;
  readonly connectSeconds: number;
  readonly serverWarnings: number;
  readonly sharing: SharingCheck;
  readonly notMeasured?: string;
  /** The last lines of the servers' output, when the side was not measured. */
  readonly serverOutput?: string;
}

/** Calls of each command between two `commandCalls` readings ÷ `per` (messages, seconds). */
function commandsPerMessage(
  before: ReadonlyMap<string, number>,
  after: ReadonlyMap<string, number>,
  per: number,
): Record<string, number> {
  const perMessage: [string, number][] = [];
  for (const [name, calls] of after) {
    const rate = (calls - (before.get(name) ?? 0)) / per;
    if (name !== 'info' && rate >= 0.01) perMessage.push([name, Math.round(rate * 100) / 100]);
  }
  return Object.fromEntries(perMessage.sort((a, b) => b[1] - a[1]));
}

async function s3Identities(kind: 'redis' | 'cluster'): Promise<Identity[][]> {
  const rooms: Identity[][] = [];
  for (let r = 0; r < S3_ROOMS; r++) {
    rooms.push(
      await Promise.all(
        Array.from({ length: S3_MEMBERS }, async (_, k) => {
          const user = `r${r}-m${k}`;
          const room = `room-${r}`;
          const token = await signAccessToken(BENCH_SECRET, {
            userId: user,
            roomId: room,
            role: k === 0 ? 'presenter' : 'trader',
            ttlSeconds: 3600,
          });
          return { token, user, room, localAddress: loopbackSource(r * S3_MEMBERS + k, 16, kind === 'redis' ? 4 : 5) };
        }),
      ),
    );
  }
  return rooms;
}

/**
 * Member k of room r. Placed: all on node r mod 2. Split: the first two on node r mod 2 (the
 * sender among them), the other two on the other.
 */
function s3NodeOf(layout: S3Layout, room: number, member: number): 0 | 1 {
  const home = room % 2;
  return (layout === 'placed' || member < S3_MEMBERS / 2 ? home : 1 - home) as 0 | 1;
}

/**
 * Sends messages `from` … `from + count - 1` of the sequence "one chat to each room in turn"
 * (message m goes to room m mod rooms), at most `S3_WINDOW` unacknowledged, bounded in time.
 */
async function sendMessages(
  senders: readonly BenchClient[],
  from: number,
  count: number,
  text: string,
): Promise<{ acked: number; refused: number; lastRefusal: string }> {
  let sent = 0;
  let acked = 0;
  let refused = 0;
  let lastRefusal = '';
  let outstanding = 0;
  const deadline = Date.now() + S3_SEND_TIMEOUT_MS;
  await new Promise<void>((done) => {
    let finished = false;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      clearInterval(timer);
      done();
    };
    const fill = (): void => {
      if (finished) return;
      if (acked + refused >= count || Date.now() > deadline) {
        finish();
        return;
      }
      while (outstanding < S3_WINDOW && sent < count) {
        const sender = senders[(from + sent) % senders.length] as BenchClient;
        sent++;
        outstanding++;
        sender.send('chat.send', { text }, (reply) => {
          outstanding--;
          if (reply.ok) acked++;
          else {
            refused++;
            lastRefusal = reply.body.slice(0, 200);
          }
          fill();
        });
      }
    };
    const timer = setInterval(fill, 100); // ends the wait at the deadline if replies stop coming
    fill();
  });
  return { acked, refused, lastRefusal };
}

/** The servers' warning/error line count, and their output's tail when there are any. */
function warnings(pair: NodePair): { serverWarnings: number; serverOutput?: string } {
  const serverWarnings = pair.group.count(/"level":(40|50|60)/);
  return serverWarnings > 0 ? { serverWarnings, serverOutput: pair.group.tail() } : { serverWarnings };
}

async function s3Side(
  side: 'trading-room' | 'socket.io',
  redis: RedisUnderTest,
  rooms: readonly Identity[][],
  reader: RedisStatsReader,
  layout: S3Layout,
): Promise<S3Result> {
  const pair = await startPair(sideName(side, redis), nodeTargets(side, redis));
  let clients: BenchClient[] = [];
  try {
    const ids = rooms.flat();
    const t0 = performance.now();
    clients = await connectSplit(pair, ids, (i) => s3NodeOf(layout, Math.floor(i / S3_MEMBERS), i % S3_MEMBERS));
    const connectSeconds = (performance.now() - t0) / 1000;
    const members = (r: number): BenchClient[] => clients.slice(r * S3_MEMBERS, (r + 1) * S3_MEMBERS);
    const senders = rooms.map((_, r) => clients[r * S3_MEMBERS] as BenchClient);
    const index = new Map(clients.map((c, i) => [c, i]));
    const nodeOfClient = (c: BenchClient): 0 | 1 => {
      const i = index.get(c) ?? 0;
      return s3NodeOf(layout, Math.floor(i / S3_MEMBERS), i % S3_MEMBERS);
    };
    // Idle background first (heartbeats, slot refreshes), then one chat to every room (not measured).
    await sleep(SETTLE_MS);
    const idleCalls0 = await reader.commandCalls();
    const idle0 = await reader.read();
    const idleT0 = performance.now();
    await sleep(S3_IDLE_MS);
    const idle1 = await reader.read();
    const idleSeconds = (performance.now() - idleT0) / 1000;
    const idleCalls1 = await reader.commandCalls();
    const idleBytesPerSecond = RedisStatsReader.outputBetween(idle0, idle1) / idleSeconds;
    const idleCommandsPerSecond = commandsPerMessage(idleCalls0, idleCalls1, idleSeconds);
    const sharing = await checkSharing(
      senders.map((sender, r) => ({ sender, members: members(r) })),
      nodeOfClient,
    );
    const base = {
      server: pair.name,
      layout,
      rooms: rooms.length,
      idleBytesPerSecond,
      idleCommandsPerSecond,
      connectSeconds,
      sharing,
    };
    if (!sharing.ok) {
      return {
        ...base,
        messages: 0,
        deliveries: 0,
        expectedDeliveries: 0,
        refused: 0,
        lastRefusal: '',
        membersOff: 0,
        redisOutputBytes: Number.NaN,
        bytesPerMessage: Number.NaN,
        medianBurstBytesPerMessage: Number.NaN,
        burstBytesPerMessage: [],
        bytesPerDelivery: Number.NaN,
        redisInputBytesPerMessage: Number.NaN,
        redisCpuMsPerThousandMessages: Number.NaN,
        commandsPerMessage: {},
        sendSeconds: 0,
        serverWarnings: pair.group.count(/"level":(40|50|60)/),
        notMeasured: `chat does not reach every member across the nodes: ${sharing.text}`,
        serverOutput: pair.group.tail(),
      };
    }
    const chatsBefore = clients.map((c) => c.chats);
    const delivered0 = stats.chatDelivered;
    const cpu0 = redis.cpu();
    const calls0 = await reader.commandCalls();
    const s0 = performance.now();
    const total = senders.length * S3_PASSES;
    const perBurst = Math.ceil(total / S3_BURSTS);
    const text = chatText(80);
    let acked = 0;
    let refused = 0;
    let lastRefusal = '';
    let output = 0;
    let input = 0;
    const burstBytesPerMessage: number[] = [];
    let reading = await reader.read();
    for (let from = 0; from < total; from += perBurst) {
      const burstDelivered0 = stats.chatDelivered;
      const sent = await sendMessages(senders, from, Math.min(perBurst, total - from), text);
      const until = Date.now() + 10_000;
      while (stats.chatDelivered - burstDelivered0 < sent.acked * S3_MEMBERS && Date.now() < until) await sleep(20);
      const next = await reader.read();
      const bytes = RedisStatsReader.outputBetween(reading, next);
      output += bytes;
      input += next.inputBytes - reading.inputBytes;
      if (sent.acked > 0) burstBytesPerMessage.push(bytes / sent.acked);
      reading = next;
      acked += sent.acked;
      refused += sent.refused;
      lastRefusal = sent.lastRefusal || lastRefusal;
    }
    const sendSeconds = (performance.now() - s0) / 1000;
    const calls1 = await reader.commandCalls();
    const cpu1 = redis.cpu();
    await sleep(200); // late duplicates, if any, would show in membersOff
    const deliveries = stats.chatDelivered - delivered0;
    const membersOff = clients.filter((c, i) => c.chats - (chatsBefore[i] ?? 0) !== S3_PASSES).length;
    return {
      ...base,
      messages: acked,
      deliveries,
      expectedDeliveries: acked * S3_MEMBERS,
      refused,
      lastRefusal,
      membersOff,
      redisOutputBytes: output,
      bytesPerMessage: output / acked,
      medianBurstBytesPerMessage: median(burstBytesPerMessage),
      burstBytesPerMessage,
      bytesPerDelivery: output / deliveries,
      redisInputBytesPerMessage: input / acked,
      redisCpuMsPerThousandMessages: ((cpu1 - cpu0) * 1000 * 1000) / acked,
      commandsPerMessage: commandsPerMessage(calls0, calls1, acked),
      sendSeconds,
      ...warnings(pair),
    };
  } catch (error) {
    process.stderr.write(`${pair.name} failed; server output:\n${pair.group.tail()}\n`);
    throw error;
  } finally {
    await closeAll(clients, 10_000);
    await pair.group.stop();
  }
}

interface S3LayoutOutcome {
  readonly results: readonly S3Result[];
  readonly verdicts: Record<string, string>;
  readonly problems: readonly string[];
  readonly notMeasured: readonly string[];
}

/** Both sides in one layout, one after the other on the same Redis; prints the table. */
async function s3Layout(
  redis: RedisUnderTest,
  rooms: readonly Identity[][],
  reader: RedisStatsReader,
  layout: S3Layout,
): Promise<S3LayoutOutcome> {
  process.stdout.write(`  layout "${layout}": ${LAYOUT_TEXT[layout]}\n`);
  // The same users and node ids as the layout before: without this, the new nodes would reap
  // their predecessors' participants (and replace their sessions) while this layout is measured.
  await reader.flushAll();
  const results: S3Result[] = [];
  for (const side of ['trading-room', 'socket.io'] as const) {
    const result = await s3Side(side, redis, rooms, reader, layout);
    results.push(result);
    process.stdout.write(
      `    ${result.server}: ${rooms.length * S3_MEMBERS} joined in ${result.connectSeconds.toFixed(1)} s; ` +
        (result.notMeasured
          ? `NOT MEASURED — ${result.notMeasured}\n`
          : `${result.messages} messages in ${result.sendSeconds.toFixed(1)} s, ${result.deliveries} of ` +
            `${result.expectedDeliveries} deliveries; Redis wrote ${fmt(result.redisOutputBytes)} bytes\n`),
    );
  }
  const [tr, sio] = results as [S3Result, S3Result];
  const ratio = tr.bytesPerMessage / sio.bytesPerMessage;
  const burstRatio = tr.medianBurstBytesPerMessage / sio.medianBurstBytesPerMessage;
  process.stdout.write(
    '\n' +
      table(
        [
          `servers (${layout})`,
          'messages',
          'deliveries',
          'Redis out B/msg',
          'ratio',
          'median burst',
          'ratio',
          'B/delivery',
          'Redis in B/msg',
          'Redis CPU ms/1k msg',
          'idle out B/s',
          'members off',
        ],
        results.map((r) => [
          r.server,
          String(r.messages),
          String(r.deliveries),
          r.bytesPerMessage,
          r === tr ? ratio : 1,
          r.medianBurstBytesPerMessage,
          r === tr ? burstRatio : 1,
          r.bytesPerDelivery,
          r.redisInputBytesPerMessage,
          r.redisCpuMsPerThousandMessages,
          r.idleBytesPerSecond,
          String(r.membersOff),
        ]),
      ) +
      '\n',
  );
  for (const r of results) {
    const commands = Object.entries(r.commandsPerMessage)
      .map(([name, rate]) => `${name} ${rate}`)
      .join(', ');
    if (commands) process.stdout.write(`  ${r.server}, Redis commands per message: ${commands}\n`);
    const idle = Object.entries(r.idleCommandsPerSecond)
      .map(([name, rate]) => `${name} ${rate}`)
      .join(', ');
    if (idle) process.stdout.write(`  ${r.server}, Redis commands per second while idle: ${idle}\n`);
  }
  const problems: string[] = [];
  for (const r of results) {
    const who = `${r.server} (${layout})`;
    if (r.notMeasured) problems.push(`${who}: not measured: ${r.notMeasured}`);
    else if (r.deliveries !== r.expectedDeliveries || r.membersOff > 0) {
      problems.push(
        `${who}: ${r.deliveries} deliveries for ${r.expectedDeliveries} owed; ${r.membersOff} members ` +
          `did not get exactly ${S3_PASSES} chats`,
      );
    }
    if (r.refused > 0) problems.push(`${who}: ${r.refused} chat.send refused (last: ${r.lastRefusal})`);
    if (r.serverWarnings > 0) {
      problems.push(`${who}: ${r.serverWarnings} warning/error log lines`);
      const lines = (r.serverOutput ?? '').split('\n').filter((l) => /"level":(40|50|60)/.test(l));
      for (const line of lines.slice(0, 3)) process.stdout.write(`  ${r.server}: ${line.slice(0, 400)}\n`);
    }
  }
  for (const p of problems) process.stdout.write(`  PROBLEM: ${p}\n`);
  const notMeasured = results
    .filter((r) => r.notMeasured)
    .map((r) => `${r.server} (${layout}): ${r.notMeasured ?? ''}`);
  const verdicts: Record<string, string> =
    notMeasured.length > 0
      ? {}
      : {
          [`redisBytesPerMessage ${layout}`]: verdict(ratio, TARGET_BYTES_RATIO, '<='),
          [`redisBytesPerMessageMedianBurst ${layout}`]: verdict(burstRatio, TARGET_BYTES_RATIO, '<='),
        };
  process.stdout.write(
    `  ${layout}: trading-room / ${sio.server}, Redis bytes out per delivered message: ` +
      `${verdicts[`redisBytesPerMessage ${layout}`] ?? 'not measured'}; median of ${S3_BURSTS} bursts: ` +
      `${verdicts[`redisBytesPerMessageMedianBurst ${layout}`] ?? 'not measured'}\n\n`,
  );
  return { results, verdicts, problems, notMeasured };
}

async function s3Part(kind: 'redis' | 'cluster'): Promise<Record<string, unknown>> {
  const started = Date.now();
  const redis = await startRedisUnderTest(kind);
  let reader: RedisStatsReader | undefined;
  try {
    reader = await RedisStatsReader.open(redis.ports); // while Redis is quiet: it calibrates
    process.stdout.write(
      `S3 on ${redis.label}: ${S3_ROOMS} rooms × ${S3_MEMBERS} members over two nodes, ` +
        `${S3_PASSES} chats to each room in turn; the sides one after the other, in each layout\n`,
    );
    const rooms = await s3Identities(kind);
    const outcomes: Partial<Record<S3Layout, S3LayoutOutcome>> = {};
    for (const layout of layouts) outcomes[layout] = await s3Layout(redis, rooms, reader, layout);
    const all = Object.values(outcomes);
    const notMeasured = all.flatMap((o) => o.notMeasured);
    return {
      redis: redis.label,
      ...(notMeasured.length > 0 ? { notMeasured } : {}),
      verdicts: Object.assign({}, ...all.map((o) => o.verdicts)) as Record<string, string>,
      problems: all.flatMap((o) => o.problems),
      layouts: Object.fromEntries(Object.entries(outcomes).map(([k, o]) => [k, o.results])),
      durationSeconds: Math.round((Date.now() - started) / 1000),
    };
  } finally {
    reader?.close();
    await redis.stop();
  }
}

async function main(): Promise<void> {
  const pinning = pinSelf();
  const started = Date.now();
  process.stdout.write(`cluster-fanout${QUICK ? ' --quick' : ''}: ${pinning}\n`);
  await freePort(); // fail early when loopback networking is unavailable
  if (PROFILE_DIR) mkdirSync(PROFILE_DIR, { recursive: true });
  const parts: Partial<Record<Part, Record<string, unknown>>> = {};
  const failures: Partial<Record<Part, string>> = {};
  for (const part of PARTS) {
    if (only && !only.includes(part)) continue;
    const kind = part.endsWith('cluster') ? 'cluster' : 'redis';
    try {
      parts[part] = part.startsWith('s2') ? await s2Part(kind) : await s3Part(kind);
    } catch (error) {
      const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
      failures[part] = message;
      process.stdout.write(`${part} FAILED: ${message}\n\n`);
    }
  }
  process.stdout.write('summary (trading-room ÷ Socket.IO, same Redis, same machine, same run):\n');
  for (const [part, result] of Object.entries(parts)) {
    const verdicts = (result.verdicts ?? {}) as Record<string, string>;
    const notMeasured = result.notMeasured as string[] | undefined;
    const line = [
      ...Object.entries(verdicts).map(([k, v]) => `${k} ${v}`),
      ...(notMeasured ? [`NOT MEASURED — ${notMeasured.join('; ')}`] : []),
    ].join(', ');
    process.stdout.write(`  ${part} (${result.redis as string}): ${line}\n`);
  }
  for (const [part, message] of Object.entries(failures)) {
    process.stdout.write(`  ${part}: FAILED — ${message.split('\n')[0] ?? ''}\n`);
  }
  const path = writeReport('cluster-fanout', {
    config: {
      quick: QUICK,
      pinning,
      s2: {
        participants: S2_PARTICIPANTS,
        rounds: S2_ROUNDS,
        maxExtraRounds: S2_MAX_EXTRA_ROUNDS,
        maxForeignCpu: MAX_FOREIGN_CPU,
        latencySampleEvery: LATENCY_SAMPLE_EVERY,
        jitWarmup: { ...S2_JIT_WARMUP, text: `${S2_JIT_WARMUP.text.length} chars` },
        measure: { ...S2_MEASURE, text: `${S2_MEASURE.text.length} chars` },
      },
      s3: {
        rooms: S3_ROOMS,
        members: S3_MEMBERS,
        passes: S3_PASSES,
        window: S3_WINDOW,
        bursts: S3_BURSTS,
        idleMs: S3_IDLE_MS,
        layouts,
      },
    },
    targets: {
      deliveriesPerServerCpuSecondRatio: TARGET_EFFICIENCY_RATIO,
      p99Ratio: TARGET_P99_RATIO,
      redisBytesPerMessageRatio: TARGET_BYTES_RATIO,
    },
    parts,
    failures,
    profiles: PROFILE_DIR,
    durationSeconds: Math.round((Date.now() - started) / 1000),
  });
  process.stdout.write(`report: ${path}  (${Math.round((Date.now() - started) / 1000)} s)\n`);
  if (PROFILE_DIR) process.stdout.write(`CPU profiles: ${PROFILE_DIR}\n`);
  if (Object.keys(failures).length > 0) process.exitCode = 1;
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (error: unknown) => {
    process.stderr.write(
      `cluster-fanout failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  },
);
