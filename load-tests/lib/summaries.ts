/**
 * What the load report shows of each scenario's JSON report: Markdown tables, the verdict lines,
 * and the points of its chart. Readers are tolerant: a field a scenario did not write (a part
 * not run, a side not measured) leaves its row or point out. A scenario without a reader of its
 * own (files other work adds) gets its verdicts, and a chart when its report carries
 * `chart: ChartSpec` itself.
 */
import type { ChartPoint, ChartSpec } from './charts.js';
import { fmt } from './report.js';

export interface ScenarioSummary {
  /** Markdown blocks (tables, notes), in order. */
  readonly markdown: string[];
  readonly verdicts: string[];
  readonly chart?: ChartSpec;
}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const num = (v: unknown): number => (typeof v === 'number' ? v : Number.NaN);
const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const list = (v: unknown): Json[] => (Array.isArray(v) ? v.filter(isObject) : []);

/** A Markdown table; numbers formatted like the console tables. */
export function mdTable(headers: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const cell = (c: string | number): string => (typeof c === 'number' ? fmt(c) : c).replace(/\|/g, '\\|');
  return [
    `| ${headers.join(' | ')} |`,
    `| ${headers.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`),
  ].join('\n');
}

/** Every `verdict`/`verdicts` string anywhere in the report, with the path that leads to it. */
export function collectVerdicts(report: unknown, path: string[] = []): string[] {
  const out: string[] = [];
  if (!isObject(report)) return out;
  for (const [key, value] of Object.entries(report)) {
    if (key === 'verdict' && typeof value === 'string') out.push(`${path.join(' › ') || 'result'}: ${value}`);
    else if (key === 'verdicts' && Array.isArray(value)) {
      for (const v of value) if (typeof v === 'string') out.push(`${path.join(' › ') || 'result'}: ${v}`);
    } else if (key === 'verdicts' && isObject(value)) {
      for (const [name, v] of Object.entries(value)) {
        if (typeof v === 'string') out.push(`${[...path, name].join(' › ')}: ${v}`);
      }
    } else if (isObject(value)) out.push(...collectVerdicts(value, [...path, key]));
  }
  return out;
}

function fanout(report: Json): ScenarioSummary {
  const markdown: string[] = [];
  const points: ChartPoint[] = [];
  const summaries = list(report.summaries);
  if (summaries.length > 0) {
    markdown.push(
      '**Peak** (one sender as fast as acknowledged; ratios are medians of per-round ratios against `bare-ws`, which frames once):',
      mdTable(
        [
          'server',
          'deliveries/s',
          'ratio',
          'deliv. per server CPU-s',
          'ratio',
          'settled RSS KiB/conn',
          'heap after GC KiB/conn',
        ],
        summaries.map((s) => [
          str(s.target),
          num(isObject(s.deliveriesPerSecond) ? s.deliveriesPerSecond.median : Number.NaN),
          num(s.ratioDeliveries),
          num(s.deliveriesPerServerCpuSecond),
          num(s.ratioEfficiency),
          num(s.bytesPerConnection) / 1024,
          num(s.gcHeapBytesPerConnection) / 1024,
        ]),
      ),
    );
  }
  const ramp = isObject(report.ramp) ? report.ramp : {};
  for (const size of list(ramp.sizes)) {
    const participants = num(size.participants);
    const steps = list(size.steps);
    const max = isObject(size.maxSustained) ? size.maxSustained : {};
    const ratios = isObject(size.ratios) ? size.ratios : {};
    markdown.push(
      `**Ramp, ${fmt(participants)} participants** — highest offered deliveries/s with p99 ≤ ${fmt(num(ramp.p99LimitMs))} ms and ≥ 90 % delivered:`,
      mdTable(
        ['server', 'max sustained deliveries/s', 'trading-room ÷ server'],
        Object.entries(max).map(([name, v]) => [name, num(v), num(ratios[name])]),
      ),
    );
    for (const s of steps) {
      points.push({
        series: `${str(s.target)} (${fmt(participants)})`,
        x: num(s.offeredDeliveriesPerSecond),
        deliveriesPerSecond: num(s.deliveriesPerSecond),
        p50Ms: num(s.p50Ms),
        p99Ms: num(s.p99Ms),
      });
    }
  }
  return {
    markdown,
    verdicts: collectVerdicts(report),
    ...(points.length
      ? {
          chart: {
            title: 'S1 fan-out, one node: delivered vs offered load (room size in brackets)',
            xTitle: 'offered deliveries/s',
            panels: [
              { field: 'deliveriesPerSecond', title: 'deliveries/s' },
              { field: 'p50Ms', title: 'p50 latency ms' },
              { field: 'p99Ms', title: 'p99 latency ms', logScale: true },
            ],
            points,
          },
        }
      : {}),
  };
}

