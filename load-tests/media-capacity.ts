/**
 * Media capacity benchmark (issue: "consumers one worker forwards for a 1 Mbit/s RTP stream before
 * loss exceeds 1%, and the same for two workers with the pipe; aim for >= 400 per worker").
 *
 * One 1 Mbit/s VP8 RTP stream (125 pkt/s of 1,012 B, see `lib/media-rtp.ts`) from a source
 * process into a producer on a comedia plain transport; N consumers, each on its own plain recv
 * transport connected to one of the load generator's UDP sinks (a pool of sockets; consumers told
 * apart by SSRC). For each N, a 5 s window of source packets: loss = 1 - on-time / expected, where
 * on-time means received within 250 ms of being sent. The capacity of a case is the largest N
 * with loss <= 1% before the first N above it (a failing step is retried once when its loss is
 * under 10%, against noise).
 *
 * Cases, interleaved per N so that a drift of the machine hits all of them alike:
 * - `baseline`: no SFU — the same source process sends N streams straight to the same sinks (same
 *   spread over sockets). This is the load generator's own receive capacity (and a Node sender's
 *   fan-out capacity); the SFU cases are reported as a ratio of it.
 * - `one-worker`: numWorkers 1, one router (consumersPerRouter far above N).
 * - `two-workers`: numWorkers 2, consumersPerRouter = N/2: half the consumers on the primary
 *   router, half on a router of the second worker fed through the pipe (checked per step).
 *
 * Every step records CPU of the load generator, the source and each worker, the machine's busy,
 * softirq and steal time, what else ran (other = machine busy - ours: a failing step under such
 * contention is retried once whatever its loss, and flagged), the kernel's UDP counters
 * (RcvbufErrors = datagrams dropped at a full receive buffer), the receive queues of the sinks and
 * of the SFU's ingest port (who is behind: the generator, or the worker), the generator's event
 * loop delay, and CPU microseconds per packet of the forwarder and the generator, from which a
 * CPU-normalized capacity (streams per fully busy core) that other load on the machine disturbs
 * far less than the loss ladder.
 *
 *   scripts/with-node.sh npx tsx load-tests/media-capacity.ts \
 *     [--counts=50,100,200] [--cases=baseline,one-worker,two-workers] [--measure-seconds=5] \
 *     [--cap-seconds=290] [--quiet-wait-seconds=60] [--sinks=32] [--no-retry] [--viewer-bwe=off]
 *
 * It first waits (up to --quiet-wait-seconds, inside the cap) for other processes to leave the
 * machine; `--viewer-bwe=off` consumes without transport-cc/REMB (bare forwarding cost).
 *
 * Everything on 127.0.0.1; the run stops by itself within --cap-seconds (hard exit 60 s later).
 */
import { availableParallelism } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';

import { cpuSeconds, ROOT, rssBytes } from './lib/processes.js';
import { fmt, table, verdict, writeReport } from './lib/report.js';
import {
  baselineSsrc,
  LATE_MS,
  machineJiffies,
  PACKET_BYTES,
  PACKET_INTERVAL_MS,
  PACKETS_PER_SECOND,
  SinkPool,
  SOURCE_SSRC,
  udpCounters,
  udpReceiveQueues,
  udpDelta,
  type SinkResult,
  type UdpCounters,
} from './lib/media-rtp.js';
import { placement, setUpSfu, type SfuPlacement } from './lib/media-sfu.js';
import { SourceProcess } from './lib/media-source-client.js';

type CaseName = 'baseline' | 'one-worker' | 'two-workers';
const ALL_CASES: readonly CaseName[] = ['baseline', 'one-worker', 'two-workers'];

const args = process.argv.slice(2);
const arg = (name: string): string | undefined =>
  args.find((a) => a.startsWith(`--${name}=`))?.slice(`--${name}=`.length);

const COUNTS = (arg('counts') ?? '50,100,200,300,400,500,600,800,1000,1200,1600,2000')
  .split(',')
  .map(Number)
  .filter((n) => Number.isInteger(n) && n > 0);
