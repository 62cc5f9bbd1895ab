/**
 * A real nginx for tests: Debian's nginx (`scripts/setup.sh --for-tests` installs it) running the
 * repository's load balancer config, `infrastructure/nginx/templates/trading-room.conf.template`,
 * and its main `infrastructure/nginx/nginx.conf`, rendered with loopback ports into a temporary
 * prefix — its own pid file, error log, access log and temp folders; nothing written under /etc or
 * /var. `TestNginx.start()` runs it in the foreground as a
 * child process; `setUpstreams()` re-renders the upstream list and reloads (`nginx -s reload`),
 * resolving once the old worker processes stopped accepting; `accessLog()` parses the JSON access
 * log the template writes.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { eventually } from './async.js';
import { freePort } from './child-node.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
/** The load balancer's site config, an http-level envsubst template. */
export const NGINX_TEMPLATE = join(ROOT, 'infrastructure/nginx/templates/trading-room.conf.template');
/** Debian installs nginx in /usr/sbin, which is not on every user's PATH. */
export const NGINX_BIN = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => existsSync(p)) ?? 'nginx';

const run = promisify(execFile);

/** A node behind nginx: one `server` line of the upstream. */
export interface NginxUpstream {
  readonly host?: string;
  readonly port: number;
  /** `max_fails` (default 1) and `fail_timeout` (default 10 s), as in upstreams/compose.conf. */
  readonly maxFails?: number;
  readonly failTimeoutSeconds?: number;
}

/** One access-log line of the template's `trading_room` format. */
export interface AccessLogEntry {
  /** When the request ended (a WebSocket: when it closed), epoch ms. */
  readonly endedAt: number;
  /** When it started, epoch ms (end minus duration). */
  readonly startedAt: number;
  readonly request: string;
  readonly status: number;
  /** Every node tried, in order (`127.0.0.1:port`). */
  readonly upstreams: string[];
  /** Each tried node's status (`101`, `503`, `502`, … or `-`). */
  readonly upstreamStatuses: string[];
  readonly room: string;
}

/**
 * Replaces `${NAME}` placeholders as the official image's envsubst does, for the names given;
 * any other `${…}` left in the template is an error (nginx's own `$variables` have no braces).
 */
export function renderTemplate(template: string, values: Readonly<Record<string, string>>): string {
  const rendered = template.replace(/\$\{([A-Z0-9_]+)\}/g, (match, name: string) => values[name] ?? match);
  const left = /\$\{[A-Za-z0-9_]+\}/.exec(rendered);
  if (left) throw new Error(`template placeholder ${left[0]} has no value`);
  return rendered;
}

/** `server …;` lines for the upstream include file. */
export function upstreamLines(upstreams: readonly NginxUpstream[]): string {
  return upstreams
    .map(
      (u) =>
        `server ${u.host ?? '127.0.0.1'}:${u.port} max_fails=${u.maxFails ?? 1} fail_timeout=${u.failTimeoutSeconds ?? 10}s;\n`,
    )
    .join('');
}

/** The load balancer's main file (events, http), which includes the site. */
export const NGINX_MAIN = join(ROOT, 'infrastructure/nginx/nginx.conf');

/**
 * Writes a complete nginx configuration into `dir`: the repository's main `nginx.conf` with its
 * container paths pointed into `dir` (pid, error log, temp folders, the site include; no `user`
 * switch; one worker unless told; the descriptor limit within the hard limit), the rendered
 * template, and the upstream file. Returns the main file's path.
 */
export function writeNginxConfig(
  dir: string,
  options: { port: number; upstreams: string; workerProcesses?: number },
): string {
  const site = renderTemplate(readFileSync(NGINX_TEMPLATE, 'utf8'), {
    NGINX_PORT: `127.0.0.1:${options.port}`,
    NGINX_UPSTREAMS: join(dir, 'upstreams.conf'),
    NGINX_ACCESS_LOG: join(dir, 'access.log'),
  });
  writeFileSync(join(dir, 'upstreams.conf'), options.upstreams);
  writeFileSync(join(dir, 'trading-room.conf'), site);
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((n) => `${n}_temp_path ${join(dir, n)};`);
  const replacements: [RegExp, string][] = [
    [/^user \S+;$/m, '# user: the test runs nginx as whoever runs the test'],
    [/^worker_processes \S+;$/m, `worker_processes ${options.workerProcesses ?? 1};`],
    [/^pid \S+;$/m, `pid ${join(dir, 'nginx.pid')};`],
    [/^error_log \S+/m, `error_log ${join(dir, 'error.log')}`],
    [/^http \{$/m, `http {\n    ${temp.join('\n    ')}`],
    [/^(\s*)include \/etc\/nginx\/conf\.d\/\*\.conf;$/m, `$1include ${join(dir, 'trading-room.conf')};`],
  ];
  let main = readFileSync(NGINX_MAIN, 'utf8');
  // Raising the descriptor limit above the hard limit needs privileges a test may not have.
  const hardLimit = Number(execFileSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim());
  if (Number.isFinite(hardLimit)) {
    replacements.push([
      /^worker_rlimit_nofile (\d+);$/m,
      `worker_rlimit_nofile ${Math.min(hardLimit, Number(/^worker_rlimit_nofile (\d+);$/m.exec(main)?.[1]))};`,
    ]);
  }
  for (const [pattern, replacement] of replacements) {
    if (!pattern.test(main)) throw new Error(`${NGINX_MAIN}: no line matches ${pattern}`);
    main = main.replace(pattern, replacement);
  }
  const path = join(dir, 'nginx.conf');
  writeFileSync(path, main);
  return path;
}

/** `nginx -t` on a configuration; resolves with its output, rejects with it when nginx refuses. */
export async function nginxConfigTest(dir: string, config: string): Promise<string> {
  try {
    const { stdout, stderr } = await run(NGINX_BIN, [
      '-t',
      '-p',
      `${dir}/`,
      '-e',
      join(dir, 'error.log'),
      '-c',
      config,
    ]);
    return stdout + stderr;
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`nginx -t refused the configuration:\n${e.stderr ?? ''}${e.stdout ?? ''}`, { cause: error });
  }
}

