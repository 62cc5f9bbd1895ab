/**
 * A real Prometheus (Debian's) scrapes two live nodes on a real Redis, with the committed
 * configuration and rules at one-second intervals, while clients join on both nodes, chat, send
 * alerts, ask for history, hit a rate limit, get refused and leave, get closed out by an operator, and a presenter publishes opus
 * over plain RTP to a moderator's tap; the nodes' backend (the reference receiver) answers access
 * checks and webhooks. Then every expression of the recording rules, the alert rules and the
 * dashboard's panels evaluates through Prometheus's HTTP API without error and returns data
 * (an alert's condition is checked on its signal, the expression before its threshold: a healthy
 * cluster fires nothing); every rule group evaluates without error; and no scraped series carries
 * a room, user or participant id. Last, a media worker killed on one node fires the worker
 * restart alert in Prometheus for that node only.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../../test-support/async.js';
import { TestBackend } from '../../test-support/backend.js';
import { TestCluster } from '../../test-support/cluster.js';
import { UpgradeRefused } from '../../test-support/harness.js';
import { consumeToSink, MEDIA_ENV, publishOpus } from '../../test-support/media-flow.js';
import { dashboardQueries, ruleDefinitions, TestPrometheus } from '../../test-support/prometheus.js';
import { RtpSender, flowsTo, type RtpSink } from '../../test-support/rtp.js';
import type { NodeDetail } from '../../signaling/src/http/admin-rpc.js';
import { webhookEnv, webhookSecret } from '../../test-support/webhooks.js';

const ROOM = 'prom-room';

/**
 * Expressions that have data only while something is wrong or under way: a drain's deadline
 * counts only while a node drains.
 */
const ONLY_WHILE_DRAINING = /trading_room_drain_deadline_timestamp_seconds/;

/** An alert's signal: its expression without the final threshold (`X > 0.5` → `X`). */
function signalOf(expr: string): string | undefined {
  return /^([\s\S]*?)\s*(?:>|==|<)\s*[\d.]+\s*$/.exec(expr.trim())?.[1];
}

