/**
 * Processes of a benchmark: the load generator pins itself to one core, each server under test
 * runs as its own child process pinned to the other, and Redis (for the Socket.IO reference)
 * runs from a temporary directory. Everything started here is stopped by the caller's `stop()`.
 */
import { spawn, spawnSync, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createConnection, createServer, type AddressInfo } from 'node:net';
import { availableParallelism, setPriority, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (load-tests/lib/../..). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

const HAS_TASKSET = spawnSync('taskset', ['-V'], { stdio: 'ignore' }).status === 0;
const TWO_CORES = availableParallelism() >= 2;
/** Core of the server under test and core of the load generator (when pinning is possible). */
export const SERVER_CPU = '0';
export const LOADGEN_CPU = '1';
const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

export function pinningAvailable(): boolean {
  return HAS_TASKSET && TWO_CORES;
}

/**
 * Pins this process (every thread) to the load generator's core. With `--nice` on the command
 * line (or BENCH_NICE=1), this process and every server, flooder and Redis it starts run at nice
 * -10, so other work on a shared machine disturbs the measurement less (needs root).
 */
export function pinSelf(): string {
  const notes: string[] = [];
  if (process.argv.includes('--nice') || process.env.BENCH_NICE === '1') {
    try {
      setPriority(0, -10);
      notes.push('nice -10');
    } catch {
      notes.push('nice -10 refused (not root): default priority');
    }
  }
  if (!pinningAvailable()) return ['not pinned (needs taskset and 2 cores)', ...notes].join('; ');
  // `-a` walks every thread; one that exits meanwhile fails the call, so it is tried again.
  for (let attempt = 1; ; attempt++) {
    try {
      execFileSync('taskset', ['-a', '-p', '-c', LOADGEN_CPU, String(process.pid)], { stdio: 'ignore' });
      break;
    } catch (error) {
      if (attempt >= 5) throw error;
    }
  }
  return [`load generator on core ${LOADGEN_CPU}, server on core ${SERVER_CPU}`, ...notes].join('; ');
}

/**
 * `command args` wrapped in `taskset -c cpu` (when possible) and `nice -n niceOffset`: the offset
 * lowers the priority relative to the benchmark's own (the flooder yields to the clients it
 * shares a core with).
 */
export function wrapCommand(
  cpu: string | undefined,
  command: string,
  args: readonly string[],
  niceOffset = 0,
): [string, string[]] {
  let wrapped: [string, string[]] = [command, [...args]];
  if (cpu !== undefined && pinningAvailable()) wrapped = ['taskset', ['-c', cpu, wrapped[0], ...wrapped[1]]];
  // Children inherit this process's nice value (-10 with --nice); `nice -n` adds to it.
  if (niceOffset !== 0) wrapped = ['nice', ['-n', String(niceOffset), wrapped[0], ...wrapped[1]]];
  return wrapped;
}

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolvePort(port));
    });
  });
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port. */
export async function waitForPort(port: number, timeoutMs: number, alive: () => boolean = () => true): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (!alive()) throw new Error(`process exited before listening on ${port}`);
    const ok = await new Promise<boolean>((done) => {
      const socket = createConnection({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        done(true);
      });
      socket.once('error', () => done(false));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`nothing listening on 127.0.0.1:${port} after ${timeoutMs} ms`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Anonymous resident memory of a process (RssAnon: heap, stacks, buffers), bytes; 0 when it is
 * gone. File-backed pages (the node binary and libraries paged in as new code paths run) are left
 * out: they are shared, bounded, and would charge the first use of a code path to connections.
 */
export function rssBytes(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = /^RssAnon:\s+(\d+)\s+kB/m.exec(status);
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** User + system CPU time a process has used, seconds. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

/** Busy and total jiffies of one core from /proc/stat (busy counts softirq: loopback TCP work). */
export function coreJiffies(cpu: string): { busy: number; total: number } {
  try {
    const line = readFileSync('/proc/stat', 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`cpu${cpu} `));
    if (!line) return { busy: 0, total: 0 };
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const total = v.reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return { busy: 0, total: 0 };
  }
}

/** Processes of this benchmark (the load generator, its servers, flooders, Redis). */
export const ownPids = new Set<number>([process.pid]);

/**
 * CPU seconds used so far by every other process on the machine (user + system, plus reaped
 * children), so a window can tell how much of the two cores something else took.
 */
export function foreignCpuSeconds(): number {
  let ticks = 0;
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || ownPids.has(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ppid = Number(fields[1]);
      // Children of ours not registered yet, and kernel threads (ksoftirqd carries our loopback traffic).
      if (ppid === process.pid || ppid === 2 || pid === 2) continue;
      ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
    } catch {
      /* exited */
    }
  }
  return ticks / CLOCK_TICKS;
}

/** This process's CPU time, seconds. */
export function selfCpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

export interface ServerProcess {
  readonly name: string;
  readonly pid: number;
  readonly port: number;
  rss(): number;
  cpu(): number;
  /** Server output lines matching `pattern` so far. */
  count(pattern: RegExp): number;
  /** Last lines the server wrote, for diagnostics. */
  tail(): string;
  stop(): Promise<void>;
}

export interface StartOptions {
  readonly name: string;
  /** Script path relative to the repository root, run with `node --import tsx`. */
  readonly script: string;
  readonly env: Record<string, string>;
  readonly port: number;
  /** Extra node flags (e.g. `--cpu-prof`). */
  readonly nodeArgs?: readonly string[];
  readonly readyTimeoutMs?: number;
}

/**
 * Starts a server as its own process on the server core, with a clean environment (only PATH
 * and HOME are inherited, so a shell's REDIS_URL & co. cannot change what is measured).
 */
export async function startServer(options: StartOptions): Promise<ServerProcess> {
  const nodeArgs = ['--import', 'tsx', ...(options.nodeArgs ?? []), options.script];
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/root',
    ...options.env,
  };
  const [command, args] = wrapCommand(SERVER_CPU, process.execPath, nodeArgs);
  const child: ChildProcess = spawn(command, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const all: string[] = [];
  let partial = '';
  const onData = (chunk: Buffer): void => {
    partial += chunk.toString();
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    for (const line of parts) {
      lines.push(line);
      if (lines.length > 40) lines.shift();
      if (all.length < 10_000) all.push(line);
    }
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  let exited = false;
  const exit = new Promise<void>((r) =>
    child.once('exit', () => {
      exited = true;
      r();
    }),
  );
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${options.name}`);
  ownPids.add(pid);
  try {
    await waitForPort(options.port, options.readyTimeoutMs ?? 30_000, () => !exited);
  } catch (error) {
    child.kill('SIGKILL');
    throw new Error(`${options.name} did not start: ${(error as Error).message}\n${lines.join('\n')}`, {
      cause: error,
    });
  }
  return {
    name: options.name,
    pid,
    port: options.port,
    rss: () => rssBytes(pid),
    cpu: () => cpuSeconds(pid),
    count(pattern) {
      let n = 0;
      for (const line of all) if (pattern.test(line)) n++;
      return n;
    },
    tail: () => lines.join('\n'),
    async stop() {
      if (exited) return;
      child.kill('SIGTERM');
      const killed = setTimeout(() => child.kill('SIGKILL'), 8000);
      await exit;
      clearTimeout(killed);
    },
  };
}

export interface RedisProcess {
  readonly url: string;
  readonly pid: number;
  readonly port: number;
  /** User + system CPU seconds the server has used so far. */
  cpu(): number;
  stop(): Promise<void>;
}

function redisServerBinary(): string {
  const which = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const bin = which.stdout.trim();
  if (!bin) {
    throw new Error(
      'redis-server not found: apt-get update && apt-get install -y redis-server (it is not started as a service)',
    );
  }
  return bin;
}

/**
 * Spawns one redis-server on `port` (persistence off, files in `dir`) on the load generator's
 * core and waits until it accepts connections. `stop()` leaves `dir` to the caller.
 */
async function spawnRedis(bin: string, port: number, dir: string, extra: readonly string[]): Promise<RedisProcess> {
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
    '--loglevel',
    'warning',
    ...extra,
  ];
  const [command, wrappedArgs] = wrapCommand(LOADGEN_CPU, bin, args);
  const child = spawn(command, wrappedArgs, { stdio: 'ignore' });
  let exited = false;
  const exit = new Promise<void>((r) =>
    child.once('exit', () => {
      exited = true;
      r();
    }),
  );
  const pid = child.pid;
  if (pid === undefined) throw new Error('could not start redis-server');
  ownPids.add(pid);
  await waitForPort(port, 10_000, () => !exited);
  return {
    url: `redis://127.0.0.1:${port}`,
    pid,
    port,
    cpu: () => cpuSeconds(pid),
    async stop() {
      if (exited) return;
      child.kill('SIGTERM');
      const killed = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exit;
      clearTimeout(killed);
    },
  };
}

/** Starts a throw-away redis-server on a free port (persistence off), on the load generator's core. */
export async function startRedis(): Promise<RedisProcess> {
  const bin = redisServerBinary();
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'trading-room-bench-redis-'));
  const redis = await spawnRedis(bin, port, dir, []);
  return {
    ...redis,
    async stop() {
      await redis.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface RedisClusterProcess {
  /** The masters, in slot order (the first holds slots 0…). */
  readonly masters: readonly RedisProcess[];
  /** `host:port,host:port,…`: seeds for `REDIS_CLUSTER_NODES`. */
  readonly seeds: string;
  stop(): Promise<void>;
}

/**
 * Starts a Redis Cluster of `masterCount` masters without replicas on free loopback ports (on the
 * load generator's core, persistence off), joined with `redis-cli --cluster create`; resolves once
 * every master reports `cluster_state:ok`.
 */
export async function startRedisCluster(masterCount = 3): Promise<RedisClusterProcess> {
  const bin = redisServerBinary();
  const dir = mkdtempSync(join(tmpdir(), 'trading-room-bench-redis-cluster-'));
  const masters: RedisProcess[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(masters.map((m) => m.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < masterCount; i++) {
      const port = await freePort();
      const busPort = await freePort();
      masters.push(
        await spawnRedis(bin, port, dir, [
          '--cluster-enabled',
          'yes',
          '--cluster-port',
          String(busPort),
          '--cluster-config-file',
          `nodes-${port}.conf`,
        ]),
      );
    }
    const seeds = masters.map((m) => `127.0.0.1:${m.port}`);
    const created = spawnSync(
      'redis-cli',
      ['--cluster', 'create', ...seeds, '--cluster-replicas', '0', '--cluster-yes'],
      {
        encoding: 'utf8',
        timeout: 30_000,
      },
    );
    if (created.status !== 0) {
      throw new Error(`redis-cli --cluster create failed: ${(created.stderr || created.stdout || '').slice(-500)}`);
    }
    const until = Date.now() + 20_000;
    for (;;) {
      const states = masters.map(
        (m) =>
          spawnSync('redis-cli', ['-p', String(m.port), 'cluster', 'info'], { encoding: 'utf8', timeout: 5000 }).stdout,
      );
      if (states.every((info) => info.includes('cluster_state:ok'))) break;
      if (Date.now() > until) throw new Error('the Redis Cluster did not reach cluster_state:ok within 20 s');
      await sleep(200);
    }
    return { masters, seeds: seeds.join(','), stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
