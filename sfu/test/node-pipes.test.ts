/**
 * Pipes between nodes, at the SFU level: two media services stand for two nodes (each its own
 * mediasoup workers), wired to each other the way signaling wires nodes over the cluster RPC —
 * a {@link PipeOrigin} that asks the origin service for its end, and the pipes' events relayed
 * to the other side.
 */
import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { ConsumerLayersChangedEvent, PipeOrigin } from '../src/media-types.js';
import { useMediaService, type MediaFixture } from '../../test-support/media-fixture.js';
import { flowsTo, opusPacket, staysQuiet, waitFor, type RtpSender } from '../../test-support/rtp.js';
import { Vp8Sender, vp8RtpParameters } from '../../test-support/rtp-video.js';
import { UdpRelay } from '../../test-support/udp-relay.js';

const ROOM = 'pipes';

describe('pipes between two nodes', () => {
  const origin = useMediaService({ numWorkers: 1 });
  const viewerNode = useMediaService({ numWorkers: 2, consumersPerRouter: 1 });
  let producerId: string;
  let sender: RtpSender;
  let pipeRequests = 0;

  /** The viewer node's way to the origin: counts the requests that reach it. */
  const toOrigin = (): PipeOrigin => ({
    nodeId: 'node-a',
    open: (end) => {
      pipeRequests += 1;
      return origin.media.pipeOut(ROOM, producerId, 'node-b', end);
    },
  });

  beforeAll(async () => {
    // What signaling does over the RPC, here in-process.
    origin.media.on('pipeclosed', (e) => {
      if (e.direction === 'out') viewerNode.media.closePipeIn(e.roomId, e.producerId, 'origin-closed');
    });
    origin.media.on('pipepaused', (e) => void viewerNode.media.setPipeInPaused(e.roomId, e.producerId, e.paused));
    viewerNode.media.on('pipeclosed', (e) => {
      if (e.direction === 'in') origin.media.closePipeOut(e.roomId, e.producerId, 'node-b');
    });
    await viewerNode.media.getRouterRtpCapabilities(ROOM);
    const publisher = await origin.publisher(ROOM, 'presenter', 0x5a5a);
    producerId = publisher.producerId;
    sender = publisher.sender;
  });

  it('carries a producer to every viewer of the other node through one pipe, on every router there', async () => {
    const first = await viewerNode.viewer(ROOM, 'v1', producerId, toOrigin());
    const second = await viewerNode.viewer(ROOM, 'v2', producerId, toOrigin());
    await flowsTo([first.sink, second.sink], 10, 'RTP at both viewers on the other node');
    expect(pipeRequests).toBe(1);
    // A budget of one consumer per router: the second viewer sits on the other worker.
    expect(viewerNode.media.roomInfo(ROOM)?.routers).toBe(2);
    expect(viewerNode.media.stats()).toMatchObject({ pipesIn: 1, pipesOut: 0, producers: 0, consumers: 2 });
    expect(origin.media.stats()).toMatchObject({ pipesIn: 0, pipesOut: 1, producers: 1, consumers: 0 });
    expect(viewerNode.media.pipes()).toEqual([
      { roomId: ROOM, producerId, nodeId: 'node-a', direction: 'in', consumers: 2 },
    ]);
    expect(viewerNode.media.listProducers(ROOM)).toEqual([]);
  });

  it('follows the producer’s pause and resume', async () => {
    const closedBefore = viewerNode.events.consumerClosed.length;
    await origin.media.pauseProducer(ROOM, 'presenter', producerId);
    const viewer = await viewerNode.viewer(ROOM, 'v3', producerId, toOrigin());
    await staysQuiet([viewer.sink], sender);
    await origin.media.resumeProducer(ROOM, 'presenter', producerId);
    await flowsTo([viewer.sink], 10, 'RTP after the resume');
    expect(viewerNode.events.consumerClosed.length).toBe(closedBefore);
    await viewerNode.media.closeParticipant(ROOM, 'v3');
  });

  it('closes the pipe on both nodes when the last viewer there leaves', async () => {
    viewerNode.media.closeParticipant(ROOM, 'v1');
    expect(viewerNode.media.stats().pipesIn).toBe(1);
    viewerNode.media.closeParticipant(ROOM, 'v2');
    expect(viewerNode.media.stats().pipesIn).toBe(0);
    await waitFor(() => origin.media.stats().pipesOut === 0, 'the origin’s end closed');
    const workers = viewerNode.media.workers();
    expect(workers.reduce((n, w) => n + w.consumers, 0)).toBe(0);
  });

  it('closes the viewers’ consumers when the origin closes the producer', async () => {
    const viewer = await viewerNode.viewer(ROOM, 'v4', producerId, toOrigin());
    await flowsTo([viewer.sink], 5);
    origin.media.closeParticipant(ROOM, 'presenter');
    await waitFor(
      () => viewerNode.events.consumerClosed.some((e) => e.consumerId === viewer.consumerId),
      'the viewer’s consumer closed',
    );
    expect(viewerNode.events.consumerClosed.find((e) => e.consumerId === viewer.consumerId)?.reason).toBe(
      'producer-closed',
    );
    expect(viewerNode.media.stats()).toMatchObject({ pipesIn: 0, consumers: 0 });
    expect(origin.media.stats().pipesOut).toBe(0);
  });

  it('closes the consumers with origin-lost when the origin node goes away', async () => {
    const publisher = await origin.publisher(ROOM, 'presenter-2', 0x5a5b);
    producerId = publisher.producerId;
    const viewer = await viewerNode.viewer(ROOM, 'v5', producerId, toOrigin());
    await flowsTo([viewer.sink], 5);
    viewerNode.media.nodeLost('node-a');
    expect(viewerNode.events.consumerClosed.at(-1)).toMatchObject({
      consumerId: viewer.consumerId,
      reason: 'origin-lost',
    });
    expect(viewerNode.media.stats()).toMatchObject({ pipesIn: 0, consumers: 0 });
  });

  it('answers NOT_FOUND for a producer the origin does not have', async () => {
    const missing: PipeOrigin = {
      nodeId: 'node-a',
      open: (end) => origin.media.pipeOut(ROOM, 'no-such-producer', 'node-b', end),
    };
    await expect(viewerNode.viewer(ROOM, 'v6', 'no-such-producer', missing)).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
    expect(viewerNode.media.stats().pipesIn).toBe(0);
  });
});

