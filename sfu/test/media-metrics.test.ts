import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';

import { MEDIA_FIGURES_MAX_AGE_MS, registerMediaMetrics } from '../src/media-metrics.js';
import { useMediaService } from '../../test-support/media-fixture.js';
import { waitFor, type RtpSink } from '../../test-support/rtp.js';

/** `getStats` calls per transport id, counted on every transport of the workers started from now on. */
function countGetStats(): { calls: Map<string, number>; stop(): void } {
  const calls = new Map<string, number>();
  const onTransport = (transport: types.Transport): void => {
    const getStats = transport.getStats.bind(transport);
    Object.defineProperty(transport, 'getStats', {
      value: () => {
        calls.set(transport.id, (calls.get(transport.id) ?? 0) + 1);
        return getStats();
      },
    });
  };
  const onRouter = (router: types.Router): void => void router.observer.on('newtransport', onTransport);
  const onWorker = (worker: types.Worker): void => void worker.observer.on('newrouter', onRouter);
  mediasoup.observer.on('newworker', onWorker);
  return { calls, stop: () => void mediasoup.observer.off('newworker', onWorker) };
}

/** Value of one sample of the registry's text output, e.g. `sample(text, 'x{worker="0"}')`. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('registerMediaMetrics', () => {
  const sfu = useMediaService();
  let registry: Registry;
  let sink: RtpSink;

  beforeAll(async () => {
    registry = new Registry();
    registerMediaMetrics(registry, sfu.media);
    const publisher = await sfu.publisher('metrics-room', 'presenter', 0xc1);
    sink = (await sfu.viewer('metrics-room', 'viewer', publisher.producerId)).sink;
    await waitFor(() => sink.received >= 20, 'RTP at the sink');
  });

  it('exposes counts, worker usage and traffic at scrape time', async () => {
    const text = await registry.metrics();
    expect(sample(text, 'trading_room_media_workers_alive')).toBe(2);
    expect(sample(text, 'trading_room_media_rooms')).toBe(1);
    expect(sample(text, 'trading_room_media_routers')).toBe(1);
    expect(sample(text, 'trading_room_media_transports')).toBe(2);
    expect(sample(text, 'trading_room_media_producers')).toBe(1);
    expect(sample(text, 'trading_room_media_consumers')).toBe(1);
    expect(sample(text, 'trading_room_media_worker_restarts_total')).toBe(0);
    for (const worker of ['0', '1']) {
      expect(sample(text, `trading_room_media_worker_cpu_seconds_total{worker="${worker}"}`)).toBeGreaterThan(0);
      expect(sample(text, `trading_room_media_worker_max_rss_bytes{worker="${worker}"}`)).toBeGreaterThan(1_000_000);
    }
    expect(sample(text, 'trading_room_media_transport_bytes{direction="in"}')).toBeGreaterThanOrEqual(20 * 60);
    expect(sample(text, 'trading_room_media_transport_bytes{direction="out"}')).toBeGreaterThanOrEqual(20 * 60);
    expect(text).not.toMatch(/metrics-room|presenter|viewer/);
  });
});

describe('registerMediaMetrics under many scrapes', () => {
  const VIEWERS = 5;
  let getStats: ReturnType<typeof countGetStats>;
  beforeAll(() => {
    getStats = countGetStats(); // before the service starts its workers
  });
  const sfu = useMediaService();
  let clientTransports: string[];
  let sinks: RtpSink[];

  beforeAll(async () => {
    const publisher = await sfu.publisher('scraped-room', 'presenter', 0xc2);
    const viewers = await Promise.all(
      Array.from({ length: VIEWERS }, (_, i) => sfu.viewer('scraped-room', `viewer-${i}`, publisher.producerId)),
    );
    clientTransports = [publisher.transportId, ...viewers.map((v) => v.transportId)];
    sinks = viewers.map((v) => v.sink);
    await waitFor(() => sinks.every((sink) => sink.received >= 5), 'RTP at every sink');
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  afterAll(() => {
    getStats.stop();
  });

  /** `getStats` calls of the clients' transports so far, in `clientTransports` order. */
  const statsCalls = (): number[] => clientTransports.map((id) => getStats.calls.get(id) ?? 0);

  it('collects once for parallel scrapes, serves the next ones from it, and collects anew when it aged', async () => {
    const registry = new Registry();
    registerMediaMetrics(registry, sfu.media);
    expect(statsCalls()).toEqual(clientTransports.map(() => 0));

    const texts = await Promise.all(Array.from({ length: 20 }, () => registry.metrics()));
    const receivedThen = sinks[0]!.received;
    expect(statsCalls()).toEqual(clientTransports.map(() => 1));
    const bytesIn = sample(texts[0]!, 'trading_room_media_transport_bytes{direction="in"}')!;
    expect(bytesIn).toBeGreaterThan(0);
    for (const text of texts) {
      expect(sample(text, 'trading_room_media_transport_bytes{direction="in"}')).toBe(bytesIn);
      expect(sample(text, 'trading_room_media_transports')).toBe(1 + VIEWERS);
    }

    // A scrape right after: the same figures, no new IPC.
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + MEDIA_FIGURES_MAX_AGE_MS - 100);
    const cached = await registry.metrics();
    expect(statsCalls()).toEqual(clientTransports.map(() => 1));
    expect(sample(cached, 'trading_room_media_transport_bytes{direction="in"}')).toBe(bytesIn);
    const cpu = sample(cached, 'trading_room_media_worker_cpu_seconds_total{worker="0"}')!;

    // Past the age: one new collection, shared again, with the traffic that flowed meanwhile.
    await waitFor(() => sinks[0]!.received >= receivedThen + 5, 'more RTP');
    vi.setSystemTime(Date.now() + 200);
    const fresh = await Promise.all(Array.from({ length: 5 }, () => registry.metrics()));
    expect(statsCalls()).toEqual(clientTransports.map(() => 2));
    expect(sample(fresh[0]!, 'trading_room_media_transport_bytes{direction="in"}')).toBeGreaterThan(bytesIn);
    expect(sample(fresh[0]!, 'trading_room_media_worker_cpu_seconds_total{worker="0"}')).toBeGreaterThanOrEqual(cpu);
  });
});
