/**
 * The SFU side of the media capacity benchmark: a fresh `MediaService` with one room, one VP8
 * producer on a comedia plain transport, and N viewers each consuming it on its own plain recv
 * transport connected to one of the load generator's sinks (viewer `i` to sink `i % sinks`).
 */
import type { types } from 'mediasoup';
import pino from 'pino';

import { MediaService, type WorkerInfo } from '../../sfu/src/media-service.js';
import { SOURCE_SSRC, vp8RtpParameters } from './media-rtp.js';

export const ROOM = 'bench';
const PRESENTER = 'presenter';

/**
 * What the service logged at warn and above, kept in memory (nothing printed). The workers'
 * complaints about their channel while `close()` tears them down are expected and not kept.
 */
export class SfuLog {
  problems: string[] = [];
  readonly logger = pino({ level: 'warn' }, { write: (line: string) => this.#write(line) });

  #write(line: string): void {
    if (/broken pipe|channel remotely closed/.test(line)) return;
    if (this.problems.length < 20) this.problems.push(line.trim());
  }
}

export type SfuSetup = {
  media: MediaService;
  log: SfuLog;
  /** Where the source sends its stream. */
  producerIp: string;
  producerPort: number;
  /** SSRC of each viewer's consumer, viewer order. */
  consumerSsrcs: number[];
  setupSeconds: number;
};

export type SfuPlacement = {
  /** Worker index of each router of the room, primary first. */
  routerWorkers: number[];
  workers: WorkerInfo[];
  routers: number;
  consumers: number;
};

/** Starts `numWorkers` workers, publishes, and creates `viewers` resumed consumers. */
export async function setUpSfu(options: {
  numWorkers: number;
  consumersPerRouter: number;
  viewers: number;
  sinkPorts: readonly number[];
  /** Viewers set up at once. */
  concurrency: number;
  /**
   * Whether viewers announce send-side bandwidth estimation (transport-cc, REMB) like browsers
   * do. Default true: the router's own capabilities, what a recording tap passes. Plain viewers
   * never send the feedback, so with it on the worker keeps a send history it never trims by
   * feedback; off measures bare forwarding.
   */
  viewerBwe?: boolean;
}): Promise<SfuSetup> {
  const started = performance.now();
  const log = new SfuLog();
  const media = await MediaService.create({
    numWorkers: options.numWorkers,
    listenIp: '127.0.0.1',
    rtcBasePort: 0,
    plainTransportsEnabled: true,
    consumersPerRouter: options.consumersPerRouter,
    logger: log.logger,
    workerLogLevel: 'error',
  });
  try {
    const ingest = await media.createPlainTransport(ROOM, PRESENTER, { direction: 'send', comedia: true });
    await media.produce(ROOM, PRESENTER, {
      transportId: ingest.transportId,
      kind: 'video',
      source: 'camera',
      rtpParameters: vp8RtpParameters(SOURCE_SSRC),
    });
    const [producer] = media.listProducers(ROOM);
    if (!producer) throw new Error('no producer');
    const routerCapabilities = await media.getRouterRtpCapabilities(ROOM);
    const rtpCapabilities = options.viewerBwe === false ? withoutBwe(routerCapabilities) : routerCapabilities;
    const consumerSsrcs = new Array<number>(options.viewers);
    let nextViewer = 0;
    const lane = async (): Promise<void> => {
      while (nextViewer < options.viewers) {
        const i = nextViewer++;
        const participantId = `viewer-${i}`;
        const transport = await media.createPlainTransport(ROOM, participantId, { direction: 'recv' });
        await media.connectPlainTransport(ROOM, participantId, {
          transportId: transport.transportId,
          ip: '127.0.0.1',
          port: options.sinkPorts[i % options.sinkPorts.length]!,
        });
        const consumer = await media.consume(ROOM, participantId, {
          transportId: transport.transportId,
          producerId: producer.producerId,
          rtpCapabilities,
        });
        const ssrc = consumer.rtpParameters.encodings?.[0]?.ssrc;
        if (ssrc === undefined) throw new Error('consumer without ssrc');
        consumerSsrcs[i] = ssrc;
        await media.resumeConsumer(ROOM, participantId, consumer.consumerId);
      }
    };
    await Promise.all(Array.from({ length: Math.min(options.concurrency, options.viewers) }, lane));
    return {
      media,
      log,
      producerIp: ingest.ip,
      producerPort: ingest.port,
      consumerSsrcs,
      setupSeconds: (performance.now() - started) / 1000,
    };
  } catch (error) {
    await media.close();
    throw error;
  }
}

/** RTP capabilities without transport-cc and REMB (feedback and header extensions). */
function withoutBwe(capabilities: types.RtpCapabilities): types.RtpCapabilities {
  return {
    codecs: capabilities.codecs?.map((codec) => ({
      ...codec,
      rtcpFeedback: codec.rtcpFeedback?.filter((fb) => fb.type !== 'transport-cc' && fb.type !== 'goog-remb'),
    })),
    headerExtensions: capabilities.headerExtensions?.filter((ext) => !/transport-wide-cc|abs-send-time/.test(ext.uri)),
  };
}

/** Where the room's routers and consumers ended up. */
export function placement(media: MediaService): SfuPlacement {
  const room = media.roomInfo(ROOM);
  const stats = media.stats();
  return {
    routerWorkers: room?.routerWorkers ?? [],
    workers: media.workers(),
    routers: stats.routers,
    consumers: stats.consumers,
  };
}
