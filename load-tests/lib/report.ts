/** Reports: a plain table on stdout and a JSON file under load-tests/reports/. */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './processes.js';

export function table(headers: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const cells = [headers, ...rows].map((row) => row.map((c) => (typeof c === 'number' ? fmt(c) : c)));
  const widths = headers.map((_, i) => Math.max(...cells.map((row) => (row[i] ?? '').length)));
  const line = (row: readonly string[]): string =>
    row.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  const [head, ...body] = cells;
  return [line(head ?? []), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

export function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString('en-US');
  if (Math.abs(n) >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

export function machine(): Record<string, unknown> {
  let commit = 'unknown';
  let dirty = false;
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    // Reports being written (this run's own, or an earlier one of the same date) are not code.
    dirty =
      execFileSync('git', ['status', '--porcelain', '--', '.', ':!load-tests/reports'], {
        cwd: ROOT,
        encoding: 'utf8',
      }).trim() !== '';
  } catch {
    /* not a git checkout */
  }
  return {
    node: process.version,
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    commit,
    dirty,
  };
}

/** Writes `load-tests/reports/<name>-<timestamp>.json`; returns its path. */
export function writeReport(name: string, report: Record<string, unknown>): string {
  const dir = join(ROOT, 'load-tests', 'reports');
  mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const path = join(dir, `${name}-${stamp}.json`);
  writeFileSync(
    path,
    JSON.stringify({ benchmark: name, at: new Date().toISOString(), machine: machine(), ...report }, null, 2) + '\n',
  );
  return path;
}

/** Pass/fail text for a ratio against its target. */
export function verdict(ratio: number, target: number, direction: '>=' | '<='): string {
  const ok = direction === '>=' ? ratio >= target : ratio <= target;
  return `${ok ? 'PASS' : 'MISS'} (${fmt(ratio)} ${direction} ${target})`;
}

/** Median of the finite values; NaN when there are none. */
export function median(values: readonly number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? (v[mid] as number) : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
}
