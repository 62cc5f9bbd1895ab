/**
 * S5 — connections: how fast a node takes them, what an idle one costs, and how many it holds.
 *
 * 1. **Connect storm.** 5,000 clients (from many 127.x source addresses) open a WebSocket with a
 *    signed token and `room.join` (100 rooms of 50), 512 at a time; authenticated upgrades + joins
 *    per second, trading-room (JWT verified, limits off) against the bare `ws` server (token only
 *    checked for presence). Three rounds, the two servers taking turns; the ratio is the median
 *    of the per-round ratios. Server CPU per connection too.
 * 2. **Memory per idle joined connection** at 5,000: settled anonymous RSS after the first storm
 *    minus before, ÷ 5,000, each server (the same figure as `fanout.ts`, at a larger count); and
 *    RSS after forced full collections, in a fresh process of each server with the inspector
 *    (settled RSS also holds the young generation the storm's allocations grew, a fixed amount).
 * 3. **Ceiling.** One trading-room node; clients join in steps of 5,000 (rooms of 100) until
 *    the server's RSS passes 2 GiB, a step fails, or 60,000 are joined (or the open-file limit is
 *    near, when it cannot be raised: then the count within 2 GiB is projected from the measured
 *    bytes per connection). Each step records RSS and
 *    the join rate. The report says what stopped it: the 2 GiB bound, the step cap, refused
 *    connections, or a limit of the machine. Before it starts, this process raises its file
 *    limit (RLIMIT_NOFILE, inherited by the server it starts) with `prlimit`, and the clients
 *    spread over 127.3.x.y source addresses (1,000 each), so neither file descriptors nor the
 *    ~28,000 ephemeral ports of one source address are what bounds it.
 *
 *   scripts/with-node.sh npx tsx load-tests/connections.ts [--quick] [--only=storm,ceiling]
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { signAccessToken } from '../signaling/src/auth/tokens.js';
import { closeAll, connectAll, type BenchClient, type Identity } from './lib/clients.js';
import type { ChartPoint, ChartSpec } from './lib/charts.js';
import { foreignCpuSeconds, pinSelf, sleep, type ServerProcess } from './lib/processes.js';
import { fmt, median, table, verdict, writeReport } from './lib/report.js';
import {
  BENCH_SECRET,
  bareTarget,
  loopbackSource,
  measureMemoryAfterGc,
  settledRss,
  start,
  tradingRoomTarget,
} from './lib/scenario.js';
import { mdTable } from './lib/summaries.js';

const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
const ONLY = args
  .find((a) => a.startsWith('--only='))
  ?.slice('--only='.length)
  .split(',');
const STORM_CLIENTS = QUICK ? 100 : 5000;
const STORM_ROUNDS = QUICK ? 1 : 3;
const STORM_CONCURRENCY = 512;
const ROOM_SIZE_STORM = 50;
const CEILING_STEP = QUICK ? 200 : 5_000;
/** Open-file limit of this process (and of the server it starts): one descriptor per connection on each side. */
const HARD_FILE_LIMIT = Number(
  /^Max open files\s+\S+\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1] ?? 1024,
);
/** Steps stop short of the file limit (descriptors for Redis, logs, the inspector, …). */
const CEILING_MAX = QUICK ? 400 : Math.min(60_000, HARD_FILE_LIMIT - 500);
const CEILING_ROOM_SIZE = 100;
const CEILING_RSS_BYTES = 2 * 1024 ** 3;
const TARGET_CEILING = 50_000;
const FILE_LIMIT = 200_000;
const GiB = 1024 ** 3;

const TRADING_ROOM = tradingRoomTarget('trading-room', {
  RATE_LIMITS_ENABLED: 'false',
  MAX_CONNECTIONS_PER_USER: '100000',
});

