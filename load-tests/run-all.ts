/**
 * `npm run load`: every scenario of this folder, one after the other, each in its own process
 * with its output streamed live (prefixed with the scenario), then one report:
 * `load-tests/reports/<date>.md` (tables, verdicts, one SVG chart per scenario drawn with
 * Vega-Lite) and `<date>.json` (every scenario's own JSON report, whole).
 *
 *   scripts/with-node.sh npx tsx load-tests/run-all.ts [--quick] [--only=S1,S5] [--merge] [--out=DIR] [--nice]
 *
 * `--quick` runs every scenario at a small size (the smoke run of `load-tests/test/quick.test.ts`;
 * its numbers mean little) and writes to a temporary folder unless `--out` says otherwise.
 * Scenario files other work adds (`observability-cost.ts`, `cross-node-media.ts`,
 * `backend-access.ts`, `backend-webhooks.ts`) run when they exist. Exits 1 when a scenario
 * failed (exit code, timeout, or no report); a missed target is a verdict in the report, not a
 * failure.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { basename, isAbsolute, join, resolve } from 'node:path';
import { renderChart, type ChartSpec } from './lib/charts.js';
import { ownPids, ROOT } from './lib/processes.js';
import { machine } from './lib/report.js';
import { scenarioSummary, type ScenarioSummary } from './lib/summaries.js';

export interface Scenario {
  readonly id: string;
  readonly title: string;
  readonly script: string;
  readonly args: { readonly full: readonly string[]; readonly quick: readonly string[] };
  readonly timeoutMinutes: { readonly full: number; readonly quick: number };
  /** Written by other work; skipped (and said so) when the file does not exist. */
  readonly optional?: boolean;
}

const MEDIA_QUICK = [
  '--counts=10,20',
  '--cases=baseline,one-worker',
  '--measure-seconds=1',
  '--quiet-wait-seconds=0',
  '--no-retry',
  '--cap-seconds=40',
];

/** Every scenario, in the order they run. */
export const SCENARIOS: readonly Scenario[] = [
  {
    id: 'S1',
    title: 'Fan-out, one node: peak rounds, memory, and the offered-load ramp at 1,000 and 5,000',
    script: 'load-tests/fanout.ts',
    args: { full: [], quick: ['--quick'] },
    timeoutMinutes: { full: 25, quick: 2 },
  },
  {
    id: 'S2-S3',
    title: 'Two nodes on Redis / Redis Cluster: fan-out per CPU-second (S2), Redis bytes per message (S3)',
    script: 'load-tests/cluster-fanout.ts',
    args: { full: [], quick: ['--quick', '--only=s2-redis,s3-redis', '--layout=placed'] },
    timeoutMinutes: { full: 24, quick: 3 },
  },
  {
    id: 'S4',
    title: 'Rate limits: their cost, and latency for everyone else during a flood',
    script: 'load-tests/limits.ts',
    args: { full: [], quick: ['--quick'] },
    timeoutMinutes: { full: 8, quick: 2 },
  },
  {
    id: 'S5',
    title: 'Connect storm, memory per idle joined connection, and the ceiling within 2 GiB',
    script: 'load-tests/connections.ts',
    args: { full: [], quick: ['--quick'] },
    timeoutMinutes: { full: 15, quick: 2 },
  },
  {
    id: 'S6',
    title: 'Observability on (tracing 10 %, metrics, Sentry) vs off',
    script: 'load-tests/observability-cost.ts',
    args: { full: [], quick: ['--quick'] },
    timeoutMinutes: { full: 8, quick: 2 },
    optional: true,
  },
  {
    id: 'M1',
    title: 'Media: consumers one worker (and two, with the pipe) forwards at ≤ 1 % loss',
    script: 'load-tests/media-capacity.ts',
    args: { full: [], quick: MEDIA_QUICK },
    timeoutMinutes: { full: 7, quick: 2 },
  },
  {
    id: 'M1-pipe',
    title: 'Media across nodes: pipe latency and cost',
    script: 'load-tests/cross-node-media.ts',
    args: { full: [], quick: ['--viewers=10', '--measure-seconds=1', '--rounds=1'] },
    timeoutMinutes: { full: 8, quick: 2 },
    optional: true,
  },
  {
    id: 'B1',
    title: 'Backend access checks under load',
    script: 'load-tests/backend-access.ts',
    args: { full: [], quick: ['--quick'] },
    timeoutMinutes: { full: 8, quick: 2 },
    optional: true,
  },
  {
    id: 'B2',
    title: 'Backend webhooks under load',
    script: 'load-tests/backend-webhooks.ts',
    args: { full: [], quick: ['--quick'] },
    timeoutMinutes: { full: 8, quick: 2 },
    optional: true,
  },
  {
    id: 'OP',
    title: "Operator's load test: the artillery processor against a real node (without artillery)",
    script: 'load-tests/artillery/check-processor.ts',
    args: { full: [], quick: [] },
    timeoutMinutes: { full: 2, quick: 1 },
  },
];

