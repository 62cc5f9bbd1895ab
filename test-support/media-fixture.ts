/**
 * A MediaService for a describe block of the sfu tests: created with {@link testServiceOptions}
 * before its tests, its events recorded, and closed after them with the RTP senders and sinks
 * started through it.
 */
import { afterAll, beforeAll } from 'vitest';

import { MediaService, type MediaServiceOptions } from '../sfu/src/media-service.js';
import type {
  ActiveSpeakerEvent,
  ConsumerClosedEvent,
  PipeOrigin,
  ProducerClosedEvent,
  TransportClosedEvent,
  WorkerDiedEvent,
  WorkerRestartedEvent,
} from '../sfu/src/media-types.js';
import { startPlainPublisher, startPlainViewer, testServiceOptions, type RtpSender, type RtpSink } from './rtp.js';

/** Every event a service emitted, by kind, in order. */
export interface MediaEvents {
  readonly producerClosed: ProducerClosedEvent[];
  readonly consumerClosed: ConsumerClosedEvent[];
  readonly transportClosed: TransportClosedEvent[];
  readonly activeSpeaker: ActiveSpeakerEvent[];
  readonly workerDied: WorkerDiedEvent[];
  readonly workerRestarted: WorkerRestartedEvent[];
}

export interface MediaFixture {
  /** The service (once the block's first `beforeAll` has run). */
  readonly media: MediaService;
  /** What the service emitted so far. */
  readonly events: MediaEvents;
  /** {@link startPlainPublisher} on the service; its sender is closed after the block. */
  publisher(
    roomId: string,
    participantId: string,
    ssrc: number,
    level?: number,
  ): ReturnType<typeof startPlainPublisher>;
  /** {@link startPlainViewer} on the service; its sink is closed after the block. */
  viewer(
    roomId: string,
    participantId: string,
    producerId: string,
    origin?: PipeOrigin,
  ): ReturnType<typeof startPlainViewer>;
}

/** Registers the hooks of a {@link MediaFixture} in the calling describe block; `overrides` go to the options. */
export function useMediaService(overrides: Partial<MediaServiceOptions> = {}): MediaFixture {
  let service: MediaService | undefined;
  const events: MediaEvents = {
    producerClosed: [],
    consumerClosed: [],
    transportClosed: [],
    activeSpeaker: [],
    workerDied: [],
    workerRestarted: [],
  };
  const senders: RtpSender[] = [];
  const sinks: RtpSink[] = [];

  beforeAll(async () => {
    service = await MediaService.create(testServiceOptions(overrides));
    service.on('producerclosed', (e) => events.producerClosed.push(e));
    service.on('consumerclosed', (e) => events.consumerClosed.push(e));
    service.on('transportclosed', (e) => events.transportClosed.push(e));
    service.on('activespeaker', (e) => events.activeSpeaker.push(e));
    service.on('workerdied', (e) => events.workerDied.push(e));
    service.on('workerrestarted', (e) => events.workerRestarted.push(e));
  });

  afterAll(async () => {
    for (const sender of senders) sender.close();
    for (const sink of sinks) sink.close();
    await service?.close();
  });

  const media = (): MediaService => {
    if (!service) throw new Error('the MediaService is created in beforeAll');
    return service;
  };
  return {
    get media() {
      return media();
    },
    events,
    async publisher(roomId, participantId, ssrc, level) {
      const publisher = await startPlainPublisher(media(), roomId, participantId, ssrc, level);
      senders.push(publisher.sender);
      return publisher;
    },
    async viewer(roomId, participantId, producerId, origin) {
      const viewer = await startPlainViewer(media(), roomId, participantId, producerId, origin);
      sinks.push(viewer.sink);
      return viewer;
    },
  };
}
