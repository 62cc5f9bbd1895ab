/**
 * The Prometheus and Grafana files checked offline by the tools that consume them: `promtool
 * check config` and `check rules` accept them, `promtool test rules` fires every alert on
 * synthetic series and keeps it silent on healthy ones (tests/alerts.test.yml), every alert links
 * a runbook section that exists in docs/operations.md, the Kubernetes example relabels a pod the
 * way the Deployment annotates it, and the dashboard and its provisioning fit the compose stack.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import {
  dashboard,
  dashboardQueries,
  GRAFANA_DIR,
  PROMETHEUS_DIR,
  promtool,
  ruleDefinitions,
  RULE_FILES,
} from '../../test-support/prometheus.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface RelabelRule {
  source_labels?: string[];
  separator?: string;
  regex?: string;
  replacement?: string;
  target_label?: string;
  action?: 'replace' | 'keep' | 'drop';
}

/** Prometheus's relabelling (replace, keep, drop) of one target's labels; undefined when dropped. */
function relabel(labels: Record<string, string>, rules: readonly RelabelRule[]): Record<string, string> | undefined {
  const out = { ...labels };
  for (const rule of rules) {
    const value = (rule.source_labels ?? []).map((l) => out[l] ?? '').join(rule.separator ?? ';');
    // Prometheus anchors the regex at both ends.
    const match = new RegExp(`^(?:${rule.regex ?? '(.*)'})$`).exec(value);
    const action = rule.action ?? 'replace';
    if (action === 'keep' && !match) return undefined;
    if (action === 'drop' && match) return undefined;
    if (action === 'replace' && match && rule.target_label) {
      out[rule.target_label] = (rule.replacement ?? '$1').replace(/\$(\d+)/g, (_, i: string) => match[Number(i)] ?? '');
    }
  }
  return out;
}