describe('a real Prometheus scraping two nodes', { timeout: 180_000 }, () => {
  let cluster: TestCluster;
  let backend: TestBackend;
  let prometheus: TestPrometheus;
  let sender: RtpSender;
  const sinks: RtpSink[] = [];

  beforeAll(async () => {
    const secret = webhookSecret();
    backend = await TestBackend.start({ webhookSecret: secret });
    cluster = await TestCluster.start({
      nodes: 2,
      nodeTtlMs: 1500,
      env: {
        ...MEDIA_ENV,
        MEDIASOUP_NUM_WORKERS: '1',
        RATE_LIMIT_CHAT_MESSAGES: '3',
        ...webhookEnv(backend.url, secret),
      },
    });
    prometheus = await TestPrometheus.start(cluster.nodes.map((n) => `127.0.0.1:${n.port}`));

    // Traffic on both nodes: joins, chat (past the chat limit), an alert, history, a refused
    // upgrade, a leave; media on node 1.
    const presenter = await cluster.joined('prom-presenter', { node: 0, roomId: ROOM, role: 'presenter' });
    const moderator = await cluster.joined('prom-moderator', { node: 0, roomId: ROOM, role: 'moderator' });
    const trader = await cluster.joined('prom-trader', { node: 1, roomId: ROOM });
    const leaver = await cluster.joined('prom-leaver', { node: 1, roomId: ROOM });
    const chats = await Promise.allSettled(
      Array.from({ length: 6 }, (_, i) => trader.client.request('chat.send', { text: `hello ${i}` })),
    );
    expect(chats.filter((c) => c.status === 'rejected').length, 'chat past its limit').toBeGreaterThan(0);
    await presenter.client.request('alert.publish', { symbol: 'ACME', action: 'buy', note: 'watch the open' });
    await trader.client.request('room.history', {});
    await expect(cluster.raw(1, 'not-a-token')).rejects.toBeInstanceOf(UpgradeRefused);
    leaver.client.close();
    // An operator closes another room: its member's socket is closed with 4003.
    await cluster.joined('prom-closed-member', { node: 1, roomId: 'prom-closed' });
    expect((await cluster.node(0).http('/admin/rooms/prom-closed/close', { method: 'POST', admin: true })).status).toBe(
      200,
    );
    sender = new RtpSender(0x9e0);
    const { producerId } = await publishOpus(presenter, sender);
    const { sink } = await consumeToSink(moderator, producerId, sinks);
    await flowsTo([sink], 20, 'RTP at the tap', 15_000);
  }, 120_000);

  afterAll(async () => {
    sender?.close();
    for (const sink of sinks) sink.close();
    await prometheus?.close();
    await cluster?.close();
    await backend?.goAway();
  });

  /** Waits until `expr` returns data; fails with the expressions still empty. */
  async function expectData(exprs: readonly { what: string; expr: string }[]): Promise<void> {
    let empty: string[] = [];
    try {
      await eventually(
        async () => {
          const results = await Promise.all(exprs.map(async (e) => ({ e, samples: await prometheus.query(e.expr) })));
          empty = results.filter((r) => r.samples.length === 0).map((r) => `${r.e.what}: ${r.e.expr}`);
          return empty.length === 0;
        },
        60_000,
        'data for every expression',
      );
    } catch (error) {
      throw new Error(`no data for:\n${empty.join('\n')}`, { cause: error });
    }
  }

  it('scrapes both nodes', async () => {
    await eventually(async () => (await prometheus.query('up{job="trading-room"} == 1')).length === 2, 30_000);
    const nodes = (await prometheus.query('trading_room_connections')).map((s) => s.metric.node).sort();
    expect(nodes).toEqual(['node-1', 'node-2']);
  });

  it('evaluates every recording rule with data', async () => {
    const rules = ruleDefinitions().filter((r) => r.record);
    expect(rules.length).toBeGreaterThanOrEqual(15);
    for (const rule of rules) await prometheus.query(rule.expr); // rejects on a PromQL error
    await expectData(rules.map((r) => ({ what: r.record as string, expr: r.record as string })));
    await expectData(rules.map((r) => ({ what: `${r.record} (expression)`, expr: r.expr })));
  });

  it('evaluates every alert expression, and its signal has data', async () => {
    const alerts = ruleDefinitions().filter((r) => r.alert);
    for (const rule of alerts) await prometheus.query(rule.expr);
    const signals = alerts.flatMap((r) => {
      const signal = signalOf(r.expr);
      return signal && !ONLY_WHILE_DRAINING.test(signal) ? [{ what: r.alert as string, expr: signal }] : [];
    });
    expect(signals.length).toBe(alerts.length - 1); // all but the drain deadline's
    await expectData(signals);
    // A healthy cluster fires nothing (beyond what a test setup may cause: none expected here).
    const firing = await prometheus.query('ALERTS{alertstate="firing"}');
    expect(firing.map((s) => s.metric.alertname)).toEqual([]);
  });

  it('evaluates every dashboard query with data', async () => {
    const queries = dashboardQueries();
    for (const q of queries) await prometheus.query(q.expr);
    await expectData(
      queries.filter((q) => !ONLY_WHILE_DRAINING.test(q.expr)).map((q) => ({ what: q.panel, expr: q.expr })),
    );
  });

  it('evaluates every rule group without error', async () => {
    const { groups } = await prometheus.api<{
      groups: { name: string; rules: { name: string; health: string; lastError?: string }[] }[];
    }>('/api/v1/rules');
    const rules = groups.flatMap((g) => g.rules);
    expect(rules.length).toBe(ruleDefinitions().length);
    expect(rules.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.health} ${r.lastError ?? ''}`)).toEqual(
      [],
    );
  });

  it('fires TradingRoomMediaWorkerRestarts when a media worker of a node dies', async () => {
    const node = (await cluster.adminNodes(0)).find((n) => n.nodeId === 'node-2');
    const worker = (node?.detail as NodeDetail | undefined)?.media.workers[0];
    if (!worker) throw new Error('node-2 reports no media worker');
    process.kill(worker.pid, 'SIGKILL');
    let firing: string[] = [];
    await eventually(
      async () => {
        const alerts = await prometheus.query(
          'ALERTS{alertname="TradingRoomMediaWorkerRestarts", alertstate="firing"}',
        );
        firing = alerts.map((a) => a.metric.node ?? '');
        return firing.length > 0;
      },
      60_000,
      'the worker restart alert',
    );
    expect(firing).toEqual(['node-2']);
  });

  it('scrapes no series labelled with a room, user or participant id', async () => {
    const series = await prometheus.api<Record<string, string>[]>(
      `/api/v1/series?${new URLSearchParams({ 'match[]': '{job="trading-room"}' })}`,
    );
    expect(series.length).toBeGreaterThan(100);
    const values = series.flatMap((s) => Object.entries(s).filter(([name]) => name !== '__name__'));
    const leaking = values.filter(([, value]) => /prom-(room|presenter|moderator|trader|leaver|closed)/.test(value));
    expect(leaking).toEqual([]);
    const labelNames = new Set(values.map(([name]) => name));
    for (const name of labelNames) expect(name).not.toMatch(/room|user|participant|producer|consumer/i);
  });
});
