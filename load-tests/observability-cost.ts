/**
 * S6 — what observability costs the fan-out: one room of participants, one presenter sending chat
 * as fast as acknowledged, at trading-room three times over in the same run: with tracing, Sentry
 * and metrics off (metrics cannot be turned off: `/metrics` is always there), with tracing at 10 %
 * (`parentbased_traceidratio`, OTLP/HTTP protobuf to a sink in this process) and Sentry on, and
 * the same at 100 %. Every node runs with the OpenTelemetry preload, as `npm start` does.
 *
 * The servers are set up first (each its own process, all participants joined); then short
 * windows take turns between them for several rounds, so a drift of the machine's speed hits each
 * alike. Ratios are medians of per-round ratios against "off"; the cost per message is the extra
 * server CPU per chat message (fanned out to every participant) over "off".
 *
 *   scripts/with-node.sh npx tsx load-tests/observability-cost.ts [--quick] [--split] [--cpu-prof] [--participants=N]
 *
 * Target: deliveries/s at 10 % sampling ≥ 0.9 × off.
 */
import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { closeAll } from './lib/clients.js';
import { pinSelf, ROOT, type ServerProcess } from './lib/processes.js';
import { fmt, median, table, verdict, writeReport } from './lib/report.js';
import {
  chatText,
  identities,
  interleavedRounds,
  measureThroughput,
  presenterOf,
  publicEnv,
  setupRoom,
  start,
  tradingRoomTarget,
  type RoomSetup,
  type Target,
  type Throughput,
} from './lib/scenario.js';

const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
/** `--split`: two more servers, tracing without Sentry and Sentry without tracing. */
const SPLIT = args.includes('--split');
/** `--cpu-prof`: a V8 CPU profile of every server, in `reports/profiles-<ts>/`. */
const PROFILE_DIR = args.includes('--cpu-prof')
  ? join(ROOT, 'load-tests', 'reports', `profiles-observability-${Date.now()}`)
  : undefined;
const PARTICIPANTS = Number(
  args.find((a) => a.startsWith('--participants='))?.slice('--participants='.length) ?? (QUICK ? 100 : 500),
);
const WARM = QUICK ? 20 : 100;
const ROUNDS = QUICK ? 1 : 5;
const MAX_EXTRA_ROUNDS = QUICK ? 0 : 3;
const MAX_FOREIGN_CPU = 0.25;
const BUDGET_MS = 240_000;
const TARGET_RATIO_AT_10 = 0.9;
const WINDOW = { window: 16, maxInFlightDeliveries: 32 * PARTICIPANTS, maxMessages: 20_000, text: chatText(80) };
const MEASURE = { ...WINDOW, warmupMs: QUICK ? 200 : 500, measureMs: QUICK ? 800 : 2500 };
/** The node preload (`npm start` uses the built one): OpenTelemetry before the application. */
const PRELOAD = ['--import', './signaling/src/instrumentation.ts'];

