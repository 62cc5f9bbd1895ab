/**
 * A real Prometheus for tests: Debian's `prometheus` on a free loopback port with a temporary
 * data directory, configured from the repository's files (infrastructure/prometheus) with short
 * intervals and the test's scrape targets; `promtool` for the offline checks; and the dashboard's
 * and the rule files' PromQL expressions, read from the committed files.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse, stringify } from 'yaml';
import { eventually } from './async.js';
import { freePort } from './child-node.js';

export const PROMETHEUS_DIR = fileURLToPath(new URL('../infrastructure/prometheus/', import.meta.url));
export const GRAFANA_DIR = fileURLToPath(new URL('../infrastructure/grafana/', import.meta.url));
export const RULE_FILES = ['rules/recording.yml', 'rules/alerts.yml'] as const;

const run = promisify(execFile);

/** `promtool` with `args` in `cwd`; resolves its output, rejects with it when it fails. */
export async function promtool(args: readonly string[], cwd = PROMETHEUS_DIR): Promise<string> {
  try {
    const { stdout, stderr } = await run('promtool', [...args], { cwd });
    return stdout + stderr;
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    throw new Error(`promtool ${args.join(' ')} failed:\n${stdout}${stderr}`, { cause: error });
  }
}

/** A rule of a rule file, as `promtool` reads it. */
export interface RuleDefinition {
  readonly record?: string;
  readonly alert?: string;
  readonly expr: string;
}

/** Every rule of the committed rule files. */
export function ruleDefinitions(): RuleDefinition[] {
  return RULE_FILES.flatMap((file) => {
    const doc = parse(readFileSync(join(PROMETHEUS_DIR, file), 'utf8')) as { groups: { rules: RuleDefinition[] }[] };
    return doc.groups.flatMap((g) => g.rules);
  });
}

/** A panel query of the Grafana dashboard. */
export interface PanelQuery {
  readonly panel: string;
  readonly expr: string;
}

interface DashboardPanel {
  readonly type: string;
  readonly title: string;
  readonly targets?: { readonly expr?: string }[];
  readonly panels?: DashboardPanel[];
}

/** The dashboard JSON as committed. */
export function dashboard(): { uid: string; panels: DashboardPanel[]; [key: string]: unknown } {
  return JSON.parse(readFileSync(join(GRAFANA_DIR, 'dashboards/trading-room.json'), 'utf8')) as {
    uid: string;
    panels: DashboardPanel[];
  };
}

/** Every query of every panel of the dashboard. */
export function dashboardQueries(): PanelQuery[] {
  const flat = (panels: readonly DashboardPanel[]): DashboardPanel[] =>
    panels.flatMap((p) => [p, ...flat(p.panels ?? [])]);
  return flat(dashboard().panels).flatMap((p) =>
    (p.targets ?? []).flatMap((t) => (t.expr ? [{ panel: p.title, expr: t.expr }] : [])),
  );
}

/** One result of an instant query. */
export interface Sample {
  readonly metric: Record<string, string>;
  readonly value: [number, string];
}

export class TestPrometheus {
  readonly url: string;
  readonly #process: ChildProcess;
  readonly #dir: string;
  #log = '';

  private constructor(url: string, child: ChildProcess, dir: string) {
    this.url = url;
    this.#process = child;
    this.#dir = dir;
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (this.#log += chunk));
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (this.#log += chunk));
  }

  /**
   * Starts Prometheus with the committed `prometheus.yml` scraping `targets` (host:port) instead
   * of its static ones, every `intervalSeconds`, and the committed rules evaluated as often.
   */
  static async start(targets: readonly string[], intervalSeconds = 1): Promise<TestPrometheus> {
    const dir = mkdtempSync(join(tmpdir(), 'trading-room-prometheus-'));
    const interval = `${intervalSeconds}s`;
    const config = parse(readFileSync(join(PROMETHEUS_DIR, 'prometheus.yml'), 'utf8')) as {
      global: Record<string, unknown>;
      rule_files: string[];
      scrape_configs: { job_name: string; static_configs: { targets: string[] }[]; [key: string]: unknown }[];
    };
    config.global.scrape_interval = interval;
    config.global.evaluation_interval = interval;
    for (const job of config.scrape_configs) {
      job.scrape_timeout = interval;
      job.static_configs = [{ targets: [...targets] }];
    }
    config.rule_files = config.rule_files.map((file) => {
      const rules = parse(readFileSync(join(PROMETHEUS_DIR, file), 'utf8')) as { groups: { interval?: string }[] };
      for (const group of rules.groups) if (group.interval !== undefined) group.interval = interval;
      const copy = join(dir, basename(file));
      writeFileSync(copy, stringify(rules));
      return copy;
    });
    const configFile = join(dir, 'prometheus.yml');
    writeFileSync(configFile, stringify(config));
    const port = await freePort();
    const child = spawn(
      'prometheus',
      [
        `--config.file=${configFile}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const prometheus = new TestPrometheus(`http://127.0.0.1:${port}`, child, dir);
    try {
      await eventually(
        async () => {
          if (child.exitCode !== null) throw new Error(`prometheus exited:\n${prometheus.#log}`);
          return (await fetch(`${prometheus.url}/-/ready`).catch(() => undefined))?.status === 200;
        },
        30_000,
        'Prometheus ready',
      );
    } catch (error) {
      await prometheus.close();
      throw error;
    }
    return prometheus;
  }

  /** An instant query; rejects with Prometheus's error when the expression fails. */
  async query(expr: string): Promise<Sample[]> {
    const response = await fetch(`${this.url}/api/v1/query`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ query: expr }),
    });
    const body = (await response.json()) as {
      status: string;
      error?: string;
      data?: { resultType: string; result: Sample[] | [number, string] };
    };
    if (body.status !== 'success' || !body.data) throw new Error(`${expr}: ${body.error ?? response.status}`);
    if (body.data.resultType === 'scalar') return [{ metric: {}, value: body.data.result as [number, string] }];
    return body.data.result as Sample[];
  }

  /** GET of an API path (`/api/v1/…`), its `data`. */
  async api<T>(path: string): Promise<T> {
    const body = (await (await fetch(`${this.url}${path}`)).json()) as { status: string; data: T; error?: string };
    if (body.status !== 'success') throw new Error(`${path}: ${body.error ?? 'failed'}`);
    return body.data;
  }

  get log(): string {
    return this.#log;
  }

  /** Stops Prometheus and removes its data. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#process.exitCode === null && this.#process.signalCode === null) {
      const exited = new Promise((resolve) => this.#process.once('exit', resolve));
      this.#process.kill('SIGTERM');
      const timer = setTimeout(() => this.#process.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(this.#dir, { recursive: true, force: true });
  }
}
