import { Counter, Gauge, type Registry } from 'prom-client';

import type { MediaService } from './media-service.js';
import type { WorkerUsage } from './media-types.js';

/**
 * How long one collection of the workers' usage and the transports' traffic serves further
 * scrapes, in ms. Those figures cost one IPC per worker and one `getStats` per transport; the
 * counts stay live (they cost nothing).
 */
export const MEDIA_FIGURES_MAX_AGE_MS = 2000;

/** Options of {@link registerMediaMetrics}. */
export type MediaMetricsOptions = {
  /** Longest a scrape waits for the workers' usage and the transports' stats, in ms. Default 500. */
  timeoutMs?: number;
};

/**
 * Registers the media metrics on `registry`, all collected at scrape time from `media`:
 *
 * - `trading_room_media_workers_alive`, `…_rooms`, `…_routers`, `…_transports`, `…_producers`,
 *   `…_consumers` (gauges; clients' objects, pipes not counted);
 * - `trading_room_media_worker_restarts_total` (counter);
 * - `trading_room_media_worker_cpu_seconds_total{worker}` (counter: user + system CPU of the
 *   worker at that index, carried over across restarts) and
 *   `trading_room_media_worker_max_rss_bytes{worker}` (gauge);
 * - `trading_room_media_transport_bytes{direction="in"|"out"}` (gauge: summed over the clients'
 *   transports open now, so it drops when transports close).
 *
 * Labels stay bounded: `worker` is the worker index; no room or user ids.
 *
 * The usage and traffic figures are collected once for concurrent scrapes, and that collection
 * serves every scrape for {@link MEDIA_FIGURES_MAX_AGE_MS} after it ends: a scrape costs at most
 * one round of IPC however often `/metrics` is hit.
 */
export function registerMediaMetrics(registry: Registry, media: MediaService, options: MediaMetricsOptions = {}): void {
  const timeoutMs = options.timeoutMs ?? 500;
  const registers = [registry];

  const countGauge = (name: string, help: string, read: () => number): void => {
    new Gauge({
      name: `trading_room_media_${name}`,
      help,
      registers,
      collect() {
        this.set(read());
      },
    });
  };
  countGauge('workers_alive', 'mediasoup worker processes running', () => media.stats().workersAlive);
  countGauge('rooms', 'Rooms with media on this node', () => media.stats().rooms);
  countGauge('routers', 'mediasoup routers of the rooms', () => media.stats().routers);
  countGauge('transports', 'Transports of the clients (WebRTC and plain)', () => media.stats().transports);
  countGauge('producers', 'Producers of the clients', () => media.stats().producers);
  countGauge('consumers', 'Consumers of the clients (pipe consumers not counted)', () => media.stats().consumers);

  let restartsSeen = 0;
  new Counter({
    name: 'trading_room_media_worker_restarts_total',
    help: 'Restarts of dead mediasoup workers',
    registers,
    collect() {
      const restarts = media.stats().workerRestarts;
      if (restarts > restartsSeen) this.inc(restarts - restartsSeen);
      restartsSeen = restarts;
    },
  });

  // The CPU counter and the RSS gauge share one usage collection.
  const workerUsage = recentOrNew(() => withTimeout(media.workerUsage(), timeoutMs, [] as WorkerUsage[]));
  const transportTraffic = recentOrNew(() => media.transportTraffic(timeoutMs));
  const cpuSeen = new Map<number, { pid: number; cpuTimeMs: number }>();
  new Counter({
    name: 'trading_room_media_worker_cpu_seconds_total',
    help: 'CPU time (user + system) of the mediasoup worker at this index, across restarts',
    labelNames: ['worker'] as const,
    registers,
    async collect() {
      for (const usage of await workerUsage()) {
        const seen = cpuSeen.get(usage.workerIndex);
        const deltaMs = seen && seen.pid === usage.pid ? usage.cpuTimeMs - seen.cpuTimeMs : usage.cpuTimeMs;
        if (deltaMs > 0) this.inc({ worker: usage.workerIndex }, deltaMs / 1000);
        cpuSeen.set(usage.workerIndex, { pid: usage.pid, cpuTimeMs: usage.cpuTimeMs });
      }
    },
  });
  new Gauge({
    name: 'trading_room_media_worker_max_rss_bytes',
    help: 'Peak resident memory of the mediasoup worker at this index',
    labelNames: ['worker'] as const,
    registers,
    async collect() {
      const usages = await workerUsage();
      this.reset();
      for (const usage of usages) this.set({ worker: usage.workerIndex }, usage.maxRssKb * 1024);
    },
  });

  new Gauge({
    name: 'trading_room_media_transport_bytes',
    help: 'Bytes received (in) and sent (out) by the clients transports open now',
    labelNames: ['direction'] as const,
    registers,
    async collect() {
      const traffic = await transportTraffic();
      this.set({ direction: 'in' }, traffic.bytesReceived);
      this.set({ direction: 'out' }, traffic.bytesSent);
    },
  });
}

/**
 * `collect` single-flighted and cached: callers share the collection under way, and its result
 * for `maxAgeMs` (default {@link MEDIA_FIGURES_MAX_AGE_MS}) after it settled.
 */
export function recentOrNew<T>(collect: () => Promise<T>, maxAgeMs = MEDIA_FIGURES_MAX_AGE_MS): () => Promise<T> {
  let result: Promise<T> | undefined;
  let settledAt = Infinity; // while under way: fresh
  return () => {
    if (!result || Date.now() - settledAt >= maxAgeMs) {
      const started = collect();
      result = started;
      settledAt = Infinity;
      const settle = (): void => {
        if (result === started) settledAt = Date.now();
      };
      started.then(settle, settle);
    }
    return result;
  };
}

/** `promise`'s value, or `fallback` when it rejects or takes longer than `timeoutMs`. */
export async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, fallback: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<T>((resolve) => {
    timer = setTimeout(() => resolve(fallback), timeoutMs);
  });
  try {
    return await Promise.race([promise.catch(() => fallback), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
