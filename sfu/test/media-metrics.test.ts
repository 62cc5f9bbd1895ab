import { Registry } from 'prom-client';
import { beforeAll, describe, expect, it } from 'vitest';

import { registerMediaMetrics } from '../src/media-metrics.js';
import { useMediaService } from '../../test-support/media-fixture.js';
import { waitFor, type RtpSink } from '../../test-support/rtp.js';

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

  it('keeps the CPU counter monotonic between scrapes', async () => {
    const first = sample(await registry.metrics(), 'trading_room_media_worker_cpu_seconds_total{worker="0"}')!;
    await new Promise((resolve) => setTimeout(resolve, 200));
    const second = sample(await registry.metrics(), 'trading_room_media_worker_cpu_seconds_total{worker="0"}')!;
    expect(second).toBeGreaterThanOrEqual(first);
  });
});
