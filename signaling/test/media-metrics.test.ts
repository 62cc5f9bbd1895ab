/**
 * The media metrics as scraped from `/metrics` of a node with media: the counts follow the
 * clients' transports, producers and consumers; a SIGKILLed worker shows up as a restart; per
 * worker CPU and memory carry only the worker index as a label.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RtpSender, type RtpSink } from '../../test-support/rtp.js';
import { eventually, type TestNode } from '../../test-support/harness.js';
import { consumeToSink, publishOpus, startMediaNode } from '../../test-support/media-flow.js';
import { http, joinRecording, parsePrometheus, sampleValue, type Sample } from '../../test-support/room-helpers.js';

const ROOM = 'media-metrics-room-k4v';
const SSRC = 41414141;
const TRADERS = 2;
const NAMES = ['workers_alive', 'rooms', 'routers', 'transports', 'producers', 'consumers'] as const;

/**
 * The media part of `/metrics`. Other families are left out: prom-client's default event-loop
 * gauges can read `Nan` (its spelling of NaN), which the shared parser rejects.
 */
async function scrape(t: TestNode): Promise<{ samples: Sample[]; types: Map<string, string>; text: string }> {
  const response = await http(t, '/metrics');
  expect(response.status).toBe(200);
  const text = response.text
    .split('\n')
    .filter((line) => line.includes('trading_room_media_'))
    .join('\n');
  return { ...parsePrometheus(text), text: response.text };
}

const media = (name: string) => `trading_room_media_${name}`;

describe('media metrics in /metrics', () => {
  let t: TestNode;
  let sender: RtpSender;
  const sinks: RtpSink[] = [];

  beforeAll(async () => {
    t = await startMediaNode();
    sender = new RtpSender(SSRC);
  });

  afterAll(async () => {
    sender?.close();
    for (const sink of sinks) sink.close();
    await t?.close();
  });

  it('starts at zero clients’ objects with every worker alive', async () => {
    const { samples, types } = await scrape(t);
    expect(sampleValue(samples, media('workers_alive'))).toBe(2);
    for (const name of ['rooms', 'routers', 'transports', 'producers', 'consumers']) {
      expect(sampleValue(samples, media(name)), name).toBe(0);
      expect(types.get(media(name))).toBe('gauge');
    }
    expect(sampleValue(samples, media('worker_restarts_total'))).toBe(0);
    expect(types.get(media('worker_restarts_total'))).toBe('counter');
    expect(types.get(media('worker_cpu_seconds_total'))).toBe('counter');
    expect(types.get(media('worker_max_rss_bytes'))).toBe('gauge');
  });

  it('counts a live room and its traffic; a killed worker is a restart, its CPU carried over', async () => {
    const service = t.node.media?.service;
    if (!service) throw new Error('no media');
    const presenter = await joinRecording(t, 'metrics-presenter', { roomId: ROOM, role: 'presenter' });
    const { producerId } = await publishOpus(presenter, sender);
    for (let i = 0; i < TRADERS; i++) {
      const trader = await joinRecording(t, `metrics-trader-${i}`, { roomId: ROOM });
      await consumeToSink(trader, producerId, sinks);
    }
    await eventually(() => sinks.every((s) => s.received >= 10), 5000, 'RTP at the sinks');

    const live = await scrape(t);
    const expected = {
      workers_alive: 2,
      rooms: 1,
      routers: 1,
      transports: 1 + TRADERS,
      producers: 1,
      consumers: TRADERS,
    };
    for (const name of NAMES) expect(sampleValue(live.samples, media(name)), name).toBe(expected[name]);
    const stats = service.stats();
    expect(stats).toMatchObject({ rooms: 1, routers: 1, transports: 1 + TRADERS, producers: 1, consumers: TRADERS });
    expect(sampleValue(live.samples, media('transport_bytes'), { direction: 'in' })).toBeGreaterThan(0);
    expect(sampleValue(live.samples, media('transport_bytes'), { direction: 'out' })).toBeGreaterThan(0);

    // Per-worker samples: one per worker index, nothing else in the labels but the registry's
    // default `node` label.
    const node = t.node.config.nodeId;
    for (const name of ['worker_cpu_seconds_total', 'worker_max_rss_bytes']) {
      const perWorker = live.samples.filter((s) => s.name === media(name));
      expect(perWorker.map((s) => s.labels).sort((a, b) => Number(a.worker) - Number(b.worker))).toEqual([
        { node, worker: '0' },
        { node, worker: '1' },
      ]);
      for (const s of perWorker) expect(s.value, name).toBeGreaterThan(0);
    }
    // No media sample carries an id, a pid or anything but bounded labels.
    const pids = service.workers().map((w) => String(w.pid));
    for (const s of live.samples.filter((x) => x.name.startsWith('trading_room_media_'))) {
      const { node: nodeLabel, ...labels } = s.labels;
      expect(nodeLabel).toBe(node);
      expect(
        Object.keys(labels).every((k) => k === 'worker' || k === 'direction'),
        `${s.name} labels`,
      ).toBe(true);
      for (const value of Object.values(labels)) {
        expect(['0', '1', 'in', 'out']).toContain(value);
        expect(pids).not.toContain(value);
      }
    }
    expect(live.text).not.toContain(ROOM);
    expect(live.text).not.toContain(producerId);

    // Kill the room's worker: restarts go to 1, the room's objects drop out of the counts.
    const [index] = service.roomInfo(ROOM)?.routerWorkers ?? [];
    const victim = service.workers().find((w) => w.workerIndex === index);
    if (!victim) throw new Error('no worker');
    const cpuBefore = sampleValue(live.samples, media('worker_cpu_seconds_total'), { worker: String(index) }) ?? 0;
    process.kill(victim.pid, 'SIGKILL');
    await eventually(
      async () => {
        const { samples } = await scrape(t);
        return (
          sampleValue(samples, media('worker_restarts_total')) === 1 &&
          sampleValue(samples, media('workers_alive')) === 2
        );
      },
      10_000,
      'a restart in /metrics',
    );
    expect(service.workers().find((w) => w.workerIndex === index)?.pid).not.toBe(victim.pid);

    const after = await scrape(t);
    expect(sampleValue(after.samples, media('worker_restarts_total'))).toBe(1);
    expect(sampleValue(after.samples, media('workers_alive'))).toBe(2);
    expect(sampleValue(after.samples, media('rooms'))).toBe(1);
    for (const name of ['routers', 'transports', 'producers', 'consumers']) {
      expect(sampleValue(after.samples, media(name)), name).toBe(0);
    }
    // The counter never goes back at a restart, and keeps one sample per index.
    const cpuAfter = sampleValue(after.samples, media('worker_cpu_seconds_total'), { worker: String(index) });
    expect(cpuAfter).toBeGreaterThanOrEqual(cpuBefore);
    expect(after.samples.filter((s) => s.name === media('worker_cpu_seconds_total'))).toHaveLength(2);
  });
});
