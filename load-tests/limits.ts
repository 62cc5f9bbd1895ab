/**
 * Rate-limit benchmark, two questions, each answered as a ratio in one run:
 *
 * 1. What do the limits cost on the hot path? Fan-out throughput (1,000 participants, one
 *    sender as fast as acknowledged) with every limit on against the same node with
 *    RATE_LIMITS_ENABLED=false. All limits keep their default windows and run on every frame,
 *    but the message counts that would stop a single fast sender are raised
 *    (RATE_LIMIT_CHAT_MESSAGES, RATE_LIMIT_CONNECTION_MESSAGES, RATE_LIMIT_USER_MESSAGES): with
 *    the defaults one sender gets 10 frames/s. Target: ratio >= 0.90.
 *
 * 2. Does a flood hurt everyone else? Eight probe senders send 8 chats/s in all (1/s each, inside
 *    every default limit), each chat carrying its send time; a quarter of the other clients record
 *    send → receive latency (same process clock). With a flooder (own process, own loopback
 *    address, a fresh user per phase, junk + chat frames at up to 50,000/s, reconnecting when
 *    closed) the p99 must stay within 1.5× of the quiet phase just before it: three quiet/flood
 *    pairs, the verdict on the median of the three ratios. Two settings, each on its own node:
 *    - "defaults, chat raised": every limit at its default but RATE_LIMIT_CHAT_MESSAGES raised (the
 *      brief's setting; the raised chat limit applies to the flooder as well, so its chats that
 *      pass the per-connection and per-user limits are fanned out to the room);
 *    - "all defaults": nothing raised.
 *
 * Clients connect from many 127.x source addresses (16 each) so the default per-IP connection
 * limit (20 a minute) holds for them; the flooder has an address of its own.
 *
 *   scripts/with-node.sh npx tsx load-tests/limits.ts
 */
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { signAccessToken } from '../signaling/src/auth/tokens.js';
import { closeAll, connectAll, LatencyRecorder, type BenchClient, type Identity } from './lib/clients.js';
import {
  foreignCpuSeconds,
  LOADGEN_CPU,
  pinSelf,
  ROOT,
  sleep,
  wrapCommand,
  type ServerProcess,
} from './lib/processes.js';
import { fmt, median, table, verdict, writeReport } from './lib/report.js';
import {
  BENCH_SECRET,
  chatText,
  identities,
  interleavedRounds,
  loopbackSource,
  measureThroughput,
  presenterOf,
  publicEnv,
  start,
  tradingRoomTarget,
  type InterleavedRounds,
  type Target,
  type Throughput,
} from './lib/scenario.js';

/** `--quick`: small sizes, one round and one quiet/flood pair (the smoke run); its ratios mean little. */
const QUICK = process.argv.includes('--quick');
const PARTICIPANTS = QUICK ? 100 : 1000;
const RAISED = '1000000000';
const ROUNDS = QUICK ? 1 : 5;
/** Windows in which other processes used more than this many cores are re-run (within the budget). */
const MAX_FOREIGN_CPU = 0.25;
const MAX_EXTRA_ROUNDS = QUICK ? 0 : 4;
const QUIET_FLOOD_PAIRS = QUICK ? 1 : 3;
const MAX_EXTRA_PAIRS = QUICK ? 0 : 2;
/** No extra rounds or pairs once the benchmark has run this long. */
const BUDGET_MS = 150_000;
const startedAt = Date.now();
const TARGET_THROUGHPUT_RATIO = 0.9;
const TARGET_LATENCY_RATIO = 1.5;
const WINDOW = { window: 16, maxInFlightDeliveries: 32 * PARTICIPANTS, maxMessages: 20_000, text: chatText(80) };
const JIT_WARMUP = { ...WINDOW, warmupMs: QUICK ? 300 : 1500, measureMs: 500 };
const MEASURE = { ...WINDOW, warmupMs: QUICK ? 200 : 500, measureMs: QUICK ? 800 : 2500 };
/** Probe chats per second, all senders together, round robin: each sender sends 1/s, inside every default limit. */
const PROBE_RATE = 8;
const PROBE_SENDERS = 8;
const PHASE_MS = QUICK ? 1500 : 5000;
const FLOOD_RATE = 50_000;
/** The flooder shares the load generator's core: it runs 10 nice levels lower so the receivers keep up. */
const FLOODER_NICE_OFFSET = 10;
/** Receivers that parse probe frames for latency (every 4th; the rest only count), to keep the clients' core free. */
const LATENCY_SAMPLE_EVERY = 4;