const CASES = (arg('cases')?.split(',') ?? [...ALL_CASES]).filter((c): c is CaseName =>
  (ALL_CASES as readonly string[]).includes(c),
);
const MEASURE_SECONDS = Number(arg('measure-seconds') ?? 5);
const WARMUP_SECONDS = 0.5;
const CAP_SECONDS = Number(arg('cap-seconds') ?? 290);
const HARD_EXIT_SECONDS = CAP_SECONDS + 60;
const SINKS = Number(arg('sinks') ?? 32);
const RECV_BUFFER_BYTES = 1 << 20;
const RETRY = !args.includes('--no-retry');
/** `--viewer-bwe=off`: viewers without transport-cc/REMB (bare forwarding), see `setUpSfu`. */
const VIEWER_BWE = arg('viewer-bwe') !== 'off';
const RETRY_BELOW_LOSS = 0.1;
const MAX_LOSS = 0.01;
const TARGET_PER_WORKER = 400;
const SETUP_CONCURRENCY = 16;
const START_TIMEOUT_MS = 5000;
const MAX_REFINEMENTS = 2;
/** Other load (cores) above which a window counts as contended (and a failure is retried). */
const CONTENDED_CORES = 0.25;
const QUIET_WAIT_SECONDS = Number(arg('quiet-wait-seconds') ?? 60);

const WARMUP_PACKETS = Math.round(WARMUP_SECONDS * PACKETS_PER_SECOND);
const WINDOW_PACKETS = Math.round(MEASURE_SECONDS * PACKETS_PER_SECOND);

type Cpu = {
  /** Cores busy (CPU-seconds per second) during the window. */
  generator: number;
  source: number;
  workers: number[];
  machineBusy: number;
  softirq: number;
  /** Cores the hypervisor gave to someone else (steal time): not ours, not other processes'. */
  steal: number;
  /** machineBusy - generator - source - workers: other processes of the machine, and kernel time not charged to ours. */
  other: number;
};

type Step = {
  case: CaseName;
  count: number;
  attempt: number;
  pass: boolean;
  loss: number;
  sink: SinkResult;
  /** Streams that had received anything before the window started. */
  startedStreams: number;
  source: {
    packetsPerSecond: number;
    maxLagMs: number;
    sendErrors: number;
    keyFrames: number;
    keyFrameRequests: number;
  };
  /** Datagrams per second the sinks got on time. */
  deliveredPerSecond: number;
  /** Mbit/s the sinks got on time (RTP bytes). */
  deliveredMbps: number;
  cpu: Cpu;
  /** CPU per packet, from the window's CPU and the packets the sinks got (on time or late). */
  efficiency: {
    receivedPerSecond: number;
    /** Load generator (sinks) CPU microseconds per received packet. */
    generatorUsPerPacket: number;
    /** Forwarder CPU microseconds per received packet: the workers', or the source's in the baseline. */
    forwarderUsPerPacket: number;
    /** 1 Mbit/s streams one fully busy core of the forwarder would carry at that cost. */
    streamsPerForwarderCore: number;
    /** 1 Mbit/s streams one fully busy core of the load generator would count at that cost. */
    streamsPerGeneratorCore: number;
  };
  /** Receive queues sampled every 250 ms in the window (fill = queued bytes / receive buffer). */
  queues: { sinkMaxFill: number; sinkMeanQueuedKiB: number; sfuInputMaxKiB: number | undefined };
  /** Event loop delay of the load generator in the window, ms. */
  generatorLoopDelayMs: { p99: number; max: number };
  udp: UdpCounters;
  setupSeconds?: number;
  placement?: SfuPlacement;
  /** Resident memory of each worker at the end of the window, MiB. */
  workerRssMiB?: number[];
  pipeUsed?: boolean;
  /** Warnings and errors the media service logged during the step (close-time channel noise left out). */
  sfuLog?: string[];
  /** Other processes used more than CONTENDED_CORES of the machine during the window. */
  contended: boolean;
  error?: string;
};

/** What one measurement window records of a step. */
type StepWindow = Omit<Step, 'case' | 'count' | 'attempt' | 'pass' | 'loss' | 'contended'>;

type Ladder = {
  case: CaseName;
  lastPass: number | undefined;
  firstFail: number | undefined;
  done: boolean;
  stoppedBy: 'failure' | 'time-cap' | 'counts-exhausted' | undefined;
  refinements: number;
};