/** Total resident memory (VmRSS: anonymous and file-backed) of a process, bytes. */
function totalRss(pid: number): number {
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

function fileLimitOf(pid: number): string {
  try {
    const line = readFileSync(`/proc/${pid}/limits`, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    return line ? line.replace(/\s+/g, ' ').trim() : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Raises this process's open-file limit (children inherit it); returns what it is now. */
function raiseFileLimit(): string {
  try {
    execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${FILE_LIMIT}:${FILE_LIMIT}`], {
      stdio: 'ignore',
    });
  } catch {
    /* not allowed: the limit below says what we have */
  }
  return fileLimitOf(process.pid);
}

/** `count` identities in rooms of `roomSize` (user i of room r), sources 1,000 per 127.`block`.x.y address. */
async function roomIdentities(prefix: string, count: number, roomSize: number, block: number): Promise<Identity[]> {
  const ids: Identity[] = [];
  for (let i = 0; i < count; i++) {
    const room = `${prefix}-room-${Math.floor(i / roomSize)}`;
    const user = `${prefix}-${i}`;
    const token = await signAccessToken(BENCH_SECRET, { userId: user, roomId: room, role: 'trader', ttlSeconds: 7200 });
    ids.push({ token, user, room, localAddress: loopbackSource(i, 1000, block) });
  }
  return ids;
}

interface StormRound {
  readonly server: string;
  readonly connectionsPerSecond: number;
  readonly seconds: number;
  readonly serverCpuMsPerConnection: number;
  readonly foreignCpu: number;
}

interface StormResult {
  readonly rounds: StormRound[];
  readonly connectionsPerSecond: Record<string, number>;
  readonly ratio: number;
  readonly memoryBytesPerConnection: Record<string, number>;
  readonly memoryRatio: number;
  /** RSS per idle joined connection with forced full collections before both samples (not with --quick). */
  readonly memoryAfterGcBytesPerConnection: Record<string, number>;
  readonly memoryAfterGcRatio: number;
}

async function storm(): Promise<StormResult> {
  process.stdout.write(
    `1. connect storm: ${STORM_CLIENTS} clients (upgrade with token + room.join), ${STORM_CONCURRENCY} at a time, ` +
      `${STORM_ROUNDS} rounds\n`,
  );
  const ids = await roomIdentities('storm', STORM_CLIENTS, ROOM_SIZE_STORM, 2);
  const servers: [string, ServerProcess, 'json'][] = [];
  const rounds: StormRound[] = [];
  const memory: Record<string, number> = {};
  try {
    for (const target of [TRADING_ROOM, bareTarget('preframed')]) {
      servers.push([target.name, await start(target), 'json']);
    }
    for (let round = 0; round < STORM_ROUNDS; round++) {
      const line: string[] = [];
      for (const [name, server] of round % 2 ? [...servers].reverse() : servers) {
        const before = round === 0 ? await settledRss(server, QUICK ? 1000 : 6000) : 0;
        const cpu0 = server.cpu();
        const f0 = foreignCpuSeconds();
        const t0 = performance.now();
        let clients: BenchClient[] = [];
        try {
          clients = await connectAll({ dialect: 'json', port: server.port, path: '/ws' }, ids, {
            concurrency: STORM_CONCURRENCY,
            timeoutMs: 120_000,
          });
          const seconds = (performance.now() - t0) / 1000;
          const cpu = server.cpu() - cpu0;
          rounds.push({
            server: name,
            connectionsPerSecond: STORM_CLIENTS / seconds,
            seconds,
            serverCpuMsPerConnection: (cpu * 1000) / STORM_CLIENTS,
            foreignCpu: (foreignCpuSeconds() - f0) / seconds,
          });
          line.push(`${name} ${Math.round(STORM_CLIENTS / seconds)}/s`);
          if (round === 0) {
            const after = await settledRss(server, QUICK ? 1000 : 6000);
            memory[name] = (after - before) / STORM_CLIENTS;
          }
        } finally {
          await closeAll(clients, 10_000);
        }
        // Let the server finish the leaves before the next storm.
        await sleep(QUICK ? 300 : 2000);
      }
      process.stdout.write(`  round ${round + 1}: ${line.join(', ')}\n`);
    }
  } finally {
    for (const [, server] of servers) await server.stop();
  }
  const rate = (name: string): number[] => rounds.filter((r) => r.server === name).map((r) => r.connectionsPerSecond);
  const tr = rate('trading-room');
  const bare = rate('bare-ws');
  const connectionsPerSecond = { 'trading-room': median(tr), 'bare-ws': median(bare) };
  const ratio = median(tr.map((v, i) => v / (bare[i] ?? Number.NaN)));
  const memoryRatio = (memory['trading-room'] ?? Number.NaN) / (memory['bare-ws'] ?? Number.NaN);
  // Settled RSS also holds what the young generation grew to while 5,000 joins allocated: a
  // fixed amount, not per connection. The live memory a connection holds is measured apart, in
  // a fresh process of each server with the inspector, full collections before both samples.
  const afterGc: Record<string, number> = {};
  if (!QUICK) {
    const warmIds = await roomIdentities('storm-warm', 200, ROOM_SIZE_STORM, 4);
    for (const target of [TRADING_ROOM, bareTarget('preframed')]) {
      afterGc[target.name] = (await measureMemoryAfterGc(target, warmIds, ids)).rssBytesPerConnection;
    }
  }
  const memoryAfterGcRatio = (afterGc['trading-room'] ?? Number.NaN) / (afterGc['bare-ws'] ?? Number.NaN);
  process.stdout.write(
    table(
      ['server', 'joins/s (median)', 'srv CPU ms/conn', 'idle KiB/conn', 'after GC'],
      Object.entries(connectionsPerSecond).map(([name, v]) => [
        name,
        v,
        median(rounds.filter((r) => r.server === name).map((r) => r.serverCpuMsPerConnection)),
        (memory[name] ?? Number.NaN) / 1024,
        (afterGc[name] ?? Number.NaN) / 1024,
      ]),
    ) +
      `\n  trading-room ÷ bare-ws: joins/s ${fmt(ratio)}, memory ${fmt(memoryRatio)}, ` +
      `after GC ${fmt(memoryAfterGcRatio)}\n\n`,
  );
  return {
    rounds,
    connectionsPerSecond,
    ratio,
    memoryBytesPerConnection: memory,
    memoryRatio,
    memoryAfterGcBytesPerConnection: afterGc,
    memoryAfterGcRatio,
  };
}

interface CeilingStep {
  readonly joined: number;
  readonly rssBytes: number;
  readonly anonRssBytes: number;
  readonly joinsPerSecond: number;
  readonly bytesPerConnection: number;
}

interface CeilingResult {
  readonly steps: CeilingStep[];
  readonly joined: number;
  readonly stoppedBy: string;
  /** Connections 2 GiB would hold at the measured bytes per connection (from the last step). */
  readonly projectedWithin2GiB: number;
  readonly serverFileLimit: string;
  readonly error?: string;
}

async function ceiling(): Promise<CeilingResult> {
  process.stdout.write(
    `2. ceiling: one trading-room node, joined idle clients in steps of ${CEILING_STEP} (rooms of ${CEILING_ROOM_SIZE}) ` +
      `until RSS > 2 GiB or ${CEILING_MAX}\n`,
  );
  const ids = await roomIdentities('ceiling', CEILING_MAX, CEILING_ROOM_SIZE, 3);
  const server = await start(TRADING_ROOM);
  const serverFileLimit = fileLimitOf(server.pid);
  const clients: BenchClient[] = [];
  const steps: CeilingStep[] = [];
  let stoppedBy =
    CEILING_MAX < 60_000
      ? `the open-file limit (RLIMIT_NOFILE ${HARD_FILE_LIMIT}, not raisable here: one descriptor per connection in the server and in the load generator)`
      : `the step cap (${CEILING_MAX} joined)`;
  let error: string | undefined;
  const baseRss = totalRss(server.pid);
  try {
    while (clients.length < CEILING_MAX) {
      const batch = ids.slice(clients.length, Math.min(CEILING_MAX, clients.length + CEILING_STEP));
      const t0 = performance.now();
      try {
        clients.push(
          ...(await connectAll({ dialect: 'json', port: server.port, path: '/ws' }, batch, {
            concurrency: 256,
            timeoutMs: 180_000,
          })),
        );
      } catch (e) {
        error = e instanceof Error ? e.message : String(e);
        stoppedBy = `a failed step: ${error}`;
        break;
      }
      const seconds = (performance.now() - t0) / 1000;
      await sleep(QUICK ? 300 : 1500);
      const rss = totalRss(server.pid);
      const step: CeilingStep = {
        joined: clients.length,
        rssBytes: rss,
        anonRssBytes: server.rss(),
        joinsPerSecond: batch.length / seconds,
        bytesPerConnection: (rss - baseRss) / clients.length,
      };
      steps.push(step);
      process.stdout.write(
        `  ${step.joined} joined: RSS ${(rss / 1024 ** 2).toFixed(0)} MiB, ${(step.bytesPerConnection / 1024).toFixed(1)} KiB/conn, ` +
          `${Math.round(step.joinsPerSecond)} joins/s\n`,
      );
      if (rss > CEILING_RSS_BYTES) {
        stoppedBy = 'the 2 GiB bound';
        break;
      }
    }
  } finally {
    await closeAll(clients, 20_000);
    await server.stop();
  }
  const last = steps.at(-1);
  const projectedWithin2GiB = last ? Math.floor((CEILING_RSS_BYTES - baseRss) / last.bytesPerConnection) : 0;
  return {
    steps,
    joined: last?.joined ?? 0,
    stoppedBy,
    projectedWithin2GiB,
    serverFileLimit,
    ...(error ? { error } : {}),
  };
}

async function main(): Promise<void> {
  const pinning = pinSelf();
  const fileLimit = raiseFileLimit();
  const started = Date.now();
  process.stdout.write(`connections${QUICK ? ' --quick' : ''}: ${pinning}; ${fileLimit}\n`);
  const stormResult = !ONLY || ONLY.includes('storm') ? await storm() : undefined;
  const ceilingResult = !ONLY || ONLY.includes('ceiling') ? await ceiling() : undefined;
  const verdicts: Record<string, string> = {};
  const markdown: string[] = [];
  const points: ChartPoint[] = [];
  if (stormResult) {
    verdicts.connectStormJoinsPerSecondVsBareWs = `${fmt(stormResult.ratio)} (trading-room ÷ bare-ws, authenticated upgrade + join)`;
    verdicts.idleMemoryPerConnectionVsBareWs = verdict(stormResult.memoryRatio, 2.0, '<=');
    if (!QUICK) {
      verdicts.idleMemoryAfterGcPerConnectionVsBareWs = verdict(stormResult.memoryAfterGcRatio, 2.0, '<=');
    }
    markdown.push(
      `**Connect storm** — ${STORM_CLIENTS} clients, ${STORM_CONCURRENCY} at a time, upgrade + \`room.join\`, median of ${STORM_ROUNDS} rounds; memory per idle joined connection at ${STORM_CLIENTS}: settled anonymous RSS (after the first storm, minus before), and RSS after forced full collections (a fresh process of each server with the inspector, the same ${STORM_CLIENTS} joined):`,
      mdTable(
        ['server', 'joins/s', 'server CPU ms per connection', 'idle KiB per connection, settled', 'after GC'],
        Object.entries(stormResult.connectionsPerSecond).map(([name, v]) => [
          name,
          v,
          median(stormResult.rounds.filter((r) => r.server === name).map((r) => r.serverCpuMsPerConnection)),
          (stormResult.memoryBytesPerConnection[name] ?? Number.NaN) / 1024,
          (stormResult.memoryAfterGcBytesPerConnection[name] ?? Number.NaN) / 1024,
        ]),
      ),
    );
  }
  if (ceilingResult) {
    const reached = ceilingResult.joined;
    verdicts.joinedConnectionsWithin2GiB = verdict(
      Math.max(
        reached,
        !ceilingResult.stoppedBy.startsWith('a failed step') ? ceilingResult.projectedWithin2GiB : reached,
      ),
      TARGET_CEILING,
      '>=',
    );
    markdown.push(
      `**Ceiling** — one node, idle joined connections in rooms of ${CEILING_ROOM_SIZE}; stopped by ${ceilingResult.stoppedBy}. ` +
        `At the last step's ${fmt((ceilingResult.steps.at(-1)?.bytesPerConnection ?? Number.NaN) / 1024)} KiB per connection, ` +
        `2 GiB holds about ${fmt(ceilingResult.projectedWithin2GiB)}. Server ${ceilingResult.serverFileLimit}.`,
      mdTable(
        ['joined', 'RSS MiB', 'anon RSS MiB', 'KiB per connection', 'joins/s'],
        ceilingResult.steps.map((s) => [
          s.joined,
          s.rssBytes / 1024 ** 2,
          s.anonRssBytes / 1024 ** 2,
          s.bytesPerConnection / 1024,
          s.joinsPerSecond,
        ]),
      ),
    );
    for (const s of ceilingResult.steps) {
      points.push({ series: 'trading-room', x: s.joined, rssGiB: s.rssBytes / GiB, joinsPerSecond: s.joinsPerSecond });
    }
  }
  for (const [k, v] of Object.entries(verdicts)) process.stdout.write(`${k}: ${v}\n`);
  const chart: ChartSpec | undefined = points.length
    ? {
        title: 'S5 ceiling: server RSS and join rate against joined idle connections (one node)',
        xTitle: 'joined connections',
        panels: [
          { field: 'rssGiB', title: 'server RSS GiB' },
          { field: 'joinsPerSecond', title: 'joins/s in the step' },
        ],
        points,
      }
    : undefined;
  const path = writeReport('connections', {
    quick: QUICK,
    pinning,
    fileLimit,
    config: {
      stormClients: STORM_CLIENTS,
      stormRounds: STORM_ROUNDS,
      stormConcurrency: STORM_CONCURRENCY,
      ceilingStep: CEILING_STEP,
      ceilingMax: CEILING_MAX,
      ceilingRssBytes: CEILING_RSS_BYTES,
      sources: '127.2.x.y (storm) and 127.3.x.y (ceiling), 1,000 clients per address',
    },
    verdicts,
    storm: stormResult,
    ceiling: ceilingResult,
    markdown,
    ...(chart ? { chart } : {}),
    durationSeconds: Math.round((Date.now() - started) / 1000),
  });
  process.stdout.write(`report: ${path}  (${Math.round((Date.now() - started) / 1000)} s)\n`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(
      `connections failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  },
);
