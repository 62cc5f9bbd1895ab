/**
 * Fan-out benchmark: one room of 1,000 local participants, one presenter sending chat
 * as fast as acknowledged; deliveries per second at trading-room against a bare `ws` server
 * (and Socket.IO + Redis adapter as a second reference), same clients, same machine, same run.
 * Also idle server memory per joined connection. Reports ratios against the bare server.
 *
 * Every server runs as its own process on the server core, all of them set up first (1,000
 * joined clients each); then short measurement windows take turns between the servers for
 * several rounds, so a drift of the machine's speed hits every server alike. Ratios are the
 * median of the per-round ratios.
 *
 *   scripts/with-node.sh npx tsx load-tests/fanout.ts [--cpu-prof] [--only=trading-room,bare-ws]
 *
 * Targets: deliveries/s ratio >= 0.70, memory per connection ratio <= 2.0.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { closeAll, type Identity } from './lib/clients.js';
import { pinSelf, ROOT, startRedis, type RedisProcess, type ServerProcess } from './lib/processes.js';
import { median, table, verdict, writeReport } from './lib/report.js';
import {
  bareTarget,
  chatText,
  identities,
  interleavedRounds,
  measureMemoryAfterGc,
  measureThroughput,
  presenterOf,
  setupRoom,
  socketIoTarget,
  start,
  tradingRoomTarget,
  type GcMemory,
  type InterleavedRounds,
  type RoomSetup,
  type Target,
  type Throughput,
} from './lib/scenario.js';

const PARTICIPANTS = 1000;
const WARM = 200;
const ROUNDS = 5;
/** Windows in which other processes used more than this many cores are re-run (within the budget). */
const MAX_FOREIGN_CPU = 0.25;
const MAX_EXTRA_ROUNDS = 4;
/** No extra rounds once the benchmark has run this long. */
const BUDGET_MS = 150_000;
const TARGET_DELIVERY_RATIO = 0.7;
const TARGET_MEMORY_RATIO = 2.0;
const WINDOW = {
  window: 16,
  maxInFlightDeliveries: 32 * PARTICIPANTS,
  maxMessages: 20_000,
  text: chatText(80),
};
const JIT_WARMUP = { ...WINDOW, warmupMs: 1500, measureMs: 500 };
const MEASURE = { ...WINDOW, warmupMs: 500, measureMs: 2500 };

const args = process.argv.slice(2);
const cpuProf = args.includes('--cpu-prof');
const only = args
  .find((a) => a.startsWith('--only='))
  ?.slice('--only='.length)
  .split(',');

interface Live {
  readonly target: Target;
  readonly server: ServerProcess;
  readonly setup: RoomSetup;
  readonly gc: GcMemory;
}

interface Summary {
  readonly target: string;
  readonly deliveriesPerSecond: { median: number; min: number; max: number };
  /** Deliveries per second of server process CPU (user + sys): robust to other load on the machine. */
  readonly deliveriesPerServerCpuSecond: number;
  readonly serverCpu: number;
  readonly serverCore: number;
  readonly loadGeneratorCore: number;
  readonly messagesPerSecond: number;
  readonly bytesPerConnection: number;
  readonly gcRssBytesPerConnection: number;
  readonly gcHeapBytesPerConnection: number;
  readonly ratioDeliveries: number;
  readonly ratioEfficiency: number;
  readonly ratioMemory: number;
  readonly ratioMemoryGcRss: number;
  readonly ratioMemoryGcHeap: number;
  readonly missing: number;
  readonly clientsClosed: number;
  readonly serverWarnings: number;
  /** Cores other processes on the machine used during this server's windows (median). */
  readonly foreignCpu: number;
}

const kib = (bytes: number): string => (bytes / 1024).toFixed(1);