const started = Date.now();
const elapsed = (): number => (Date.now() - started) / 1000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const pct = (x: number): string => (Number.isFinite(x) ? `${(x * 100).toFixed(2)}%` : String(x));
const log = (line: string): void => {
  process.stdout.write(`[${elapsed().toFixed(0).padStart(3)} s] ${line}\n`);
};

const steps: Step[] = [];
const ladders = new Map<CaseName, Ladder>(
  CASES.map((c) => [
    c,
    { case: c, lastPass: undefined, firstFail: undefined, done: false, stoppedBy: undefined, refinements: 0 },
  ]),
);
let setupSecondsPerViewer = 0.004;
let sinks: SinkPool | undefined;
let source: SourceProcess | undefined;

/** Seconds a step of `c` with `count` consumers will roughly take. */
function estimate(c: CaseName, count: number): number {
  const window = WARMUP_SECONDS + MEASURE_SECONDS + LATE_MS / 1000 + 1;
  return c === 'baseline' ? window : window + 1 + count * setupSecondsPerViewer;
}

/** Runs one measurement window over the streams already flowing; `pids` are the SFU workers. */
async function measureWindow(
  pool: SinkPool,
  src: SourceProcess,
  streams: number,
  workerPids: readonly number[],
  sfuInputPort?: number,
): Promise<StepWindow> {
  const waitUntil = Date.now() + START_TIMEOUT_MS;
  while (pool.streamsStarted() < streams && Date.now() < waitUntil) await sleep(20);
  const startedStreams = pool.streamsStarted();

  const m0 = await src.mark();
  const lo = m0.due + WARMUP_PACKETS;
  const hi = lo + WINDOW_PACKETS;
  pool.setWindow(lo, hi);
  await sleep((lo - m0.due) * PACKET_INTERVAL_MS);

  const sample = (): {
    wall: number;
    gen: number;
    src: number;
    workers: number[];
    jiffies: ReturnType<typeof machineJiffies>;
    udp: UdpCounters;
  } => {
    const usage = process.cpuUsage();
    return {
      wall: performance.now(),
      gen: (usage.user + usage.system) / 1e6,
      src: cpuSeconds(src.pid),
      workers: workerPids.map((pid) => cpuSeconds(pid)),
      jiffies: machineJiffies(),
      udp: udpCounters(),
    };
  };
  const sinkPorts = pool.ports;
  const watched = new Set([...sinkPorts, ...(sfuInputPort !== undefined ? [sfuInputPort] : [])]);
  let sinkMaxFill = 0;
  let sinkQueuedSum = 0;
  let samples = 0;
  let sfuInputMax = 0;
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  const a = sample();
  loopDelay.enable();
  const mA = await src.mark();
  const windowEnd = performance.now() + WINDOW_PACKETS * PACKET_INTERVAL_MS;
  while (performance.now() < windowEnd) {
    await sleep(Math.min(250, windowEnd - performance.now()));
    const queues = udpReceiveQueues(watched);
    let sum = 0;
    for (const port of sinkPorts) {
      const q = queues.get(port) ?? 0;
      sum += q;
      sinkMaxFill = Math.max(sinkMaxFill, q / pool.recvBufferBytes);
    }
    sinkQueuedSum += sum;
    samples++;
    if (sfuInputPort !== undefined) sfuInputMax = Math.max(sfuInputMax, queues.get(sfuInputPort) ?? 0);
  }
  const b = sample();
  loopDelay.disable();
  let mB = await src.mark();
  while (mB.next < hi) {
    await sleep(20);
    mB = await src.mark();
  }
  await sleep(LATE_MS + 50);
  const sink = pool.result();

  const wall = (b.wall - a.wall) / 1000;
  const jiffies = b.jiffies.total - a.jiffies.total;
  const cores = (x: number): number => x / wall;
  const workers = b.workers.map((cpu, i) => cores(cpu - (a.workers[i] ?? 0)));
  const generator = cores(b.gen - a.gen);
  const srcCpu = cores(b.src - a.src);
  const machineCores = coreCount();
  const machineBusy = jiffies > 0 ? ((b.jiffies.busy - a.jiffies.busy) / jiffies) * machineCores : Number.NaN;
  const softirq = jiffies > 0 ? ((b.jiffies.softirq - a.jiffies.softirq) / jiffies) * machineCores : Number.NaN;
  const steal = jiffies > 0 ? ((b.jiffies.steal - a.jiffies.steal) / jiffies) * machineCores : Number.NaN;
  const windowSeconds = WINDOW_PACKETS / PACKETS_PER_SECOND;
  const deliveredPerSecond = sink.onTime / windowSeconds;
  const receivedPerSecond = (sink.onTime + sink.late) / windowSeconds;
  const forwarderCpu = workerPids.length ? workers.reduce((x, y) => x + y, 0) : srcCpu;
  const generatorUs = (generator * 1e6) / receivedPerSecond;
  const forwarderUs = (forwarderCpu * 1e6) / receivedPerSecond;
  return {
    sink,
    startedStreams,
    source: {
      packetsPerSecond: (mB.next - mA.next) / (((mB.due - mA.due) * PACKET_INTERVAL_MS) / 1000 || 1),
      maxLagMs: mB.maxLagMs,
      sendErrors: mB.sendErrors - m0.sendErrors,
      keyFrames: mB.keyFrames - m0.keyFrames,
      keyFrameRequests: mB.keyFrameRequests - m0.keyFrameRequests,
    },
    deliveredPerSecond,
    deliveredMbps: (deliveredPerSecond * PACKET_BYTES * 8) / 1e6,
    cpu: {
      generator,
      source: srcCpu,
      workers,
      machineBusy,
      softirq,
      steal,
      other: machineBusy - generator - srcCpu - workers.reduce((x, y) => x + y, 0),
    },
    efficiency: {
      receivedPerSecond,
      generatorUsPerPacket: generatorUs,
      forwarderUsPerPacket: forwarderUs,
      streamsPerForwarderCore: 1e6 / (PACKETS_PER_SECOND * forwarderUs),
      streamsPerGeneratorCore: 1e6 / (PACKETS_PER_SECOND * generatorUs),
    },
    queues: {
      sinkMaxFill,
      sinkMeanQueuedKiB: samples ? sinkQueuedSum / samples / 1024 : 0,
      sfuInputMaxKiB: sfuInputPort !== undefined ? sfuInputMax / 1024 : undefined,
    },
    generatorLoopDelayMs: { p99: loopDelay.percentile(99) / 1e6, max: loopDelay.max / 1e6 },
    udp: udpDelta(a.udp, b.udp),
  };
}

