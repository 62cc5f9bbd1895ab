/**
 * Charts of the load report: a Vega-Lite spec per scenario, rendered to SVG headless by Vega
 * (`renderer: 'none'`, no browser, no canvas). One chart is a row of small panels over the same
 * x axis (the load: offered deliveries/s, connections, …, or the servers side by side when a
 * scenario has one load level), one line or bar per server.
 */
import * as vega from 'vega';
import * as vl from 'vega-lite';

/** One measured point: `series` is the server (or variant), `x` the load (a number) or a label. */
export type ChartPoint = { readonly series: string; readonly x: number | string } & Readonly<
  Record<string, number | string | undefined>
>;

export interface ChartPanel {
  /** Field of the points plotted in this panel. */
  readonly field: string;
  readonly title: string;
  readonly logScale?: boolean;
}

export interface ChartSpec {
  readonly title: string;
  readonly xTitle: string;
  readonly panels: readonly ChartPanel[];
  readonly points: readonly ChartPoint[];
}

/** The Vega-Lite spec of a chart (exported for tests and for anyone who wants the spec itself). */
export function chartSpec(chart: ChartSpec): vl.TopLevelSpec {
  const numericX = chart.points.every((p) => typeof p.x === 'number');
  const panels = chart.panels.filter((panel) =>
    chart.points.some((p) => typeof p[panel.field] === 'number' && Number.isFinite(p[panel.field])),
  );
  const values = chart.points.map((p) => {
    const row: Record<string, number | string | null> = { series: p.series, x: p.x };
    for (const panel of panels) {
      const v = p[panel.field];
      row[panel.field] = typeof v === 'number' && Number.isFinite(v) ? v : null;
    }
    return row;
  });
  const color = { field: 'series', type: 'nominal' as const, title: 'server' };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: chart.title,
    data: { values },
    config: { font: 'sans-serif', view: { stroke: '#ddd' } },
    hconcat: panels.map((panel) => ({
      width: 260,
      height: 180,
      title: panel.title,
      transform: [{ filter: `datum['${panel.field}'] !== null` }],
      mark: numericX ? { type: 'line' as const, point: true } : { type: 'bar' as const },
      encoding: numericX
        ? {
            x: { field: 'x', type: 'quantitative' as const, title: chart.xTitle },
            y: {
              field: panel.field,
              type: 'quantitative' as const,
              title: panel.title,
              ...(panel.logScale ? { scale: { type: 'log' as const } } : {}),
            },
            color,
          }
        : {
            x: { field: 'series', type: 'nominal' as const, title: chart.xTitle, axis: { labelAngle: -30 } },
            y: { field: panel.field, type: 'quantitative' as const, title: panel.title },
            color,
          },
    })),
  };
}

/** Renders a chart to SVG text. */
export async function renderChart(chart: ChartSpec): Promise<string> {
  const compiled = vl.compile(chartSpec(chart)).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