const LIMITS_OFF = tradingRoomTarget('limits off', { RATE_LIMITS_ENABLED: 'false' });
const LIMITS_ON = tradingRoomTarget('limits on', {
  RATE_LIMITS_ENABLED: 'true',
  RATE_LIMIT_CHAT_MESSAGES: RAISED,
  RATE_LIMIT_CONNECTION_MESSAGES: RAISED,
  RATE_LIMIT_USER_MESSAGES: RAISED,
});
/**
 * The brief's flood setting, chat raised: default limits, `chat.send` raised for the presenter
 * only (`RATE_LIMIT_CHAT_PRESENTER_MESSAGES`), so the flooder (a trader) keeps the default chat
 * limit and its chats are no longer fanned out 250 times a minute.
 */
const FLOOD_CHAT_RAISED = tradingRoomTarget('defaults, presenter chat raised', {
  RATE_LIMITS_ENABLED: 'true',
  RATE_LIMIT_CHAT_PRESENTER_MESSAGES: RAISED,
});
/** The same with `chat.send` raised for every role (the flooder too): what a global raise costs. */
const FLOOD_CHAT_RAISED_FOR_ALL = tradingRoomTarget('defaults, chat raised for all', {
  RATE_LIMITS_ENABLED: 'true',
  RATE_LIMIT_CHAT_MESSAGES: RAISED,
});
/** Every limit at its default: the probe senders stay inside them (1 chat/s each). */
const FLOOD_ALL_DEFAULTS = tradingRoomTarget('all defaults', { RATE_LIMITS_ENABLED: 'true' });

interface Live {
  readonly target: Target;
  readonly server: ServerProcess;
  readonly clients: BenchClient[];
}

const CPU_PROF = process.argv.includes('--cpu-prof');
let profileDir: string | undefined;

