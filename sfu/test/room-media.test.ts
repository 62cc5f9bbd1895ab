import { beforeAll, describe, expect, it } from 'vitest';

import { useMediaService } from '../../test-support/media-fixture.js';
import { flowsTo, waitFor, type RtpSink } from '../../test-support/rtp.js';

type Viewer = { participantId: string; consumerId: string; transportId: string; sink: RtpSink };

describe('RoomMedia: consumer budget, pipes across routers, active speaker', () => {
  const room = 'big-room';
  const sfu = useMediaService({ consumersPerRouter: 3 });
  const { events } = sfu;
  const viewers: Viewer[] = [];
  let firstProducerId: string;

  beforeAll(async () => {
    const publisher = await sfu.publisher(room, 'presenter', 0xa1);
    firstProducerId = publisher.producerId;
    for (let i = 0; i < 10; i += 1) {
      viewers.push({ participantId: `viewer-${i}`, ...(await sfu.viewer(room, `viewer-${i}`, firstProducerId)) });
    }
  });

  it('spreads 10 consumers over routers of at most 3, on both workers, all receiving', async () => {
    const info = sfu.media.roomInfo(room)!;
    expect(info.routers).toBe(4);
    expect(new Set(info.routerWorkers)).toEqual(new Set([0, 1]));
    expect(info.consumers).toBe(10);
    await flowsTo(
      viewers.map((v) => v.sink),
      10,
      'RTP at all 10 sinks',
    );
    // Two routers share a worker: the pipe between them works too (mediasoup 3.19 failed there).
    expect(info.routerWorkers.length - new Set(info.routerWorkers).size).toBe(2);
  });

  it('pipes a producer created later into every router of the room', async () => {
    const second = await sfu.publisher(room, 'presenter', 0xa2);
    const caps = await sfu.media.getRouterRtpCapabilities(room);
    for (const viewer of viewers) {
      const consumer = await sfu.media.consume(room, viewer.participantId, {
        transportId: viewer.transportId,
        producerId: second.producerId,
        rtpCapabilities: caps,
      });
      await sfu.media.resumeConsumer(room, viewer.participantId, consumer.consumerId);
    }
    await waitFor(() => viewers.every((v) => v.sink.ssrcs.size === 2), 'both streams at every sink');
  });

  it('reports the dominant speaker', async () => {
    await waitFor(() => events.activeSpeaker.length > 0, 'an activespeaker event', 8000);
    expect(events.activeSpeaker[0]).toEqual({ roomId: room, participantId: 'presenter' });
  });

  it('loses only the viewers of a secondary worker when it dies, and grows again after', async () => {
    const info = sfu.media.roomInfo(room)!;
    const primaryWorker = info.routerWorkers[0]!;
    const victim = sfu.media.workers().find((w) => w.workerIndex !== primaryWorker)!;
    const consumersBefore = info.consumers;
    const survivors = viewers;

    process.kill(victim.pid, 'SIGKILL');
    await waitFor(() => events.workerDied.length === 1, 'workerdied');
    expect(events.workerDied[0]).toEqual({ workerIndex: victim.workerIndex, pid: victim.pid });

    // The viewers whose transport sat on the dead worker lost it and its consumers.
    const lostTransports = new Set(events.transportClosed.map((e) => e.transportId));
    expect(events.transportClosed.every((e) => e.reason === 'worker-died')).toBe(true);
    expect(lostTransports.size).toBeGreaterThan(0);
    const lost = survivors.filter((v) => lostTransports.has(v.transportId));
    const kept = survivors.filter((v) => !lostTransports.has(v.transportId));
    expect(kept.length).toBeGreaterThan(0);
    expect(events.consumerClosed).toHaveLength(lost.length * 2);
    expect(events.consumerClosed.every((e) => e.reason === 'worker-died')).toBe(true);
    expect(events.producerClosed).toEqual([]);
    expect(sfu.media.roomInfo(room)!.consumers).toBe(consumersBefore - lost.length * 2);

    await flowsTo(
      kept.map((v) => v.sink),
      10,
      'RTP at the viewers on the surviving worker',
    );

    await waitFor(() => events.workerRestarted.length === 1, 'workerrestarted');
    expect(sfu.media.stats()).toMatchObject({ workersAlive: 2, workerRestarts: 1 });

    // A viewer that lost its transport comes back with a new one and receives again.
    const back = lost[0]!;
    const rejoined = await sfu.viewer(room, back.participantId, firstProducerId);
    viewers.push({ participantId: back.participantId, ...rejoined });
    await flowsTo([rejoined.sink], 10, 'RTP at the viewer that came back');
    expect(sfu.media.roomInfo(room)!.routerWorkers.at(-1)).toBe(victim.workerIndex);
  });

  it('survives the death of the primary worker: producers gone everywhere, re-publishing works', async () => {
    const info = sfu.media.roomInfo(room)!;
    const primaryWorker = info.routerWorkers[0]!;
    const victim = sfu.media.workers().find((w) => w.workerIndex === primaryWorker)!;
    const rejoined = viewers.at(-1)!;
    const before = { producers: events.producerClosed.length, consumers: events.consumerClosed.length };

    process.kill(victim.pid, 'SIGKILL');
    await waitFor(() => events.workerDied.length === 2, 'the second workerdied');

    const producersClosed = events.producerClosed.slice(before.producers);
    expect(producersClosed.map((e) => e.reason)).toEqual(['worker-died', 'worker-died']);
    // The viewer on the surviving worker lost its consumer because the producer went away.
    const rejoinedClosed = events.consumerClosed
      .slice(before.consumers)
      .filter((e) => e.participantId === rejoined.participantId);
    expect(rejoinedClosed.map((e) => e.reason)).toEqual(['producer-closed']);
    expect(events.activeSpeaker.at(-1)).toEqual({ roomId: room, participantId: null });
    expect(sfu.media.roomInfo(room)).toMatchObject({ routers: 1, producers: 0, consumers: 0, transports: 1 });

    // The presenter publishes again (now on the surviving router); the viewer consumes again.
    const again = await sfu.publisher(room, 'presenter', 0xa3);
    const caps = await sfu.media.getRouterRtpCapabilities(room);
    const consumer = await sfu.media.consume(room, rejoined.participantId, {
      transportId: rejoined.transportId,
      producerId: again.producerId,
      rtpCapabilities: caps,
    });
    await sfu.media.resumeConsumer(room, rejoined.participantId, consumer.consumerId);
    const ssrc = consumer.rtpParameters.encodings?.[0]?.ssrc;
    await waitFor(() => rejoined.sink.lastSsrc === ssrc, 'the re-published stream at the viewer');
    await flowsTo([rejoined.sink], 10, 'RTP from the re-published producer');
  });
});

