/**
 * Summarises a V8 `.cpuprofile` (from `node --cpu-prof`, or `fanout.ts --cpu-prof`): self time
 * by function and by file, and total (inclusive) time of the functions whose name or file matches
 * an optional filter.
 *
 *   scripts/with-node.sh npx tsx load-tests/tools/cpuprofile-top.ts <file.cpuprofile> [top=25] [filter]
 *     [--from=S] [--to=S]   only samples between S seconds after the profile's start
 *     [--timeline]          busy share per second, to find the interesting window
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const flags = process.argv.slice(2).filter((a) => a.startsWith('--'));
const [file, topArg, filter] = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const flag = (name: string): number | undefined => {
  const v = flags.find((f) => f.startsWith(`--${name}=`));
  return v === undefined ? undefined : Number(v.slice(name.length + 3));
};
const fromUs = (flag('from') ?? 0) * 1e6;
const toUs = (flag('to') ?? Infinity) * 1e6;
if (!file) {
  process.stderr.write('usage: cpuprofile-top.ts <file.cpuprofile> [top] [filter]\n');
  process.exit(2);
}
const top = Number(topArg ?? 25);
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const selfUs = new Map<number, number>();
let total = 0;
let at = 0;
const idleIds = new Set(profile.nodes.filter((n) => n.callFrame.functionName === '(idle)').map((n) => n.id));
const perSecond: { busy: number; all: number }[] = [];
profile.samples.forEach((id, i) => {
  const dt = profile.timeDeltas[i] ?? 0;
  at += dt;
  const second = Math.floor(at / 1e6);
  perSecond[second] ??= { busy: 0, all: 0 };
  (perSecond[second] as { busy: number; all: number }).all += dt;
  if (!idleIds.has(id)) (perSecond[second] as { busy: number; all: number }).busy += dt;
  if (at < fromUs || at > toUs) return;
  selfUs.set(id, (selfUs.get(id) ?? 0) + dt);
  total += dt;
});
if (flags.includes('--timeline')) {
  process.stdout.write('second: busy %\n');
  perSecond.forEach((s, i) =>
    process.stdout.write(
      `${String(i).padStart(4)}: ${((100 * s.busy) / Math.max(1, s.all)).toFixed(0).padStart(3)}%\n`,
    ),
  );
}

const short = (url: string): string =>
  url
    .replace(/^file:\/\//, '')
    .replace(/^.*\/node_modules\//, '~/')
    .replace(/^.*\/work\/main\//, '');
const label = (n: ProfileNode): string =>
  `${n.callFrame.functionName || '(anonymous)'} ${short(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;

const fnSelf = new Map<string, number>();
const fileSelf = new Map<string, number>();
const fnTotal = new Map<string, number>();
for (const [id, us] of selfUs) {
  const n = byId.get(id);
  if (!n) continue;
  fnSelf.set(label(n), (fnSelf.get(label(n)) ?? 0) + us);
  const f = short(n.callFrame.url) || `(${n.callFrame.functionName})`;
  fileSelf.set(f, (fileSelf.get(f) ?? 0) + us);
  // Inclusive time: every distinct frame on the stack gets the sample.
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const node = byId.get(cur);
    if (!node) break;
    const l = label(node);
    if (seen.has(l)) continue;
    seen.add(l);
    fnTotal.set(l, (fnTotal.get(l) ?? 0) + us);
  }
}

const pct = (us: number): string => `${((100 * us) / total).toFixed(1).padStart(5)}%`;
const print = (title: string, map: Map<string, number>, match?: string): void => {
  process.stdout.write(`\n${title}\n`);
  [...map]
    .filter(([k]) => !match || k.includes(match))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .forEach(([k, us]) => process.stdout.write(`${pct(us)}  ${k}\n`));
};
process.stdout.write(`${file}: ${(total / 1e6).toFixed(2)} s sampled\n`);
print('self time by file', fileSelf);
print('self time by function', fnSelf);
if (filter) print(`total time, functions matching "${filter}"`, fnTotal, filter);