function clusterFanout(report: Json): ScenarioSummary {
  const markdown: string[] = [];
  const points: ChartPoint[] = [];
  const parts = isObject(report.parts) ? report.parts : {};
  const s2Rows: (string | number)[][] = [];
  const s3Rows: (string | number)[][] = [];
  for (const [part, value] of Object.entries(parts)) {
    if (!isObject(value)) continue;
    for (const s of list(value.summaries)) {
      s2Rows.push([
        part,
        str(s.server),
        num(s.deliveriesPerSecond),
        num(s.deliveriesPerServerCpuSecond),
        num(s.ratioEfficiency),
        num(s.latencyP50Ms),
        num(s.latencyP99Ms),
        num(s.ratioP99),
        num(s.missing),
      ]);
      points.push({
        series: str(s.server),
        x: part,
        deliveriesPerServerCpuSecond: num(s.deliveriesPerServerCpuSecond),
        p50Ms: num(s.latencyP50Ms),
        p99Ms: num(s.latencyP99Ms),
      });
    }
    const layouts = isObject(value.layouts) ? value.layouts : {};
    for (const [layout, results] of Object.entries(layouts)) {
      for (const r of list(results)) {
        s3Rows.push([
          part,
          layout,
          str(r.server),
          num(r.bytesPerMessage),
          num(r.medianBurstBytesPerMessage),
          num(r.bytesPerDelivery),
          num(r.membersOff),
        ]);
      }
    }
  }
  if (s2Rows.length) {
    markdown.push(
      '**S2** — one room over two nodes (ratios trading-room ÷ Socket.IO):',
      mdTable(
        ['part', 'server', 'deliv/s', 'deliv per server CPU-s', 'ratio', 'p50 ms', 'p99 ms', 'p99 ratio', 'missing'],
        s2Rows,
      ),
    );
  }
  if (s3Rows.length) {
    markdown.push(
      '**S3** — 2,000 rooms × 4 members: Redis bytes out per delivered message:',
      mdTable(
        ['part', 'layout', 'server', 'Redis out B/msg', 'median burst B/msg', 'B/delivery', 'members off'],
        s3Rows,
      ),
    );
  }
  return {
    markdown,
    verdicts: collectVerdicts(report),
    ...(points.length
      ? {
          chart: {
            title: 'S2 two nodes: deliveries per server CPU-second and latency, as fast as acknowledged',
            xTitle: 'part',
            panels: [
              { field: 'deliveriesPerServerCpuSecond', title: 'deliveries per server CPU-s' },
              { field: 'p50Ms', title: 'p50 latency ms' },
              { field: 'p99Ms', title: 'p99 latency ms' },
            ],
            points: points.map((p) => ({
              ...p,
              series: `${p.series} ${String(p.x)}`,
              x: `${p.series} ${String(p.x)}`,
            })),
          },
        }
      : {}),
  };
}

