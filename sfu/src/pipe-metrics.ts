import { Gauge, Histogram, type Registry } from 'prom-client';

import type { MediaService } from './media-service.js';
import type { PipeTraffic } from './media-types.js';

/** How long one collection of the pipes' bitrate serves further scrapes, in ms. */
const PIPE_TRAFFIC_MAX_AGE_MS = 2000;

/** Whether a cross-node consume opened a new pipe or rode one the node already had. */
export type CrossNodeConsumePipe = 'opened' | 'shared';

/** What {@link registerPipeMetrics} gives its caller to observe. */
export interface PipeMetrics {
  /** One `sfu.consume` of a producer published on another node took `seconds`. */
  crossNodeConsume(pipe: CrossNodeConsumePipe, seconds: number): void;
}

/**
 * Registers the metrics of the pipes between nodes on `registry`:
 *
 * - `trading_room_media_node_pipes{direction="in"|"out"}` (gauge): pipes open now — `in`, producers
 *   piped in from other nodes (one per producer); `out`, this node's producers piped to other
 *   nodes (one per producer and node);
 * - `trading_room_media_node_pipe_bitrate_bps{direction}` (gauge): bits per second received
 *   (`in`) and sent (`out`) through them, from the transports' stats;
 * - `trading_room_media_cross_node_consume_seconds{pipe="opened"|"shared"}` (histogram): how long
 *   an `sfu.consume` of a producer published on another node took, with the pipe it opened (the
 *   RPC to the origin included) or one already open.
 *
 * Labels stay bounded: no room, producer or node ids.
 */
export function registerPipeMetrics(registry: Registry, media: MediaService, timeoutMs = 500): PipeMetrics {
  const registers = [registry];
  new Gauge({
    name: 'trading_room_media_node_pipes',
    help: 'Pipes between this node and other nodes open now: in (producers piped in), out (producers piped out)',
    labelNames: ['direction'] as const,
    registers,
    collect() {
      const stats = media.stats();
      this.set({ direction: 'in' }, stats.pipesIn);
      this.set({ direction: 'out' }, stats.pipesOut);
    },
  });
  let traffic: { at: number; value: Promise<PipeTraffic> } | undefined;
  new Gauge({
    name: 'trading_room_media_node_pipe_bitrate_bps',
    help: 'Bits per second received (in) and sent (out) through the pipes between this node and others',
    labelNames: ['direction'] as const,
    registers,
    async collect() {
      if (!traffic || Date.now() - traffic.at >= PIPE_TRAFFIC_MAX_AGE_MS) {
        traffic = { at: Date.now(), value: media.pipeTraffic(timeoutMs) };
      }
      const { in: received, out: sent } = await traffic.value;
      this.set({ direction: 'in' }, received);
      this.set({ direction: 'out' }, sent);
    },
  });
  const consume = new Histogram({
    name: 'trading_room_media_cross_node_consume_seconds',
    help: 'Duration of sfu.consume of a producer published on another node, by whether it opened a pipe',
    labelNames: ['pipe'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers,
  });
  return {
    crossNodeConsume: (pipe, seconds) => consume.observe({ pipe }, seconds),
  };
}