function coreCount(): number {
  return availableParallelism();
}

/** A step from its window: passes when the loss is at most MAX_LOSS. */
function stepOf(c: CaseName, count: number, attempt: number, m: StepWindow): Step {
  return {
    case: c,
    count,
    attempt,
    pass: m.sink.loss <= MAX_LOSS,
    loss: m.sink.loss,
    contended: m.cpu.other > CONTENDED_CORES,
    ...m,
  };
}

async function runStep(c: CaseName, count: number, attempt: number): Promise<Step> {
  const pool = sinks!;
  const src = source!;
  if (c === 'baseline') {
    const ssrcs = Array.from({ length: count }, (_, i) => baselineSsrc(i));
    pool.reset(ssrcs);
    await src.request({ type: 'fanout', ssrcs });
    try {
      return stepOf(c, count, attempt, await measureWindow(pool, src, count, []));
    } finally {
      await src.request({ type: 'stop' });
    }
  }
  const numWorkers = c === 'one-worker' ? 1 : 2;
  const consumersPerRouter = c === 'one-worker' ? 1_000_000 : Math.ceil(count / 2);
  const setup = await setUpSfu({
    numWorkers,
    consumersPerRouter,
    viewers: count,
    sinkPorts: pool.ports,
    concurrency: SETUP_CONCURRENCY,
    viewerBwe: VIEWER_BWE,
  });
  setupSecondsPerViewer = Math.max(0.001, setup.setupSeconds / count);
  try {
    pool.reset(setup.consumerSsrcs);
    await src.request({ type: 'sfu', ip: setup.producerIp, port: setup.producerPort, ssrc: SOURCE_SSRC });
    const where = placement(setup.media);
    const m = await measureWindow(
      pool,
      src,
      count,
      where.workers.map((w) => w.pid),
      setup.producerPort,
    );
    const pipeUsed =
      new Set(where.routerWorkers).size === 2 &&
      where.workers.length === 2 &&
      where.workers.every((w) => w.consumers > 0);
    const step: Step = {
      ...stepOf(c, count, attempt, m),
      setupSeconds: setup.setupSeconds,
      placement: where,
      workerRssMiB: where.workers.map((w) => rssBytes(w.pid) / 2 ** 20),
      pipeUsed,
      sfuLog: setup.log.problems,
    };
    if (c === 'two-workers' && !pipeUsed) {
      step.pass = false;
      step.error = `expected two routers on two workers, got ${JSON.stringify(where.routerWorkers)}`;
    }
    return step;
  } finally {
    await src.request({ type: 'stop' });
    await setup.media.close();
  }
}