export interface ScenarioOutcome {
  readonly id: string;
  readonly title: string;
  readonly script: string;
  readonly status: 'ok' | 'failed' | 'skipped';
  readonly exitCode: number | null;
  readonly seconds: number;
  readonly reason?: string;
  readonly reportPath?: string;
  readonly report?: Record<string, unknown>;
  readonly loadavgBefore: readonly number[];
  readonly loadavgAfter: readonly number[];
  readonly outputTail: string;
}

/** Runs one scenario's script, streaming its output with a prefix; resolves with its outcome. */
export async function runScenario(
  scenario: Scenario,
  quick: boolean,
  extraArgs: readonly string[],
): Promise<ScenarioOutcome> {
  const base = {
    id: scenario.id,
    title: scenario.title,
    script: scenario.script,
    loadavgBefore: loadavg().map((v) => Number(v.toFixed(2))),
  };
  if (!existsSync(join(ROOT, scenario.script))) {
    return {
      ...base,
      status: 'skipped',
      exitCode: null,
      seconds: 0,
      reason: `${scenario.script} does not exist (yet)`,
      loadavgAfter: base.loadavgBefore,
      outputTail: '',
    };
  }
  const started = Date.now();
  const timeoutMs = (quick ? scenario.timeoutMinutes.quick : scenario.timeoutMinutes.full) * 60_000;
  const args = [
    '--import',
    'tsx',
    scenario.script,
    ...(quick ? scenario.args.quick : scenario.args.full),
    ...extraArgs,
  ];
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  if (child.pid !== undefined) ownPids.add(child.pid);
  const tail: string[] = [];
  let reportPath: string | undefined;
  const prefix = `[${scenario.id}] `;
  const onLine = (line: string, stream: NodeJS.WriteStream): void => {
    stream.write(prefix + line + '\n');
    tail.push(line);
    if (tail.length > 60) tail.shift();
    const match = /^report: (\S+\.json)/.exec(line);
    if (match?.[1]) reportPath = isAbsolute(match[1]) ? match[1] : resolve(ROOT, match[1]);
  };
  const pipeLines = (source: NodeJS.ReadableStream | null, stream: NodeJS.WriteStream): void => {
    let partial = '';
    source?.on('data', (chunk: Buffer) => {
      partial += chunk.toString();
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) onLine(line, stream);
    });
    source?.on('end', () => {
      if (partial) onLine(partial, stream);
    });
  };
  pipeLines(child.stdout, process.stdout);
  pipeLines(child.stderr, process.stderr);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    // The whole process group: the scenario's servers, Redis and flooders go with it.
    if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
  }, timeoutMs);
  const exitCode = await new Promise<number | null>((r) => child.once('close', (code) => r(code)));
  clearTimeout(timer);
  const seconds = Math.round((Date.now() - started) / 1000);
  let report: Record<string, unknown> | undefined;
  if (reportPath && existsSync(reportPath)) {
    report = JSON.parse(readFileSync(reportPath, 'utf8')) as Record<string, unknown>;
  }
  const failed = timedOut || exitCode !== 0 || report === undefined;
  const reason = timedOut
    ? `stopped after ${timeoutMs / 60_000} min`
    : exitCode !== 0
      ? `exited ${exitCode}`
      : report === undefined
        ? 'wrote no report'
        : undefined;
  return {
    ...base,
    status: failed ? 'failed' : 'ok',
    exitCode,
    seconds,
    ...(reason ? { reason } : {}),
    ...(reportPath ? { reportPath } : {}),
    ...(report ? { report } : {}),
    loadavgAfter: loadavg().map((v) => Number(v.toFixed(2))),
    outputTail: tail.join('\n'),
  };
}