describe('simulcast across a pipe between two nodes', () => {
  const origin = useMediaService({ numWorkers: 1 });
  const viewerNode = useMediaService({ numWorkers: 1 });
  const room = 'simulcast';
  const sender = new Vp8Sender([0x6a01, 0x6a02, 0x6a03]);
  const layers: ConsumerLayersChangedEvent[] = [];
  afterAll(() => sender.close());

  it('carries every layer: each viewer node picks the layer of each of its viewers', async () => {
    viewerNode.media.on('consumerlayerschanged', (e) => layers.push(e));
    const ingest = await origin.media.createPlainTransport(room, 'presenter', { direction: 'send', comedia: true });
    const { producerId } = await origin.media.produce(room, 'presenter', {
      transportId: ingest.transportId,
      kind: 'video',
      source: 'camera',
      rtpParameters: vp8RtpParameters(sender.ssrcs),
    });
    sender.start(ingest.ip, ingest.port);
    const toOrigin: PipeOrigin = {
      nodeId: 'node-a',
      open: (end) => origin.media.pipeOut(room, producerId, 'node-b', end),
    };
    const { consumerId, sink } = await viewerNode.viewer(room, 'viewer', producerId, toOrigin);
    await flowsTo([sink], 10, 'video at the viewer on the other node');

    const settlesOn = async (spatialLayer: number): Promise<void> => {
      await viewerNode.media.setConsumerLayers(room, 'viewer', consumerId, spatialLayer);
      await waitFor(
        () => layers.at(-1)?.spatialLayer === spatialLayer,
        `the viewer's consumer forwarding spatial layer ${spatialLayer}`,
        10_000,
      );
    };
    await settlesOn(0);
    await settlesOn(2);
    await settlesOn(1);
    expect(viewerNode.media.stats().pipesIn).toBe(1);
  });
});

