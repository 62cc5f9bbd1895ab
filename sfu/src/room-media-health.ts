import type { types } from 'mediasoup';

import type { MediaSource } from './media-types.js';
import type { RoomProducer } from './room-producers.js';

/** One RTP stream's health as the worker measures it (the first stream of a simulcast set). */
export type StreamHealth = {
  /** Bits per second over the worker's last measuring window. */
  bitrate: number;
  /** Packets lost since the stream started. */
  packetsLost: number;
  /** Lost fraction of the last RTCP interval, 0..1. */
  fractionLost: number;
  /** mediasoup's 0..10 quality score. */
  score: number;
};

/** A producer with its measured health (`undefined` when its stats did not arrive in time). */
export type ProducerHealth = {
  producerId: string;
  participantId: string;
  kind: types.MediaKind;
  source: MediaSource;
  paused: boolean;
  /** Summed over the producer's streams (simulcast layers). */
  bitrate: number | undefined;
  packetsLost: number | undefined;
  /** The worst stream's fraction. */
  fractionLost: number | undefined;
  score: number | undefined;
};

/** A consumer with its measured health, as the worker sends it to its participant. */
export type ConsumerHealth = {
  consumerId: string;
  participantId: string;
  producerId: string;
  kind: types.MediaKind;
  paused: boolean;
  bitrate: number | undefined;
  packetsLost: number | undefined;
  fractionLost: number | undefined;
  score: number | undefined;
};

/** A room's media health on this node: its clients' producers and consumers (pipes not included). */
export type RoomMediaHealth = {
  producers: ProducerHealth[];
  consumers: ConsumerHealth[];
  /** Producers and consumers whose stats did not arrive before the timeout. */
  timedOut: number;
};

/** What {@link collectRoomMediaHealth} measures. */
export type MediaHealthOptions = {
  /** Measure the consumers too (default true); the producers alone cost one request each. */
  consumers?: boolean;
};

/**
 * Asks the worker for the stats of every producer and consumer of the room, in parallel; what
 * does not answer within `timeoutMs` is reported without figures. One IPC per object: meant for
 * an operator opening one room, not for every scrape.
 */
export async function collectRoomMediaHealth(
  producers: Iterable<RoomProducer>,
  timeoutMs: number,
  options: MediaHealthOptions = {},
): Promise<RoomMediaHealth> {
  const health: RoomMediaHealth = { producers: [], consumers: [], timedOut: 0 };
  const timedOut = Symbol('timeout');
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<typeof timedOut>((resolve) => {
    timer = setTimeout(() => resolve(timedOut), timeoutMs);
  });
  const measure = async (
    stats: Promise<types.RtpStreamRecvStats[] | types.RtpStreamSendStats[] | unknown[]>,
    type: 'inbound-rtp' | 'outbound-rtp',
  ) => {
    const result = await Promise.race([stats.catch(() => timedOut), deadline]);
    if (result === timedOut) {
      health.timedOut += 1;
      return undefined;
    }
    return streamHealth(result as { type: string }[], type);
  };
  try {
    const work: Promise<void>[] = [];
    for (const entry of producers) {
      work.push(
        measure(entry.producer.getStats(), 'inbound-rtp').then((figures) => {
          health.producers.push({
            producerId: entry.id,
            participantId: entry.participantId,
            kind: entry.kind,
            source: entry.source,
            paused: entry.producer.paused,
            ...figuresOf(figures),
          });
        }),
      );
      if (options.consumers === false) continue;
      for (const consumer of entry.consumers) {
        work.push(
          measure(consumer.consumer.getStats(), 'outbound-rtp').then((figures) => {
            health.consumers.push({
              consumerId: consumer.id,
              participantId: consumer.participantId,
              producerId: entry.id,
              kind: entry.kind,
              paused: consumer.consumer.paused,
              ...figuresOf(figures),
            });
          }),
        );
      }
    }
    await Promise.all(work);
  } finally {
    clearTimeout(timer);
  }
  health.producers.sort((a, b) => a.producerId.localeCompare(b.producerId));
  health.consumers.sort((a, b) => a.consumerId.localeCompare(b.consumerId));
  return health;
}

/**
 * The figures of the streams of `type`: a producer's `inbound-rtp` streams (one per simulcast
 * layer), a consumer's `outbound-rtp` one (its stats also list its producer's stream, left out).
 */
function streamHealth(stats: readonly { type: string }[], type: string): StreamHealth | undefined {
  const streams = stats.filter((s) => s.type === type) as unknown as Partial<
    Pick<types.RtpStreamRecvStats, 'bitrate' | 'packetsLost' | 'fractionLost' | 'score'>
  >[];
  if (streams.length === 0) return undefined;
  let bitrate = 0;
  let packetsLost = 0;
  let fractionLost = 0;
  let score = 10;
  for (const s of streams) {
    bitrate += s.bitrate ?? 0;
    packetsLost += s.packetsLost ?? 0;
    fractionLost = Math.max(fractionLost, (s.fractionLost ?? 0) / 256);
    score = Math.min(score, s.score ?? 10);
  }
  return { bitrate, packetsLost, fractionLost, score };
}

function figuresOf(
  figures: StreamHealth | undefined,
): Pick<ProducerHealth, 'bitrate' | 'packetsLost' | 'fractionLost' | 'score'> {
  return {
    bitrate: figures?.bitrate,
    packetsLost: figures?.packetsLost,
    fractionLost: figures?.fractionLost,
    score: figures?.score,
  };
}