/** A temporary folder nginx's worker (user nobody when started as root) can enter. */
export function nginxDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'trading-room-nginx-'));
  chmodSync(dir, 0o755);
  return dir;
}

export class TestNginx {
  readonly dir: string;
  readonly port: number;
  readonly #config: string;
  readonly #process: ChildProcess;
  readonly #exited: Promise<void>;
  #workers = new Set<number>();
  #logOffset = 0;
  #generation = 0;
  #stderr = '';

  private constructor(dir: string, port: number, config: string, child: ChildProcess) {
    this.dir = dir;
    this.port = port;
    this.#config = config;
    this.#process = child;
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (this.#stderr += chunk));
    this.#exited = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  /** Starts nginx on a free loopback port in front of `upstreams`; resolves once its worker runs. */
  static async start(upstreams: readonly NginxUpstream[]): Promise<TestNginx> {
    const dir = nginxDir();
    const port = await freePort();
    const config = writeNginxConfig(dir, { port, upstreams: upstreamLines(upstreams) });
    await nginxConfigTest(dir, config);
    const child = spawn(NGINX_BIN, ['-p', `${dir}/`, '-e', join(dir, 'error.log'), '-c', config, '-g', 'daemon off;'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const nginx = new TestNginx(dir, port, config, child);
    try {
      await nginx.#waitForWorkers(new Set(), 'start');
    } catch (error) {
      await nginx.close();
      throw error;
    }
    return nginx;
  }

  /** `ws://127.0.0.1:port/ws?room=…`: the SDK's URL through nginx, hashed on the room. */
  wsUrl(roomId: string): string {
    return `ws://127.0.0.1:${this.port}/ws?room=${encodeURIComponent(roomId)}`;
  }

  get httpUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** How many reloads completed. */
  get generation(): number {
    return this.#generation;
  }

  /**
   * Replaces the upstream list and reloads (`nginx -s reload`). Resolves when the new worker runs
   * and every old worker logged `gracefully shutting down` — from then on only the new workers
   * accept connections (old ones keep serving the WebSockets they have until those close).
   * Rejects when nginx refused the new configuration.
   */
  async setUpstreams(upstreams: readonly NginxUpstream[]): Promise<void> {
    writeFileSync(join(this.dir, 'upstreams.conf'), upstreamLines(upstreams));
    const old = new Set(this.#workers);
    await run(NGINX_BIN, ['-s', 'reload', '-p', `${this.dir}/`, '-e', join(this.dir, 'error.log'), '-c', this.#config]);
    await this.#waitForWorkers(old, 'reload');
    this.#generation++;
  }

  /** Waits for a worker started after the last check and for every worker in `old` to shut down. */
  async #waitForWorkers(old: ReadonlySet<number>, what: string): Promise<void> {
    const started = new Set<number>();
    const stopping = new Set<number>();
    await eventually(
      () => {
        if (this.#process.exitCode !== null) throw new Error(`nginx exited: ${this.#stderr}${this.errorLog()}`);
        const log = this.errorLog().slice(this.#logOffset);
        const emerg = /\[emerg\].*/.exec(log);
        if (emerg) throw new Error(`nginx ${what} failed: ${emerg[0]}`);
        for (const m of log.matchAll(/start worker process (\d+)/g)) started.add(Number(m[1]));
        for (const m of log.matchAll(/\[notice\] (\d+)#\d+: gracefully shutting down/g)) stopping.add(Number(m[1]));
        return started.size > 0 && [...old].every((pid) => stopping.has(pid));
      },
      20_000,
      `nginx ${what}`,
    );
    this.#logOffset = this.errorLog().length;
    this.#workers = started;
  }

  errorLog(): string {
    const path = join(this.dir, 'error.log');
    return existsSync(path) ? readFileSync(path, 'utf8') : '';
  }

  /** The access log, parsed (a WebSocket's line appears when it closes). */
  accessLog(): AccessLogEntry[] {
    const path = join(this.dir, 'access.log');
    if (!existsSync(path)) return [];
    const lines = readFileSync(path, 'utf8').split('\n');
    lines.pop(); // what follows the last newline: empty, or a line still being written
    return lines
      .filter((line) => line.startsWith('{'))
      .map((line) => {
        const e = JSON.parse(line) as {
          msec: number;
          duration: number;
          request: string;
          status: number;
          upstream: string;
          ustatus: string;
          room: string;
        };
        const list = (v: string): string[] => (v === '' ? [] : v.split(/, | : /));
        const endedAt = Math.round(e.msec * 1000);
        return {
          endedAt,
          startedAt: endedAt - Math.round(e.duration * 1000),
          request: e.request,
          status: e.status,
          upstreams: list(e.upstream),
          upstreamStatuses: list(e.ustatus),
          room: e.room,
        };
      });
  }

  /** Fast shutdown (SIGTERM: every worker, old generations too, closes its connections); removes the folder. */
  async close(): Promise<void> {
    if (this.#process.exitCode === null && this.#process.signalCode === null) this.#process.kill('SIGTERM');
    const timer = setTimeout(() => this.#process.kill('SIGKILL'), 10_000);
    await this.#exited;
    clearTimeout(timer);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