async function setUp(
  target: Target,
  warmIds: readonly Identity[],
  roomIds: readonly Identity[],
  profileDir: string | undefined,
): Promise<Live> {
  const gc = await measureMemoryAfterGc(target, warmIds, roomIds);
  const nodeArgs = profileDir
    ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${target.name.replace(/\W+/g, '_')}.cpuprofile`]
    : [];
  const server = await start(target, nodeArgs);
  try {
    const setup = await setupRoom(target, server, warmIds, roomIds);
    return { target, server, setup, gc };
  } catch (error) {
    process.stderr.write(`${target.name} failed; server output:\n${server.tail()}\n`);
    await server.stop();
    throw error;
  }
}

async function tearDown(live: Live): Promise<void> {
  await closeAll(live.setup.clients);
  await closeAll(live.setup.warm);
  await live.server.stop();
}

/** Summaries over the rounds that count. */
function summarize(lives: readonly Live[], measured: InterleavedRounds<Live>): Summary[] {
  const bare = lives.find((l) => l.target.name === 'bare-ws');
  const bareRounds = bare ? measured.counted(bare) : [];
  return lives.map((live) => {
    const r = measured.counted(live);
    const dps = r.map((t) => t.deliveriesPerSecond);
    const pairs = (pick: (t: Throughput) => number): number =>
      bare ? median(r.map((t, i) => pick(t) / pick(bareRounds[i] as Throughput))) : Number.NaN;
    return {
      target: live.target.name,
      deliveriesPerSecond: { median: median(dps), min: Math.min(...dps), max: Math.max(...dps) },
      deliveriesPerServerCpuSecond: median(r.map((t) => t.deliveriesPerServerCpuSecond)),
      serverCpu: median(r.map((t) => t.serverCpu)),
      serverCore: median(r.map((t) => t.serverCore)),
      loadGeneratorCore: median(r.map((t) => t.loadGeneratorCore)),
      messagesPerSecond: median(r.map((t) => t.messagesPerSecond)),
      bytesPerConnection: live.setup.bytesPerConnection,
      gcRssBytesPerConnection: live.gc.rssBytesPerConnection,
      gcHeapBytesPerConnection: live.gc.heapBytesPerConnection,
      ratioDeliveries: pairs((t) => t.deliveriesPerSecond),
      ratioEfficiency: pairs((t) => t.deliveriesPerServerCpuSecond),
      ratioMemory: bare ? live.setup.bytesPerConnection / bare.setup.bytesPerConnection : Number.NaN,
      ratioMemoryGcRss: bare ? live.gc.rssBytesPerConnection / bare.gc.rssBytesPerConnection : Number.NaN,
      ratioMemoryGcHeap: bare ? live.gc.heapBytesPerConnection / bare.gc.heapBytesPerConnection : Number.NaN,
      missing: r.reduce((a, t) => a + t.missing, 0),
      clientsClosed: Math.max(...r.map((t) => t.clientsClosed)),
      serverWarnings: live.server.count(/"level":(40|50|60)/),
      foreignCpu: median(r.map((t) => t.foreignCpu)),
    };
  });
}

async function main(): Promise<void> {
  const pinning = pinSelf();
  const started = Date.now();
  process.stdout.write(`fanout: ${PARTICIPANTS} participants in one room, one sender; ${pinning}\n`);
  const profileDir = cpuProf ? join(ROOT, 'load-tests', 'reports', `profiles-${Date.now()}`) : undefined;
  if (profileDir) mkdirSync(profileDir, { recursive: true });
  let redis: RedisProcess | undefined;
  const lives: Live[] = [];
  let measured: InterleavedRounds<Live>;
  const warmIds = await identities({ count: WARM, room: 'warmup', prefix: 'warm-' });
  const roomIds = await identities({ count: PARTICIPANTS, room: 'bench', prefix: 'user-', presenterIndex: 0 });
  try {
    const makers: [string, () => Promise<Target>][] = [
      [
        'trading-room',
        async () =>
          tradingRoomTarget('trading-room', {
            RATE_LIMITS_ENABLED: 'false',
            MAX_CONNECTIONS_PER_USER: '100000',
            RATE_LIMIT_IP_CONNECTIONS: '1000000',
          }),
      ],
      ['bare-ws', async () => bareTarget('preframed')],
      ['bare-ws (ws.send)', async () => bareTarget('send')],
      [
        'socket.io+redis',
        async () => {
          redis = await startRedis();
          return socketIoTarget(redis.url);
        },
      ],
    ];
    for (const [name, make] of makers) {
      if (only && !only.includes(name)) continue;
      const target = await make();
      const live = await setUp(target, warmIds, roomIds, profileDir);
      lives.push(live);
      process.stdout.write(
        `  ${name}: ${PARTICIPANTS} joined in ${live.setup.connectSeconds.toFixed(1)} s; per connection: ` +
          `${kib(live.setup.bytesPerConnection)} KiB settled RSS, ${kib(live.gc.rssBytesPerConnection)} KiB RSS after GC, ` +
          `${kib(live.gc.heapBytesPerConnection)} KiB V8 heap after GC\n`,
      );
    }
    for (const live of lives) {
      await measureThroughput(live.server, live.setup.clients, presenterOf(live.setup.clients), JIT_WARMUP);
    }
    measured = await interleavedRounds({
      targets: lives,
      name: (live) => live.target.name,
      order: 'rotate',
      measure: (live) => measureThroughput(live.server, live.setup.clients, presenterOf(live.setup.clients), MEASURE),
      rounds: ROUNDS,
      maxExtraRounds: MAX_EXTRA_ROUNDS,
      maxForeignCpu: MAX_FOREIGN_CPU,
      extraRoundsUntil: started + BUDGET_MS,
    });
  } finally {
    for (const live of lives) await tearDown(live);
    await redis?.stop();
  }

  const { contended, roundsCounted } = measured;
  if (contended) {
    process.stdout.write(
      `\nwarning: other processes kept the machine busy (fewer than 3 undisturbed rounds); ratios are less reliable\n`,
    );
  }
  const summaries = summarize(lives, measured);
  process.stdout.write('\n');
  process.stdout.write(
    table(
      ['server', 'deliv/s', 'min', 'max', 'ratio', 'deliv/CPU-s', 'ratio', 'srv CPU', 'gen core', 'msg/s', 'missing'],
      summaries.map((s) => [
        s.target,
        s.deliveriesPerSecond.median,
        s.deliveriesPerSecond.min,
        s.deliveriesPerSecond.max,
        s.ratioDeliveries,
        s.deliveriesPerServerCpuSecond,
        s.ratioEfficiency,
        s.serverCpu,
        s.loadGeneratorCore,
        s.messagesPerSecond,
        s.missing,
      ]),
    ) + '\n\n',
  );
  process.stdout.write(
    table(
      ['server', 'RSS KiB/conn', 'ratio', 'RSS after GC', 'ratio', 'heap after GC', 'ratio'],
      summaries.map((s) => [
        s.target,
        s.bytesPerConnection / 1024,
        s.ratioMemory,
        s.gcRssBytesPerConnection / 1024,
        s.ratioMemoryGcRss,
        s.gcHeapBytesPerConnection / 1024,
        s.ratioMemoryGcHeap,
      ]),
    ) + '\n\n',
  );
  const tr = summaries.find((s) => s.target === 'trading-room');
  const verdicts: Record<string, string> = {};
  if (tr && summaries.some((s) => s.target === 'bare-ws')) {
    verdicts.deliveries = verdict(tr.ratioDeliveries, TARGET_DELIVERY_RATIO, '>=');
    verdicts.deliveriesPerCpu = verdict(tr.ratioEfficiency, TARGET_DELIVERY_RATIO, '>=');
    verdicts.memory = verdict(tr.ratioMemory, TARGET_MEMORY_RATIO, '<=');
    verdicts.memoryAfterGc = verdict(tr.ratioMemoryGcRss, TARGET_MEMORY_RATIO, '<=');
    const say = (label: string, v: string | undefined): void => {
      process.stdout.write(`trading-room / bare-ws ${label}: ${v ?? ''}\n`);
    };
    say(`deliveries/s (median of ${roundsCounted.filter(Boolean).length} paired rounds)`, verdicts.deliveries);
    say('deliveries per server CPU-second', verdicts.deliveriesPerCpu);
    say('idle RSS per joined connection, settled', verdicts.memory);
    say('idle RSS per joined connection, after forced GC', verdicts.memoryAfterGc);
  }
  const path = writeReport('fanout', {
    config: {
      participants: PARTICIPANTS,
      warmConnections: WARM,
      rounds: ROUNDS,
      maxForeignCpu: MAX_FOREIGN_CPU,
      jitWarmup: { ...JIT_WARMUP, text: `${JIT_WARMUP.text.length} chars` },
      measure: { ...MEASURE, text: `${MEASURE.text.length} chars` },
      pinning,
    },
    targets: { deliveriesRatio: TARGET_DELIVERY_RATIO, memoryRatio: TARGET_MEMORY_RATIO },
    verdicts,
    summaries,
    roundsCounted,
    contended,
    rounds: Object.fromEntries(lives.map((l) => [l.target.name, measured.all(l)])),
    memory: Object.fromEntries(
      lives.map((l) => [
        l.target.name,
        { rssBefore: l.setup.rssBefore, rssAfter: l.setup.rssAfter, connectSeconds: l.setup.connectSeconds },
      ]),
    ),
    profiles: profileDir,
    durationSeconds: Math.round((Date.now() - started) / 1000),
  });
  process.stdout.write(`report: ${path}  (${Math.round((Date.now() - started) / 1000)} s)\n`);
  if (profileDir) process.stdout.write(`CPU profiles: ${profileDir}\n`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`fanout failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