async function bringUp(target: Target, ids: readonly Identity[]): Promise<Live> {
  const name = target.name.replace(/\W+/g, '_');
  const server = await start(
    target,
    profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${name}.cpuprofile`] : [],
  );
  try {
    const clients = await connectAll({ dialect: target.dialect, port: server.port, path: target.path }, ids);
    return { target, server, clients };
  } catch (error) {
    process.stderr.write(`${target.name} failed; server output:\n${server.tail()}\n`);
    await server.stop();
    throw error;
  }
}

async function bringDown(live: Live): Promise<void> {
  await closeAll(live.clients);
  await live.server.stop();
}

// ---------------------------------------------------------------------------------------------
// 1. Throughput, limits on vs off

async function throughputPart(ids: readonly Identity[]): Promise<Record<string, unknown>> {
  const lives: Live[] = [];
  let measured: InterleavedRounds<Live>;
  try {
    for (const target of [LIMITS_ON, LIMITS_OFF]) lives.push(await bringUp(target, ids));
    for (const live of lives) await measureThroughput(live.server, live.clients, presenterOf(live.clients), JIT_WARMUP);
    measured = await interleavedRounds({
      targets: lives,
      name: (live) => live.target.name,
      order: 'alternate',
      measure: (live) => measureThroughput(live.server, live.clients, presenterOf(live.clients), MEASURE),
      rounds: ROUNDS,
      maxExtraRounds: MAX_EXTRA_ROUNDS,
      maxForeignCpu: MAX_FOREIGN_CPU,
      extraRoundsUntil: startedAt + BUDGET_MS,
    });
  } finally {
    for (const live of lives) await bringDown(live);
  }
  const { contended, roundsCounted } = measured;
  const [on, off] = lives as [Live, Live];
  const onRounds = measured.counted(on);
  const offRounds = measured.counted(off);
  if (contended) process.stdout.write('  warning: other processes kept the machine busy; ratios are less reliable\n');
  const paired = (pick: (t: Throughput) => number): number =>
    median(onRounds.map((t, i) => pick(t) / pick(offRounds[i] as Throughput)));
  const ratio = paired((t) => t.deliveriesPerSecond);
  const ratioPerCpu = paired((t) => t.deliveriesPerServerCpuSecond);
  const refused = onRounds.reduce((a, t) => a + t.refused, 0);
  process.stdout.write(
    '\n' +
      table(
        ['server', 'deliv/s', 'min', 'max', 'deliv/CPU-s', 'srv CPU', 'refused', 'missing'],
        [on, off].map((l) => {
          const r = measured.counted(l);
          return [
            l.target.name,
            median(r.map((t) => t.deliveriesPerSecond)),
            Math.min(...r.map((t) => t.deliveriesPerSecond)),
            Math.max(...r.map((t) => t.deliveriesPerSecond)),
            median(r.map((t) => t.deliveriesPerServerCpuSecond)),
            median(r.map((t) => t.serverCpu)),
            r.reduce((a, t) => a + t.refused, 0),
            r.reduce((a, t) => a + t.missing, 0),
          ];
        }),
      ) +
      '\n\n',
  );
  if (refused > 0)
    process.stdout.write(`  warning: the sender was refused ${refused} times: ${onRounds[0]?.lastRefusal}\n`);
  return {
    ratio,
    ratioPerServerCpu: ratioPerCpu,
    verdict: verdict(ratio, TARGET_THROUGHPUT_RATIO, '>='),
    verdictPerServerCpu: verdict(ratioPerCpu, TARGET_THROUGHPUT_RATIO, '>='),
    senderRefused: refused,
    roundsCounted,
    contended,
    rounds: Object.fromEntries(lives.map((l) => [l.target.name, measured.all(l)])),
  };
}

// ---------------------------------------------------------------------------------------------
// 2. Latency under a flood

interface FloodCounts {
  framesSent: number;
  connections: number;
  upgradesRefused: number;
  refusedStatus: Record<string, number>;
  closeCodes: Record<string, number>;
  received: number;
  rateLimitedReplies: number;
  okReplies: number;
  otherErrorReplies: number;
  seconds: number;
}

function runFlooder(url: string, localAddress: string, durationMs: number): Promise<FloodCounts> {
  const [command, args] = wrapCommand(
    LOADGEN_CPU,
    process.execPath,
    ['--import', 'tsx', 'load-tests/lib/flooder.ts'],
    FLOODER_NICE_OFFSET,
  );
  const child = spawn(command, args, {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/root',
      FLOOD_URL: url,
      FLOOD_LOCAL_ADDRESS: localAddress,
      FLOOD_RATE: String(FLOOD_RATE),
      FLOOD_DURATION_MS: String(durationMs),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), durationMs + 15_000);
  return new Promise((resolve, reject) =>
    child.once('exit', (code) => {
      clearTimeout(killer);
      try {
        resolve(JSON.parse(out.trim().split('\n').pop() ?? '') as FloodCounts);
      } catch {
        reject(new Error(`flooder exited ${code} without a result`));
      }
    }),
  );
}

interface Phase {
  readonly kind: 'quiet' | 'flood';
  readonly samples: number;
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  readonly probesSent: number;
  readonly probesRefused: number;
  readonly lastRefusal: string;
  /** Probe deliveries still not received 5 s after the phase (not in the percentiles). */
  readonly missing: number;
  readonly serverCpu: number;
  readonly foreignCpu: number;
  readonly loadGeneratorLagP99Ms: number;
  readonly flood?: FloodCounts & { framesPerSecond: number };
  readonly values: Float64Array;
}

async function latencyPhase(
  live: Live,
  kind: 'quiet' | 'flood',
  flooder: { token: string; address: string } | undefined,
): Promise<Phase> {
  const senders = live.clients.slice(0, PROBE_SENDERS);
  const receivers = live.clients.slice(PROBE_SENDERS).filter((_, i) => i % LATENCY_SAMPLE_EVERY === 0);
  const maxProbes = Math.ceil((PROBE_RATE * PHASE_MS) / 1000);
  const recorder = new LatencyRecorder((maxProbes + 8) * receivers.length);
  const flood = flooder
    ? runFlooder(
        `ws://127.0.0.1:${live.server.port}/ws?token=${encodeURIComponent(flooder.token)}`,
        flooder.address,
        PHASE_MS + 1000,
      )
    : undefined;
  if (flood) await sleep(700); // the flooder process starts and ramps up
  recorder.attach(receivers);
  const lag = monitorEventLoopDelay({ resolution: 5 });
  lag.enable();
  const foreign0 = foreignCpuSeconds();
  const cpu0 = live.server.cpu();
  const t0 = performance.now();
  let sent = 0;
  let refused = 0;
  let lastRefusal = '';
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      if (sent >= maxProbes) {
        clearInterval(timer);
        resolve();
        return;
      }
      const sender = senders[sent % senders.length] as BenchClient;
      sent++;
      sender.send('chat.send', { text: `lat:${performance.now()}` }, (reply) => {
        if (reply.ok) return;
        refused++;
        lastRefusal = reply.body.slice(0, 160);
      });
    }, 1000 / PROBE_RATE);
  });
  // Stragglers: wait (bounded) until every acknowledged probe reached every sampled receiver.
  const stragglersUntil = Date.now() + 5000;
  while (Date.now() < stragglersUntil && recorder.count < (sent - refused) * receivers.length) await sleep(20);
  const missing = Math.max(0, (sent - refused) * receivers.length - recorder.count);
  const seconds = (performance.now() - t0) / 1000;
  const serverCpu = (live.server.cpu() - cpu0) / seconds;
  const foreignCpu = (foreignCpuSeconds() - foreign0) / seconds;
  lag.disable();
  for (const c of receivers) c.onChat = undefined;
  const counts = flood ? await flood : undefined;
  const values = Float64Array.from(recorder.values.subarray(0, recorder.count));
  return {
    kind,
    samples: recorder.count,
    p50: recorder.p(50),
    p99: recorder.p(99),
    p999: recorder.p(99.9),
    max: recorder.p(100),
    probesSent: sent,
    probesRefused: refused,
    lastRefusal,
    missing,
    serverCpu,
    foreignCpu,
    loadGeneratorLagP99Ms: lag.percentile(99) / 1e6,
    ...(counts ? { flood: { ...counts, framesPerSecond: counts.framesSent / counts.seconds } } : {}),
    values,
  };
}

