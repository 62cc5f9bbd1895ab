/**
 * The metrics operators alert on that the node's own metrics lack, registered on the node's
 * registry (its `node` label applies): the drain deadline, and the media's bitrate and loss
 * summed per direction. Labels stay bounded: `direction` is `in` (the clients' producers) or
 * `out` (consumers sending to clients); never a room, participant or producer id.
 */
import { Gauge, type Registry } from 'prom-client';
import { recentOrNew } from '../../../sfu/src/media-metrics.js';
import type { AdminNodeFigures, MediaTotals } from './admin-node.js';

/**
 * How long one measurement of the media serves further scrapes, in ms: it costs one stats request
 * per producer and consumer, so scrapes in between share it.
 */
export const MEDIA_TOTALS_MAX_AGE_MS = 5000;

export function registerAdminMetrics(registry: Registry, figures: AdminNodeFigures): void {
  const registers = [registry];
  new Gauge({
    name: 'trading_room_drain_deadline_timestamp_seconds',
    help: 'When a draining node closes its last sockets (Unix time, seconds); 0 while running',
    registers,
    collect() {
      const deadline = figures.drainDeadline();
      this.set(deadline === undefined ? 0 : deadline / 1000);
    },
  });

  const totals = recentOrNew(() => figures.mediaTotals(), MEDIA_TOTALS_MAX_AGE_MS);
  const perDirection = (name: string, help: string, read: (t: MediaTotals) => number): void => {
    new Gauge({
      name,
      help,
      labelNames: ['direction'] as const,
      registers,
      async collect() {
        const measured = await totals();
        for (const direction of ['in', 'out'] as const) this.set({ direction }, read(measured[direction]));
      },
    });
  };
  perDirection(
    'trading_room_media_stream_bitrate_bps',
    'Bitrate of the clients media streams as the workers measure it, summed: in (producers) and out (consumers)',
    (t) => t.bitrate,
  );
  perDirection(
    'trading_room_media_streams_measured',
    'Media streams whose stats the workers reported',
    (t) => t.streams,
  );
  perDirection(
    'trading_room_media_streams_lossy',
    'Media streams that lost more than 2% of their packets in the last RTCP interval',
    (t) => t.lossy,
  );
  perDirection(
    'trading_room_media_worst_fraction_lost',
    'The largest fraction of packets lost (0..1, last RTCP interval) over the media streams',
    (t) => t.worstFractionLost,
  );
}