/** The anchors GitHub gives the headings of a Markdown file. */
function anchors(markdown: string): Set<string> {
  return new Set(
    [...markdown.matchAll(/^#+\s+(.*)$/gm)].map((m) =>
      (m[1] as string)
        .toLowerCase()
        .replace(/[^\w\s-]/g, '')
        .trim()
        .replace(/\s+/g, '-'),
    ),
  );
}

describe('Prometheus files', () => {
  it('promtool accepts the configuration and the rule files', async () => {
    expect(await promtool(['check', 'config', 'prometheus.yml'])).toMatch(/SUCCESS: prometheus.yml is valid/);
    const rules = await promtool(['check', 'rules', ...RULE_FILES]);
    expect(rules.match(/SUCCESS/g)).toHaveLength(RULE_FILES.length);
  });

  it('promtool unit tests fire every alert on its problem and on nothing healthy', async () => {
    expect(await promtool(['test', 'rules', 'tests/alerts.test.yml'])).toMatch(/SUCCESS/);
    const tests = parse(readFileSync(join(PROMETHEUS_DIR, 'tests/alerts.test.yml'), 'utf8')) as {
      tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[];
    };
    const cases = tests.tests.flatMap((t) => t.alert_rule_test ?? []);
    const alerts = ruleDefinitions().flatMap((r) => (r.alert ? [r.alert] : []));
    expect(alerts.length).toBeGreaterThanOrEqual(12);
    for (const alert of alerts) {
      expect(
        cases.some((c) => c.alertname === alert && c.exp_alerts.length > 0),
        `${alert} fires in a test`,
      ).toBe(true);
    }
    // Every test names the healthy node's series and expects only the sick one: silence is checked
    // by the exact alert lists; a case with no alert at all checks silence before the problem.
    expect(cases.filter((c) => c.exp_alerts.length === 0).length).toBeGreaterThanOrEqual(8);
  });

  it('gives every alert a runbook section in docs/operations.md', () => {
    const doc = readFileSync(join(ROOT, 'docs/operations.md'), 'utf8');
    const headings = anchors(doc);
    for (const file of RULE_FILES) {
      const groups = (
        parse(readFileSync(join(PROMETHEUS_DIR, file), 'utf8')) as {
          groups: { rules: { alert?: string; annotations?: Record<string, string> }[] }[];
        }
      ).groups;
      for (const rule of groups.flatMap((g) => g.rules).filter((r) => r.alert)) {
        const runbook = rule.annotations?.runbook ?? '';
        expect(runbook, rule.alert).toBe(`docs/operations.md#${(rule.alert as string).toLowerCase()}`);
        expect(headings.has((rule.alert as string).toLowerCase()), `a "${rule.alert}" heading`).toBe(true);
      }
    }
  });

  it('keeps labels bounded: no rule or panel groups by or matches a room, user or participant', () => {
    const expressions = [...ruleDefinitions().map((r) => r.expr), ...dashboardQueries().map((q) => q.expr)];
    for (const expr of expressions) expect(expr).not.toMatch(/room_?id|user|participant_?id|producer_?id/i);
  });

  it('the Kubernetes example relabels the Deployment’s pods to their port and path', async () => {
    const example = parse(readFileSync(join(PROMETHEUS_DIR, 'kubernetes-sd.yml'), 'utf8')) as {
      scrape_configs: { job_name: string; relabel_configs: RelabelRule[]; [key: string]: unknown }[];
    };
    const job = example.scrape_configs.find((j) => j.job_name === 'trading-room');
    if (!job) throw new Error('no trading-room job');
    const deployment = parse(readFileSync(join(ROOT, 'infrastructure/k8s/base/deployment.yaml'), 'utf8')) as {
      spec: { template: { metadata: { labels: Record<string, string>; annotations: Record<string, string> } } };
    };
    const { labels, annotations } = deployment.spec.template.metadata;
    const meta = (key: string): string => key.replace(/[^a-zA-Z0-9_]/g, '_');
    const pod: Record<string, string> = { __address__: '10.1.2.3:9999', __metrics_path__: '/metrics' };
    for (const [k, v] of Object.entries(labels)) pod[`__meta_kubernetes_pod_label_${meta(k)}`] = v;
    for (const [k, v] of Object.entries(annotations)) pod[`__meta_kubernetes_pod_annotation_${meta(k)}`] = v;
    pod.__meta_kubernetes_namespace = 'trading-room';
    pod.__meta_kubernetes_pod_name = 'trading-room-abc';
    expect(relabel(pod, job.relabel_configs)).toMatchObject({
      __address__: `10.1.2.3:${annotations['prometheus.io/port']}`,
      __metrics_path__: annotations['prometheus.io/path'],
      namespace: 'trading-room',
      pod: 'trading-room-abc',
    });
    const other = { ...pod, __meta_kubernetes_pod_label_app_kubernetes_io_name: 'redis' };
    expect(relabel(other, job.relabel_configs)).toBeUndefined();

    // The rest of the job is valid configuration (this promtool is built without Kubernetes
    // discovery, so the discovery block stands in as a static one).
    const dir = mkdtempSync(join(tmpdir(), 'trading-room-k8s-sd-'));
    try {
      const { kubernetes_sd_configs: _sd, ...rest } = job;
      const config = { ...example, rule_files: [], scrape_configs: [{ ...rest, static_configs: [{ targets: [] }] }] };
      writeFileSync(join(dir, 'prometheus.yml'), stringify(config));
      expect(await promtool(['check', 'config', 'prometheus.yml'], dir)).toMatch(/SUCCESS/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Grafana files', () => {
  const compose = parse(readFileSync(join(ROOT, 'infrastructure/compose.yaml'), 'utf8')) as {
    services: Record<string, { volumes?: string[] }>;
  };

  it('provisions the Prometheus datasource the dashboard names and the dashboards folder compose mounts', () => {
    const datasources = parse(readFileSync(join(GRAFANA_DIR, 'provisioning/datasources/prometheus.yml'), 'utf8')) as {
      datasources: { uid: string; type: string; url: string }[];
    };
    const source = datasources.datasources[0];
    expect(source).toMatchObject({ type: 'prometheus', url: 'http://prometheus:9090' });
    expect(Object.keys(compose.services)).toContain('prometheus');
    const providers = parse(readFileSync(join(GRAFANA_DIR, 'provisioning/dashboards/trading-room.yml'), 'utf8')) as {
      providers: { options: { path: string } }[];
    };
    const mounts = compose.services.grafana?.volumes ?? [];
    expect(mounts).toContain(`./grafana/dashboards:${providers.providers[0]?.options.path}:ro`);
    expect(mounts.some((m) => m.startsWith('./grafana/provisioning:'))).toBe(true);
    expect(compose.services.prometheus?.volumes).toContain('./prometheus:/etc/prometheus:ro');

    const board = dashboard();
    const ids = new Set<number>();
    for (const panel of board.panels as unknown as {
      id: number;
      type: string;
      datasource?: { uid: string };
      gridPos: { x: number; w: number };
    }[]) {
      expect(ids.has(panel.id), `panel id ${panel.id} once`).toBe(false);
      ids.add(panel.id);
      expect(panel.gridPos.x + panel.gridPos.w).toBeLessThanOrEqual(24);
      if (panel.type !== 'row') expect(panel.datasource?.uid).toBe(source?.uid);
    }
  });

  it('covers every area an operator looks at', () => {
    const titles = (dashboard().panels as unknown as { type: string; title: string }[])
      .filter((p) => p.type === 'row')
      .map((p) => p.title);
    expect(titles).toEqual([
      'Cluster overview',
      'Rooms and participants',
      'Join latency',
      'Messages and fan-out',
      'Rate limits and slow consumers',
      'Drains',
      'Media bitrate and loss',
      'Workers and process',
      'Redis and backend',
    ]);
    expect(dashboardQueries().length).toBeGreaterThanOrEqual(40);
  });
});