function pooledPercentile(phases: readonly Phase[], p: number): number {
  const all = new Float64Array(phases.reduce((a, ph) => a + ph.values.length, 0));
  let offset = 0;
  for (const ph of phases) {
    all.set(ph.values, offset);
    offset += ph.values.length;
  }
  all.sort();
  return all.length ? (all[Math.min(all.length - 1, Math.ceil((p / 100) * all.length) - 1)] as number) : Number.NaN;
}

let attackers = 0;

/** Quiet and flood phases alternate on one server; p99 of each kind pooled over its phases. */
async function floodPart(target: Target, ids: readonly Identity[]): Promise<Record<string, unknown>> {
  const live = await bringUp(target, ids);
  const phases: (Phase & { pair: number })[] = [];
  try {
    // Warm the chat path (JIT) without recording.
    for (let i = 0; i < PROBE_SENDERS; i++) {
      live.clients[i]?.send('chat.send', { text: 'warm-up' });
      await sleep(1000 / PROBE_RATE);
    }
    // Warm the flood path too (rejections, closes, refused upgrades), so the first measured flood
    // does not also measure the JIT: a short flood from an attacker of its own, not recorded.
    const warmToken = await signAccessToken(BENCH_SECRET, {
      userId: `flooder-warm-${attackers}`,
      roomId: 'bench',
      role: 'trader',
    });
    await runFlooder(
      `ws://127.0.0.1:${live.server.port}/ws?token=${encodeURIComponent(warmToken)}`,
      `127.3.0.${++attackers}`,
      1500,
    );
    await sleep(500);
    let cleanPairs = 0;
    for (let pair = 0; cleanPairs < QUIET_FLOOD_PAIRS && pair < QUIET_FLOOD_PAIRS + MAX_EXTRA_PAIRS; pair++) {
      if (pair >= QUIET_FLOOD_PAIRS && Date.now() - startedAt > BUDGET_MS) break;
      for (const kind of ['quiet', 'flood'] as const) {
        // Each flood phase is a fresh attacker (own user, own source address).
        const flooder =
          kind === 'flood'
            ? {
                token: await signAccessToken(BENCH_SECRET, {
                  userId: `flooder-${attackers}`,
                  roomId: 'bench',
                  role: 'trader',
                }),
                address: `127.2.0.${++attackers}`,
              }
            : undefined;
        const phase = { ...(await latencyPhase(live, kind, flooder)), pair };
        phases.push(phase);
        const f = phase.flood;
        process.stdout.write(
          `    ${kind.padEnd(5)}: p50 ${fmt(phase.p50)} ms, p99 ${fmt(phase.p99)} ms over ${phase.samples} deliveries` +
            (f
              ? `; flooder wrote ${fmt(f.framesPerSecond)} frames/s on ${f.connections} connections ` +
                `(${f.okReplies} accepted, ${f.rateLimitedReplies} RATE_LIMITED replies), ` +
                `closed ${JSON.stringify(f.closeCodes)}, upgrades refused ${JSON.stringify(f.refusedStatus)}`
              : '') +
            (phase.probesRefused ? `; ${phase.probesRefused} probes refused: ${phase.lastRefusal}` : '') +
            (phase.foreignCpu > MAX_FOREIGN_CPU
              ? `  (other processes used ${phase.foreignCpu.toFixed(2)} cores)`
              : '') +
            '\n',
        );
        await sleep(500);
      }
      const both = phases.filter((p) => p.pair === pair);
      if (both.every((p) => p.foreignCpu <= MAX_FOREIGN_CPU)) cleanPairs++;
      else process.stdout.write('    (this pair was disturbed by other processes: not counted)\n');
    }
  } finally {
    await bringDown(live);
  }
  // Pairs that count: the undisturbed ones, or every pair when none was undisturbed.
  const cleanPair = (pair: number): boolean =>
    phases.filter((p) => p.pair === pair).every((p) => p.foreignCpu <= MAX_FOREIGN_CPU);
  const contended = !phases.some((p) => cleanPair(p.pair));
  if (contended) process.stdout.write('  warning: other processes kept the machine busy; ratios are less reliable\n');
  const counted = phases.filter((p) => contended || cleanPair(p.pair));
  const quiet = counted.filter((p) => p.kind === 'quiet');
  const flood = counted.filter((p) => p.kind === 'flood');
  const p99Quiet = pooledPercentile(quiet, 99);
  const p99Flood = pooledPercentile(flood, 99);
  // Each flood phase against the quiet phase just before it (drift-proof), median over the pairs.
  const pairRatios = [...new Set(counted.map((p) => p.pair))].map((pair) => {
    const q = counted.find((p) => p.pair === pair && p.kind === 'quiet');
    const f = counted.find((p) => p.pair === pair && p.kind === 'flood');
    return q && f ? f.p99 / q.p99 : Number.NaN;
  });
  const ratio = median(pairRatios);
  process.stdout.write(
    table(
      [
        'phase',
        'deliveries',
        'missing',
        'p50 ms',
        'p99 ms',
        'max ms',
        'srv CPU',
        'gen lag p99',
        'other CPU',
        'flood frames/s',
        'refused',
      ],
      phases.map((p) => [
        `  ${p.kind}`,
        p.samples,
        p.missing,
        p.p50,
        p.p99,
        p.max,
        p.serverCpu,
        p.loadGeneratorLagP99Ms,
        p.foreignCpu,
        p.flood ? p.flood.framesPerSecond : '-',
        p.probesRefused,
      ]),
    ) + '\n',
  );
  process.stdout.write(
    `  p99 flood / quiet, median of ${pairRatios.length} pairs (${pairRatios.map((r) => fmt(r)).join(', ')}): ` +
      `${verdict(ratio, TARGET_LATENCY_RATIO, '<=')}; pooled ${fmt(p99Flood)} / ${fmt(p99Quiet)} ms = ${fmt(p99Flood / p99Quiet)}\n\n`,
  );
  return {
    server: publicEnv(target),
    p99QuietMs: p99Quiet,
    p99FloodMs: p99Flood,
    p50QuietMs: pooledPercentile(quiet, 50),
    p50FloodMs: pooledPercentile(flood, 50),
    ratio,
    pairRatios,
    pooledRatio: p99Flood / p99Quiet,
    verdict: verdict(ratio, TARGET_LATENCY_RATIO, '<='),
    contended,
    phases: phases.map(({ values: _values, ...rest }) => ({ ...rest, counted: contended || cleanPair(rest.pair) })),
  };
}

