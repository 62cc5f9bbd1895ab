/**
 * The media metrics as scraped from `/metrics` of a node with media: the counts follow the
 * clients' transports, producers and consumers at every scrape; the workers' usage and the
 * transports' traffic are collected once per {@link MEDIA_FIGURES_MAX_AGE_MS}; a SIGKILLed worker
 * shows up as a restart; per worker CPU and memory carry only the worker index as a label.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { MEDIA_FIGURES_MAX_AGE_MS } from '../../sfu/src/media-metrics.js';
import { RtpSender, type RtpSink } from '../../test-support/rtp.js';
import { eventually, type TestNode } from '../../test-support/harness.js';
import { consumeToSink, publishOpus, startMediaNode } from '../../test-support/media-flow.js';
import { http, joinRecording, parsePrometheus, sampleValue, type Sample } from '../../test-support/room-helpers.js';

const ROOM = 'media-metrics-room-k4v';
const SSRC = 41414141;
/** Moderators' plain RTP taps consuming the presenter's producer. */
const TAPS = 2;
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

/** Stops `Date` (timers stay real), so that the media figures' cache ages only when {@link stepPastCacheAge} says. */
function stopClock(): void {
  vi.useFakeTimers({ toFake: ['Date'], now: Date.now() });
}

/** Moves the stopped clock past the cache age: the next scrape collects the media figures anew. */
function stepPastCacheAge(): void {
  vi.setSystemTime(Date.now() + MEDIA_FIGURES_MAX_AGE_MS);
}

describe('media metrics in /metrics', () => {
  let t: TestNode;
  let sender: RtpSender;
  const sinks: RtpSink[] = [];

  beforeAll(async () => {
    t = await startMediaNode();
    sender = new RtpSender(SSRC);
  });

  afterEach(() => {
    vi.useRealTimers();
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
    for (let i = 0; i < TAPS; i++) {
      const tap = await joinRecording(t, `metrics-tap-${i}`, { roomId: ROOM, role: 'moderator' });
      await consumeToSink(tap, producerId, sinks);
    }
    await eventually(() => sinks.every((s) => s.received >= 10), 5000, 'RTP at the sinks');
    const expected = {
      workers_alive: 2,
      rooms: 1,
      routers: 1,
      transports: 1 + TAPS,
      producers: 1,
      consumers: TAPS,
    };
    const bytes = (samples: Sample[], direction: 'in' | 'out'): number =>
      sampleValue(samples, media('transport_bytes'), { direction }) ?? Number.NaN;

    // A collection after the empty node's one has aged: the traffic so far.
    stopClock();
    stepPastCacheAge();
    const first = await scrape(t);
    for (const name of NAMES) expect(sampleValue(first.samples, media(name)), name).toBe(expected[name]);
    expect(bytes(first.samples, 'in')).toBeGreaterThan(0);
    expect(bytes(first.samples, 'out')).toBeGreaterThan(0);

    // More RTP flows, but within the cache age a scrape serves that collection again.
    const receivedThen = sinks.map((s) => s.received);
    await eventually(() => sinks.every((s, i) => s.received >= (receivedThen[i] ?? 0) + 10), 5000, 'more RTP');
    const cached = await scrape(t);
    for (const name of NAMES) expect(sampleValue(cached.samples, media(name)), name).toBe(expected[name]);
    expect(bytes(cached.samples, 'in')).toBe(bytes(first.samples, 'in'));
    expect(bytes(cached.samples, 'out')).toBe(bytes(first.samples, 'out'));

    // Past the cache age: a new collection, with the traffic that flowed meanwhile.
    stepPastCacheAge();
    const live = await scrape(t);
    for (const name of NAMES) expect(sampleValue(live.samples, media(name)), name).toBe(expected[name]);
    const stats = service.stats();
    expect(stats).toMatchObject({ rooms: 1, routers: 1, transports: 1 + TAPS, producers: 1, consumers: TAPS });
    expect(bytes(live.samples, 'in')).toBeGreaterThan(bytes(first.samples, 'in'));
    expect(bytes(live.samples, 'out')).toBeGreaterThan(bytes(first.samples, 'out'));

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

    // Kill the room's worker: restarts go to 1, the room's objects drop out of the counts (which
    // are live: the clock stays stopped, the usage figures stay those of `live`).
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
    const restarted = service.workers().find((w) => w.workerIndex === index);
    expect(restarted?.pid).not.toBe(victim.pid);

    // A new collection sees the new worker at the same index: its CPU adds to the old worker's.
    stepPastCacheAge();
    const usageOf = async (): Promise<number> =>
      (await service.workerUsage()).find((u) => u.pid === restarted?.pid)?.cpuTimeMs ?? Number.NaN;
    const cpuFrom = await usageOf();
    const after = await scrape(t);
    const cpuTo = await usageOf();
    expect(sampleValue(after.samples, media('worker_restarts_total'))).toBe(1);
    expect(sampleValue(after.samples, media('workers_alive'))).toBe(2);
    expect(sampleValue(after.samples, media('rooms'))).toBe(1);
    for (const name of ['routers', 'transports', 'producers', 'consumers']) {
      expect(sampleValue(after.samples, media(name)), name).toBe(0);
    }
    // The counter never goes back at a restart: it carries the old worker's CPU and adds the new
    // one's (read just before and just after the scrape), and keeps one sample per index.
    const cpuAfter = sampleValue(after.samples, media('worker_cpu_seconds_total'), { worker: String(index) }) ?? 0;
    expect(cpuAfter).toBeGreaterThanOrEqual(cpuBefore + cpuFrom / 1000 - 1e-9);
    expect(cpuAfter).toBeLessThanOrEqual(cpuBefore + cpuTo / 1000 + 1e-9);
    expect(after.samples.filter((s) => s.name === media('worker_cpu_seconds_total'))).toHaveLength(2);
  });
});
