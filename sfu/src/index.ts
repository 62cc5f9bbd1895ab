/**
 * The sfu module: everything mediasoup on a node. Signaling drives it through {@link MediaService}
 * and maps {@link SfuError} codes to protocol errors; it never imports from `signaling/`.
 */
export { MediaService } from './media-service.js';
export type { MediaServiceOptions, RoomMediaInfo, WorkerInfo } from './media-service.js';
export { SfuError } from './errors.js';
export type { SfuErrorCode } from './errors.js';
export { registerMediaMetrics } from './media-metrics.js';
export type { MediaMetricsOptions } from './media-metrics.js';
export { registerPipeMetrics } from './pipe-metrics.js';
export type { CrossNodeConsumePipe, PipeMetrics } from './pipe-metrics.js';
export { mediaCodecs, OPUS_PAYLOAD_TYPE } from './media-codecs.js';
export type { PipeSrtpMode, PortRange } from './worker-pool.js';
export type * from './media-types.js';
export type {
  ConsumerHealth,
  MediaHealthOptions,
  ProducerHealth,
  RoomMediaHealth,
  StreamHealth,
} from './room-media-health.js';
