/**
 * Runs every benchmark of this folder that compares trading-room against a baseline, one after
 * the other, each in its own process (fanout, limits, cluster-fanout), and prints where their
 * reports went. Arguments (e.g. `--nice`) are passed on.
 *
 *   scripts/with-node.sh npx tsx load-tests/run-all.ts [--nice]
 */
import { spawnSync } from 'node:child_process';
import { ROOT } from './lib/processes.js';

/** Each script with the time after which it is stopped (cluster-fanout runs four benchmarks). */
const BENCHMARKS: readonly (readonly [script: string, timeoutMinutes: number])[] = [
  ['load-tests/fanout.ts', 6],
  ['load-tests/limits.ts', 6],
  ['load-tests/cluster-fanout.ts', 16],
];
let failed = 0;
for (const [script, timeoutMinutes] of BENCHMARKS) {
  process.stdout.write(`\n=== ${script}\n`);
  const result = spawnSync(process.execPath, ['--import', 'tsx', script, ...process.argv.slice(2)], {
    cwd: ROOT,
    stdio: 'inherit',
    timeout: timeoutMinutes * 60_000,
  });
  if (result.status !== 0) {
    failed++;
    process.stdout.write(`${script} exited ${result.status ?? result.signal}\n`);
  }
}
process.exit(failed ? 1 : 0);
