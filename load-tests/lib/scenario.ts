/**
 * The building blocks of the room benchmarks: the servers under test, identities (tokens and
 * loopback source addresses), idle memory per connection, and fan-out throughput. Every step is
 * bounded in count and time.
 */
import { randomBytes } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { signAccessToken } from '../../signaling/src/auth/tokens.js';
import {
  closeAll,
  connectAll,
  Pump,
  stats,
  type BenchClient,
  type Dialect,
  type Identity,
  type StampLatency,
} from './clients.js';
import {
  coreJiffies,
  foreignCpuSeconds,
  freePort,
  LOADGEN_CPU,
  pinningAvailable,
  selfCpuSeconds,
  SERVER_CPU,
  sleep,
  startServer,
  type ServerProcess,
} from './processes.js';
import { Inspector } from './inspector.js';

export interface Target {
  readonly name: string;
  readonly script: string;
  readonly env: Record<string, string>;
  readonly dialect: Dialect;
  readonly path: string;
}

export const BENCH_SECRET = `bench-${randomBytes(24).toString('base64url')}`;

/** trading-room from source: test env, no media, warn logs, `extra` on top. */
export function tradingRoomTarget(name: string, extra: Record<string, string> = {}): Target {
  return {
    name,
    script: 'signaling/src/main.ts',
    dialect: 'json',
    path: '/ws',
    env: {
      HOST: '127.0.0.1',
      NODE_ENV: 'test',
      SIGNALING_JWT_SECRET: BENCH_SECRET,
      SIGNALING_ADMIN_TOKEN: 'bench-admin-token-0123456789',
      MEDIA_ENABLED: 'false',
      LOG_LEVEL: 'warn',
      DRAIN_TIMEOUT_MS: '1000',
      ...extra,
    },
  };
}

/** A target's environment for reports, secrets left out. */
export function publicEnv(target: Target): Record<string, string> {
  const { SIGNALING_JWT_SECRET: _secret, SIGNALING_ADMIN_TOKEN: _admin, ...rest } = target.env;
  return rest;
}

export function bareTarget(mode: 'preframed' | 'send' = 'preframed'): Target {
  return {
    name: mode === 'preframed' ? 'bare-ws' : 'bare-ws (ws.send)',
    script: 'load-tests/baselines/bare-ws-server.ts',
    dialect: 'json',
    path: '/ws',
    env: { HOST: '127.0.0.1', BARE_MODE: mode },
  };
}

export function socketIoTarget(redisUrl: string): Target {
  return {
    name: 'socket.io+redis',
    script: 'load-tests/baselines/socketio-server.ts',
    dialect: 'socketio',
    path: '/socket.io/',
    env: { HOST: '127.0.0.1', REDIS_URL: redisUrl },
  };
}

/**
 * The Socket.IO reference on a Redis Cluster (`seeds`: `host:port,…`) with the sharded adapter
 * (`createShardedAdapter`, sharded pub/sub, ioredis Cluster with sharded subscribers).
 */
export function socketIoShardedTarget(name: string, seeds: string): Target {
  return {
    name,
    script: 'load-tests/baselines/socketio-server.ts',
    dialect: 'socketio',
    path: '/socket.io/',
    env: { HOST: '127.0.0.1', REDIS_CLUSTER_NODES: seeds },
  };
}

/**
 * Several server processes measured as one (the nodes of a cluster): CPU and RSS are sums, the
 * port is the first one's, output lines are counted over all of them.
 */
export function serverGroup(name: string, servers: readonly ServerProcess[]): ServerProcess {
  const first = servers[0];
  if (!first) throw new Error('serverGroup needs at least one server');
  return {
    name,
    pid: first.pid,
    port: first.port,
    rss: () => servers.reduce((a, s) => a + s.rss(), 0),
    cpu: () => servers.reduce((a, s) => a + s.cpu(), 0),
    count: (pattern) => servers.reduce((a, s) => a + s.count(pattern), 0),
    tail: () => servers.map((s) => `--- ${s.name}\n${s.tail()}`).join('\n'),
    async stop() {
      await Promise.all(servers.map((s) => s.stop()));
    },
  };
}

export async function start(target: Target, nodeArgs: readonly string[] = []): Promise<ServerProcess> {
  const port = await freePort();
  return startServer({
    name: target.name,
    script: target.script,
    env: { ...target.env, PORT: String(port) },
    port,
    nodeArgs,
  });
}

/**
 * A loopback source address for client `i`: `perAddress` clients share one, so the per-IP
 * connection limit (20 a minute by default) holds with every limit on. 127.0.0.0/8 is all
 * loopback on Linux, so the traffic never leaves the machine.
 */
export function loopbackSource(i: number, perAddress = 16, block = 1): string {
  const k = Math.floor(i / perAddress);
  return `127.${block}.${Math.floor(k / 250)}.${(k % 250) + 1}`;
}