function describe(step: Step): string {
  const s = step.sink;
  const workers = step.cpu.workers.map((w) => fmt(w)).join('+') || '-';
  const where = step.placement
    ? ` routers on workers [${step.placement.routerWorkers.join(',')}], consumers/worker [${step.placement.workers.map((w) => w.consumers).join(',')}]`
    : '';
  return (
    `${step.case.padEnd(11)} N=${String(step.count).padStart(4)}${step.attempt > 1 ? ' (retry)' : ''}: ` +
    `loss ${pct(step.loss)} (late ${s.late}, silent ${s.silentStreams}), delay p50/p99 ${s.delayMs.p50}/${s.delayMs.p99} ms, ` +
    `${fmt(step.deliveredPerSecond)} pkt/s; CPU gen ${fmt(step.cpu.generator)} src ${fmt(step.cpu.source)} ` +
    `workers ${workers} machine ${fmt(step.cpu.machineBusy)} (other ${fmt(step.cpu.other)}, steal ${fmt(step.cpu.steal)}); ` +
    `RcvbufErrors ${step.udp.RcvbufErrors}, sink queue max ${pct(step.queues.sinkMaxFill)}` +
    `${step.queues.sfuInputMaxKiB !== undefined ? `, SFU input queue max ${fmt(step.queues.sfuInputMaxKiB)} KiB` : ''}, ` +
    `gen loop delay p99 ${fmt(step.generatorLoopDelayMs.p99)} ms, src lag max ${fmt(step.source.maxLagMs)} ms; ` +
    `us/pkt gen ${fmt(step.efficiency.generatorUsPerPacket)} fwd ${fmt(step.efficiency.forwarderUsPerPacket)}` +
    `${step.setupSeconds !== undefined ? `; setup ${step.setupSeconds.toFixed(1)} s` : ''}` +
    `${step.workerRssMiB ? `; worker RSS ${step.workerRssMiB.map((m) => m.toFixed(0)).join('+')} MiB` : ''}` +
    `${where}${step.error ? `; ${step.error}` : ''}${step.sfuLog?.length ? `; ${step.sfuLog.length} SFU log problems` : ''}` +
    `${step.contended ? ' [contended]' : ''} => ${step.pass ? 'pass' : 'FAIL'}`
  );
}

/** Runs `c` at `count` (and once more when it fails narrowly); returns whether it passed. */
async function decide(c: CaseName, count: number): Promise<boolean> {
  let attempt = 1;
  for (;;) {
    let step: Step;
    try {
      step = await runStep(c, count, attempt);
    } catch (error) {
      log(`${c} N=${count}: ${error instanceof Error ? error.message : String(error)}`);
      throw error;
    }
    steps.push(step);
    log(describe(step));
    if (step.pass) return true;
    const canRetry =
      RETRY &&
      attempt === 1 &&
      !step.error &&
      (step.loss < RETRY_BELOW_LOSS || step.contended) &&
      elapsed() + estimate(c, count) < CAP_SECONDS;
    if (!canRetry) return false;
    attempt++;
  }
}

function roundTo50(n: number): number {
  return Math.round(n / 50) * 50;
}

