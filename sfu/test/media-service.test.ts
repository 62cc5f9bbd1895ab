import type { types } from 'mediasoup';
import { beforeAll, describe, expect, it } from 'vitest';

import { SfuError } from '../src/errors.js';
import { MediaService } from '../src/media-service.js';
import { useMediaService } from '../../test-support/media-fixture.js';
import {
  flowsTo,
  opusRtpParameters,
  type RtpSink,
  staysQuiet,
  testServiceOptions,
  waitFor,
  type RtpSender,
} from '../../test-support/rtp.js';

/** Resolves to the SfuError code `promise` rejects with (fails when it resolves). */
async function codeOf(promise: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof promise === 'function' ? promise() : promise);
  } catch (error) {
    if (error instanceof SfuError) return error.code;
    throw error;
  }
  throw new Error('expected an SfuError');
}

describe('MediaService', () => {
  const sfu = useMediaService();
  const { producerClosed, consumerClosed, transportClosed } = sfu.events;

  describe('plain RTP through one room', () => {
    const room = 'flow';
    let producerId: string;
    let sender: RtpSender;
    let viewers: { participantId: string; consumerId: string; sink: RtpSink }[];

    beforeAll(async () => {
      const publisher = await sfu.publisher(room, 'presenter', 0x1111);
      producerId = publisher.producerId;
      sender = publisher.sender;
      viewers = [];
      for (const participantId of ['v1', 'v2', 'v3']) {
        const viewer = await sfu.viewer(room, participantId, producerId);
        viewers.push({ participantId, ...viewer });
      }
    });

    it('forwards the encoder RTP to every consumer', async () => {
      await waitFor(() => viewers.every((v) => v.sink.received >= 25), 'RTP at every sink');
      for (const viewer of viewers) expect(viewer.sink.ssrcs.size).toBe(1);
      expect(sfu.media.listProducers(room)).toEqual([
        { producerId, participantId: 'presenter', kind: 'audio', source: 'microphone', paused: false },
      ]);
      expect(sfu.media.roomInfo(room)).toMatchObject({ routers: 1, transports: 4, producers: 1, consumers: 3 });
    });

    it('stops the flow while the producer is paused and restarts it on resume', async () => {
      await sfu.media.pauseProducer(room, 'presenter', producerId);
      expect(sfu.media.listProducers(room)[0]?.paused).toBe(true);
      await staysQuiet(
        viewers.map((v) => v.sink),
        sender,
      );

      await sfu.media.resumeProducer(room, 'presenter', producerId);
      await flowsTo(
        viewers.map((v) => v.sink),
        10,
        'RTP flowing again after resume',
      );
    });

    it('lets a moderator pause and resume, but not a stranger', async () => {
      expect(await codeOf(sfu.media.pauseProducer(room, 'v1', producerId))).toBe('FORBIDDEN');
      expect(await codeOf(sfu.media.closeProducer(room, 'v1', producerId))).toBe('FORBIDDEN');
      await sfu.media.pauseProducer(room, 'v1', producerId, { asModerator: true });
      expect(sfu.media.listProducers(room)[0]?.paused).toBe(true);
      await sfu.media.resumeProducer(room, 'v1', producerId, { asModerator: true });
      expect(sfu.media.listProducers(room)[0]?.paused).toBe(false);
    });

    it('pauses every producer of a participant for a mute, once', async () => {
      expect(await sfu.media.pauseParticipantProducers(room, 'presenter')).toEqual([producerId]);
      expect(await sfu.media.pauseParticipantProducers(room, 'presenter')).toEqual([]);
      await sfu.media.resumeProducer(room, 'presenter', producerId);
    });

    it('closes the producer and every consumer of it, with events', async () => {
      await sfu.media.closeProducer(room, 'presenter', producerId);
      expect(producerClosed).toEqual([{ roomId: room, participantId: 'presenter', producerId, reason: 'closed' }]);
      const closedHere = consumerClosed.filter((e) => e.roomId === room);
      expect(closedHere.map((e) => [e.participantId, e.consumerId, e.reason]).sort()).toEqual(
        viewers.map((v) => [v.participantId, v.consumerId, 'producer-closed']).sort(),
      );
      expect(sfu.media.listProducers(room)).toEqual([]);
      expect(sfu.media.roomInfo(room)).toMatchObject({ producers: 0, consumers: 0, transports: 4 });
      await staysQuiet(
        viewers.map((v) => v.sink),
        sender,
      );
      expect(await codeOf(sfu.media.resumeConsumer(room, 'v1', viewers[0]!.consumerId))).toBe('NOT_FOUND');
    });

    it('closes what a leaving participant owns', async () => {
      const transportsBefore = sfu.media.roomInfo(room)!.transports;
      sfu.media.closeParticipant(room, 'v1');
      expect(sfu.media.roomInfo(room)!.transports).toBe(transportsBefore - 1);
      expect(transportClosed.filter((e) => e.participantId === 'v1')).toMatchObject([{ reason: 'participant-left' }]);
      sfu.media.closeParticipant(room, 'v1');
      sfu.media.closeParticipant('no-such-room', 'v1');
    });
  });

  describe('WebRTC transports', () => {
    const room = 'webrtc';

    it('are created through the worker WebRtcServer, with UDP and TCP candidates on its ports', async () => {
      const caps = await sfu.media.getRouterRtpCapabilities(room);
      expect(caps.codecs?.map((c) => c.mimeType)).toEqual([
        'audio/opus',
        'video/VP8',
        'video/rtx',
        'video/VP9',
        'video/rtx',
        'video/H264',
        'video/rtx',
      ]);
      const transport = await sfu.media.createWebRtcTransport(room, 'alice', 'send');
      const workerIndex = sfu.media.roomInfo(room)!.routerWorkers[0];
      const worker = sfu.media.workers().find((w) => w.workerIndex === workerIndex)!;
      expect(transport.iceCandidates.map((c) => [c.protocol, c.ip, c.port]).sort()).toEqual(
        [
          ['tcp', '127.0.0.1', worker.tcpPort],
          ['udp', '127.0.0.1', worker.udpPort],
        ].sort(),
      );
      expect(transport.dtlsParameters.fingerprints.length).toBeGreaterThan(0);

      const { iceParameters } = await sfu.media.restartIce(room, 'alice', transport.transportId);
      expect(iceParameters.usernameFragment).not.toBe(transport.iceParameters.usernameFragment);
      expect(await codeOf(sfu.media.restartIce(room, 'bob', transport.transportId))).toBe('FORBIDDEN');

      await sfu.media.connectTransport(room, 'alice', transport.transportId, {
        role: 'client',
        fingerprints: [{ algorithm: 'sha-256', value: 'AB:'.repeat(31) + 'AB' }],
      });
      expect(
        await codeOf(
          sfu.media.connectTransport(room, 'alice', transport.transportId, { role: 'client', fingerprints: [] }),
        ),
      ).toBe('BAD_REQUEST');
    });

    it('are limited per participant', async () => {
      // alice already has one transport in this room.
      for (let i = 0; i < 3; i += 1) await sfu.media.createWebRtcTransport(room, 'alice', 'recv');
      const error = await sfu.media.createWebRtcTransport(room, 'alice', 'recv').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SfuError);
      expect((error as SfuError).code).toBe('FORBIDDEN');
      expect((error as SfuError).message).toMatch(/transport limit reached: at most 4/);
      sfu.media.closeParticipant(room, 'alice');
      await sfu.media.createWebRtcTransport(room, 'alice', 'recv');
    });

    it('discards a transport whose participant left while it was being created', async () => {
      const before = sfu.media.roomInfo(room)!.transports;
      const creating = sfu.media.createWebRtcTransport(room, 'carol', 'recv');
      sfu.media.closeParticipant(room, 'carol');
      expect(await codeOf(creating)).toBe('NOT_FOUND');
      expect(sfu.media.roomInfo(room)!.transports).toBe(before);
      await sfu.media.createWebRtcTransport(room, 'carol', 'recv'); // a resumed session starts over
      expect(sfu.media.roomInfo(room)!.transports).toBe(before + 1);
    });
  });

  describe('produce and consume checks', () => {
    const room = 'checks';
    let send: string;
    let recv: string;

    beforeAll(async () => {
      send = (await sfu.media.createPlainTransport(room, 'pres', { direction: 'send', comedia: true })).transportId;
      recv = (await sfu.media.createPlainTransport(room, 'view', { direction: 'recv' })).transportId;
    });

    it('rejects what does not fit', async () => {
      const produce = (participantId: string, transportId: string, overrides: object = {}): Promise<unknown> =>
        sfu.media.produce(room, participantId, {
          transportId,
          kind: 'audio',
          rtpParameters: opusRtpParameters(0x2222),
          source: 'microphone',
          ...overrides,
        });
      expect(await codeOf(produce('view', send))).toBe('FORBIDDEN');
      expect(await codeOf(produce('pres', 'nope'))).toBe('NOT_FOUND');
      expect(await codeOf(produce('view', recv))).toBe('BAD_REQUEST');
      expect(await codeOf(produce('pres', send, { source: 'camera' }))).toBe('BAD_REQUEST');
      expect(
        await codeOf(
          produce('pres', send, {
            rtpParameters: {
              codecs: [{ mimeType: 'audio/G7221', payloadType: 111, clockRate: 16000 }],
              encodings: [{ ssrc: 1 }],
            },
          }),
        ),
      ).toBe('BAD_REQUEST');
      expect(
        await codeOf(
          sfu.media.produce('nowhere', 'pres', {
            transportId: send,
            kind: 'audio',
            rtpParameters: opusRtpParameters(1),
            source: 'microphone',
          }),
        ),
      ).toBe('NOT_FOUND');
    });

    it('limits producers per participant', async () => {
      for (let i = 0; i < 4; i += 1) {
        await sfu.media.produce(room, 'pres', {
          transportId: send,
          kind: 'audio',
          rtpParameters: opusRtpParameters(0x3000 + i),
          source: 'microphone',
        });
      }
      const error = await sfu.media
        .produce(room, 'pres', {
          transportId: send,
          kind: 'audio',
          rtpParameters: opusRtpParameters(0x4000),
          source: 'microphone',
        })
        .catch((e: unknown) => e);
      expect((error as SfuError).code).toBe('FORBIDDEN');
      expect((error as SfuError).message).toMatch(/producer limit reached: at most 4/);
    });

    it('rejects consumers that cannot consume or do not own the transport', async () => {
      const producerId = sfu.media.listProducers(room)[0]!.producerId;
      const caps = await sfu.media.getRouterRtpCapabilities(room);
      expect(
        await codeOf(
          sfu.media.consume(room, 'view', { transportId: recv, producerId, rtpCapabilities: { codecs: [] } }),
        ),
      ).toBe('BAD_REQUEST');
      expect(
        await codeOf(sfu.media.consume(room, 'pres', { transportId: recv, producerId, rtpCapabilities: caps })),
      ).toBe('FORBIDDEN');
      expect(
        await codeOf(sfu.media.consume(room, 'view', { transportId: recv, producerId: 'nope', rtpCapabilities: caps })),
      ).toBe('NOT_FOUND');
      expect(
        await codeOf(sfu.media.consume(room, 'pres', { transportId: send, producerId, rtpCapabilities: caps })),
      ).toBe('BAD_REQUEST');
      const consumer = await sfu.media.consume(room, 'view', { transportId: recv, producerId, rtpCapabilities: caps });
      expect(consumer).toMatchObject({ producerId, kind: 'audio', paused: true, producerPaused: false });
      expect(consumer.rtpParameters.codecs[0]?.payloadType).toBe(100);
      expect(await codeOf(sfu.media.resumeConsumer(room, 'pres', consumer.consumerId))).toBe('FORBIDDEN');
      await sfu.media.setConsumerLayers(room, 'view', consumer.consumerId, 0);
    });

    it('closes all producers of a demoted participant at once', () => {
      const before = producerClosed.length;
      const ids = sfu.media.closeParticipantProducers(room, 'pres', 'role-revoked');
      expect(ids).toHaveLength(4);
      expect(producerClosed.slice(before).map((e) => e.reason)).toEqual(Array(4).fill('role-revoked'));
      expect(consumerClosed.at(-1)).toMatchObject({ participantId: 'view', reason: 'producer-closed' });
      expect(sfu.media.closeParticipantProducers('nowhere', 'pres', 'role-revoked')).toEqual([]);
    });

    it('closes a room with events, and forgets it', async () => {
      const before = transportClosed.length;
      sfu.media.closeRoom(room);
      expect(transportClosed.slice(before).map((e) => e.reason)).toEqual(['room-closed', 'room-closed']);
      expect(sfu.media.hasRoom(room)).toBe(false);
      expect(await codeOf(sfu.media.resumeConsumer(room, 'view', 'x'))).toBe('NOT_FOUND');
      sfu.media.closeRoom(room);
    });
  });

  describe('one consumer per producer and transport', () => {
    const room = 'once';
    let publisher: { producerId: string; sender: RtpSender };
    let caps: types.RtpCapabilities;
    /** Consumers on the workers, as the pool counts them from mediasoup's own observers. */
    const workerConsumers = (): number => sfu.media.workers().reduce((n, w) => n + w.consumers, 0);

    beforeAll(async () => {
      publisher = await sfu.publisher(room, 'pres', 0x5151);
      caps = await sfu.media.getRouterRtpCapabilities(room);
    });

    it('answers a repeated consume with the existing consumer, paused again, and creates none', async () => {
      const { producerId, sender } = publisher;
      const viewer = await sfu.viewer(room, 'tap', producerId);
      await flowsTo([viewer.sink]);
      const before = { room: sfu.media.roomInfo(room)!.consumers, workers: workerConsumers() };

      const again = await sfu.media.consume(room, 'tap', {
        transportId: viewer.transportId,
        producerId,
        rtpCapabilities: caps,
      });
      expect(again).toMatchObject({ consumerId: viewer.consumerId, producerId, kind: 'audio', paused: true });
      expect(sfu.media.roomInfo(room)!.consumers).toBe(before.room);
      expect(workerConsumers()).toBe(before.workers);

      // Paused again, as a first consume leaves it: nothing until the client resumes it.
      await staysQuiet([viewer.sink], sender);
      await sfu.media.resumeConsumer(room, 'tap', again.consumerId);
      await flowsTo([viewer.sink]);
      expect(viewer.sink.ssrcs.size).toBe(1);
    });

    it('creates one consumer for consumes racing on one transport', async () => {
      const { transportId } = await sfu.media.createPlainTransport(room, 'racer', { direction: 'recv' });
      const before = { room: sfu.media.roomInfo(room)!.consumers, workers: workerConsumers() };
      const answers = await Promise.all(
        Array.from({ length: 5 }, () =>
          sfu.media.consume(room, 'racer', { transportId, producerId: publisher.producerId, rtpCapabilities: caps }),
        ),
      );
      expect(new Set(answers.map((a) => a.consumerId)).size).toBe(1);
      expect(sfu.media.roomInfo(room)!.consumers).toBe(before.room + 1);
      expect(workerConsumers()).toBe(before.workers + 1);

      // Another transport of the same participant gets its own consumer.
      const second = await sfu.media.createPlainTransport(room, 'racer', { direction: 'recv' });
      const other = await sfu.media.consume(room, 'racer', {
        transportId: second.transportId,
        producerId: publisher.producerId,
        rtpCapabilities: caps,
      });
      expect(other.consumerId).not.toBe(answers[0]!.consumerId);
      expect(workerConsumers()).toBe(before.workers + 2);
    });
  });

  it('counts what it holds', () => {
    const stats = sfu.media.stats();
    expect(stats).toMatchObject({ workers: 2, workersAlive: 2, workerRestarts: 0 });
    expect(stats.rooms).toBeGreaterThanOrEqual(2);
    expect(stats.routers).toBeGreaterThanOrEqual(2);
  });

  it('refuses plain transports when they are disabled', async () => {
    const locked = await MediaService.create(testServiceOptions({ plainTransportsEnabled: false }));
    try {
      expect(await codeOf(locked.createPlainTransport('r', 'p', { direction: 'send', comedia: true }))).toBe(
        'FORBIDDEN',
      );
      expect(await codeOf(locked.connectPlainTransport('r', 'p', { transportId: 't', ip: '127.0.0.1', port: 9 }))).toBe(
        'FORBIDDEN',
      );
    } finally {
      await Promise.all([locked.close(), locked.close()]);
    }
    expect(await codeOf(locked.getRouterRtpCapabilities('r'))).toBe('UNAVAILABLE');
  });
});