async function main(): Promise<void> {
  const pinning = pinSelf();
  const started = Date.now();
  if (CPU_PROF) {
    profileDir = join(ROOT, 'load-tests', 'reports', `profiles-${Date.now()}`);
    mkdirSync(profileDir, { recursive: true });
  }
  process.stdout.write(`limits: ${PARTICIPANTS} participants in one room; ${pinning}\n`);
  const ids = await identities({
    count: PARTICIPANTS,
    room: 'bench',
    prefix: 'user-',
    presenterIndex: 0,
    spreadSources: true,
  });
  const part = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
  let throughput: Record<string, unknown> = {};
  const latency: Record<string, Record<string, unknown>> = {};
  if (part !== 'latency') {
    process.stdout.write(`1. fan-out throughput, limits on (message counts raised) vs off, ${ROUNDS} paired rounds\n`);
    throughput = await throughputPart(ids);
  }
  if (part !== 'throughput') {
    process.stdout.write(
      `2. probe chat latency (${PROBE_SENDERS} senders, ${PROBE_RATE} chats/s in all), quiet vs flood ` +
        `(one attacker, up to ${FLOOD_RATE} frames/s, reconnecting)\n`,
    );
    for (const target of QUICK
      ? [FLOOD_CHAT_RAISED]
      : [FLOOD_CHAT_RAISED, FLOOD_ALL_DEFAULTS, FLOOD_CHAT_RAISED_FOR_ALL]) {
      process.stdout.write(`  limits: ${target.name}\n`);
      latency[target.name] = await floodPart(target, ids);
    }
  }
  if (throughput.verdict) {
    process.stdout.write(
      `limits on / off, deliveries/s (median of paired rounds): ${throughput.verdict as string}\n` +
        `limits on / off, deliveries per server CPU-second: ${throughput.verdictPerServerCpu as string}\n`,
    );
  }
  for (const [name, result] of Object.entries(latency)) {
    process.stdout.write(
      `p99 delivery latency, flood / quiet (${name}), median of paired phases: ${result.verdict as string}  ` +
        `(pooled ${fmt(result.p99FloodMs as number)} ms vs ${fmt(result.p99QuietMs as number)} ms)\n`,
    );
  }
  const path = writeReport('limits', {
    quick: QUICK,
    config: {
      participants: PARTICIPANTS,
      pinning,
      sources: `${loopbackSource(0)} … ${loopbackSource(PARTICIPANTS - 1)}, 16 clients per address`,
      throughput: {
        rounds: ROUNDS,
        measure: { ...MEASURE, text: `${MEASURE.text.length} chars` },
        limitsOn: publicEnv(LIMITS_ON),
        limitsOff: publicEnv(LIMITS_OFF),
      },
      latency: {
        probeRatePerSecond: PROBE_RATE,
        phaseMs: PHASE_MS,
        floodRate: FLOOD_RATE,
        probeSenders: PROBE_SENDERS,
        sampledReceivers: `every ${LATENCY_SAMPLE_EVERY}th of the others`,
      },
    },
    targets: { throughputRatio: TARGET_THROUGHPUT_RATIO, latencyRatio: TARGET_LATENCY_RATIO },
    throughput,
    latency,
    durationSeconds: Math.round((Date.now() - started) / 1000),
  });
  process.stdout.write(`report: ${path}  (${Math.round((Date.now() - started) / 1000)} s)\n`);
  if (profileDir) process.stdout.write(`CPU profiles: ${profileDir} (load-tests/tools/cpuprofile-top.ts)\n`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`limits failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