describe('RoomMedia: worker death', () => {
  const sfu = useMediaService();
  const { events } = sfu;

  it('reports everything lost with the worker, keeps other rooms flowing, and recovers', async () => {
    const a = await sfu.publisher('room-a', 'pa', 0xb1);
    const aViewers = [await sfu.viewer('room-a', 'a1', a.producerId), await sfu.viewer('room-a', 'a2', a.producerId)];
    const b = await sfu.publisher('room-b', 'pb', 0xb2);
    const bViewer = await sfu.viewer('room-b', 'b1', b.producerId);

    const workerA = sfu.media.roomInfo('room-a')!.routerWorkers;
    const workerB = sfu.media.roomInfo('room-b')!.routerWorkers;
    expect(workerA).toHaveLength(1);
    expect(workerB).toHaveLength(1);
    expect(workerA[0]).not.toBe(workerB[0]);
    await flowsTo([...aViewers.map((v) => v.sink), bViewer.sink], 10, 'RTP in both rooms');

    const victim = sfu.media.workers().find((w) => w.workerIndex === workerA[0])!;
    process.kill(victim.pid, 'SIGKILL');
    await waitFor(() => events.workerDied.length === 1, 'workerdied');

    expect(events.workerDied).toEqual([{ workerIndex: victim.workerIndex, pid: victim.pid }]);
    expect(events.producerClosed).toEqual([
      { roomId: 'room-a', participantId: 'pa', producerId: a.producerId, reason: 'worker-died' },
    ]);
    expect(events.consumerClosed.map((e) => [e.roomId, e.participantId, e.consumerId, e.reason]).sort()).toEqual(
      [
        ['room-a', 'a1', aViewers[0]!.consumerId, 'worker-died'],
        ['room-a', 'a2', aViewers[1]!.consumerId, 'worker-died'],
      ].sort(),
    );
    expect(events.transportClosed.map((e) => [e.roomId, e.participantId, e.reason]).sort()).toEqual(
      [
        ['room-a', 'a1', 'worker-died'],
        ['room-a', 'a2', 'worker-died'],
        ['room-a', 'pa', 'worker-died'],
      ].sort(),
    );
    expect(sfu.media.roomInfo('room-a')).toMatchObject({ routers: 0, transports: 0, producers: 0, consumers: 0 });
    expect(sfu.media.listProducers('room-a')).toEqual([]);

    await flowsTo([bViewer.sink], 10, 'RTP in the other room after the death');
    expect(sfu.media.roomInfo('room-b')).toMatchObject({ routers: 1, transports: 2, producers: 1, consumers: 1 });

    await waitFor(() => events.workerRestarted.length === 1, 'workerrestarted');
    expect(events.workerRestarted[0]!.workerIndex).toBe(victim.workerIndex);
    expect(sfu.media.stats()).toMatchObject({ workersAlive: 2, workerRestarts: 1 });

    // The presenter publishes again; a viewer consumes again.
    const again = await sfu.publisher('room-a', 'pa', 0xb3);
    const viewerAgain = await sfu.viewer('room-a', 'a1', again.producerId);
    await flowsTo([viewerAgain.sink], 10, 'RTP in the recovered room');
    expect(sfu.media.roomInfo('room-a')!.routers).toBe(1);
  });
});