async function run(): Promise<void> {
  for (const count of COUNTS) {
    for (const c of CASES) {
      const ladder = ladders.get(c)!;
      if (ladder.done) continue;
      if (elapsed() + estimate(c, count) > CAP_SECONDS) {
        ladder.done = true;
        ladder.stoppedBy = 'time-cap';
        log(`${c}: time cap reached before N=${count}`);
        continue;
      }
      if (await decide(c, count)) ladder.lastPass = count;
      else {
        ladder.firstFail = count;
        ladder.done = true;
        ladder.stoppedBy = 'failure';
      }
    }
  }
  for (const ladder of ladders.values()) if (!ladder.done) ladder.stoppedBy = 'counts-exhausted';
  // Narrow the gaps between the last pass and the first failure, time permitting.
  for (let round = 0; round < MAX_REFINEMENTS; round++) {
    for (const ladder of ladders.values()) {
      if (ladder.firstFail === undefined) continue;
      const low = ladder.lastPass ?? 0;
      const mid = roundTo50((low + ladder.firstFail) / 2);
      if (mid <= low || mid >= ladder.firstFail || ladder.firstFail - low < 100) continue;
      if (elapsed() + estimate(ladder.case, mid) > CAP_SECONDS) continue;
      ladder.refinements++;
      if (await decide(ladder.case, mid)) ladder.lastPass = mid;
      else ladder.firstFail = mid;
    }
  }
}

type Summary = {
  case: CaseName;
  /** Largest N with loss <= 1% below the first failing N. */
  maxConsumers: number | undefined;
  firstFailing: number | undefined;
  stoppedBy: Ladder['stoppedBy'];
  /** True when no tested N failed: the capacity is at least maxConsumers. */
  lowerBound: boolean;
  workers: number;
  perWorker: number | undefined;
  /** maxConsumers / baseline's maxConsumers. */
  ratioToBaseline: number | undefined;
  ratioIsBound: string | undefined;
  /** Steps of this case whose window was contended by other processes. */
  contendedSteps: number;
  /** Whether the step that set firstFailing was contended. */
  firstFailingContended: boolean | undefined;
  /**
   * CPU-normalized capacity, median over the case's passing steps with N >= 200: streams one
   * fully busy core of the forwarder (worker(s); the Node source in the baseline) and of the load
   * generator would carry at the CPU cost per packet measured. Less sensitive to other load on
   * the machine than the loss ladder.
   */
  streamsPerForwarderCore: number | undefined;
  streamsPerGeneratorCore: number | undefined;
};

const median = (values: readonly number[]): number | undefined => {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
};

function summarize(): Summary[] {
  const base = ladders.get('baseline');
  return [...ladders.values()].map((l) => {
    const workers = l.case === 'two-workers' ? 2 : l.case === 'one-worker' ? 1 : 0;
    const lowerBound = l.firstFail === undefined;
    const ofCase = steps.filter((s) => s.case === l.case);
    const stable = ofCase.filter((s) => s.pass && s.count >= 200);
    let ratio: number | undefined;
    let bound: string | undefined;
    if (l.case !== 'baseline' && base?.lastPass && l.lastPass !== undefined) {
      ratio = l.lastPass / base.lastPass;
      const baseOpen = base.firstFail === undefined;
      if (baseOpen && lowerBound) bound = 'both open (neither failed): not meaningful';
      else if (baseOpen) bound = 'upper bound (baseline never failed)';
      else if (lowerBound) bound = 'lower bound (SFU case never failed)';
    }
    return {
      case: l.case,
      maxConsumers: l.lastPass,
      firstFailing: l.firstFail,
      stoppedBy: l.stoppedBy,
      lowerBound,
      workers,
      perWorker: workers && l.lastPass !== undefined ? l.lastPass / workers : undefined,
      ratioToBaseline: ratio,
      ratioIsBound: bound,
      contendedSteps: ofCase.filter((s) => s.contended).length,
      firstFailingContended:
        l.firstFail === undefined ? undefined : ofCase.filter((s) => s.count === l.firstFail).every((s) => s.contended),
      streamsPerForwarderCore: median(stable.map((s) => s.efficiency.streamsPerForwarderCore)),
      streamsPerGeneratorCore: median(stable.map((s) => s.efficiency.streamsPerGeneratorCore)),
    };
  });
}

