/**
 * The smoke run of the load suite: `npm run load -- --quick` runs every scenario at a small size
 * (real servers, real Redis, a real mediasoup worker, the operator's Artillery processor against
 * a real node) and must finish with every scenario's report and a chart per scenario. It fails
 * when a scenario breaks — exits non-zero, writes no report, or its report cannot be summarised
 * — never on a number: the sizes are too small, and the machine too shared, for timings to mean
 * anything here. Performance verdicts live in the full run's report.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { ROOT } from '../lib/processes.js';

const out = mkdtempSync(join(tmpdir(), 'trading-room-load-quick-test-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

interface Outcome {
  readonly id: string;
  readonly status: 'ok' | 'failed' | 'skipped';
  readonly reason?: string;
  readonly outputTail?: string;
}

it('runs every load scenario at a small size and writes the report with its charts', { timeout: 600_000 }, () => {
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'load-tests/run-all.ts', '--quick', `--out=${out}`], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 580_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  const date = new Date().toISOString().slice(0, 10);
  const jsonPath = join(out, `${date}.json`);
  expect(
    existsSync(jsonPath),
    `no combined report; output:\n${run.stdout.slice(-4000)}\n${run.stderr.slice(-4000)}`,
  ).toBe(true);
  const combined = JSON.parse(readFileSync(jsonPath, 'utf8')) as { scenarios: Outcome[] };
  const failed = combined.scenarios.filter((s) => s.status === 'failed');
  expect(
    failed.map((s) => `${s.id}: ${s.reason ?? ''}\n${(s.outputTail ?? '').slice(-1500)}`),
    'scenarios that broke',
  ).toEqual([]);
  expect(run.status).toBe(0);
  const ran = combined.scenarios.filter((s) => s.status === 'ok').map((s) => s.id);
  // The scenarios of this folder always run; files other work adds run when they exist.
  expect(ran).toEqual(expect.arrayContaining(['S1', 'S2-S3', 'S4', 'S5', 'M1', 'OP']));
  const markdown = readFileSync(join(out, `${date}.md`), 'utf8');
  for (const id of ['S1', 'S2-S3', 'S4', 'S5', 'M1']) {
    const svg = `${date}-${id.toLowerCase()}.svg`;
    expect(markdown, `the report links the ${id} chart`).toContain(`](${svg})`);
    expect(readFileSync(join(out, svg), 'utf8')).toMatch(/^<svg[\s\S]*<\/svg>$/);
  }
});