export interface IdentityOptions {
  readonly count: number;
  readonly room: string;
  readonly prefix: string;
  /** Index of the presenter (the sender); the rest are traders. */
  readonly presenterIndex?: number;
  readonly spreadSources?: boolean;
  readonly sourceBlock?: number;
}

export async function identities(options: IdentityOptions): Promise<Identity[]> {
  return Promise.all(
    Array.from({ length: options.count }, async (_, i) => {
      const user = `${options.prefix}${i}`;
      const token = await signAccessToken(BENCH_SECRET, {
        userId: user,
        roomId: options.room,
        role: i === options.presenterIndex ? 'presenter' : 'trader',
        ttlSeconds: 3600,
      });
      const id: Identity = { token, user, room: options.room };
      return options.spreadSources ? { ...id, localAddress: loopbackSource(i, 16, options.sourceBlock ?? 1) } : id;
    }),
  );
}

/** RSS once it stops moving: median of the last 2 s of samples, after at most `maxMs`. */
export async function settledRss(server: ServerProcess, maxMs = 8000): Promise<number> {
  const samples: number[] = [];
  const until = Date.now() + maxMs;
  await sleep(1000);
  while (Date.now() < until) {
    samples.push(server.rss());
    const last = samples.slice(-8);
    if (last.length === 8 && (Math.max(...last) - Math.min(...last)) / Math.max(...last) < 0.005) break;
    await sleep(250);
  }
  const last = samples.slice(-8).sort((a, b) => a - b);
  return last[Math.floor(last.length / 2)] ?? server.rss();
}

export interface RoomSetup {
  readonly warm: BenchClient[];
  readonly clients: BenchClient[];
  readonly rssBefore: number;
  readonly rssAfter: number;
  /** Bytes of server RSS per joined idle connection. */
  readonly bytesPerConnection: number;
  readonly connectSeconds: number;
}

/**
 * Connects `warmCount` clients to a side room (warms the upgrade and join paths, so fixed costs
 * stay out of the per-connection figure), samples RSS, connects and joins `room`, samples again.
 */
export async function setupRoom(
  target: Target,
  server: ServerProcess,
  warmIds: readonly Identity[],
  roomIds: readonly Identity[],
  settleMs = 8000,
): Promise<RoomSetup> {
  const endpoint = { dialect: target.dialect, port: server.port, path: target.path };
  const warm = await connectAll(endpoint, warmIds, { concurrency: 16 });
  const rssBefore = await settledRss(server, settleMs);
  const t0 = performance.now();
  let clients: BenchClient[];
  try {
    clients = await connectAll(endpoint, roomIds, { concurrency: 32 });
  } catch (error) {
    await closeAll(warm);
    throw error;
  }
  const connectSeconds = (performance.now() - t0) / 1000;
  const rssAfter = await settledRss(server, settleMs);
  return {
    warm,
    clients,
    rssBefore,
    rssAfter,
    bytesPerConnection: (rssAfter - rssBefore) / roomIds.length,
    connectSeconds,
  };
}

export interface ThroughputOptions {
  readonly warmupMs: number;
  readonly measureMs: number;
  readonly window: number;
  readonly maxInFlightDeliveries: number;
  readonly maxMessages: number;
  readonly text: string;
  /**
   * Send → receive latency: the pump stamps its texts and this recorder (attached to some of
   * the receivers by the caller) records during the measured window.
   */
  readonly latency?: StampLatency;
  /** Offered load: the sender paces itself to this many messages per second (unset: as fast as acknowledged). */
  readonly ratePerSecond?: number;
}

export interface Throughput {
  /** Chat frames received by all clients together per second, in the measured window. */
  readonly deliveriesPerSecond: number;
  readonly messagesPerSecond: number;
  /** Server process CPU time / wall time in the window (1 = one full core; kernel softirq not included). */
  readonly serverCpu: number;
  readonly deliveriesPerServerCpuSecond: number;
  /** Busy fraction of the server's core (includes the kernel's loopback TCP work); NaN unpinned. */
  readonly serverCore: number;
  /** Deliveries per busy second of the server's core: efficiency, insensitive to a client-side limit. */
  readonly deliveriesPerServerCoreSecond: number;
  readonly loadGeneratorCpu: number;
  /** Busy fraction of the load generator's core; near 1 means the clients may be the limit. */
  readonly loadGeneratorCore: number;
  /** CPU (in cores) that other processes on the machine used during the window: > 0.1 disturbs. */
  readonly foreignCpu: number;
  readonly loadGeneratorLagP99Ms: number;
  readonly sent: number;
  readonly acked: number;
  readonly refused: number;
  readonly lastRefusal: string;
  /** Deliveries owed (acked × receivers) and never received after the drain wait. */
  readonly missing: number;
  readonly clientsClosed: number;
  /** Send → receive latency percentiles (ms) in the measured window; NaN without a recorder. */
  readonly latencyP50Ms: number;
  readonly latencyP99Ms: number;
  readonly latencySamples: number;
}