/** A table with a row per step: its case (marked when a retry) and N, then `cells`. */
function stepTable(headers: readonly string[], cells: (s: Step) => (string | number)[]): string {
  return table(
    ['case', 'N', ...headers],
    steps.map((s) => [s.attempt > 1 ? `${s.case} (retry)` : s.case, s.count, ...cells(s)]),
  );
}

function report(status: 'complete' | 'hard-cap' | 'error', error?: unknown): void {
  const summaries = summarize();
  process.stdout.write('\n');
  process.stdout.write(
    stepTable(
      [
        'loss',
        'late',
        'silent',
        'p50 ms',
        'p99 ms',
        'deliv pkt/s',
        'Mbit/s',
        'gen CPU',
        'src CPU',
        'worker CPU',
        'machine',
        'other',
        'steal',
        'RcvbufErr',
        'result',
      ],
      (s) => [
        pct(s.loss),
        s.sink.late,
        s.sink.silentStreams,
        s.sink.delayMs.p50,
        s.sink.delayMs.p99,
        s.deliveredPerSecond,
        s.deliveredMbps,
        s.cpu.generator,
        s.cpu.source,
        s.cpu.workers.map((w) => fmt(w)).join('+') || '-',
        s.cpu.machineBusy,
        s.cpu.other,
        s.cpu.steal,
        s.udp.RcvbufErrors,
        `${s.error ? 'ERROR' : s.pass ? 'pass' : 'FAIL'}${s.contended ? ' *' : ''}`,
      ],
    ) + `\n(* contended: other processes used > ${CONTENDED_CORES} core during the window)\n\n`,
  );
  process.stdout.write(
    stepTable(
      [
        'gen us/pkt',
        'fwd us/pkt',
        'streams/fwd core',
        'streams/gen core',
        'sink queue max',
        'SFU in KiB',
        'gen loop p99 ms',
        'src lag ms',
      ],
      (s) => [
        s.efficiency.generatorUsPerPacket,
        s.efficiency.forwarderUsPerPacket,
        s.efficiency.streamsPerForwarderCore,
        s.efficiency.streamsPerGeneratorCore,
        pct(s.queues.sinkMaxFill),
        s.queues.sfuInputMaxKiB ?? '-',
        s.generatorLoopDelayMs.p99,
        s.source.maxLagMs,
      ],
    ) + '\n(fwd = the worker(s), or the Node source in the baseline; streams/core = 1e6 / (125 x us/pkt))\n\n',
  );
  process.stdout.write(
    table(
      [
        'case',
        'max consumers (loss <= 1%)',
        'first failing',
        'per worker',
        'ratio to baseline',
        'streams/fwd core',
        'streams/gen core',
        'note',
      ],
      summaries.map((s) => [
        s.case,
        s.maxConsumers === undefined ? 'none' : `${s.lowerBound ? '>= ' : ''}${s.maxConsumers}`,
        s.firstFailing ?? '-',
        s.perWorker ?? '-',
        s.ratioToBaseline ?? '-',
        s.streamsPerForwarderCore ?? '-',
        s.streamsPerGeneratorCore ?? '-',
        [
          s.ratioIsBound,
          s.stoppedBy === 'time-cap' ? 'stopped by the time cap' : undefined,
          s.firstFailingContended ? 'first failure under contention' : undefined,
        ]
          .filter(Boolean)
          .join('; '),
      ]),
    ) + '\n\n',
  );
  const verdicts: Record<string, string> = {};
  for (const s of summaries) {
    if (s.case === 'baseline' || s.perWorker === undefined) continue;
    verdicts[`${s.case} consumers per worker`] = verdict(s.perWorker, TARGET_PER_WORKER, '>=');
    process.stdout.write(`${s.case}: consumers per worker ${verdicts[`${s.case} consumers per worker`]}\n`);
  }
  const path = writeReport('media-capacity', {
    status,
    ...(error ? { error: error instanceof Error ? error.message : String(error) } : {}),
    config: {
      counts: COUNTS,
      cases: CASES,
      stream: {
        codec: 'VP8 (payload type 101)',
        packetsPerSecond: PACKETS_PER_SECOND,
        rtpPacketBytes: PACKET_BYTES,
        payloadMbps: (PACKETS_PER_SECOND * (PACKET_BYTES - 12) * 8) / 1e6,
      },
      measureSeconds: MEASURE_SECONDS,
      warmupSeconds: WARMUP_SECONDS,
      lateMs: LATE_MS,
      maxLoss: MAX_LOSS,
      sinks: SINKS,
      sinkRecvBufferBytes: sinks?.recvBufferBytes,
      retryBelowLoss: RETRY ? RETRY_BELOW_LOSS : null,
      setupConcurrency: SETUP_CONCURRENCY,
      viewerBwe: VIEWER_BWE ? 'on (router capabilities: transport-cc, abs-send-time, REMB)' : 'off',
      capSeconds: CAP_SECONDS,
      pinning: 'none (OS scheduler): generator, source and workers share the cores',
      contendedCores: CONTENDED_CORES,
    },
    quietBeforeStart: quiet,
    targets: { consumersPerWorker: TARGET_PER_WORKER },
    verdicts,
    summaries,
    steps,
    durationSeconds: Math.round(elapsed()),
  });
  process.stdout.write(`report: ${path.replace(`${ROOT}/`, '')}  (${Math.round(elapsed())} s)\n`);
}

