/**
 * A node running as a child process (`node --import tsx --import ./signaling/src/instrumentation.ts
 * signaling/src/main.ts`, as `npm run dev`) on a free loopback port, for tests that need real
 * signals, a separate heap or a crash-proof boundary.
 * Its stdout (pino JSON logs) and stderr are captured; `kill()` ends it for sure (`kill -9`),
 * `terminate()` sends SIGTERM (a drain) and waits for the exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { ADMIN_TOKEN, TEST_SECRET, testToken, type TokenOptions } from './harness.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

export interface ChildExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly at: number;
}

export class ChildNode {
  readonly process: ChildProcess;
  readonly port: number;
  readonly exited: Promise<ChildExit>;
  #stdout = '';
  #stderr = '';
  #exit: ChildExit | undefined;

  readonly inspectPort: number | undefined;

  constructor(child: ChildProcess, port: number, inspectPort?: number) {
    this.process = child;
    this.port = port;
    this.inspectPort = inspectPort;
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (this.#stdout += chunk));
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (this.#stderr += chunk));
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.#exit = { code, signal, at: Date.now() };
        resolve(this.#exit);
      });
    });
  }

  get pid(): number {
    return this.process.pid as number;
  }

  get httpUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  get alive(): boolean {
    return this.#exit === undefined;
  }

  get stdout(): string {
    return this.#stdout;
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** Parsed pino log lines (stdout); other lines are skipped. */
  logs(): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const line of this.#stdout.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        out.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        /* partial line */
      }
    }
    return out;
  }

  /** stderr without the inspector's own notices. */
  unexpectedStderr(): string {
    return this.#stderr
      .split('\n')
      .filter(
        (l) =>
          l.trim() !== '' &&
          !/^(Debugger listening on|Debugger attached|Debugger ending|For help, see: https:\/\/nodejs.org)/.test(l),
      )
      .join('\n');
  }

  /** Runs a full garbage collection in the process, through its inspector (spawn with `inspect`). */
  async collectGarbage(): Promise<void> {
    if (this.inspectPort === undefined) throw new Error('spawn the node with { inspect: true }');
    const targets = (await (await fetch(`http://127.0.0.1:${this.inspectPort}/json/list`)).json()) as {
      webSocketDebuggerUrl: string;
    }[];
    const url = targets[0]?.webSocketDebuggerUrl;
    if (!url) throw new Error('no inspector target');
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => ws.send(JSON.stringify({ id: 1, method: 'HeapProfiler.collectGarbage' })));
      ws.on('message', (data) => {
        if ((JSON.parse(data.toString()) as { id?: number }).id === 1) resolve();
      });
      ws.once('error', reject);
    });
    ws.close();
  }

  /** Log lines (stdout and stderr) that report a crash-class failure. */
  crashLines(): string[] {
    return `${this.#stdout}\n${this.#stderr}`
      .split('\n')
      .filter((l) =>
        /unhandled rejection|uncaught exception|frame processing failed|handler failed|"level":60/i.test(l),
      );
  }

  token(userId: string, options: TokenOptions = {}): Promise<string> {
    return testToken(userId, options);
  }

  /** GET/POST on the node's HTTP port. */
  async http(path: string, init: RequestInit & { admin?: boolean } = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (init.admin) headers.set('Authorization', `Bearer ${ADMIN_TOKEN}`);
    return fetch(`${this.httpUrl}${path}`, { ...init, headers });
  }

  async health(): Promise<Record<string, unknown>> {
    return (await (await this.http('/health')).json()) as Record<string, unknown>;
  }

  /** Resident set size of the process, bytes (Linux /proc). */
  async rssBytes(): Promise<number> {
    const status = await readFile(`/proc/${this.pid}/status`, 'utf8');
    const kb = /VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1];
    return Number(kb) * 1024;
  }

  /** CPU time the process has used so far, ms (Linux /proc). */
  async cpuMs(): Promise<number> {
    const stat = await readFile(`/proc/${this.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10; // utime + stime, in 100 Hz ticks
  }

  /** A metric's value from `/metrics` (first series whose line starts with `name`). */
  async metric(name: string): Promise<number | undefined> {
    const text = await (await this.http('/metrics')).text();
    let sum: number | undefined;
    for (const line of text.split('\n')) {
      if (line.startsWith('#')) continue;
      if (line.startsWith(name + '{') || line.startsWith(name + ' '))
        sum = (sum ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return sum;
  }

  signal(signal: NodeJS.Signals): void {
    if (this.alive) this.process.kill(signal);
  }

  /** Ends the process (SIGKILL) and waits for it; safe to call twice. */
  async kill(): Promise<void> {
    if (this.alive) this.process.kill('SIGKILL');
    await this.exited;
  }

  /** Sends SIGTERM (the node drains) and waits for the exit; rejects after `timeoutMs`. */
  async terminate(timeoutMs = 60_000): Promise<ChildExit> {
    this.signal('SIGTERM');
    return this.waitForExit(timeoutMs);
  }

  /** Resolves with the exit; rejects (leaving the process alone) when it does not come within `timeoutMs`. */
  async waitForExit(timeoutMs: number): Promise<ChildExit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(
        () => reject(new Error(`node ${this.pid} did not exit within ${timeoutMs} ms:\n${this.#stderr}`)),
        timeoutMs,
      );
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** A TCP port that was free a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * Spawns a node with test defaults (`env` overrides) and waits until `/health/ready` is 200.
 * The child sees only PATH, HOME, the defaults, `env`, and the variables named in `passEnv`
 * that this process has.
 */
export async function spawnNode(
  env: Record<string, string> = {},
  options: { nodeArgs?: string[]; inspect?: boolean; passEnv?: readonly string[] } = {},
): Promise<ChildNode> {
  const port = await freePort();
  const inspectPort = options.inspect ? await freePort() : undefined;
  const args = [...(options.nodeArgs ?? []), ...(inspectPort ? [`--inspect=127.0.0.1:${inspectPort}`] : [])];
  // The same preload as `npm start`: OpenTelemetry first (it does nothing without OTEL_* set).
  const preload = ['--import', 'tsx', '--import', './signaling/src/instrumentation.ts'];
  const child = spawn(process.execPath, [...args, ...preload, 'signaling/src/main.ts'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      NODE_ENV: 'test',
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'info',
      SIGNALING_JWT_SECRET: TEST_SECRET,
      SIGNALING_ADMIN_TOKEN: ADMIN_TOKEN,
      MEDIA_ENABLED: 'false',
      ...(process.env.MEDIASOUP_WORKER_BIN ? { MEDIASOUP_WORKER_BIN: process.env.MEDIASOUP_WORKER_BIN } : {}),
      ...Object.fromEntries(
        (options.passEnv ?? []).flatMap((name) => {
          const value = process.env[name];
          return value === undefined ? [] : [[name, value]];
        }),
      ),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const node = new ChildNode(child, port, inspectPort);
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (!node.alive) throw new Error(`node exited during start-up:\n${node.stdout}\n${node.stderr}`);
    try {
      if ((await fetch(`${node.httpUrl}/health/ready`)).status === 200) return node;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      await node.kill();
      throw new Error(`node did not become ready:\n${node.stdout}\n${node.stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