/** A sink for OTLP exports and Sentry envelopes: counts requests and bytes, answers 200. */
class Sink {
  requests = 0;
  bytes = 0;
  readonly #server: Server;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(): Promise<Sink> {
    const server = createServer();
    const sink = new Sink(server);
    server.on('request', (request, response) => {
      sink.requests++;
      request.on('data', (chunk: Buffer) => (sink.bytes += chunk.length));
      request.on('end', () => response.writeHead(200, { 'Content-Type': 'application/json' }).end('{}'));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return sink;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

interface Live {
  readonly target: Target;
  readonly server: ServerProcess;
  readonly setup: RoomSetup;
}

function targets(otlp: Sink, sentry: Sink): Target[] {
  const base = {
    RATE_LIMITS_ENABLED: 'false',
    MAX_CONNECTIONS_PER_USER: '100000',
    RATE_LIMIT_IP_CONNECTIONS: '1000000',
  };
  const observed = (ratio: string): Record<string, string> => ({
    ...base,
    OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
    OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
    OTEL_TRACES_SAMPLER_ARG: ratio,
    SENTRY_DSN: `http://0123456789abcdef0123456789abcdef@${new URL(sentry.url).host}/1`,
  });
  const { SENTRY_DSN: _sentry, ...tracingOnly } = observed('0.1');
  return [
    tradingRoomTarget('off', base),
    tradingRoomTarget('10 % traced', observed('0.1')),
    tradingRoomTarget('100 % traced', observed('1')),
    // `--split`: which part costs what.
    ...(SPLIT
      ? [
          tradingRoomTarget('10 % traced, no Sentry', tracingOnly),
          tradingRoomTarget('Sentry only', { ...base, SENTRY_DSN: observed('0').SENTRY_DSN as string }),
        ]
      : []),
  ];
}

async function main(): Promise<void> {
  const pinning = pinSelf();
  const started = Date.now();
  process.stdout.write(
    `observability-cost${QUICK ? ' --quick' : ''}: ${pinning}\n` +
      `  ${PARTICIPANTS} participants in one room, one sender as fast as acknowledged\n`,
  );
  if (PROFILE_DIR) mkdirSync(PROFILE_DIR, { recursive: true });
  const [otlp, sentry] = await Promise.all([Sink.start(), Sink.start()]);
  const warmIds = await identities({ count: WARM, room: 'warmup', prefix: 'warm-' });
  const roomIds = await identities({ count: PARTICIPANTS, room: 'bench', prefix: 'user-', presenterIndex: 0 });
  const lives: Live[] = [];
  let measured: Awaited<ReturnType<typeof interleavedRounds<Live>>>;
  try {
    for (const target of targets(otlp, sentry)) {
      const profile = PROFILE_DIR
        ? [
            '--cpu-prof',
            `--cpu-prof-dir=${PROFILE_DIR}`,
            `--cpu-prof-name=${target.name.replace(/\W+/g, '_')}.cpuprofile`,
          ]
        : [];
      const server = await start(target, [...profile, ...PRELOAD]);
      try {
        const setup = await setupRoom(target, server, warmIds, roomIds, QUICK ? 1500 : 5000);
        lives.push({ target, server, setup });
        process.stdout.write(`  ${target.name}: ${PARTICIPANTS} joined in ${setup.connectSeconds.toFixed(1)} s\n`);
      } catch (error) {
        process.stderr.write(`${target.name} failed; server output:\n${server.tail()}\n`);
        await server.stop();
        throw error;
      }
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
    for (const live of lives) {
      await closeAll(live.setup.clients);
      await closeAll(live.setup.warm);
      await live.server.stop();
    }
    await Promise.all([otlp.close(), sentry.close()]);
  }

  const off = lives[0] as Live;
  const offRounds = measured.counted(off);
  /** Server CPU-µs per chat message (fanned out to every participant). */
  const cpuPerMessage = (t: Throughput): number => (t.serverCpu / t.messagesPerSecond) * 1e6;
  const rows = lives.map((live) => {
    const r = measured.counted(live);
    const perRound = (pick: (t: Throughput) => number): number =>
      median(r.map((t, i) => pick(t) / pick(offRounds[i] as Throughput)));
    return {
      target: live.target.name,
      env: publicEnv(live.target),
      deliveriesPerSecond: median(r.map((t) => t.deliveriesPerSecond)),
      messagesPerSecond: median(r.map((t) => t.messagesPerSecond)),
      serverCpu: median(r.map((t) => t.serverCpu)),
      deliveriesPerServerCpuSecond: median(r.map((t) => t.deliveriesPerServerCpuSecond)),
      ratioDeliveries: perRound((t) => t.deliveriesPerSecond),
      ratioEfficiency: perRound((t) => t.deliveriesPerServerCpuSecond),
      cpuMicrosPerMessage: median(r.map(cpuPerMessage)),
      extraCpuMicrosPerMessage: median(r.map((t, i) => cpuPerMessage(t) - cpuPerMessage(offRounds[i] as Throughput))),
      missing: r.reduce((a, t) => a + t.missing, 0),
      serverWarnings: live.server.count(/"level":(40|50|60)/),
    };
  });
  process.stdout.write('\n');
  if (measured.contended) {
    process.stdout.write('warning: other processes kept the machine busy (fewer than 3 undisturbed rounds)\n');
  }
  process.stdout.write(
    table(
      ['server', 'deliv/s', 'ratio', 'deliv/CPU-s', 'ratio', 'CPU-µs/msg', '+µs/msg', 'msg/s', 'missing'],
      rows.map((r) => [
        r.target,
        Math.round(r.deliveriesPerSecond),
        fmt(r.ratioDeliveries),
        Math.round(r.deliveriesPerServerCpuSecond),
        fmt(r.ratioEfficiency),
        Math.round(r.cpuMicrosPerMessage),
        Math.round(r.extraCpuMicrosPerMessage),
        Math.round(r.messagesPerSecond),
        r.missing,
      ]),
    ) + '\n',
  );
  const at10 = rows[1]?.ratioDeliveries ?? Number.NaN;
  const at100 = rows[2];
  process.stdout.write(
    `\n10 % sampling + Sentry + metrics vs off: deliveries/s ×${fmt(at10)} ${verdict(at10, TARGET_RATIO_AT_10, '>=')}\n` +
      `100 % sampling: deliveries/s ×${fmt(at100?.ratioDeliveries ?? Number.NaN)}, ` +
      `+${Math.round(at100?.extraCpuMicrosPerMessage ?? Number.NaN)} server CPU-µs per message ` +
      `(${PARTICIPANTS} deliveries each)\n` +
      `exports received: ${otlp.requests} OTLP requests (${Math.round(otlp.bytes / 1024)} KiB), ${sentry.requests} Sentry envelopes\n`,
  );
  const path = writeReport('observability-cost', {
    quick: QUICK,
    pinning,
    participants: PARTICIPANTS,
    rounds: { clean: measured.clean, contended: measured.contended },
    targetRatioAt10: TARGET_RATIO_AT_10,
    verdicts: [
      `deliveries/s, tracing 10 % + Sentry + metrics vs off: ×${fmt(at10)} ${verdict(at10, TARGET_RATIO_AT_10, '>=')}`,
      `deliveries/s at 100 % sampling vs off: ×${fmt(at100?.ratioDeliveries ?? Number.NaN)}, ` +
        `+${Math.round(at100?.extraCpuMicrosPerMessage ?? Number.NaN)} server CPU-µs per message`,
    ],
    results: rows,
    exports: { otlpRequests: otlp.requests, otlpBytes: otlp.bytes, sentryEnvelopes: sentry.requests },
    durationSeconds: Math.round((Date.now() - started) / 1000),
  });
  process.stdout.write(`report: ${path}\n`);
}

await main();