/** One sender pumps chat into the room; deliveries are counted over a window after a warm-up. */
export async function measureThroughput(
  server: ServerProcess,
  clients: readonly BenchClient[],
  sender: BenchClient,
  options: ThroughputOptions,
): Promise<Throughput> {
  const startDelivered = stats.chatDelivered;
  const pump = new Pump({
    sender,
    receivers: clients.length,
    window: options.window,
    maxInFlightDeliveries: options.maxInFlightDeliveries,
    maxMessages: options.maxMessages,
    maxDurationMs: options.warmupMs + options.measureMs + 500,
    text: options.text,
    stampLatency: options.latency !== undefined,
    ...(options.ratePerSecond === undefined ? {} : { ratePerSecond: options.ratePerSecond }),
  });
  await Promise.race([sleep(options.warmupMs), pump.done]);
  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  const d0 = stats.chatDelivered;
  const m0 = pump.acked;
  const t0 = performance.now();
  const c0 = server.cpu();
  const l0 = selfCpuSeconds();
  const f0 = foreignCpuSeconds();
  const s0 = coreJiffies(SERVER_CPU);
  const g0 = coreJiffies(LOADGEN_CPU);
  options.latency?.start();
  await Promise.race([sleep(options.measureMs), pump.done]);
  const d1 = stats.chatDelivered;
  const m1 = pump.acked;
  const t1 = performance.now();
  const c1 = server.cpu();
  const l1 = selfCpuSeconds();
  const f1 = foreignCpuSeconds();
  const s1 = coreJiffies(SERVER_CPU);
  const g1 = coreJiffies(LOADGEN_CPU);
  options.latency?.stop();
  lag.disable();
  pump.stop();
  const seconds = (t1 - t0) / 1000;
  // Drain: wait (bounded) until every acknowledged message reached every client.
  const drainUntil = Date.now() + 10_000;
  while (Date.now() < drainUntil) {
    await sleep(50);
    const owed = pump.acked * clients.length - (stats.chatDelivered - startDelivered);
    if (owed <= 0 && pump.acked + pump.refused >= pump.sent) break;
  }
  const deliveries = d1 - d0;
  const pinned = pinningAvailable();
  const serverCore = pinned && s1.total > s0.total ? (s1.busy - s0.busy) / (s1.total - s0.total) : Number.NaN;
  const loadGeneratorCore = pinned && g1.total > g0.total ? (g1.busy - g0.busy) / (g1.total - g0.total) : Number.NaN;
  return {
    deliveriesPerSecond: deliveries / seconds,
    messagesPerSecond: (m1 - m0) / seconds,
    serverCpu: (c1 - c0) / seconds,
    deliveriesPerServerCpuSecond: c1 > c0 ? deliveries / (c1 - c0) : Number.NaN,
    serverCore,
    deliveriesPerServerCoreSecond: deliveries / (serverCore * seconds),
    loadGeneratorCpu: (l1 - l0) / seconds,
    loadGeneratorCore,
    foreignCpu: (f1 - f0) / seconds,
    loadGeneratorLagP99Ms: lag.percentile(99) / 1e6,
    sent: pump.sent,
    acked: pump.acked,
    refused: pump.refused,
    lastRefusal: pump.lastRefusal,
    missing: Math.max(0, pump.acked * clients.length - (stats.chatDelivered - startDelivered)),
    clientsClosed: clients.filter((c) => c.closeCode !== undefined).length,
    latencyP50Ms: options.latency ? options.latency.p(50) : Number.NaN,
    latencyP99Ms: options.latency ? options.latency.p(99) : Number.NaN,
    latencySamples: options.latency?.count ?? 0,
  };
}

export function presenterOf(clients: readonly BenchClient[]): BenchClient {
  const sender = clients[0];
  if (!sender) throw new Error('no clients');
  return sender;
}

/** A chat text of `length` characters. */
export function chatText(length: number): string {
  const base = 'BTC breaking the range, watching 68.4k for the retest; size down into CPI. ';
  return base.repeat(Math.ceil(length / base.length)).slice(0, length);
}

export interface GcMemory {
  /** V8 heap used per joined connection, after forced full collections. */
  readonly heapBytesPerConnection: number;
  /** Server RSS per joined connection, both samples taken after forced full collections. */
  readonly rssBytesPerConnection: number;
}

/**
 * Idle memory per connection without garbage: a separate server process with the inspector on
 * loopback, `warmIds` connected first, full GC, sample; `roomIds` connected and joined, full GC,
 * sample. (Kept apart from the throughput processes, which run without the inspector.)
 */