/** Cores busy outside this process tree over `ms` (the machine is shared with other work). */
async function otherLoad(ms: number): Promise<number> {
  const a = machineJiffies();
  const self0 = process.cpuUsage();
  const src0 = source ? cpuSeconds(source.pid) : 0;
  await sleep(ms);
  const b = machineJiffies();
  const self1 = process.cpuUsage(self0);
  const src1 = source ? cpuSeconds(source.pid) : 0;
  const busy = ((b.busy - a.busy) / Math.max(1, b.total - a.total)) * coreCount();
  return busy - (self1.user + self1.system) / 1e6 / (ms / 1000) - (src1 - src0) / (ms / 1000);
}

/** Waits (bounded) for the machine to be quiet; returns the other load seen last. */
async function waitForQuiet(): Promise<{ otherCores: number; waitedSeconds: number }> {
  const until = Date.now() + QUIET_WAIT_SECONDS * 1000;
  const t0 = Date.now();
  let other = await otherLoad(1000);
  while (other > CONTENDED_CORES && Date.now() < until) {
    log(`machine busy with other work (${fmt(other)} cores); waiting for it to settle`);
    await sleep(4000);
    other = await otherLoad(1000);
  }
  return { otherCores: other, waitedSeconds: (Date.now() - t0) / 1000 };
}

let quiet: { otherCores: number; waitedSeconds: number } | undefined;

async function main(): Promise<void> {
  const hard = setTimeout(() => {
    log(`hard cap of ${HARD_EXIT_SECONDS} s reached: writing what was measured and exiting`);
    try {
      report('hard-cap');
    } finally {
      source?.stop();
      process.exit(3);
    }
  }, HARD_EXIT_SECONDS * 1000);
  hard.unref();
  sinks = await SinkPool.open(SINKS, RECV_BUFFER_BYTES);
  source = await SourceProcess.start(sinks.ports);
  log(
    `media capacity: 1 Mbit/s VP8 (${PACKETS_PER_SECOND} pkt/s x ${PACKET_BYTES} B), cases ${CASES.join(', ')}, ` +
      `N in ${COUNTS.join(',')}, ${MEASURE_SECONDS} s windows, ${SINKS} sink sockets ` +
      `(${sinks.recvBufferBytes} B receive buffers), viewer BWE ${VIEWER_BWE ? 'on' : 'off'}, cap ${CAP_SECONDS} s, ${coreCount()} cores`,
  );
  let status: 'complete' | 'error' = 'complete';
  let failure: unknown;
  try {
    quiet = await waitForQuiet();
    if (quiet.otherCores > CONTENDED_CORES) {
      log(`WARNING: other processes keep ${fmt(quiet.otherCores)} cores busy; results will be pessimistic`);
    }
    await run();
  } catch (error) {
    status = 'error';
    failure = error;
  } finally {
    source.stop();
    sinks.close();
  }
  report(status, failure);
  if (failure) throw failure;
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(
      `media-capacity failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  },
);