function relative(path: string): string {
  return path.startsWith(`${ROOT}/`) ? path.slice(ROOT.length + 1) : path;
}

/** The commit a scenario's own report was written at (`+`: with uncommitted changes), `-` without one. */
function commitOf(o: ScenarioOutcome): string {
  const m = o.report?.machine as { commit?: unknown; dirty?: unknown } | undefined;
  return typeof m?.commit === 'string' ? `${m.commit}${m.dirty === true ? '+' : ''}` : '-';
}

/** The Markdown report; charts are files next to it, linked by name. */
export function markdown(
  outcomes: readonly ScenarioOutcome[],
  summaries: ReadonlyMap<string, ScenarioSummary>,
  charts: ReadonlyMap<string, string>,
  header: { readonly date: string; readonly quick: boolean; readonly seconds: number },
): string {
  const m = machine();
  const lines: string[] = [
    `# Load report ${header.date}${header.quick ? ' (quick smoke run — sizes too small for the numbers to mean much)' : ''}`,
    '',
    `Machine: ${String(m.cores)} cores (${String(m.cpu)}), ${String(m.memoryGiB)} GiB, Node ${String(m.node)}, ` +
      `commit ${String(m.commit)}${m.dirty ? ' + uncommitted changes' : ''} (each scenario’s own in the table: a ` +
      'scenario kept from an earlier run of the day by `--merge` shows where it ran, `+` marks uncommitted changes); ' +
      `scenarios ${Math.round(outcomes.reduce((a, o) => a + o.seconds, 0) / 60)} min in all. ` +
      'Servers under test pinned to core 0, load generator, Redis and flooders to core 1. ' +
      'Other work on the machine, if any, shows as `loadavg` (1/5/15 min, before and after each scenario, in the ' +
      'table below) above the ~1\u20132 the run itself puts on these cores; the scenarios measure other ' +
      'processes\u2019 CPU per window and re-run disturbed rounds (see each section).',
    '',
    '| scenario | status | time | commit | loadavg before | loadavg after | report |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...outcomes.map(
      (o) =>
        `| ${o.id} ${o.title} | ${o.status}${o.reason ? ` (${o.reason})` : ''} | ${o.seconds} s | ${commitOf(o)} | ` +
        `${o.loadavgBefore.join(' / ')} | ${o.loadavgAfter.join(' / ')} | ${o.reportPath ? `\`${basename(o.reportPath)}\`` : '-'} |`,
    ),
    '',
  ];
  for (const o of outcomes) {
    lines.push(`## ${o.id} — ${o.title}`, '');
    if (o.status === 'skipped') {
      lines.push(`Not run: ${o.reason ?? ''}.`, '');
      continue;
    }
    if (o.status === 'failed') {
      lines.push(
        `**Failed** (${o.reason ?? ''}). Last lines of its output:`,
        '',
        '```',
        o.outputTail.slice(-3000),
        '```',
        '',
      );
    }
    const summary = summaries.get(o.id);
    if (summary) {
      for (const block of summary.markdown) lines.push(block, '');
      if (summary.verdicts.length > 0) {
        lines.push('Verdicts:', '', ...summary.verdicts.map((v) => `- ${v}`), '');
      }
    }
    const chart = charts.get(o.id);
    if (chart) lines.push(`![${o.id}](${chart})`, '');
  }
  return lines.join('\n').replace(/\n{3,}/g, '\n\n');
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const only = args
    .find((a) => a.startsWith('--only='))
    ?.slice('--only='.length)
    .split(',');
  const outArg = args.find((a) => a.startsWith('--out='))?.slice('--out='.length);
  const passOn = args.filter((a) => a === '--nice' || a === '--cpu-prof');
  /** `--merge`: keep the other scenarios of today's report (re-running one scenario). */
  const merge = args.includes('--merge');
  const outDir = outArg
    ? resolve(outArg)
    : quick
      ? mkdtempSync(join(tmpdir(), 'trading-room-load-quick-'))
      : join(ROOT, 'load-tests', 'reports');
  mkdirSync(outDir, { recursive: true });
  const started = Date.now();
  const date = new Date().toISOString().slice(0, 10);
  const scenarios = SCENARIOS.filter((s) => !only || only.includes(s.id));
  process.stdout.write(
    `load${quick ? ' --quick' : ''}: ${scenarios.map((s) => s.id).join(', ')} → ${relative(outDir)}/${date}.md\n`,
  );
  const outcomes: ScenarioOutcome[] = [];
  for (const [i, scenario] of scenarios.entries()) {
    process.stdout.write(
      `\n=== [${i + 1}/${scenarios.length}] ${scenario.id}: ${scenario.title} (${scenario.script})\n`,
    );
    const outcome = await runScenario(scenario, quick, passOn);
    outcomes.push(outcome);
    process.stdout.write(
      `=== ${scenario.id}: ${outcome.status}${outcome.reason ? ` (${outcome.reason})` : ''} in ${outcome.seconds} s\n`,
    );
  }
  if (merge) {
    // Scenarios not run this time keep their outcome from the report already written today.
    const previous = join(outDir, `${date}.json`);
    if (existsSync(previous)) {
      const kept = (JSON.parse(readFileSync(previous, 'utf8')) as { scenarios: ScenarioOutcome[] }).scenarios;
      const rerun = new Set(outcomes.map((o) => o.id));
      const merged = SCENARIOS.map(
        (s) => outcomes.find((o) => o.id === s.id) ?? kept.find((o) => o.id === s.id && !rerun.has(o.id)),
      ).filter((o): o is ScenarioOutcome => o !== undefined);
      outcomes.splice(0, outcomes.length, ...merged.map((o) => ({ ...o, outputTail: o.outputTail ?? '' })));
      process.stdout.write(`merged with ${relative(previous)}: ${outcomes.map((o) => o.id).join(', ')}\n`);
    }
  }
  const summaries = new Map<string, ScenarioSummary>();
  const charts = new Map<string, string>();
  for (const o of outcomes) {
    if (!o.report) continue;
    let summary: ScenarioSummary;
    try {
      summary = scenarioSummary(o.id, o.report);
    } catch (error) {
      process.stderr.write(`${o.id}: could not summarise its report: ${(error as Error).message}\n`);
      continue;
    }
    summaries.set(o.id, summary);
    if (summary.chart) {
      const file = `${date}-${o.id.toLowerCase()}.svg`;
      writeFileSync(join(outDir, file), await renderChart(summary.chart as ChartSpec));
      charts.set(o.id, file);
    }
  }
  const seconds = Math.round((Date.now() - started) / 1000);
  const mdPath = join(outDir, `${date}.md`);
  writeFileSync(mdPath, markdown(outcomes, summaries, charts, { date, quick, seconds }) + '\n');
  const jsonPath = join(outDir, `${date}.json`);
  writeFileSync(
    jsonPath,
    JSON.stringify(
      {
        at: new Date().toISOString(),
        quick,
        machine: machine(),
        seconds,
        scenarios: outcomes.map(({ outputTail, ...rest }) =>
          rest.status === 'failed' ? { ...rest, outputTail } : rest,
        ),
      },
      null,
      2,
    ) + '\n',
  );
  const failed = outcomes.filter((o) => o.status === 'failed');
  process.stdout.write(
    `\nreport: ${relative(mdPath)} (+ ${basename(jsonPath)}, ${charts.size} charts) in ${Math.round(seconds / 60)} min; ` +
      `${outcomes.filter((o) => o.status === 'ok').length} ok, ${failed.length} failed, ` +
      `${outcomes.filter((o) => o.status === 'skipped').length} skipped` +
      (failed.length ? ` — failed: ${failed.map((o) => `${o.id} (${o.reason ?? ''})`).join(', ')}` : '') +
      '\n',
  );
  process.exit(failed.length ? 1 : 0);
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(ROOT, 'load-tests', 'run-all.ts')) {
  main().catch((error: unknown) => {
    process.stderr.write(`load failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  });
}