export async function measureMemoryAfterGc(
  target: Target,
  warmIds: readonly Identity[],
  roomIds: readonly Identity[],
): Promise<GcMemory> {
  const inspectPort = await freePort();
  const server = await start(target, [`--inspect=127.0.0.1:${inspectPort}`]);
  const endpoint = { dialect: target.dialect, port: server.port, path: target.path };
  let inspector: Inspector | undefined;
  let warm: BenchClient[] = [];
  let clients: BenchClient[] = [];
  try {
    inspector = await Inspector.connect(inspectPort);
    warm = await connectAll(endpoint, warmIds, { concurrency: 16 });
    await sleep(500);
    const heap0 = await inspector.collectGarbage();
    await sleep(500);
    const rss0 = server.rss();
    clients = await connectAll(endpoint, roomIds, { concurrency: 32 });
    await sleep(1000);
    const heap1 = await inspector.collectGarbage();
    await sleep(500);
    const rss1 = server.rss();
    return {
      heapBytesPerConnection: (heap1 - heap0) / roomIds.length,
      rssBytesPerConnection: (rss1 - rss0) / roomIds.length,
    };
  } finally {
    inspector?.close();
    await closeAll(clients);
    await closeAll(warm);
    await server.stop();
  }
}

/**
 * How the targets take turns within a round: `rotate` starts round r at target r (mod n), so
 * each target leads equally often; `alternate` measures even rounds in the given order and odd
 * rounds in reverse.
 */
export type RoundOrder = 'rotate' | 'alternate';

export interface InterleavedRoundsOptions<T> {
  readonly targets: readonly T[];
  readonly name: (target: T) => string;
  readonly order: RoundOrder;
  /** One measurement window of `target`. */
  readonly measure: (target: T) => Promise<Throughput>;
  /** Undisturbed rounds wanted. */
  readonly rounds: number;
  /** Rounds added at most to replace the ones other processes disturbed. */
  readonly maxExtraRounds: number;
  /** A round in which other processes used more than this many cores (in any window) is disturbed. */
  readonly maxForeignCpu: number;
  /** No extra rounds after this time (`Date.now()` milliseconds). */
  readonly extraRoundsUntil: number;
}

export interface InterleavedRounds<T> {
  /** Every round of `target`, disturbed ones too, in round order. */
  all(target: T): readonly Throughput[];
  /** The rounds of `target` that count (see `roundsCounted`). */
  counted(target: T): readonly Throughput[];
  /** Per round: true when no other process disturbed it. */
  readonly clean: readonly boolean[];
  /** Fewer than 3 rounds were undisturbed: then every round counts. */
  readonly contended: boolean;
  /** Per round: whether it counts — the undisturbed ones, or every round when contended. */
  readonly roundsCounted: readonly boolean[];
}

/**
 * Measures the targets in turn, round after round, so a drift of the machine's speed hits every
 * target alike (ratios are then taken per round). Prints one line per round; rounds disturbed by
 * other processes are not counted and are re-run, up to `maxExtraRounds` and within the time.
 */
export async function interleavedRounds<T>(options: InterleavedRoundsOptions<T>): Promise<InterleavedRounds<T>> {
  const { targets, rounds, maxForeignCpu } = options;
  const measured = new Map<T, Throughput[]>(targets.map((t) => [t, []]));
  const clean: boolean[] = [];
  for (let round = 0; clean.filter(Boolean).length < rounds && round < rounds + options.maxExtraRounds; round++) {
    if (round >= rounds && Date.now() > options.extraRoundsUntil) break;
    const order =
      options.order === 'rotate'
        ? targets.map((_, i) => targets[(i + round) % targets.length] as T)
        : round % 2 === 0
          ? targets
          : [...targets].reverse();
    const line: string[] = [];
    let foreign = 0;
    for (const target of order) {
      const t = await options.measure(target);
      measured.get(target)?.push(t);
      line.push(`${options.name(target)} ${Math.round(t.deliveriesPerSecond)}`);
      foreign = Math.max(foreign, t.foreignCpu);
    }
    clean.push(foreign <= maxForeignCpu);
    process.stdout.write(
      `  round ${round + 1} deliveries/s: ${line.join(', ')}` +
        (foreign > 0.1 ? `  (other processes used up to ${foreign.toFixed(2)} cores)` : '') +
        (foreign > maxForeignCpu ? ' — not counted' : '') +
        '\n',
    );
  }
  const contended = clean.filter(Boolean).length < 3;
  const roundsCounted = clean.map((c) => contended || c);
  const all = (target: T): readonly Throughput[] => measured.get(target) ?? [];
  return {
    all,
    counted: (target) => all(target).filter((_, i) => roundsCounted[i]),
    clean,
    contended,
    roundsCounted,
  };
}