describe('SRTP on the pipes between nodes', () => {
  const originAlways = useMediaService({ numWorkers: 1, pipeSrtp: 'always' });
  const viewerAlways = useMediaService({ numWorkers: 1, pipeSrtp: 'always' });
  const originAuto = useMediaService({ numWorkers: 1 });
  const viewerAuto = useMediaService({ numWorkers: 1 });
  /** Every pipe transport between nodes the services create, whichever service. */
  const pipeEnds: types.PipeTransport[] = [];
  const relays: UdpRelay[] = [];
  const onWorker = (worker: types.Worker): void => {
    worker.observer.on('newrouter', (router) =>
      router.observer.on('newtransport', (transport) => {
        if (transport.type === 'pipe' && transport.appData['nodeId'] !== undefined) {
          pipeEnds.push(transport as types.PipeTransport);
        }
      }),
    );
  };
  // Registered while the block is collected: before the services' workers start.
  mediasoup.observer.on('newworker', onWorker);
  afterAll(() => {
    mediasoup.observer.off('newworker', onWorker);
    for (const relay of relays) relay.close();
  });

  /** 32 bytes of the test sender's opus payload, as they are in the clear. */
  const CLEARTEXT = opusPacket(1, 1).subarray(-32);
  const rtpOf = (datagrams: readonly Buffer[]): Buffer[] =>
    datagrams.filter((d) => d.length >= 12 && ((d[1] ?? 0) < 192 || (d[1] ?? 0) > 223));
  const endsOf = (roomId: string): types.PipeTransport[] => pipeEnds.filter((t) => t.appData['roomId'] === roomId);

  /**
   * The way to `origin` with the pipe's UDP going through a relay (A: the origin, B: the viewer
   * node): each end is told the relay's address for the other.
   */
  const throughRelay = (origin: MediaFixture, roomId: string, producerId: string, relay: UdpRelay): PipeOrigin => ({
    nodeId: 'node-a',
    open: async (end) => {
      const offer = await origin.media.pipeOut(roomId, producerId, 'node-b', { ...end, ...relay.forA });
      relay.connect(offer, end);
      return { ...offer, ...relay.forB };
    },
  });

  const pipeThroughRelay = async (
    origin: MediaFixture,
    viewerNode: MediaFixture,
    roomId: string,
  ): Promise<{ relay: UdpRelay; sink: Awaited<ReturnType<MediaFixture['viewer']>>['sink'] }> => {
    const { producerId } = await origin.publisher(roomId, 'presenter', 0x7a01);
    const relay = await UdpRelay.open();
    relays.push(relay);
    const { sink } = await viewerNode.viewer(
      roomId,
      'viewer',
      producerId,
      throughRelay(origin, roomId, producerId, relay),
    );
    await flowsTo([sink], 20, 'RTP at the viewer on the other node');
    return { relay, sink };
  };

  it('always: the RTP crosses the pipe encrypted (SRTP on both ends), and the viewer still gets it', async () => {
    const roomId = 'srtp-always';
    const { relay } = await pipeThroughRelay(originAlways, viewerAlways, roomId);
    const onWire = rtpOf(relay.fromA);
    expect(onWire.length).toBeGreaterThanOrEqual(20);
    expect(onWire.filter((packet) => packet.includes(CLEARTEXT))).toEqual([]);
    const ends = endsOf(roomId);
    expect(ends.map((t) => t.appData['direction']).sort()).toEqual(['in', 'out']);
    for (const end of ends) {
      expect(end.srtpParameters).toMatchObject({ cryptoSuite: expect.any(String), keyBase64: expect.any(String) });
      expect((await end.dump()).srtpParameters).toEqual(end.srtpParameters);
    }
  });

  it('auto: a pipe asked from a loopback address is not encrypted', async () => {
    const roomId = 'srtp-auto';
    const { relay } = await pipeThroughRelay(originAuto, viewerAuto, roomId);
    const onWire = rtpOf(relay.fromA);
    expect(onWire.length).toBeGreaterThanOrEqual(20);
    expect(onWire.filter((packet) => packet.includes(CLEARTEXT)).length).toBe(onWire.length);
    const ends = endsOf(roomId);
    expect(ends.length).toBe(2);
    for (const end of ends) expect((await end.dump()).srtpParameters).toBeUndefined();
  });

  it('always: the origin refuses to pipe a producer out unencrypted', async () => {
    const roomId = 'srtp-refused';
    const { producerId } = await originAlways.publisher(roomId, 'presenter', 0x7a02);
    const toOrigin: PipeOrigin = {
      nodeId: 'node-a',
      open: (end) => originAlways.media.pipeOut(roomId, producerId, 'node-b', end),
    };
    await expect(viewerAuto.viewer(roomId, 'viewer', producerId, toOrigin)).rejects.toMatchObject({
      code: 'FORBIDDEN',
    });
    expect(viewerAuto.media.pipes().filter((p) => p.roomId === roomId)).toEqual([]);
    expect(originAlways.media.pipes().filter((p) => p.roomId === roomId)).toEqual([]);
  });
});