function limits(report: Json): ScenarioSummary {
  const markdown: string[] = [];
  const points: ChartPoint[] = [];
  const latency = isObject(report.latency) ? report.latency : {};
  const rows: (string | number)[][] = [];
  for (const [name, r] of Object.entries(latency)) {
    if (!isObject(r)) continue;
    rows.push([name, num(r.p50QuietMs), num(r.p99QuietMs), num(r.p50FloodMs), num(r.p99FloodMs), num(r.ratio)]);
    points.push({ series: `${name}, quiet`, x: `${name}, quiet`, p50Ms: num(r.p50QuietMs), p99Ms: num(r.p99QuietMs) });
    points.push({ series: `${name}, flood`, x: `${name}, flood`, p50Ms: num(r.p50FloodMs), p99Ms: num(r.p99FloodMs) });
  }
  const throughput = isObject(report.throughput) ? report.throughput : {};
  if (Object.keys(throughput).length) {
    markdown.push(
      `**Cost of the limits** (on ÷ off): deliveries/s ${str(throughput.verdict) || '-'}; per server CPU-s ${str(throughput.verdictPerServerCpu) || '-'}`,
    );
  }
  if (rows.length) {
    markdown.push(
      '**Probe latency, quiet vs flood** (ratio: median of per-pair p99 flood ÷ quiet):',
      mdTable(['limits', 'p50 quiet ms', 'p99 quiet ms', 'p50 flood ms', 'p99 flood ms', 'p99 ratio'], rows),
    );
  }
  return {
    markdown,
    verdicts: collectVerdicts(report),
    ...(points.length
      ? {
          chart: {
            title: 'S4 probe chat latency, quiet and under a flood',
            xTitle: 'setting, phase',
            panels: [
              { field: 'p50Ms', title: 'p50 latency ms' },
              { field: 'p99Ms', title: 'p99 latency ms' },
            ],
            points,
          },
        }
      : {}),
  };
}

function connections(report: Json): ScenarioSummary {
  const markdown = Array.isArray(report.markdown)
    ? report.markdown.filter((b): b is string => typeof b === 'string')
    : [];
  const chart = isObject(report.chart) ? (report.chart as unknown as ChartSpec) : undefined;
  return { markdown, verdicts: collectVerdicts(report), ...(chart ? { chart } : {}) };
}

function media(report: Json): ScenarioSummary {
  const points: ChartPoint[] = [];
  for (const s of list(report.steps)) {
    points.push({
      series: str(s.case),
      x: num(s.count),
      lossPercent: num(s.loss) * 100,
      deliveredPerSecond: num(s.deliveredPerSecond),
    });
  }
  const rows = list(report.summaries).map((s) => [
    str(s.case),
    typeof s.maxConsumers === 'number' ? `${fmt(s.maxConsumers)}${s.lowerBound === true ? '+' : ''}` : '-',
    typeof s.perWorker === 'number' ? s.perWorker : '-',
    typeof s.ratioToBaseline === 'number' ? s.ratioToBaseline : '-',
  ]);
  return {
    markdown: rows.length ? [mdTable(['case', 'capacity (consumers)', 'per worker', '÷ baseline'], rows)] : [],
    verdicts: collectVerdicts(report),
    ...(points.length
      ? {
          chart: {
            title: 'M1 media: packets delivered on time and loss against consumers of one 1 Mbit/s stream',
            xTitle: 'consumers',
            panels: [
              { field: 'deliveredPerSecond', title: 'packets/s on time' },
              { field: 'lossPercent', title: 'loss %' },
            ],
            points,
          },
        }
      : {}),
  };
}

/** The summary of scenario `id` from its JSON report. */
export function scenarioSummary(id: string, report: Json): ScenarioSummary {
  switch (id) {
    case 'S1':
      return fanout(report);
    case 'S2-S3':
      return clusterFanout(report);
    case 'S4':
      return limits(report);
    case 'M1':
      return media(report);
    default:
      // S5 and the operator check write their own tables and chart; files other work adds may too.
      return connections(report);
  }
}