describe('MediaService: consumers per participant', () => {
  const sfu = useMediaService({ maxConsumersPerParticipant: 3 });
  const room = 'capped';

  it('refuses a consumer over the cap, naming it, counting consumes under way', async () => {
    const a = await sfu.publisher(room, 'pa', 0x6101);
    const b = await sfu.publisher(room, 'pb', 0x6102);
    const caps = await sfu.media.getRouterRtpCapabilities(room);
    const recv = async (participantId: string): Promise<string> =>
      (await sfu.media.createPlainTransport(room, participantId, { direction: 'recv' })).transportId;
    const consume = (participantId: string, transportId: string, producerId: string) =>
      sfu.media.consume(room, participantId, { transportId, producerId, rtpCapabilities: caps });
    const [t1, t2] = [await recv('viewer'), await recv('viewer')];

    // Four different (transport, producer) pairs at once: three consumers, the fourth refused.
    const results = await Promise.allSettled([
      consume('viewer', t1, a.producerId),
      consume('viewer', t1, b.producerId),
      consume('viewer', t2, a.producerId),
      consume('viewer', t2, b.producerId),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'rejected']);
    const refused = (results[3] as PromiseRejectedResult).reason as unknown;
    expect(refused).toBeInstanceOf(SfuError);
    expect(refused).toMatchObject({
      code: 'FORBIDDEN',
      message: 'consumer limit reached: at most 3 consumers per participant',
    });
    expect(sfu.media.roomInfo(room)!.consumers).toBe(3);

    // A consumer it holds is still answered (nothing is created); someone else has a cap of its own.
    const held = (results[0] as PromiseFulfilledResult<{ consumerId: string }>).value;
    expect((await consume('viewer', t1, a.producerId)).consumerId).toBe(held.consumerId);
    await consume('other', await recv('other'), b.producerId);
    expect(sfu.media.roomInfo(room)!.consumers).toBe(4);

    // A consumer that goes away frees its place, and the cap still holds after.
    await sfu.media.closeProducer(room, 'pb', b.producerId);
    const c = await sfu.publisher(room, 'pc', 0x6103);
    await consume('viewer', t2, c.producerId);
    expect(await codeOf(consume('viewer', t1, c.producerId))).toBe('FORBIDDEN');
    expect(sfu.media.roomInfo(room)!.consumers).toBe(3);
  });
});
